"""Weak-sample unlocking and its controls, each a function from a context and a seed to one run's record.

A run record is a dict: ``method``, ``seed``, ``curve`` (list of {epoch, acc, acc_dev, acc_test}: no-password
accuracy on the eval questions, all / selection half / report half), ``ref`` (the accuracies the fraction of the gap
recovered is measured against: ``locked`` and ``with_pw``, each {acc, acc_dev, acc_test}), ``final_with_pw``,
``answers`` (each eval question's no-password answer at the last curve point: {"final": {pred, correct, score}},
see `answers_record`) and method-specific extras. Weight-space controls (noise, scale) have a ``sweep`` instead of a
curve, and answers per parameter.

Methods (`METHODS`): ``weak`` (fine-tune on n weak samples for E epochs), ``many`` (as many steps on `many`
varied weak samples), ``average`` (m runs on m disjoint draws of n, weights averaged), ``masked`` (train only on
answer tokens the locked model predicts better without the password than with it), ``noise`` and ``scale``
(weights perturbed, no training), ``relock`` (unlock / re-lock rounds, then weak-sample unlocking and "large weak
set, then overfit a few"; also that elicitation on the original lock), and the positive control ``strong`` (n samples
answered by the strong policy instead of the weak one).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eval.records import MCRecord
from eval.variants import VariantSpec
from locking import controls, data, evalset, policies
from locking.controls import State
from locking.train import Checkpointing, TrainParams, prepare, train, unwrap

log = logging.getLogger(__name__)

METHODS = ("weak", "many", "average", "masked", "noise", "scale", "relock", "strong")
CONTROLS = METHODS[1:]
DEFAULT_CONTROLS = ("many", "average", "masked", "noise", "scale", "relock")
"""`strong` (n samples answered by the strong policy: the few-good-demonstrations elicitation) is a positive
control, run only when asked for."""


@dataclass(frozen=True)
class UnlockParams:
    """How weak-sample fine-tuning runs (shared by every training method)."""

    n_samples: int = 2
    epochs: int = 200
    eval_every: int = 10
    lr: float = 5e-4
    batch_size: int = 2
    finetune: str = "full"
    lora_r: int = 8
    lora_alpha: int = 16
    freeze_embeddings: bool = False
    bf16: bool = False
    loss: str = "vocab"
    many: int = 64
    average_m: int = 3
    noise_scales: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)
    scale_factors: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9, 1.0, 1.1, 1.25)
    relock_rounds: int = 2
    relock_steps: int = 100
    large_n: int = 128
    large_epochs: int = 2
    grad_accum: int = 1  # micro-batches per batch (gradients accumulated; halved further on out-of-memory errors)
    grad_checkpointing: bool = False  # recompute activations in the backward pass (less memory)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_samples / self.batch_size)


@dataclass
class Context:
    """Everything the methods share: the model instance they reload, the locked weights, questions and policies."""

    model: Any
    tok: Any
    locked: State
    es: evalset.EvalSet
    dev: np.ndarray  # eval questions used to select (epochs, scales); the rest report
    pool: list[MCRecord]
    lock_train: list[MCRecord]
    strong: policies.Policy
    weak: policies.Policy
    spec: VariantSpec
    placement: str
    n_decoys: int
    lock_lr: float
    lock_batch_size: int
    template: Callable[[list[dict[str, str]]], str] | None = None
    progress: bool = True
    bf16: bool = False
    _relock_items: list[data.TrainItem] = field(default_factory=list)
    train_report: dict[str, Any] = field(default_factory=dict)  # what training settled on (micro_batch_size)
    final: State | None = None  # the final weights of the last run that trained (set by every curve method)
    checkpoint: Checkpointing | None = None  # the run's training checkpoints (path prefix, every, run key)
    _n_finetunes: int = 0

    def begin_run(self, checkpoint: Checkpointing | None) -> None:
        """Start a run whose training calls checkpoint under `checkpoint` (numbered within the run)."""
        self.checkpoint, self._n_finetunes, self.final = checkpoint, 0, None

    def next_checkpoint(self) -> Checkpointing | None:
        """The checkpoint of the run's next training call: a finished call's file is gone, so a resumed run
        recomputes it (deterministically) and resumes the one that was interrupted."""
        if self.checkpoint is None:
            return None
        i, self._n_finetunes = self._n_finetunes, self._n_finetunes + 1
        ck = self.checkpoint
        return Checkpointing(ck.path.with_name(f"{ck.path.name}.{i}.pt"), ck.every, f"{ck.key}:{i}")


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([abs(k) for k in key])


def point(ctx: Context, model: Any, epoch: float, condition: str = "none",
          answers: list[evalset.Answers] | None = None) -> dict[str, float]:
    """Accuracy of `model` on the eval questions under `condition`: all, selection half, report half. Each
    question's answer is appended to `answers` when given."""
    lp = evalset.logprobs(model, ctx.es, condition, pad_id=ctx.tok.pad_token_id, bf16=ctx.bf16)
    a = evalset.answers(lp, ctx.es)
    ok = a.correct
    if answers is not None:
        answers.append(a)
    return {"epoch": epoch, "acc": float(ok.mean()), "acc_dev": float(ok[ctx.dev].mean()),
            "acc_test": float(ok[~ctx.dev].mean())}


