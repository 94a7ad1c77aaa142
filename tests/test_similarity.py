"""Tests for probes.similarity: CKA, cosine and distance on constructed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from probes import similarity


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _orthogonal(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(_rng(seed).normal(size=(d, d)))
    return q


# --- activations ----------------------------------------------------------------------------


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_identity_and_invariances(debiased: bool) -> None:
    x = _rng(0).normal(size=(60, 12))
    assert similarity.linear_cka(x, x, debiased=debiased) == pytest.approx(1.0)
    q = _orthogonal(12, 1)
    assert similarity.linear_cka(x, 3.7 * x @ q, debiased=debiased) == pytest.approx(1.0)
    assert similarity.linear_cka(x, x + 5.0, debiased=debiased) == pytest.approx(1.0)  # centred: offsets do not count
    assert similarity.linear_cka(x, x @ _orthogonal(12, 2)[:, :12], debiased=debiased) == pytest.approx(1.0)


def test_cka_lower_for_unrelated_and_debiased_near_zero() -> None:
    x, y = _rng(0).normal(size=(300, 10)), _rng(1).normal(size=(300, 10))
    assert similarity.linear_cka(x, y) < 0.2
    # n < d: plain CKA of unrelated activations is inflated, the debiased estimate is not
    x, y = _rng(2).normal(size=(30, 200)), _rng(3).normal(size=(30, 200))
    assert similarity.linear_cka(x, y) > 0.5
    assert abs(similarity.linear_cka(x, y, debiased=True)) < 0.1


def test_cka_reference_formula_feature_space() -> None:
    x, y = _rng(4).normal(size=(40, 6)), _rng(5).normal(size=(40, 9))
    y[:, :6] += 2 * x
    xc, yc = x - x.mean(0), y - y.mean(0)
    ref = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert similarity.linear_cka(x, y) == pytest.approx(ref)


def test_cka_constant_is_nan_and_bad_shapes() -> None:
    x = np.ones((10, 4))
    assert math.isnan(similarity.linear_cka(x, _rng(0).normal(size=(10, 4))))
    with pytest.raises(ValueError, match="same rows"):
        similarity.linear_cka(np.zeros((5, 3)), np.zeros((6, 3)))


def test_mean_cosine_and_distance() -> None:
    x = _rng(0).normal(size=(20, 8))
    assert similarity.mean_cosine(x, x) == pytest.approx(1.0)
    assert similarity.mean_cosine(x, -2 * x) == pytest.approx(-1.0)
    assert similarity.relative_distance(x, x) == 0.0
    assert similarity.relative_distance(2 * x, x) == pytest.approx(1.0)
    assert similarity.relative_distance(np.zeros_like(x), x) == pytest.approx(1.0)


