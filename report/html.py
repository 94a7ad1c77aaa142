"""The report's single self-contained HTML page: the answer first (summary table and figure, findings), the detail
per model and task below it (collapsible), then the intervals' legend, provenance and files.

Figures are embedded as base64 PNG data URIs, each linked to its SVG file for print; styles are inline and there is
no script, so the page needs no other file and no network.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from report.findings import Finding
from report.rows import Run
from report.tables import INTERVALS, fmt, fmt_size

PROVENANCE_FIELDS = ("kind", "model", "weight_hash", "size", "model kind", "task", "split", "seed", "package_version",
                     "created_utc")

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1250px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
h3 { margin-top: 1.2em; }
table { border-collapse: collapse; font-size: .8em; margin: .6em 0 1.2em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; } .note { color: #8a5a00; font-size: .9em; }
code { background: #f5f5f5; padding: 0 .2em; } .small { font-size: .8em; color: #666; }
details > summary { cursor: pointer; font-size: 1.25em; font-weight: bold; margin: 1em 0 .4em; }
.finding { border-left: 3px solid #4C72B0; padding-left: .8em; margin: 1em 0; }
.finding ul { margin: .3em 0; font-size: .9em; } .limits { font-size: .88em; color: #444; }
"""


@dataclass(frozen=True)
class Fig:
    """A figure on the page: title, its PNG (embedded) and SVG (linked), caption."""

    title: str
    png: Path
    svg: Path | None
    caption: str


@dataclass
class Section:
    """One model/task section: tables (title, header, rows), figures and notes, shown in that order per part."""

    title: str
    parts: list[Any] = field(default_factory=list)  # Fig or (title, header, rows) tables, in display order
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


def figure_html(f: Fig) -> str:
    """A figure: the PNG embedded, the SVG linked."""
    h = html.escape
    svg = f' <a href="figures/{h(f.svg.name)}">SVG</a>' if f.svg is not None else ""
    return (f'<figure><img src="{data_uri(f.png)}" alt="{h(f.title)}" data-file="{h(f.png.name)}">'
            f"<figcaption><b>{h(f.title)}.</b> {h(f.caption)} <span class=\"small\">({h(f.png.name)}{svg})</span>"
            "</figcaption></figure>")


def finding_html(f: Finding) -> str:
    """One finding: the question, the answer, per model/task details, what the data can and cannot answer."""
    h = html.escape
    out = [f'<div class="finding"><b>{h(f.question)}</b><p>{h(f.answer)}</p>']
    if f.details:
        out.append("<ul>" + "".join(f"<li>{h(d)}</li>" for d in f.details) + "</ul>")
    if f.can or f.cannot:
        out.append(f'<p class="limits"><b>Can answer:</b> {h(f.can)} <b>Cannot:</b> {h(f.cannot)}</p>')
    out.append("</div>")
    return "".join(out)


def _part(p: Any) -> str:
    if isinstance(p, Fig):
        return figure_html(p)
    title, header, rows = p
    return f"<h3>{html.escape(title)}</h3>" + (table_html(header, rows) if rows else
                                               '<p class="small">(nothing to show)</p>')


def render_page(*, title: str, intro: str, summary: tuple[Sequence[str], list[Sequence[Any]]],
                summary_figures: Sequence[Fig], findings: Sequence[Finding], across: Sequence[Fig],
                sections: Sequence[Section], runs: Sequence[Run], files: Sequence[str]) -> str:
    """The complete HTML document."""
    h = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{h(title)}</title><style>{CSS}</style></head><body>", f"<h1>{h(title)}</h1>", intro]
    parts.append('<p class="small">Contents: <a href="#gap">the gap</a> &middot; <a href="#findings">findings</a>'
                 ' &middot; <a href="#across">across models</a> &middot; ' + " &middot; ".join(
                     f'<a href="#{_anchor(s.title)}">{h(s.title)}</a>' for s in sections)
                 + ' &middot; <a href="#intervals">intervals</a> &middot; <a href="#provenance">provenance</a></p>')
    parts.append('<h2 id="gap">The elicitation gap at a glance</h2>')
    parts.append("<p>For each model and task: the straight-up score (the default prompt's own letter answer; for a "
                 "locked model, its answer without the password) and what the best elicitation method reaches on the "
                 "<b>same held-out test questions</b>. Every best-of-k (prompt variant, chain of thought, logit-lens "
                 "layer, probe target and layer, unlocking method, and the best over all of them) is chosen on the dev "
                 "questions (a probe run's train questions, by cross-validation) and reported on the test questions; "
                 "the naive maximum over the test questions and the inflation a maximum gets by chance alone are "
                 "beside it. The gap is a paired difference with a bootstrap interval over questions and an exact "
                 "McNemar test on the questions where the two differ; the ratio is shown only when straight-up is "
                 "above chance by its whole interval.</p>")
    parts.append(table_html(*summary))
    parts.extend(figure_html(f) for f in summary_figures)
    parts.append('<h2 id="findings">Findings</h2>')
    parts.extend(finding_html(f) for f in findings)
    parts.append('<h2 id="across">Across models</h2>')
    parts.extend(figure_html(f) for f in across) if across else parts.append(
        '<p class="small">No across-model figure: no group with a paired comparison and a known size.</p>')
    for s in sections:
        parts.append(f'<details id="{_anchor(s.title)}"><summary>{h(s.title)}</summary>')
        parts.extend(f'<p class="note">{h(n)}</p>' for n in s.notes)
        parts.extend(_part(p) for p in s.parts)
        parts.append("</details>")
    parts.append('<h2 id="intervals">What each interval is over</h2><p>All intervals are 95%. The column header or '
                 "caption of each number names its interval; the methods:</p>")
    parts.append(table_html(("method", "over"), sorted(INTERVALS.items())))
    parts.append('<h2 id="provenance">Provenance</h2><p>Every run read for this page.</p>')
    parts.append(table_html(*provenance_table(runs)))
    notes = [(str(r.path), n) for r in runs for n in r.notes]
    if notes:
        parts.append("<h3>Notes on runs</h3>" + table_html(("run", "note"), notes))
    parts.append("<h2>Files</h2><ul>" + "".join(f'<li><a href="{h(f)}">{h(f)}</a></li>' for f in files) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
