"""`python cli.py unlock`: weak-sample unlocking of a locked checkpoint, with controls, over seeds.

Each (method, seed) run is saved as ``runs/{method}-s{seed}.json`` when it finishes and reused when its key (the
method's parameters and the locked weight hash) matches, so an interrupted run resumes where it stopped.

Run directory:

- ``results.json`` (`core.schemas.UnlockResult`): the run header, the locked model's reference accuracies on the
  eval questions (``reference``), and ``methods``: per method the curve (mean and t interval over runs per epoch),
  final accuracy, PGR with its interval, the epoch (or noise scale / weight factor) chosen on the selection half and
  its report-half PGR with the bias of taking the maximum (see `locking.unlock_report`);
- ``samples.parquet``: each eval question's answer from the locked model (without and with the password) and from
  every run's final model (every parameter of a sweep), see `core.samples`;
- ``unlock_curve.csv`` (every evaluated point of every run), ``unlock_curve.png``, ``config.json``, ``runs/``;
- with ``--save-models``: ``models/{method}-s{seed}/``, each run's final model as a HF checkpoint directory (loads
  with `hooks.models.load_model`, so ``cli.py diff --b UNLOCK/models/weak-s0`` works) with ``gaplens_unlock.json``
  (schema ``gaplens.unlock-model/1``: method, seed, run key, weight hash, the locked model and its weight hash,
  provenance). Weight-space sweeps (noise, scale) have no single final model and save none.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import (
    DataOptions,
    ExecutionOptions,
    ModelKindOptions,
    ModelOptions,
    OutputOptions,
    PluginOptions,
    opt,
    resolve_threads,
)
from core.io import read_json, write_csv, write_json
from core.provenance import config_hash, stamp, to_jsonable
from core.rundir import run_directory
from core.samples import SampleTable, write_samples
from core.schemas import TaskInfo, UnlockResult, from_data, run_header
from core.schemas import unlock as schema
from eval import tasks
from eval.stats import split_ids
from eval.variants import parse as parse_variant
from hooks import execution
from hooks.models import identity, save_checkpoint, weight_hash
from locking import checkpoint, controls, evalset, toy, unlock
from locking import unlock_report as report
from locking.train import FINETUNE_METHODS, Checkpointing, check_training_flags
from locking.unlock_plot import plot

log = logging.getLogger(__name__)

SAMPLES = "samples.parquet"
MITIGATED_ANSWERS = "relock-mitigation-answers.json"  # per-question answers of the mitigated model (runs/)
MODEL_SCHEMA = "gaplens.unlock-model/1"
MODEL_META = "gaplens_unlock.json"
RELOCK_METHODS = ("relock-weak", "relock-large", "large")


@dataclass(frozen=True)
class Config(PluginOptions, ModelOptions, ModelKindOptions, DataOptions, ExecutionOptions, OutputOptions):
    """Weak-sample unlocking of one locked checkpoint, the controls, and how many runs."""

    model: str = opt("runs/lock", "locked checkpoint: a lock run directory or its model/ subdirectory")
    data_dir: str | None = opt(None, "benchmark data directory (default: the lock's, else $GAPLENS_DATA_DIR)")
    n_samples: int = opt(2, "weak samples to fine-tune on (drawn from the unlock pool)")
    epochs: int = opt(200, "epochs over the weak samples")
    eval_every: int = opt(10, "epochs between evaluations (no password, held-out eval questions)")
    seeds: int = opt(3, "runs per method; run i uses seed SEED+i for its sample draw and training")
    controls: tuple[str, ...] = opt(unlock.DEFAULT_CONTROLS, f"controls to run, any of: {', '.join(unlock.CONTROLS)} "
                                   "(strong: positive control, n samples from the strong policy)")
    lr: float | None = opt(None, "unlocking learning rate (default: the lock's)")
    batch_size: int | None = opt(None, "unlocking batch size (default: n_samples, one step per epoch)")
    finetune: str | None = opt(None, "full or lora (default: the lock's)")
    lora_r: int = opt(8, "LoRA rank")
    lora_alpha: int = opt(16, "LoRA alpha")
    dtype: str | None = opt(None, "float32 or bfloat16 autocast (default: the lock's)")
    grad_accum: int = opt(1, "split each batch into this many micro-batches whose gradients accumulate (the same "
                          "step, less memory; halved further on out-of-memory errors)", hash_if_set=True)
    grad_checkpointing: bool = opt(False, "gradient checkpointing: recompute activations in the backward pass (less "
                                   "memory, the same gradients)", ui=True)
    many: int = opt(64, "control many: number of varied weak samples (same number of steps)")
    average_m: int = opt(3, "control average: runs whose weights are averaged")
    noise_scales: tuple[float, ...] = opt((0.0, 0.02, 0.05, 0.1, 0.2, 0.3), "control noise: relative noise scales")
    scale_factors: tuple[float, ...] = opt((0.3, 0.5, 0.7, 0.9, 1.0, 1.1, 1.25), "control scale: weight factors")
    relock_rounds: int = opt(2, "control relock: unlock / re-lock rounds")
    relock_steps: int = opt(100, "control relock: lock steps per re-lock")
    large_n: int = opt(128, "control relock: size of the large weak set")
    large_epochs: int = opt(2, "control relock: epochs on the large weak set")
    n_eval: int = opt(400, "eval questions used (seeded subsample of the lock's eval split); 0: all")
    select_fraction: float = opt(0.5, "fraction of eval questions used to choose epochs/scales (reported on the rest)")
    seed: int = opt(0, "first seed")
    threads: int = opt(1, "torch CPU threads (training bytes depend on it)", ui=True)
    progress: bool = opt(True, "progress bars", ui=True)
    checkpoint_every: int = opt(100, "save each run's training state every N steps (0: never); a rerun resumes "
                                "from it", ui=True)
    save_models: bool = opt(False, "save each run's final model as a HF checkpoint in OUT/models/{method}-s{seed}/ "
                                  "(not the noise / scale sweeps)")
    out: str = opt("runs/unlock", "output directory", ui=True)

    def _check(self) -> None:
        bad = [c for c in self.controls if c not in unlock.CONTROLS]
        if bad:
            raise ValueError(f"--controls: unknown {bad}; choose from {', '.join(unlock.CONTROLS)}")
        if self.n_samples < 1 or self.epochs < 1 or self.eval_every < 1 or self.seeds < 1:
            raise ValueError("--n-samples, --epochs, --eval-every and --seeds must be >= 1")
        if self.finetune is not None and self.finetune not in FINETUNE_METHODS:
            raise ValueError(f"--finetune must be one of {FINETUNE_METHODS}")
        if self.n_eval < 0 or self.n_eval == 1:
            raise ValueError("--n-eval must be 0 (all) or at least 2")
        if not 0 < self.select_fraction < 1:
            raise ValueError("--select-fraction must be in (0, 1)")
        check_training_flags(self)
        if self.device_map is not None:
            raise ValueError(f"--device-map {self.device_map}: unlock keeps copies of the weights for its controls; "
                             "it runs on one device (--device)")


def _params(cfg: Config, lock: dict[str, Any]) -> unlock.UnlockParams:
    tr = lock["train"]
    return unlock.UnlockParams(
        n_samples=cfg.n_samples, epochs=cfg.epochs, eval_every=cfg.eval_every, lr=cfg.lr or tr["lr"],
        batch_size=cfg.batch_size or cfg.n_samples, finetune=cfg.finetune or tr["finetune"], lora_r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha, freeze_embeddings=tr["freeze_embeddings"],
        bf16=(cfg.dtype or tr["dtype"]) == "bfloat16", loss=tr.get("loss", "vocab"), many=cfg.many, average_m=cfg.average_m,
        noise_scales=cfg.noise_scales, scale_factors=cfg.scale_factors, relock_rounds=cfg.relock_rounds,
        relock_steps=cfg.relock_steps, large_n=cfg.large_n, large_epochs=cfg.large_epochs, grad_accum=cfg.grad_accum,
        grad_checkpointing=cfg.grad_checkpointing)


_KEYS = {"weak": (), "strong": (), "many": ("many",), "average": ("average_m",), "masked": (), "noise": ("noise_scales",),
         "scale": ("scale_factors",), "relock": ("relock_rounds", "relock_steps", "large_n", "large_epochs")}
_TRAINING = ("n_samples", "epochs", "eval_every", "lr", "batch_size", "finetune", "lora_r", "lora_alpha",
             "freeze_embeddings", "bf16", "loss")


def run_key(method: str, seed: int, p: unlock.UnlockParams, weight_hash: str, cfg: Config) -> str:
    """What a saved run must match to be reused: the method's parameters, the locked weights and the eval set."""
    family = "relock" if method in RELOCK_METHODS else method
    fields = (() if family in ("noise", "scale") else _TRAINING) + _KEYS[family]
    d = asdict(p)
    return config_hash({"method": method, "seed": seed, "weights": weight_hash, "n_eval": cfg.n_eval,
                        "select_fraction": cfg.select_fraction, "select_seed": cfg.seed,
                        **{k: d[k] for k in fields}})


