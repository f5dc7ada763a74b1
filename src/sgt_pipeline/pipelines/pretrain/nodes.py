"""Nodes of the ``pretrain`` pipeline."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from sgt_pipeline.rendering import Palette
from sgt_pipeline.training.base_model import ModelConfig, PretrainConfig, prepare_base_model
from sgt_pipeline.training.examples import load_split_examples


def pretrain_base_model(images: pd.DataFrame, qa: pd.DataFrame, captions: pd.DataFrame,
                        targets_index: pd.DataFrame, targets: dict[str, Callable], palettes: dict,
                        categories: pd.DataFrame, model: ModelConfig, pretrain: PretrainConfig) -> dict:
    """Reference to the base model; pretrains the tiny Janus only when its inputs or config changed."""
    examples = load_split_examples("train", images, qa, captions, targets_index, targets,
                                   proxy_kinds=pretrain.target_kinds)
    return prepare_base_model(examples, model, pretrain, {k: Palette.from_dict(v) for k, v in palettes.items()},
                              dict(zip(categories["category_id"].astype(int), categories["name"])))
