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
    one = metrics.pgr_over_runs([0.5], 0.2, 0.8)
    assert one.value == one.lo == one.hi == pytest.approx(0.5)
    assert math.isnan(metrics.pgr_over_runs([0.5], 0.3, 0.3).value)


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
