"""SGT post-training: from a base model (reference written by ``pretrain``) to the SGT model."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from sgt_pipeline.io import atomic_directory
from sgt_pipeline.models.adapter import JanusAdapter
from sgt_pipeline.training.base_model import code_digest
from sgt_pipeline.training.examples import SplitExamples
from sgt_pipeline.training.umm import MixtureTrainingConfig, train_umm


class PostTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output_dir: str = "data/06_models/sgt"  # the post-trained model, Hugging Face format
    run: MixtureTrainingConfig


def post_train(examples: SplitExamples, base_model: dict, config: PostTrainConfig) -> dict:
    """Train from ``base_model["path"]``; returns ``{"path", "base", "metrics"}``.

    Checkpoints go to ``<trainer.out_dir>/<run id>``, the id hashing the base, the run config and the
    training code, so ``resume: auto`` only ever continues a run of the same configuration.
    """
    started = time.perf_counter()
    adapter = JanusAdapter.from_pretrained(base_model["path"])
    run_id = hashlib.blake2b(
        (base_model["fingerprint"] + config.run.result_json() + code_digest()).encode(),
        digest_size=8).hexdigest()
    trainer = config.run.trainer
    run = config.run.model_copy(update={"trainer": trainer.model_copy(
        update={"out_dir": str(Path(trainer.out_dir) / run_id)})})
    summary = train_umm(adapter, examples, run)
    metrics = {**{f"train/{k}": v for k, v in summary.mean_metrics.items()},
               "train/steps": summary.final_step, "train/samples_per_second": summary.samples_per_second,
               "train/data_time_share": summary.data_time_share,
               "train/wall_time_s": time.perf_counter() - started, "train/precision": summary.precision}
    with atomic_directory(config.output_dir) as building:
        adapter.save_pretrained(building)
    return {"path": config.output_dir, "base": base_model["path"], "run_id": run_id, "metrics": metrics}