def _context(cfg: Config, locked: checkpoint.Locked, p: unlock.UnlockParams) -> unlock.Context:
    meta = locked.meta
    hf, tok = checkpoint.load(locked)  # checked against its recorded hash on the CPU, then moved
    hf = hf.to(execution.resolve_device(cfg.device))
    toy.ensure_task()
    t = meta["task"]
    fields = t.get("fields")
    spec = tasks.TaskSpec(t["name"], t["split"], cfg.data_dir or t["data_dir"], t.get("select", "hash"),
                          tasks.FieldMap.parse(fields) if fields else None)
    records = tasks.load_task(spec, n=t["n"], seed=meta["lock_config"]["seed"])
    by_id = {r.id: r for r in records}
    missing = [i for ids in meta["splits"].values() for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"{locked.path}: {len(missing)} question ids of the lock's splits are not in task "
                         f"{t['name']} ({missing[0]}, ...); is --data-dir the same?")
    eval_recs = [by_id[i] for i in meta["splits"]["eval"]]
    if cfg.n_eval and cfg.n_eval < len(eval_recs):
        eval_recs = tasks.subsample(eval_recs, cfg.n_eval, seed=cfg.seed)
    spec = parse_variant(meta["variant"])
    template = (lambda m: tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)) if spec.chat else None
    es = evalset.build(eval_recs, tok, spec, meta["placement"], ["none", "password"], template)
    dev_ids, _ = split_ids(es.ids, cfg.select_fraction, cfg.seed)
    tr = meta["train"]
    return unlock.Context(
        model=hf, tok=tok, locked=controls.state_of(hf), es=es, dev=es.subset(dev_ids),
        pool=[by_id[i] for i in meta["splits"]["pool"]], lock_train=[by_id[i] for i in meta["splits"]["train"]],
        strong=locked.strong, weak=locked.weak, spec=spec, placement=meta["placement"], n_decoys=meta["n_decoys"],
        lock_lr=tr["lr"], lock_batch_size=tr["batch_size"], template=template, progress=cfg.progress, bf16=p.bf16)


