"""Targets, controls and the layer sweep on synthetic features: separable -> ~1, shuffled -> chance, and the
layer is chosen without looking at test questions."""

from __future__ import annotations

import numpy as np
import pytest

from eval.stats import split_ids
from probes.fit import LayerFit, Sweep, ceiling, sweep_layers
from probes.linear import LinearProbe
from probes.targets import Target, chance, shuffled_labels
from probes.torch_linear import TorchSolver

D = 16
KW = {"Cs": (0.01, 1.0), "n_folds": 3}


class ArrayReader:
    """Stands in for FeatureReader: feats[pos] is (store rows, d)."""

    def __init__(self, feats: list[np.ndarray]) -> None:
        self.feats = feats

    def layer(self, pos: int, rows: np.ndarray) -> np.ndarray:
        return self.feats[pos][rows]


def option_target(n_q: int = 80, n_c: int = 4, seed: int = 0) -> Target:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, n_c, size=n_q)
    y = np.array([int(j == g) for g in gold for j in range(n_c)])
    groups = np.repeat([f"q{i:03d}" for i in range(n_q)], n_c)
    return Target("option", np.arange(n_q * n_c), y, groups, np.full(n_q * n_c, n_c))


def letter_target(n_q: int = 120, n_c: int = 4, seed: int = 1, offset: int = 0) -> Target:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_c, size=n_q)
    return Target("letter", np.arange(n_q) + offset, y, np.array([f"q{i:03d}" for i in range(n_q)]),
                  np.full(n_q, n_c))


