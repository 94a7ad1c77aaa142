"""Aggregate unlock run records into per-method results: curves, fraction of the gap recovered, honest selection.

For a training method, over its runs (seeds x sample draws):

- ``curve``: per evaluated epoch, mean no-password accuracy with a Student-t interval over runs;
- ``final``: accuracy after the last epoch and ``pgr`` = (unlocked - locked) / (with password - locked), per run
  against that run's own reference, mean with a t interval over runs;
- ``selected``: the epoch chosen on the selection half of the eval questions, reported on the other half, with the
  naive best epoch on the report half and the bias of taking that maximum (`locking.metrics.selected_pgr`).

For a weight-space sweep (noise scales, weight scale factors): the mean per parameter, the parameter chosen on the
selection half and its report-half PGR (t interval over noise seeds), and the bias of the maximum both over
parameters and over single draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.schemas import from_data
from core.schemas.unlock import Reference, Sweep, UnlockMethod
from eval.stats import mean_over_runs, select_then_report
from locking.metrics import pgr, pgr_over_runs, selected_pgr

CSV_HEADER = ["method", "seed", "kind", "x", "acc", "acc_dev", "acc_test", "locked_acc", "with_pw_acc"]


def _ref(runs: Sequence[Mapping[str, Any]], which: str, key: str) -> np.ndarray:
    return np.array([r["ref"][which][key] for r in runs])


def _est(values: Sequence[float]) -> dict[str, Any]:
    return mean_over_runs(np.asarray(values, dtype=float)).to_dict()


def training_summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-method result of runs that carry a curve."""
    epochs = [p["epoch"] for p in runs[0]["curve"]]
    for r in runs:
        if [p["epoch"] for p in r["curve"]] != epochs:
            raise ValueError(f"runs of {r['method']} were evaluated at different epochs")
    acc = np.array([[p["acc"] for p in r["curve"]] for r in runs])
    dev = np.array([[p["acc_dev"] for p in r["curve"]] for r in runs])
    test = np.array([[p["acc_test"] for p in r["curve"]] for r in runs])
    locked, with_pw = _ref(runs, "locked", "acc"), _ref(runs, "with_pw", "acc")
    final = acc[:, -1]
    sel = selected_pgr({e: float(d) for e, d in zip(epochs, dev.mean(0), strict=True)},
                       {e: float(t) for e, t in zip(epochs, test.mean(0), strict=True)},
                       float(_ref(runs, "locked", "acc_test").mean()), float(_ref(runs, "with_pw", "acc_test").mean()))
    k = epochs.index(sel["chosen"])
    sel["test_pgr_runs"] = pgr_over_runs(test[:, k], _ref(runs, "locked", "acc_test"),
                                         _ref(runs, "with_pw", "acc_test")).to_dict()
    return {
        "kind": "curve",
        "n_runs": len(runs),
        "seeds": [r["seed"] for r in runs],
        "curve": {"epochs": epochs, "mean": acc.mean(0).tolist(),
                  "ci": [list(_ci(acc[:, j])) for j in range(len(epochs))], "runs": acc.tolist()},
        "locked": float(locked.mean()),
        "with_pw": float(with_pw.mean()),
        "final": {"acc": _est(final), "pgr": pgr_over_runs(final, locked, with_pw).to_dict(),
                  "pgr_runs": np.atleast_1d(pgr(final, locked, with_pw)).tolist(),
                  "with_pw_after": _est([r["final_with_pw"]["acc"] for r in runs])},
        "max_over_epochs": {"acc": _est(acc.max(1)), "pgr": pgr_over_runs(acc.max(1), locked, with_pw).to_dict(),
                            "note": "max over evaluated epochs on the same questions: biased upward"},
        "selected": sel,
    }


def _ci(values: np.ndarray) -> tuple[float, float]:
    e = mean_over_runs(values)
    return e.lo, e.hi


def sweep_summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
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
    sel["test_pgr_runs"] = pgr_over_runs(test[:, k], lt, pt).to_dict()
    draws_dev = {(q, i): float(dev[i, j]) for i in range(len(runs)) for j, q in enumerate(params)}
    draws_test = {(q, i): float(test[i, j]) for i in range(len(runs)) for j, q in enumerate(params)}
    by_draw = select_then_report(draws_dev, draws_test)
    by_draw = {**by_draw, "chosen": list(by_draw["chosen"]), "naive_max_key": list(by_draw["naive_max_key"]),
               "bias_pgr": float(pgr(by_draw["naive_max_test"], lt.mean(), pt.mean())
                                 - pgr(by_draw["test_value"], lt.mean(), pt.mean()))}
    return {
        "kind": "sweep",
        "n_runs": len(runs),
        "seeds": [r["seed"] for r in runs],
        "params": params,
        "mean": acc.mean(0).tolist(),
        "ci": [list(_ci(acc[:, j])) for j in range(len(params))],
        "runs": acc.tolist(),
        "locked": float(_ref(runs, "locked", "acc").mean()),
        "with_pw": float(_ref(runs, "with_pw", "acc").mean()),
        "selected": sel,
        "selected_by_draw": by_draw,
    }


def summarize_method(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Curve or sweep summary, by what the runs carry."""
    if not runs:
        raise ValueError("no runs to summarize")
    return sweep_summary(runs) if "sweep" in runs[0] else training_summary(runs)


def typed(summary: Mapping[str, Any]) -> UnlockMethod:
    """A `summarize_method` result as the typed `UnlockMethod` of results.json."""
    d = dict(summary)
    if d["kind"] == "sweep":
        sweep = Sweep(d.pop("params"), d.pop("mean"), d.pop("ci"), d.pop("runs"))
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


def _e(d: Any) -> str:
    return f"{_n(d.value)} [{_n(d.lo)}, {_n(d.hi)}]"


def text(reference: Reference, n_eval: int, methods: Mapping[str, UnlockMethod]) -> list[str]:
    """Summary lines: reference accuracies, then per method its PGR (final and honestly selected)."""
    lines = [f"locked model, eval questions (n={n_eval}): no password {_n(reference.locked.acc)}, "
             f"with password {_n(reference.with_pw.acc)}"]
    for name, m in methods.items():
        s = m.selected
        if m.kind == "curve" and m.final is not None:
            lines.append(f"  {name:<14} runs={m.n_runs}  final acc {_e(m.final.acc)}  PGR "
                         f"{_e(m.final.pgr)}  | epoch chosen on dev {s.chosen}: report-half PGR "
                         f"{_n(s.test_pgr)} (max-on-test bias {_n(s.bias_pgr, True)})")
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
