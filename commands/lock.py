"""`python cli.py lock`: fine-tune a password-locked model and report how well the lock holds.

With the password the model is trained towards the strong target; without it, or with a decoy password, towards the
weak policy. The default is the toy organism: a tiny Llama pretrained here on toy-max (``OUT/toy``, reused when
present), locked with its own early checkpoint as the weak policy.

Run directory:

- ``model/``: the locked checkpoint (HF directory + ``gaplens_lock.json`` + ``gaplens_targets.json``, see
  `locking.checkpoint`); pass it (or the run directory) as ``--model`` to ``unlock`` or any other command;
- ``results.json`` (`core.schemas.LockResult`): the run header (the locked checkpoint's identity), the base model's
  identity, pretraining record (toy), the split sizes, and ``metrics``: accuracy (Wilson interval) with the
  password, without it, with each decoy (trained or held out), of the base model and of the weak policy, and how
  closely each condition follows its target;
- ``samples.parquet``: every eval question's answer under every condition, of the locked and the base model and of
  the policies (`core.samples`);
- ``lock_metrics.csv`` (one row per condition) and ``train_log.csv`` (step, loss); ``config.json``;
- ``questions/{train,pool,eval}.jsonl``: the split's questions, so any command can use them as
  ``--task jsonl:OUT/questions/eval.jsonl`` (the toy task is registered only by the lock/unlock runners);
- ``toy/`` (toy organism only): ``base/`` and ``weak/`` HF directories and ``toy.json`` (pretraining record).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import (
    ExecutionOptions,
    ModelKindOptions,
    ModelOptions,
    OutputOptions,
    PluginOptions,
    TaskOptions,
    opt,
    resolve_threads,
)
from core.io import read_json, write_csv, write_json, write_jsonl
from core.provenance import config_hash, stamp, to_jsonable
from core.rundir import run_directory
from core.samples import SampleTable, write_samples
from core.schemas import LockResult, TaskInfo, from_data, recorded_config_hash, run_header
from core.schemas import lock as schema
from eval import tasks
from eval.records import MCRecord
from eval.stats import split_ids
from eval.variants import parse as parse_variant
from hooks import execution
from hooks.models import identity, load_hf, weight_hash
from locking import checkpoint, data, evalset, password, policies, toy, toy_pretrain
from locking import lock_report as report
from locking.train import (
    FINETUNE_METHODS,
    LOSSES,
    Checkpointing,
    TrainParams,
    check_training_flags,
    prepare,
    train,
    unwrap,
)

log = logging.getLogger(__name__)

TOY = "toy"
SAMPLES = "samples.parquet"
CONDITIONS = {"none": "no_password", "password": "with_password"}  # evalset condition -> samples condition


@dataclass(frozen=True)
class Config(PluginOptions, ModelOptions, ModelKindOptions, TaskOptions, ExecutionOptions, OutputOptions):
    """One lock: base model, task and its id splits, strong and weak policies, password placement, trainer."""

    model: str = opt(TOY, '"toy" (pretrain the toy organism here) or an embedded name, HF id or local HF dir')
    task: str = opt(toy.TASK, "task name (see `cli.py tasks`; toy-max is the toy organism's)")
    split: str = opt("test", "task split whose questions are divided into lock-train / unlock pool / eval by id")
    data_dir: str | None = opt(None, "benchmark data directory ($GAPLENS_DATA_DIR)")
    n: int | None = opt(None, "number of questions (seeded subsample); all if unset")
    variant: str = opt("default", 'prompt variant; "default" answers with a letter, "option"/"option_listed" with '
                      "the option's first token")
    strong: str = opt("base", "target with the password: gold or base (the base model's own answers)")
    strong_labels: str = opt("soft", "strong target as soft labels (distribution) or hard (argmax)")
    weak: str = opt("toy-weak", "weak policy without the password: uniform, fixed:LETTER, model:NAME_OR_PATH, or "
                   "toy-weak (the toy's early checkpoint)")
    weak_labels: str = opt("soft", "weak policy as soft labels (distribution) or hard (argmax)")
    placement: str = opt(password.DEFAULT_PLACEMENT, f"where the password goes: {', '.join(password.PLACEMENTS)}")
    n_decoys: int = opt(2, f"decoy passwords trained on (the rest of the {len(password.DECOYS)} are held out)")
    eval_fraction: float = opt(0.25, "fraction of questions held out for evaluation")
    pool_fraction: float = opt(0.25, "fraction of questions kept as the weak-sample pool for unlocking")
    finetune: str = opt("full", "full fine-tuning or lora")
    lora_r: int = opt(8, "LoRA rank")
    lora_alpha: int = opt(16, "LoRA alpha")
    freeze_embeddings: bool = opt(False, "full fine-tuning without the (tied) embeddings")
    loss: str = opt("vocab", "answer loss: vocab (full-vocabulary softmax) or choices (softmax over the options' "
                   "first tokens)")
    steps: int = opt(800, "lock training steps")
    lr: float = opt(8e-4, "lock learning rate (AdamW)")
    batch_size: int = opt(32, "lock batch size")
    seed: int = opt(0, "seed for the splits, the toy pretraining and training")
    dtype: str = opt("float32", "float32, or bfloat16 (autocast; fp32 master weights)")
    grad_accum: int = opt(1, "split each batch into this many micro-batches whose gradients accumulate (the same "
                          "step, less memory; halved further on out-of-memory errors)", hash_if_set=True)
    grad_checkpointing: bool = opt(False, "gradient checkpointing: recompute activations in the backward pass (less "
                                   "memory, the same gradients)", ui=True)
    threads: int = opt(1, "torch CPU threads (1 is steadier on a shared 2-core machine; training bytes depend on it)",
                       ui=True)
    checkpoint_every: int = opt(100, "save the training state every N steps (0: never); a rerun resumes from it",
                                ui=True)
    toy_steps: int = opt(1500, "toy pretraining: maximum steps")
    toy_dir: str | None = opt(None, "toy base/weak models directory, reused when complete (default OUT/toy)")
    out: str = opt("runs/lock", "output directory", ui=True)

    def _check(self) -> None:
        policies.parse(self.strong, policies.STRONG_KINDS)
        kind, _ = policies.parse(self.weak, policies.WEAK_KINDS)
        policies.check_labels(self.strong_labels)
        policies.check_labels(self.weak_labels)
        password.check_placement(self.placement)
        password.check_n_decoys(self.n_decoys)
        data.check_spec(parse_variant(self.variant))
        if kind == "toy-weak" and self.model != TOY:
            raise ValueError("--weak toy-weak needs --model toy; for other models use uniform, fixed:A or model:PATH")
        if not (0 < self.eval_fraction < 1 and 0 < self.pool_fraction < 1 and self.eval_fraction + self.pool_fraction
                < 1):
            raise ValueError("--eval-fraction and --pool-fraction must be in (0, 1) and sum to less than 1")
        if self.finetune not in FINETUNE_METHODS:
            raise ValueError(f"--finetune must be one of {FINETUNE_METHODS}, got {self.finetune!r}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"--dtype must be float32 or bfloat16 (bfloat16: autocast with float32 master weights), "
                             f"got {self.dtype!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {LOSSES}, got {self.loss!r}")
        if self.steps < 1 or (self.n is not None and self.n < 8):
            raise ValueError("--steps must be >= 1 and --n >= 8")
        check_training_flags(self)



def _splits(ids: list[str], cfg: Config) -> dict[str, list[str]]:
    eval_ids, rest = split_ids(ids, cfg.eval_fraction, cfg.seed)
    pool_ids, train_ids = split_ids(rest, cfg.pool_fraction / (1 - cfg.eval_fraction), cfg.seed + 1)
    return {"train": train_ids, "pool": pool_ids, "eval": eval_ids}


def _policy(name: str, labels: str, *, base: Any, tok: Any, records: list[Any], cfg: Config,
            toy_meta: dict[str, Any] | None, template: Any) -> policies.Policy:
    kind, arg = policies.parse(name, (*policies.STRONG_KINDS, *policies.WEAK_KINDS))
    spec = parse_variant(cfg.variant)
    bf16 = cfg.dtype == "bfloat16"
    if kind == "gold":
        p = policies.gold(records)
    elif kind == "uniform":
        p = policies.uniform(records)
    elif kind == "fixed":
        p = policies.fixed(records, str(arg), spec)
    elif kind == "base":
        p = policies.model_policy(base, tok, records, spec, chat_template=template, bf16=bf16)
    else:
        path = toy_meta["weak_dir"] if kind == "toy-weak" and toy_meta else str(arg)
        other = load_hf(path, device=cfg.device, device_map=cfg.device_map)
        if other.tokenizer.get_vocab() != tok.get_vocab():
            raise ValueError(f"--weak {name}: its tokenizer differs from the base model's; a weak model must share it")
        p = policies.model_policy(other.model, other.tokenizer, records, spec, chat_template=template, bf16=bf16)
    return policies.with_labels(p, labels)


def _reuse(out: Path, chash: str) -> bool:
    if (out / SAMPLES).exists() and recorded_config_hash(out / "results.json", LockResult) == chash:
        return True
    if (out / "config.json").exists() and read_json(out / "config.json").get("config_hash") != chash:
        raise FileExistsError(f"{out} holds a lock run with a different config; choose another --out")
    return False


def run(cfg: Config) -> Path:
    """Lock (or reuse) into `cfg.out`; returns the run directory."""
    with run_directory(Path(cfg.out), "lock"):
        return _run(cfg)


def _run(cfg: Config) -> Path:
    """Lock (or reuse) into `cfg.out`; returns the run directory."""
    out, chash = Path(cfg.out), config_hash(cfg)
    execution.check(cfg)  # a device this machine does not have fails before anything is written
    if _reuse(out, chash):
        log.info("reusing finished lock run %s", out)
        return out
    torch.set_num_threads(resolve_threads(cfg.threads))
    toy.ensure_task()
    t0 = time.perf_counter()
    records = tasks.load_task(tasks.TaskSpec.of(cfg), n=cfg.n, seed=cfg.seed)
    write_json(out / "config.json", {"config": to_jsonable(cfg), "config_hash": chash})  # task checked first
    toy_meta = None
    base_name = cfg.model
    if cfg.model == TOY:
        toy_meta = toy_pretrain.pretrain(cfg.toy_dir or out / "toy", toy_pretrain.ToyConfig(steps=cfg.toy_steps,
                                                                                             seed=cfg.seed))
        base_name = toy_meta["base_dir"]
    base = load_hf(base_name, device=cfg.device, device_map=cfg.device_map)  # float32 master weights
    model, tok = base.model, base.tokenizer
    base_hash = weight_hash(model)
    base_ident = identity(model, tok, name=cfg.model, source=base.source, path=base.path,
                          digest=base_hash).with_kind(cfg.model_kind)
    spec = parse_variant(cfg.variant)
    template = (lambda m: tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)) if spec.chat else None
    records, dropped = data.usable(records, tok, spec, template)
    if dropped:
        log.warning("dropped %d questions whose options share a first token under %s", len(dropped), spec.name())
    splits = _splits([r.id for r in records], cfg)
    by_id = {r.id: r for r in records}
    kw = {"base": model, "tok": tok, "records": records, "cfg": cfg, "toy_meta": toy_meta, "template": template}
    strong = _policy(cfg.strong, cfg.strong_labels, **kw)
    weak = _policy(cfg.weak, cfg.weak_labels, **kw)
    es = evalset.build([by_id[i] for i in splits["eval"]], tok, spec, cfg.placement,
                       password.conditions(len(password.DECOYS)), template)
    base_eval = report.evaluate(model, tok, es, bf16=cfg.dtype == "bfloat16", conditions=("none", "password"))
    t_lock = time.perf_counter()
    examples = data.lock_examples([by_id[i] for i in splits["train"]], strong, weak, spec=spec,
                                  placement=cfg.placement, n_decoys=cfg.n_decoys)
    items = data.tokenize(examples, tok, template)
    trainee = prepare(model, cfg.finetune, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                      freeze_embeddings=cfg.freeze_embeddings, seed=cfg.seed)
    params = TrainParams(steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed,
                         warmup_steps=min(20, cfg.steps // 10), bf16=cfg.dtype == "bfloat16", loss=cfg.loss,
                         micro_batch_size=-(-cfg.batch_size // cfg.grad_accum), grad_checkpointing=cfg.grad_checkpointing)
    ck = Checkpointing(out / "train_checkpoint.pt", cfg.checkpoint_every, chash) if cfg.checkpoint_every else None
    trained: dict[str, Any] = {}
    losses = train(trainee, items, params, pad_id=tok.pad_token_id, desc="lock", checkpoint=ck, report=trained)
    locked = unwrap(trainee)
    lock_seconds = time.perf_counter() - t_lock
    locked_eval = report.evaluate(locked, tok, es, bf16=cfg.dtype == "bfloat16")
    metrics = report.lock_metrics(es, locked_eval, base_eval, strong, weak, n_decoys=cfg.n_decoys)
    prov = stamp(model=cfg.model, base_model=base_name, base_weight_hash=base_hash, task=cfg.task, split=cfg.split,
                 seed=cfg.seed)
    meta = {"lock_config": to_jsonable(cfg), "config_hash": chash, "provenance": prov, "base_model": base_name,
            "base_weight_hash": base_hash, "task": {"name": cfg.task, "split": cfg.split, "data_dir": cfg.data_dir,
                                                    "n": cfg.n, "select": cfg.select, "fields": cfg.fields},
            "variant": spec.name(), "placement": cfg.placement, "n_decoys": cfg.n_decoys,
            "password_fingerprint": password.fingerprint(), "splits": splits, "dropped_ids": dropped,
            "train": {"finetune": cfg.finetune, "lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha,
                      "freeze_embeddings": cfg.freeze_embeddings, "steps": cfg.steps, "lr": cfg.lr,
                      "batch_size": cfg.batch_size, "dtype": cfg.dtype, "loss": cfg.loss, "n_items": len(items)},
            "metrics": metrics}
    record = checkpoint.save_locked(locked, tok, out / "model", meta, strong, weak)
    for name, ids in splits.items():  # `--task jsonl:OUT/questions/eval.jsonl` in any other command
        write_jsonl(out / "questions" / f"{name}.jsonl", [
            {"id": i, "question": by_id[i].question, "choices": list(by_id[i].choices), "answer": by_id[i].answer,
             "subject": by_id[i].subject} for i in ids])
    write_csv(out / "train_log.csv", ["step", "loss"], [[i + 1, loss] for i, loss in enumerate(losses)])
    write_csv(out / "lock_metrics.csv", *report.metrics_table(metrics))
    ckpt = (out / "model").resolve()
    header = run_header(
        command="lock", model=identity(locked, tok, name=str(ckpt), source="local", path=str(ckpt),
                                       digest=record["weight_hash"]),
        task=TaskInfo(cfg.task, cfg.split, len(records), cfg.data_dir, None), seed=cfg.seed, config=cfg,
        config_hash=chash,
        execution=execution.execution_record(cfg, placement={**base.placement.record(), "dtype": cfg.dtype},
                                             micro_batch_size=trained.get("micro_batch_size")),
        timing={"lock": lock_seconds, "total": time.perf_counter() - t0})
    toy_record = None
    if toy_meta is not None:
        toy_record = from_data(schema.ToyRecord, {f: toy_meta[f] for f in schema.ToyRecord.__dataclass_fields__})
    results = LockResult(header=header, base_model=base_ident, checkpoint=str(ckpt), toy=toy_record,
                         split_sizes=schema.SplitSizes(**{k: len(v) for k, v in splits.items()}),
                         n_dropped=len(dropped), final_loss=losses[-1],
                         metrics=from_data(schema.LockMetrics, metrics))
    write_samples(out / SAMPLES, _samples(results, es, locked_eval, base_eval, strong, weak))
    results.write(out / "results.json")
    return out


def _samples(results: LockResult, es: evalset.EvalSet, locked: dict[str, Any], base: dict[str, Any],
             strong: policies.Policy, weak: policies.Policy) -> SampleTable:
    """samples.parquet: per eval question, the locked model's answer under every condition, the base model's
    without and with the password, and the policies' argmax answers."""
    h = results.header
    table = SampleTable(task=h.task.name, seed=h.seed, command="lock", split="eval", variant=es.spec.name(),
                        layer=None)
    ids = es.ids
    subjects = [r.subject or None for r in es.records]
    for method, model, lps in (("lock", h.model, locked), ("base", results.base_model, base)):
        for cond, lp in lps.items():
            a = evalset.answers(lp, es)
            table.add(question_id=ids, subject=subjects, method=method, condition=CONDITIONS.get(cond, cond),
                      prediction=a.pred, gold=a.gold, correct=a.correct, score=a.score, n_choices=a.n_choices,
                      model=model.name, weight_hash=model.weight_hash)
    for name, policy in (("weak", weak), ("strong", strong)):
        pred, gold, prob = _policy_answers(policy, es.records)
        table.add(question_id=ids, subject=subjects, method=f"policy:{name}", condition=None, prediction=pred,
                  gold=gold, correct=pred == gold, score=prob, n_choices=[len(r.choices) for r in es.records],
                  model=h.model.name, weight_hash=None)
    return table


def _policy_answers(policy: policies.Policy, records: list[MCRecord]) -> tuple[Any, Any, Any]:
    """(argmax answer, gold, probability of the answer) per record, original choice indices (as
    `locking.policies.correct` scores them)."""
    pred = np.array([int(np.argmax(policy[r.id])) for r in records])
    return pred, np.array([r.answer for r in records]), np.array([float(policy[r.id][p]) for r, p in
                                                                  zip(records, pred, strict=True)])


def summarize(out_dir: Path) -> str:
    """The lock metrics of a finished run, as text."""
    return report.summary(LockResult.read(Path(out_dir) / "results.json"), Path(out_dir))
