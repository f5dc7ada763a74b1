"""Batches of the SGT mixture: a deterministic function of (step, micro-step, rank).

The VQ tokenizer is frozen while post-training, so the image tokens of every image (text-to-image
targets) and of every proxy target are computed once up front, or read from the token cache
(``models.token_cache``); a batch is then a gather plus prompt tokenisation, which keeps data loading a
small share of the step.
"""

from __future__ import annotations

import numpy as np
import torch

from sgt_pipeline.models.adapter import TASKS
from sgt_pipeline.models.token_cache import cached_image_tokens
from sgt_pipeline.training.examples import SplitExamples
from sgt_pipeline.training.mixture import TaskMixture


class SGTBatches:
    """``batches(step, micro_step, rank, world_size) -> {task: batch}``, for the Trainer."""

    def __init__(self, adapter, examples: SplitExamples, *, weights: dict[str, float],
                 proxy_kind: str, global_batch: int, grad_accum_steps: int,
                 seed: int = 0, cfg_dropout: float = 0.1, token_cache_dir: str | None = None):
        if proxy_kind == "none":
            weights = {**weights, "proxy": 0.0}
        self.adapter, self.examples, self.proxy_kind = adapter, examples, proxy_kind
        self.grad_accum_steps, self.seed, self.cfg_dropout = grad_accum_steps, seed, cfg_dropout
        self.proxy_examples = examples.proxy(proxy_kind) if weights.get("proxy", 0) > 0 else None
        sizes = {"understanding": len(examples.understanding), "generation": len(examples.generation),
                 "proxy": 0 if self.proxy_examples is None else len(self.proxy_examples)}
        self.mixture = TaskMixture(weights, sizes, global_batch, seed)
        self.image_tokens = (cached_image_tokens(adapter, examples.images, token_cache_dir)
                             if "generation" in self.mixture.tasks else None)
        self.target_tokens = (cached_image_tokens(adapter, examples.targets[proxy_kind], token_cache_dir)
                              if self.proxy_examples is not None else None)

    def __call__(self, step: int, micro_step: int, rank: int = 0, world_size: int = 1) -> dict[str, dict]:
        """``{task: batch}`` for every task of the mixture (this rank's shard of the micro-batch)."""
        micro_index = step * self.grad_accum_steps + micro_step
        ex, batches = self.examples, {}
        for task, indices in self.mixture.draw(micro_index, rank, world_size).items():
            frame = {"understanding": ex.understanding, "generation": ex.generation,
                     "proxy": self.proxy_examples}[task]
            picked = frame.iloc[indices]
            rows = np.array(picked["row"])  # a writable copy: it also indexes torch tensors
            if task == "understanding":
                batches[task] = self.adapter.understanding_batch(ex.images[rows], list(picked["question"]),
                                                                 list(picked["answer"]))
            elif task == "generation":
                batches[task] = self.adapter.generation_batch(
                    list(picked["prompt"]), self.image_tokens[rows],
                    drop_prompt=self._dropped(micro_index, rank, len(rows), task))
            else:
                batches[task] = self.adapter.proxy_batch(
                    ex.images[rows], list(picked["instruction"]), self.target_tokens[rows],
                    drop_prompt=self._dropped(micro_index, rank, len(rows), task))
        return batches

    def _dropped(self, micro_index: int, rank: int, size: int, task: str) -> torch.Tensor:
        """Rows trained unconditionally (prompt replaced by padding) so CFG has an unconditional model."""
        rng = np.random.default_rng([self.seed, micro_index, rank, 0xCF6, TASKS.index(task)])
        return torch.from_numpy(rng.random(size) < self.cfg_dropout)
