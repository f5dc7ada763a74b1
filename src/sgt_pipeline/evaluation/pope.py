"""POPE metrics (Li et al. 2023) from yes/no answers: accuracy, precision, recall, F1 and yes-ratio.

"yes" is the positive class. With no "yes" prediction precision is 0 (as sklearn's zero_division=0), and
F1 is 0 when precision + recall is 0. ``pope_table`` reports each sampling setting and their mean, the
number POPE papers quote as the average.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from sgt_pipeline.evaluation.questions import POPE_SETTINGS

METRICS = ("acc", "precision", "recall", "f1", "yes_ratio")


def _is_yes(values: Iterable) -> np.ndarray:
    return np.array([v if isinstance(v, (bool, np.bool_)) else str(v).strip().lower() == "yes" for v in values],
                    dtype=bool)


def pope_metrics(answers: Iterable, predictions: Iterable) -> dict[str, float]:
    """Metrics of yes/no ``predictions`` against ``answers`` (strings "yes"/"no" or booleans)."""
    truth, predicted = _is_yes(answers), _is_yes(predictions)
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} answers but {len(predicted)} predictions")
    if len(truth) == 0:
        raise ValueError("no answers to score")
    tp = int((truth & predicted).sum())
    precision = tp / predicted.sum() if predicted.any() else 0.0
    recall = tp / truth.sum() if truth.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"acc": float((truth == predicted).mean()), "precision": float(precision), "recall": float(recall),
            "f1": float(f1), "yes_ratio": float(predicted.mean())}


def pope_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per-setting metrics and their mean ("mean" row) from rows with sampling, answer and prediction."""
    rows = {}
    for setting in POPE_SETTINGS:
        part = predictions[predictions["sampling"] == setting]
        if len(part):
            rows[setting] = pope_metrics(part["answer"], part["prediction"])
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(METRICS))
    if len(table):
        table.loc["mean"] = table.mean(axis=0)
    return table