def _check_pool(cfg: Config, p: unlock.UnlockParams, n_pool: int) -> None:
    """Every requested method must find enough distinct pool questions for its draws."""
    need = {"weak": p.n_samples, "many": p.many, "average": p.average_m * p.n_samples,
            "relock": max(p.relock_rounds * p.n_samples, p.large_n + p.n_samples), "strong": p.n_samples}
    short = {m: k for m, k in need.items() if (m == "weak" or m in cfg.controls) and k > n_pool}
    if short:
        flags = {"many": "--many", "average": "--average-m", "relock": "--large-n", "weak": "--n-samples"}
        raise ValueError(f"the unlock pool has {n_pool} questions but " + ", ".join(
            f"{m} needs {k} (lower {flags.get(m, '--n-samples')})" for m, k in short.items()))


def _model_saved(path: Path, key: str) -> bool:
    meta = path / MODEL_META
    return meta.is_file() and read_json(meta).get("key") == key


def _save_model(ctx: unlock.Context, path: Path, method: str, seed: int, key: str, locked: checkpoint.Locked) -> None:
    """Save the run's final weights (`ctx.final`) as a HF checkpoint with its provenance record (written last)."""
    model = controls.load_state(ctx.model, ctx.final)
    save_checkpoint(model, ctx.tok, path)
    wh = weight_hash(model)
    write_json(path / MODEL_META, {
        "schema": MODEL_SCHEMA, "method": method, "seed": seed, "key": key, "weight_hash": wh,
        "locked_model": str(locked.path), "locked_weight_hash": locked.meta["weight_hash"],
        "base_model": locked.meta["base_model"],
        "provenance": stamp(model=str(path), weight_hash=wh, task=locked.meta["task"]["name"], seed=seed,
                            base_model=locked.meta["base_model"]),
    })


def run(cfg: Config) -> Path:
    """Unlock (resuming finished runs) into `cfg.out`; returns the run directory."""
    with run_directory(Path(cfg.out), "unlock"):
        return _run(cfg)


