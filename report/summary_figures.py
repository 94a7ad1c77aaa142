"""The report's summary figures, drawn from `report.gap.GroupAnalysis` (matplotlib object API, no pyplot state).

- `forest`: per model and task, straight-up, each method family's choice (chosen on dev, on the test questions),
  the best over every method, the controls and the with-password reference: accuracy with its interval (left,
  chance dashed, straight-up dotted, a line from straight-up to each method), and the paired difference from
  straight-up with its interval (right);
- `gap_vs_size`: the gap (best method, probe ceiling) against parameter count per task, with intervals; a fit line
  only with `MIN_MODELS_FOR_TREND` models or more;
- `variant_effects`: each prompt variant's paired difference from straight-up (every question), per model;
- `recovered`: each unlocking method's fraction of a locked model's gap recovered.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from eval.stats import Estimate
from report.findings import MIN_MODELS_FOR_TREND
from report.gap import GroupAnalysis
from report.outcomes import PROBE, VOTE, Outcome

FAMILY_COLOURS = {"straight-up": "#C44E52", "prompt variants": "#4C72B0", "chain of thought": "#64B5CD",
                  "majority vote": "#8172B3", "logit lens": "#937860", "probe": "#55A868", "unlocking": "#DD8452",
                  "any method": "#222222", "control": "#AAAAAA", "reference": "#DD8452"}
KIND_MARKERS = {"base": "o", "instruct": "s", "fine-tuned": "D"}
MODEL_COLOURS = ("#4C72B0", "#C44E52", "#55A868", "#8172B3", "#DD8452", "#937860", "#DA8BC3", "#8C8C8C")


def _row_items(g: GroupAnalysis) -> list[tuple[str, str, Estimate, Estimate | None]]:
    """(label, colour key, accuracy, difference from straight-up or None) per row, top to bottom."""
    st = g.straight_test
    rows: list[tuple[str, str, Estimate, Estimate | None]] = []
    if st is not None:
        rows.append((f"straight-up (n={st.n} test questions)", "straight-up", st, None))
    for fam, c in g.families.items():
        label = c.chosen.label if c.chosen.label.startswith(fam) else f"{fam}: {c.chosen.label}"
        how = (f" (best of {c.n_candidates} on {c.dev_kind.replace('dev accuracy', 'dev')})" if c.n_candidates > 1
               else "")
        rows.append((label + how, fam, c.gap.elicited, c.gap.difference))
    if g.best is not None and len(g.families) > 1:
        rows.append((f"best of every method: {g.best.chosen.label}", "any method", g.best.gap.elicited,
                     g.best.gap.difference))
    for cm in g.controls:
        rows.append((f"control: {cm.control.label}", "control", cm.gap.straight, None))
    if g.locking is not None and g.locking.with_password_test is not None:
        rows.append(("locked model with the password", "reference", g.locking.with_password_test, None))
    return rows


def _err(e: Estimate) -> list[list[float]] | None:
    if e.lo != e.lo or e.hi != e.hi:
        return None
    return [[max(e.value - e.lo, 0.0)], [max(e.hi - e.value, 0.0)]]


def forest(groups: Sequence[GroupAnalysis]) -> Figure | None:
    """One row of panels per group: accuracy (left) and paired difference from straight-up (right)."""
    items = [(g, _row_items(g)) for g in groups]
    items = [(g, rows) for g, rows in items if len(rows) > 1]
    if not items:
        return None
    heights = [0.3 * len(rows) + 0.9 for _, rows in items]
    fig = Figure(figsize=(12.5, sum(heights) + 0.4), layout="constrained")
    grid = fig.add_gridspec(len(items), 2, height_ratios=heights, width_ratios=[1.35, 1])
    for i, (g, rows) in enumerate(items):
        acc, diff = fig.add_subplot(grid[i, 0]), fig.add_subplot(grid[i, 1])
        y = np.arange(len(rows))[::-1]
        st = g.straight_test
        for yy, (_, key, e, d) in zip(y, rows, strict=True):
            colour = FAMILY_COLOURS.get(key, "#777777")
            if st is not None and key not in ("straight-up", "control", "reference"):
                acc.plot([st.value, e.value], [yy, yy], color=colour, alpha=0.35, linewidth=3, solid_capstyle="butt")
            acc.errorbar([e.value], [yy], xerr=_err(e), fmt="o", color=colour, capsize=3, markersize=5)
            if d is not None:
                diff.errorbar([d.value], [yy], xerr=_err(d), fmt="o", color=colour, capsize=3, markersize=5)
        acc.set_yticks(y, [r[0] for r in rows], fontsize=7.5)
        acc.axvline(g.chance, color="black", linestyle="--", linewidth=0.8, label=f"chance {g.chance:.2f}")
        if st is not None:
            acc.axvline(st.value, color=FAMILY_COLOURS["straight-up"], linestyle=":", linewidth=1)
        acc.set_xlim(0, 1)
        acc.set_title(f"{g.model} on {g.task}", fontsize=9.5, loc="left", fontweight="bold")
        acc.set_xlabel("accuracy, test questions", fontsize=7.5)
        acc.legend(fontsize=6.5, loc="lower right")
        diff.axvline(0, color="black", linewidth=0.8)
        lim = max([0.1, *(max(abs(d.lo), abs(d.hi)) for *_, d in rows if d is not None and d.lo == d.lo)])
        diff.set_xlim(-min(1.0, lim * 1.15), min(1.0, lim * 1.15))
        diff.set_ylim(acc.get_ylim())
        diff.set_yticks(y, [""] * len(rows))
        diff.set_xlabel("minus straight-up, same questions (paired)", fontsize=7.5)
        for ax in (acc, diff):
            ax.tick_params(axis="x", labelsize=7)
            ax.grid(axis="x", alpha=0.3)
    return fig


def _size_series(g: GroupAnalysis) -> dict[str, Estimate]:
    out = {}
    if g.best is not None:
        out["best method (chosen on dev)"] = g.best.gap.difference
    if g.families.get(PROBE) is not None:
        out["probe ceiling"] = g.families[PROBE].gap.difference
    return out


def gap_vs_size(groups: Sequence[GroupAnalysis]) -> Figure | None:
    """Gap (minus straight-up, paired interval) against parameters (log scale), one panel per task."""
    sized = [g for g in groups if g.n_params is not None and _size_series(g)]
    if not sized:
        return None
    tasks = sorted({g.task for g in sized})
    fig = Figure(figsize=(5.2 * len(tasks), 4.2), layout="constrained")
    for k, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), k + 1)
        gs = [g for g in sized if g.task == task]
        for s, (series, offset, colour) in enumerate((("best method (chosen on dev)", 0.97, "#222222"),
                                                      ("probe ceiling", 1.03, FAMILY_COLOURS[PROBE]))):
            pts = [(g, _size_series(g)[series]) for g in gs if series in _size_series(g)]
            for g, e in pts:
                ax.errorbar([g.n_params * offset], [e.value], yerr=_err(e), fmt=KIND_MARKERS.get(
                    g.kind.split()[0], "o"), color=colour, mfc="white" if "locked" in g.kind else colour,
                    capsize=3, markersize=6)
                ax.annotate(g.model, (g.n_params * offset, e.value), fontsize=6.5, xytext=(4, 3 - 9 * s),
                            textcoords="offset points")
            ax.plot([], [], "o", color=colour, label=series)
            models = {g.model for g, _ in pts}
            if len(models) >= MIN_MODELS_FOR_TREND:
                x = np.log10([g.n_params for g, _ in pts])
                slope, icpt = np.polyfit(x, [e.value for _, e in pts], 1)
                xs = np.linspace(x.min(), x.max(), 20)
                ax.plot(10 ** xs, icpt + slope * xs, color=colour, linewidth=1, alpha=0.7,
                        label=f"{series}: least-squares line, {slope:+.3f} per 10x parameters")
        n_models = len({g.model for g in gs})
        if n_models < MIN_MODELS_FOR_TREND:
            ax.text(0.01, 0.01, f"{n_models} model(s): no trend line (needs {MIN_MODELS_FOR_TREND} or more)",
                    transform=ax.transAxes, fontsize=7, color="#555555")
        ax.axhline(0, color="black", linewidth=0.8)
        ends = [x for g in gs for e in _size_series(g).values() for x in (e.lo, e.hi, e.value) if x == x]
        ax.set_ylim(min(-0.1, *ends) - 0.05, max(0.1, *ends) + 0.05)
        ax.set_xscale("log")
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo / 1.6, hi * 1.6)
        ax.set_xlabel("parameters (from each run's model identity)")
        ax.set_ylabel("accuracy minus straight-up (test questions)")
        ax.set_title(f"{task}: the gap against model size (95% paired interval over questions)", fontsize=9)
        for kind, marker in KIND_MARKERS.items():
            ax.plot([], [], marker, color="#777777", mfc="white", label=kind)
        ax.legend(fontsize=6.5, loc="upper left")
    return fig


def _name(o: Outcome) -> str:
    """A method's name shared across models ("majority vote", not "majority vote over 11 metrics")."""
    return o.key.removeprefix("prompt:")


