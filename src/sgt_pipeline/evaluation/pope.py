"""POPE metrics (Li et al. 2023) from yes/no answers: accuracy, precision, recall, F1 and yes-ratio, and
threshold-free ones from the models' option scores: the AUROC of the yes - no margin (0.5: the margin says
nothing about the answer, even when its sign is always "no") and the margin's spread across the object
words asked about one image (0: the model answers without reading the object word).

"yes" is the positive class. With no "yes" prediction precision is 0 (as sklearn's zero_division=0), and
F1 is 0 when precision + recall is 0. ``pope_table`` reports each sampling setting and their mean, the
number POPE papers quote as the average.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.stats import rankdata

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


def yes_no_margins(predictions: pd.DataFrame) -> np.ndarray:
    """Score of "yes" minus score of "no" per row (rows with ``options`` and ``scores``)."""
    return np.array([scores[list(options).index("yes")] - scores[list(options).index("no")]
                     for options, scores in zip(predictions["options"], predictions["scores"])], dtype=float)


def margin_auroc(answers: Iterable, margins: Iterable) -> float:
    """Probability that a "yes" item has a larger yes - no margin than a "no" item (ties count half):
    the Mann-Whitney form of the ROC AUC. NaN without both classes."""
    truth, margins = _is_yes(answers), np.asarray(list(margins), dtype=float)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if not positives or not negatives:
        return float("nan")
    ranks = rankdata(margins)
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def margin_word_spread(predictions: pd.DataFrame, margins: np.ndarray) -> float:
    """Mean over images of the standard deviation of the yes - no margin across its distinct questions."""
    frame = pd.DataFrame({"image_id": predictions["image_id"].to_numpy(),
                          "question": predictions["question"].to_numpy(), "margin": margins})
    per_image = frame.drop_duplicates(["image_id", "question"]).groupby("image_id")["margin"].std(ddof=0)
    return float(per_image.mean()) if len(per_image) else float("nan")


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
