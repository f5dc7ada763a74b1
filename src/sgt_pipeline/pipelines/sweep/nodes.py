"""Nodes of the ``sweep`` pipeline (thin: the work is in ``sgt_pipeline.sweep``)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from pycocotools.coco import COCO

from sgt_pipeline.sweep import SweepConfig, build_runner, open_study, run_worker
from sgt_pipeline.sweep.results import (
    best_train_parameters,
    best_trials,
    history_plot,
    importance_plot,
    pareto_plot,
    summary_markdown,
    trials_table,
)
from sgt_pipeline.sweep.storage import storage_url
from sgt_pipeline.training.examples import load_split_examples
from sgt_pipeline.training.post_train import PostTrainConfig


def run_sweep(raw_dataset: dict, images: pd.DataFrame, qa: pd.DataFrame, captions: pd.DataFrame,
              targets_index: pd.DataFrame, targets: dict[str, Callable], base_model: dict,
              train: PostTrainConfig, config: SweepConfig) -> dict:
    """Join (or create) the study and run trials until it has ``n_trials`` finished ones."""
    study = open_study(config)
    train_examples = load_split_examples("train", images, qa, captions, targets_index, targets)
    val = load_split_examples("val", images, qa, captions, targets_index, targets, proxy_kinds=[])
    coco = COCO(raw_dataset["splits"]["val"]["instances_json"])
    runner = build_runner(config, base_model["path"], train.run, train_examples, val, coco)
    finished = run_worker(study, runner, config)
    return {"study": config.study_name, "storage": storage_url(config.storage), "finished_this_run": finished,
            "trials": len(study.trials), "best": [t.number for t in best_trials(study)]}


def report_sweep(summary: dict, train: PostTrainConfig, config: SweepConfig):
    """Tables, plots, best parameters and summary of the whole study (every worker's trials)."""
    study = open_study(config)
    table = trials_table(study)
    return (table, history_plot(study), pareto_plot(study), importance_plot(study),
            best_train_parameters(study, train), summary_markdown(study, table, summary["storage"]))
