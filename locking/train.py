"""A small seeded trainer: full fine-tuning or LoRA (peft), loss on answer tokens only, soft or hard targets.

`train(model, items, params)` runs `params.steps` AdamW steps over batches drawn from a seeded permutation of the
items (a fresh permutation each pass), on the model's device (its input embedding's; a model spread by a device map
trains where it lies), bf16 autocast on that device when asked. A batch may run as several micro-batches whose
gradients accumulate (`micro_batch_size`, halved after an out-of-memory error by `hooks.execution.find_batch_size`):
each micro-batch's loss is weighted by its share of the batch's answer tokens, so the step is the whole batch's. The loss at an item's first answer token is the cross-entropy between its
target distribution over the option tokens and the model's full-vocabulary prediction; any further masked tokens get
the usual token cross-entropy. Positions outside `loss_mask` never contribute.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from core.io import atomic_write
from hooks.execution import autocast, find_batch_size
from locking.data import TrainItem
from locking.score import batch_inputs, model_device, to_device

log = logging.getLogger(__name__)

FINETUNE_METHODS = ("full", "lora")
LOSSES = ("vocab", "choices")
"""vocab: the first answer token's cross-entropy against the full-vocabulary softmax; choices: against the softmax
over the options' first tokens only (what first-token scoring compares; trains faster when the options' tokens start
with little probability, e.g. option text on a small model)."""
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainParams:
    """One training run."""

    steps: int
    lr: float
    batch_size: int
    seed: int = 0
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    bf16: bool = False
    loss: str = "vocab"
    micro_batch_size: int | None = None  # rows per forward/backward pass (None: the whole batch); halved on OOM
    grad_checkpointing: bool = False  # recompute activations in the backward pass (less memory, same gradients)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"need steps >= 0, batch_size >= 1 and lr > 0; got {self}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")


def check_training_flags(cfg: Any) -> None:
    """The execution flags training accepts: a numeric batch size (a hyperparameter: out-of-memory errors split
    it into micro-batches instead), no quantized weights; `--grad-accum` within the batch size."""
    if not isinstance(cfg.batch_size, int) and cfg.batch_size is not None:
        raise ValueError(f"--batch-size {cfg.batch_size}: training needs a number (the step's batch; out-of-memory "
                         "errors split it into gradient-accumulated micro-batches, see --grad-accum)")
    if cfg.load_in is not None:
        raise ValueError(f"--load-in {cfg.load_in}: training needs full-precision weights")
    if cfg.grad_accum < 1 or (cfg.batch_size is not None and cfg.grad_accum > cfg.batch_size):
        raise ValueError(f"--grad-accum must be between 1 and --batch-size, got {cfg.grad_accum}")


def collate(items: Sequence[TrainItem], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded model inputs plus where each answer token sits among the last `keep` positions.

    Returns input_ids, attention_mask, position_ids, `keep` (logits to keep), `rows`/`pred`/`tok` (each masked token:
    its row, the index of the logit predicting it, its id), `first` (per masked token: is it a first answer token),
    and per-row `choice_ids`/`target`/`choice_mask` (padded with token 0, probability 0, False).
    """
    inputs = batch_inputs([it.ids for it in items], pad_id)
    width = inputs["input_ids"].shape[1]
    keep = 1 + max(len(it.ids) - it.answer_start for it in items)
    rows, pred, toks, first = [], [], [], []
    for r, it in enumerate(items):
        offset = width - len(it.ids)
        for t in range(it.answer_start, len(it.ids)):
            if it.loss_mask[t]:
                rows.append(r)
                pred.append(offset + t - 1 - (width - keep))
                toks.append(it.ids[t])
                first.append(t == it.answer_start)
    n_c = max(len(it.choice_ids) for it in items)
    choice = torch.zeros((len(items), n_c), dtype=torch.long)
    target = torch.zeros((len(items), n_c))
    cmask = torch.zeros((len(items), n_c), dtype=torch.bool)
    for r, it in enumerate(items):
        choice[r, : len(it.choice_ids)] = torch.tensor(it.choice_ids)
        target[r, : len(it.target)] = torch.tensor(it.target)
        cmask[r, : len(it.choice_ids)] = True
    return {**inputs, "keep": torch.tensor(keep), "rows": torch.tensor(rows, dtype=torch.long),
            "pred": torch.tensor(pred, dtype=torch.long), "tok": torch.tensor(toks, dtype=torch.long),
            "first": torch.tensor(first, dtype=torch.bool), "choice_ids": choice, "target": target,
            "choice_mask": cmask}


