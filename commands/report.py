"""The elicitation-gap report: `python cli.py report RUN_DIR... --out DIR`.

Reads results.json files (run directories, or a sweep directory searched recursively), each as its typed results
(`core.schemas.load_result`), and each run's per-question table (`samples.parquet`, `core.samples`), and writes into
DIR:

- ``index.html``: one self-contained page (figures embedded as data URIs). First the answer: per model and task the
  straight-up score, each method family's best choice and the best over every method, all on the same held-out test
  questions, with paired intervals and tests (`report.gap`), as a table and a forest figure; then the findings
  (`report.findings`), the across-model view (gap against model size; variant effects); then per model and task the
  details (method families with the naive max beside each choice, every variant against straight-up, the probe
  against its controls, per-layer curves, variant spread, locking and unlocking, diffs, transfer); then what each
  interval is over, and the provenance of every run;
- ``figures/*.png`` and ``figures/*.svg``: every figure in both formats;
- ``results.csv``: tidy rows (model, task, method, variant, layer, metric, value, lo, hi, n, run_dir, step) of the runs
  and of the paired analysis;
- ``summary.csv``: one row per model and task (`report.tables.SUMMARY_COLUMNS`);
- ``report.json`` (`core.schemas.ReportManifest`): what was read and written, and the summary (read by `summarize`).

A run's kind is its results' schema; a file that is not valid results is an error naming the file and the field.
Model size and kind come from each run's model identity. A value a run did not produce is listed in the page's notes
with the reason. Every best-of-k is chosen on dev questions and reported on test questions.
"""

from __future__ import annotations

import datetime as _dt
import logging
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.config import PluginOptions
from core.io import write_text
from core.provenance import package_version, to_jsonable
from core.schemas import ProbeResult, ReportManifest, SweepRecord
from report import figures as figs
from report import summary_figures as sfigs
from report.findings import findings
from report.gap import GroupAnalysis, Settings, analyse
from report.html import Fig, Section, render_page
from report.load import load_runs
from report.outcomes import Outcome, read_outcomes
from report.rows import TIDY_COLUMNS, Row, Run
from report.tables import (
    SUMMARY_COLUMNS,
    analysis_rows,
    chance_level,
    control_table,
    est,
    family_table,
    fixed_table,
    fmt_size,
    groups,
    locking_table,
    pval,
    summary_records,
    summary_rows,
    summary_table,
    tidy_records,
    write_csv,
)

log = logging.getLogger(__name__)

MANIFEST = "report.json"
SWEEP_RECORD = "sweep.json"  # written by commands.sweep into a sweep directory


