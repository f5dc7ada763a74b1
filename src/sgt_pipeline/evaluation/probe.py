"""Linear-probe separability of image features per language-model layer.

Input: ``features`` (num_layers + 1, N, D) — per layer, one vector per image (the mean of its image-token
hidden states, see ``attention.pooled_image_features``) — and ``labels`` (N, C) multi-label category presence.

Protocol (deterministic for a ``seed``):

- Categories present in every image or in none are dropped (nothing to separate).
- One random split of the images (``numpy.random.default_rng(seed)``; not stratified — multi-label
  stratification has no canonical form), ``test_fraction`` held out; the same split for every layer.
- Features standardised with the training split's mean and std (a std below 1e-8 counts as 1).
- Per layer and category an L2-regularised logistic regression, fitted full-batch with L-BFGS (scipy):
  minimise mean binary cross-entropy + (l2 / 2) ||w||^2 (bias not penalised). The C categories are fitted
  as one multi-output problem whose objective is the sum of the per-category objectives, i.e. C
  independent probes. scikit-learn's ``LogisticRegression(C=c)`` equals ``l2 = 1 / (c * n_train)``.
- ``l2`` given as a sequence (the default): chosen per layer and category by held-in validation — fit
  on 75% of the training split (seeded), keep the strength with the lowest validation log-loss (ties: the
  stronger), refit on the whole training split. Without this a weakly regularised probe overfits
  high-dimensional features and scores BELOW the majority baseline on unrelated labels; with it, it falls
  back to the constant guess. A single float fixes the strength.

Columns of ``probe_layers`` (one row per layer; every score averaged over the kept categories):

- ``probe_acc``: held-out accuracy (prediction = logit > 0).
- ``probe_balanced_acc``: held-out mean recall over the classes (present / absent) that occur in the test
  split — 0.5 for a constant guess.
- ``majority_acc``: held-out accuracy of always predicting the training split's majority class (baseline).
- ``fisher_ratio``: Fisher's criterion of the held-out features projected on the probe's weight vector w,
  J = (m1 - m0)^2 / (s1^2 + s0^2), with m and s^2 the mean and (population) variance of w.x over the test
  images with / without the category (categories with both classes in the test split). Measured on
  held-out data along a direction fitted on the training data, so J stays near 0 (about 1/n_test) for
  unrelated labels instead of growing with D as an in-sample LDA ratio would.
- ``scatter_ratio``: trace(S_b) / trace(S_w) of the standardised features of all images for present vs
  absent (S_b = sum_k n_k (mu_k - mu)(mu_k - mu)^T, S_w = sum_k sum_i (x_i - mu_k)(x_i - mu_k)^T): the share
  of feature variance the label explains, direction-free (no fitting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize

MIN_SELECTION_IMAGES = 8
FALLBACK_L2 = 1.0
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
PROBE_COLUMNS = ("layer", "probe_acc", "probe_balanced_acc", "majority_acc", "fisher_ratio", "scatter_ratio")


def _as_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor (possibly bf16, possibly on a device)
        array = array.detach().float().cpu().numpy()
    return np.asarray(array)


def split_indices(n: int, seed: int = 0, test_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random (train, test) index split with at least one image on each side."""
    if n < 2:
        raise ValueError(f"need at least 2 images for a train/test split; got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(np.clip(round(test_fraction * n), 1, n - 1))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float | np.ndarray = 1e-2, max_iter: int = 500, start: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Independent L2 logistic regressions of each column of ``y`` (n, C) on ``x`` (n, D): weights (D, C), bias (C,).

    ``l2`` is one strength or one per column; ``start`` an optional (D + 1, C) warm start (weights, then bias).
    """
    n, d = x.shape
    c = y.shape[1]
    l2 = np.broadcast_to(np.asarray(l2, dtype=np.float64), (c,))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * c].reshape(d, c), theta[d * c :]
        z = x @ w + b
        loss = (np.logaddexp(0.0, z) - y * z).mean(0).sum() + 0.5 * np.sum(l2 * w * w)
        residual = (0.5 * (1.0 + np.tanh(0.5 * z)) - y) / n  # stable sigmoid
        grad = np.concatenate([(x.T @ residual + l2 * w).ravel(), residual.sum(0)])
        return float(loss), grad

    if start is None:  # w = 0 with the bias at the training log-odds: the constant-guess solution
        prior = np.clip(y.mean(0), 1e-3, 1 - 1e-3)
        start = np.vstack([np.zeros((d, c)), np.log(prior / (1 - prior))[None]])
    theta0 = np.concatenate([start[:d].ravel(), start[d]])
    result = minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return result.x[: d * c].reshape(d, c), result.x[d * c :]


def select_l2(x: np.ndarray, y: np.ndarray, grid: Sequence[float], seed: int, max_iter: int) -> np.ndarray:
    """Per column of ``y``: the grid strength with the lowest log-loss on a seeded 25% validation part of ``x``."""
    fit, held = split_indices(len(x), seed + 1, 0.25)
    losses, start = [], None
    for l2 in sorted(grid, reverse=True):  # strong to weak, each fit warm-started from the previous one
        w, b = fit_logistic(x[fit], y[fit], l2, max_iter, start)
        start = np.vstack([w, b[None]])
        z = x[held] @ w + b
        losses.append((np.logaddexp(0.0, z) - y[held] * z).mean(0))
    # argmin takes the first minimum, i.e. the strongest of tied strengths.
    return np.asarray(sorted(grid, reverse=True))[np.argmin(np.stack(losses), axis=0)]


def _fisher(projection: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per column: (m1 - m0)^2 / (var1 + var0) of ``projection`` (n, C) split by binary ``y`` (n, C)."""
    ratios = np.full(y.shape[1], np.nan)
    for k in range(y.shape[1]):
        pos, neg = projection[y[:, k], k], projection[~y[:, k], k]
        if len(pos) and len(neg):
            spread = pos.var() + neg.var()
            gap = (pos.mean() - neg.mean()) ** 2
            ratios[k] = gap / spread if spread > 0 else (np.inf if gap > 0 else np.nan)
    return ratios


def _scatter_ratio(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per column of ``y``: trace(S_b) / trace(S_w) for the two classes it defines."""
    mean = x.mean(0)
    total = ((x - mean) ** 2).sum()
    ratios = np.empty(y.shape[1])
    for k in range(y.shape[1]):
        between = sum(part.shape[0] * ((part.mean(0) - mean) ** 2).sum() for part in (x[y[:, k]], x[~y[:, k]]))
        within = total - between  # total scatter = between + within
        ratios[k] = between / within if within > 0 else np.inf
    return ratios


def probe_layers(
    features,
    labels,
    seed: int = 0,
    test_fraction: float = 0.3,
    l2: float | Sequence[float] = L2_GRID,
    max_iter: int = 500,
) -> pd.DataFrame:
    """One row per layer: held-out probe accuracy, balanced accuracy, majority baseline, Fisher and scatter ratios."""
    features = _as_numpy(features).astype(np.float64)
    labels = _as_numpy(labels)
    if features.ndim == 2:
        features = features[None]
    labels = (labels.reshape(-1, 1) if labels.ndim == 1 else labels).astype(bool)
    if features.ndim != 3 or labels.shape[0] != features.shape[1]:
        raise ValueError(f"features (layers, N, D) and labels (N, C) disagree: {features.shape} vs {labels.shape}")
    varying = labels.any(0) & ~labels.all(0)
    if not varying.any():
        raise ValueError("every category is present in all images or in none; nothing to probe")
    labels = labels[:, varying]
    train, test = split_indices(labels.shape[0], seed, test_fraction)
    y_train, y_test = labels[train], labels[test]
    majority = (y_train.mean(0) >= 0.5)[None, :]
    majority_acc = float((y_test == majority).mean())
    rows = []
    for layer, x in enumerate(features):
        mean, std = x[train].mean(0), x[train].std(0)
        x = (x - mean) / np.where(std > 1e-8, std, 1.0)
        targets = y_train.astype(np.float64)
        # Too few training images to hold some out for choosing the strength: a moderate fixed one.
        if np.isscalar(l2):
            strength = l2
        elif len(train) < MIN_SELECTION_IMAGES:
            strength = FALLBACK_L2
        else:
            strength = select_l2(x[train], targets, l2, seed, max_iter)
        w, b = fit_logistic(x[train], targets, strength, max_iter)
        logits = x[test] @ w + b
        predicted = logits > 0
        rows.append({
            "layer": layer,
            "probe_acc": float((predicted == y_test).mean()),
            "probe_balanced_acc": float(np.mean(_balanced_accuracy(predicted, y_test))),
            "majority_acc": majority_acc,
            "fisher_ratio": float(np.nanmean(_fisher(x[test] @ w, y_test))) if _two_classes(y_test) else np.nan,
            "scatter_ratio": float(np.mean(_scatter_ratio(x, labels))),
        })
    return pd.DataFrame(rows, columns=list(PROBE_COLUMNS))


def _two_classes(y: np.ndarray) -> bool:
    return bool((y.any(0) & ~y.all(0)).any())


def _balanced_accuracy(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per column: mean recall over the classes present in ``truth``."""
    recalls = []
    for cls in (True, False):
        count = (truth == cls).sum(0)
        hits = ((predicted == cls) & (truth == cls)).sum(0)
        recalls.append(np.where(count > 0, hits / np.maximum(count, 1), np.nan))
    return np.nanmean(np.stack(recalls), axis=0)


def layer_metrics(frame: pd.DataFrame, prefix: str, names: Mapping[str, str]) -> dict[str, float]:
    """Flatten a per-layer frame into run metrics: ``{prefix}/{names[column]}_layer_{k}``.

    E.g. ``layer_metrics(probe, "probe", {"probe_acc": "acc"})`` -> ``{"probe/acc_layer_0": ..., ...}``.
    """
    return {
        f"{prefix}/{name}_layer_{int(row['layer'])}": float(row[column])
        for _, row in frame.iterrows()
        for column, name in names.items()
    }