def _run(cfg: Config) -> Path:
    """Unlock (resuming finished runs) into `cfg.out`; returns the run directory."""
    locked = checkpoint.read(cfg.model)
    p = _params(cfg, locked.meta)
    out = Path(cfg.out)
    execution.check(cfg)  # a device this machine does not have fails before anything loads
    torch.set_num_threads(resolve_threads(cfg.threads))
    t0 = time.perf_counter()
    ctx = _context(cfg, locked, p)  # checks the task and the lock's question ids before anything is written
    _check_pool(cfg, p, len(ctx.pool))
    write_json(out / "config.json", {"config": to_jsonable(cfg), "config_hash": config_hash(cfg),
                                     "params": asdict(p)})
    ident = identity(ctx.model, ctx.tok, name=str(locked.path), source="local", path=str(locked.path),
                     digest=locked.meta["weight_hash"]).with_kind(cfg.model_kind)
    ref_answers: dict[str, Any] = {}
    ref = unlock.reference(ctx, ctx.locked, ref_answers)
    wh = locked.meta["weight_hash"]
    methods = ["weak", *(m for m in unlock.CONTROLS if m in cfg.controls)]
    runs: dict[str, list[dict[str, Any]]] = {}
    mitigated: dict[str, Any] = {}

    def mitigation() -> tuple[Any, dict[str, Any]]:
        if not mitigated:
            state, rounds = unlock.mitigate(ctx, p, cfg.seed)
            answers: dict[str, Any] = {}
            mitigated.update(state=state, ref=unlock.reference(ctx, state, answers), rounds=rounds)
            write_json(out / "runs" / "relock-mitigation.json", {"rounds": rounds, "ref": mitigated["ref"]})
            write_json(out / "runs" / MITIGATED_ANSWERS, {k: unlock.answers_record(a) for k, a in answers.items()})
        return mitigated["state"], mitigated["ref"]

    def one(method: str, seed: int) -> dict[str, Any]:
        if method == "relock-weak":
            state, mref = mitigation()
            return unlock.run_weak(ctx, p, seed, mref, start=state, method=method)
        if method == "relock-large":
            state, mref = mitigation()
            return unlock.run_large_then_few(ctx, p, seed, state, mref, method)
        if method == "large":
            return unlock.run_large_then_few(ctx, p, seed, ctx.locked, ref, method)
        if method == "strong":
            return unlock.run_weak(ctx, p, seed, ref, method="strong")
        fn = {"weak": unlock.run_weak, "many": unlock.run_many, "average": unlock.run_average,
              "masked": unlock.run_masked, "noise": unlock.run_noise, "scale": unlock.run_scale}[method]
        return fn(ctx, p, seed, ref)

    expanded = [m for name in methods for m in (RELOCK_METHODS if name == "relock" else (name,))]
    timings: dict[str, float] = {}
    for method in expanded:
        runs[method] = []
        t_m = time.perf_counter()
        n_runs = 1 if method == "scale" else cfg.seeds  # scaling is deterministic: one run
        for seed in range(cfg.seed, cfg.seed + n_runs):
            path = out / "runs" / f"{method}-s{seed}.json"
            key = run_key(method, seed, p, wh, cfg)
            model_dir = out / "models" / f"{method}-s{seed}"
            want_model = cfg.save_models and method not in ("noise", "scale")
            if (path.exists() and read_json(path).get("key") == key and "answers" in read_json(path)
                    and (not want_model or _model_saved(model_dir, key))):
                runs[method].append(read_json(path))
                continue
            ctx.begin_run(Checkpointing(out / "runs" / f"{method}-s{seed}.ckpt", cfg.checkpoint_every, key)
                          if cfg.checkpoint_every else None)
            record = one(method, seed) | {"key": key}
            if want_model and ctx.final is not None:
                _save_model(ctx, model_dir, method, seed, key, locked)
            write_json(path, record)
            runs[method].append(record)
            log.info("finished %s seed %d", method, seed)
        timings[method] = round(time.perf_counter() - t_m, 1)
    t = locked.meta["task"]
    header = run_header(
        command="unlock", model=ident,
        task=TaskInfo(t["name"], t["split"], len(ctx.es.records), cfg.data_dir or t["data_dir"], None),
        seed=cfg.seed, config=cfg, config_hash=config_hash(cfg),
        execution=execution.execution_record(
            cfg, placement={**execution.Placement.of(ctx.model).record(),
                            "dtype": cfg.dtype or locked.meta["train"]["dtype"]},
            batch_size=p.batch_size, micro_batch_size=ctx.train_report.get("micro_batch_size")),
        timing={**timings, "total": time.perf_counter() - t0})
    mitigation_file = out / "runs" / "relock-mitigation.json"
    results = UnlockResult(
        header=header, params=asdict(p), n_eval=len(ctx.es.records), n_select=int(ctx.dev.sum()),
        n_pool=len(ctx.pool), reference=from_data(schema.Reference, ref),
        weak_policy_acc=locked.meta["metrics"]["weak_policy"]["value"],
        lock_metrics=from_data(schema.LockReference, {k: locked.meta["metrics"][k] for k in
                                                      ("with_password", "no_password", "converged")}),
        mitigation=(from_data(schema.Mitigation, read_json(mitigation_file))
                    if mitigation_file.exists() and "relock" in methods else None),
        methods={m: report.typed(report.summarize_method(r, _question_ref(out, m, ref_answers, ctx.dev)))
                 for m, r in runs.items()})
    write_csv(out / "unlock_curve.csv", report.CSV_HEADER, report.csv_rows(runs))
    plot(results, out / "unlock_curve.png")
    write_samples(out / SAMPLES, _samples(results, ctx.es, ctx.dev, ref_answers, runs))
    results.write(out / "results.json")
    return out


