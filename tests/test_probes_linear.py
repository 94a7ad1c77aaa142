"""LinearProbe: scikit-learn reference numerics, grouped cross-validation, save/load, degenerate labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from probes.linear import LinearProbe


def _data(n: int = 240, d: int = 12, k: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 5.0, size=d) + rng.normal(size=d)
    w = rng.normal(size=(d, k))
    y = (X @ w + rng.gumbel(size=(n, k)) * 2).argmax(axis=1)
    groups = np.repeat(np.arange(n // 4), 4).astype(str)
    return X.astype(np.float32), y, groups


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.numerics
def test_matches_sklearn_pipeline(k):
    X, y, groups = _data(k=k)
    probe = LinearProbe(Cs=(0.3,)).fit(X, y, groups)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=300, tol=1e-4)).fit(X, y)
    np.testing.assert_allclose(probe.predict_proba(X), ref.predict_proba(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probe.decision_function(X), ref.decision_function(X), rtol=1e-5, atol=1e-6)
    assert (probe.predict(X) == ref.predict(X)).all()
    assert probe.score(X, y) == pytest.approx(ref.score(X, y))


@pytest.mark.numerics
def test_chosen_C_refit_matches_sklearn_and_cv_uses_whole_groups():
    X, y, groups = _data(k=3, seed=1)
    seen = []

    def score_fn(fold, val):
        seen.append(val)
        return fold.score(X[val], y[val])

    probe = LinearProbe(Cs=(1e-3, 1e-1, 10.0), n_folds=3).fit(X, y, groups, score_fn=score_fn)
    assert set(probe.cv_scores_) == {1e-3, 1e-1, 10.0} and probe.C_ in probe.cv_scores_
    assert probe.cv_score_ == max(probe.cv_scores_.values())
    # each fold's validation rows hold every row of their questions, and the folds cover every row once per C
    for val in seen:
        assert set(np.flatnonzero(np.isin(groups, groups[val]))) == set(val)
    assert sorted(np.concatenate(seen[::3]).tolist()) == list(range(len(y)))
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=probe.C_, max_iter=300, tol=1e-4)).fit(X, y)
    np.testing.assert_allclose(probe.predict_proba(X), ref.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_save_load_roundtrip(tmp_path):
    X, y, groups = _data(k=4, seed=2)
    probe = LinearProbe(Cs=(0.01, 1.0)).fit(X, y, groups)
    path = probe.save(tmp_path / "p", provenance={"model": "m", "layer": 3})
    assert path.suffix == ".npz" and path.with_suffix(".json").exists()
    back = LinearProbe.load(path)
    np.testing.assert_array_equal(back.decision_function(X), probe.decision_function(X))
    assert back.C_ == probe.C_ and back.cv_scores_ == probe.cv_scores_
    assert back.provenance == {"model": "m", "layer": 3}


def test_single_class_is_a_constant_probe():
    X, _, groups = _data()
    probe = LinearProbe(Cs=(1.0,)).fit(X, np.ones(len(X), dtype=int), groups)
    assert (probe.predict(X) == 1).all()
    np.testing.assert_allclose(probe.predict_proba(X), 1.0)


def test_bad_input_raises():
    X, y, groups = _data()
    with pytest.raises(ValueError, match="one label per row"):
        LinearProbe().fit(X, y[:-1], groups)
    with pytest.raises(ValueError, match="groups"):
        LinearProbe().fit(X, y, groups[:-1])
    with pytest.raises(ValueError, match="Cs"):
        LinearProbe(Cs=())
