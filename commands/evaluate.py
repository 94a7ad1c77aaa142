"""Prompt-variant evaluation and the honest best elicited score (`python cli.py eval`).

One run writes one directory:

- ``activations.h5``: the capture store (`hooks.capture.capture`) with every variant as rows; residual streams
  only with ``--resid`` (so probes can be trained on one variant and tested on another).
- ``results.json``: config, provenance, per-variant accuracies with bootstrap CIs over questions, spread,
  per-question agreement, majority vote vs the straight-up prompt, answer-symbol bias of lettered variants,
  and the best variant chosen on dev questions and scored on test questions beside the naive max.
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
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import ExecutionOptions, ModelOptions, OutputOptions, TaskOptions, opt, pick
from core.io import save_png, write_csv, write_json
from core.provenance import config_hash, stamp, to_jsonable
from core.rundir import results_to_reuse, run_directory
from eval import scoring, tasks, variants
from eval.metrics import STRAIGHT_UP, evaluate_predictions, score_generations
from hooks import generate as gen
from hooks.capture import CaptureConfig, capture, is_current
from hooks.models import LoadedModel, load_model
from hooks.store import Store, store_checksum

log = logging.getLogger(__name__)

DEFAULT_VARIANTS = "default,numbers,lower,paren,wrap,rotate:1,shuffle:0,praise,sys_assistant,chat,shots:3,option"
STORE_NAME, RESULTS_NAME, CSV_NAME, PNG_NAME = "activations.h5", "results.json", "variants.csv", "variants.png"
GEN_NAME = "generations.jsonl"
COT_CHOICES = ("auto", "on", "off")
EXTENDS = ("variants", "cot", "max_new_tokens")  # rerunning with other variants keeps the finished rows
SCHEMA = "gaplens.eval/1"
CSV_FIELDS = ("variant", "scoring", "accuracy", "ci_lo", "ci_hi", "n", "dev_acc", "test_acc")


@dataclass(frozen=True)
class Config(ModelOptions, TaskOptions, ExecutionOptions, OutputOptions):
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
    """The output directory: `cfg.out`, else runs/eval-<model>-<task> with unsafe characters replaced."""
    if cfg.out:
        return Path(cfg.out)
    model = Path(cfg.model).name if Path(cfg.model).exists() else cfg.model
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{model}-{cfg.task}").strip("-.")
    return Path("runs") / f"eval-{safe}"


def _validate(cfg: Config) -> list[str]:
    """The variant names the run will ask for (chain of thought resolved for this machine); ValueError naming
    the flag on bad input."""
    try:
        names = variants.variant_set(cfg.variants)
    except ValueError as exc:
        raise ValueError(f"--variants: {exc}") from None
    if cfg.cot == "on" or (cfg.cot == "auto" and torch.cuda.is_available()):
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
    whose config matches (without loading the model). `model` skips loading (tests, notebooks).
    """
    _validate(cfg)  # bad flags fail before anything is written
    with run_directory(out_dir(cfg), "eval"):
        return _run(cfg, model=model)


def _run(cfg: Config, *, model: LoadedModel | None = None) -> Path:
    """Generate the chain-of-thought variants into DIR/generations.jsonl, capture every variant into
    DIR/activations.h5 (chain of thought as its forced answer), score them all, write results.json and
    variants.csv/png.

    Reuses DIR/results.json when it was written by the same config; reuses a finished store or generations file
    whose config matches (without loading the model). `model` skips loading (tests, notebooks).
    """
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
    if kept is not None and all((out / f).exists() for f in (CSV_NAME, PNG_NAME)):
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
            model = load_model(cfg.model, seed=cfg.seed, dtype=cfg.dtype, device=cfg.device)
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
    cot: dict[str, Any] = {"run": False, "why": _cot_off_reason(cfg)}
    if gens:
        _, rows = gen.read_generations(gen_path)
        preds, cot = score_generations(rows)
        cot.update(run=True, max_new_tokens=cfg.max_new_tokens, file=GEN_NAME)
        parts.append(preds)
    res = evaluate_predictions(scoring.concat(parts), seed=cfg.seed, dev_fraction=cfg.dev_fraction,
                               n_boot=cfg.n_boot)
    prov_keys = ("model", "model_source", "model_path", "weight_hash", "random_init", "architecture", "task",
                 "split", "seed", "n_questions")
    doc = {
        "schema": SCHEMA,
        "config": to_jsonable(cfg),
        "config_hash": chash,
        "inputs": _inputs(store_path, gen_path if gens else None),
        "provenance": stamp(**{k: prov_src.get(k) for k in prov_keys}, variants=kept,
                            capture_package_version=prov_src.get("package_version"),
                            capture_created_utc=prov_src.get("created_utc")),
        "store": STORE_NAME,
        "variants_requested": names,
        "variants_run": kept,
        "dropped": dropped,
        "chain_of_thought": cot,
        **res,
    }
    _write_csv(out / CSV_NAME, res["metrics"])
    _write_png(out / PNG_NAME, res, title=f"{prov_src.get('model')} on {prov_src.get('task')} "
               f"({res['n_questions']} questions)")
    write_json(results, doc)
    return out


