"""The elicitation-gap report: `python cli.py report RUN_DIR... --out DIR`.

Reads results.json files only (run directories, or a sweep directory searched recursively), each as its typed
results (`core.schemas.load_result`), and writes into DIR:

- ``index.html``: one self-contained page (figures embedded as data URIs) with every table and the provenance of
  every run;
- ``figures/*.png``: per model and task the elicitation-gap chart, per-layer curves (probe, lens, control), the
  variant spread, unlocking curves and diff curves where such runs exist; ``across_models.png``;
- ``results.csv``: tidy rows (model, task, method, variant, layer, metric, value, lo, hi, n, run_dir, step);
- ``summary.csv``: one row per model and task (straight-up, best elicited, probe ceiling, ratios, size);
- ``report.json`` (`core.schemas.ReportManifest`): what was written (read by `summarize`).

A run's kind is its results' schema; a file that is not valid results is an error naming the file and the field.
Model size and kind come from each run's model identity. A value a run did not produce is listed in the page's notes
with the reason. Every best-of-k shown is the run's held-out selection.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import PluginOptions
from core.io import write_text
from core.provenance import package_version, to_jsonable
from core.schemas import ReportManifest, SweepRecord
from core.schemas.records import SummaryRow
from report import figures as figs
from report.html import Section, gap_table, render_page
from report.load import load_runs
from report.rows import TIDY_COLUMNS, Row, Run
from report.tables import (
    SUMMARY_COLUMNS,
    chance_level,
    fmt,
    fmt_size,
    gap_items,
    groups,
    model_summaries,
    summary_records,
    tidy_records,
    write_csv,
)

log = logging.getLogger(__name__)

MANIFEST = "report.json"
SWEEP_RECORD = "sweep.json"  # written by commands.sweep into a sweep directory


@dataclass(frozen=True)
class Config(PluginOptions):
    """Which runs to read and where to write the report."""

    runs: tuple[str, ...] = field(
        default=(), metadata={"help": "run directories or sweep directories (searched for results.json)",
                              "positional": True})
    out: str = field(default="runs/report", metadata={"help": "output directory for the HTML, PNGs and CSVs"})
    title: str = field(default="gaplens: the elicitation gap", metadata={"help": "page title"})


@dataclass
class _Ctx:
    """What every part of one model/task section needs."""

    model: str
    task: str
    rows: list[Row]
    runs: list[Run]
    fig_dir: Path
    written: list[Path]

    @property
    def name(self) -> str:
        return figs.slug(self.model, self.task)

    def figure(self, sec: Section, prefix: str, fig: Any, title: str, caption: str) -> None:
        path = self.fig_dir / f"{prefix}_{self.name}.png"
        figs.save(fig, path)
        self.written.append(path)
        sec.figures.append((title, path, caption))


def _gap_part(sec: Section, c: _Ctx) -> None:
    items = gap_items(c.rows)
    if not items:
        return
    sec.tables.append(("Elicitation gap", *gap_table(items)))
    c.figure(sec, "gap", figs.gap_chart(items, f"Elicitation gap: {c.model} on {c.task}", chance_level(c.rows)),
             "Elicitation gap", "Bars: 95% intervals; blue prompting, green internals, grey controls, orange "
             "locking; hatched: best-of-k picked on the same data it is scored on (optimistic).")
    if any(not i.honest for i in items):
        sec.notes.append("Some best-of-k values here are a naive max (no held-out selection in the run): "
                         "they are optimistic.")


def _layer_part(sec: Section, c: _Ctx) -> None:
    if any(r.method in ("probe", "lens") and r.layer is not None for r in c.rows):
        c.figure(sec, "layers", figs.layer_curves(c.rows, f"Per-layer accuracy: {c.model} on {c.task}",
                                                  chance_level(c.rows)),
                 "Per-layer curves", "Linear probe, logit lens and control-task probe accuracy by layer on held-out "
                 "questions (bands: 95% intervals); horizontal lines: prompted accuracy of the same prompt; star: the "
                 "probe ceiling.")


def _variant_part(sec: Section, c: _Ctx) -> None:
    per_variant = sorted((r for r in c.rows if r.method == "prompted" and r.metric == "accuracy"),
                         key=lambda r: -r.value)
    if len({r.variant for r in per_variant}) < 2:
        return
    c.figure(sec, "variants", figs.variant_spread(c.rows, f"Prompt variants: {c.model} on {c.task}",
                                                  chance_level(c.rows)),
             "Variant spread", "Accuracy per prompt variant on all evaluated questions.")
    split = {(r.variant, r.metric): r.value for r in c.rows if r.method == "prompted"}
    sec.tables.append(("Variants", ("variant", "accuracy", "95% lo", "95% hi", "n", "dev", "test"),
                       [(r.variant, r.value, r.lo, r.hi, r.n if r.n is not None else "",
                         split.get((r.variant, "accuracy_dev"), ""), split.get((r.variant, "accuracy_test"), ""))
                        for r in per_variant]))
    bias: dict[str, dict[str, float]] = {}
    for r in c.rows:
        if r.method == "symbol_bias":
            bias.setdefault(r.variant or "all", {})[r.metric] = r.value
    if bias:
        sec.tables.append(("Answer-symbol bias (predicted vs gold answer positions)",
                           ("variant", "total variation distance", "chi-square p"),
                           [(v, b.get("tv_distance", ""), f"{b['chi2_p']:.2g}" if "chi2_p" in b else "")
                            for v, b in sorted(bias.items(), key=lambda kv: -kv[1].get("tv_distance", 0))]))


def _lock_part(sec: Section, c: _Ctx) -> None:
    if any(r.method in ("unlock_curve", "unlock_sweep") for r in c.rows):
        c.figure(sec, "unlock", figs.unlock_curves(c.rows, f"Unlocking: {c.model} on {c.task}"), "Unlocking curves",
                 "Accuracy without the password while fine-tuning on weak samples (thick: mean over runs with its "
                 "t interval; thin: each seed), and the weight-space controls.")
    pgr = {(r.variant, r.metric): r for r in c.rows if r.method == "pgr"}
    if pgr:
        def cell(variant: str, metric: str) -> tuple[Any, Any, Any]:
            r = pgr.get((variant, metric))
            return (r.value, r.lo, r.hi) if r else ("", "", "")

        sec.tables.append((
            "Performance gap recovered", ("method", "PGR final", "lo", "hi", "PGR selected on dev half", "lo", "hi",
                                          "naive max PGR (optimistic)", "bias of the max"),
            [(v, *cell(v, "pgr"), *cell(v, "pgr_selected"), cell(v, "pgr_naive_max")[0], cell(v, "bias_pgr")[0])
             for v in dict.fromkeys(k[0] for k in pgr)]))


def _diff_part(sec: Section, c: _Ctx) -> None:
    if any(r.method.startswith("diff") and r.layer is not None for r in c.rows):
        c.figure(sec, "diff", figs.diff_curves(c.rows, f"Checkpoint diff: {c.model} on {c.task}"),
                 "Checkpoints compared by layer", "CKA / cosine with the reference checkpoint, the password's effect, "
                 "logit-lens accuracy and probe transfer per checkpoint/condition.")


def _transfer_part(sec: Section, c: _Ctx) -> None:
    """One table per training variant of `cli.py transfer` runs: each tested variant's transfer accuracy."""
    def val(method: str, variant: str) -> Any:
        r = next((r for r in c.rows if r.method == method and r.metric == "accuracy" and r.variant == variant), None)
        return r.value if r else ""

    for method in dict.fromkeys(r.method for r in c.rows if r.method.startswith("transfer_from:")):
        rows = [r for r in c.rows if r.method == method and r.metric == "accuracy"]
        layer = next((r.layer for r in rows if r.layer is not None), None)
        sec.tables.append((
            f"Probe trained on '{method.partition(':')[2]}', tested on each variant (layer {layer}, chosen on train CV)",
            ("tested on", "prompted (same test questions)", "transfer", "95% lo", "95% hi", "own-variant probe",
             "shuffled control"),
            [(r.variant, val("transfer_prompted", r.variant), r.value, r.lo, r.hi, val("own_variant_probe", r.variant),
              val("control:" + method, r.variant)) for r in rows]))