@dataclass(frozen=True)
class Config(PluginOptions):
    """Which runs to read, where to write the report, and the resampling of its paired analysis."""

    runs: tuple[str, ...] = field(
        default=(), metadata={"help": "run directories or sweep directories (searched for results.json)",
                              "positional": True})
    out: str = field(default="runs/report", metadata={"help": "output directory for the HTML, figures and CSVs"})
    title: str = field(default="gaplens: the elicitation gap", metadata={"help": "page title"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap replicates of every paired interval"})
    n_perm: int = field(default=1000, metadata={"help": "permutations of the null of each naive maximum"})
    seed: int = field(default=0, metadata={"help": "seed of the bootstraps and permutations"})

    def _check(self) -> None:
        if self.n_boot < 100 or self.n_perm < 10:
            raise ValueError(f"--n-boot must be >= 100 and --n-perm >= 10, got {self.n_boot} and {self.n_perm}")


@dataclass
class _Ctx:
    """What every part of one model/task section needs."""

    model: str
    task: str
    rows: list[Row]
    runs: list[Run]
    analysis: GroupAnalysis | None
    fig_dir: Path
    written: list[Path]

    @property
    def name(self) -> str:
        return figs.slug(self.model, self.task)

    def figure(self, sec: Section, prefix: str, fig: Any, title: str, caption: str) -> None:
        if fig is None:
            return
        sec.parts.append(_save(fig, self.fig_dir / f"{prefix}_{self.name}", self.written, title, caption))


def _save(fig: Any, stem: Path, written: list[Path], title: str, caption: str) -> Fig:
    png, svg = figs.save(fig, stem)
    written += [png, svg]
    return Fig(title, png, svg, caption)


def _gap_part(sec: Section, c: _Ctx) -> None:
    g = c.analysis
    if g is None:
        return
    sec.notes.extend(g.notes)
    if g.families:
        sec.parts.append((f"Method families: chosen on {g.n_dev} dev questions, reported on {g.n_test} test "
                          "questions against straight-up on the same questions", *family_table(g)))
    if g.fixed:
        sec.parts.append(("Every prompt variant and the majority vote against straight-up, nothing chosen, on every "
                          "question both answered (Holm-adjusted over the variants)", *fixed_table(g)))
    if g.controls:
        sec.parts.append(("The probe ceiling against its controls, same test questions", *control_table(g)))
    for run in c.runs:
        if isinstance(run.result, ProbeResult) and run.model == c.model and run.task == c.task:
            _probe_flags(sec, run.result)


def _probe_flags(sec: Section, r: ProbeResult) -> None:
    sc = r.surface
    if sc is not None:
        sec.parts.append(("Surface-cue control (the probe run's own comparison: option probe at its CV layer vs a "
                          "probe on each option's length and words alone)",
                          ("features", "surface probe [Wilson]", f"option probe, layer {sc.probe_layer} [Wilson]",
                           "probe minus surface [paired bootstrap, questions]", "McNemar b/c, p"),
                          [(sc.features, est(sc.test_accuracy), est(sc.probe_test_accuracy),
                            est(sc.margin, True), f"{sc.mcnemar.b}/{sc.mcnemar.c}, p={sc.mcnemar.p_value:.2g}")]))
    for target, flagged in r.below_chance.items():
        if flagged:
            sec.notes.append(f"{target} probe below chance ({r.chance:.2f}) by its whole Wilson interval at layer(s) "
                             f"{', '.join(map(str, flagged))}: a label-position artefact (the probe anti-predicts, "
                             "e.g. from the gold answer's displayed position in the train questions), not knowledge.")


def _layer_part(sec: Section, c: _Ctx) -> None:
    if any(r.method in ("probe", "lens") and r.layer is not None for r in c.rows):
        c.figure(sec, "layers", figs.layer_curves(c.rows, f"Per-layer accuracy: {c.model} on {c.task}",
                                                  chance_level(c.rows)),
                 "Per-layer curves", "Linear probe, logit lens and control-task probe accuracy by layer on held-out "
                 "questions (bands: 95% Wilson intervals over questions; the shuffled-label control is the mean over "
                 "its shuffles); horizontal lines: prompted accuracy of the same prompt; star: the probe ceiling; grey "
                 "band: the surface-cue control; red x: below chance by its whole interval (label-position "
                 "artefact).")


def _variant_part(sec: Section, c: _Ctx) -> None:
    per_variant = sorted((r for r in c.rows if r.method == "prompted" and r.metric == "accuracy"),
                         key=lambda r: -r.value)
    if len({r.variant for r in per_variant}) < 2:
        return
    c.figure(sec, "variants", figs.variant_spread(c.rows, f"Prompt variants: {c.model} on {c.task}",
                                                  chance_level(c.rows)),
             "Variant spread", "Accuracy per prompt variant on all evaluated questions (95% percentile bootstrap "
             "over questions).")
    split = {(r.variant, r.metric): r.value for r in c.rows if r.method == "prompted"}
    sec.parts.append(("Variants (accuracy on every question; interval: bootstrap over questions)",
                      ("variant", "accuracy", "95% lo", "95% hi", "n", "dev", "test"),
                       [(r.variant, r.value, r.lo, r.hi, r.n if r.n is not None else "",
                         split.get((r.variant, "accuracy_dev"), ""), split.get((r.variant, "accuracy_test"), ""))
                        for r in per_variant]))
    bias: dict[str, dict[str, float]] = {}
    for r in c.rows:
        if r.method == "symbol_bias":
            bias.setdefault(r.variant or "all", {})[r.metric] = r.value
    if bias:
        sec.parts.append(("Answer-symbol bias (predicted vs gold answer positions)",
                           ("variant", "total variation distance", "chi-square p"),
                           [(v, b.get("tv_distance", ""), f"{b['chi2_p']:.2g}" if "chi2_p" in b else "")
                            for v, b in sorted(bias.items(), key=lambda kv: -kv[1].get("tv_distance", 0))]))


def _lock_part(sec: Section, c: _Ctx) -> None:
    g = c.analysis
    if g is not None and g.locking is not None:
        sec.parts.append(("Locking: the ends of the gap and the fraction of it each unlocking method recovers "
                          "(every eval question, each run's final model)", *locking_table(g)))
        c.figure(sec, "recovered", sfigs.recovered(g), "Fraction of the gap recovered",
                 "(unlocked - locked) / (with password - locked) per unlocking method, 95% crossed bootstrap over "
                 "runs and questions; 0 = locked, 1 = with the password.")
    if any(r.method in ("unlock_curve", "unlock_sweep") for r in c.rows):
        c.figure(sec, "unlock", figs.unlock_curves(c.rows, f"Unlocking: {c.model} on {c.task}"), "Unlocking curves",
                 "Accuracy without the password while fine-tuning on weak samples (thick: mean over runs with its "
                 "95% interval over runs and questions, Wilson over questions for one run; thin: each seed), and the "
                 "weight-space controls.")
    pgr = {(r.variant, r.metric): r for r in c.rows if r.method == "pgr"}
    if pgr:
        def cell(variant: str, metric: str) -> tuple[Any, Any, Any]:
            r = pgr.get((variant, metric))
            return (r.value, r.lo, r.hi) if r else ("", "", "")

        sec.parts.append((
            "Performance gap recovered, as the unlock run computed it (intervals: see each run's method)", ("method", "PGR final", "lo", "hi", "PGR selected on dev half", "lo", "hi",
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
        sec.parts.append((
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
                sec.parts.append((f"{tname} ({run.path.name})", cols, [[row.get(k, "") for k in cols]
                                                                        for row in trows]))


PARTS = (_gap_part, _layer_part, _variant_part, _lock_part, _diff_part, _transfer_part, _run_tables_part)


def _section(c: _Ctx) -> Section:
    """Figures and tables of one model and task."""
    sec = Section(f"{c.model} on {c.task}")
    for part in PARTS:
        part(sec, c)
    return sec


def analyses(runs: list[Run], settings: Settings) -> dict[tuple[str, str], GroupAnalysis]:
    """The paired analysis of every (model, task) group with per-question outcomes (`report.gap.analyse`)."""
    outcomes: dict[tuple[str, str], list[Outcome]] = {}
    for run in runs:
        outcomes.setdefault((run.model, run.task), []).extend(read_outcomes(run))
    sizes: dict[str, int] = {}
    kinds_of: dict[str, str] = {}
    for run in sorted(runs, key=lambda r: r.kind != "lock"):  # a lock run names its group's family first
        sizes.setdefault(run.model, run.n_params)
        kinds_of.setdefault(run.model, run.family)
    command_of = {str(r.path): r.kind for r in runs}
    out = {}
    for (model, task), outs in sorted(outcomes.items()):
        if outs:
            out[(model, task)] = analyse(model, task, outs, command_of, n_params=sizes.get(model),
                                         kind=kinds_of.get(model, ""), settings=settings)
    return out


def _summary_figures(found: dict[tuple[str, str], GroupAnalysis], fig_dir: Path, written: list[Path]
                     ) -> tuple[list[Fig], list[Fig]]:
    gs = list(found.values())
    top, across = [], []
    fig = sfigs.forest(gs)
    if fig is not None:
        top.append(_save(fig, fig_dir / "summary_forest", written, "Straight-up and each method on the same test "
                         "questions", "Left: accuracy on the test questions (95% Wilson interval over questions; a "
                         "mean over runs: bootstrap over questions), dashed: chance, dotted: straight-up, the bar from "
                         "straight-up to each method is its gap; each family's method chosen on dev (k candidates). "
                         "Right: the same minus straight-up, paired by question (95% percentile bootstrap over "
                         "questions). Controls and the with-password reference have no gap."))
    fig = sfigs.gap_vs_size(gs)
    if fig is not None:
        across.append(_save(fig, fig_dir / "gap_vs_size", written, "The gap against model size",
                            "Best method (chosen on dev) and probe ceiling minus straight-up on the test questions, "
                            "95% paired bootstrap intervals over questions, against the parameter count of each "
                            "run's model identity; marker: model kind (open: locked). A least-squares line is drawn "
                            "only with four or more models."))
    fig = sfigs.variant_effects(gs)
    if fig is not None:
        across.append(_save(fig, fig_dir / "variant_effects", written, "What each prompt variant does",
                            "Each variant minus straight-up on every question (nothing chosen), 95% paired bootstrap "
                            "over questions; filled: Holm-adjusted McNemar p < 0.05 over the model's variants."))
    return top, across


def run(cfg: Config) -> Path:
    """Read every results.json (and samples.parquet) under `cfg.runs` and write the report into `cfg.out`."""
    if not cfg.runs:
        raise ValueError("give at least one run directory or sweep directory")
    runs = load_runs(cfg.runs)
    if not runs:
        raise ValueError(f"no results.json under {', '.join(cfg.runs)}")
    settings = Settings(n_boot=cfg.n_boot, n_perm=cfg.n_perm, seed=cfg.seed)
    found = analyses(runs, settings)
    out = Path(cfg.out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for run_ in runs for r in run_.rows] + [r for g in found.values() for r in analysis_rows(g)]
    written: list[Path] = []
    top, across = _summary_figures(found, fig_dir, written)
    by_group = groups(rows)
    sections = [_section(_Ctx(model, task, by_group.get((model, task), []), runs, found.get((model, task)), fig_dir,
                              written))
                for model, task in sorted(set(by_group) | set(found))]
    summary = summary_rows(list(found.values()))
    write_csv(out / "results.csv", tidy_records(rows), TIDY_COLUMNS)
    write_csv(out / "summary.csv", summary_records(summary), SUMMARY_COLUMNS)
    for stale in (*fig_dir.glob("*.png"), *fig_dir.glob("*.svg")):
        if stale not in written:
            stale.unlink()
    command = ("python cli.py report " + " ".join(shlex.quote(r) for r in cfg.runs) + f" --out {shlex.quote(cfg.out)}"
               + "".join(f" --{k.replace('_', '-')} {v}" for k, v in (("n_boot", cfg.n_boot), ("n_perm", cfg.n_perm),
                                                                      ("seed", cfg.seed))
                         if v != Config.__dataclass_fields__[k].default))
    kinds = sorted({r.kind for r in runs})
    sweeps = sorted({SweepRecord.read(p).config_file for r in cfg.runs if Path(r).is_dir()
                     for p in Path(r).rglob(SWEEP_RECORD)})
    made_by = f" Runs made by <code>python cli.py sweep {', '.join(sweeps)}</code>." if sweeps else ""
    intro = (f"<p>{len(runs)} runs ({', '.join(kinds)}), generated "
             f"{_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')} by gaplens {package_version()} "
             f"with <code>{command}</code>.{made_by} Intervals: {cfg.n_boot} bootstrap replicates, {cfg.n_perm} "
             f"permutations, seed {cfg.seed}.</p>")
    files = ["results.csv", "summary.csv", *(f"figures/{p.name}" for p in written)]
    page = render_page(title=cfg.title, intro=intro, summary=summary_table(list(found.values())),
                       summary_figures=top, findings=findings(list(found.values()), settings), across=across,
                       sections=sections, runs=runs, files=files)
    write_text(out / "index.html", page)
    ReportManifest(config=to_jsonable(cfg), command=command, n_runs=len(runs), kinds=kinds,
                   runs=[str(r.path) for r in runs], figures=[f"figures/{p.name}" for p in written], n_rows=len(rows),
                   settings=asdict(settings),
                   summary=summary).write(out / MANIFEST)
    log.info("report: %d runs, %d figures -> %s", len(runs), len(written), out)
    return out


def summarize(out_dir: Path) -> str:
    """A few lines: what was read and written, and the gap per model and task."""
    m = ReportManifest.read(Path(out_dir) / MANIFEST)
    lines = [f"report: {m.n_runs} runs ({', '.join(m.kinds)}), {len(m.figures)} figures, "
             f"{m.n_rows} tidy rows -> {Path(out_dir) / 'index.html'}"]
    for s in m.summary:
        head = f"  {s.model} ({fmt_size(s.n_params)}) on {s.task}, {s.n_test} test questions:"
        if s.best is None or s.straight_up is None:
            lines.append(f"{head} no paired comparison ({s.ratio_reason})")
            continue
        lines.append(f"{head} straight-up {est(s.straight_up)}; best method (chosen on dev) {s.best_method}: "
                     f"{est(s.best)}, gap {est(s.gap, True)} (paired bootstrap), McNemar p={pval(s.mcnemar_p)}"
                     + (f"; probe ceiling {est(s.probe)}" if s.probe is not None else ""))
    return "\n".join(lines)
