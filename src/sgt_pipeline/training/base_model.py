"""The base model SGT post-trains: a local Hugging Face checkpoint, or the tiny embedded Janus trained here
(VQ tokenizer first, then understanding + text-to-image), cached by fingerprint so it is built once."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sgt_pipeline.io import atomic_directory, atomic_write
from sgt_pipeline.models.adapter import JanusAdapter
from sgt_pipeline.models.config import TinyJanusConfig, build_tiny_janus, count_parameters
from sgt_pipeline.models.tokenizer import build_processor, build_word_tokenizer
from sgt_pipeline.rendering import Palette
from sgt_pipeline.training.encoder import EncoderTrainingConfig, patch_labels, train_vision_encoder
from sgt_pipeline.training.examples import SplitExamples
from sgt_pipeline.training.grounding import BACKGROUND_WORD, GroundingConfig, grid_word_ids, ground_language_model
from sgt_pipeline.training.instructions import instruction_words
from sgt_pipeline.training.tokenizer import VQTrainingConfig, round_trip_quality, train_vq_tokenizer
from sgt_pipeline.training.umm import MixtureTrainingConfig, train_umm

log = logging.getLogger(__name__)
FINGERPRINT_FILE = "sgt_base.json"


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A local Hugging Face directory of a Janus / Janus-Pro checkpoint (model + processor). None: the tiny
    # embedded model is built and pretrained on the configured data instead.
    pretrained_path: str | None = None
    tiny: TinyJanusConfig = Field(default_factory=TinyJanusConfig)


class PretrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output_dir: str = "data/06_models/base"  # the pretrained base, Hugging Face format
    vq: VQTrainingConfig = Field(default_factory=VQTrainingConfig)
    vq_kinds: list[str] = Field(default_factory=lambda: ["reconstruction", "instance", "semantic"])
    encoder: EncoderTrainingConfig = Field(default_factory=EncoderTrainingConfig)
    grounding: GroundingConfig = Field(default_factory=GroundingConfig)
    base: MixtureTrainingConfig

    @property
    def target_kinds(self) -> list[str]:
        """Rendered target kinds pretraining reads: the VQ's, instance (its round-trip check) and semantic
        (the encoder's and grounding's patch labels) when those stages run."""
        kinds = {*self.vq_kinds, "instance"}
        if self.encoder.steps or self.grounding.steps:
            kinds.add("semantic")
        return sorted(kinds)


def text_vocabulary(examples: SplitExamples) -> list[str]:
    """Every word of the questions, answers and captions, plus the proxy instructions."""
    texts = [*examples.understanding["question"], *examples.understanding["answer"],
             *examples.generation["prompt"]]
    words = set(instruction_words()) | {BACKGROUND_WORD}
    for text in texts:
        for mark in ".,?":
            text = text.replace(mark, f" {mark} ")
        words.update(text.lower().split())
    return sorted(words)


def code_digest() -> str:
    """Hash of the model and training code: a fix there must not be answered from an old checkpoint."""
    digest = hashlib.blake2b(digest_size=16)
    package = Path(__file__).resolve().parents[1]
    for source in sorted([*package.glob("models/*.py"), *package.glob("training/*.py")]):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def fingerprint(examples: SplitExamples, model: ModelConfig, pretrain: PretrainConfig) -> str:
    """What the base model depends on: training images and targets, vocabulary, configs and code."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(code_digest().encode())
    digest.update(np.ascontiguousarray(examples.images).tobytes())
    for kind in sorted(examples.targets):
        digest.update(kind.encode() + np.ascontiguousarray(examples.targets[kind]).tobytes())
    digest.update(json.dumps(text_vocabulary(examples)).encode())
    digest.update(model.model_dump_json().encode())
    digest.update(pretrain.model_dump_json(exclude={"output_dir", "base"}).encode())
    digest.update(pretrain.base.result_json().encode())
    return digest.hexdigest()


