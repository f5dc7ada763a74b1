"""Pretraining the tiny model's understanding encoder on what the annotations give for free.

Real Janus starts from a pretrained SigLIP encoder; the embedded default's encoder starts from random
weights, and the base's answers alone do not teach it to see shapes (docs/embedded_default.md). So before
the base, the encoder (``JanusVisionModel``, with its convolutional stem) learns two things from the
semantic targets: which category covers each image token's patch (background included: 64 labels per
64-token image) and which categories the image holds. Both heads are dropped afterwards; the encoder's
tokens go on to the aligner and the language model.

``encoder_quality`` measures how well the trained encoder separates the categories on held-out images:
patch accuracy and the exact-set accuracy of presence, each beside what a constant answer gets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from sgt_pipeline.rendering import Palette
from sgt_pipeline.training.config import TrainerConfig, TrainSummary
from sgt_pipeline.training.trainer import Trainer


class EncoderTrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(300, ge=0)  # 0: no encoder pretraining
    batch_size: int = Field(64, gt=0)
    lr: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    presence_weight: float = Field(1.0, ge=0)  # weight of the presence loss beside the per-patch loss
    held_out: int = Field(200, ge=0)  # images kept out of training to measure encoder_quality
    precision: str = "fp32"
    seed: int = 0
    checkpoint_every: int = Field(200, gt=0)


def patch_labels(semantic_targets: np.ndarray, palette: Palette, grid: int) -> tuple[np.ndarray, list[int]]:
    """(N, grid * grid) int64 class per patch — 0 background, k the k-th category of ``palette`` — by the
    majority label of the patch's pixels, and the palette's category labels in class order (1..K)."""
    categories = sorted(int(label) for label in palette.labels if label)
    lookup = np.zeros(max(categories, default=0) + 1, dtype=np.int64)
    lookup[categories] = np.arange(1, len(categories) + 1)
    n, size = len(semantic_targets), semantic_targets.shape[1]
    if size % grid:
        raise ValueError(f"targets of {size} px do not split into a {grid} x {grid} patch grid")
    cell = size // grid
    labels = np.stack([lookup[palette.decode(target)] for target in semantic_targets])
    patches = labels.reshape(n, grid, cell, grid, cell).transpose(0, 1, 3, 2, 4).reshape(n, grid * grid, -1)
    counts = np.stack([(patches == k).sum(-1) for k in range(len(categories) + 1)], axis=-1)
    return counts.argmax(-1), categories


def presence_from_patches(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, K) float: category k (class k + 1) covers at least one patch."""
    return np.stack([(labels == k).any(1) for k in range(1, num_classes)], axis=1).astype(np.float32)


