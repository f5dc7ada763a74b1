"""Training the tiny model's VQ tokenizer with the generic Trainer, and measuring its round trip.

Janus's VQ is frozen upstream; the embedded default has to train its own. It learns to reproduce both
images and rendered proxy targets, since both are generated as VQ tokens. Quality that matters is the
target round trip: tokenize a rendered target, decode it, decode the colours back to labels with the
palette — the labels must survive (``round_trip_quality``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from sgt_pipeline.models.vq import (
    images_to_vq_pixels,
    set_vq_trainable,
    tokenize_images,
    vq_forward,
    vq_pixels_to_images,
)
from sgt_pipeline.rendering import Palette
from sgt_pipeline.training.config import TrainerConfig, TrainSummary
from sgt_pipeline.training.trainer import Trainer


class VQTrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(600, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    beta: float = Field(0.25, ge=0)  # commitment weight
    precision: str = "auto"
    seed: int = 0
    checkpoint_every: int = Field(200, gt=0)


class VQObjective(torch.nn.Module):
    """``forward(pixels) -> (loss, metrics)``: reconstruction + codebook + β · commitment."""

    def __init__(self, vqmodel, beta: float):
        super().__init__()
        self.vqmodel, self.beta = vqmodel, beta

    def forward(self, pixels: torch.Tensor):
        out = vq_forward(self.vqmodel, pixels, beta=self.beta)
        recon = torch.nn.functional.mse_loss(out.reconstruction.float(), pixels.float())
        loss = recon + out.codebook_loss + self.beta * out.commitment_loss
        return loss, {"loss/reconstruction": recon.detach(), "loss/codebook": out.codebook_loss.detach()}


class PoolBatches:
    """Random batches (with replacement) from a pool of uint8 images; a function of (seed, step, micro)."""

    def __init__(self, pool: np.ndarray, batch_size: int, seed: int):
        self.pool, self.batch_size, self.seed = pool, batch_size, seed

    def __call__(self, step: int, micro: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, step, micro])
        picked = rng.integers(0, len(self.pool), self.batch_size)
        shard = np.array_split(picked, world_size)[rank]
        return images_to_vq_pixels(torch.from_numpy(self.pool[shard]))


def train_vq_tokenizer(vqmodel, pool: np.ndarray, config: VQTrainingConfig,
                       out_dir: str | Path) -> TrainSummary:
    """Train ``vqmodel`` in place on images drawn from ``pool`` (N, H, W, 3) uint8; checkpoints under
    ``out_dir`` (resumable). The VQ is frozen again afterwards."""
    set_vq_trainable(vqmodel)
    trainer = Trainer(
        VQObjective(vqmodel, config.beta), lambda module, pixels: module(pixels),
        PoolBatches(pool, config.batch_size, config.seed),
        TrainerConfig(max_steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps,
                      schedule="cosine", precision=config.precision, seed=config.seed,
                      checkpoint_every=config.checkpoint_every, out_dir=str(out_dir), grad_clip=1.0,
                      log_every=25))
    summary = trainer.fit()
    set_vq_trainable(vqmodel, False)
    return summary


@torch.no_grad()
def round_trip(vqmodel, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """tokenize → decode, as uint8 (N, H, W, 3): what generation can reproduce at best."""
    decoded = []
    for start in range(0, len(images), batch_size):
        pixels = images_to_vq_pixels(torch.from_numpy(images[start:start + batch_size]))
        out = vqmodel.decode(tokenize_images(vqmodel, pixels))
        decoded.append(vq_pixels_to_images(out).numpy())
    return np.concatenate(decoded)


def round_trip_quality(vqmodel, targets: np.ndarray, palette: Palette) -> dict[str, float]:
    """Palette-decode accuracy of VQ round trips of label targets: pixel accuracy, foreground accuracy and
    the mean IoU of each labelled region (background excluded) — the last is the honest one."""
    expected = np.stack([palette.decode(t) for t in targets])
    got = np.stack([palette.decode(t) for t in round_trip(vqmodel, targets)])
    foreground = expected > 0
    ious = []
    for i in range(len(targets)):
        for label in np.unique(expected[i]):
            if label:
                truth, found = expected[i] == label, got[i] == label
                ious.append((truth & found).sum() / (truth | found).sum())
    return {"pixel_accuracy": float((expected == got).mean()),
            "foreground_accuracy": float((expected == got)[foreground].mean()),
            "region_iou": float(np.mean(ious)) if ious else float("nan")}