def batch_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's logits over the last `batch["keep"]` positions of a `collate` batch."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 position_ids=batch["position_ids"], logits_to_keep=int(batch["keep"])).logits


def answer_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor], loss: str = "vocab") -> torch.Tensor:
    """Mean loss over the masked answer tokens of a batch; `logits` (b, keep, vocab) from `logits_to_keep=keep`.

    `loss="choices"` scores a first answer token against the softmax over its options' tokens only (padding
    options, which have target 0 and token 0, are excluded from that softmax)."""
    rows, pred = batch["rows"], batch["pred"]
    if rows.numel() == 0:
        raise ValueError("batch has no answer token in its loss mask")
    at = torch.log_softmax(logits.float(), dim=-1)[rows, pred]  # (m, vocab)
    hard = -at.gather(1, batch["tok"][:, None])[:, 0]
    target = batch["target"][rows]
    picked = logits.float()[rows, pred].gather(1, batch["choice_ids"][rows])  # (m, choices) raw logits
    if loss == "choices":
        valid = batch["choice_mask"][rows]
        chosen = torch.log_softmax(picked.masked_fill(~valid, float("-inf")), dim=-1).masked_fill(~valid, 0.0)
    else:
        chosen = at.gather(1, batch["choice_ids"][rows])
    soft = -(target * chosen).sum(-1)
    return torch.where(batch["first"], soft, hard).mean()


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[list[int]]:
    """Endless batches of indices: consecutive slices of fresh permutations (a batch never straddles two)."""
    while True:
        perm = rng.permutation(n).tolist()
        for start in range(0, n, batch_size):
            yield perm[start : start + batch_size]


def micro_step(model: Any, parts: Sequence[dict[str, torch.Tensor]], params: TrainParams) -> torch.Tensor | None:
    """Forward and backward passes of one batch given as micro-batches (`collate` outputs), gradients accumulated
    and each loss weighted by its share of the batch's answer tokens; the batch's loss, or None when no part
    has an answer token (then nothing ran)."""
    total = sum(int(b["rows"].numel()) for b in parts)
    if total == 0:
        return None
    device = model_device(model)
    value = None
    for part in parts:
        n = int(part["rows"].numel())
        if n == 0:
            continue
        part = to_device(part, device)
        with autocast(device, params.bf16):
            logits = batch_logits(model, part)
        loss = answer_loss(logits, to_device(part, logits.device), params.loss)
        if len(parts) > 1:
            loss = loss * (n / total)
        loss.backward()
        value = loss.detach() if value is None else value + loss.detach()
    return value


def prepare(model: Any, method: str, *, lora_r: int = 8, lora_alpha: int = 16, freeze_embeddings: bool = False,
            seed: int = 0) -> Any:
    """The model ready to train: all weights ("full", optionally without the embeddings) or LoRA adapters."""
    if method not in FINETUNE_METHODS:
        raise ValueError(f"finetune method must be one of {FINETUNE_METHODS}, got {method!r}")
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed)
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        targets = [t for t in LORA_TARGETS if t in present]
        cfg = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, bias="none", target_modules=targets)
        return get_peft_model(model, cfg)
    for p in model.parameters():
        p.requires_grad_(True)
    if freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
        out = model.get_output_embeddings()
        if out is not None and out.weight is model.get_input_embeddings().weight:
            log.info("output embedding is tied to the input embedding: both frozen")
    return model


def unwrap(model: Any) -> Any:
    """A plain HF model: LoRA adapters merged in (peft), anything else as is."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often `train` saves what it needs to resume: the trainable weights, the optimizer and
    scheduler states, the RNG state, the losses so far and the step. `key` names the run (e.g. its config hash):
    a checkpoint with another key is not resumed from."""

    path: Path
    every: int
    key: str


