"""Nodes of the ``study`` pipeline (thin: the work is in ``sgt_pipeline.study``)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from pycocotools.coco import COCO

from sgt_pipeline.evaluation.evaluate import EvaluationConfig
from sgt_pipeline.evaluation.held_out import held_out_set
from sgt_pipeline.models.adapter import JanusAdapter
from sgt_pipeline.rendering import Palette
from sgt_pipeline.study import (
    StudyConfig,
    StudyInputs,
    claims_table,
    run_study,
    study_markdown,
    study_metrics,
    study_plot,
    summary_table,
)
from sgt_pipeline.training.examples import load_split_examples
from sgt_pipeline.training.post_train import PostTrainConfig
from sgt_pipeline.world import WorldConfig


def run_proxy_study(raw_dataset: dict, images: pd.DataFrame, qa: pd.DataFrame, captions: pd.DataFrame,
                    targets_index: pd.DataFrame, targets: dict[str, Callable], palettes: dict, base_model: dict,
                    train: PostTrainConfig, evaluation: EvaluationConfig, config: StudyConfig) -> pd.DataFrame:
    """Train and evaluate every (arm, seed); the long results table."""
    rendered = set(targets_index["kind"])
    missing = sorted({a.proxy_kind for a in config.arms} - rendered - {"none"})
    if missing:
        raise ValueError(f"study arms need proxy targets {missing}, not rendered (rendering.kinds)")
    tables = (images, qa, captions, targets_index, targets)
    val_kinds = sorted(({a.proxy_kind for a in config.arms} | {"instance"}) & rendered)
    val = load_split_examples(evaluation.split, *tables, proxy_kinds=val_kinds)
    coco = COCO(raw_dataset["splits"][evaluation.split]["instances_json"])
    inputs = StudyInputs(
        base_path=base_model["path"], base_fingerprint=str(base_model.get("fingerprint", base_model["path"])),
        train=load_split_examples("train", *tables), val=val, coco=coco,
        palettes={k: Palette.from_dict(v) for k, v in palettes.items()},
        world=WorldConfig.model_validate(raw_dataset["config"]) if raw_dataset.get("kind") == "shapes" else None,
        held_out=held_out_set(JanusAdapter.from_pretrained(base_model["path"]), val, coco,
                              config.questions_per_type, config.generation_prompts),
        evaluation=EvaluationConfig.model_validate({**evaluation.model_dump(), **config.evaluation}))
    return run_study(inputs, train.run, config)


def report_proxy_study(results: pd.DataFrame, config: StudyConfig):
    """Summary and claims tables, DVC metrics, the plot and the Markdown report."""
    summary = summary_table(results, config)
    claims = claims_table(results, config)
    compute = results.loc[results["metric"].isin(["time/train_s", "time/eval_s"]), "value"].sum()
    return (summary, claims, study_metrics(summary), study_plot(results, summary, config),
            study_markdown(results, summary, claims, config, compute))
