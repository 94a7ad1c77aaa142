"""Lock and unlock metrics as pure functions: accuracies with intervals, fraction of the gap recovered, distances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eval.runs import accuracy_over_runs
from eval.stats import Estimate, accuracy, mean_over_runs, select_then_report


def acc(correct: np.ndarray) -> dict[str, Any]:
    """Accuracy of a 0/1 vector with its Wilson interval, as a dict (value, lo, hi, n, method)."""
    return accuracy(np.asarray(correct, dtype=bool)).to_dict()


def pgr(unlocked: float | np.ndarray, locked: float | np.ndarray, with_pw: float | np.ndarray) -> np.ndarray | float:
    """Fraction of the gap recovered: (unlocked - locked) / (with password - locked); nan where the gap is 0."""
    u, lo, hi = (np.asarray(x, dtype=float) for x in (unlocked, locked, with_pw))
    gap = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(gap != 0, (u - lo) / np.where(gap != 0, gap, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def pgr_over_runs(
    unlocked: Sequence[float], locked: float | Sequence[float], with_pw: float | Sequence[float],
    confidence: float = 0.95,
) -> Estimate:
    """Mean PGR over runs (seeds x sample draws) from each run's accuracies alone: a Student-t interval over the
    per-run values with two runs or more; with one run there is nothing to vary, so no interval (method "none").
    Where per-question answers exist, use `eval.runs.fraction_recovered` instead (runs and questions)."""
    values = np.atleast_1d(pgr(np.asarray(unlocked, dtype=float), locked, with_pw))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "none")
    if values.size == 1:
        return Estimate(float(values[0]), float("nan"), float("nan"), 1, "none")
    return mean_over_runs(values, confidence)


def accuracy_of_runs(accs: Sequence[float], n_questions: int | None, confidence: float = 0.95) -> Estimate:
    """Mean accuracy over runs from each run's accuracy on the same `n_questions` questions, with an interval
    within [0, 1]: `eval.runs.accuracy_over_runs` of runs with round(acc * n) questions right (Wilson for one run;
    otherwise the nested bootstrap over runs and questions, which treats the runs' questions as independent and so
    is narrower than the crossed bootstrap that per-question answers allow). `n_questions` None: no interval."""
    a = np.asarray(accs, dtype=float)
    if a.size == 0 or not np.all(np.isfinite(a)):
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "none")
    if n_questions is None or n_questions < 1:
        return Estimate(float(a.mean()), float("nan"), float("nan"), int(a.size), "none")
    k = np.rint(a * n_questions).astype(int)
    runs = [np.r_[np.ones(c), np.zeros(n_questions - c)] for c in k]
    est = accuracy_over_runs(runs, confidence=confidence)
    return Estimate(float(a.mean()), est.lo, est.hi, est.n, est.method)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row total variation distance between two (n, c) distributions (nan entries ignored)."""
    d = np.abs(np.nan_to_num(np.asarray(p, dtype=float)) - np.nan_to_num(np.asarray(q, dtype=float)))
    return 0.5 * d.sum(axis=1)


def selected_pgr(
    dev: Mapping[Any, float], test: Mapping[Any, float], locked_test: float, with_pw_test: float
) -> dict[str, Any]:
    """Best-of-k done honestly: choose the key on `dev` accuracies, report its `test` accuracy and PGR; the bias of
    taking the maximum on test is `naive_max_test - test_value` (also as PGR)."""
    sel = select_then_report(dev, test)
    sel["test_pgr"] = pgr(sel["test_value"], locked_test, with_pw_test)
    sel["naive_max_test_pgr"] = pgr(sel["naive_max_test"], locked_test, with_pw_test)
    sel["bias_pgr"] = sel["naive_max_test_pgr"] - sel["test_pgr"]
    return sel
