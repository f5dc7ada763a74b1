"""The SGT objective: λ_und · understanding CE + λ_gen · text-to-image CE + λ_proxy · proxy CE.

Mapping from SGT's recipe (song2yu/SGT): ``ce_weight 1.5`` weighs the understanding (text) cross-entropy,
``mse_weight 1.0`` weighs the image-generation loss, which for BAGEL is a flow-matching MSE. Janus
generates discrete VQ tokens, so its generation loss is a cross-entropy over image tokens; we keep SGT's
weights: λ_und = 1.5, λ_gen = λ_proxy = 1.0 (the proxy task is image generation too).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field


class LossWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    understanding: float = Field(1.5, ge=0)  # SGT ce_weight
    generation: float = Field(1.0, ge=0)  # SGT mse_weight (text-to-image)
    proxy: float = Field(1.0, ge=0)  # SGT mse_weight (the proxy target is generated too)


class SGTLoss(torch.nn.Module):
    """``forward(batch) -> (weighted loss, metrics)``; the batch's ``task`` picks the adapter's loss.

    A module (holding the Janus model) so that DDP/FSDP can wrap it: every loss runs through
    ``forward``, which is what distributed wrappers hook.
    """

    def __init__(self, adapter, weights: LossWeights):
        super().__init__()
        self.adapter = adapter
        self.model = adapter.model  # registered: wrappers see (and synchronise) its parameters
        self.weights = weights

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        task = batch["task"]
        tensors = {k: v for k, v in batch.items() if k != "task"}
        loss = getattr(self.adapter, f"{task}_loss")(tensors)
        return getattr(self.weights, task) * loss, {f"loss/{task}": loss.detach()}


def sgt_objective(module: torch.nn.Module, batch: dict):
    """The trainer's objective: call the (possibly wrapped) SGTLoss module."""
    return module(batch)
