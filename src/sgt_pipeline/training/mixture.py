"""The task mixture: which task each micro-batch trains, and which examples it holds.

Everything is a pure function of (seed, step, micro-step), so a resumed run sees exactly the batches the
uninterrupted run would have seen, and every rank agrees on the task of a micro-batch while taking its own
shard of the global batch. Examples of a task are drawn epoch by epoch without replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASKS = ("understanding", "generation", "proxy")


@dataclass(frozen=True)
class Draw:
    """One micro-batch: its task and the example indices of this rank's shard."""

    task: str
    indices: np.ndarray


class TaskMixture:
    """Deterministic task schedule and per-task epoch sampling.

    ``weights``: relative frequency of each task (e.g. proxy 2, understanding 0.5, generation 0.5 gives
    SGT's proxy:SFT = 2:1); ``sizes``: number of examples per task; ``global_batch``: examples per
    micro-batch summed over ranks.
    """

    def __init__(self, weights: dict[str, float], sizes: dict[str, int], global_batch: int,
                 total_micro_steps: int, seed: int = 0):
        self.tasks = [t for t in TASKS if weights.get(t, 0) > 0]
        if not self.tasks:
            raise ValueError("the mixture gives every task weight 0")
        empty = [t for t in self.tasks if sizes.get(t, 0) == 0]
        if empty:
            raise ValueError(f"tasks {empty} have weight > 0 but no examples")
        self.sizes, self.global_batch, self.seed = sizes, global_batch, seed
        probabilities = np.array([weights[t] for t in self.tasks], dtype=np.float64)
        probabilities /= probabilities.sum()
        schedule_rng = np.random.default_rng([seed, 0x5EED])
        # The whole schedule is drawn up front: resuming at step k needs the per-task counts before k.
        self._schedule = schedule_rng.choice(len(self.tasks), size=total_micro_steps, p=probabilities)
        self._seen_before = np.zeros((total_micro_steps + 1, len(self.tasks)), dtype=np.int64)
        np.cumsum(np.eye(len(self.tasks), dtype=np.int64)[self._schedule], axis=0,
                  out=self._seen_before[1:])
        self._epochs: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        """Number of micro-steps the schedule covers."""
        return len(self._schedule)

    def task_at(self, micro_index: int) -> str:
        return self.tasks[self._schedule[micro_index]]

    def draw(self, micro_index: int, rank: int = 0, world_size: int = 1) -> Draw:
        """The task of global micro-step ``micro_index`` and this rank's example indices."""
        if self.global_batch % world_size:
            raise ValueError(f"global batch {self.global_batch} is not divisible by {world_size} ranks")
        task_number = int(self._schedule[micro_index])
        task = self.tasks[task_number]
        first = int(self._seen_before[micro_index, task_number]) * self.global_batch
        per_rank = self.global_batch // world_size
        positions = np.arange(first + rank * per_rank, first + (rank + 1) * per_rank)
        return Draw(task, self._examples(task_number, positions))

    def share(self) -> dict[str, float]:
        """Fraction of micro-batches each task gets in the drawn schedule."""
        counts = self._seen_before[-1]
        return {t: float(counts[i] / max(1, counts.sum())) for i, t in enumerate(self.tasks)}

    def _examples(self, task_number: int, positions: np.ndarray) -> np.ndarray:
        size = self.sizes[self.tasks[task_number]]
        epochs, offsets = np.divmod(positions, size)
        return np.array([self._epoch(task_number, int(e))[o] for e, o in zip(epochs, offsets)])

    def _epoch(self, task_number: int, epoch: int) -> np.ndarray:
        key = (task_number, epoch)
        if key not in self._epochs:
            if len(self._epochs) > 64:  # only the current epochs are ever needed
                self._epochs.clear()
            rng = np.random.default_rng([self.seed, task_number, epoch])
            self._epochs[key] = rng.permutation(self.sizes[self.tasks[task_number]])
        return self._epochs[key]
