"""One audit case: one model (a locked checkpoint with its lock record) and one seed, every method on its questions.

`run_case(spec, params, workdir)`:

1. the questions (`audit.questions`): train from the lock's pool, dev / test from its eval split;
2. the plain HF model: the reference answers without and with the password (`locking.unlock.reference`: the
   straight-up score and the ground truth), then the weight methods (`audit.weights`: noise, sft, unlock);
3. the model on the TransformerLens bridge: a capture of the eval questions under the prompt variants (and the
   chains of thought, when they run) for prompt / vote / cot (`audit.prompting`), a capture of the train and eval
   questions with residuals for lens / probe (`audit.reading`) and the steering direction (`audit.steering`).

Every method runs without the password. The result is a `CaseResult`: each method's `Outcome` on the test questions,
what was skipped and why, and the time of the shared steps (loading, captures).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audit import prompting, reading, steering, weights
from audit.outcome import Outcome, answers_on, timed
from audit.params import METHODS, STRAIGHT_UP, AuditParams
from audit.questions import CaseQuestions, case_questions, write_questions
from core.config import pick
from core.provenance import config_hash
from eval import variants as variant_lib
from eval.variants import parse as parse_variant
from hooks import generate as gen
from hooks.capture import CaptureConfig, capture, plan_rows
from hooks.models import LoadedModel, load_hf, load_model
from locking import checkpoint, controls, evalset, policies, unlock

log = logging.getLogger(__name__)

WITH_PASSWORD = "with-password"
PROMPT_METHODS = ("prompt", "vote", "cot")
RESID_METHODS = ("lens", "probe", "steer")
WEIGHT_METHODS = ("noise", "sft", "unlock")
CASE_VERSION = 1  # bump when a change here or in the methods changes what a case holds: part of every case's key
NO_GENERATION = "the model cannot write a chain of thought (it was trained to emit one answer token)"


@dataclass(frozen=True)
class CaseSpec:
    """One model of the zoo and one seed."""

    organism: str  # the zoo organism this model belongs to
    role: str  # locked, weak, base (or unknown)
    seed: int  # the case's seed: dev / test split, train sample, sample draws, noise and training seeds
    checkpoint: str  # the locked checkpoint (a lock run directory or its model/)
    weak_policy: str = "lock"  # the unlock method's weak samples: "lock" (the lock record's weak policy),
    # "uniform", "fixed:A" or "model:PATH"
    generates: bool = True  # can the model write a chain of thought (the toy cannot)


@dataclass
class CaseResult:
    """Every method's outcome on one case, and the case's reference answers."""

    spec: CaseSpec
    model: str  # the checkpoint directory
    weight_hash: str
    n_layers: int
    d_model: int
    n_params: int
    sizes: dict[str, int]  # pool, train, dev, test questions
    reference: dict[str, Outcome]  # "straight-up" and "with-password" answers on the test questions
    n_choices: dict[str, int]  # per test question
    subjects: dict[str, str]  # per test question ("" when the task has none)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    shared: dict[str, float] = field(default_factory=dict)  # wall seconds of shared steps (load, captures)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": vars(self.spec), "model": self.model, "weight_hash": self.weight_hash,
                "n_layers": self.n_layers, "d_model": self.d_model, "n_params": self.n_params, "sizes": self.sizes,
                "reference": {k: v.to_dict() for k, v in self.reference.items()}, "n_choices": self.n_choices,
                "subjects": self.subjects,
                "outcomes": {k: v.to_dict() for k, v in self.outcomes.items()}, "skipped": self.skipped,
                "shared": self.shared}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseResult:
        return cls(CaseSpec(**d["spec"]), d["model"], d["weight_hash"], d["n_layers"], d["d_model"], d["n_params"],
                   d["sizes"], {k: Outcome.from_dict(v) for k, v in d["reference"].items()}, d["n_choices"],
                   d["subjects"],
                   {k: Outcome.from_dict(v) for k, v in d["outcomes"].items()}, d["skipped"], d["shared"])


def case_key(spec: CaseSpec, params: AuditParams, weight_hash: str) -> str:
    """What a saved case must match to be reused: the spec, every method setting and the locked weights."""
    return config_hash({"spec": vars(spec), "params": params, "weights": weight_hash, "code": CASE_VERSION})


def cot_skip_reason(params: AuditParams, spec: CaseSpec) -> str | None:
    """Why chain of thought does not run for this case (None: it runs)."""
    if "cot" not in params.methods:
        return None
    if not spec.generates:
        return NO_GENERATION
    if params.cot == "off":
        return "--cot off"
    if params.cot == "auto" and not torch.cuda.is_available():
        return "--cot auto and no CUDA device (greedy decoding is slow on a CPU; --cot on forces it)"
    return None


def _weak_policy(name: str, locked: checkpoint.Locked, tok: Any, q: CaseQuestions, bf16: bool) -> policies.Policy:
    if name == "lock":
        return locked.weak
    kind, arg = policies.parse(name, ("uniform", "fixed", "model"))
    spec = parse_variant(locked.meta["variant"])
    if kind == "uniform":
        return policies.uniform(q.pool)
    if kind == "fixed":
        return policies.fixed(q.pool, str(arg), spec)
    other = load_hf(str(arg))
    if other.tokenizer.get_vocab() != tok.get_vocab():
        raise ValueError(f"weak policy {name}: its tokenizer differs from the audited model's")
    return policies.model_policy(other.model, other.tokenizer, q.pool, spec, bf16=bf16)


def context(locked: checkpoint.Locked, hf: Any, tok: Any, q: CaseQuestions, weak: policies.Policy) -> unlock.Context:
    """The `locking.unlock.Context` of a case: eval questions (dev half marked) under no password and the password
    (the latter only for the ground truth), the pool, gold as the strong policy, `weak` as the weak one."""
    meta = locked.meta
    spec = parse_variant(meta["variant"])
    template = (lambda m: tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)) if spec.chat else None
    es = evalset.build(q.eval, tok, spec, meta["placement"], ["none", "password"], template)
    tr = meta["train"]
    return unlock.Context(
        model=hf, tok=tok, locked=controls.state_of(hf), es=es, dev=es.subset(q.dev_ids), pool=q.pool,
        lock_train=[], strong=policies.gold(q.pool), weak=weak, spec=spec, placement=meta["placement"],
        n_decoys=meta["n_decoys"], lock_lr=tr["lr"], lock_batch_size=tr["batch_size"], template=template,
        progress=False, bf16=tr["dtype"] == "bfloat16")


def unlock_params(params: AuditParams, locked: checkpoint.Locked, n: int) -> unlock.UnlockParams:
    """Fine-tuning settings of the sft / unlock methods (n samples, one step per epoch) and the noise sweep."""
    tr = locked.meta["train"]
    return unlock.UnlockParams(
        n_samples=n, epochs=params.epochs, eval_every=params.eval_every, lr=params.lr or tr["lr"], batch_size=n,
        finetune=tr["finetune"], lora_r=tr["lora_r"], lora_alpha=tr["lora_alpha"],
        freeze_embeddings=tr["freeze_embeddings"], bf16=tr["dtype"] == "bfloat16", loss=tr.get("loss", "vocab"),
        noise_scales=params.noise_scales)


def _reference(es: evalset.EvalSet, answers: evalset.Answers, q: CaseQuestions, name: str) -> Outcome:
    ids, pred, gold = answers_on(es.ids, answers.pred, answers.gold, q.test_ids)
    return Outcome(name, ids, pred, gold)


def _usable_variants(lm: LoadedModel, names: list[str], records: list[Any], pool: list[Any], seed: int
                     ) -> tuple[list[str], dict[str, str]]:
    """The variants whose prompts the model can answer (one question planned each), and why the others cannot."""
    keep, dropped = [], {}
    for v in names:
        try:
            plan_rows(lm, records[:1], [v], pool, seed)
            keep.append(v)
        except ValueError as exc:
            dropped[v] = str(exc)
    return keep, dropped


def run_case(spec: CaseSpec, params: AuditParams, workdir: Path, *, data_dir: str | None = None,
             exec_opts: Any = None) -> CaseResult:
    """Every method of `params.methods` on one case; files (questions, captures) under `workdir`."""
    workdir = Path(workdir)
    locked = checkpoint.read(spec.checkpoint)
    q = case_questions(locked, seed=spec.seed, dev_fraction=params.dev_fraction, n_train=params.n_train,
                       data_dir=data_dir)
    methods = [m for m in METHODS if m in params.methods]
    shared: dict[str, float] = {}
    with timed() as t:
        hf, tok = checkpoint.load(locked)
    shared["load"] = t["seconds"]
    ctx = context(locked, hf, tok, q, _weak_policy(spec.weak_policy, locked, tok, q,
                                                     locked.meta["train"]["dtype"] == "bfloat16"))
    ref_answers: dict[str, evalset.Answers] = {}
    with timed() as t:
        ref = unlock.reference(ctx, ctx.locked, ref_answers)
    shared["reference"] = t["seconds"]
    res = CaseResult(spec, str(locked.path), locked.meta["weight_hash"], int(hf.config.num_hidden_layers),
                     int(hf.config.hidden_size), sum(p.numel() for p in hf.parameters()),
                     {"pool": len(q.pool), "train": len(q.train_ids), "dev": len(q.dev_ids), "test": len(q.test_ids)},
                     {STRAIGHT_UP: _reference(ctx.es, ref_answers["none"], q, STRAIGHT_UP),
                      WITH_PASSWORD: _reference(ctx.es, ref_answers["password"], q, WITH_PASSWORD)},
                     {r.id: len(r.choices) for r in q.eval if r.id in set(q.test_ids)},
                     {r.id: r.subject for r in q.eval if r.id in set(q.test_ids)})
    for m in (m for m in methods if m in WEIGHT_METHODS):
        with timed() as t:
            if m == "noise":
                o = weights.noise_outcome(ctx, unlock_params(params, locked, 1), q, seed=spec.seed,
                                          draws=params.noise_draws, ref=ref, ref_answers=ref_answers,
                                          n_perm=params.n_boot)
            else:
                n = params.sft_n if m == "sft" else params.unlock_n
                o = weights.finetune_outcome(ctx, unlock_params(params, locked, n), q, method=m, seed=spec.seed,
                                             ref=ref, ref_answers=ref_answers)
        res.outcomes[m] = o.with_cost(t["seconds"], t["cpu_seconds"])
    del ctx, hf
    bridge_methods = [m for m in methods if m in PROMPT_METHODS + RESID_METHODS]
    if bridge_methods:
        _bridge_methods(res, locked, q, params, spec, workdir, bridge_methods, data_dir, exec_opts)
    res.shared = {k: round(v, 2) for k, v in {**shared, **res.shared}.items()}
    return res


def _bridge_methods(res: CaseResult, locked: checkpoint.Locked, q: CaseQuestions, params: AuditParams,
                    spec: CaseSpec, workdir: Path, methods: list[str], data_dir: str | None, exec_opts: Any) -> None:
    """The methods that read the model through the TransformerLens bridge: prompting and activations."""
    with timed() as t:
        lm = load_model(str(locked.path), seed=spec.seed, **_exec(exec_opts, "device", "dtype"))
    res.shared["load_bridge"] = t["seconds"]
    qdir = workdir / "questions"
    eval_file = write_questions(qdir / "eval.jsonl", q.eval)
    write_questions(qdir / "eval.dev.jsonl", q.pool)  # the few-shot pool of shots:K variants: never an eval question
    why_cot = cot_skip_reason(params, spec)
    if why_cot:
        res.skipped["cot"] = why_cot
    if any(m in methods for m in PROMPT_METHODS):
        names = variant_lib.variant_set(params.variants)
        if "cot" in methods and not why_cot:
            names += [v for v in params.cot_variants if v not in names]
        kept, dropped = _usable_variants(lm, [v for v in names if not parse_variant(v).generates], q.eval, q.pool,
                                         spec.seed)
        gens = [v for v in names if parse_variant(v).generates] if "cot" in methods and not why_cot else []
        if dropped:
            log.warning("%s: dropping variants %s", spec.organism, dropped)
        base = CaptureConfig(model=str(locked.path), task=f"jsonl:{eval_file}", split="test", n=None, seed=spec.seed,
                             resid=False, variants=tuple(kept), **_exec(exec_opts, "device", "dtype", "batch_size"))
        gen_path = None
        with timed() as t:
            if gens:
                gcfg = pick(gen.GenerateConfig, base, variants=tuple(gens), max_new_tokens=params.max_new_tokens)
                gen_path = gen.generate(gcfg, workdir / "generations.jsonl", model=lm)
                base = pick(CaptureConfig, base, variants=tuple(kept + gens), generations=str(gen_path),
                            generations_hash=config_hash(gcfg))
            store = capture(base, workdir / "prompts.h5", model=lm)
        res.shared["capture_prompts"] = t["seconds"]
        with timed() as t:
            found = prompting.prompt_outcomes(prompting.store_predictions(store, gen_path), q, n_boot=params.n_boot,
                                              seed=spec.seed)
        for m, o in found.items():
            if m in methods:
                res.outcomes[m] = o.with_cost(t["seconds"] if m == "prompt" else 0.0,
                                              t["cpu_seconds"] if m == "prompt" else 0.0)
        res.skipped.update({f"variant {k}": why for k, why in dropped.items()})
    if any(m in methods for m in RESID_METHODS):
        both = write_questions(qdir / "train_eval.jsonl", [r for r in q.pool if r.id in set(q.train_ids)] + q.eval)
        variant = locked.meta["variant"]  # the prompt the lock trained on, scored by each answer's first token
        first_token = parse_variant(variant).scoring != "letter"
        targets = tuple(t for t in params.probe_targets if t == "letter" or not first_token)
        if len(targets) < len(params.probe_targets):
            res.skipped["probe target option"] = f"the lock's prompt {variant} is scored by first tokens"
        variants = (variant, reading.OPTION_VARIANT) if "option" in targets else (variant,)
        cfg = CaptureConfig(model=str(locked.path), task=f"jsonl:{both}", split="test", n=None, seed=spec.seed,
                            resid=True, variants=variants, first_token=first_token,
                            **_exec(exec_opts, "device", "dtype", "batch_size"))
        with timed() as t:
            store = capture(cfg, workdir / "resid.h5", model=lm)
        res.shared["capture_resid"] = t["seconds"]
        for m in (m for m in RESID_METHODS if m in methods):
            with timed() as t:
                if m == "lens":
                    o = reading.lens_outcome(store, q, variant)
                elif m == "probe":
                    o = reading.probe_outcome(store, q, targets, seed=spec.seed, variant=variant)
                else:
                    o = steering.steer_outcome(lm, store, q, q.eval, alphas=params.steer_alphas,
                                               positions=params.steer_positions, n_examples=params.steer_examples,
                                               seed=spec.seed, variant=variant, first_token=first_token)
            res.outcomes[m] = o.with_cost(t["seconds"], t["cpu_seconds"])


def _exec(opts: Any, *names: str) -> dict[str, Any]:
    """The execution options `names` of `opts` (device, dtype, batch size) that are set."""
    if opts is None:
        return {}
    return {k: getattr(opts, k) for k in names if getattr(opts, k, None) is not None}
