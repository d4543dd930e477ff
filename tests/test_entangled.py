"""Entangled-D/S (docs/metrics.md §13) against hand-worked arrays, and FID against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics.entangled import consistency, entangled, entangled_s, similarity


def _rgb(rows: list[list[float]]) -> np.ndarray:
    """A grey picture (the same value in all three channels), so channel pooling changes nothing."""
    a = np.asarray(rows, dtype=np.float64)
    return np.repeat(a[:, :, None], 3, axis=2)


# 2x2 pictures; the mask is the top row. X: top [1.0, 0.6], bottom [0.4, 0.2]. Y keeps the bottom
# row and changes the top row to [0.5, 0.3].
X = _rgb([[1.0, 0.6], [0.4, 0.2]])
Y = _rgb([[0.5, 0.3], [0.4, 0.2]])
MASK = np.array([[True, True], [False, False]])
# By hand:
#   RMSE_in = sqrt(((1.0-0.5)^2 + (0.6-0.3)^2) / 2) = sqrt(0.17) = 0.41231056
#   S_in (code) = 1 - 0.41231056 = 0.58768944; S_out = RMSE_out = 0
#   S = 2 * 0.58768944 * 1 / (0.58768944 + 1 + 1e-6) = 0.74030733
#   Y: mu_in = 0.4, sigma_in = 0.1; mu_out = 0.3, sigma_out = 0.1
#   M = 2 * 0.4 * 0.3 / (0.16 + 0.09 + 1e-6) = 0.95999616; V = 0.02 / (0.02 + 1e-6) = 0.99995000
#   C = M V = 0.95994816
#   E = (0.5 + 0.5) S C / (0.5 C + 0.5 S + 1e-6) = 0.83594004
HAND_S, HAND_C, HAND_E = 0.74030733, 0.95994816, 0.83594004


def test_similarity_consistency_and_entangled_d_by_hand():
    assert similarity(X, Y, MASK) == pytest.approx(HAND_S, abs=1e-7)
    assert consistency(Y, MASK) == pytest.approx(HAND_C, abs=1e-7)
    assert entangled(X, Y, MASK) == pytest.approx(HAND_E, abs=1e-7)


def test_alpha_zero_beta_one_is_the_consistency():
    # Entangled-S is C itself; the D formula at alpha 0, beta 1 is S C / (S + eps): C up to eps.
    assert entangled_s(Y, MASK) == pytest.approx(HAND_C, abs=1e-7)
    assert entangled(X, Y, MASK, alpha=0.0, beta=1.0) == pytest.approx(HAND_C, abs=1e-5)
    assert entangled(X, Y, MASK, alpha=0.0, beta=1.0) == pytest.approx(HAND_S * HAND_C / (HAND_S + 1e-6), abs=1e-7)


def test_s_in_as_change():
    # S_in = RMSE_in = 0.41231056: S = 2 * 0.41231056 / (1.41231056 + 1e-6) = 0.58388046
    assert similarity(X, Y, MASK, s_in="change") == pytest.approx(0.58388046, abs=1e-7)
    assert entangled(X, Y, MASK, s_in="change") == pytest.approx(
        2 * 0.58388046 * HAND_C / (0.58388046 + HAND_C + 2e-6), abs=1e-6)


def test_channels_pool_into_one_population():
    # Colour: inside pixel values (0.2, 0.4, 0.6), (0.2, 0.4, 0.6): mean 0.4, variance 0.08/3.
    y = np.zeros((2, 1, 3))
    y[0, 0] = [0.2, 0.4, 0.6]
    y[1, 0] = [0.4, 0.4, 0.4]  # outside: mean 0.4, variance 0 -> V = 0, C = 0
    mask = np.array([[True], [False]])
    assert consistency(y, mask) == pytest.approx(0.0, abs=1e-12)
    y[1, 0] = [0.3, 0.4, 0.5]  # outside variance 0.02/3, sigma = 0.0816497
    sigma_in, sigma_out = np.sqrt(0.08 / 3), np.sqrt(0.02 / 3)
    m = 2 * 0.4 * 0.4 / (0.32 + 1e-6)
    v = 2 * sigma_in * sigma_out / (0.08 / 3 + 0.02 / 3 + 1e-6)
    assert consistency(y, mask) == pytest.approx(m * v, abs=1e-9)


def test_a_removed_object_is_more_consistent_than_a_kept_one():
    bg = np.full((8, 8, 3), 0.5) + 0.05 * (np.indices((8, 8)).sum(0) % 2)[:, :, None]
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    with_object = bg.copy()
    with_object[mask] = [1.0, 0.5, 0.0]
    assert entangled_s(bg, mask) > 0.9 > entangled_s(with_object, mask)


def test_shapes_must_match():
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="do not match"):
        entangled(X, Y, np.ones((3, 3), bool))


def test_fid_by_hand_on_small_gaussian_features():
    from harness.metrics.fid import fid_from_features

    # a: mean (1, 1), covariance diag(4/3, 4/3) (N - 1 = 3); b: mean (3, 3), covariance diag(16/3, 16/3).
    # FID = |mu_a - mu_b|^2 + sum over dims (var_a + var_b - 2 sqrt(var_a var_b))
    #     = 8 + 2 * (4/3 + 16/3 - 2 * 8/3) = 8 + 8/3 = 10.6667
    a = np.array([[0, 0], [2, 0], [0, 2], [2, 2]], float)
    b = np.array([[1, 1], [5, 1], [1, 5], [5, 5]], float)
    assert fid_from_features(a, b) == pytest.approx(8 + 8 / 3, abs=1e-6)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_of_gaussian_samples_matches_the_closed_form_for_their_moments():
    from harness.metrics.fid import fid_from_features

    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(400, 3))
    b = rng.normal(0.5, 2.0, size=(400, 3))
    # independent dimensions: FID is close to sum((mu_a - mu_b)^2 + (sd_a - sd_b)^2) = 3 * (0.25 + 1) = 3.75
    ma, mb, sa, sb = a.mean(0), b.mean(0), a.std(0, ddof=1), b.std(0, ddof=1)
    diagonal = float(((ma - mb) ** 2 + (sa - sb) ** 2).sum())
    assert fid_from_features(a, b) == pytest.approx(diagonal, abs=0.15)
    assert fid_from_features(a, b) == pytest.approx(3.75, abs=0.6)
