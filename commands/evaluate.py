"""Prompt-variant evaluation and the honest best elicited score (`python cli.py eval`).

One run writes one directory:

- ``activations.h5``: the capture store (`hooks.capture.capture`) with every variant as rows; residual streams
  only with ``--resid`` (so probes can be trained on one variant and tested on another).
- ``results.json`` (`core.schemas.EvalResult`): the run header, per-variant accuracies with bootstrap CIs over
  questions, spread, per-question agreement, majority vote vs the straight-up prompt, answer-symbol bias of
  lettered variants, and the best variant chosen on dev questions and scored on test questions beside the naive max.
- ``samples.parquet``: every question's answer under every metric (`core.samples`).
- ``variants.csv`` (one row per metric) and ``variants.png`` (accuracies with CIs, chance, the default prompt).

- ``generations.jsonl``: chain-of-thought variants ("cot", "chat+cot", any "+cot" name), answered by greedy
  decoding with at most ``--max-new-tokens`` tokens (`hooks.generate`); the answer is extracted from the text
  (`eval.extract`), and a text without one counts as wrong (metric "cot"). The forced answer, "cot[forced]",
  reads the answer symbols' logits after the reasoning (cut before the model's own answer) and "The answer is";
  its rows, residuals included, are in the store under the variant id "cot[forced]". `--cot on` adds the
  built-in chain-of-thought variants, `auto` (the default) adds them only when CUDA is available (decoding is
  slow on CPU), `off` never; a "+cot" variant named in --variants always runs. With CUDA the generation runs
  there and the model returns to the CPU for the capture.

Option-text variants give two metrics: "<variant>" (acc, summed log-probability) and "<variant>[norm]"
(acc_norm, log-probability per character). Every metric counts as a variant in the spread, the majority
vote and the best-of-k selection. Chat variants are dropped (and recorded) when the model has no chat
template; few-shot variants when the task's few-shot pool is too small.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import (
    ExecutionOptions,
    LogOptions,
    ModelKindOptions,
    ModelOptions,
    OutputOptions,
    PluginOptions,
    TaskOptions,
    opt,
    pick,
)
from core.io import save_png, write_csv
from core.provenance import config_hash, to_jsonable
from core.rundir import results_to_reuse, run_directory
from core.samples import SampleTable, write_samples
from core.schemas import (
    Estimate,
    EvalResult,
    TaskInfo,
    format_estimate,
    from_data,
    recorded_identity,
    run_header,
)
from core.schemas import evaluate as schema
from eval import scoring, tasks, variants
from eval.metrics import STRAIGHT_UP, evaluate_predictions, score_generations
from hooks import execution
from hooks import generate as gen
from hooks.capture import CaptureConfig, capture, is_current
from hooks.execution import torch_threads
from hooks.models import LoadedModel, describe, load_model
from hooks.store import Store, store_checksum
from logs import write_logs

log = logging.getLogger(__name__)

DEFAULT_VARIANTS = "default,numbers,lower,paren,wrap,rotate:1,shuffle:0,praise,sys_assistant,chat,shots:3,option"
STORE_NAME, RESULTS_NAME, CSV_NAME, PNG_NAME = "activations.h5", "results.json", "variants.csv", "variants.png"
GEN_NAME, SAMPLES_NAME = "generations.jsonl", "samples.parquet"
COT_CHOICES = ("auto", "on", "off")
EXTENDS = ("variants", "cot", "max_new_tokens")  # rerunning with other variants keeps the finished rows
CSV_FIELDS = ("variant", "scoring", "accuracy", "ci_lo", "ci_hi", "n", "dev_acc", "test_acc")


@dataclass(frozen=True)
class Config(PluginOptions, LogOptions, ModelOptions, ModelKindOptions, TaskOptions, ExecutionOptions, OutputOptions):
    """One evaluation: a model on a task under a set of prompt variants."""

    n: int | None = opt(100, "number of questions (seeded subsample)")
    variants: str = opt(DEFAULT_VARIANTS, 'comma-separated prompt variants, or "all" (see `cli.py variants`)')
    dev_fraction: float = opt(0.5, "fraction of questions used to choose the best variant (the rest scores it)")
    resid: bool = opt(False, "also store residual streams (for probes across variants)")
    n_boot: int = opt(1000, "bootstrap replicates for confidence intervals")
    cot: str = opt("auto", "add the chain-of-thought variants (greedy generation): on, off, or auto (on only when "
                   "CUDA is available; decoding is slow on CPU). A '+cot' variant named in --variants always runs")
    max_new_tokens: int = opt(256, "chain of thought: generated tokens per answer, at most")

    def _check(self) -> None:
        if not 0.0 < self.dev_fraction < 1.0:
            raise ValueError(f"--dev-fraction must be in (0, 1), got {self.dev_fraction}")
        if self.n is not None and self.n < 2:
            raise ValueError(f"--n must be >= 2 (questions are split into dev and test), got {self.n}")
        if self.n_boot < 1:
            raise ValueError(f"--n-boot must be >= 1, got {self.n_boot}")
        if self.cot not in COT_CHOICES:
            raise ValueError(f"--cot must be one of {', '.join(COT_CHOICES)}, got {self.cot!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")


def out_dir(cfg: Config) -> Path:
    """The run directory: `--out`, else runs/eval-<model>-<task>."""
    return cfg.out_dir("eval")


def _validate(cfg: Config) -> list[str]:
    """The variant names the run will ask for (chain of thought resolved for this machine); ValueError naming
    the flag on bad input."""
    try:
        names = variants.variant_set(cfg.variants)
    except ValueError as exc:
        raise ValueError(f"--variants: {exc}") from None
    if cfg.cot == "on" or (cfg.cot == "auto" and execution.check(cfg).device.type == "cuda"):
        names += [v for v in variants.generation_variants() if v not in names]
    return names


def _generates(name: str) -> bool:
    return variants.parse(name).generates


def _generate_config(cfg: Config, names: list[str]) -> gen.GenerateConfig:
    return pick(gen.GenerateConfig, cfg, variants=tuple(names))


def _capture_config(cfg: Config, names: list[str], out: Path | None = None) -> CaptureConfig:
    """The capture of `names`; chain-of-thought variants come in as forced answers after their generations."""
    gens = [v for v in names if _generates(v)]
    where = (out if out is not None else out_dir(cfg)) / GEN_NAME
    return pick(CaptureConfig, cfg, variants=tuple(names), generations=str(where) if gens else None,
                generations_hash=config_hash(_generate_config(cfg, gens)) if gens else None)


def _drop_few_shot(cfg: Config, names: list[str]) -> dict[str, str]:
    """{variant: reason} for few-shot variants the task's few-shot pool is too small for."""
    specs = {v: variants.parse(v) for v in names}
    if not any(s.shots for s in specs.values()):
        return {}
    pool = tasks.few_shot_pool(tasks.TaskSpec.of(cfg))
    return {v: f"few-shot pool of {cfg.task!r} has {len(pool)} examples, {s.shots} needed"
            for v, s in specs.items() if s.shots > len(pool)}  # the pool never holds an eval question


