"""Tests for eval.paired against scipy / statsmodels references and cases with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from eval.paired import (
    McNemar,
    PairedGap,
    align,
    mcnemar_exact,
    paired_difference,
    paired_gap,
    paired_ratio,
    select_best_of_k,
)
from eval.stats import Estimate, max_excess_null, select_then_report


def table_arrays(a: int, b: int, c: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(elicited, straight) 0/1 arrays with a = both right, b = only elicited, c = only straight, d = both wrong."""
    e = np.array([1] * a + [1] * b + [0] * c + [0] * d)
    s = np.array([1] * a + [0] * b + [1] * c + [0] * d)
    return e, s


def correlated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = (rng.random(n) < 0.45).astype(int)
    e = np.where(rng.random(n) < 0.3, 1, s)
    e = np.where(rng.random(n) < 0.05, 0, e)
    return e, s


# --- alignment ---------------------------------------------------------------------------


def test_align_refuses_different_lengths_and_names_them() -> None:
    with pytest.raises(ValueError, match=r"elicited has 10 questions, straight has 9"):
        paired_difference(np.ones(10), np.ones(9))


def test_align_refuses_ids_on_one_side() -> None:
    with pytest.raises(ValueError, match="ids for both"):
        align(np.ones(3), np.ones(3), elicited_ids=["a", "b", "c"])


def test_align_refuses_different_ids_and_names_them() -> None:
    with pytest.raises(ValueError, match=r"1 only in elicited \(e\.g\. \['q9'\]\), 1 only in straight \(e\.g\. \['q3'\]\)"):
        paired_gap(np.ones(3), np.ones(3), chance=0.25, elicited_ids=["q1", "q2", "q9"],
                   straight_ids=["q1", "q2", "q3"])


def test_align_refuses_duplicate_ids_and_wrong_id_count() -> None:
    with pytest.raises(ValueError, match=r"duplicate question ids in straight_ids: \['q1'\]"):
        align(np.ones(3), np.ones(3), ["q1", "q2", "q3"], ["q1", "q1", "q2"])
    with pytest.raises(ValueError, match="elicited_ids has 2 ids for 3 values"):
        align(np.ones(3), np.ones(3), ["q1", "q2"], ["q1", "q2", "q3"])


def test_align_refuses_values_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"straight must hold correctness in \[0, 1\]"):
        align(np.ones(3), np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="non-finite"):
        align(np.array([0.0, np.nan]), np.ones(2))


def test_alignment_by_id_equals_positional_alignment() -> None:
    e, s = correlated(200, 1)
    ids = np.array([f"q{i}" for i in range(200)])
    perm = np.random.default_rng(2).permutation(200)
    a = paired_gap(e, s, chance=0.25, n_boot=300).to_dict()
    b = paired_gap(e, s[perm], chance=0.25, elicited_ids=ids, straight_ids=ids[perm], n_boot=300).to_dict()
    assert a == b
    _, s2, ids2 = align(e, s[perm], ids, ids[perm])
    assert np.array_equal(s2, s) and np.array_equal(ids2, ids)


# --- paired difference ---------------------------------------------------------------------


def test_identical_arrays_give_zero_difference_with_zero_width() -> None:
    e, _ = correlated(150, 3)
    d = paired_difference(e, e.copy(), n_boot=500)
    assert (d.value, d.lo, d.hi, d.n, d.method) == (0.0, 0.0, 0.0, 150, "bootstrap")


def test_constant_shift_is_recovered_exactly() -> None:
    s = np.random.default_rng(4).uniform(0.0, 0.6, 120)  # per-question means (averaged runs)
    d = paired_difference(s + 0.25, s, n_boot=500)
    assert (d.value, d.lo, d.hi) == pytest.approx((0.25, 0.25, 0.25), abs=1e-12)


