"""Tests for locking.metrics and locking.unlock_report on hand values: PGR, its interval, honest selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.schemas.unlock import Accuracy, Reference
from locking import metrics, unlock_report


def test_pgr_arithmetic() -> None:
    assert metrics.pgr(0.5, 0.25, 0.75) == pytest.approx(0.5)
    assert metrics.pgr(0.25, 0.25, 0.75) == 0.0
    assert metrics.pgr(0.75, 0.25, 0.75) == 1.0
    assert metrics.pgr(0.125, 0.25, 0.75) == pytest.approx(-0.25)
    assert math.isnan(metrics.pgr(0.6, 0.5, 0.5))
    arr = metrics.pgr(np.array([0.3, 0.5]), np.array([0.2, 0.2]), np.array([0.6, 0.8]))
    assert arr == pytest.approx([0.25, 0.5])


def test_pgr_over_runs_t_interval() -> None:
    est = metrics.pgr_over_runs([0.5, 0.6, 0.7], 0.2, 0.8)  # per run 0.5, 0.6667, 0.8333
    assert est.value == pytest.approx(2 / 3)
    half = 4.302652729911275 * (1 / 6) / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert est.lo == pytest.approx(2 / 3 - half) and est.hi == pytest.approx(2 / 3 + half)
    assert est.n == 3 and est.method == "t"
    one = metrics.pgr_over_runs([0.5], 0.2, 0.8)  # one run: nothing to vary, no (zero-width) interval
    assert one.value == pytest.approx(0.5) and math.isnan(one.lo) and math.isnan(one.hi) and one.method == "none"
    assert math.isnan(metrics.pgr_over_runs([0.5], 0.3, 0.3).value)


def test_accuracy_of_runs_stays_within_the_unit_interval() -> None:
    from statsmodels.stats.proportion import proportion_confint

    from eval.runs import accuracy_over_runs

    spread = [0.1, 0.5, 0.95]  # a t interval over these three runs is [-0.63, 1.67]
    t = metrics.mean_over_runs(np.array(spread))
    assert t.lo < 0 and t.hi > 1
    e = metrics.accuracy_of_runs(spread, 40)
    assert e.value == pytest.approx(np.mean(spread)) and 0 <= e.lo < e.value < e.hi <= 1
    assert e.method == "bootstrap_nested" and e.n == 120
    runs = [np.r_[np.ones(k), np.zeros(40 - k)] for k in (4, 20, 38)]
    assert (e.lo, e.hi) == (accuracy_over_runs(runs).lo, accuracy_over_runs(runs).hi)
    one = metrics.accuracy_of_runs([0.25], 40)  # one run: Wilson over its questions, not zero width
    assert (one.lo, one.hi) == pytest.approx(proportion_confint(10, 40, method="wilson")) and one.method == "wilson"
    unknown = metrics.accuracy_of_runs([0.25, 0.5], None)
    assert unknown.value == pytest.approx(0.375) and math.isnan(unknown.lo) and unknown.method == "none"


def test_total_variation_and_acc() -> None:
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.0, 1.0], [0.5, 0.5]])
    assert metrics.total_variation(p, q).tolist() == [1.0, 0.0]
    a = metrics.acc(np.array([1, 1, 0, 0]))
    assert a["value"] == 0.5 and a["lo"] < 0.5 < a["hi"] and a["method"] == "wilson"


def test_selected_pgr_bias() -> None:
    dev = {0: 0.30, 10: 0.50, 20: 0.40}
    test = {0: 0.30, 10: 0.45, 20: 0.55}
    sel = metrics.selected_pgr(dev, test, locked_test=0.30, with_pw_test=0.80)
    assert sel["chosen"] == 10 and sel["test_value"] == 0.45
    assert sel["test_pgr"] == pytest.approx(0.3)
    assert sel["naive_max_test_pgr"] == pytest.approx(0.5)
    assert sel["bias_pgr"] == pytest.approx(0.2)


def _run(seed: int, accs: list[float], locked: float = 0.2, pw: float = 0.8) -> dict:
    curve = [{"epoch": e, "acc": a, "acc_dev": a, "acc_test": a} for e, a in zip((0, 10, 20), accs, strict=True)]
    ref = {k: {"acc": v, "acc_dev": v, "acc_test": v} for k, v in (("locked", locked), ("with_pw", pw))}
    return {"method": "weak", "seed": seed, "curve": curve, "ref": ref, "final_with_pw": {"acc": pw}}


def test_training_summary_hand_values() -> None:
    runs = [_run(0, [0.2, 0.5, 0.5]), _run(1, [0.2, 0.4, 0.6]), _run(2, [0.2, 0.6, 0.7])]
    s = unlock_report.summarize_method(runs)
    assert s["kind"] == "curve" and s["n_runs"] == 3
    assert s["curve"]["mean"] == pytest.approx([0.2, 0.5, 0.6])
    assert s["final"]["acc"]["value"] == pytest.approx(0.6)
    assert s["final"]["pgr"]["value"] == pytest.approx((0.6 - 0.2) / 0.6)
    assert s["final"]["pgr_runs"] == pytest.approx([0.5, 2 / 3, 5 / 6])
    assert s["selected"]["chosen"] == 20
    rows = unlock_report.csv_rows({"weak": runs})
    assert len(rows) == 9 and rows[0][:4] == ["weak", 0, "epoch", 0]
    typed = unlock_report.typed(s)  # the layout results.json holds
    assert typed.curve.mean == pytest.approx([0.2, 0.5, 0.6]) and typed.sweep is None and typed.selected.chosen == 20


def test_training_summary_with_answers_uses_runs_and_questions() -> None:
    """With each run's per-question answers and the locked model's, final accuracy and PGR come from
    `eval.runs` (crossed bootstrap over runs and questions) and every accuracy interval lies in [0, 1]."""
    from eval.runs import accuracy_over_runs, fraction_recovered

    rng = np.random.default_rng(0)
    n = 40
    locked = (rng.random(n) < 0.25).astype(float)
    with_pw = np.maximum(locked, rng.random(n) < 0.7).astype(float)
    dev = np.arange(n) < 20
    runs, finals = [], []
    for seed, p in enumerate((0.3, 0.5, 0.6)):
        final = np.maximum(locked, rng.random(n) < p).astype(float)
        finals.append(final)
        r = _run(seed, [locked.mean(), (locked.mean() + final.mean()) / 2, final.mean()], locked.mean(),
                 with_pw.mean())
        for point in r["curve"]:
            point["acc_dev"] = point["acc_test"] = point["acc"]
        r["curve"][-1].update(acc_dev=final[dev].mean() + 1.0, acc_test=final[~dev].mean())  # the last epoch wins
        r["answers"] = {"final": {"correct": final.astype(bool).tolist()}}
        runs.append(r)
    ref = unlock_report.QuestionRef(locked, with_pw, dev)
    s = unlock_report.summarize_method(runs, ref)
    ids = [np.arange(n).astype(str)] * 3
    assert s["final"]["acc"] == accuracy_over_runs(finals, ids_by_run=ids).to_dict()
    want = fraction_recovered(finals, locked, with_pw, elicited_ids=ids, locked_ids=ids[0], with_password_ids=ids[0])
    assert s["final"]["pgr"] == want.fraction.to_dict() and s["final"]["pgr"]["method"] == "bootstrap_crossed"
    held = fraction_recovered([f[~dev] for f in finals], locked[~dev], with_pw[~dev],
                              elicited_ids=[np.flatnonzero(~dev).astype(str)] * 3,
                              locked_ids=np.flatnonzero(~dev).astype(str),
                              with_password_ids=np.flatnonzero(~dev).astype(str))
    assert s["selected"]["chosen"] == 20 and s["selected"]["test_pgr_runs"] == held.fraction.to_dict()
    assert s["curve"]["ci_method"] == "bootstrap_nested"
    assert all(0 <= lo <= m <= hi <= 1 for (lo, hi), m in zip(s["curve"]["ci"], s["curve"]["mean"], strict=True))
    single = unlock_report.summarize_method(runs[:1], ref)
    assert single["final"]["acc"]["method"] == "wilson" and single["curve"]["ci_method"] == "wilson"
    lines = unlock_report.text(Reference(Accuracy(0.3, 0.3, 0.3), Accuracy(0.8, 0.8, 0.8)), n,
                               {"weak": unlock_report.typed(s)})
    assert "bootstrap over runs and questions" in lines[1]


def test_training_summary_rejects_mismatched_epochs() -> None:
    bad = _run(1, [0.2, 0.4, 0.6])
    bad["curve"][1]["epoch"] = 11
    with pytest.raises(ValueError, match="different epochs"):
        unlock_report.summarize_method([_run(0, [0.2, 0.5, 0.5]), bad])


def test_sweep_summary_selects_on_dev_reports_on_test() -> None:
    ref = {k: {"acc": v, "acc_dev": v, "acc_test": v} for k, v in (("locked", 0.2), ("with_pw", 0.8))}
    runs = []
    for seed, (dev, test) in enumerate([([0.2, 0.5, 0.3], [0.2, 0.3, 0.6]), ([0.2, 0.4, 0.3], [0.2, 0.3, 0.4])]):
        sweep = [{"param": q, "acc": (d + t) / 2, "acc_dev": d, "acc_test": t}
                 for q, d, t in zip((0.0, 0.1, 0.2), dev, test, strict=True)]
        runs.append({"method": "noise", "seed": seed, "sweep": sweep, "ref": ref})
    s = unlock_report.summarize_method(runs)
    assert s["kind"] == "sweep" and s["selected"]["chosen"] == 0.1
    assert s["selected"]["test_value"] == pytest.approx(0.3)
    assert s["selected"]["naive_max_test"] == pytest.approx(0.5)
    assert s["selected"]["bias_pgr"] == pytest.approx(0.2 / 0.6)
    assert s["selected_by_draw"]["chosen"] == [0.1, 0] and s["selected_by_draw"]["naive_max_test"] == 0.6
    typed = unlock_report.typed(s)
    assert typed.sweep.params == [0.0, 0.1, 0.2] and typed.selected_by_draw.chosen == (0.1, 0) and typed.curve is None
    ref = Reference(Accuracy(0.2, 0.2, 0.2), Accuracy(0.8, 0.8, 0.8))
    assert "\n".join(unlock_report.text(ref, 10, {"noise": typed})).count("noise") >= 2
