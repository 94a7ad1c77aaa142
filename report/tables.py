"""Tables of the report: the summary (one row per model and task), each group's method families, fixed comparisons,
controls and locking, the tidy rows of the paired analysis, and the CSV writers.

Pure functions over `report.gap.GroupAnalysis` and `report.rows.Row`s; no plotting, no file access but `write_csv`.
Every accuracy cell is "value [lo, hi]"; each table's header says what its intervals are over.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core import io
from core.schemas import format_estimate
from core.schemas.records import SummaryRow
from eval.paired import PairedGap
from eval.stats import Estimate
from report.gap import GroupAnalysis
from report.rows import TIDY_COLUMNS, Row

INTERVALS = {
    "wilson": "Wilson score interval over questions (one 0/1 outcome per question)",
    "bootstrap": "percentile bootstrap over questions (paired: both methods resampled on the same questions)",
    "bootstrap_crossed": "crossed bootstrap over runs (seeds, label shuffles) and questions",
    "bootstrap_nested": "nested bootstrap over runs and each run's questions (questions treated as independent "
                        "across runs: narrower than crossed)",
    "t": "Student-t interval over runs (a handful of runs: approximate, not bounded to [0, 1])",
    "none": "no interval: nothing to vary (one run of a deterministic method) or no per-question data",
}
"""What each interval method in the report is over (shown in the page's legend)."""


def fmt(x: Any, digits: int = 3) -> str:
    """A number for tables: rounded, '' for None/nan."""
    if x is None:
        return ""
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def fmt_size(n: int | float | None) -> str:
    """135000000 -> '135M'; None -> 'unknown'."""
    if n is None:
        return "unknown"
    for div, suf in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{suf}"
    return f"{n:g}"


def est(e: Estimate | None, signed: bool = False, digits: int = 3) -> str:
    """'0.360 [0.270, 0.460]' (signed: '+0.10 [...]'); '' for None; no brackets without an interval (the tables'
    conventions of `core.schemas.format_estimate`)."""
    return format_estimate(e, signed=signed, digits=digits, missing="", no_interval="")


def pval(p: float | None) -> str:
    """A p-value with two significant digits."""
    return "" if p is None or p != p else f"{p:.2g}"


def _mcnemar(g: PairedGap) -> str:
    m = g.mcnemar
    return f"{m.b}/{m.c}, p={pval(m.p_value)}"


def _ratio(g: PairedGap) -> str:
    """The ratio with its interval, or why it is not shown (summary.csv keeps the full reason)."""
    if g.ratio is not None:
        return est(g.ratio, digits=2)
    return f"n/a: straight-up's interval reaches chance ({g.chance:.2f})"


def groups(rows: Iterable[Row]) -> dict[tuple[str, str], list[Row]]:
    """Rows grouped by (model, task), in sorted order."""
    out: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        out.setdefault((r.model, r.task), []).append(r)
    return dict(sorted(out.items()))


def chance_level(rows: Sequence[Row]) -> float:
    """The chance accuracy a run recorded (`chance` method), else 1/4."""
    c = [r for r in rows if r.method == "chance" and r.metric == "accuracy"]
    return c[0].value if c else 0.25


SUMMARY_HEADER = (
    "model", "task", "size", "kind", "test (dev) questions", "chance",
    "straight-up [Wilson, questions]", "best method, chosen on dev (k candidates)",
    "its accuracy [Wilson, questions]", "gap: minus straight-up [paired bootstrap, questions]",
    "McNemar b/c, p", "ratio [paired bootstrap]",
    "naive max on test (minus the chosen; a max's excess over the mean candidate by chance alone)",
    "probe ceiling, chosen on train CV", "probe gap [paired bootstrap]")


def summary_table(analyses: Sequence[GroupAnalysis]) -> tuple[Sequence[str], list[Sequence[Any]]]:
    """The page's first table: how big the gap is, by which method, with what confidence."""
    rows = []
    for g in analyses:
        b, p = g.best, g.probe
        st = g.straight_test
        naive = ""
        if b is not None:
            s = b.selected
            null = f"; {s.null['null_mean']:.3f}" if s.null else ""
            naive = f"{b.label(s.naive_max)}: {s.naive_max_test:.3f} ({s.inflation:+.3f}{null})"
        rows.append((g.model, g.task, fmt_size(g.n_params), g.kind, f"{g.n_test} ({g.n_dev})", fmt(g.chance, 2),
                     est(st), f"{b.chosen.label} ({b.n_candidates})" if b else "", est(b.gap.elicited) if b else "",
                     est(b.gap.difference, True) if b else "", _mcnemar(b.gap) if b else "",
                     _ratio(b.gap) if b else "", naive, f"{p.chosen.label}: {est(p.gap.elicited)}" if p else "",
                     est(p.gap.difference, True) if p else ""))
    return SUMMARY_HEADER, rows


FAMILY_HEADER = ("family", "chosen (k candidates; chosen on)", "dev score", "test accuracy [Wilson]",
                 "minus straight-up [paired bootstrap]", "McNemar b/c, p", "ratio [paired bootstrap]",
                 "naive max on test", "inflation", "max's excess over the mean candidate: observed / expected by "
                 "chance (p)")


def family_table(g: GroupAnalysis) -> tuple[Sequence[str], list[Sequence[Any]]]:
    """One row per method family (and the choice over every family): chosen on dev, reported on test."""
    rows = []
    for c in [*g.families.values(), *([g.best] if g.best is not None else [])]:
        s = c.selected
        null = (f"{s.null['observed']:.3f} / {s.null['null_mean']:.3f} (p={pval(s.null['p_value'])})" if s.null
                else "one candidate")
        rows.append((c.family, f"{c.chosen.label} ({c.n_candidates}; {c.dev_kind})", s.dev_accuracy[s.chosen],
                     est(c.gap.elicited), est(c.gap.difference, True), _mcnemar(c.gap), _ratio(c.gap),
                     f"{c.label(s.naive_max)}: {s.naive_max_test:.3f}", s.inflation, null))
    return FAMILY_HEADER, rows


def fixed_table(g: GroupAnalysis) -> tuple[Sequence[str], list[Sequence[Any]]]:
    """Each variant and the majority vote against straight-up on every question both answered."""
    header = ("method (nothing chosen)", "questions", "accuracy [Wilson]", "minus straight-up [paired bootstrap]",
              "McNemar b/c, p", "Holm-adjusted p")
    return header, [(f.outcome.label, f.gap.n, est(f.gap.elicited), est(f.gap.difference, True), _mcnemar(f.gap),
                     pval(f.p_holm)) for f in sorted(g.fixed, key=lambda f: -f.gap.difference.value)]


def control_table(g: GroupAnalysis) -> tuple[Sequence[str], list[Sequence[Any]]]:
    """The probe ceiling against each control on the same test questions."""
    header = ("control", "questions", "control accuracy [interval over questions]",
              "probe ceiling minus control [paired bootstrap]", "McNemar / sign test b/c, p")
    return header, [(c.control.label, c.gap.n, est(c.gap.straight), est(c.gap.difference, True), _mcnemar(c.gap))
                    for c in g.controls]


def locking_table(g: GroupAnalysis) -> tuple[Sequence[str], list[Sequence[Any]]]:
    """With password, locked, and each unlocking method's fraction of the gap recovered."""
    lk = g.locking
    header = ("", "runs", "accuracy / fraction recovered", "interval over")
    if lk is None:
        return header, []
    rows: list[Sequence[Any]] = [("locked model, with the password", 1, est(lk.with_password), "questions (Wilson)"),
                                 ("locked model, no password", 1, est(lk.locked), "questions (Wilson)")]
    for o, rec in lk.recovered.values():
        fr = rec.fraction
        rows.append((f"{o.label}: fraction of the gap recovered", o.n_runs,
                     est(fr) if fr.value == fr.value else "undefined: no gap",
                     "runs and questions (crossed bootstrap)"))
    return header, rows


SUMMARY_COLUMNS = ("model", "task", "n_params", "family", "chance", "n_dev", "n_test", "straight_up",
                   "straight_up_lo", "straight_up_hi", "best_method", "best_family", "n_candidates", "best", "best_lo",
                   "best_hi", "gap", "gap_lo", "gap_hi", "mcnemar_b", "mcnemar_c", "mcnemar_p", "ratio", "ratio_lo",
                   "ratio_hi", "ratio_reason", "naive_max_method", "naive_max_test", "inflation", "null_excess",
                   "probe_method", "probe", "probe_lo", "probe_hi", "probe_gap", "probe_gap_lo", "probe_gap_hi")
_ESTIMATES = ("straight_up", "best", "gap", "ratio", "probe", "probe_gap")


def summary_rows(analyses: Sequence[GroupAnalysis]) -> list[SummaryRow]:
    """The summary, one `core.schemas.records.SummaryRow` per model and task."""
    out = []
    for g in analyses:
        b, p = g.best, g.probe
        gap = b.gap if b else None
        out.append(SummaryRow(
            model=g.model, task=g.task, n_params=g.n_params, family=g.kind,
            chance=g.chance if math.isfinite(g.chance) else None, n_dev=g.n_dev, n_test=g.n_test,
            straight_up=g.straight_test, best_method=b.chosen.label if b else None,
            best_family=b.chosen.family if b else None, n_candidates=b.n_candidates if b else 0,
            best=gap.elicited if gap else None, gap=gap.difference if gap else None,
            mcnemar_b=gap.mcnemar.b if gap else None, mcnemar_c=gap.mcnemar.c if gap else None,
            mcnemar_p=gap.mcnemar.p_value if gap else None, ratio=gap.ratio if gap else None,
            ratio_reason=gap.ratio_reason if gap else "no method compared",
            naive_max_method=b.label(b.selected.naive_max) if b else None,
            naive_max_test=b.selected.naive_max_test if b else None, inflation=b.selected.inflation if b else None,
            null_excess=b.selected.null["null_mean"] if b and b.selected.null else None,
            probe_method=p.chosen.label if p else None, probe=p.gap.elicited if p else None,
            probe_gap=p.gap.difference if p else None))
    return out


def summary_records(rows: Sequence[SummaryRow]) -> list[dict[str, Any]]:
    """summary.csv rows (`SUMMARY_COLUMNS`): each estimate flattened to value, lo, hi."""
    out = []
    for r in rows:
        rec: dict[str, Any] = {}
        for k, v in r.__dict__.items():
            if k in _ESTIMATES:
                rec.update({k: None, f"{k}_lo": None, f"{k}_hi": None} if v is None
                           else {k: v.value, f"{k}_lo": v.lo, f"{k}_hi": v.hi})
            else:
                rec[k] = v
        out.append(rec)
    return out


def _row(g: GroupAnalysis, method: str, variant: str, metric: str, value: Estimate | float, run: str = "",
         layer: int | None = None) -> Row | None:
    v, lo, hi, n = ((value.value, value.lo, value.hi, value.n) if isinstance(value, Estimate)
                    else (float(value), math.nan, math.nan, None))
    if not math.isfinite(v):
        return None
    return Row(g.model, g.task, method, variant, layer, metric, v, lo, hi, n, run)


def analysis_rows(g: GroupAnalysis) -> list[Row]:
    """Tidy rows of the paired analysis: methods ``paired:<family>`` (and ``paired:any method``; metrics
    accuracy_test, straight_up_test, difference, ratio, mcnemar_p, naive_max_test, inflation), ``fixed`` (per
    variant: accuracy, difference, mcnemar_p, holm_p), ``control_margin`` (difference per control) and
    ``recovered`` (fraction of the gap recovered per unlocking method)."""
    rows = []
    for c in [*g.families.values(), *([g.best] if g.best is not None else [])]:
        s, gap, m = c.selected, c.gap, f"paired:{c.family}"
        run, var, layer = c.chosen.run, c.chosen.label, c.chosen.layer
        rows += [_row(g, m, var, "accuracy_test", gap.elicited, run, layer),
                 _row(g, m, var, "straight_up_test", gap.straight, run, layer),
                 _row(g, m, var, "difference", gap.difference, run, layer),
                 _row(g, m, var, "mcnemar_p", gap.mcnemar.p_value, run, layer),
                 _row(g, m, var, "naive_max_test", s.naive_max_test, run, layer),
                 _row(g, m, var, "inflation", s.inflation, run, layer)]
        if gap.ratio is not None:
            rows.append(_row(g, m, var, "ratio", gap.ratio, run, layer))
    for f in g.fixed:
        o = f.outcome
        rows += [_row(g, "fixed", o.label, "accuracy", f.gap.elicited, o.run, o.layer),
                 _row(g, "fixed", o.label, "difference", f.gap.difference, o.run, o.layer),
                 _row(g, "fixed", o.label, "mcnemar_p", f.gap.mcnemar.p_value, o.run, o.layer),
                 _row(g, "fixed", o.label, "holm_p", f.p_holm, o.run, o.layer)]
    for c in g.controls:
        rows.append(_row(g, "control_margin", c.control.label, "difference", c.gap.difference, c.control.run))
    if g.locking is not None:
        for o, rec in g.locking.recovered.values():
            rows.append(_row(g, "recovered", o.label, "fraction", rec.fraction, o.run))
    return [r for r in rows if r is not None]


def write_csv(path: Path, records: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write dict rows to CSV (temporary name, then renamed); floats that are nan become empty cells."""
    return io.write_csv(path, list(columns), [[_cell(rec.get(c)) for c in columns] for rec in records])


def _cell(x: Any) -> Any:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return repr(x)
    return x


def tidy_records(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Tidy rows as dicts, sorted by model, task, method, variant, layer, step, metric."""
    def key(r: Row) -> tuple:
        return (r.model, r.task, r.method, r.variant, -1 if r.layer is None else r.layer,
                -1.0 if r.step is None else r.step, r.metric, r.run_dir)

    return [r.as_dict() for r in sorted(rows, key=key)]


__all__ = ["INTERVALS", "SUMMARY_COLUMNS", "TIDY_COLUMNS", "analysis_rows", "chance_level", "control_table", "est",
           "family_table", "fixed_table", "fmt", "fmt_size", "groups", "locking_table", "summary_records",
           "summary_rows", "summary_table", "tidy_records", "write_csv"]
