"""Means with t confidence intervals, paired differences, and the verdict rule.

With a handful of seeds the t interval is wide (3 seeds: mean ± 4.30 standard errors at 95%): a claim
"holds" only when the whole interval of its paired difference lies on the claimed side of zero.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

HOLDS, REVERSED, INCONCLUSIVE = "holds", "does not hold at this scale", "inconclusive"


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a Student-t interval; NaN values are dropped; one value: a zero-width interval
    is not claimed, the bounds are NaN."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def verdict(differences, low: float, high: float) -> str:
    """holds: the interval is above zero; does not hold: below zero; otherwise inconclusive (also when
    every paired difference is exactly zero: the metric does not move at this scale)."""
    d = np.asarray([v for v in differences if np.isfinite(v)], dtype=float)
    if len(d) < 2 or not np.isfinite(low) or np.all(d == 0):
        return INCONCLUSIVE
    if low > 0:
        return HOLDS
    if high < 0:
        return REVERSED
    return INCONCLUSIVE