def test_paired_difference_matches_scipy_paired_bootstrap() -> None:
    e, s = correlated(300, 5)
    d = paired_difference(e, s, n_boot=5000, seed=1)
    ref = sps.bootstrap((e, s), lambda a, b, axis: a.mean(axis) - b.mean(axis), paired=True, vectorized=True,
                       method="percentile", n_resamples=5000, rng=np.random.default_rng(7)).confidence_interval
    assert d.value == pytest.approx(e.mean() - s.mean())
    assert (d.lo, d.hi) == pytest.approx((ref.low, ref.high), abs=0.006)
    unpaired = sps.bootstrap((e, s), lambda a, b, axis: a.mean(axis) - b.mean(axis), paired=False,
                             vectorized=True, method="percentile", n_resamples=5000,
                             rng=np.random.default_rng(7)).confidence_interval
    assert d.hi - d.lo < 0.8 * (unpaired.high - unpaired.low)  # pairing removes the shared question difficulty


def test_paired_difference_is_deterministic_by_seed() -> None:
    e, s = correlated(100, 6)
    assert paired_difference(e, s, seed=3, n_boot=400) == paired_difference(e, s, seed=3, n_boot=400)
    assert paired_difference(e, s, seed=3, n_boot=400) != paired_difference(e, s, seed=4, n_boot=400)


def test_paired_difference_refuses_no_questions() -> None:
    with pytest.raises(ValueError, match="no questions"):
        paired_difference(np.array([]), np.array([]))


# --- McNemar ---------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "c", "d"), [
    (5, 0, 0, 5),        # no discordant questions: p = 1
    (3, 7, 0, 2),        # all discordant one way
    (0, 0, 9, 0),        # all discordant the other way, nothing concordant
    (10, 5, 5, 10),      # balanced: p = 1
    (20, 3, 11, 6),
    (400, 520, 480, 600),  # large n
    (0, 5200, 4800, 0),  # larger n, p small
])
def test_mcnemar_matches_scipy_binomtest(a: int, b: int, c: int, d: int) -> None:
    m = mcnemar_exact(*table_arrays(a, b, c, d))
    ref = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
    assert (m.b, m.c, m.n_discordant, m.test) == (b, c, b + c, "mcnemar_exact")
    assert m.p_value == pytest.approx(ref, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (7, 0), (0, 12), (3, 11), (520, 480), (5200, 4800)])
def test_mcnemar_matches_statsmodels(b: int, c: int) -> None:
    ct = pytest.importorskip("statsmodels.stats.contingency_tables")
    ref = ct.mcnemar(np.array([[8, b], [c, 4]]), exact=True)
    m = mcnemar_exact(*table_arrays(8, b, c, 4))
    assert m.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    assert min(m.b, m.c) == ref.statistic


def test_mcnemar_known_values() -> None:
    assert mcnemar_exact(*table_arrays(2, 7, 0, 1)).p_value == pytest.approx(2 * 0.5**7)
    assert mcnemar_exact(*table_arrays(9, 0, 0, 9)) == McNemar(0, 0, 0, 1.0, "mcnemar_exact")


def test_sign_test_on_per_question_means() -> None:
    e = np.array([0.5, 0.7, 0.2, 1 / 3, 0.9])
    s = np.array([0.5, 0.3, 0.4, 1 - 2 / 3, 0.1])  # question 4 ties up to rounding
    m = mcnemar_exact(e, s)
    assert (m.b, m.c, m.test) == (2, 1, "sign_test")
    assert m.p_value == pytest.approx(sps.binomtest(2, 3, 0.5).pvalue)


# --- ratio and chance ----------------------------------------------------------------------


def test_ratio_not_shown_at_chance_says_why() -> None:
    e, s = table_arrays(15, 20, 4, 61)  # straight-up 19 / 100 with chance 0.25
    r = paired_ratio(e, s, chance=0.25)
    assert not r.shown and r.estimate is None
    assert "straight-up 0.19" in r.reason and "chance 0.25" in r.reason and "at or below" in r.reason