def _drop_chat(cfg: Config, names: list[str]) -> dict[str, str]:
    return {v: f"model {cfg.model!r} has no chat template" for v in names if variants.parse(v).chat}


def _store_matches(path: Path, cfg: CaptureConfig) -> bool:
    return is_current(cfg, path)


def _inputs(store_path: Path, gen_path: Path | None) -> dict[str, Any]:
    """What the results are computed from: the store's checksum and the generations file's bytes."""
    gens = None
    if gen_path is not None and gen_path.exists():
        gens = hashlib.sha256(gen_path.read_bytes()).hexdigest()[:16]
    return {"store": store_checksum(store_path), "generations": gens}


def run(cfg: Config, *, model: LoadedModel | None = None) -> Path:
    """Generate the chain-of-thought variants into DIR/generations.jsonl, capture every variant into
    DIR/activations.h5 (chain of thought as its forced answer), score them all, write results.json and
    variants.csv/png.

    Reuses DIR/results.json when it was written by the same config; reuses a finished store or generations file
    whose config matches (without loading the model). `model` skips loading (tests, notebooks). `--log` /
    `--wandb` then write DIR/logs for other tools (`logs.write_logs`).
    """
    _validate(cfg)  # bad flags fail before anything is written
    execution.check(cfg)  # and so does a device this machine does not have
    with run_directory(out_dir(cfg), "eval"), torch_threads(cfg.threads):
        out = _run(cfg, model=model)
        if cfg.log or cfg.wandb:  # logs for other tools (also for a reused run: they change no result)
            write_logs(out, cfg.log, wandb=cfg.wandb)
        return out


