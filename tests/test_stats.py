"""Tests for eval.stats against hand-computed and scipy reference values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from eval.stats import (
    Estimate,
    accuracy,
    agreement,
    bootstrap_mean,
    bootstrap_ratio,
    honest_best,
    majority_vote,
    max_excess_null,
    mean_over_runs,
    per_variant_accuracy,
    select_then_report,
    split_ids,
    spread,
    symbol_bias,
    wilson_interval,
)


def width(e: Estimate) -> float:
    return e.hi - e.lo


# --- Wilson -----------------------------------------------------------------------------


def test_wilson_known_value() -> None:
    e = wilson_interval(8, 10)
    assert e.value == pytest.approx(0.8)
    assert (e.lo, e.hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert (e.n, e.method) == (10, "wilson")
    assert wilson_interval(0, 10).hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 10).lo == 0.0


@pytest.mark.parametrize(("k", "n", "conf"), [(3, 17, 0.95), (50, 50, 0.9), (1, 1000, 0.99)])
def test_wilson_matches_scipy(k: int, n: int, conf: float) -> None:
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=conf, method="wilson")
    e = wilson_interval(k, n, conf)
    assert (e.lo, e.hi) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_wilson_and_accuracy_edge_cases() -> None:
    assert math.isnan(wilson_interval(0, 0).value)
    assert math.isnan(accuracy(np.array([], dtype=bool)).value)
    for bad in [(5, 4), (-1, 3), (1, -1)]:
        with pytest.raises(ValueError):
            wilson_interval(*bad)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=1.0)
    with pytest.raises(ValueError, match="0/1"):
        accuracy(np.array([0, 2, 1]))
    acc = accuracy(np.array([True] * 8 + [False] * 2))
    assert acc == wilson_interval(8, 10)
    assert json.loads(json.dumps(acc.to_dict())) == {
        "value": 0.8, "lo": acc.lo, "hi": acc.hi, "n": 10, "method": "wilson"
    }


# --- bootstrap --------------------------------------------------------------------------


def test_bootstrap_contains_mean_and_narrows() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 2000):
        x = rng.random(n) < 0.7
        e = bootstrap_mean(x, n_boot=2000, seed=3)
        assert e.lo <= e.value <= e.hi and e.value == pytest.approx(x.mean())
        assert (e.n, e.method) == (n, "bootstrap")
        # percentile bootstrap of a mean ~ normal interval
        assert width(e) == pytest.approx(2 * 1.96 * x.std() / np.sqrt(n), rel=0.15)
        widths.append(width(e))
    assert widths[1] < widths[0] / 4
    assert bootstrap_mean(x, seed=5) == bootstrap_mean(x, seed=5)


def test_cluster_bootstrap_wider_for_duplicated_rows() -> None:
    rng = np.random.default_rng(2)
    base = (rng.random(60) < 0.5).astype(float)
    values, groups = np.repeat(base, 10), np.repeat(np.arange(60), 10)
    rows = bootstrap_mean(values, n_boot=2000)
    clus = bootstrap_mean(values, groups=groups, n_boot=2000)
    ref = bootstrap_mean(base, n_boot=2000)
    assert clus.value == rows.value == pytest.approx(base.mean())
    assert width(clus) > 2.5 * width(rows)  # ~sqrt(10) wider
    assert width(clus) == pytest.approx(width(ref), rel=0.15)  # the same as bootstrapping questions
    with pytest.raises(ValueError, match="groups"):
        bootstrap_mean(values, groups=groups[:-1])


def test_bootstrap_ratio_is_paired() -> None:
    rng = np.random.default_rng(3)
    den = rng.random(30) + 0.5
    e = bootstrap_ratio(0.4 * den, den)
    assert (e.value, e.lo, e.hi) == pytest.approx((0.4, 0.4, 0.4))  # unpaired would not be degenerate
    num = rng.random(30)
    e = bootstrap_ratio(num, den)
    assert e.value == pytest.approx(num.mean() / den.mean())
    assert e.lo < e.value < e.hi
    assert math.isnan(bootstrap_ratio(np.ones(3), np.zeros(3)).value)
    with pytest.raises(ValueError, match="length"):
        bootstrap_ratio(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="empty"):
        bootstrap_mean(np.array([]))
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_mean(np.array([1.0, np.nan]))


def test_mean_over_runs_matches_t_interval() -> None:
    x = np.array([0.61, 0.64, 0.58, 0.66])
    e = mean_over_runs(x)
    lo, hi = sps.t.interval(0.95, 3, loc=x.mean(), scale=sps.sem(x))
    assert (e.value, e.lo, e.hi) == pytest.approx((x.mean(), lo, hi))
    assert e.method == "t"
    assert mean_over_runs(np.array([0.5])).lo == 0.5


def test_per_variant_accuracy_and_spread() -> None:
    correct = np.array([1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1])
    variants = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 4)
    qids = np.array(["q1", "q2", "q3", "q4"] * 3)
    out = per_variant_accuracy(correct, variants, question_ids=qids, n_boot=200)
    assert list(out) == ["a", "b", "c"]
    assert [out[k].value for k in out] == pytest.approx([0.75, 0.25, 1.0])
    assert out["c"].lo == out["c"].hi == 1.0
    with pytest.raises(ValueError, match="length"):
        per_variant_accuracy(correct, variants[:-1])
    s = spread({k: e.value for k, e in out.items()})
    assert s == pytest.approx(
        {"max": 1.0, "min": 0.25, "spread": 0.75, "std": np.std([0.75, 0.25, 1.0]),
         "mean": 2 / 3, "n_variants": 3}
    )
    with pytest.raises(ValueError):
        spread({})


# --- votes and agreement ----------------------------------------------------------------


def test_agreement() -> None:
    pred = np.array([[0, 0, 0, 0], [1, 2, 1, -1], [3, 2, 1, 0], [-1, -1, -1, -1], [2, 2, 1, 1]])
    out = agreement(pred)
    assert out[:3] == pytest.approx([1.0, 2 / 3, 0.25])
    assert math.isnan(out[3]) and out[4] == 0.5
    with pytest.raises(ValueError):
        agreement(np.array([0, 1]))
    with pytest.raises(ValueError):
        agreement(np.array([[0.0, 1.0]]))


def test_majority_vote_with_ties() -> None:
    pred = np.array([
        [0, 0, 1],    # clear majority 0
        [2, 1, -1],   # tie 1 vs 2 -> lowest index 1 (no scores) / score decides
        [3, 3, 2],    # 3 wins
        [-1, -1, -1], # all missing
        [2, 1, 2],    # 2 wins
    ])
    assert majority_vote(pred, 4).tolist() == [0, 1, 3, -1, 2]
    scores = np.full((5, 3, 4), 0.25)
    scores[1, 0] = [0.1, 0.1, 0.7, 0.1]  # variant 0 confident in 2
    scores[1, 1] = [0.1, 0.4, 0.3, 0.2]  # 1: 0.5 vs 2: 1.0 (variant 2 missing, excluded)
    scores[1, 2] = [0.0, 10.0, 0.0, 0.0]
    scores[0, 2] = [0.0, 1.0, 0.0, 0.0]  # scores never override a strict majority
    assert majority_vote(pred, 4, scores=scores).tolist() == [0, 2, 3, -1, 2]
    assert majority_vote(pred, np.array([2, 3, 4, 4, 3])).tolist() == [0, 1, 3, -1, 2]
    with pytest.raises(ValueError, match="n_choices"):
        majority_vote(pred, 3)
    with pytest.raises(ValueError, match="scores"):
        majority_vote(pred, 4, scores=scores[:, :2])


def test_symbol_bias() -> None:
    gold = np.array([0, 1, 2, 3] * 5)
    pred = np.array([0] * 14 + [1, 2, 3, 1, 2, -1])
    out = symbol_bias(pred, gold, 4)
    kept = gold[pred >= 0]
    assert out["n"] == 19 and out["n_missing"] == 1
    assert out["pred_dist"] == pytest.approx(np.array([14, 2, 2, 1]) / 19)
    assert out["gold_dist"] == pytest.approx(np.bincount(kept, minlength=4) / 19)
    tv = 0.5 * np.abs(np.array([14, 2, 2, 1]) - np.bincount(kept, minlength=4)).sum() / 19
    assert out["tv_distance"] == pytest.approx(tv)
    ref = sps.chisquare([14, 2, 2, 1], np.bincount(kept, minlength=4).astype(float))
    assert out["chi2_p"] == pytest.approx(ref.pvalue) and out["chi2_p"] < 1e-3
    same = symbol_bias(gold, gold, 4)
    assert same["tv_distance"] == 0.0 and same["chi2_p"] == pytest.approx(1.0)
    never_gold = symbol_bias(np.array([3, 0, 1]), np.array([0, 1, 2]), 4)  # predicts a never-gold slot
    assert never_gold["chi2_p"] == 0.0
    with pytest.raises(ValueError):
        symbol_bias(np.array([0, 4]), np.array([0, 1]), 4)
    with pytest.raises(ValueError):
        symbol_bias(np.array([0, 1]), np.array([0, 1, 2]), 4)


# --- honest selection -------------------------------------------------------------------


def long_format(acc: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """{variant: per-question correctness} -> (correct, variant_ids, question_ids) rows."""
    correct, variants, qids = [], [], []
    for name, col in acc.items():
        correct += list(col)
        variants += [name] * len(col)
        qids += [f"q{i}" for i in range(len(col))]
    return np.array(correct), np.array(variants), np.array(qids)


def test_honest_best_chosen_differs_from_naive_max() -> None:
    n = 40
    dev = {f"q{i}" for i in range(20)}
    a = np.r_[np.ones(18), np.zeros(2), np.ones(10), np.zeros(10)]  # dev 0.9, test 0.5
    b = np.r_[np.ones(12), np.zeros(8), np.ones(16), np.zeros(4)]   # dev 0.6, test 0.8
    c = np.r_[np.ones(10), np.zeros(10), np.ones(12), np.zeros(8)]  # dev 0.5, test 0.6
    out = honest_best(*long_format({"a": a, "b": b, "c": c}), dev, n_boot=300)
    assert out["chosen"] == "a" and out["naive_max_variant"] == "b"
    assert out["dev_accuracy"] == pytest.approx(0.9)
    assert out["test_accuracy"]["value"] == pytest.approx(0.5) and out["test_accuracy"]["n"] == 20
    assert out["test_accuracy"]["lo"] < 0.5 < out["test_accuracy"]["hi"]
    assert out["naive_max_test"] == pytest.approx(0.8)
    assert out["inflation"] == pytest.approx(0.3) and out["inflation"] > 0
    assert (out["n_dev"], out["n_test"]) == (20, n - 20)
    assert json.loads(json.dumps(out))["chosen"] == "a"
    # ndarray of dev ids works the same
    assert honest_best(*long_format({"a": a, "b": b}), np.array(sorted(dev)), n_boot=50)["chosen"] == "a"


def test_honest_best_equal_noise_has_positive_optimism() -> None:
    rng = np.random.default_rng(7)
    acc = {f"v{k}": (rng.random(200) < 0.5).astype(float) for k in range(8)}
    dev, _ = split_ids([f"q{i}" for i in range(200)], 0.5, seed=0)
    out = honest_best(*long_format(acc), set(dev), n_boot=300)
    assert 0.005 < out["expected_max_by_chance"] < 0.1  # bootstrap optimism of the max
    # one variant far ahead of the rest: the maximum is no longer a random pick
    acc["v0"] = np.ones(200)
    out = honest_best(*long_format(acc), set(dev), n_boot=300)
    assert out["chosen"] == "v0" and out["inflation"] == 0.0
    assert abs(out["expected_max_by_chance"]) < 1e-9


def test_honest_best_validation() -> None:
    correct, variants, qids = long_format({"a": np.ones(4), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="dev_ids"):
        honest_best(correct, variants, qids, {"nope"})
    with pytest.raises(ValueError, match="dev_ids"):
        honest_best(correct, variants, qids, {"q0", "q1", "q2", "q3"})
    with pytest.raises(ValueError, match="length"):
        honest_best(correct, variants[:-1], qids, {"q0"})


def test_select_then_report() -> None:
    out = select_then_report({4: 0.7, 8: 0.9, 12: float("nan")}, {4: 0.8, 8: 0.75, 12: 0.95})
    assert out["chosen"] == 8 and out["test_value"] == 0.75 and out["dev_value"] == 0.9
    assert out["naive_max_key"] == 12 and out["gap"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="missing"):
        select_then_report({"x": 1.0}, {"y": 1.0})


# --- splits -----------------------------------------------------------------------------


def test_split_ids_deterministic_disjoint_order_independent() -> None:
    ids = [f"mmlu/{i}" for i in range(101)]
    first, second = split_ids(ids, 0.3, seed=1)
    assert len(first) == 30 and len(second) == 71
    assert set(first).isdisjoint(second) and set(first) | set(second) == set(ids)
    shuffled = list(np.random.default_rng(0).permutation(ids)) + ids[:10]  # reordered, with duplicates
    assert split_ids(shuffled, 0.3, seed=1) == (first, second)
    assert split_ids(ids, 0.3, seed=1) == (first, second)
    assert split_ids(ids, 0.3, seed=2)[0] != first
    assert first != sorted(ids)[:30]  # not just a prefix
    assert [len(p) for p in split_ids(["a", "b"], 0.01, seed=0)] == [1, 1]
    assert [len(p) for p in split_ids(["a", "b"], 0.99, seed=0)] == [1, 1]
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="fraction"):
            split_ids(ids, bad, seed=0)
    with pytest.raises(ValueError, match="empty"):
        split_ids([], 0.5, seed=0)


def test_max_excess_null_against_exact_enumeration() -> None:
    import itertools

    t = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=float)
    means = t.mean(axis=0)
    rows = [list(itertools.permutations(r)) for r in t]  # every within-row shuffle is equally likely
    exact = np.mean([np.max(np.mean(c, axis=0)) - means.mean() for c in itertools.product(*rows)])
    out = max_excess_null(t, n_perm=20000, seed=3)
    assert out["observed"] == pytest.approx(means.max() - means.mean())
    assert out["null_mean"] == pytest.approx(exact, abs=0.005)
    assert 0 < out["p_value"] <= 1 and out["n_perm"] == 20000


def test_max_excess_null_separates_a_real_winner_from_noise() -> None:
    rng = np.random.default_rng(11)
    noise = (rng.random((150, 10)) < 0.5).astype(float)
    out = max_excess_null(noise, n_perm=400, seed=0)
    assert out["null_mean"] > 0.02 and out["p_value"] > 0.05  # the max of equal variants is noise
    noise[:, 0] = (rng.random(150) < 0.8)
    out = max_excess_null(noise, n_perm=400, seed=0)
    assert out["observed"] > out["null_q95"] and out["p_value"] < 0.01
    same = np.repeat(rng.random((30, 1)) < 0.5, 4, axis=1).astype(float)  # variants agree on every question
    assert max_excess_null(same, n_perm=50)["null_mean"] == 0.0 == max_excess_null(same, n_perm=50)["observed"]
    with pytest.raises(ValueError, match="variants >= 2"):
        max_excess_null(np.ones((5, 1)))