def _question_ref(out: Path, method: str, ref: dict[str, evalset.Answers], dev: Any) -> report.QuestionRef | None:
    """The starting model's per-question answers for `method`: the locked model's, or for the re-locked controls
    the mitigated model's (kept beside the mitigation record; None when that file is missing)."""
    if method in ("relock-weak", "relock-large"):
        path = out / "runs" / MITIGATED_ANSWERS
        if not path.exists():
            return None
        a = read_json(path)
        return report.QuestionRef(np.asarray(a["none"]["correct"], dtype=float),
                                  np.asarray(a["password"]["correct"], dtype=float), np.asarray(dev, dtype=bool))
    return report.QuestionRef(np.asarray(ref["none"].correct, dtype=float),
                              np.asarray(ref["password"].correct, dtype=float), np.asarray(dev, dtype=bool))


def _samples(results: UnlockResult, es: evalset.EvalSet, dev: Any, ref: dict[str, evalset.Answers],
             runs: dict[str, list[dict[str, Any]]]) -> SampleTable:
    """samples.parquet: per eval question, the locked model's answers and each run's final answers."""
    h = results.header
    table = SampleTable(task=h.task.name, seed=h.seed, command="unlock", variant=es.spec.name(), layer=None,
                        model=h.model.name, question_id=es.ids, subject=[r.subject or None for r in es.records],
                        split=["dev" if d else "test" for d in dev.tolist()])
    gold = [list(o)[g] for o, g in zip(es.orders, es.gold.tolist(), strict=True)]
    n_choices = [len(o) for o in es.orders]
    for cond, a in ref.items():
        table.add(method="locked", condition="no_password" if cond == "none" else "with_password",
                  prediction=a.pred, gold=a.gold, correct=a.correct, score=a.score, n_choices=a.n_choices,
                  weight_hash=h.model.weight_hash)
    for method, records in runs.items():
        for r in records:
            for key, a in r["answers"].items():
                name = f"unlock:{method}-s{r['seed']}" if key == "final" else f"unlock:{method}={key}-s{r['seed']}"
                table.add(method=name, condition="no_password", prediction=a["pred"], gold=gold,
                          correct=a["correct"], score=a["score"], n_choices=n_choices, weight_hash=None)
    return table


def summarize(out_dir: Path) -> str:
    """Reference accuracies, the main unlocking curve and each method's PGR, as text."""
    out = Path(out_dir)
    res = UnlockResult.read(out / "results.json")
    lines = [f"unlock run {out}  (locked model {res.header.model.name})"]
    lines += report.text(res.reference, res.n_eval, res.methods)
    weak = res.methods.get("weak")
    if weak:
        lines.append(f"  weak-sample unlocking curve (mean no-password accuracy over {weak.n_runs} runs):")
        lines += report.curve_lines(weak)
    mit = res.mitigation
    if mit:
        last = mit.rounds[-1] if mit.rounds else None
        if last:
            lines.append(f"  after {len(mit.rounds)} unlock/re-lock rounds: no password {last.locked.acc:.3f},"
                         f" with password {last.with_pw.acc:.3f}")
    timing = res.header.timing
    secs = ", ".join(f"{k} {v:.0f}s" for k, v in timing.items() if k != "total")
    lines.append(f"time: {timing['total']:.0f} s ({secs})")
    lines.append(f"wrote {out / 'results.json'}, {out / 'unlock_curve.csv'}, {out / 'unlock_curve.png'}")
    return "\n".join(lines)