def _run(cfg: Config, *, model: LoadedModel | None = None) -> Path:
    t0 = time.perf_counter()
    names = _validate(cfg)
    out = out_dir(cfg)
    chash = config_hash(cfg, resolved_variants=names)  # chain of thought resolves differently with CUDA
    results = out / RESULTS_NAME
    store_path, gen_path = out / STORE_NAME, out / GEN_NAME
    dropped = _drop_few_shot(cfg, names)
    runnable = [v for v in names if v not in dropped]
    chat_free = [v for v in runnable if not variants.parse(v).chat]

    def gens_of(kept: list[str]) -> list[str]:
        return [v for v in kept if _generates(v)]

    def finished(kept: list[str]) -> bool:
        gens = gens_of(kept)
        return (_store_matches(store_path, _capture_config(cfg, kept, out))
                and (not gens or gen.is_complete(gen_path, _generate_config(cfg, gens))))

    kept = next((k for k in (runnable, chat_free) if k and finished(k)), None)
    if kept is not None and all((out / f).exists() for f in (CSV_NAME, PNG_NAME, SAMPLES_NAME)):
        inputs = _inputs(store_path, gen_path if gens_of(kept) else None)
        if results_to_reuse(results, config=to_jsonable(cfg), config_hash=chash, inputs=inputs,
                            overwrite=cfg.overwrite, extends=EXTENDS):
            log.info("reusing finished evaluation %s", out)
            return out
    elif results.exists():
        results_to_reuse(results, config=to_jsonable(cfg), config_hash=chash, overwrite=cfg.overwrite,
                         extends=EXTENDS)
    if kept is None:
        if model is None:
            model = load_model(cfg.model, seed=cfg.seed, dtype=cfg.dtype, device=cfg.device, device_map=cfg.device_map,
                               load_in=cfg.load_in)
        kept = runnable if model.chat_template() is not None else chat_free
    dropped.update(_drop_chat(cfg, [v for v in runnable if v not in kept]))
    for v, why in dropped.items():
        log.warning("dropping variant %s: %s", v, why)
    if not kept:
        raise ValueError(f"--variants: none of {names} can run on model {cfg.model!r}: {dropped}")
    gens = gens_of(kept)
    if model is not None:
        out.mkdir(parents=True, exist_ok=True)
        if gens:  # first: the capture reads the reasoning for the forced answers
            gen.generate(_generate_config(cfg, gens), gen_path, model=model)
        capture(_capture_config(cfg, kept, out), store_path, model=model, reuse_rows=True)
    with Store(store_path) as s:
        parts = [scoring.score_store(s.rows, s.array("answer_logits"), s.array("option_logprob"),
                                     s.array("option_nchars"))]
        prov_src = dict(s.provenance)
        ident = recorded_identity(prov_src) or describe(cfg.model, digest=prov_src.get("weight_hash"), seed=cfg.seed)
        subjects = s.subjects()
        data_fingerprint = s.inputs.get("data")
    cot: dict[str, Any] = {"run": False, "why": _cot_off_reason(cfg)}
    if gens:
        _, rows = gen.read_generations(gen_path)
        preds, cot = score_generations(rows)
        cot.update(run=True, max_new_tokens=cfg.max_new_tokens, file=GEN_NAME)
        parts.append(preds)
    predictions = scoring.concat(parts)
    res = evaluate_predictions(predictions, seed=cfg.seed, dev_fraction=cfg.dev_fraction, n_boot=cfg.n_boot)
    inputs = _inputs(store_path, gen_path if gens else None)
    header = run_header(
        command="eval", model=ident.with_kind(cfg.model_kind),
        task=TaskInfo(prov_src.get("task", cfg.task), prov_src.get("split", cfg.split),
                      int(prov_src.get("n_questions") or res["n_questions"]), cfg.data_dir, data_fingerprint),
        seed=cfg.seed, config=cfg, config_hash=chash,
        execution=execution.execution_record(cfg, placement=prov_src.get("execution")),
        timing={"total": time.perf_counter() - t0}, inputs=inputs)
    doc = _results(header, res, cot, requested=names, kept=kept, dropped=dropped)
    _write_csv(out / CSV_NAME, doc)
    _write_png(out / PNG_NAME, doc, title=f"{ident.name} on {header.task.name} ({doc.n_questions} questions)")
    write_samples(out / SAMPLES_NAME, _samples(doc, predictions, subjects))
    doc.write(results)
    return out