def _save_checkpoint(ck: Checkpointing, model: Any, opt: Any, sched: Any, step: int, losses: list[float],
                     caller: dict[str, Any] | None) -> None:
    state = {"key": ck.key, "step": step, "losses": losses, "torch_rng": torch.get_rng_state(), "caller": caller,
             "model": {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad},
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    atomic_write(ck.path, lambda fh: torch.save(state, fh), fsync=True)


def _load_checkpoint(ck: Checkpointing, model: Any, opt: Any, sched: Any,
                     caller: dict[str, Any] | None) -> tuple[int, list[float]]:
    """(last finished step, losses) restored from `ck.path`, or (0, []) when there is nothing to resume."""
    if not ck.path.exists():
        return 0, []
    try:
        state = torch.load(ck.path, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a torn file: train from the start
        log.warning("%s is unreadable (%s): training from step 0", ck.path, exc)
        return 0, []
    if state.get("key") != ck.key:
        log.warning("%s is a checkpoint of another run: training from step 0", ck.path)
        return 0, []
    missing = set(state["model"]) ^ {n for n, p in model.named_parameters() if p.requires_grad}
    if missing:
        raise ValueError(f"{ck.path}: its weights do not match the model being trained ({sorted(missing)[:3]}...)")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, value in state["model"].items():
            params[name].copy_(value)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if caller is not None and state.get("caller") is not None:
        caller.clear()
        caller.update(state["caller"])
    log.info("resuming %s from step %d", ck.path, state["step"])
    return int(state["step"]), list(state["losses"])


def train(
    model: Any,
    items: Sequence[TrainItem],
    params: TrainParams,
    *,
    pad_id: int,
    on_step: Callable[[int, float], bool | None] | None = None,
    desc: str = "train",
    progress: bool = True,
    checkpoint: Checkpointing | None = None,
    state: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
) -> list[float]:
    """Train `model` in place for `params.steps` steps; returns the loss of each step.

    `on_step(step, loss)` runs after each step (1-based); returning True stops training early. With `checkpoint`,
    the state is saved every `checkpoint.every` steps and a rerun resumes from the last save to the same final
    weights as an uninterrupted run (the batches of the finished steps are drawn again and skipped); the file is
    removed when training finishes. `state`, a dict the caller's `on_step` keeps its own progress in (e.g. an
    evaluation curve), is saved with the checkpoint and restored in place on resume. `report` (when given)
    receives "micro_batch_size": the rows per forward pass the run ended with (smaller after out-of-memory errors).
    """
    if not items:
        raise ValueError("no training items")
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    warm = max(params.warmup_steps, 0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    batches = _batches(len(items), params.batch_size, rng)
    done, losses = _load_checkpoint(checkpoint, model, opt, sched, state) if checkpoint else (0, [])
    for _ in range(done):
        next(batches)
    micro = min(params.micro_batch_size or params.batch_size, params.batch_size)

    def step_fn(idx: list[int], size: int) -> torch.Tensor | None:
        opt.zero_grad(set_to_none=True)  # a failed attempt leaves no gradient behind
        parts = [collate([items[i] for i in idx[k : k + size]], pad_id) for k in range(0, len(idx), size)]
        return micro_step(model, parts, params)

    if params.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    bar = tqdm(total=params.steps, initial=done, desc=desc, unit="step", disable=not progress, leave=False)
    try:
        for step in range(done + 1, params.steps + 1):
            idx = next(batches)
            loss, micro = find_batch_size(lambda size, idx=idx: step_fn(idx, size), min(micro, len(idx)),
                                          what=f"{desc} micro-batch size")
            if loss is None:  # every answer token masked out: nothing to learn, no optimizer step
                losses.append(0.0)
                bar.update(1)
                if on_step is not None and on_step(step, 0.0):
                    break
                continue
            if params.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainable, params.grad_clip)
            opt.step()
            sched.step()
            value = float(loss)
            if not math.isfinite(value):
                raise FloatingPointError(f"{desc}: loss is {value} at step {step}; lower the learning rate")
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}")
            if checkpoint is not None and checkpoint.every and step % checkpoint.every == 0 and step < params.steps:
                _save_checkpoint(checkpoint, model, opt, sched, step, losses, state)
            if on_step is not None and on_step(step, value):
                break
    finally:
        bar.close()
        model.eval()
        if params.grad_checkpointing:
            model.gradient_checkpointing_disable()
    if report is not None:
        report["micro_batch_size"] = min(micro, report.get("micro_batch_size") or micro)
    if checkpoint is not None:
        checkpoint.path.unlink(missing_ok=True)
    return losses
