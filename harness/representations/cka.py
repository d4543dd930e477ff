"""Linear CKA between two models' features on the same inputs (docs/metrics.md §9.1, §9.4).

`CKA(X, Y) = HSIC(X, Y) / sqrt(HSIC(X, X)·HSIC(Y, Y))` with the linear kernel. For centred
features `HSIC(X, Y) ∝ ‖Yᶜᵀ Xᶜ‖²_F`, which avoids the n×n Gram matrices (the same value as
UUEF's `Σ (H·XXᵀ·H) ⊙ (H·YYᵀ·H)`; the test checks it against that formula). The full-set
value is used for n ≤ `FULL_MAX` (the spec prefers it); above, the mean over minibatches of
512, as UUEF reports, since minibatch CKA depends on the batch size.
"""

from __future__ import annotations

import numpy as np

from harness.errors import HarnessError

FULL_MAX = 10_000
MINIBATCH = 512


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Full-set linear CKA of features x (n, d1) and y (n, d2) on the same n inputs."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise HarnessError(f"CKA needs two (n, d) feature matrices on the same inputs, got {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        raise HarnessError("CKA needs at least 2 inputs")
    x = x - x.mean(0)
    y = y - y.mean(0)
    xy = np.linalg.norm(y.T @ x) ** 2
    xx = np.linalg.norm(x.T @ x)
    yy = np.linalg.norm(y.T @ y)
    if xx == 0 or yy == 0:
        return float("nan")  # a constant feature set has no similarity structure
    return float(xy / (xx * yy))


def minibatch_cka(x: np.ndarray, y: np.ndarray, batch_size: int = MINIBATCH, seed: int = 0) -> float:
    """Mean of linear CKA over shuffled minibatches of `batch_size` (the last, smaller one
    dropped when there is more than one), as UUEF reports."""
    n = len(x)
    order = np.random.default_rng(seed).permutation(n)
    starts = range(0, n - batch_size + 1, batch_size) if n >= 2 * batch_size else [0]
    values = [linear_cka(x[order[s:s + batch_size]], y[order[s:s + batch_size]]) for s in starts]
    return float(np.nanmean(values))


def cka(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Full-set CKA for n ≤ 10k, minibatch CKA above."""
    return linear_cka(x, y) if len(x) <= FULL_MAX else minibatch_cka(x, y, seed=seed)