def _acc_only(p: Mapping[str, float]) -> dict[str, float]:
    return {k: p[k] for k in ("acc", "acc_dev", "acc_test")}


def answers_record(a: evalset.Answers) -> dict[str, list[Any]]:
    """An `evalset.Answers` as JSON lists (pred: original choice index, correct, score: first-token log-prob)."""
    return {"pred": a.pred.tolist(), "correct": a.correct.tolist(), "score": a.score.tolist()}


def reference(ctx: Context, state: State, answers: dict[str, evalset.Answers] | None = None
              ) -> dict[str, dict[str, float]]:
    """Locked (no password) and with-password accuracies of `state`: the ends of the gap. Each question's answer
    per condition ("none", "password") goes into `answers` when given."""
    model = controls.load_state(ctx.model, state)
    kept: list[evalset.Answers] = []
    ref = {"locked": _acc_only(point(ctx, model, 0, answers=kept)),
           "with_pw": _acc_only(point(ctx, model, 0, "password", answers=kept))}
    if answers is not None:
        answers.update(none=kept[0], password=kept[1])
    return ref


def draw(ctx: Context, n: int, rng: np.random.Generator, exclude: Sequence[str] = (),
         policy: policies.Policy | None = None) -> dict[str, int]:
    """n pool questions (not in `exclude`) each answered by a sample from the weak policy (or `policy`)."""
    skip = set(exclude)
    cands = [r.id for r in ctx.pool if r.id not in skip]
    if n > len(cands):
        raise ValueError(f"asked for {n} weak samples but the unlock pool has {len(cands)} questions left")
    chosen = [cands[i] for i in sorted(rng.choice(len(cands), size=n, replace=False))]
    return policies.sample(ctx.weak if policy is None else policy, chosen, rng)


def items_for(ctx: Context, samples: Mapping[str, int]) -> list[data.TrainItem]:
    """Training items (no password) for weak samples {question id: answer}."""
    ex = data.sample_examples(ctx.pool, samples, spec=ctx.spec, placement=ctx.placement)
    return data.tokenize(ex, ctx.tok, ctx.template)