def _cot_off_reason(cfg: Config) -> str:
    if cfg.cot == "off":
        return "--cot off"
    if cfg.cot == "auto":
        return "--cot auto and no CUDA device (chain of thought is off by default on CPU; --cot on forces it)"
    return "no generation variant could run"


# --------------------------------------------------------------------------- files


def _write_csv(path: Path, metrics: list[dict[str, Any]]) -> None:
    write_csv(path, CSV_FIELDS, [["" if r[k] is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k])
                                  for k in CSV_FIELDS] for r in metrics])


_COLORS = {scoring.LETTER: "#4c72b0", scoring.OPTION: "#dd8452", scoring.OPTION_NORM: "#c44e52",
           scoring.COT: "#55a868", scoring.COT_FORCED: "#8172b3"}


def _write_png(path: Path, res: dict[str, Any], *, title: str) -> None:
    """Horizontal bars sorted by accuracy with CI whiskers, lines at chance and at the default prompt."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = list(reversed(res["metrics"]))  # best at the top
    fig = Figure(figsize=(7.5, 1.2 + 0.28 * len(rows)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))
    acc = np.array([r["accuracy"] for r in rows])
    lo = np.array([r["ci_lo"] for r in rows], dtype=float)
    hi = np.array([r["ci_hi"] for r in rows], dtype=float)
    err = np.nan_to_num(np.stack([acc - lo, hi - acc]).clip(min=0))
    ax.barh(y, acc, xerr=err, color=[_COLORS.get(r["scoring"], "grey") for r in rows], capsize=2,
            error_kw={"elinewidth": 0.8})
    ax.set_yticks(y, [r["variant"] for r in rows], fontsize=8)
    chance = ax.axvline(res["chance"], color="black", linestyle=":", linewidth=1, label=f"chance {res['chance']:.2f}")
    handles = [Patch(color=c, label=k) for k, c in _COLORS.items() if any(r["scoring"] == k for r in rows)]
    if res["default"] is not None:
        d = res["default"]["accuracy"]
        handles.append(ax.axvline(d, color="green", linestyle="--", linewidth=1, label=f"default {d:.2f}"))
    handles.append(chance)
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (95% bootstrap CI over questions)")
    ax.set_title(title, fontsize=10)
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    save_png(fig, path)


# --------------------------------------------------------------------------- summary


def _fmt(e: dict[str, Any] | None) -> str:
    if e is None:
        return "n/a"
    return f"{e['value']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]"


def _opt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def summarize(out_dir: str | Path) -> str:
    """The per-variant table sorted by accuracy and the summary lines, from DIR/results.json."""
    doc = json.loads((Path(out_dir) / RESULTS_NAME).read_text())
    prov = doc["provenance"]
    lines = [f"{prov['model']} ({prov['weight_hash']}) on {prov['task']}:{prov['split']}, "
             f"{doc['n_questions']} questions, {len(doc['metrics'])} metrics -> {Path(out_dir)}"]
    w = max(12, *(len(r["variant"]) for r in doc["metrics"]))
    lines.append(f"{'variant':<{w}}  {'scoring':<11} {'acc':>6}  {'95% CI':<15} {'dev':>6} {'test':>6}")
    for r in doc["metrics"]:
        ci = f"[{r['ci_lo']:.3f}, {r['ci_hi']:.3f}]" if r["ci_lo"] is not None else "-"
        lines.append(f"{r['variant']:<{w}}  {r['scoring']:<11} {r['accuracy']:>6.3f}  {ci:<15} "
                     f"{_opt(r['dev_acc']):>6} {_opt(r['test_acc']):>6}")
    d = doc["default"]
    lines.append(f"chance {doc['chance']:.3f}; straight-up prompt (default): "
                 + (f"{d['accuracy']:.3f} [{d['ci_lo']:.3f}, {d['ci_hi']:.3f}]" if d else "not run"))
    sp = doc["spread"]["all"]
    lines.append(f"spread over {sp['n_variants']} metrics: max - min = {sp['max']:.3f} - {sp['min']:.3f} = "
                 f"{sp['spread']:.3f} (std {sp['std']:.3f})"
                 + (f"; lettered only: {doc['spread']['lettered']['spread']:.3f}" if doc["spread"]["lettered"] else ""))
    ag = doc["agreement"]
    lines.append(f"agreement across metrics per question: mean {ag['mean']:.3f}, unanimous {ag['unanimous_fraction']:.3f}; "
                 f"some metric correct (oracle) {ag['oracle_any_correct']:.3f}")
    mv = doc["majority_vote"]
    text = f"majority vote over {mv['n_variants']} metrics: {_fmt(mv['accuracy'])}"
    if mv["diff_vs_default"] is not None:
        text += f" vs default {mv['default_accuracy']:.3f} (diff {_fmt(mv['diff_vs_default'])})"
    if mv["lettered_only"]:
        text += f"; lettered only ({mv['lettered_only']['n_variants']}): {_fmt(mv['lettered_only']['accuracy'])}"
    lines.append(text)
    hb = doc["honest_best"]
    lines.append(f"honest best: '{hb['chosen']}' chosen on {hb['n_dev']} dev questions (dev {hb['dev_accuracy']:.3f}), "
                 f"test {_fmt(hb['test_accuracy'])} on {hb['n_test']}; default on test {_opt(hb['default_test_accuracy'])}")
    lines.append(f"naive max on test: '{hb['naive_max_variant']}' {hb['naive_max_test']:.3f} "
                 f"(inflation over the honest choice {hb['inflation']:+.3f})")
    nm = hb.get("max_excess_null")
    if nm:
        lines.append(f"naive max - mean over metrics on test: {nm['observed']:+.3f}; by chance alone (metrics "
                     f"interchangeable per question) {nm['null_mean']:+.3f} (95th pct {nm['null_q95']:+.3f}, "
                     f"p {nm['p_value']:.3g})")
    forced = [r["variant"] for r in doc["metrics"] if r["scoring"] == scoring.COT_FORCED]
    for name in [STRAIGHT_UP, *forced]:
        if name in doc["symbol_bias"]:
            b = doc["symbol_bias"][name]
            dist = "/".join(f"{x:.2f}" for x in b["pred_dist"]), "/".join(f"{x:.2f}" for x in b["gold_dist"])
            lines.append(f"symbol bias of {name}: predicted {dist[0]} vs gold {dist[1]} "
                         f"(TV {b['tv_distance']:.3f}, chi2 p {b['chi2_p']:.2g})")
    cot = doc["chain_of_thought"]
    for v, c in (cot.get("variants") or {}).items():
        lines.append(f"chain of thought '{v}': answer found in {c['answer_found']:.0%} of {c['n']} "
                     f"(symbol {c['by_method']['symbol']}, option text {c['by_method']['option_text']}); stops "
                     + ", ".join(f"{k} {n}" for k, n in c["stops"].items())
                     + f"; mean {c['mean_new_tokens']:.0f} new tokens (max {cot['max_new_tokens']})")
    if not cot.get("run"):
        lines.append(f"chain of thought not run: {cot['why']}")
    if doc["dropped"]:
        lines.append("dropped: " + "; ".join(f"{k} ({v})" for k, v in doc["dropped"].items()))
    return "\n".join(lines)
