"""Quality of generated proxy targets against the rendered ground truth (``rendering.targets``).

``proxy_metrics(kind, generated, targets, palette)`` takes N pairs of (H, W, 3) uint8 images (equal shape
within a pair; resize generated images to the target size first, e.g. with ``rendering.resize_target``) and
returns flat ``proxy/...`` metrics. Definitions:

- ``semantic``: both images decoded with the category ``palette`` (required) by nearest colour. One confusion
  matrix over the whole set; IoU_c = TP / (TP + FP + FN). ``proxy/miou`` averages IoU over the NON-background
  categories present in the ground truth or the prediction anywhere in the set; the background (label 0)
  IoU is ``proxy/background_iou``. ``proxy/pixel_acc`` counts all pixels, ``proxy/fg_pixel_acc`` only
  ground-truth foreground pixels (the background dominates small scenes).
- ``instance`` / ``panoptic``: a target paints label k (k-th instance by descending area) in the k-th
  project colour, black = background; colours are unique per instance, and an occluded instance may be
  split into several disconnected parts — so a SEGMENT is all pixels of one decoded palette label (not a
  connected component). Targets are decoded exactly with the whole project palette; generated images
  with ``palette`` or, by default, ``Palette.for_instances(n)`` with n the largest ground-truth label in
  the set (a fixed decoder: fewer colours means more robustness to generation noise). Which colour a
  segment has does not matter; the scores are class-agnostic (the colours carry no category):
  * ``proxy/instance_iou``: per image, Hungarian matching (maximum total IoU) of GT to predicted segments;
    mean matched IoU over all GT instances of the set, unmatched GT instances scoring 0.
  * ``proxy/pq``, ``proxy/sq``, ``proxy/rq`` (Kirillov et al. 2019): a (GT, prediction) pair with IoU > 0.5
    is a TP (unique by construction); SQ = mean TP IoU, RQ = TP / (TP + FP/2 + FN/2), PQ = SQ x RQ, counts
    accumulated over the set. GT background is VOID, as unlabelled pixels are in COCO panoptic: the
    IoU ignores predicted pixels on void, and an unmatched prediction lying more than half on void is not a
    false positive (so specks of decoding noise on the background are not punished).
  * ``proxy/foreground_iou``: IoU of the foreground (any instance) masks, accumulated over the set.
- ``depth``: grey level / 255 (near = 1, per-image normalised as rendered; generated images via BT.601
  luma). ``proxy/depth_rmse`` and ``proxy/depth_mae`` per image, averaged; ``proxy/depth_spearman`` = mean
  per-image Spearman rank correlation (invariant to any monotone rescaling; constant images skipped).
  No AbsRel: per-image normalisation puts the farthest pixel at 0, so relative error is undefined there.
- ``edge``: edge pixel = luma >= 128. With a 1-pixel tolerance (3x3 dilation): precision = predicted edge
  pixels within 1 px of a GT edge / predicted edge pixels, recall likewise; counts accumulated over the
  set; ``proxy/edge_f1`` = 2PR / (P + R). Also ``proxy/pixel_acc`` of the binary maps.
- ``reconstruction``: ``proxy/psnr`` (per image, mean; capped at 100 dB for identical images), ``proxy/mae``.

Undefined metrics (nothing to score) are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from sgt_pipeline.rendering.palette import Palette, project_colors
from sgt_pipeline.rendering.targets import luminance

Images = np.ndarray | Sequence[np.ndarray]
PROXY_KINDS = ("semantic", "instance", "panoptic", "depth", "edge", "reconstruction")


def proxy_metrics(kind: str, generated: Images, targets: Images, palette: Palette | None = None) -> dict[str, float]:
    """Flat ``proxy/...`` metrics of generated images against rendered targets of ``kind`` (see module doc)."""
    pairs = _pairs(generated, targets)
    if kind == "semantic":
        if palette is None:
            raise ValueError("semantic targets need the category palette (Palette.for_categories)")
        return semantic_metrics([(palette.decode(g), palette.decode(t)) for g, t in pairs], palette.labels)
    if kind in ("instance", "panoptic"):
        truth = [_decode_exact(t) for _, t in pairs]
        if palette is None:
            palette = Palette.for_instances(max((int(t.max()) for t in truth if t.size), default=0))
        return instance_metrics([(palette.decode(g), t) for (g, _), t in zip(pairs, truth)])
    if kind == "depth":
        return depth_metrics([(luminance(g) / 255.0, luminance(t) / 255.0) for g, t in pairs])
    if kind == "edge":
        return edge_metrics([(luminance(g) >= 128, luminance(t) >= 128) for g, t in pairs])
    if kind == "reconstruction":
        return reconstruction_metrics(pairs)
    raise ValueError(f"unknown proxy kind {kind!r}; expected one of {PROXY_KINDS}")


def _pairs(generated: Images, targets: Images) -> list[tuple[np.ndarray, np.ndarray]]:
    generated = [generated] if isinstance(generated, np.ndarray) and generated.ndim == 3 else list(generated)
    targets = [targets] if isinstance(targets, np.ndarray) and targets.ndim == 3 else list(targets)
    if len(generated) != len(targets):
        raise ValueError(f"{len(generated)} generated images for {len(targets)} targets")
    pairs = []
    for index, (g, t) in enumerate(zip(generated, targets)):
        g, t = np.asarray(g), np.asarray(t)
        if g.shape != t.shape or g.ndim != 3 or g.shape[-1] != 3:
            raise ValueError(f"pair {index}: generated {g.shape} vs target {t.shape}; expected equal (H, W, 3)")
        pairs.append((g, t))
    return pairs


@lru_cache(maxsize=1)
def _full_palette() -> Palette:
    return Palette(range(len(project_colors())), project_colors())


def _decode_exact(target: np.ndarray) -> np.ndarray:
    """Instance labels of a rendered target: index of its colour in the full project sequence."""
    return _full_palette().decode(target)


# ----------------------------------------------------------------------------- semantic
def semantic_metrics(label_pairs: list[tuple[np.ndarray, np.ndarray]], labels: np.ndarray) -> dict[str, float]:
    """mIoU (non-background), background IoU and pixel accuracies of (predicted, true) label maps."""
    labels = np.asarray(labels)
    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)  # rows: truth, columns: prediction
    for predicted, truth in label_pairs:
        t, p = np.searchsorted(labels, truth.ravel()), np.searchsorted(labels, predicted.ravel())
        confusion += np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / union
    foreground = (labels != 0) & (union > 0)
    background = labels == 0
    fg_pixels = confusion[~background].sum()
    return {
        "proxy/miou": float(iou[foreground].mean()) if foreground.any() else float("nan"),
        "proxy/background_iou": float(iou[background][0]) if background.any() and union[background][0] else float("nan"),
        "proxy/pixel_acc": float(tp.sum() / confusion.sum()) if confusion.sum() else float("nan"),
        "proxy/fg_pixel_acc": float(tp[~background].sum() / fg_pixels) if fg_pixels else float("nan"),
    }


# ----------------------------------------------------------------------------- instance / panoptic
def _segment_overlaps(predicted: np.ndarray, truth: np.ndarray):
    """Segment ids, areas and the (GT x prediction) intersection matrix; label 0 = background / void."""
    gt_ids, gt_inverse = np.unique(truth.ravel(), return_inverse=True)
    pr_ids, pr_inverse = np.unique(predicted.ravel(), return_inverse=True)
    joint = np.bincount(gt_inverse * len(pr_ids) + pr_inverse, minlength=len(gt_ids) * len(pr_ids))
    joint = joint.reshape(len(gt_ids), len(pr_ids))
    return gt_ids, pr_ids, joint


def instance_metrics(label_pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Matched-instance IoU, PQ/SQ/RQ and foreground IoU of (predicted, true) instance label maps."""
    matched_ious: list[np.ndarray] = []
    tp_iou_sum, tp, fp, fn = 0.0, 0, 0, 0
    fg_inter = fg_union = 0
    for predicted, truth in label_pairs:
        fg_inter += int(((predicted != 0) & (truth != 0)).sum())
        fg_union += int(((predicted != 0) | (truth != 0)).sum())
        gt_ids, pr_ids, joint = _segment_overlaps(predicted, truth)
        gt_area, pr_area = joint.sum(1), joint.sum(0)
        gt_rows, pr_cols = gt_ids != 0, pr_ids != 0
        inter = joint[np.ix_(gt_rows, pr_cols)].astype(np.float64)
        gt_a, pr_a = gt_area[gt_rows], pr_area[pr_cols]
        void = joint[~gt_rows][:, pr_cols].sum(0) if (~gt_rows).any() else np.zeros(pr_cols.sum(), dtype=np.int64)
        # Plain IoU (leaking into the background costs) for the Hungarian score.
        iou = inter / (gt_a[:, None] + pr_a[None, :] - inter) if inter.size else inter
        best = np.zeros(len(gt_a))
        if inter.size:
            rows, cols = linear_sum_assignment(iou, maximize=True)
            best[rows] = iou[rows, cols]
        matched_ious.append(best)
        # PQ IoU leaves out predicted pixels on void; IoU > 0.5 makes matches unique.
        pq_iou = inter / (gt_a[:, None] + pr_a[None, :] - inter - void[None, :]) if inter.size else inter
        match = pq_iou > 0.5
        tp += int(match.sum())
        tp_iou_sum += float(pq_iou[match].sum())
        fn += int((~match.any(1)).sum())
        unmatched = ~match.any(0)
        fp += int((unmatched & (void <= 0.5 * pr_a)).sum())
    all_matched = np.concatenate(matched_ious) if matched_ious else np.zeros(0)
    sq = tp_iou_sum / tp if tp else (0.0 if fp + fn else float("nan"))
    rq = tp / (tp + 0.5 * fp + 0.5 * fn) if tp + fp + fn else float("nan")
    return {
        "proxy/instance_iou": float(all_matched.mean()) if all_matched.size else float("nan"),
        "proxy/pq": sq * rq,
        "proxy/sq": sq,
        "proxy/rq": rq,
        "proxy/foreground_iou": fg_inter / fg_union if fg_union else float("nan"),
    }


