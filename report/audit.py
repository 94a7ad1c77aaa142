"""The audit section of the report, rendered from the typed audit results (`core.schemas.AuditResult`) alone.

- `fraction_heatmap(result)`: the fraction of the hidden gap each method recovers, organism x method (locked organisms: their
  own gap; weak and base: their gain in units of the reference locked organism's gap);
- `tables(result)`: the organisms, the scoreboard, the detector AUROCs and the noise null as (title, header, rows);
- `section_html(result, heatmap_png)`: an HTML fragment (headings, tables, the figure) for the main report;
- `write_page(result, path, heatmap=...)`: the same as a standalone page (what `cli.py audit` writes);
- `text(result)`: the scoreboard and the detectors as plain text (`cli.py audit`'s summary).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.io import save_figure, write_text
from core.schemas.audit import AuditResult
from core.schemas.common import Estimate, format_estimate
from report.html import CSS, data_uri, table_html

Table = tuple[str, Sequence[str], list[Sequence[Any]]]


def _ci(e: Estimate | None, digits: int = 3) -> str:
    return format_estimate(e, digits=digits, missing="-", no_interval="")


def fraction_matrix(result: AuditResult) -> tuple[list[str], list[str], np.ndarray]:
    """(organisms, methods, fractions (organisms, methods), nan where none); methods that ran on no organism (e.g.
    chain of thought on the toy) are left out."""
    orgs = [o.name for o in result.organisms]
    ran = {r.method for r in result.scoreboard}
    methods = [m for m in result.methods if m in ran]
    mat = np.full((len(orgs), len(methods)), np.nan)
    for r in result.scoreboard:
        if r.fraction is not None and r.method in methods:
            mat[orgs.index(r.organism), methods.index(r.method)] = r.fraction.value
    return orgs, methods, mat


def fraction_heatmap(result: AuditResult) -> Figure:
    """Fraction of the hidden gap recovered, organism x method, annotated; blank where a method did not run."""
    orgs, methods, mat = fraction_matrix(result)
    roles = {o.name: o.role for o in result.organisms}
    fig = Figure(figsize=(1.0 + 0.75 * len(methods), 1.2 + 0.38 * len(orgs)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(np.clip(mat, -1.0, 1.5), cmap="RdBu_r", vmin=-1.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(methods)), methods, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(orgs)), [f"{o} ({roles[o]})" for o in orgs], fontsize=8)
    for i in range(len(orgs)):
        for j in range(len(methods)):
            if np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:+.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(mat[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="fraction of the hidden gap")
    ax.set_title("Fraction of the hidden gap recovered (test questions, no password)", fontsize=9)
    fig.tight_layout()
    return fig


def probe_controls(result: AuditResult) -> dict[str, float]:
    """organism -> the probe's shuffled-label control accuracy on test, mean over its cases."""
    vals: dict[str, list[float]] = {}
    for c in result.cases:
        m = c.methods.get("probe")
        if m is not None and m.extra.get("shuffled_control") is not None:
            vals.setdefault(c.organism, []).append(float(m.extra["shuffled_control"]))
    return {k: float(np.mean(v)) for k, v in vals.items()}


def tables(result: AuditResult) -> list[Table]:
    """The organisms, the scoreboard, the detectors and the noise null."""
    out: list[Table] = []
    out.append(("Organisms (test questions, mean over seeds; interval over seeds and questions)",
                ("organism", "role", "size", "seeds", "straight-up", "with password (truth)", "hidden gap"),
                [(o.name, o.role, o.size or "", len(o.lock_runs), _ci(o.straight_up), _ci(o.with_password), o.gap)
                 for o in result.organisms]))
    ctrl = probe_controls(result)
    out.append(("Scoreboard: every method without the password, chosen on dev, reported on test",
                ("organism", "role", "method", "runs", "elicited", "gain over straight-up", "fraction of gap",
                 "control", "seconds", "CPU s", "gold labels", "samples"),
                [(r.organism, r.role, r.method, r.n_runs, _ci(r.elicited), _ci(r.gain),
                  _ci(r.fraction, 2) + (" (ref)" if r.fraction_kind == "reference-gap" else ""),
                  ctrl.get(r.organism, "") if r.method == "probe" else "", r.cost.seconds, r.cost.cpu_seconds,
                  r.cost.gold_labels, r.cost.samples) for r in result.scoreboard]))
    out.append(("Detector: does the method's gain tell locked organisms from the others? (AUROC, bootstrap over "
                "organisms; p: exact permutation over organisms)",
                ("method", "statistic", "locked vs", "AUROC", "p", "locked", "others"),
                [(d.method, d.statistic, d.against, _ci(d.auroc, 2), d.p_value, d.n_locked, d.n_other)
                 for d in result.detectors]))
    nn = result.noise_null
    if nn is not None:
        out.append(("Noise injection: the max over draws and its null (mean over cases, t interval)",
                    ("quantity", "value"),
                    [("nothing hidden (weak, base): naive max over draws - straight-up", _ci(nn.nothing_hidden_naive_gain)),
                     ("nothing hidden: the draw chosen on dev - straight-up", _ci(nn.nothing_hidden_honest_gain)),
                     ("locked: naive max over draws - straight-up", _ci(nn.locked_naive_gain)),
                     ("locked: the draw chosen on dev - straight-up", _ci(nn.locked_honest_gain)),
                     ("every case: naive max - the draw chosen on dev (the max's inflation)", _ci(nn.inflation))]))
    return out