def prepare_base_model(examples: SplitExamples, model: ModelConfig, pretrain: PretrainConfig,
                       palettes: dict[str, Palette], category_names: dict[int, str]) -> dict:
    """The base model's reference ``{"path", "fingerprint", "metrics"}``, building it only when needed.

    ``palettes`` decode the targets: instance for the VQ round-trip check, semantic for the encoder's and
    grounding's patch labels, whose categories ``category_names`` (category id -> name) names.
    """
    if model.pretrained_path:
        return {"path": model.pretrained_path, "fingerprint": "pretrained", "metrics": {}}
    expected = fingerprint(examples, model, pretrain)
    record = Path(pretrain.output_dir) / FINGERPRINT_FILE
    if record.is_file():
        cached = json.loads(record.read_text())
        if cached.get("fingerprint") == expected:
            log.info("base model up to date in %s (fingerprint %s): pretraining skipped",
                     pretrain.output_dir, expected[:12])
            return cached
    return _pretrain(examples, model, pretrain, palettes, category_names, expected)


def _pretrain(examples: SplitExamples, model: ModelConfig, pretrain: PretrainConfig,
              palettes: dict[str, Palette], category_names: dict[int, str], fp: str) -> dict:
    started = time.perf_counter()
    tokenizer = build_word_tokenizer(text_vocabulary(examples))
    tiny = model.tiny
    adapter = JanusAdapter(build_tiny_janus(tiny, tokenizer),
                           build_processor(tokenizer, tiny.image_size, tiny.num_image_tokens))
    # Checkpoints of this build, keyed by its fingerprint: `resume: auto` only continues this very build.
    trainer = pretrain.base.trainer
    work = Path(trainer.out_dir) / fp[:16]

    pool = np.concatenate([examples.targets[k] for k in pretrain.vq_kinds])
    vqmodel = adapter.model.model.vqmodel
    vq_summary = train_vq_tokenizer(vqmodel, pool, pretrain.vq, work / "vq")
    quality = round_trip_quality(vqmodel, examples.targets["instance"][:256], palettes["instance"])
    log.info("VQ round trip of instance targets: %s", quality)

    stage_metrics: dict[str, float] = {}
    if pretrain.encoder.steps or pretrain.grounding.steps:
        grid = int(round(adapter.num_image_tokens ** 0.5))
        patches, categories = patch_labels(examples.targets["semantic"], palettes["semantic"], grid)
    if pretrain.encoder.steps:
        encoder_summary, seeing = train_vision_encoder(adapter, examples.images, patches, len(categories) + 1,
                                                       pretrain.encoder, work / "encoder")
        log.info("encoder on held-out images: %s", seeing)
        stage_metrics.update({f"encoder/{k}": v for k, v in seeing.items()})
        stage_metrics["encoder/wall_time_s"] = encoder_summary.wall_time_s
    if pretrain.grounding.steps:
        names = [category_names[c] for c in categories]
        grid_ids = grid_word_ids(patches, names, adapter.tokenizer)
        grounding = ground_language_model(adapter, examples, grid_ids, names, pretrain.grounding,
                                          work / "grounding")
        stage_metrics.update({f"grounding/{k}": v for k, v in grounding.mean_metrics.items()})
        stage_metrics["grounding/wall_time_s"] = grounding.wall_time_s

    base_run = pretrain.base.model_copy(update={"trainer": trainer.model_copy(
        update={"out_dir": str(work / "umm")})})
    base_summary = train_umm(adapter, examples, base_run)
    metrics = {"parameters": count_parameters(adapter.model)["total"],
               **{f"vq/{k}": v for k, v in quality.items()},
               "vq/steps": vq_summary.final_step, "vq/wall_time_s": vq_summary.wall_time_s, **stage_metrics,
               **{f"base/{k}": v for k, v in base_summary.mean_metrics.items()},
               "base/steps": base_summary.final_step, "base/wall_time_s": base_summary.wall_time_s,
               "pretrain_wall_time_s": time.perf_counter() - started}
    reference = {"path": pretrain.output_dir, "fingerprint": fp, "metrics": metrics}
    with atomic_directory(pretrain.output_dir) as building:
        adapter.save_pretrained(building)
        atomic_write(building / FINGERPRINT_FILE,
                     lambda tmp: tmp.write_text(json.dumps(reference, indent=2)))
    return reference