# ----------------------------------------------------------------------------- depth, edge, reconstruction
def depth_metrics(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """RMSE / MAE on per-image normalised depth (0..1) and mean per-image Spearman correlation."""
    rmse, mae, rho = [], [], []
    for predicted, truth in pairs:
        error = predicted.astype(np.float64) - truth
        rmse.append(np.sqrt(np.mean(error**2)))
        mae.append(np.mean(np.abs(error)))
        if np.ptp(predicted) > 0 and np.ptp(truth) > 0:  # a rank correlation needs variation on both sides
            rho.append(np.corrcoef(rankdata(predicted.ravel()), rankdata(truth.ravel()))[0, 1])
    return {
        "proxy/depth_rmse": float(np.mean(rmse)) if rmse else float("nan"),
        "proxy/depth_mae": float(np.mean(mae)) if mae else float("nan"),
        "proxy/depth_spearman": float(np.mean(rho)) if rho else float("nan"),
    }


def dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 (8-neighbour) binary dilation: pixels within 1 px (chessboard) of a True pixel."""
    return ndimage.binary_dilation(mask, np.ones((3, 3), dtype=bool))


def edge_metrics(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Edge precision / recall / F1 with a 1-pixel tolerance, and binary pixel accuracy."""
    hit_pred = n_pred = hit_true = n_true = correct = total = 0
    for predicted, truth in pairs:
        hit_pred += int((predicted & dilate(truth)).sum())
        hit_true += int((truth & dilate(predicted)).sum())
        n_pred, n_true = n_pred + int(predicted.sum()), n_true + int(truth.sum())
        correct, total = correct + int((predicted == truth).sum()), total + truth.size
    if n_pred == 0 and n_true == 0:
        precision = recall = f1 = float("nan")
    else:
        precision = hit_pred / n_pred if n_pred else 0.0
        recall = hit_true / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "proxy/edge_f1": f1,
        "proxy/edge_precision": precision,
        "proxy/edge_recall": recall,
        "proxy/pixel_acc": correct / total if total else float("nan"),
    }


def reconstruction_metrics(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean per-image PSNR (dB, 8-bit peak; identical images count as 100 dB) and MAE in 0..1."""
    psnr, mae = [], []
    for predicted, truth in pairs:
        error = predicted.astype(np.float64) - truth.astype(np.float64)
        mse = np.mean(error**2)
        psnr.append(100.0 if mse == 0 else min(100.0, 10 * np.log10(255.0**2 / mse)))
        mae.append(np.mean(np.abs(error)) / 255.0)
    return {
        "proxy/psnr": float(np.mean(psnr)) if psnr else float("nan"),
        "proxy/mae": float(np.mean(mae)) if mae else float("nan"),
    }
