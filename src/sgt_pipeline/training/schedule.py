"""The optimizer (AdamW) and its learning-rate schedule: linear warm-up, then constant or cosine decay.

The schedule is a pure function of the step, so resuming needs only the step counter; its small state dict
exists so a checkpoint records which schedule produced its optimizer state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class LRSchedule:
    """lr for the optimizer update with 0-based index ``step`` (the (step+1)-th update of the run)."""

    base_lr: float
    max_steps: int
    warmup_steps: int = 0
    kind: str = "constant"  # "constant" | "cosine"
    min_lr_ratio: float = 0.1

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            # (step + 1) so that the very first update already moves the weights.
            return self.base_lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.base_lr
        if self.kind != "cosine":
            raise ValueError(f"unknown schedule kind {self.kind!r}")
        decay_steps = max(1, self.max_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.base_lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set the lr of every parameter group for update ``step``; O(groups), not O(parameters)."""
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self, step: int) -> dict:
        return {**asdict(self), "next_step": step}

    @classmethod
    def from_config(cls, config) -> LRSchedule:
        return cls(base_lr=config.lr, max_steps=config.max_steps, warmup_steps=config.warmup_steps,
                   kind=config.schedule, min_lr_ratio=config.min_lr_ratio)


def build_adamw(parameters: list[torch.nn.Parameter], config) -> torch.optim.AdamW:
    """AdamW with nanoGPT's split: weight decay on matrices and embeddings, not on biases and norm gains."""
    groups = [{"params": [p for p in parameters if p.ndim >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    try:  # fused: one multi-tensor kernel per group on CPU and CUDA; foreach where fused is unsupported
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, foreach=True)