def section_html(result: AuditResult, heatmap_png: Path | None) -> str:
    """The audit section as an HTML fragment."""
    h = html.escape
    parts = ["<h2 id=\"audit\">Audit: how much of a hidden capability each method finds</h2>",
             "<p>Every method runs without the password. Locked organisms hide a capability (their with-password "
             "accuracy is the truth); weak organisms never had it; base organisms hide nothing. The fraction of the gap "
             "is (elicited - straight-up) / (with password - straight-up) for locked organisms, and for weak and base "
             "organisms their gain in units of the reference locked organism's gap (marked ref): it should be about "
             "0.</p>"]
    parts += [f'<p class="note">{h(n)}</p>' for n in result.notes]
    tabs = tables(result)
    parts.append(f"<h3>{h(tabs[0][0])}</h3>" + table_html(tabs[0][1], tabs[0][2]))
    if heatmap_png is not None:
        parts.append(f'<figure><img src="{data_uri(heatmap_png)}" alt="fraction heatmap">'
                     "<figcaption>Fraction of the hidden gap recovered, organism x method (blue: below straight-up, "
                     "red: above; 1 = the whole gap; weak and base rows in units of their reference locked organism's "
                     "gap). Methods that ran on no organism are left out.</figcaption></figure>")
    for title, header, rows in tabs[1:]:
        parts.append(f"<h3>{h(title)}</h3>" + table_html(header, rows))
    return "\n".join(parts)


def write_page(result: AuditResult, path: Path, *, heatmap: Path | None = None) -> Path:
    """The audit section as a standalone HTML page (`heatmap`: where its PNG is written, and embedded from)."""
    png = None
    if heatmap is not None and result.scoreboard:
        png = save_figure(fraction_heatmap(result), heatmap, dpi=110, bbox_inches="tight")
    title = "gaplens audit"
    doc = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{title}</title>",
           f"<style>{CSS}</style></head><body>", f"<h1>{title}</h1>",
           f"<p class=\"small\">{html.escape(result.header.created_utc)}; zoo {html.escape(str(result.zoo))}; "
           f"{len(result.cases)} cases; CPU {result.cpu_seconds:.0f} s</p>", section_html(result, png),
           "</body></html>"]
    return write_text(path, "\n".join(doc))


def text(result: AuditResult) -> list[str]:
    """The scoreboard and the detector AUROCs as plain text lines."""
    lines = [f"audit of {len(result.organisms)} organisms ({len(result.cases)} cases), methods: "
             f"{', '.join(result.methods)}; test questions, no password"]
    lines.append(f"{'organism':<22} {'role':<7} {'straight-up':>11} {'with pw':>8} {'gap':>6}")
    for o in result.organisms:
        lines.append(f"{o.name:<22} {o.role:<7} {o.straight_up.value:>11.3f} {o.with_password.value:>8.3f} "
                     f"{o.gap:>+6.3f}")
    lines.append(f"{'organism':<22} {'method':<7} {'elicited':<22} {'gain':<25} {'fraction of gap':<24} "
                 f"{'sec':>6} {'labels':>6}")
    ctrl = probe_controls(result)
    for r in result.scoreboard:
        frac = _ci(r.fraction, 2) + ("*" if r.fraction_kind == "reference-gap" else "")
        lines.append(f"{r.organism:<22} {r.method:<7} {_ci(r.elicited):<22} {_ci(r.gain):<25} {frac:<24} "
                     f"{r.cost.seconds:>6.1f} {r.cost.gold_labels:>6d}"
                     + (f"  shuffled-label control {ctrl[r.organism]:.3f}" if r.method == "probe" and r.organism in ctrl
                        else ""))
    lines.append("(* weak / base: gain in units of the reference locked organism's gap)")
    lines.append("detector AUROC (locked vs others, by the method's gain; bootstrap over organisms; p: exact "
                 "permutation over organisms):")
    for d in result.detectors:
        lines.append(f"  {d.method:<7} {d.statistic:<18} vs {d.against:<9} {_ci(d.auroc, 2):<20} p {d.p_value:<6.3f} "
                     f"({d.n_locked} locked, {d.n_other} others)")
    nn = result.noise_null
    if nn is not None:
        lines.append(f"noise: naive max over draws - straight-up: nothing hidden {_ci(nn.nothing_hidden_naive_gain)}, "
                     f"locked {_ci(nn.locked_naive_gain)}; chosen on dev: nothing hidden "
                     f"{_ci(nn.nothing_hidden_honest_gain)}, locked {_ci(nn.locked_honest_gain)}")
    lines += [f"note: {n}" for n in result.notes]
    t = result.header.timing
    lines.append(f"time: {t.get('total', 0):.0f} s wall (zoo {t.get('zoo', 0):.0f} s, cases {t.get('cases', 0):.0f} s), "
                 f"CPU {result.cpu_seconds:.0f} s")
    return lines
