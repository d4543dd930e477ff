"""Confidence intervals: a seeded percentile bootstrap over items (scipy.stats.bootstrap)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats

N_RESAMPLES = 1000
CONFIDENCE = 0.95


def bootstrap_ci(
    samples: Sequence[Sequence[float]],
    statistic: Callable[..., float],
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """95% CI of `statistic(*samples)`, resampling each sample's items independently.

    Returns (value, value) when the statistic cannot vary (a single item, or constant data),
    so a CI is always present and never NaN.
    """
    arrays = [np.asarray(s, dtype=float) for s in samples]
    point = float(statistic(*arrays))
    if any(len(a) < 2 for a in arrays) or all(np.ptp(a) == 0 for a in arrays):
        return point, point
    res = stats.bootstrap(
        tuple(arrays),
        lambda *xs: statistic(*xs),
        vectorized=False,
        paired=False,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.isnan(lo) or np.isnan(hi):
        return point, point
    return lo, hi


def mean_ci(values: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high) of per-item values. The mean is vectorised for speed."""
    arr = np.asarray(values, dtype=float)
    if len(arr) == 0:
        return float("nan"), float("nan"), float("nan")
    point = float(arr.mean())
    if len(arr) < 2 or np.ptp(arr) == 0:
        return point, point, point
    res = stats.bootstrap(
        (arr,),
        np.mean,
        vectorized=True,
        n_resamples=N_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)