def _results(header: Any, res: dict[str, Any], cot: dict[str, Any], *, requested: list[str], kept: list[str],
             dropped: dict[str, str]) -> EvalResult:
    """The typed results from `eval.metrics.evaluate_predictions`' output and the chain-of-thought record."""
    metrics = [schema.Metric(r["variant"], r["base_variant"], r["scoring"],
                             Estimate(r["accuracy"], r["ci_lo"], r["ci_hi"], r["n"], r["ci_method"]), r["n_missing"],
                             r["dev_acc"], r["test_acc"]) for r in res["metrics"]]
    chain = schema.ChainOfThought(run=cot["run"], why=cot.get("why"), max_new_tokens=cot.get("max_new_tokens"),
                                  file=cot.get("file"),
                                  variants=from_data(dict[str, schema.CotStats], cot.get("variants", {})))
    return EvalResult(
        header=header, store=STORE_NAME, variants_requested=requested, variants_run=kept, dropped=dropped,
        chain_of_thought=chain, n_questions=res["n_questions"], chance=res["chance"],
        straight_up=res["default"]["variant"] if res["default"] is not None else None, metrics=metrics,
        spread=from_data(schema.Spreads, res["spread"]), agreement=from_data(schema.Agreement, res["agreement"]),
        majority_vote=from_data(schema.MajorityVote, res["majority_vote"]),
        symbol_bias=from_data(dict[str, schema.SymbolBias], res["symbol_bias"]),
        honest_best=from_data(schema.HonestBest, res["honest_best"]),
        questions=from_data(list[schema.QuestionSummary], res["questions"]))


def _samples(doc: EvalResult, preds: scoring.Predictions, subjects: dict[str, str]) -> SampleTable:
    """samples.parquet: one row per question and metric (score: the softmax probability of the answer)."""
    m = doc.header.model
    table = SampleTable(model=m.name, weight_hash=m.weight_hash, task=doc.header.task.name, seed=doc.header.seed,
                        command="eval", condition=None, layer=None)
    dev = set(doc.honest_best.dev_ids)
    ids = preds.question_id.tolist()
    rows = np.arange(len(preds))
    score = np.where(preds.pred_orig >= 0, preds.probs[rows, np.clip(preds.pred_orig, 0, None)], np.nan)
    table.add(question_id=ids, subject=[subjects.get(q) or None for q in ids],
              split=["dev" if q in dev else "test" for q in ids], variant=preds.base_variant.tolist(),
              method=[f"prompted:{x}" for x in preds.scoring.tolist()], prediction=preds.pred_orig,
              gold=preds.gold_orig, correct=preds.correct, score=score, n_choices=preds.n_choices)
    return table


def _cot_off_reason(cfg: Config) -> str:
    if cfg.cot == "off":
        return "--cot off"
    if cfg.cot == "auto":
        return "--cot auto and the model not on a CUDA device (chain of thought is off by default on CPU; --cot on " \
            "forces it)"
    return "no generation variant could run"


# --------------------------------------------------------------------------- files


def _write_csv(path: Path, doc: EvalResult) -> None:
    def cell(x: Any) -> Any:
        return "" if x is None else (f"{x:.6g}" if isinstance(x, float) else x)

    write_csv(path, CSV_FIELDS, [[cell(x) for x in (m.variant, m.scoring, m.accuracy.value, m.accuracy.lo,
                                                    m.accuracy.hi, m.accuracy.n, m.dev_acc, m.test_acc)]
                                 for m in doc.metrics])


_COLORS = {scoring.LETTER: "#4c72b0", scoring.OPTION: "#dd8452", scoring.OPTION_NORM: "#c44e52",
           scoring.COT: "#55a868", scoring.COT_FORCED: "#8172b3"}


