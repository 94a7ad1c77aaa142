"""unlock_curve.png: no-password accuracy vs epoch per method (runs thin, mean bold with its interval band), and the
weight sweeps; drawn with matplotlib's object API and written atomically (`core.io.save_figure`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.io import save_figure
from core.schemas import UnlockResult, format_estimate

OVER = {"wilson": "Wilson over questions", "bootstrap_crossed": "bootstrap over runs and questions",
        "bootstrap_nested": "bootstrap over runs and questions", "none": "no interval"}


def _band(ax, x: list[float], ci: list[tuple[float, float]], colour: str) -> None:
    lo = np.array([np.nan if c[0] is None else c[0] for c in ci], dtype=float)
    hi = np.array([np.nan if c[1] is None else c[1] for c in ci], dtype=float)
    if np.any(np.isfinite(lo) & np.isfinite(hi)):
        ax.fill_between(x, lo, hi, color=colour, alpha=0.15, linewidth=0)


def plot(results: UnlockResult, path: str | Path) -> Path:
    """Draw the unlocking curves (left) and, when present, the noise/scale sweeps (right) into `path` (its suffix
    names the format)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = {k: v for k, v in results.methods.items() if v.curve is not None}
    sweeps = {k: v for k, v in results.methods.items() if v.sweep is not None}
    fig = Figure(figsize=(7 + 3.5 * len(sweeps), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 1 + len(sweeps), squeeze=False)
    ax = axes[0, 0]
    colors = [f"C{i}" for i in range(10)]
    methods = set()
    for i, (name, m) in enumerate(curves.items()):
        c = colors[i % len(colors)]
        ep = m.curve.epochs
        for run in m.curve.runs:
            ax.plot(ep, run, color=c, alpha=0.25, lw=0.8)
        pgr = m.final.pgr if m.final is not None else None
        label = name if pgr is None or pgr.value != pgr.value or pgr.lo != pgr.lo else \
            f"{name} (PGR {format_estimate(pgr, digits=2)})"
        ax.plot(ep, m.curve.mean, color=c, lw=2, marker="o" if len(ep) <= 3 else None, ms=4, label=label)
        _band(ax, ep, m.curve.ci, c)
        methods.add(m.curve.ci_method)
    ref = results.reference
    ax.axhline(ref.with_pw.acc, color="k", ls="--", lw=1, label="locked, with password")
    ax.axhline(ref.locked.acc, color="k", ls=":", lw=1, label="locked, no password")
    ax.axhline(results.weak_policy_acc, color="grey", ls="-.", lw=1, label="weak policy")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epoch (weak-sample fine-tuning)")
    ax.set_ylabel("accuracy without password (eval questions)")
    bands = ", ".join(sorted(OVER.get(x, x) for x in methods))
    ax.set_title(f"weak-sample unlocking, n={results.params['n_samples']} samples\nbands: 95% interval of the mean "
                 f"({bands})", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    for j, (name, m) in enumerate(sweeps.items(), start=1):
        ax = axes[0, j]
        for run in m.sweep.runs:
            ax.plot(m.sweep.params, run, color="C0", alpha=0.3, lw=0.8)
        ax.plot(m.sweep.params, m.sweep.mean, color="C0", lw=2, marker="o", ms=4)
        _band(ax, m.sweep.params, m.sweep.ci, "C0")
        ax.axhline(m.with_pw, color="k", ls="--", lw=1)
        ax.axhline(m.locked, color="k", ls=":", lw=1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("relative noise scale" if name == "noise" else "weight scale factor")
        ax.set_title(f"{name}: chosen {m.selected.chosen} on dev\nband: {OVER.get(m.sweep.ci_method, '')}",
                     fontsize=9)
    return save_figure(fig, path, dpi=150)