def test_ratio_uses_the_lower_bound_not_the_point_estimate() -> None:
    e, s = table_arrays(25, 20, 5, 50)  # straight-up 0.30 > 0.25, but its Wilson lower bound is 0.219
    assert s.mean() > 0.25
    r = paired_ratio(e, s, chance=0.25)
    assert r.estimate is None and "0.219" in r.reason
    r_low = paired_ratio(e, s, chance=0.2)
    assert r_low.shown and "above chance 0.2" in r_low.reason


def test_ratio_matches_scipy_paired_bootstrap() -> None:
    e, s = correlated(300, 8)
    r = paired_ratio(e, s, chance=0.25, n_boot=5000, seed=2).estimate
    assert r is not None and r.value == pytest.approx(e.mean() / s.mean())
    ref = sps.bootstrap((e, s), lambda a, b, axis: a.mean(axis) / b.mean(axis), paired=True, vectorized=True,
                       method="percentile", n_resamples=5000, rng=np.random.default_rng(9)).confidence_interval
    assert (r.lo, r.hi) == pytest.approx((ref.low, ref.high), rel=0.02)


def test_chance_must_be_a_probability() -> None:
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="chance"):
            paired_gap(np.ones(4), np.ones(4), chance=bad)


# --- PairedGap ---------------------------------------------------------------------------


def test_paired_gap_holds_all_parts_consistently() -> None:
    e, s = correlated(250, 10)
    g = paired_gap(e, s, chance=0.25, n_boot=800, seed=5)
    assert g.n == 250 and g.elicited.method == g.straight.method == "wilson"
    assert g.difference == paired_difference(e, s, n_boot=800, seed=5)
    assert g.mcnemar == mcnemar_exact(e, s)
    r = paired_ratio(e, s, chance=0.25, n_boot=800, seed=5)
    assert g.ratio == r.estimate and g.ratio_reason == r.reason and g.ratio is not None
    assert g.difference.value == pytest.approx(g.elicited.value - g.straight.value)


def test_paired_gap_on_means_uses_bootstrap_levels() -> None:
    rng = np.random.default_rng(11)
    s = rng.integers(0, 4, 80) / 3  # mean of three runs
    g = paired_gap(np.clip(s + 0.2, 0, 1), s, chance=0.25, n_boot=300)
    assert g.elicited.method == g.straight.method == "bootstrap" and g.mcnemar.test == "sign_test"
    assert 0.0 <= g.straight.lo <= g.straight.value <= g.straight.hi <= 1.0


def test_to_dict_is_plain_json_without_nan() -> None:
    e, s = table_arrays(10, 6, 2, 82)
    d = paired_gap(e, s, chance=0.25, n_boot=200).to_dict()
    assert d["ratio"] is None and "not shown" in d["ratio_reason"]
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    nan = Estimate(float("nan"), float("nan"), float("nan"), 0, "bootstrap")
    g = PairedGap(0, nan, nan, nan, McNemar(0, 0, 0, 1.0, "mcnemar_exact"), nan, "x", 0.25, 0.95)
    out = g.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["elicited"]["value"] is None and out["ratio"]["hi"] is None


# --- best of k ---------------------------------------------------------------------------


def best_of_k_case() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(12)
    dev = {"c": (rng.random(60) < 0.5).astype(int), "b": (rng.random(60) < 0.7).astype(int),
           "a": (rng.random(60) < 0.4).astype(int)}
    straight = (rng.random(90) < 0.4).astype(int)
    test = {"a": np.maximum(straight, rng.random(90) < 0.1).astype(int),
            "b": np.maximum(straight, rng.random(90) < 0.2).astype(int),
            "c": np.maximum(straight, rng.random(90) < 0.45).astype(int)}
    return dev, test, straight


