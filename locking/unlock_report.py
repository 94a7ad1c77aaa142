"""Aggregate unlock run records into per-method results: curves, fraction of the gap recovered, honest selection.

For a training method, over its runs (seeds x sample draws):

- ``curve``: per evaluated epoch, mean no-password accuracy over runs with an interval within [0, 1]
  (`locking.metrics.accuracy_of_runs`: the records keep each epoch's accuracy only, so a nested bootstrap over runs
  and questions; Wilson for one run);
- ``final``: accuracy after the last epoch over runs (each run's per-question answers: `eval.runs.accuracy_over_runs`,
  a crossed bootstrap over runs and the shared questions) and ``pgr`` = (unlocked - locked) / (with password -
  locked) with `eval.runs.fraction_recovered` (crossed bootstrap over runs and questions) when the starting model's
  per-question answers are given (`QuestionRef`), else the mean of the per-run values with a t interval over runs
  (no interval for one run);
- ``selected``: the epoch chosen on the selection half of the eval questions, reported on the other half, with the
  naive best epoch on the report half and the bias of taking that maximum (`locking.metrics.selected_pgr`).

For a weight-space sweep (noise scales, weight scale factors): the mean per parameter (per-question answers: crossed
bootstrap over runs and questions), the parameter chosen on the selection half and its report-half PGR, and the
bias of the maximum both over parameters and over single draws.

Every interval says what it is over in its ``method``: wilson (questions), bootstrap_nested / bootstrap_crossed
(runs and questions), t (runs), none (nothing to vary, or no per-question data: lo = hi = null).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.schemas import format_estimate, from_data
from core.schemas.unlock import Reference, Sweep, UnlockMethod
from eval.runs import accuracy_over_runs, fraction_recovered
from eval.stats import Estimate, select_then_report
from locking.metrics import accuracy_of_runs, pgr, pgr_over_runs, selected_pgr

CSV_HEADER = ["method", "seed", "kind", "x", "acc", "acc_dev", "acc_test", "locked_acc", "with_pw_acc"]
NESTED = "bootstrap_nested"


@dataclass(frozen=True)
class QuestionRef:
    """The starting (locked) model's per-question correctness on the eval questions, in eval order, without and
    with the password, and which questions are in the selection (dev) half."""

    locked: np.ndarray
    with_pw: np.ndarray
    dev: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.locked) == len(self.with_pw) == len(self.dev)):
            raise ValueError("QuestionRef: locked, with_pw and dev need one entry per eval question")


def _ref(runs: Sequence[Mapping[str, Any]], which: str, key: str) -> np.ndarray:
    return np.array([r["ref"][which][key] for r in runs])


def _correct(runs: Sequence[Mapping[str, Any]], key: str) -> np.ndarray | None:
    """(runs, questions) per-question 0/1 answers under `key` ("final" or a swept parameter), None if any run
    lacks them."""
    rows = [r.get("answers", {}).get(key, {}).get("correct") for r in runs]
    if any(x is None for x in rows) or len({len(x) for x in rows}) != 1:
        return None
    return np.asarray(rows, dtype=float)


def _n_questions(runs: Sequence[Mapping[str, Any]], ref: QuestionRef | None) -> int | None:
    if ref is not None:
        return len(ref.locked)
    for r in runs:
        for a in r.get("answers", {}).values():
            return len(a["correct"])
    return None


def _acc(correct: np.ndarray) -> dict[str, Any]:
    """Accuracy over runs of per-question answers on the same questions (crossed bootstrap; Wilson for one run)."""
    ids = [np.arange(correct.shape[1]).astype(str)] * len(correct)
    return accuracy_over_runs(list(correct), ids_by_run=ids).to_dict()


def _recovered(correct: np.ndarray, ref: QuestionRef, mask: np.ndarray) -> dict[str, Any]:
    """Fraction of the gap recovered on the questions in `mask` (crossed bootstrap over runs and questions)."""
    ids = np.flatnonzero(mask).astype(str)
    rec = fraction_recovered(list(correct[:, mask]), ref.locked[mask], ref.with_pw[mask],
                             elicited_ids=[ids] * len(correct), locked_ids=ids, with_password_ids=ids)
    return rec.fraction.to_dict()


def _band(acc: np.ndarray, n: int | None) -> tuple[list[list[float]], str]:
    """Per column of (runs, points) accuracies: the interval of the mean over runs, and its method."""
    ests = [accuracy_of_runs(acc[:, j], n) for j in range(acc.shape[1])]
    return [[e.lo, e.hi] for e in ests], (ests[0].method if ests else "none")


def training_summary(runs: Sequence[Mapping[str, Any]], ref: QuestionRef | None = None) -> dict[str, Any]:
    """Per-method result of runs that carry a curve."""
    epochs = [p["epoch"] for p in runs[0]["curve"]]
    for r in runs:
        if [p["epoch"] for p in r["curve"]] != epochs:
            raise ValueError(f"runs of {r['method']} were evaluated at different epochs")
    acc = np.array([[p["acc"] for p in r["curve"]] for r in runs])
    dev = np.array([[p["acc_dev"] for p in r["curve"]] for r in runs])
    test = np.array([[p["acc_test"] for p in r["curve"]] for r in runs])
    locked, with_pw = _ref(runs, "locked", "acc"), _ref(runs, "with_pw", "acc")
    n = _n_questions(runs, ref)
    final = acc[:, -1]
    correct = _correct(runs, "final")
    sel = selected_pgr({e: float(d) for e, d in zip(epochs, dev.mean(0), strict=True)},
                       {e: float(t) for e, t in zip(epochs, test.mean(0), strict=True)},
                       float(_ref(runs, "locked", "acc_test").mean()), float(_ref(runs, "with_pw", "acc_test").mean()))
    k = epochs.index(sel["chosen"])
    if correct is not None and ref is not None and k == len(epochs) - 1:
        sel["test_pgr_runs"] = _recovered(correct, ref, ~ref.dev)
    else:  # per-question answers are kept for the final epoch only
        sel["test_pgr_runs"] = pgr_over_runs(test[:, k], _ref(runs, "locked", "acc_test"),
                                             _ref(runs, "with_pw", "acc_test")).to_dict()
    ci, ci_method = _band(acc, n)
    has_q = correct is not None and ref is not None
    return {
        "kind": "curve",
        "n_runs": len(runs),
        "seeds": [r["seed"] for r in runs],
        "curve": {"epochs": epochs, "mean": acc.mean(0).tolist(), "ci": ci, "ci_method": ci_method,
                  "runs": acc.tolist()},
        "locked": float(locked.mean()),
        "with_pw": float(with_pw.mean()),
        "final": {"acc": _acc(correct) if correct is not None else accuracy_of_runs(final, n).to_dict(),
                  "pgr": (_recovered(correct, ref, np.ones(len(ref.locked), dtype=bool)) if has_q
                          else pgr_over_runs(final, locked, with_pw).to_dict()),
                  "pgr_runs": np.atleast_1d(pgr(final, locked, with_pw)).tolist(),
                  "with_pw_after": accuracy_of_runs([r["final_with_pw"]["acc"] for r in runs], n).to_dict()},
        "max_over_epochs": {"acc": accuracy_of_runs(acc.max(1), n).to_dict(),
                            "pgr": pgr_over_runs(acc.max(1), locked, with_pw).to_dict(),
                            "note": "max over evaluated epochs on the same questions: biased upward"},
        "selected": sel,
    }


def sweep_summary(runs: Sequence[Mapping[str, Any]], ref: QuestionRef | None = None) -> dict[str, Any]:
    """Per-method result of noise / scale sweeps (one run per noise seed)."""
    params = [p["param"] for p in runs[0]["sweep"]]
    dev = np.array([[p["acc_dev"] for p in r["sweep"]] for r in runs])
    test = np.array([[p["acc_test"] for p in r["sweep"]] for r in runs])
    acc = np.array([[p["acc"] for p in r["sweep"]] for r in runs])
    lt, pt = _ref(runs, "locked", "acc_test"), _ref(runs, "with_pw", "acc_test")
    sel = selected_pgr({q: float(v) for q, v in zip(params, dev.mean(0), strict=True)},
                       {q: float(v) for q, v in zip(params, test.mean(0), strict=True)}, float(lt.mean()),
                       float(pt.mean()))
    k = params.index(sel["chosen"])
    correct = _correct(runs, str(sel["chosen"]))
    sel["test_pgr_runs"] = (_recovered(correct, ref, ~ref.dev) if correct is not None and ref is not None
                            else pgr_over_runs(test[:, k], lt, pt).to_dict())
    draws_dev = {(q, i): float(dev[i, j]) for i in range(len(runs)) for j, q in enumerate(params)}
    draws_test = {(q, i): float(test[i, j]) for i in range(len(runs)) for j, q in enumerate(params)}
    by_draw = select_then_report(draws_dev, draws_test)
    by_draw = {**by_draw, "chosen": list(by_draw["chosen"]), "naive_max_key": list(by_draw["naive_max_key"]),
               "bias_pgr": float(pgr(by_draw["naive_max_test"], lt.mean(), pt.mean())
                                 - pgr(by_draw["test_value"], lt.mean(), pt.mean()))}
    per_param = [_correct(runs, str(q)) for q in params]
    if all(c is not None for c in per_param):
        ests = [Estimate(**_acc(c)) for c in per_param]
        ci, ci_method = [[e.lo, e.hi] for e in ests], ests[0].method
    else:
        ci, ci_method = _band(acc, _n_questions(runs, ref))
    return {
        "kind": "sweep",
        "n_runs": len(runs),
        "seeds": [r["seed"] for r in runs],
        "params": params,
        "mean": acc.mean(0).tolist(),
        "ci": ci,
        "ci_method": ci_method,
        "runs": acc.tolist(),
        "locked": float(_ref(runs, "locked", "acc").mean()),
        "with_pw": float(_ref(runs, "with_pw", "acc").mean()),
        "selected": sel,
        "selected_by_draw": by_draw,
    }


def summarize_method(runs: Sequence[Mapping[str, Any]], ref: QuestionRef | None = None) -> dict[str, Any]:
    """Curve or sweep summary, by what the runs carry; `ref`: the starting model's per-question answers (the
    fraction recovered then has a crossed bootstrap interval over runs and questions)."""
    if not runs:
        raise ValueError("no runs to summarize")
    return sweep_summary(runs, ref) if "sweep" in runs[0] else training_summary(runs, ref)


def typed(summary: Mapping[str, Any]) -> UnlockMethod:
    """A `summarize_method` result as the typed `UnlockMethod` of results.json."""
    d = dict(summary)
    if d["kind"] == "sweep":
        sweep = Sweep(d.pop("params"), d.pop("mean"), d.pop("ci"), d.pop("ci_method"), d.pop("runs"))
        return from_data(UnlockMethod, {**d, "sweep": sweep, "curve": None, "final": None, "max_over_epochs": None})
    return from_data(UnlockMethod, {**d, "sweep": None, "selected_by_draw": None})


def csv_rows(runs_by_method: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[list[Any]]:
    """One row per evaluated point of every run (kind "epoch" for curves, "param" for sweeps)."""
    rows = []
    for method, runs in runs_by_method.items():
        for r in runs:
            pts, kind, xkey = (r["sweep"], "param", "param") if "sweep" in r else (r["curve"], "epoch", "epoch")
            for p in pts:
                rows.append([method, r["seed"], kind, p[xkey], p["acc"], p["acc_dev"], p["acc_test"],
                             r["ref"]["locked"]["acc"], r["ref"]["with_pw"]["acc"]])
    return rows


def _n(x: float | None, sign: bool = False) -> str:
    """A number for text output; None (a nan read back from JSON) as "nan"."""
    if x is None or not np.isfinite(x):
        return "nan"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


OVER = {"wilson": "Wilson over questions", "bootstrap_crossed": "bootstrap over runs and questions",
        "bootstrap_nested": "bootstrap over runs and questions, questions independent", "t": "t over runs",
        "bootstrap": "bootstrap over questions"}


def _e(d: Any) -> str:
    """'0.515 [0.430, 0.600] (bootstrap over runs and questions)', or '0.515 (no interval)'."""
    return format_estimate(d, missing="nan", over=OVER)


def text(reference: Reference, n_eval: int, methods: Mapping[str, UnlockMethod]) -> list[str]:
    """Summary lines: reference accuracies, then per method its PGR (final and honestly selected)."""
    lines = [f"locked model, eval questions (n={n_eval}): no password {_n(reference.locked.acc)}, "
             f"with password {_n(reference.with_pw.acc)}"]
    for name, m in methods.items():
        s = m.selected
        if m.kind == "curve" and m.final is not None:
            lines.append(f"  {name:<14} runs={m.n_runs}  final acc {_e(m.final.acc)}  PGR "
                         f"{_e(m.final.pgr)}  | epoch chosen on dev {s.chosen}: report-half PGR "
                         f"{_e(s.test_pgr_runs)} (max-on-test bias {_n(s.bias_pgr, True)})")
        elif m.selected_by_draw is not None:
            d = m.selected_by_draw
            lines.append(f"  {name:<14} runs={m.n_runs}  {name} chosen on dev {s.chosen}: report-half PGR "
                         f"{_e(s.test_pgr_runs)} (bias of max over {name} {_n(s.bias_pgr, True)}, over single "
                         f"draws {_n(d.bias_pgr, True)})")
    return lines


def curve_lines(method: UnlockMethod, width: int = 12) -> list[str]:
    """A compact accuracy-vs-epoch table of one curve method (at most `width` columns)."""
    if method.curve is None:
        return []
    ep, mean = method.curve.epochs, method.curve.mean
    idx = np.unique(np.linspace(0, len(ep) - 1, min(width, len(ep))).round().astype(int))
    return ["    epoch " + " ".join(f"{ep[i]:>6g}" for i in idx), "    acc   " + " ".join(f"{_n(mean[i]):>6}" for i in idx)]