def _write_png(path: Path, doc: EvalResult, *, title: str) -> None:
    """Horizontal bars sorted by accuracy with CI whiskers, lines at chance and at the default prompt."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = list(reversed(doc.metrics))  # best at the top
    fig = Figure(figsize=(7.5, 1.2 + 0.28 * len(rows)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))
    acc = np.array([r.accuracy.value for r in rows])
    lo = np.array([r.accuracy.lo for r in rows], dtype=float)
    hi = np.array([r.accuracy.hi for r in rows], dtype=float)
    err = np.nan_to_num(np.stack([acc - lo, hi - acc]).clip(min=0))
    ax.barh(y, acc, xerr=err, color=[_COLORS.get(r.scoring, "grey") for r in rows], capsize=2,
            error_kw={"elinewidth": 0.8})
    ax.set_yticks(y, [r.variant for r in rows], fontsize=8)
    chance = ax.axvline(doc.chance, color="black", linestyle=":", linewidth=1, label=f"chance {doc.chance:.2f}")
    handles = [Patch(color=c, label=k) for k, c in _COLORS.items() if any(r.scoring == k for r in rows)]
    default = doc.metric(doc.straight_up) if doc.straight_up else None
    if default is not None:
        d = default.accuracy.value
        handles.append(ax.axvline(d, color="green", linestyle="--", linewidth=1, label=f"default {d:.2f}"))
    handles.append(chance)
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (95% bootstrap CI over questions)")
    ax.set_title(title, fontsize=10)
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    save_png(fig, path)


# --------------------------------------------------------------------------- summary


def _opt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def summarize(out_dir: str | Path) -> str:
    """The per-variant table sorted by accuracy and the summary lines, from DIR/results.json."""
    doc = EvalResult.read(Path(out_dir) / RESULTS_NAME)
    h = doc.header
    lines = [f"{h.model.name} ({h.model.weight_hash}) on {h.task.name}:{h.task.split}, "
             f"{doc.n_questions} questions, {len(doc.metrics)} metrics -> {Path(out_dir)}"]
    w = max(12, *(len(r.variant) for r in doc.metrics))
    lines.append(f"{'variant':<{w}}  {'scoring':<11} {'acc':>6}  {'95% CI':<15} {'dev':>6} {'test':>6}")
    for r in doc.metrics:
        a = r.accuracy
        ci = f"[{a.lo:.3f}, {a.hi:.3f}]" if np.isfinite(a.lo) else "-"
        lines.append(f"{r.variant:<{w}}  {r.scoring:<11} {a.value:>6.3f}  {ci:<15} "
                     f"{_opt(r.dev_acc):>6} {_opt(r.test_acc):>6}")
    d = doc.metric(doc.straight_up) if doc.straight_up else None
    lines.append(f"chance {doc.chance:.3f}; straight-up prompt (default): "
                 + (format_estimate(d.accuracy) if d else "not run"))
    sp = doc.spread.all
    lines.append(f"spread over {sp.n_variants} metrics: max - min = {sp.max:.3f} - {sp.min:.3f} = "
                 f"{sp.spread:.3f} (std {sp.std:.3f})"
                 + (f"; lettered only: {doc.spread.lettered.spread:.3f}" if doc.spread.lettered else ""))
    ag = doc.agreement
    lines.append(f"agreement across metrics per question: mean {ag.mean:.3f}, unanimous {ag.unanimous_fraction:.3f}; "
                 f"some metric correct (oracle) {ag.oracle_any_correct:.3f}")
    mv = doc.majority_vote
    text = f"majority vote over {mv.n_variants} metrics: {format_estimate(mv.accuracy)}"
    if mv.diff_vs_default is not None:
        text += f" vs default {mv.default_accuracy:.3f} (diff {format_estimate(mv.diff_vs_default)})"
    if mv.lettered_only:
        text += f"; lettered only ({mv.lettered_only.n_variants}): {format_estimate(mv.lettered_only.accuracy)}"
    lines.append(text)
    hb = doc.honest_best
    lines.append(f"honest best: '{hb.chosen}' chosen on {hb.n_dev} dev questions (dev {hb.dev_accuracy:.3f}), "
                 f"test {format_estimate(hb.test_accuracy)} on {hb.n_test}; default on test {_opt(hb.default_test_accuracy)}")
    lines.append(f"naive max on test: '{hb.naive_max_variant}' {hb.naive_max_test:.3f} "
                 f"(inflation over the honest choice {hb.inflation:+.3f})")
    nm = hb.max_excess_null
    if nm:
        lines.append(f"naive max - mean over metrics on test: {nm.observed:+.3f}; by chance alone (metrics "
                     f"interchangeable per question) {nm.null_mean:+.3f} (95th pct {nm.null_q95:+.3f}, "
                     f"p {nm.p_value:.3g})")
    forced = [r.variant for r in doc.metrics if r.scoring == scoring.COT_FORCED]
    for name in [STRAIGHT_UP, *forced]:
        if name in doc.symbol_bias:
            b = doc.symbol_bias[name]
            dist = "/".join(f"{x:.2f}" for x in b.pred_dist), "/".join(f"{x:.2f}" for x in b.gold_dist)
            lines.append(f"symbol bias of {name}: predicted {dist[0]} vs gold {dist[1]} "
                         f"(TV {b.tv_distance:.3f}, chi2 p {b.chi2_p:.2g})")
    cot = doc.chain_of_thought
    for v, c in cot.variants.items():
        lines.append(f"chain of thought '{v}': answer found in {c.answer_found:.0%} of {c.n} "
                     f"(symbol {c.by_method['symbol']}, option text {c.by_method['option_text']}); stops "
                     + ", ".join(f"{k} {n}" for k, n in c.stops.items())
                     + f"; mean {c.mean_new_tokens:.0f} new tokens (max {cot.max_new_tokens})")
    if not cot.run:
        lines.append(f"chain of thought not run: {cot.why}")
    if doc.dropped:
        lines.append("dropped: " + "; ".join(f"{k} ({v})" for k, v in doc.dropped.items()))
    return "\n".join(lines)
