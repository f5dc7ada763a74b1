"""Scoring a model on an understanding question set (``questions.build_questions``) and its metrics.

Answer protocol: the answer is *constrained to the item's options*. The model scores every option with
``option_scores(images, questions, options) -> list[list[float]]`` — for ``JanusAdapter`` the summed
log-likelihood of the option's tokens and the closing eos given image + question — and the argmax is the
prediction (ties: the first option). There is no free-form generation or answer parsing, so a model can
never be wrong by formatting and chance level is 1 / #options (or the majority answer, reported beside).

Images are an (N, H, W, 3) uint8 array plus an image_id -> row mapping (``image_array`` builds both).
Identical (image, question, options) items — e.g. POPE positives shared by the three settings — are scored
once. Metric keys are flat: ``und/<type>_acc``, ``und/<type>_majority`` (share of the most
common answer in the set: what a constant answerer gets), ``und/<type>_n``, ``und/pope_<setting>_<metric>``,
``und/pope_acc`` and ``und/pope_f1`` (means over the settings) and ``und/overall`` (mean of the per-type
accuracies, POPE counted by ``und/pope_acc``). Types absent from the set have no keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from sgt_pipeline.evaluation.pope import METRICS, margin_auroc, margin_word_spread, pope_table, yes_no_margins
from sgt_pipeline.evaluation.questions import POPE_SETTINGS, QUESTION_TYPES
from sgt_pipeline.rendering.images import read_rgb


class OptionScorer(Protocol):
    def option_scores(self, images: np.ndarray, questions: list[str], options: list[list[str]]) -> list[list[float]]:
        ...


def image_array(coco: Any, images_dir: str | Path | None = None,
                image_ids: list[int] | None = None) -> tuple[np.ndarray, dict[int, int]]:
    """(N, H, W, 3) uint8 images of ``coco`` (all the same size) and image_id -> row.

    Files are ``images_dir``/file_name, or the records' ``path`` (as ``ingestion.tables.to_coco`` sets).
    """
    ids = sorted(coco.imgs) if image_ids is None else list(image_ids)
    arrays = []
    for image_id in ids:
        record = coco.imgs[image_id]
        if images_dir is not None:
            record = {**record, "path": str(Path(images_dir) / record["file_name"])}
        arrays.append(read_rgb(record))
    if len({a.shape for a in arrays}) > 1:
        raise ValueError("images differ in size; resize them to the model's resolution first")
    return np.stack(arrays) if arrays else np.zeros((0, 1, 1, 3), np.uint8), {i: k for k, i in enumerate(ids)}


def score_questions(model: OptionScorer, questions: pd.DataFrame, images: np.ndarray,
                    rows: Mapping[int, int], batch_size: int = 64) -> pd.DataFrame:
    """The question table plus ``scores`` (one per option), ``prediction`` (argmax option) and ``correct``."""
    keys = [(int(i), q, tuple(o)) for i, q, o in zip(questions["image_id"], questions["question"], questions["options"])]
    missing = {k[0] for k in keys} - set(rows)
    if missing:
        raise KeyError(f"no image row for image ids {sorted(missing)[:10]}")
    unique = list(dict.fromkeys(keys))
    scored: dict[tuple, list[float]] = {}
    for start in range(0, len(unique), batch_size):
        batch = unique[start:start + batch_size]
        pixels = images[[rows[image_id] for image_id, _, _ in batch]]
        scores = model.option_scores(pixels, [q for _, q, _ in batch], [list(o) for _, _, o in batch])
        if len(scores) != len(batch) or any(len(s) != len(k[2]) for s, k in zip(scores, batch)):
            raise ValueError("option_scores must return one score per option of every question")
        scored.update(zip(batch, ([float(v) for v in s] for s in scores)))
    out = questions.copy()
    out["scores"] = [scored[k] for k in keys]
    out["prediction"] = [k[2][int(np.argmax(scored[k]))] for k in keys]
    out["correct"] = out["prediction"] == out["answer"]
    return out


def understanding_metrics(predictions: pd.DataFrame) -> dict[str, float]:
    """Flat ``und/...`` metrics of a scored question table (see the module docstring)."""
    metrics: dict[str, float] = {}
    accuracies = []
    for question_type in QUESTION_TYPES:
        part = predictions[predictions["type"] == question_type]
        if not len(part):
            continue
        if question_type == "pope":
            table = pope_table(part)
            for setting in POPE_SETTINGS:
                if setting in table.index:
                    metrics.update({f"und/pope_{setting}_{m}": float(table.loc[setting, m]) for m in METRICS})
            metrics["und/pope_acc"] = float(table.loc["mean", "acc"])
            metrics["und/pope_f1"] = float(table.loc["mean", "f1"])
            if "scores" in part:
                metrics.update(_pope_margin_metrics(part))
            accuracy = metrics["und/pope_acc"]
        else:
            accuracy = metrics[f"und/{question_type}_acc"] = float(part["correct"].mean())
        metrics[f"und/{question_type}_majority"] = float(part["answer"].value_counts().iloc[0] / len(part))
        metrics[f"und/{question_type}_n"] = float(len(part))
        if "scores" in part:
            metrics[f"und/{question_type}_nll"] = _answer_nll(part, "scores")
        if "shuffled_scores" in part:
            metrics[f"und/{question_type}_nll_shuffled"] = _answer_nll(part, "shuffled_scores")
        accuracies.append(accuracy)
    if accuracies:
        metrics["und/overall"] = float(np.mean(accuracies))
    return metrics


def _pope_margin_metrics(part: pd.DataFrame) -> dict[str, float]:
    margins = yes_no_margins(part)
    metrics = {f"und/pope_{setting}_auroc": margin_auroc(part["answer"][chosen], margins[chosen])
               for setting in POPE_SETTINGS if (chosen := (part["sampling"] == setting).to_numpy()).any()}
    metrics["und/pope_auroc"] = float(np.mean(list(metrics.values())))
    metrics["und/pope_margin_spread"] = margin_word_spread(part, margins)
    return metrics


def _answer_nll(part: pd.DataFrame, column: str) -> float:
    return float(-np.mean([scores[list(options).index(answer)]
                           for options, scores, answer in zip(part["options"], part[column], part["answer"])]))


def shuffled_rows(rows: Mapping[int, int], seed: int = 0) -> dict[int, int]:
    """Each image id mapped to another image's row (a seeded derangement: no image keeps its own)."""
    ids = list(rows)
    if len(ids) < 2:
        raise ValueError("shuffling images needs at least two")
    order = np.random.default_rng(seed).permutation(len(ids))
    return {ids[order[k]]: rows[ids[order[(k + 1) % len(ids)]]] for k in range(len(ids))}


def evaluate_understanding(model: OptionScorer, questions: pd.DataFrame, images: np.ndarray,
                           rows: Mapping[int, int], batch_size: int = 64,
                           shuffled_images: bool = False, seed: int = 0) -> tuple[pd.DataFrame, dict[str, float]]:
    """Score ``model`` on ``questions``: (per-item predictions, flat metrics). ``shuffled_images`` also scores
    every question against another image of the split (``shuffled_scores``, ``und/<type>_nll_shuffled``)."""
    predictions = score_questions(model, questions, images, rows, batch_size)
    if shuffled_images:
        control = score_questions(model, questions, images, shuffled_rows(rows, seed), batch_size)
        predictions["shuffled_scores"] = control["scores"]
    return predictions, understanding_metrics(predictions)
