"""Nodes of the ``evaluation`` pipeline (thin: the work is in ``sgt_pipeline.evaluation``)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from pycocotools.coco import COCO

from sgt_pipeline.evaluation.detection import SegmentationDetector
from sgt_pipeline.evaluation.evaluate import (
    Evaluation,
    EvaluationConfig,
    evaluate_model,
)
from sgt_pipeline.evaluation.report import grid_image, layer_plot, markdown_report
from sgt_pipeline.models.adapter import JanusAdapter
from sgt_pipeline.rendering import Palette
from sgt_pipeline.training.examples import load_split_examples
from sgt_pipeline.training.post_train import PostTrainConfig
from sgt_pipeline.world import WorldConfig


def evaluate_sgt_model(sgt_model: dict, raw_dataset: dict, images: pd.DataFrame, qa: pd.DataFrame,
                       captions: pd.DataFrame, targets_index: pd.DataFrame, targets: dict[str, Callable],
                       palettes: dict, train: PostTrainConfig, config: EvaluationConfig):
    """Metrics, per-question answers, per-layer tables, the GenEval table, and the two PNGs."""
    proxy_kind = train.run.proxy_kind
    kinds = sorted({k for k in (proxy_kind, "instance") if k != "none"} & set(targets_index["kind"]))
    split = load_split_examples(config.split, images, qa, captions, targets_index, targets, kinds)
    coco = COCO(raw_dataset["splits"][config.split]["instances_json"])
    world = WorldConfig.model_validate(raw_dataset["config"]) if raw_dataset.get("kind") == "shapes" else None
    adapter = JanusAdapter.from_pretrained(sgt_model["path"])
    detector = (SegmentationDetector.from_pretrained(config.detector_path, config.detector_threshold)
                if config.detector_path else None)
    evaluation = evaluate_model(
        adapter, coco, split.images, [int(i) for i in split.image_ids], split.targets,
        {k: Palette.from_dict(v) for k, v in palettes.items()}, proxy_kind, config, world, detector)
    answers = evaluation.answers.assign(options=evaluation.answers["options"].map("|".join), **{
        column: evaluation.answers[column].map(lambda s: list(map(float, s)))
        for column in ("scores", "shuffled_scores") if column in evaluation.answers})
    return (evaluation.metrics, answers, evaluation.probe, evaluation.attention, evaluation.geneval,
            layer_plot(evaluation), grid_image(evaluation))


def write_report(metrics: dict, probe: pd.DataFrame, attention: pd.DataFrame, sgt_model: dict,
                 train: PostTrainConfig) -> str:
    evaluation = Evaluation(metrics, pd.DataFrame(), probe, attention)
    return markdown_report(evaluation, sgt_model["path"], train.run.proxy_kind)
