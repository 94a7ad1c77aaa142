"""The report's single self-contained HTML page: figures embedded as base64 PNG data URIs, tables, provenance.

The page needs no other file and no network: styles are inline and there is no script.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from report.rows import Run
from report.tables import GapItem, ModelSummary, fmt, fmt_size

PROVENANCE_FIELDS = ("kind", "model", "weight_hash", "size", "model kind", "task", "split", "seed", "package_version",
                     "created_utc")

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1150px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; font-size: .85em; margin: .6em 0 1.2em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; } .note { color: #8a5a00; font-size: .9em; }
code { background: #f5f5f5; padding: 0 .2em; } .small { font-size: .8em; color: #666; }
"""


@dataclass
class Section:
    """One model/task section: its figures (title, PNG path, caption) and tables (title, header, rows)."""

    title: str
    figures: list[tuple[str, Path, str]] = field(default_factory=list)
    tables: list[tuple[str, Sequence[str], list[Sequence[Any]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def data_uri(png: Path) -> str:
    """A PNG file as a base64 data URI."""
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; numbers right-aligned and rounded to 3 places."""
    out = ["<table><thead><tr>", *(f"<th>{html.escape(str(h))}</th>" for h in header), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for cell in row:
            num = isinstance(cell, (int, float)) and not isinstance(cell, bool)
            out.append(f'<td class="num">{html.escape(fmt(cell))}</td>' if num else f"<td>{html.escape(fmt(cell))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def gap_table(items: Sequence[GapItem]) -> tuple[Sequence[str], list[Sequence[Any]]]:
    """Header and rows for a model's gap items."""
    header = ("measure", "accuracy", "95% lo", "95% hi", "n", "selection")
    return header, [(i.label, i.value, i.lo, i.hi, i.n if i.n is not None else "",
                     i.selection) for i in items]


def summary_table(summaries: Sequence[ModelSummary]) -> tuple[Sequence[str], list[Sequence[Any]]]:
    """Header and rows for the across-model table."""
    header = ("model", "task", "size", "family", "straight-up", "best elicited", "by", "best / straight-up",
              "probe ceiling", "probe / straight-up")
    return header, [(s.model, s.task, fmt_size(s.n_params), s.family, s.straight_up, s.best_elicited,
                     s.best_elicited_by, s.elicited_ratio, s.probe_ceiling, s.probe_ratio) for s in summaries]


def provenance_table(runs: Sequence[Run]) -> tuple[Sequence[str], list[Sequence[Any]]]:
    """One row per run: its provenance (from the run header and model identity) and its directory."""
    header = (*PROVENANCE_FIELDS, "run_dir")
    rows = []
    for run in runs:
        h, m = run.header, run.identity
        checkpoints = getattr(run.result, "checkpoints", None)  # diff runs: every checkpoint's hash
        weights = ("; ".join(f"{k}={c.identity.weight_hash}" for k, c in checkpoints.items()) if checkpoints
                   else m.weight_hash)
        rows.append((run.kind, m.name, weights, fmt_size(m.n_params), f"{m.kind} ({m.kind_source})", h.task.name,
                     h.task.split, str(h.seed), h.package_version, h.created_utc, str(run.path)))
    return header, rows


def render_page(*, title: str, intro: str, summaries_fig: Path | None, summaries: Sequence[ModelSummary],
                sections: Sequence[Section], runs: Sequence[Run], files: Sequence[str]) -> str:
    """The complete HTML document."""
    h = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{h(title)}</title><style>{CSS}</style></head><body>", f"<h1>{h(title)}</h1>", intro]
    if summaries:
        parts.append("<h2>Across models</h2>")
        parts.append("<p>Best elicited = the highest honest behavioural score (prompt variant chosen on dev questions "
                     "and scored on the held-out test questions, majority vote over variants, unlocked). Probe "
                     "ceiling = test accuracy of a linear probe on the residual stream, its layer and target chosen by "
                     "cross-validation on the train questions. Ratios are over the straight-up (default prompt) score "
                     "on all questions; 1 = no gap. Held-out scores use about half the questions, so their intervals "
                     "are wider (see each model's table).</p>")
        parts.append(table_html(*summary_table(summaries)))
    if summaries_fig is not None:
        parts.append(_figure(summaries_fig, "Across models", "Ratio over the straight-up score against model size "
                             "(log scale); the dashed line is no gap."))
    parts.append('<p class="small">Contents: ' + " &middot; ".join(
        f'<a href="#{_anchor(s.title)}">{h(s.title)}</a>' for s in sections) + "</p>")
    for s in sections:
        parts.append(f'<h2 id="{_anchor(s.title)}">{h(s.title)}</h2>')
        parts.extend(f'<p class="note">{h(n)}</p>' for n in s.notes)
        for ttitle, header, rows in s.tables[:1]:
            parts.append(f"<h3>{h(ttitle)}</h3>" + table_html(header, rows))
        for ftitle, png, caption in s.figures:
            parts.append(_figure(png, ftitle, caption))
        for ttitle, header, rows in s.tables[1:]:
            parts.append(f"<h3>{h(ttitle)}</h3>" + table_html(header, rows))
    parts.append("<h2>Provenance</h2><p>Every run read for this page.</p>")
    parts.append(table_html(*provenance_table(runs)))
    notes = [(str(r.path), n) for r in runs for n in r.notes]
    if notes:
        parts.append("<h3>Notes on runs</h3>" + table_html(("run", "note"), notes))
    parts.append("<h2>Files</h2><ul>" + "".join(f'<li><a href="{h(f)}">{h(f)}</a></li>' for f in files) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _figure(png: Path, title: str, caption: str) -> str:
    h = html.escape
    return (f'<figure><img src="{data_uri(png)}" alt="{h(title)}" data-file="{h(Path(png).name)}">'
            f"<figcaption><b>{h(title)}.</b> {h(caption)} <span class=\"small\">({h(Path(png).name)})</span>"
            "</figcaption></figure>")
