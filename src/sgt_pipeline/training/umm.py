"""Training a unified model on a task mixture: base pretraining (understanding + text-to-image) and SGT
post-training (the same plus a proxy task) are one function with different mixtures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sgt_pipeline.training.batches import SGTBatches
from sgt_pipeline.training.config import TrainerConfig, TrainSummary
from sgt_pipeline.training.examples import SplitExamples
from sgt_pipeline.training.objective import LossWeights, SGTLoss, sgt_objective
from sgt_pipeline.training.trainer import Trainer

ProxyKind = Literal["none", "reconstruction", "edge", "depth", "semantic", "instance", "panoptic"]


class MixtureTrainingConfig(BaseModel):
    """One training run on the task mixture (``parameters_pretrain.yml`` / ``parameters_train.yml``)."""

    model_config = ConfigDict(extra="forbid")

    proxy_kind: ProxyKind = "instance"  # the generative proxy task; none = SFT only
    # Share of each micro-batch's examples per task; SGT's proxy:SFT = 2:1 is proxy 2, und 0.5, gen 0.5.
    mixture: dict[Literal["understanding", "generation", "proxy"], float] = Field(
        default_factory=lambda: {"proxy": 2.0, "understanding": 0.5, "generation": 0.5})
    loss_weights: LossWeights = Field(default_factory=LossWeights)
    global_batch: int = Field(16, gt=0)  # examples per micro-batch, summed over ranks
    # Understanding items about one image packed into one multi-turn conversation of up to this many turns,
    # supervised on every answer: one image forward for many answers. An understanding example is then one
    # conversation. 1: one question per sequence.
    understanding_turns: int = Field(1, ge=1)
    cfg_dropout: float = Field(0.1, ge=0, le=1)  # share of image-generation rows trained unconditionally
    # Share of the teacher-forced input image tokens (text-to-image and proxy rows; never their labels)
    # replaced by random codes, so generation leans on the prompt and input image rather than on copying
    # the previous token (``training.batches``). 0: plain teacher forcing.
    image_token_noise: float = Field(0.0, ge=0, le=1)
    # Directory of cached VQ tokens of images and targets (``models.token_cache``); None: tokenise every run.
    vq_token_cache: str | None = None
    trainer: TrainerConfig

    def result_json(self) -> str:
        """The settings that determine the trained weights, as JSON: what run ids and fingerprints hash
        (where the token cache lives changes no result)."""
        return self.model_dump_json(exclude={"vq_token_cache"})


def train_umm(adapter, examples: SplitExamples, config: MixtureTrainingConfig,
              after_step: Callable[[int], None] | None = None) -> TrainSummary:
    """Train ``adapter.model`` in place on the mixture; checkpoints in ``config.trainer.out_dir``.
    ``after_step``: see ``Trainer.fit``."""
    trainer_config = config.trainer
    batches = SGTBatches(
        adapter, examples, weights=dict(config.mixture), proxy_kind=config.proxy_kind,
        global_batch=config.global_batch, grad_accum_steps=trainer_config.grad_accum_steps,
        seed=trainer_config.seed, cfg_dropout=config.cfg_dropout, image_token_noise=config.image_token_noise,
        understanding_turns=config.understanding_turns, token_cache_dir=config.vq_token_cache)
    if len(batches.mixture.tasks) == 1 and not trainer_config.find_unused_parameters:
        # One task alone leaves some parameters unused (e.g. the generation head without image tasks).
        trainer_config = trainer_config.model_copy(update={"find_unused_parameters": True})
    trainer = Trainer(SGTLoss(adapter, config.loss_weights), sgt_objective, batches, trainer_config,
                      trainable_parameters=adapter.trainable_parameters())
    return trainer.fit(after_step)
