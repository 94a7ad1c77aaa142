"""Batched answer scoring for (locked) models: log-probabilities of each option's first token at the answer position.

A question is encoded once per condition as its prompt tokens plus the first token of each displayed continuation
(letter " A".. for letter variants, " option text" for option variants). Batches are length-sorted and left padded,
with position ids counted from each row's first real token, so a row scores the same whatever it is batched with.
Inputs go to the model's device (its input embedding's), bf16 autocast runs on that device, and the log-probs come
back to the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float

from eval.variants import Prompt, to_text
from hooks.execution import autocast, find_batch_size
from hooks.forward import first_token_ids, pad_left, position_ids


@dataclass(frozen=True)
class Encoded:
    """One prompt ready to score: its token ids and the first token of each displayed continuation."""

    ids: tuple[int, ...]
    choice_ids: tuple[int, ...]


def encode(prompt: Prompt, tok: Any, chat_template: Callable[[list[dict[str, str]]], str] | None = None) -> Encoded:
    """Token ids of `prompt` (special tokens added unless it is a chat prompt) and its continuations' first tokens."""
    text = to_text(prompt, chat_template)
    ids = tok(text, add_special_tokens=not prompt.chat).input_ids
    return Encoded(tuple(ids), first_token_ids(tok, text, prompt.continuations))


def distinct_choices(enc: Encoded) -> bool:
    """Whether every continuation starts with its own token (otherwise first-token scoring cannot tell them apart)."""
    return len(set(enc.choice_ids)) == len(enc.choice_ids)


def batch_inputs(seqs: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded input_ids, attention_mask and position_ids (0 at each row's first real token)."""
    ids, mask = pad_left(seqs, pad_id)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids(mask)}


def model_device(model: Any) -> torch.device:
    """Where a HF model's inputs go: the device of its input embedding (the first device of a spread model)."""
    return model.get_input_embeddings().weight.device


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors of a batch on `device` (nothing is copied when they are there already)."""
    return {k: v.to(device) for k, v in batch.items()}


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length within `batch_size` rows and `max_tokens` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    out: list[list[int]] = []
    for i in order:
        if out and len(out[-1]) < batch_size and (len(out[-1]) + 1) * lengths[i] <= max_tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


@torch.no_grad()
def choice_logprobs(
    model: Any,
    encoded: Sequence[Encoded],
    *,
    pad_id: int,
    batch_size: int = 64,
    max_tokens: int = 8192,
    bf16: bool = False,
) -> Float[np.ndarray, "n choices"]:
    """Full-vocabulary log-probabilities of each continuation's first token at the answer position (nan-padded).
    A batch that runs out of device memory is split in halves (and so are the batches after it): rows score the
    same whatever they are batched with."""
    n_c = max((len(e.choice_ids) for e in encoded), default=0)
    out = np.full((len(encoded), n_c), np.nan, dtype=np.float32)
    was_training = model.training
    device = model_device(model)
    size = batch_size

    def run(idx: list[int], part: int) -> None:
        for start in range(0, len(idx), part):
            rows = idx[start : start + part]
            inputs = to_device(batch_inputs([encoded[i].ids for i in rows], pad_id), device)
            with autocast(device, bf16):
                logits = model(**inputs, logits_to_keep=1).logits[:, -1, :].float()
            logp = torch.log_softmax(logits, dim=-1)
            cids = torch.zeros((len(rows), n_c), dtype=torch.long)
            valid = torch.zeros((len(rows), n_c), dtype=torch.bool)
            for row, i in enumerate(rows):
                cids[row, : len(encoded[i].choice_ids)] = torch.tensor(encoded[i].choice_ids)
                valid[row, : len(encoded[i].choice_ids)] = True
            picked = logp.gather(1, cids.to(logp.device)).cpu()
            out[rows] = picked.masked_fill(~valid, float("nan")).numpy()

    model.eval()
    try:
        for idx in length_batches([len(e.ids) for e in encoded], batch_size, max_tokens):
            _, size = find_batch_size(lambda part, idx=idx: run(idx, part), min(size, len(idx)),
                                      what="scoring batch size")
    finally:
        model.train(was_training)
    return out
