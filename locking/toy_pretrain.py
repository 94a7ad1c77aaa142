"""Pretrain the toy organism from scratch: a tiny Llama on toy-max, plus an early checkpoint as the weak model.

`pretrain(dir, cfg)` trains on the ``pretrain`` split (gold letter answers, no password), evaluating on ``dev`` every
`eval_every` steps. The first checkpoint whose dev accuracy reaches `weak_acc` is saved as ``weak/``; training stops
once dev accuracy reaches `target_acc` (or after `steps`) and the model is saved as ``base/``. Both are HF model
directories with the tokenizer. ``toy.json`` records the config, accuracies, steps and seconds; a rerun with the same
config reuses the directory.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.io import write_json
from core.provenance import config_hash, stamp, to_jsonable
from eval.scoring import masked_argmax
from eval.variants import VariantSpec, render, to_text
from hooks.forward import first_token_ids
from hooks.models import save_checkpoint, weight_hash
from locking import score, toy
from locking.data import TrainItem
from locking.train import TrainParams, train

log = logging.getLogger(__name__)

META = "toy.json"
MAX_ITEMS = 20_000  # pretraining questions tokenized (cycled through if training runs longer)


@dataclass(frozen=True)
class ToyConfig:
    """How the toy base and weak models are pretrained."""

    steps: int = field(default=1500, metadata={"help": "maximum pretraining steps"})
    lr: float = field(default=3e-3, metadata={"help": "pretraining learning rate"})
    batch_size: int = field(default=64, metadata={"help": "pretraining batch size"})
    eval_every: int = field(default=10, metadata={"help": "steps between dev evaluations"})
    target_acc: float = field(default=0.995, metadata={"help": "stop once dev accuracy reaches this"})
    weak_acc: float = field(default=0.45, metadata={"help": "the weak model is the first checkpoint reaching this"})
    seed: int = field(default=0, metadata={"help": "init and data-order seed"})
    d_model: int = field(default=toy.D_MODEL, metadata={"help": "width of the toy Llama", "hash_if_set": True})
    n_layers: int = field(default=toy.N_LAYERS, metadata={"help": "blocks of the toy Llama", "hash_if_set": True})

    def __post_init__(self) -> None:
        toy.model_config(self.d_model, self.n_layers)  # a bad size fails before anything is written


def _items(records: list[Any], tok: Any, n: int) -> list[TrainItem]:
    """Gold-answer training items for the first `n` records, tokenized in one batch call."""
    spec = VariantSpec()
    texts = [to_text(render(spec, r)) for r in records[:n]]
    choice = first_token_ids(tok, texts[0], render(spec, records[0]).continuations)
    out = []
    for r, ids in zip(records[:n], tok(texts).input_ids, strict=True):
        target = tuple(float(i == r.answer) for i in range(len(r.choices)))
        out.append(TrainItem((*ids, choice[r.answer]), (0,) * len(ids) + (1,), len(ids), choice, target, r.id))
    return out


def dev_accuracy(model: Any, tok: Any, encoded: list[score.Encoded], gold: np.ndarray) -> float:
    """Letter accuracy of `model` on pre-encoded dev prompts."""
    lp = score.choice_logprobs(model, encoded, pad_id=tok.pad_token_id, batch_size=256)
    return float((masked_argmax(lp) == gold).mean())


def pretrain(out_dir: str | Path, cfg: ToyConfig, *, progress: bool = True) -> dict[str, Any]:
    """Pretrain (or reuse) the toy base and weak models under `out_dir`; returns the toy.json record."""
    out = Path(out_dir)
    meta_path = out / META
    chash = config_hash(cfg)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("config_hash") == chash and (out / "base").is_dir() and (out / "weak").is_dir():
            log.info("reusing toy models in %s", out)
            return meta
    toy.ensure_task()
    tok = toy.build_tokenizer()
    model = toy.build_model(tok, cfg.seed, d_model=cfg.d_model, n_layers=cfg.n_layers)
    spec = VariantSpec()
    dev = toy.toy_max("dev")
    dev_enc = [score.encode(render(spec, r), tok) for r in dev]
    gold = np.array([r.answer for r in dev])
    items = _items(toy.toy_max("pretrain"), tok, min(cfg.steps * cfg.batch_size, MAX_ITEMS))
    state: dict[str, Any] = {"weak": None, "weak_acc": None, "weak_step": None, "acc": 0.0, "curve": []}

    def on_step(step: int, loss: float) -> bool:
        if step % cfg.eval_every and step != cfg.steps:
            return False
        acc = dev_accuracy(model, tok, dev_enc, gold)
        model.train()
        state["curve"].append({"step": step, "loss": loss, "dev_acc": acc, "seconds": time.perf_counter() - t0})
        state["acc"] = acc
        if state["weak"] is None and acc >= cfg.weak_acc:
            state.update(weak=copy.deepcopy(model.state_dict()), weak_acc=acc, weak_step=step)
        log.info("toy pretrain step %d: loss %.3f dev acc %.3f", step, loss, acc)
        return acc >= cfg.target_acc

    t0 = time.perf_counter()
    init_acc = dev_accuracy(model, tok, dev_enc, gold)
    params = TrainParams(steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed, warmup_steps=20)
    losses = train(model, items, params, pad_id=tok.pad_token_id, on_step=on_step, desc="toy pretrain",
                   progress=progress)
    seconds = time.perf_counter() - t0
    if state["acc"] < cfg.target_acc:
        log.warning("toy base reached dev accuracy %.3f < target %.2f in %d steps", state["acc"], cfg.target_acc,
                    len(losses))
    if state["weak"] is None:  # never reached weak_acc: the initial (random) model is the weak one
        state.update(weak=copy.deepcopy(toy.build_model(tok, cfg.seed, d_model=cfg.d_model, n_layers=cfg.n_layers)
                                        .state_dict()), weak_acc=init_acc, weak_step=0)
    save_checkpoint(model, tok, out / "base")
    weak = toy.build_model(tok, cfg.seed, d_model=cfg.d_model, n_layers=cfg.n_layers)
    weak.load_state_dict(state["weak"])
    save_checkpoint(weak, tok, out / "weak")
    meta = stamp(model="toy", task=toy.TASK, split="pretrain", seed=cfg.seed) | {
        "config": to_jsonable(cfg), "config_hash": chash, "base_dir": str((out / "base").resolve()),
        "weak_dir": str((out / "weak").resolve()), "base_weight_hash": weight_hash(model),
        "weak_weight_hash": weight_hash(weak), "base_dev_acc": state["acc"], "weak_dev_acc": state["weak_acc"],
        "weak_step": state["weak_step"], "steps": len(losses), "seconds": round(seconds, 1),
        "reached_target": state["acc"] >= cfg.target_acc, "n_params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(), "curve": state["curve"],
    }
    write_json(meta_path, meta)
    return meta