def variant_effects(groups: Sequence[GroupAnalysis]) -> Figure | None:
    """Each variant's paired difference from straight-up on every question, one colour per model, per task."""
    have = [g for g in groups if any(f.outcome.family != VOTE for f in g.fixed)]
    if not have:
        return None
    tasks = sorted({g.task for g in have})
    names = sorted({_name(f.outcome) for g in have for f in g.fixed})
    models = sorted({g.model for g in have})
    fig = Figure(figsize=(5.5 * len(tasks), 0.3 * len(names) + 1.6), layout="constrained")
    for k, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), k + 1)
        gs = [g for g in have if g.task == task]
        y = {n: i for i, n in enumerate(names[::-1])}
        for g in gs:
            j = models.index(g.model)
            off = (j - (len(models) - 1) / 2) * 0.18
            colour = MODEL_COLOURS[j % len(MODEL_COLOURS)]
            for f in g.fixed:
                d = f.gap.difference
                ax.errorbar([d.value], [y[_name(f.outcome)] + off], xerr=_err(d), fmt="o", color=colour,
                            mfc=colour if f.p_holm < 0.05 else "white", capsize=2, markersize=4)
            ax.plot([], [], "o", color=colour, label=g.model)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(list(y.values()), list(y.keys()), fontsize=7)
        ax.set_xlabel("accuracy minus straight-up, every question (paired bootstrap over questions)", fontsize=7.5)
        ax.set_title(f"{task}: what each variant does (filled: Holm-adjusted McNemar p < 0.05)", fontsize=8.5)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=6.5, loc="lower right")
    return fig