def test_best_of_k_chooses_on_dev_and_reports_on_test() -> None:
    dev, test, straight = best_of_k_case()
    out = select_best_of_k(dev, test, straight, chance=0.25, n_boot=300, n_perm=300, seed=3)
    assert out.chosen == "b" and out.naive_max == "c"
    assert out.gap.elicited.value == pytest.approx(test["b"].mean())
    assert out.gap == paired_gap(test["b"], straight, chance=0.25, n_boot=300, seed=3)
    assert out.naive_max_test == pytest.approx(test["c"].mean())
    assert out.inflation == pytest.approx(test["c"].mean() - test["b"].mean()) and out.inflation > 0
    assert out.naive_max_difference == pytest.approx(test["c"].mean() - straight.mean())
    table = np.column_stack([test[k] for k in ("a", "b", "c")])
    assert out.null == max_excess_null(table, n_perm=300, seed=3)
    assert (out.n_dev, out.n_test) == (60, 90)
    d = out.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d and d["gap"]["n"] == 90


def test_best_of_k_uses_the_shared_selection_rule() -> None:
    dev, test, straight = best_of_k_case()
    out = select_best_of_k(dev, test, straight, chance=0.25, n_boot=50, n_perm=50)
    ref = select_then_report(out.dev_accuracy, out.test_accuracy)
    assert (out.chosen, out.naive_max, out.inflation) == (ref["chosen"], ref["naive_max_key"], ref["gap"])
    tied = {"z": np.ones(4), "y": np.ones(4)}
    assert select_best_of_k(tied, tied, np.zeros(4), chance=0.0, n_boot=20, n_perm=20).chosen == "y"


def test_best_of_k_single_candidate_has_no_null() -> None:
    out = select_best_of_k({"only": np.ones(5)}, {"only": np.array([1, 0, 1, 1, 0])}, np.zeros(5), chance=0.25,
                           n_boot=50)
    assert out.null is None and out.inflation == 0.0 and out.gap.ratio is None


def test_best_of_k_validation_names_the_problem() -> None:
    dev, test, straight = best_of_k_case()
    with pytest.raises(ValueError, match=r"only dev \['c'\]"):
        select_best_of_k(dev, {k: test[k] for k in "ab"}, straight, chance=0.25)
    with pytest.raises(ValueError, match="share 1 question ids"):
        select_best_of_k(dev, test, straight, chance=0.25, dev_ids=[f"q{i}" for i in range(60)],
                         test_ids=[f"q{i}" for i in range(59, 149)], straight_ids=[f"q{i}" for i in range(59, 149)])
    with pytest.raises(ValueError, match="different numbers of questions"):
        select_best_of_k({"a": np.ones(3), "b": np.ones(4)}, {"a": np.ones(3), "b": np.ones(3)}, np.ones(3),
                         chance=0.25)
    with pytest.raises(ValueError, match="elicited has 90 questions, straight has 89"):
        select_best_of_k(dev, test, straight[:-1], chance=0.25)



def test_best_of_k_takes_a_dev_score_measured_another_way() -> None:
    """A candidate whose dev evidence is one number (a probe's train cross-validation accuracy) competes with
    per-question candidates under the same rule; its number alone decides whether it is chosen."""
    dev, test, straight = best_of_k_case()
    mixed = {**dev, "probe": 0.9}
    tests = {**test, "probe": test["a"]}
    out = select_best_of_k(mixed, tests, straight, chance=0.25, n_boot=50, n_perm=50, seed=1)
    assert out.chosen == "probe" and out.dev_accuracy["probe"] == 0.9 and out.n_dev == 60
    assert out.gap == paired_gap(test["a"], straight, chance=0.25, n_boot=50, seed=1)
    out = select_best_of_k({**dev, "probe": 0.1}, tests, straight, chance=0.25, n_boot=50, n_perm=50)
    assert out.chosen == "b"
    only = select_best_of_k({"x": 0.6, "y": 0.7}, {"x": test["a"], "y": test["b"]}, straight, chance=0.25,
                            dev_ids=[f"d{i}" for i in range(7)], n_boot=50, n_perm=50)
    assert only.chosen == "y" and only.n_dev == 7
    with pytest.raises(ValueError, match=r"dev\['probe'\] must be an accuracy in \[0, 1\]"):
        select_best_of_k({**dev, "probe": 1.5}, tests, straight, chance=0.25)