def _run_tables_part(sec: Section, c: _Ctx) -> None:
    for run in c.runs:
        if run.model == c.model and run.task == c.task:
            for tname, trows in run.tables.items():
                cols = list(dict.fromkeys(k for row in trows for k in row))
                sec.tables.append((f"{tname} ({run.path.name})", cols, [[row.get(k, "") for k in cols]
                                                                        for row in trows]))


PARTS = (_gap_part, _layer_part, _variant_part, _lock_part, _diff_part, _transfer_part, _run_tables_part)


def _section(c: _Ctx) -> Section:
    """Figures and tables of one model and task."""
    sec = Section(f"{c.model} on {c.task}")
    for part in PARTS:
        part(sec, c)
    return sec


def run(cfg: Config) -> Path:
    """Read every results.json under `cfg.runs` and write the report into `cfg.out`."""
    if not cfg.runs:
        raise ValueError("give at least one run directory or sweep directory")
    runs = load_runs(cfg.runs)
    if not runs:
        raise ValueError(f"no results.json under {', '.join(cfg.runs)}")
    out = Path(cfg.out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for run_ in runs for r in run_.rows]
    written: list[Path] = []
    sections = [_section(_Ctx(model, task, grp, runs, fig_dir, written)) for (model, task), grp in groups(rows).items()]
    summaries = model_summaries(runs)
    across = None
    if any(s.n_params is not None and (math.isfinite(s.elicited_ratio) or math.isfinite(s.probe_ratio))
           for s in summaries):
        across = fig_dir / "across_models.png"
        figs.save(figs.across_models(summaries), across)
        written.append(across)
    write_csv(out / "results.csv", tidy_records(rows), TIDY_COLUMNS)
    write_csv(out / "summary.csv", summary_records(summaries), SUMMARY_COLUMNS)
    for stale in fig_dir.glob("*.png"):
        if stale not in written:
            stale.unlink()
    command = "python cli.py report " + " ".join(shlex.quote(r) for r in cfg.runs) + f" --out {shlex.quote(cfg.out)}"
    kinds = sorted({r.kind for r in runs})
    sweeps = sorted({SweepRecord.read(p).config_file for r in cfg.runs if (p := Path(r) / SWEEP_RECORD).is_file()})
    made_by = f" Runs made by <code>python cli.py sweep {', '.join(sweeps)}</code>." if sweeps else ""
    intro = (f"<p>{len(runs)} runs ({', '.join(kinds)}), generated "
             f"{_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')} by gaplens {package_version()} "
             f"with <code>{command}</code>.{made_by}</p>")
    files = ["results.csv", "summary.csv", *(f"figures/{p.name}" for p in written)]
    page = render_page(title=cfg.title, intro=intro, summaries_fig=across, summaries=summaries, sections=sections,
                       runs=runs, files=files)
    _write_text(out / "index.html", page)
    ReportManifest(config=to_jsonable(cfg), command=command, n_runs=len(runs), kinds=kinds,
                   runs=[str(r.path) for r in runs], figures=[f"figures/{p.name}" for p in written], n_rows=len(rows),
                   summary=[SummaryRow(**rec) for rec in summary_records(summaries)]).write(out / MANIFEST)
    log.info("report: %d runs, %d figures -> %s", len(runs), len(written), out)
    return out


def _write_text(path: Path, text: str) -> None:
    write_text(path, text)


def summarize(out_dir: Path) -> str:
    """A few lines: what was read and written, and the across-model headline numbers."""
    m = ReportManifest.read(Path(out_dir) / MANIFEST)
    lines = [f"report: {m.n_runs} runs ({', '.join(m.kinds)}), {len(m.figures)} figures, "
             f"{m.n_rows} tidy rows -> {Path(out_dir) / 'index.html'}"]
    for s in m.summary:
        val = {k: fmt(getattr(s, k)) or "n/a" for k in ("straight_up", "best_elicited", "probe_ceiling")}
        lines.append(f"  {s.model} ({fmt_size(s.n_params)}) on {s.task}: straight-up {val['straight_up']}, "
                     f"best elicited {val['best_elicited']}, probe ceiling {val['probe_ceiling']}")
    return "\n".join(lines)
