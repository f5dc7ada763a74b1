"""The trainer's configuration and its run summary: plain pydantic models, mirrored by YAML parameters."""

from __future__ import annotations

from typing import Literal

import pydantic
from pydantic import Field


class TrainerConfig(pydantic.BaseModel):
    """Everything the training loop needs besides the model, the objective and the data.

    Steps count optimizer updates (one update = ``grad_accum_steps`` micro-batches per rank).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    max_steps: int = Field(gt=0, description="Total optimizer steps of the run (resume continues up to it).")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate, reached at the end of warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW (beta1, beta2).")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up from lr/warmup_steps to lr over these steps.")
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="After warm-up: hold lr, or cosine-decay it to lr*min_lr_ratio at max_steps.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final lr of the cosine schedule, as a share of lr.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the global gradient norm to this; None: no clip.")
    grad_accum_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step (per rank).")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="bf16 autocast or plain fp32; auto: bf16 on CUDA, and on CPUs with native bf16 "
                            "instructions (AVX512-BF16 or AMX-BF16), else fp32. Weights stay fp32 either way.")
    seed: int = Field(0, description="Seeds torch, numpy and random (plus the rank) when the trainer starts.")
    checkpoint_every: int = Field(100, ge=1, description="Write a checkpoint every this many steps, and at the end.")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept; older ones are pruned.")
    resume: str = Field(
        "auto", description="'auto': continue from the latest complete checkpoint in out_dir (start fresh if none); "
                            "'never': start fresh; otherwise the path of a checkpoint directory to continue from.")
    log_every: int = Field(10, ge=1, description="Read metrics back from the device, update the bar and the "
                                                 "log, and check for non-finite losses every this many steps.")
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="How the model is wrapped under torchrun (world size > 1); ignored in one process.")
    find_unused_parameters: bool = Field(
        False, description="DDP only: set when some micro-batches leave parameters without a gradient (e.g. a "
                           "task mixture where each task uses its own head).")
    out_dir: str = Field(description="Run directory: checkpoints/, train_log.jsonl.")

    @pydantic.field_validator("resume")
    @classmethod
    def _resume_is_mode_or_path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("resume must be 'auto', 'never' or a checkpoint directory path")
        return value


class TrainSummary(pydantic.BaseModel):
    """What `Trainer.fit` returns (and prints on rank 0)."""

    final_step: int = Field(description="Optimizer steps completed, counting those before a resume.")
    steps_this_run: int = Field(description="Optimizer steps taken by this call of fit().")
    resumed_from: str | None = Field(description="Checkpoint this run continued from, if any.")
    mean_metrics: dict[str, float] = Field(
        description="Per-key means (loss, loss/<task>, grad_norm, ...) over the last `metrics_window` steps.")
    metrics_window: int = Field(description="How many final steps `mean_metrics` averages over.")
    samples_per_second: float = Field(description="Global samples (all ranks) per second of wall time.")
    wall_time_s: float = Field(description="Wall time of the training loop, checkpoint writes included.")
    data_time_share: float = Field(description="Share of the wall time spent inside batches(...).")
    checkpoint_time_s: float = Field(description="Wall time spent writing checkpoints.")
    precision: Literal["bf16", "fp32"] = Field(description="The precision actually used.")
    final_checkpoint: str | None = Field(description="Directory of the last checkpoint written or loaded.")

    def describe(self) -> str:
        """One line for the end of a run."""
        losses = ", ".join(f"{k}={v:.4f}" for k, v in sorted(self.mean_metrics.items()) if k.startswith("loss"))
        return (f"trained to step {self.final_step} ({self.steps_this_run} this run, {self.precision}) in "
                f"{self.wall_time_s:.1f}s: {self.samples_per_second:.1f} samples/s, data {self.data_time_share:.1%} "
                f"of time; last {self.metrics_window} steps: {losses or 'n/a'}; checkpoint: {self.final_checkpoint}")