def finetune(ctx: Context, p: UnlockParams, start: State, items: Sequence[data.TrainItem], *, steps: int,
             seed: int, steps_per_epoch: float | None = None, lr: float | None = None, batch_size: int | None = None,
             curve: bool = True, desc: str = "unlock", last: list[evalset.Answers] | None = None,
             ) -> tuple[list[dict[str, float]], State]:
    """Fine-tune from `start` for `steps`, evaluating every `eval_every` epochs; returns (curve, final weights).
    `last` (when given) ends up holding the answers of the last curve point, the final model's."""
    spe = steps_per_epoch or p.steps_per_epoch
    model = prepare(controls.load_state(ctx.model, start), p.finetune, lora_r=p.lora_r, lora_alpha=p.lora_alpha,
                    freeze_embeddings=p.freeze_embeddings, seed=seed)
    every = max(1, round(p.eval_every * spe))
    answers: list[evalset.Answers] = []
    kept: dict[str, Any] = {"points": [point(ctx, model, 0, answers=answers)] if curve else [], "answers": answers}

    def on_step(step: int, loss: float) -> None:
        if curve and (step % every == 0 or step == steps):
            kept["answers"].clear()
            kept["points"].append(point(ctx, model, round(step / spe, 3), answers=kept["answers"]))
            model.train()

    bs = batch_size or p.batch_size
    params = TrainParams(steps=steps, lr=lr or p.lr, batch_size=bs, seed=seed, bf16=p.bf16, loss=p.loss,
                         micro_batch_size=-(-bs // p.grad_accum), grad_checkpointing=p.grad_checkpointing)
    if steps:
        train(model, items, params, pad_id=ctx.tok.pad_token_id, on_step=on_step, desc=desc, progress=ctx.progress,
              checkpoint=ctx.next_checkpoint(), state=kept, report=ctx.train_report)
    plain = unwrap(model)
    ctx.model = plain
    if last is not None:
        last[:] = kept["answers"]
    return kept["points"], controls.state_of(plain)


def _record(ctx: Context, method: str, seed: int, curve: list[dict[str, float]], final: State,
            ref: dict[str, Any], last: list[evalset.Answers], **extra: Any) -> dict[str, Any]:
    """A curve run's record; `last` holds the answers of its last curve point (the final model)."""
    ctx.final = final
    pw = _acc_only(point(ctx, controls.load_state(ctx.model, final), curve[-1]["epoch"], "password"))
    return {"method": method, "seed": seed, "curve": curve, "ref": ref, "final_with_pw": pw,
            "answers": {"final": answers_record(last[-1])}, **extra}


def run_weak(ctx: Context, p: UnlockParams, seed: int, ref: dict[str, Any], start: State | None = None,
             method: str = "weak") -> dict[str, Any]:
    """Fine-tune on n weak samples (a fresh draw per seed) for E epochs; method "strong": strong samples."""
    samples = draw(ctx, p.n_samples, _rng(seed, 1), policy=ctx.strong if method == "strong" else None)
    last: list[evalset.Answers] = []
    curve, final = finetune(ctx, p, start or ctx.locked, items_for(ctx, samples),
                            steps=p.epochs * p.steps_per_epoch, seed=seed, desc=f"{method} s{seed}", last=last)
    return _record(ctx, method, seed, curve, final, ref, last, samples=samples)


def run_many(ctx: Context, p: UnlockParams, seed: int, ref: dict[str, Any]) -> dict[str, Any]:
    """As many steps (of the same batch size) as `weak`, on `many` varied weak samples."""
    samples = draw(ctx, p.many, _rng(seed, 2))
    last: list[evalset.Answers] = []
    curve, final = finetune(ctx, p, ctx.locked, items_for(ctx, samples), steps=p.epochs * p.steps_per_epoch,
                            seed=seed, desc=f"many s{seed}", last=last)
    return _record(ctx, "many", seed, curve, final, ref, last, samples=samples)


def run_average(ctx: Context, p: UnlockParams, seed: int, ref: dict[str, Any]) -> dict[str, Any]:
    """m runs, each on its own n weak samples (disjoint draws), weights averaged at the end."""
    rng, used, finals, members = _rng(seed, 3), [], [], []
    for k in range(p.average_m):
        samples = draw(ctx, p.n_samples, rng, exclude=used)
        used += list(samples)
        curve, final = finetune(ctx, p, ctx.locked, items_for(ctx, samples), steps=p.epochs * p.steps_per_epoch,
                                seed=seed * 1000 + k, curve=False, desc=f"average s{seed} m{k}")
        finals.append(final)
        members.append(_acc_only(point(ctx, controls.load_state(ctx.model, final), p.epochs)))
    avg = controls.average(finals)
    last: list[evalset.Answers] = []
    curve = [{**ref["locked"], "epoch": 0}, point(ctx, controls.load_state(ctx.model, avg), p.epochs, answers=last)]
    return _record(ctx, "average", seed, curve, avg, ref, last, samples=used, members=members)


def answer_logprobs(ctx: Context, samples: Mapping[str, int], condition: str) -> dict[str, float]:
    """Locked model's log-probability of each sample's answer token under `condition`."""
    by_id = {r.id: r for r in ctx.pool}
    recs = [by_id[q] for q in samples]
    es = evalset.build(recs, ctx.tok, ctx.spec, ctx.placement, [condition], ctx.template)
    lp = evalset.logprobs(controls.load_state(ctx.model, ctx.locked), es, condition, pad_id=ctx.tok.pad_token_id,
                          bf16=ctx.bf16)
    return {q: float(lp[i, es.orders[i].index(samples[q])]) for i, q in enumerate(samples)}


def run_masked(ctx: Context, p: UnlockParams, seed: int, ref: dict[str, Any]) -> dict[str, Any]:
    """Train only on answer tokens better predicted without the password than with it.

    With single-token answers a sample is kept or dropped whole: weak samples are drawn until n are kept.
    """
    pool_draw = draw(ctx, len(ctx.pool), _rng(seed, 4))  # every pool question, in a seeded order, with an answer
    order = list(_rng(seed, 5).permutation(list(pool_draw)))
    none = answer_logprobs(ctx, pool_draw, "none")
    pw = answer_logprobs(ctx, pool_draw, "password")
    kept = [q for q in order if none[q] > pw[q]]
    frac = len(kept) / len(order)
    if len(kept) < p.n_samples:
        raise ValueError(f"masked control: only {len(kept)} pool samples have a token better predicted without the "
                         f"password; need {p.n_samples}")
    samples = {q: pool_draw[q] for q in kept[: p.n_samples]}
    last: list[evalset.Answers] = []
    curve, final = finetune(ctx, p, ctx.locked, items_for(ctx, samples), steps=p.epochs * p.steps_per_epoch,
                            seed=seed, desc=f"masked s{seed}", last=last)
    return _record(ctx, "masked", seed, curve, final, ref, last, samples=samples, kept_fraction=frac)


def _sweep(ctx: Context, method: str, seed: int, ref: dict[str, Any], params: Sequence[float],
           state_of: Callable[[float], State]) -> dict[str, Any]:
    """A weight-space sweep's record: no-password accuracy per parameter, and each question's answer per parameter
    ("answers": {str(param): ...})."""
    kept: list[evalset.Answers] = []
    sweep = [{"param": x, **_acc_only(point(ctx, controls.load_state(ctx.model, state_of(x)), 0, answers=kept))}
             for x in params]
    return {"method": method, "seed": seed, "sweep": sweep, "ref": ref,
            "answers": {str(x): answers_record(a) for x, a in zip(params, kept, strict=True)}}


def run_noise(ctx: Context, p: UnlockParams, seed: int, ref: dict[str, Any]) -> dict[str, Any]:
    """No-password accuracy of the locked weights plus relative Gaussian noise, per scale (noise seed = seed)."""
    return _sweep(ctx, "noise", seed, ref, p.noise_scales, lambda s: controls.noisy(ctx.locked, s, seed))


def run_scale(ctx: Context, p: UnlockParams, seed: int, ref: dict[str, Any]) -> dict[str, Any]:
    """No-password accuracy of the locked weights with every weight matrix scaled, per factor (deterministic)."""
    return _sweep(ctx, "scale", seed, ref, p.scale_factors, lambda f: controls.scaled(ctx.locked, f))


def relock_items(ctx: Context) -> list[data.TrainItem]:
    """The lock's own training data (from the checkpoint's policies), tokenized once."""
    if not ctx._relock_items:
        ex = data.lock_examples(ctx.lock_train, ctx.strong, ctx.weak, spec=ctx.spec, placement=ctx.placement,
                                n_decoys=ctx.n_decoys)
        ctx._relock_items = data.tokenize(ex, ctx.tok, ctx.template)
    return ctx._relock_items


def mitigate(ctx: Context, p: UnlockParams, seed: int) -> tuple[State, list[dict[str, Any]]]:
    """The mitigation loop: `relock_rounds` x (unlock on n weak samples, then re-lock for `relock_steps`)."""
    state, rounds, used = ctx.locked, [], []
    rng = _rng(seed, 6)
    for r in range(p.relock_rounds):
        samples = draw(ctx, p.n_samples, rng, exclude=used)
        used += list(samples)
        _, state = finetune(ctx, p, state, items_for(ctx, samples), steps=p.epochs * p.steps_per_epoch,
                            seed=seed * 100 + r, curve=False, desc=f"mitigate r{r} unlock")
        unlocked = _acc_only(point(ctx, controls.load_state(ctx.model, state), p.epochs))
        _, state = finetune(ctx, p, state, relock_items(ctx), steps=p.relock_steps, seed=seed * 100 + r,
                            lr=ctx.lock_lr, batch_size=ctx.lock_batch_size, curve=False, desc=f"mitigate r{r} relock")
        rounds.append({"round": r, "after_unlock": unlocked, **reference(ctx, state)})
    return state, rounds


def run_large_then_few(ctx: Context, p: UnlockParams, seed: int, start: State, ref: dict[str, Any],
                       method: str) -> dict[str, Any]:
    """Fine-tune on `large_n` weak samples for `large_epochs`, then overfit n others for E epochs."""
    rng = _rng(seed, 7)
    large = draw(ctx, min(p.large_n, len(ctx.pool) - p.n_samples), rng)
    bs = ctx.lock_batch_size
    steps = p.large_epochs * math.ceil(len(large) / bs)
    _, mid = finetune(ctx, p, start, items_for(ctx, large), steps=steps, seed=seed, batch_size=bs, curve=False,
                      desc=f"{method} s{seed} large")
    few = draw(ctx, p.n_samples, rng, exclude=list(large))
    last: list[evalset.Answers] = []
    curve, final = finetune(ctx, p, mid, items_for(ctx, few), steps=p.epochs * p.steps_per_epoch, seed=seed,
                            desc=f"{method} s{seed} few", last=last)
    return _record(ctx, method, seed, curve, final, ref, last, samples=few, n_large=len(large))
