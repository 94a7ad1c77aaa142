"""Tests for eval.runs: accuracy over runs and the fraction of the gap recovered, against explicit resampling."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from eval.runs import accuracy_over_runs, fraction_recovered
from eval.stats import accuracy, wilson_interval
from locking.metrics import pgr


def runs_of(ps: tuple[float, ...], n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random(n) < p).astype(int) for p in ps]


# --- accuracy over runs ------------------------------------------------------------------


def test_one_run_is_the_wilson_interval() -> None:
    run = runs_of((0.6,), 40, 0)[0]
    assert accuracy_over_runs([run]) == accuracy(run)
    assert accuracy_over_runs(run) == accuracy(run)  # a 1-D array is one run
    assert accuracy_over_runs([1, 0, 1]) == accuracy(np.array([1, 0, 1]))


def test_nothing_to_vary_gives_no_interval() -> None:
    for empty in ([], [np.array([])], [np.array([]), np.array([])]):
        e = accuracy_over_runs(empty)
        assert e.n == 0 and e.method == "none" and all(math.isnan(v) for v in (e.value, e.lo, e.hi))


def test_empty_run_among_others_is_refused_by_index() -> None:
    with pytest.raises(ValueError, match="run 1 has no questions"):
        accuracy_over_runs([np.ones(3), np.array([]), np.ones(2)])


@pytest.mark.parametrize("outcome", [0, 1])
def test_all_same_outcome_gets_wilson_over_distinct_questions(outcome: int) -> None:
    runs = [np.full(20, outcome), np.full(20, outcome), np.full(12, outcome)]
    no_ids = accuracy_over_runs(runs)
    ref = wilson_interval(20 * outcome, 20)  # the largest run: runs may share questions
    assert (no_ids.value, no_ids.lo, no_ids.hi, no_ids.n, no_ids.method) == (outcome, ref.lo, ref.hi, 52, "wilson")
    ids = [[f"q{i}" for i in range(20)], [f"q{i}" for i in range(10, 30)], [f"q{i}" for i in range(12)]]
    with_ids = accuracy_over_runs(runs, ids_by_run=ids)
    ref30 = wilson_interval(30 * outcome, 30)
    assert (with_ids.lo, with_ids.hi) == (ref30.lo, ref30.hi)
    assert 0.0 <= with_ids.lo < with_ids.hi <= 1.0


@pytest.mark.parametrize("ids", [False, True])
@pytest.mark.parametrize(("ps", "n"), [((1.0, 1.0, 0.9), 30), ((0.0, 0.05, 0.0), 30), ((0.5,) * 6, 1),
                                        ((0.97, 0.99), 200), ((0.1, 0.9), 5)])
def test_intervals_stay_in_unit_interval(ps: tuple[float, ...], n: int, ids: bool) -> None:
    runs = runs_of(ps, n, 1)
    kw = {"ids_by_run": [np.arange(n)] * len(runs)} if ids else {}
    e = accuracy_over_runs(runs, n_boot=500, **kw)
    assert 0.0 <= e.lo <= e.value <= e.hi <= 1.0
    assert e.value == pytest.approx(np.mean([r.mean() for r in runs]))


def test_nested_bootstrap_matches_explicit_resampling() -> None:
    runs = [r[: 30 + 10 * i] for i, r in enumerate(runs_of((0.5, 0.65, 0.8), 60, 2))]
    e = accuracy_over_runs(runs, n_boot=5000, seed=0)
    assert e.method == "bootstrap_nested" and e.n == 30 + 40 + 50
    rng = np.random.default_rng(123)
    ref = np.empty(4000)
    for b in range(4000):  # runs with replacement, then questions with replacement inside each drawn run
        ref[b] = np.mean([runs[r][rng.integers(0, len(runs[r]), len(runs[r]))].mean()
                          for r in rng.integers(0, 3, 3)])
    assert (e.lo, e.hi) == pytest.approx(tuple(np.quantile(ref, [0.025, 0.975])), abs=0.02)


def test_crossed_bootstrap_counts_shared_questions_once() -> None:
    """Identical runs on the same questions carry one run's information: with ids the interval is the one-run
    question bootstrap; without ids (nested) it is too narrow by about sqrt(3)."""
    run = runs_of((0.6,), 150, 3)[0]
    runs = [run, run.copy(), run.copy()]
    crossed = accuracy_over_runs(runs, ids_by_run=[np.arange(150)] * 3, n_boot=4000)
    nested = accuracy_over_runs(runs, n_boot=4000)
    one = sps.bootstrap((run,), np.mean, method="percentile", n_resamples=4000,
                        rng=np.random.default_rng(0)).confidence_interval
    assert crossed.method == "bootstrap_crossed" and nested.method == "bootstrap_nested"
    assert crossed.hi - crossed.lo == pytest.approx(one.high - one.low, rel=0.1)
    assert nested.hi - nested.lo < 0.75 * (crossed.hi - crossed.lo)


def test_crossed_bootstrap_uses_ids_not_positions() -> None:
    runs = runs_of((0.4, 0.7), 50, 4)
    ids = [np.array([f"q{i}" for i in range(50)])] * 2
    perm = np.random.default_rng(5).permutation(50)
    a = accuracy_over_runs(runs, ids_by_run=ids, n_boot=300)
    b = accuracy_over_runs([runs[0], runs[1][perm]], ids_by_run=[ids[0], ids[1][perm]], n_boot=300)
    assert a == b


def test_accuracy_over_runs_deterministic_and_validated() -> None:
    runs = runs_of((0.4, 0.6, 0.5), 40, 6)
    assert accuracy_over_runs(runs, seed=1, n_boot=300) == accuracy_over_runs(runs, seed=1, n_boot=300)
    assert len({accuracy_over_runs(runs, seed=s, n_boot=50) for s in range(5)}) > 1
    with pytest.raises(ValueError, match="run 2 must hold 0/1"):
        accuracy_over_runs([np.ones(3), np.ones(3), np.array([0.5, 1, 0])])
    with pytest.raises(ValueError, match="ids for 2 runs, there are 3 runs"):
        accuracy_over_runs(runs, ids_by_run=[np.arange(40)] * 2)
    with pytest.raises(ValueError, match="run 0 has 39 ids for 40 values"):
        accuracy_over_runs(runs, ids_by_run=[np.arange(39), np.arange(40), np.arange(40)])
    with pytest.raises(ValueError, match=r"run 1 has duplicate question ids \['0'\]"):
        accuracy_over_runs(runs, ids_by_run=[np.arange(40), np.zeros(40, dtype=int), np.arange(40)])


# --- fraction of the gap recovered -------------------------------------------------------


def gap_case(seed: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    locked = (rng.random(120) < 0.25).astype(int)
    with_pw = np.maximum(locked, rng.random(120) < 0.6).astype(int)
    elicited = [np.where(rng.random(120) < p, with_pw, locked) for p in (0.4, 0.5, 0.6)]
    return locked, with_pw, elicited


def test_recovered_known_answers_have_zero_width() -> None:
    locked, with_pw, _ = gap_case(7)
    full = fraction_recovered([with_pw, with_pw.copy()], locked, with_pw, n_boot=500)
    assert (full.fraction.value, full.fraction.lo, full.fraction.hi) == (1.0, 1.0, 1.0)
    none = fraction_recovered([locked.copy()], locked, with_pw, n_boot=500)
    assert (none.fraction.value, none.fraction.lo, none.fraction.hi) == (0.0, 0.0, 0.0)


def test_recovered_value_matches_pgr_and_dict_is_json() -> None:
    locked, with_pw, elicited = gap_case(8)
    r = fraction_recovered(elicited, locked, with_pw, n_boot=500)
    e = np.mean([x.mean() for x in elicited])
    assert r.fraction.value == pytest.approx(pgr(e, locked.mean(), with_pw.mean()))
    assert (r.elicited, r.locked, r.with_password) == pytest.approx((e, locked.mean(), with_pw.mean()))
    assert r.fraction.lo < r.fraction.value < r.fraction.hi and r.fraction.method == "bootstrap_crossed"
    assert (r.n_runs, r.n_questions, r.n_dropped) == ((3, 1, 1), 120, 0)
    d = r.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d


def test_recovered_one_run_each_matches_scipy_paired_bootstrap() -> None:
    locked, with_pw, elicited = gap_case(9)
    r = fraction_recovered(elicited[1], locked, with_pw, n_boot=5000, seed=3)

    def stat(e: np.ndarray, lo: np.ndarray, hi: np.ndarray, axis: int) -> np.ndarray:
        return (e.mean(axis) - lo.mean(axis)) / (hi.mean(axis) - lo.mean(axis))

    ref = sps.bootstrap((elicited[1], locked, with_pw), stat, paired=True, vectorized=True, method="percentile",
                        n_resamples=5000, rng=np.random.default_rng(4)).confidence_interval
    assert (r.fraction.lo, r.fraction.hi) == pytest.approx((ref.low, ref.high), abs=0.02)


def test_recovered_run_resampling_widens_and_pairing_is_applied() -> None:
    locked, with_pw, elicited = gap_case(10)
    one = fraction_recovered([elicited[1]] * 3, locked, with_pw, n_boot=2000)
    spread = fraction_recovered(elicited, locked, with_pw, n_boot=2000)
    assert spread.fraction.hi - spread.fraction.lo > one.fraction.hi - one.fraction.lo
    # paired runs: run i of elicited recovers exactly what run i of with_password adds, so every replicate is 1
    lks = [locked, locked.copy()]
    pws = [with_pw, np.maximum(locked, np.random.default_rng(1).random(120) < 0.3).astype(int)]
    paired = fraction_recovered([p.copy() for p in pws], lks, pws, paired_runs=True, n_boot=500)
    assert (paired.fraction.lo, paired.fraction.hi) == pytest.approx((1.0, 1.0))
    unpaired = fraction_recovered([p.copy() for p in pws], lks, pws, n_boot=500)
    assert unpaired.fraction.hi - unpaired.fraction.lo > 0.05


def test_recovered_with_ids_aligns_by_id() -> None:
    locked, with_pw, elicited = gap_case(11)
    ids = np.array([f"q{i}" for i in range(120)])
    perm = np.random.default_rng(12).permutation(120)
    a = fraction_recovered(elicited, locked, with_pw, elicited_ids=[ids] * 3, locked_ids=ids, with_password_ids=ids,
                           n_boot=300)
    b = fraction_recovered(elicited, locked[perm], with_pw[perm], elicited_ids=[ids] * 3, locked_ids=ids[perm],
                           with_password_ids=ids[perm], n_boot=300)
    assert a == b


def test_recovered_zero_gap_and_validation() -> None:
    locked, _, elicited = gap_case(13)
    r = fraction_recovered(elicited, locked, locked.copy(), n_boot=200)
    assert math.isnan(r.fraction.value) and math.isnan(r.fraction.lo) and r.n_dropped == 200
    assert r.to_dict()["fraction"]["value"] is None
    with pytest.raises(ValueError, match="lengths differ"):
        fraction_recovered(elicited, locked[:-1], locked, n_boot=10)
    with pytest.raises(ValueError, match="for all of elicited, locked and with_password"):
        fraction_recovered(elicited, locked, locked, locked_ids=np.arange(120))
    with pytest.raises(ValueError, match="paired_runs needs equal numbers of runs"):
        fraction_recovered(elicited, locked, locked, paired_runs=True)
    with pytest.raises(ValueError, match="locked needs at least one run"):
        fraction_recovered(elicited, [], locked)
    assert fraction_recovered(elicited, locked, np.ones(120), seed=5, n_boot=100) == \
        fraction_recovered(elicited, locked, np.ones(120), seed=5, n_boot=100)
