"""Batches of the SGT mixture: a deterministic function of (step, micro-step, rank).

The VQ tokenizer is frozen while post-training, so the image tokens of every image (text-to-image
targets) and of every proxy target are computed once up front, or read from the token cache
(``models.token_cache``); a batch is then a gather plus prompt tokenisation, which keeps data loading a
small share of the step.

Image-token noise: a teacher-forced image row sees the true previous tokens, a generating one its own. With
the tiny model's VQ codes, which depend on the whole image rather than on their patch, the previous tokens
predict the next one better than the input image does, so greedy generation repeated one code and the
proxy targets came out blank (teacher-forced argmax: foreground IoU 0.70; generated: 0.09). Replacing a
share of the *input* tokens by random codes (labels unchanged) makes the model read the image instead.
"""

from __future__ import annotations

import numpy as np
import torch

from sgt_pipeline.models.adapter import IMAGE_TASKS, TASKS
from sgt_pipeline.models.token_cache import cached_image_tokens
from sgt_pipeline.training.examples import SplitExamples
from sgt_pipeline.training.mixture import TaskMixture


class SGTBatches:
    """``batches(step, micro_step, rank, world_size) -> {task: batch}``, for the Trainer."""

    def __init__(self, adapter, examples: SplitExamples, *, weights: dict[str, float],
                 proxy_kind: str, global_batch: int, grad_accum_steps: int,
                 seed: int = 0, cfg_dropout: float = 0.1, image_token_noise: float = 0.0,
                 understanding_turns: int = 1, token_cache_dir: str | None = None):
        if proxy_kind == "none":
            weights = {**weights, "proxy": 0.0}
        self.adapter, self.examples, self.proxy_kind = adapter, examples, proxy_kind
        self.grad_accum_steps, self.seed, self.cfg_dropout = grad_accum_steps, seed, cfg_dropout
        self.image_token_noise = image_token_noise
        self.codebook_size = adapter.model.config.vq_config.num_embeddings
        self.proxy_examples = examples.proxy(proxy_kind) if weights.get("proxy", 0) > 0 else None
        self.conversations = examples.conversations(understanding_turns, seed)
        sizes = {"understanding": len(self.conversations), "generation": len(examples.generation),
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
            frame = {"understanding": self.conversations, "generation": ex.generation,
                     "proxy": self.proxy_examples}[task]
            picked = frame.iloc[indices]
            rows = np.array(picked["row"])  # a writable copy: it also indexes torch tensors
            if task == "understanding":
                batches[task] = self.adapter.conversation_batch(ex.images[rows], list(picked["turns"]))
            elif task == "generation":
                batches[task] = self.adapter.generation_batch(
                    list(picked["prompt"]), self.image_tokens[rows],
                    drop_prompt=self._dropped(micro_index, rank, len(rows), task))
            else:
                batches[task] = self.adapter.proxy_batch(
                    ex.images[rows], list(picked["instruction"]), self.target_tokens[rows],
                    drop_prompt=self._dropped(micro_index, rank, len(rows), task))
            if task in IMAGE_TASKS and self.image_token_noise > 0:
                batches[task]["input_tokens"] = self._noised(batches[task]["labels"], micro_index, rank, task)
        return batches

    def _noised(self, labels: torch.Tensor, micro_index: int, rank: int, task: str) -> torch.Tensor:
        """``labels`` with a share ``image_token_noise`` of positions replaced by uniformly random codes."""
        rng = self._rng(0x4015E, micro_index, rank, task)
        replace = torch.from_numpy(rng.random(labels.shape) < self.image_token_noise)
        codes = torch.from_numpy(rng.integers(0, self.codebook_size, labels.shape))
        return torch.where(replace, codes, labels)

    def _dropped(self, micro_index: int, rank: int, size: int, task: str) -> torch.Tensor:
        """Rows trained unconditionally (prompt replaced by padding) so CFG has an unconditional model."""
        return torch.from_numpy(self._rng(0xCF6, micro_index, rank, task).random(size) < self.cfg_dropout)

    def _rng(self, purpose: int, micro_index: int, rank: int, task: str) -> np.random.Generator:
        """A generator of its own per (purpose, micro-step, rank, task): a resumed run redraws the same."""
        return np.random.default_rng([self.seed, micro_index, rank, purpose, TASKS.index(task)])