def features(t: Target, signal: float, seed: int) -> np.ndarray:
    """Noise, plus `signal` along one direction per class (letter) or for gold rows (option)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(len(t.y), D))
    if t.name == "option":
        X[:, 0] += signal * t.y
    else:
        X[np.arange(len(t.y)), t.y] += signal
    return X


@pytest.mark.parametrize("make", [option_target, letter_target])
def test_separable_probe_near_one_shuffled_near_chance(make):
    t = make()
    feats = [features(t, 0.0, 0), features(t, 6.0, 1)]
    train, test = split_ids(t.groups, 0.5, seed=0)
    out = sweep_layers(ArrayReader(feats), [t], train, [0, 1], kinds=("probe", "shuffled"), probe_kwargs=KW)
    acc = [np.mean(f.test_correct) for f in out["probe"].fits[t.name]]
    ctrl = [np.mean(f.test_correct) for f in out["shuffled"].fits[t.name]]
    assert acc[1] >= 0.95
    assert acc[0] < 0.5 and max(ctrl) < 0.5  # chance is 0.25 on 40-60 test questions
    assert all(len(f.test_ids) == len(test) and set(f.test_ids) == set(test) for f in out["probe"].fits[t.name])
    c = ceiling(out["probe"], [0, 1])
    assert (c["target"], c["layer"], c["selected_on"]) == (t.name, 1, "train-cv")


def test_layer_selection_never_looks_at_test():
    t = option_target(seed=3)
    train, _ = split_ids(t.groups, 0.5, seed=0)
    is_test = ~np.isin(t.groups, train)
    base = [features(t, 0.0, 0), features(t, 1.5, 1), features(t, 0.0, 2)]
    # a copy where test rows leak the answer at layers 0 and 2: test accuracy there changes, nothing chosen may
    leaky = [f.copy() for f in base]
    for pos in (0, 2):
        leaky[pos][is_test, 0] += 50.0 * t.y[is_test]
    runs = [sweep_layers(ArrayReader(f), [t], train, [0, 1, 2], probe_kwargs=KW)["probe"] for f in (base, leaky)]
    assert runs[0].cv_by_layer() == runs[1].cv_by_layer()
    assert [f.C for f in runs[0].fits["option"]] == [f.C for f in runs[1].fits["option"]]
    ceils = [ceiling(r, [0, 1, 2]) for r in runs]
    assert ceils[0]["layer"] == ceils[1]["layer"] == 1
    assert ceils[0]["test_accuracy"] == ceils[1]["test_accuracy"]
    tests = [r.test_by_layer()["option"] for r in runs]
    assert tests[0][1] == tests[1][1] and (tests[0][0] != tests[1][0] or tests[0][2] != tests[1][2])


def test_ceiling_picks_cv_best_across_targets_and_reports_gap():
    probe = LinearProbe()

    def lf(cv: float, test_acc: float) -> LayerFit:
        correct = np.arange(100) < round(test_acc * 100)
        return LayerFit(cv, 1.0, np.arange(100).astype(str), correct, probe)

    sweep = Sweep("probe", {"option": [lf(0.3, 0.9), lf(0.6, 0.5)], "letter": [lf(0.5, 0.95), lf(0.2, 0.2)]})
    c = ceiling(sweep, [4, 7])
    assert (c["target"], c["layer"]) == ("option", 7)
    assert c["test_accuracy"]["value"] == pytest.approx(0.5) and c["test_accuracy"]["method"] == "wilson"
    assert (c["naive_max"]["target"], c["naive_max"]["layer"]) == ("letter", 4)
    assert c["gap"] == pytest.approx(0.45)


def test_shuffled_labels_keep_structure():
    rng = np.random.default_rng(0)
    t = option_target(n_q=50)
    y = shuffled_labels(t, rng)
    assert (np.bincount(np.unique(t.groups, return_inverse=True)[1].ravel(), weights=y) == 1).all()
    assert (y != t.y).any()
    lt = letter_target(n_q=50)
    ly = shuffled_labels(lt, rng)
    assert sorted(ly) == sorted(lt.y) and (ly != lt.y).any()
    assert chance(t) == chance(lt) == pytest.approx(0.25)


def test_split_leaving_no_test_raises():
    t = letter_target(n_q=10)
    with pytest.raises(ValueError, match="no train or no test"):
        sweep_layers(ArrayReader([features(t, 1.0, 0)]), [t], list(t.groups), [0])


def _two_targets() -> tuple[ArrayReader, list[Target], list[str]]:
    """Option and letter rows in one reader; layers from noise to separable; unstandardised, offset features."""
    opt, let = option_target(n_q=60, seed=4), letter_target(n_q=60, seed=5, offset=240)
    feats = []
    for i, signal in enumerate((0.0, 0.8, 2.0, 4.0)):
        both = np.concatenate([features(opt, signal, 10 + i), features(let, signal, 20 + i)])
        feats.append(both * np.linspace(0.5, 3.0, D) + 5.0)
    return ArrayReader(feats), [opt, let], split_ids(opt.groups, 0.5, seed=1)[0]


SWEEP = {"kinds": ("probe", "shuffled"), "seed": 3}
GRID = {"Cs": (1e-3, 1e-2, 1e-1, 1.0), "n_folds": 4}


def _compare(ref: dict[str, Sweep], new: dict[str, Sweep], reader: ArrayReader, targets: list[Target],
             train: list[str], atol: float) -> list[tuple[str, str, int]]:
    """(kind, target, layer) of every fit whose C, CV score or test answers differ; probabilities within atol."""
    differ = []
    for kind in SWEEP["kinds"]:
        for t in targets:
            test_rows = t.subset(~np.isin(t.groups, train))
            for pos, (a, b) in enumerate(zip(ref[kind].fits[t.name], new[kind].fits[t.name], strict=True)):
                assert (a.test_ids == b.test_ids).all()
                if a.C != b.C or a.cv != b.cv or (a.test_correct != b.test_correct).any():
                    differ.append((kind, t.name, pos))
                    continue
                X = reader.layer(pos, test_rows.rows)
                np.testing.assert_allclose(b.probe.predict_proba(X), a.probe.predict_proba(X), atol=atol)
    return differ


@pytest.mark.numerics
@pytest.mark.parametrize("solver", [TorchSolver(), TorchSolver(layer_batch=1), TorchSolver(dtype="float64")])
def test_torch_sweep_equals_the_sklearn_loop_at_the_optimum(solver):
    """scikit-learn run to its optimum (tol 1e-8): every fit of both targets, true and shuffled labels, noise to
    separable layers, has the same C, CV score, test answers and ceiling; probabilities agree to 1e-3 (the
    scikit-learn path fits in float32, where lbfgs stalls ~3e-4 from the optimum on the letter probes here)."""
    reader, targets, train = _two_targets()
    layers = [0, 1, 2, 3]
    ref = sweep_layers(reader, targets, train, layers, solver="sklearn",
                       probe_kwargs={**GRID, "tol": 1e-8, "max_iter": 10_000}, **SWEEP)
    new = sweep_layers(reader, targets, train, layers, solver=solver, probe_kwargs=GRID, **SWEEP)
    assert _compare(ref, new, reader, targets, train, atol=1e-3) == []
    assert all(ceiling(ref[k], layers) == ceiling(new[k], layers) for k in SWEEP["kinds"])


@pytest.mark.numerics
def test_torch_sweep_agrees_with_todays_sklearn_loop():
    """Today's settings (lbfgs tol 1e-4, float32) stop short of the optimum by up to ~5e-3 in probability here.
    Every true-label fit still agrees exactly in C, CV score and test answers; of the 8 shuffled-label fits
    (noise, where per-question argmaxes nearly tie) one differs: a CV tie that scikit-learn's early stop breaks
    the other way (run to its optimum, scikit-learn agrees with torch: the test above)."""
    reader, targets, train = _two_targets()
    ref = sweep_layers(reader, targets, train, [0, 1, 2, 3], solver="sklearn", probe_kwargs=GRID, **SWEEP)
    new = sweep_layers(reader, targets, train, [0, 1, 2, 3], probe_kwargs=GRID, **SWEEP)
    assert _compare(ref, new, reader, targets, train, atol=5e-3) == [("shuffled", "option", 2)]
    assert ceiling(ref["probe"], [0, 1, 2, 3]) == ceiling(new["probe"], [0, 1, 2, 3])


def test_sweep_rejects_unknown_solver():
    t = letter_target(n_q=20)
    with pytest.raises(ValueError, match="solver"):
        sweep_layers(ArrayReader([features(t, 1.0, 0)]), [t], list(t.groups[:10]), [0], solver="liblinear")
