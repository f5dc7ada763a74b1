"""Nodes of the ``train`` pipeline."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from sgt_pipeline.training.examples import load_split_examples
from sgt_pipeline.training.post_train import PostTrainConfig, post_train


def post_train_model(images: pd.DataFrame, qa: pd.DataFrame, captions: pd.DataFrame,
                     targets_index: pd.DataFrame, targets: dict[str, Callable], base_model: dict,
                     config: PostTrainConfig) -> tuple[dict, dict]:
    """SGT post-training from the base model: (reference to the trained model, training metrics)."""
    kind = config.run.proxy_kind
    examples = load_split_examples("train", images, qa, captions, targets_index, targets,
                                   proxy_kinds=[] if kind == "none" else [kind])
    reference = post_train(examples, base_model, config)
    return reference, reference["metrics"]
