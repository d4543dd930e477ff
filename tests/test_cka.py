"""Linear CKA against the HSIC formula written out, its invariances, and the probes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from harness.representations.cka import linear_cka, minibatch_cka
from harness.representations.probes import knn_probe, logreg_probe


def _cka_by_formula(x: np.ndarray, y: np.ndarray) -> float:
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    kx, ky = x @ x.T, y @ y.T

    def hsic(a, b):
        return float(np.sum((h @ a @ h) * (h @ b @ h)))

    return hsic(kx, ky) / np.sqrt(hsic(kx, kx) * hsic(ky, ky))


def test_cka_matches_the_hsic_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8))
    y = x @ rng.normal(size=(8, 5)) + 0.5 * rng.normal(size=(40, 5))
    assert linear_cka(x, y) == pytest.approx(_cka_by_formula(x, y), rel=1e-10)
    z = rng.normal(size=(40, 12))
    assert linear_cka(x, z) == pytest.approx(_cka_by_formula(x, z), rel=1e-10)
    assert linear_cka(x, x) == pytest.approx(1.0)


def test_cka_is_invariant_to_rotation_scaling_and_translation_only():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 6))
    y = rng.normal(size=(30, 6)) + x
    q = ortho_group.rvs(6, random_state=2)
    base = linear_cka(x, y)
    assert linear_cka(x @ q, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(3.7 * x, 0.2 * y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x + 5.0, y) == pytest.approx(base, rel=1e-10)
    # not invariant to an anisotropic scaling
    assert linear_cka(x * np.array([10, 1, 1, 1, 1, 1]), y) != pytest.approx(base, rel=1e-3)


def test_minibatch_cka_averages_batches():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 4))
    y = x + rng.normal(size=(64, 4))
    order = np.random.default_rng(0).permutation(64)
    by_hand = np.mean([_cka_by_formula(x[order[s:s + 16]], y[order[s:s + 16]]) for s in range(0, 64, 16)])
    assert minibatch_cka(x, y, batch_size=16, seed=0) == pytest.approx(by_hand, rel=1e-10)


def test_probes_find_separable_entities_and_not_noise():
    rng = np.random.default_rng(4)
    labels = [f"e{c}" for c in range(5) for _ in range(6)]
    centres = rng.normal(size=(5, 16)) * 10
    x = np.stack([centres[int(lbl[1:])] + rng.normal(size=16) for lbl in labels])
    acc, n = knn_probe(x, labels, k=5, seed=0)
    assert acc == 1.0 and n == 15
    acc_lr, n_lr = logreg_probe(x, labels, folds=5, seed=0)
    assert acc_lr == 1.0 and n_lr == 30
    noise = rng.normal(size=(30, 16))
    assert knn_probe(noise, labels, seed=0)[0] < 0.6
    assert knn_probe(x, ["a"] * 30)[0] is None  # one class: nothing to probe