class EncoderObjective(torch.nn.Module):
    """``forward(pixels, patches, present) -> (loss, metrics)``: per-token category CE + presence BCE on the
    mean token."""

    def __init__(self, vision_model, num_classes: int, presence_weight: float):
        super().__init__()
        width = vision_model.config.hidden_size
        self.vision_model, self.presence_weight = vision_model, presence_weight
        self.patch_head = torch.nn.Linear(width, num_classes)
        self.presence_head = torch.nn.Linear(width, num_classes - 1)

    def logits(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.vision_model(pixel_values=pixels).last_hidden_state
        return self.patch_head(tokens), self.presence_head(tokens.mean(1))

    def forward(self, pixels: torch.Tensor, patches: torch.Tensor, present: torch.Tensor):
        patch_logits, presence_logits = self.logits(pixels)
        patch_loss = F.cross_entropy(patch_logits.flatten(0, 1).float(), patches.flatten())
        presence_loss = F.binary_cross_entropy_with_logits(presence_logits.float(), present)
        loss = patch_loss + self.presence_weight * presence_loss
        return loss, {"loss/patch": patch_loss.detach(), "loss/presence": presence_loss.detach()}


class EncoderBatches:
    """Random batches (with replacement) of processor pixels, patch labels and presence; a function of
    (seed, step)."""

    def __init__(self, pixels: torch.Tensor, patches: np.ndarray, num_classes: int, batch_size: int, seed: int):
        self.pixels, self.patches = pixels, torch.from_numpy(patches)
        self.present = torch.from_numpy(presence_from_patches(patches, num_classes))
        self.batch_size, self.seed = batch_size, seed

    def __call__(self, step: int, micro: int, rank: int = 0, world_size: int = 1):
        rng = np.random.default_rng([self.seed, step, micro])
        picked = np.array_split(rng.integers(0, len(self.pixels), self.batch_size), world_size)[rank]
        return self.pixels[picked], self.patches[picked], self.present[picked]


@torch.no_grad()
def encoder_quality(objective: EncoderObjective, pixels: torch.Tensor, patches: np.ndarray) -> dict[str, float]:
    """Held-out patch accuracy, presence accuracy (per category, averaged: "is there a <category>?") and
    presence exact-set accuracy, each with its constant-answer baseline."""
    was_training = objective.training
    objective.eval()
    outputs = [objective.logits(pixels[s:s + 128]) for s in range(0, len(pixels), 128)]
    objective.train(was_training)
    predicted_patches = torch.cat([o[0] for o in outputs]).argmax(-1).numpy()
    predicted_presence = torch.cat([o[1] for o in outputs]).numpy() > 0
    num_classes = outputs[0][0].shape[-1]
    presence = presence_from_patches(patches, num_classes).astype(bool)
    from_patches = presence_from_patches(predicted_patches, num_classes).astype(bool)
    _, set_counts = np.unique(presence, axis=0, return_counts=True)
    foreground = patches > 0
    return {"patch_accuracy": float((predicted_patches == patches).mean()),
            "patch_majority": float(np.bincount(patches.ravel()).max() / patches.size),
            "foreground_patch_accuracy": float((predicted_patches == patches)[foreground].mean()),
            "presence_accuracy": float((predicted_presence == presence).mean()),
            "presence_accuracy_majority": float(np.maximum(presence.mean(0), 1 - presence.mean(0)).mean()),
            "presence_exact_set": float((predicted_presence == presence).all(1).mean()),
            "presence_exact_set_from_patches": float((from_patches == presence).all(1).mean()),
            "presence_majority": float(set_counts.max() / len(presence)),
            "held_out_images": float(len(pixels))}


def train_vision_encoder(adapter, images: np.ndarray, patches: np.ndarray, num_classes: int,
                         config: EncoderTrainingConfig, out_dir: str | Path) -> tuple[TrainSummary | None, dict]:
    """Train ``adapter``'s understanding encoder in place on per-patch classes (``patch_labels``: background
    and ``num_classes - 1`` categories) and presence (checkpoints under ``out_dir``, resumable); returns the
    run summary and ``encoder_quality`` on the last ``config.held_out`` images, which training never sees."""
    vision_model = adapter.model.model.vision_model
    pixels = adapter.prompts.pixel_values(images)
    held_out = min(config.held_out, len(images) // 5)
    train_pixels, train_patches = pixels[:len(pixels) - held_out], patches[:len(patches) - held_out]
    objective = EncoderObjective(vision_model, num_classes, config.presence_weight)
    summary = None
    if config.steps:
        trainer = Trainer(
            objective, lambda module, batch: module(*batch),
            EncoderBatches(train_pixels, train_patches, num_classes, config.batch_size, config.seed),
            TrainerConfig(max_steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps,
                          schedule="cosine", precision=config.precision, seed=config.seed,
                          checkpoint_every=config.checkpoint_every, out_dir=str(out_dir), log_every=25))
        summary = trainer.fit()
    quality = encoder_quality(objective, pixels[len(pixels) - held_out:], patches[len(patches) - held_out:]) \
        if held_out else {}
    vision_model.eval()
    return summary, quality
