"""Per model and task figures of the report, drawn with matplotlib's object API (no pyplot global state).

Every function takes tidy rows and returns a `Figure`; `save` writes it as PNG (for the page) and SVG (for print),
each atomically (`core.io.save_figure`). The summary figures are in `report.summary_figures`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from core.io import save_figure
from report.rows import Row

GROUP_COLOURS = {"prompting": "#4C72B0", "internals": "#55A868", "control": "#AAAAAA", "locking": "#DD8452"}
METHOD_COLOURS = {"probe": "#55A868", "lens": "#8172B3", "control": "#999999", "cka": "#4C72B0", "cosine": "#C44E52"}
DPI = 150
FORMATS = (".png", ".svg")


def slug(*parts: str) -> str:
    """A file-name-safe slug of the parts joined by '_'."""
    return "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", p).strip("-") or "x" for p in parts)


def save(fig: Figure, path: Path) -> list[Path]:
    """Write `fig` as PNG and SVG (`path` + each suffix of `FORMATS`: the stem may hold dots, e.g. "Qwen2.5"),
    each atomically; returns the paths, the PNG first."""
    FigureCanvasAgg(fig)
    return [save_figure(fig, Path(f"{path}{ext}"), dpi=DPI, bbox_inches="tight") for ext in FORMATS]


def _err(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """Error bar half-widths (2, k) with nan -> 0 and the interval clipped to [0, 1] (accuracies); None when no
    interval is known."""
    if np.all(np.isnan(lo)) and np.all(np.isnan(hi)):
        return None
    lo, hi = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
    below = np.nan_to_num(values - lo, nan=0.0).clip(min=0)
    above = np.nan_to_num(hi - values, nan=0.0).clip(min=0)
    return np.vstack([below, above])


def _layer_methods(rows: Sequence[Row]) -> list[str]:
    found = {r.method for r in rows if r.layer is not None and r.metric == "accuracy"}
    return [m for m in ("probe", "lens") if m in found] + sorted(m for m in found if m.startswith("control"))


def layer_curves(rows: Sequence[Row], title: str, chance: float = 0.25) -> Figure:
    """Probe, logit-lens and control accuracy by layer, one panel per prompt variant, with interval bands;
    prompted accuracy of the same variant dotted."""
    methods = _layer_methods(rows)
    variants = sorted({r.variant for r in rows if r.method in methods and r.layer is not None})
    ncol = min(len(variants), 2) or 1
    nrow = math.ceil(max(len(variants), 1) / ncol)
    fig = Figure(figsize=(6.0 * ncol, 3.8 * nrow))
    styles = ("--", ":", "-.")
    for k, variant in enumerate(variants or [""]):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        for method in methods:
            pts = sorted((r.layer, r.value, r.lo, r.hi) for r in rows
                         if r.method == method and r.variant == variant and r.layer is not None
                         and r.metric == "accuracy")
            if not pts:
                continue
            x, v, lo, hi = (np.array(c, dtype=float) for c in zip(*pts, strict=True))
            control = method.startswith("control")
            colour = METHOD_COLOURS["control"] if control else METHOD_COLOURS[method]
            ls = styles[methods.index(method) % len(styles)] if control else "-"
            label = f"control ({method.partition(':')[2] or 'control'})" if control else method
            ax.plot(x, v, ls, marker="." if not control else None, color=colour, label=label)
            if not np.all(np.isnan(lo)) and not control:
                ax.fill_between(x, lo, hi, color=colour, alpha=0.15, linewidth=0)
        for r in rows:
            if r.method == "probe_prompted" and r.metric == "accuracy" and r.variant.split("[")[0] == variant:
                ax.axhline(r.value, color=GROUP_COLOURS["prompting"], linestyle=":" if r.variant == variant else "-.",
                           linewidth=1.2, label=f"prompted ({r.variant})")
        for r in rows:
            if r.method == "probe_ceiling" and r.metric == "accuracy" and r.variant == variant:
                ax.plot([r.layer], [r.value], "k*", markersize=11, label="ceiling (layer chosen on train CV)")
        flagged = sorted(r.layer for r in rows if r.method == "probe_below_chance" and r.variant == variant)
        if flagged:
            probe = {r.layer: r.value for r in rows if r.method == "probe" and r.metric == "accuracy"
                     and r.variant == variant}
            ax.plot(flagged, [probe.get(x, 0.0) for x in flagged], "x", color="#C44E52", markersize=8,
                    label="below chance by its interval: label-position artefact")
        for r in rows:
            if r.method == "control:surface" and r.metric == "accuracy" and r.variant == variant:
                ax.axhspan(r.lo, r.hi, color="#AAAAAA", alpha=0.2, linewidth=0)
                ax.axhline(r.value, color="#777777", linestyle="-", linewidth=1,
                           label="surface-cue control (option alone; band: Wilson)")
        ax.axhline(chance, color="black", linestyle="--", linewidth=0.8, label="chance")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("held-out accuracy")
        ax.set_title(f"{'letter prompt' if variant == 'default' else variant + ' prompt'}", fontsize=9)
        ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def variant_spread(rows: Sequence[Row], title: str, chance: float = 0.25) -> Figure:
    """Per-variant prompted accuracy (sorted, 95% intervals); the default and the held-out choice are marked."""
    per = {r.variant: r for r in rows if r.method == "prompted" and r.metric == "accuracy" and r.layer is None}
    names = sorted(per, key=lambda k: per[k].value)
    chosen = {r.variant for r in rows if r.method == "best_variant"}
    fig = Figure(figsize=(7.5, 0.28 * max(len(names), 3) + 1.4))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    vals = np.array([per[k].value for k in names])
    err = _err(vals, np.array([per[k].lo for k in names]), np.array([per[k].hi for k in names]))
    colours = ["#C44E52" if k == "default" else ("#55A868" if k in chosen else "#4C72B0") for k in names]
    ax.barh(y, vals, xerr=err, color=colours, capsize=2, error_kw={"elinewidth": 0.8})
    ax.set_yticks(y, [k + ("  (chosen on dev)" if k in chosen else "") for k in names], fontsize=7)
    ax.axvline(chance, color="black", linestyle="--", linewidth=0.8, label="chance")
    mv = [r for r in rows if r.method == "majority_vote" and r.metric == "accuracy"]
    if mv:
        ax.axvline(mv[0].value, color="#DD8452", linestyle="-.", linewidth=1, label="majority vote")
    if len(vals):
        ax.set_title(f"{title}\nspread {vals.max() - vals.min():.2f} over {len(vals)} variants "
                     "(red: default, green: chosen on dev)", fontsize=9)
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("accuracy (95% interval)")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def unlock_curves(rows: Sequence[Row], title: str) -> Figure:
    """Accuracy without the password while unlocking: per method the mean over runs (band: its interval, over runs
    and questions, or Wilson over questions for one run) and each
    seed (thin), against epochs; weight-space sweeps (noise, scale) against their parameter in a second panel.
    Reference lines: the locked model with and without the password, and the weak policy."""
    kinds = [k for k in ("unlock_curve", "unlock_sweep") if any(r.method == k for r in rows)]
    fig = Figure(figsize=(6.5 * len(kinds), 4))
    palette = ("#4C72B0", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#64B5CD", "#CCB974")
    refs = (("lock", "with_password", "with password", "#55A868"), ("lock", "no_password", "locked", "#DD8452"),
            ("weak_policy", "weak", "weak policy", "#999999"))
    for k, kind in enumerate(kinds):
        ax = fig.add_subplot(1, len(kinds), k + 1)
        curve = [r for r in rows if r.method == kind and r.step is not None]
        methods = sorted({r.variant.split("/seed=")[0] for r in curve})
        for c, method in enumerate(methods):
            colour = palette[c % len(palette)]
            seeds = sorted({r.variant for r in curve if r.variant.split("/seed=")[0] == method and "/seed=" in r.variant})
            for s in seeds:
                pts = sorted((r.step, r.value) for r in curve if r.variant == s and r.metric == "accuracy")
                ax.plot(*zip(*pts, strict=True), color=colour, alpha=0.3, linewidth=0.8)
            mean = sorted((r.step, r.value, r.lo, r.hi) for r in curve if r.variant == method
                          and r.metric == "accuracy_mean")
            if mean:
                x, v, lo, hi = (np.array(col, dtype=float) for col in zip(*mean, strict=True))
                ax.plot(x, v, color=colour, linewidth=2, marker="o", markersize=3, label=f"{method} (mean)")
                if not np.all(np.isnan(lo)):
                    ax.fill_between(x, lo, hi, color=colour, alpha=0.15, linewidth=0)
        for method, variant, label, colour in refs:
            r = [x for x in rows if x.method == method and x.variant == variant and x.metric == "accuracy"]
            if r:
                ax.axhline(r[0].value, color=colour, linestyle="--", linewidth=1, label=label)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("epoch" if kind == "unlock_curve" else "parameter (noise scale / weight factor)")
        ax.set_ylabel("accuracy without password")
        ax.set_title(title if kind == "unlock_curve" else "weight-space controls", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


DIFF_PANELS = (("diff", "cka", "CKA with the reference"), ("diff", "cosine", "cosine with the reference"),
               ("diff_password", "distance", "password effect (relative distance)"),
               ("diff_lens", "accuracy", "logit-lens accuracy"), ("diff_probe", "accuracy", "probe transfer accuracy"))


def diff_curves(rows: Sequence[Row], title: str) -> Figure:
    """Per-layer comparison of checkpoints: similarity to the reference, password effect, lens, probe transfer."""
    panels = [p for p in DIFF_PANELS if any(r.method == p[0] and r.metric == p[1] and r.layer is not None
                                            for r in rows)]
    ncol = min(len(panels), 2) or 1
    nrow = math.ceil(max(len(panels), 1) / ncol)
    fig = Figure(figsize=(6.0 * ncol, 3.4 * nrow))
    for k, (method, metric, label) in enumerate(panels):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        for variant in sorted({r.variant for r in rows if r.method == method and r.metric == metric}):
            pts = sorted((r.layer, r.value) for r in rows if r.method == method and r.metric == metric
                         and r.variant == variant and r.layer is not None)
            ax.plot(*zip(*pts, strict=True), marker=".", label=variant)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
