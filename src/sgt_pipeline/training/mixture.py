"""The task mixture: how many examples of each task every micro-batch holds, and which ones.

Every micro-batch mixes the tasks in proportion to their weights (SGT's proxy:SFT = 2:1 with a global batch of
32 gives 22 proxy, 5 understanding and 5 text-to-image examples), as SGT packs its batches. The loss weights
λ then set the tasks' relative pull inside every optimizer step; with one task per step they would cancel
under gradient clipping and Adam's per-parameter scaling, and sweeping them would change nothing.

Everything is a pure function of (seed, micro-step, rank), so a resumed run sees exactly the batches the
uninterrupted run would have seen. Examples of a task are drawn epoch by epoch without replacement.
"""

from __future__ import annotations

import numpy as np

from sgt_pipeline.models.adapter import TASKS


class TaskMixture:
    """``weights``: relative share of each task's examples in a micro-batch; ``sizes``: examples per task;
    ``global_batch``: examples per micro-batch summed over tasks and ranks."""

    def __init__(self, weights: dict[str, float], sizes: dict[str, int], global_batch: int, seed: int = 0):
        self.tasks = [t for t in TASKS if weights.get(t, 0) > 0]
        if not self.tasks:
            raise ValueError("the mixture gives every task weight 0")
        empty = [t for t in self.tasks if sizes.get(t, 0) == 0]
        if empty:
            raise ValueError(f"tasks {empty} have weight > 0 but no examples")
        self.weights = {t: float(weights[t]) for t in self.tasks}
        self.sizes, self.global_batch, self.seed = sizes, global_batch, seed
        self._epochs: dict[tuple[int, int], np.ndarray] = {}

    def counts(self) -> dict[str, int]:
        """Examples of each task per (global) micro-batch: the weights' shares of ``global_batch``, largest
        remainder, at least one each. The same for every world size, so N ranks see what 1 process sees."""
        slots = self.global_batch
        if slots < len(self.tasks):
            raise ValueError(f"a micro-batch of {slots} examples cannot hold the {len(self.tasks)} tasks "
                             f"{self.tasks}: raise global_batch")
        total = sum(self.weights.values())
        quotas = {t: slots * w / total for t, w in self.weights.items()}
        counts = {t: max(1, int(q)) for t, q in quotas.items()}
        # Largest remainder first; ties (up to float noise) go to the larger task.
        by_remainder = sorted(self.tasks, key=lambda t: (round(counts[t] - quotas[t], 9), -quotas[t]))
        for task in by_remainder[: slots - sum(counts.values())]:
            counts[task] += 1
        while sum(counts.values()) > slots:  # the at-least-one rule overfilled: take from the largest
            counts[max(counts, key=counts.get)] -= 1
        return counts

    def share(self) -> dict[str, float]:
        """Fraction of each micro-batch's examples per task."""
        return {t: n / self.global_batch for t, n in self.counts().items()}

    def draw(self, micro_index: int, rank: int = 0, world_size: int = 1) -> dict[str, np.ndarray]:
        """This rank's example indices of each task in global micro-batch ``micro_index``: a contiguous
        part of each task's examples, the parts' sizes differing by at most one between ranks."""
        draws = {}
        for task, count in self.counts().items():
            if count < world_size:
                raise ValueError(f"{task}: {count} examples per micro-batch cannot be shared by {world_size} "
                                 "ranks; raise global_batch or the task's mixture weight")
            bounds = np.linspace(0, count, world_size + 1).round().astype(int)
            first = micro_index * count + bounds[rank]
            draws[task] = self._examples(task, np.arange(first, micro_index * count + bounds[rank + 1]))
        return draws

    def _examples(self, task: str, positions: np.ndarray) -> np.ndarray:
        epochs, offsets = np.divmod(positions, self.sizes[task])
        return np.array([self._epoch(task, int(e))[o] for e, o in zip(epochs, offsets)])

    def _epoch(self, task: str, epoch: int) -> np.ndarray:
        key = (TASKS.index(task), epoch)
        if key not in self._epochs:
            if len(self._epochs) > 64:  # only the current epochs are ever needed
                self._epochs.clear()
            rng = np.random.default_rng([self.seed, *key])
            self._epochs[key] = rng.permutation(self.sizes[task])
        return self._epochs[key]