def recovered(g: GroupAnalysis) -> Figure | None:
    """Each unlocking method's fraction of the gap recovered, with its interval (runs and questions)."""
    lk = g.locking
    if lk is None or not lk.recovered:
        return None
    keys = list(lk.recovered)
    fig = Figure(figsize=(8, 0.32 * len(keys) + 1.3), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(keys))[::-1]
    for yy, key in zip(y, keys, strict=True):
        o, rec = lk.recovered[key]
        fr = rec.fraction
        if not math.isfinite(fr.value):
            ax.text(0.02, yy, "undefined: no gap", va="center", fontsize=7, color="#777777")
            continue
        ax.errorbar([fr.value], [yy], xerr=_err(fr), fmt="o", color=FAMILY_COLOURS["unlocking"], capsize=3)
    ax.set_yticks(y, [lk.recovered[k][0].label for k in keys], fontsize=7)
    for x, lab in ((0, "locked"), (1, "with password")):
        ax.axvline(x, color="black", linestyle="--" if x else "-", linewidth=0.8)
        ax.text(x, y.max() + 0.6, lab, fontsize=7, ha="center")
    ax.set_xlabel("fraction of the gap recovered (95% crossed bootstrap over runs and questions)")
    ax.set_title(f"Unlocking {g.model} on {g.task}: with password {lk.with_password.value:.2f}, locked "
                 f"{lk.locked.value:.2f} ({lk.n_questions} questions)", fontsize=9)
    return fig
