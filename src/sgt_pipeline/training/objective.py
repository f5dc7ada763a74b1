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
    """``forward({task: batch}) -> (Σ λ_task · loss_task, metrics)``, each loss a mean over its own tokens
    (SGT: ``ce_weight · CE + mse_weight · MSE`` over one packed batch; here too, ``JanusAdapter.task_losses``)

    A module (holding the Janus model) so that DDP/FSDP can wrap it: every loss runs through one
    ``forward``, which is what distributed wrappers hook.
    """

    def __init__(self, adapter, weights: LossWeights):
        super().__init__()
        self.adapter = adapter
        self.model = adapter.model  # registered: wrappers see (and synchronise) its parameters
        self.weights = weights

    def forward(self, batches: dict[str, dict]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses = self.adapter.task_losses(batches)  # every task in one packed forward
        total = sum(getattr(self.weights, task) * loss for task, loss in losses.items())
        return total, {f"loss/{task}": loss.detach() for task, loss in losses.items()}


def sgt_objective(module: torch.nn.Module, batch: dict):
    """The trainer's objective: call the (possibly wrapped) SGTLoss module."""
    return module(batch)
