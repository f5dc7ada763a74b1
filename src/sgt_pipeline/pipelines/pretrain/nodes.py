"""Nodes of the ``pretrain`` pipeline."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from sgt_pipeline.rendering import Palette
from sgt_pipeline.training.base_model import ModelConfig, PretrainConfig, prepare_base_model
from sgt_pipeline.training.examples import load_split_examples


def pretrain_base_model(images: pd.DataFrame, qa: pd.DataFrame, captions: pd.DataFrame,
                        targets_index: pd.DataFrame, targets: dict[str, Callable], palettes: dict,
                        model: ModelConfig, pretrain: PretrainConfig) -> dict:
    """Reference to the base model; pretrains the tiny Janus only when its inputs or config changed."""
    # Only the kinds the VQ trains on, and instance targets for its round-trip check.
    examples = load_split_examples("train", images, qa, captions, targets_index, targets,
                                   proxy_kinds=sorted({*pretrain.vq_kinds, "instance"}))
    return prepare_base_model(examples, model, pretrain, Palette.from_dict(palettes["instance"]))
