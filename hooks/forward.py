"""Hooked forward passes: residual streams at the answer position, answer logits and the logit lens.

Hooks are plain functions `fn(tensor, *, hook)` registered only inside `bridge.hooks(...)`, the TransformerLens
context manager that removes them on exit, whatever happens. They slice to the last position (batches are left
padded, so the last position is the answer position of every row) and move to CPU inside the hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int

from hooks.hf_compat import cache_kwargs, output_cache
from hooks.models import LoadedModel


def resid_hook_names(n_layers: int, layers: Sequence[int]) -> list[str]:
    """Hook names for stored layer indices: L < n_layers is block L's resid_pre, n_layers the last resid_post."""
    names = []
    for layer in layers:
        if not 0 <= layer <= n_layers:
            raise ValueError(f"--layers: layer {layer} is outside 0..{n_layers} for this model")
        names.append(f"blocks.{layer}.hook_resid_pre" if layer < n_layers else f"blocks.{n_layers - 1}.hook_resid_post")
    return names


@dataclass(frozen=True)
class BatchOut:
    """What one hooked forward pass returns, float32: residuals on the model's device, the rest on the CPU."""

    resid: Float[torch.Tensor, "batch layers d_model"]  # on the model's device
    last_logits: Float[torch.Tensor, "batch keep vocab_sel"]  # logits of the requested token ids only
    logprob_sum: Float[torch.Tensor, " batch"]  # sum of log-probs of each row's continuation tokens (0 if none)


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Int[torch.Tensor, "b t"], Int[torch.Tensor, "b t"]]:
    """Left-pad token id lists into (input_ids, attention_mask)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids, mask


@torch.no_grad()
def hooked_forward(
    model: LoadedModel,
    seqs: Sequence[Sequence[int]],
    *,
    layers: Sequence[int],
    choice_ids: Int[torch.Tensor, "batch choices"] | None = None,
    n_cont: Sequence[int] | None = None,
) -> BatchOut:
    """One batched forward pass through the bridge with residual hooks.

    `choice_ids`: token ids whose logits are kept at the last position (lettered rows).
    `n_cont`: per row, how many final tokens are the scored continuation (option rows); their log-probs are summed.
    Residuals stay on the model's device (float32) until the caller stores them; the logits come back on the CPU.
    """
    bridge = model.bridge
    input_ids, attention_mask = pad_left(seqs, model.tokenizer.pad_token_id)
    input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
    names = resid_hook_names(model.n_layers, layers)
    grabbed: dict[int, torch.Tensor] = {}

    def make_hook(slot: int):  # noqa: ANN202 - hook factory
        def hook_fn(tensor: torch.Tensor, *, hook: object) -> torch.Tensor:
            grabbed[slot] = tensor[:, -1, :].detach()
            return tensor

        return hook_fn

    keep = 1 + (max(n_cont) if n_cont else 0)
    with bridge.hooks(fwd_hooks=[(name, make_hook(i)) for i, name in enumerate(names)]):
        logits = bridge(input_ids, attention_mask=attention_mask, logits_to_keep=keep)
    logits = logits.float()
    out_dev = logits.device  # with a device map the layers (and so the hooked residuals) sit on several devices
    resid = torch.stack([grabbed[i].to(out_dev) for i in range(len(names))], dim=1).float()
    input_ids = input_ids.to(out_dev)
    b = len(seqs)
    if choice_ids is not None:
        choice_ids = choice_ids.to(logits.device)
        last = logits[:, -1, :].gather(1, choice_ids.clamp(min=0))
        last = last.masked_fill(choice_ids < 0, float("nan")).unsqueeze(1).cpu()
    else:
        last = torch.empty(b, 1, 0)
    logprob = torch.zeros(b, device=logits.device)
    if n_cont:
        # position t predicts token t+1: the continuation's c tokens are predicted by positions -c-1 .. -2
        lse = torch.logsumexp(logits[:, :-1, :], dim=-1)  # (b, keep-1)
        for i, c in enumerate(n_cont):
            if c == 0:
                continue
            targets = input_ids[i, -c:]
            picked = logits[i, -c - 1 : -1, :].gather(1, targets[:, None])[:, 0]
            logprob[i] = (picked - lse[i, -c:]).sum()
    return BatchOut(resid=resid, last_logits=last, logprob_sum=logprob.cpu())


def position_ids(mask: Int[torch.Tensor, "b t"]) -> Int[torch.Tensor, "b t"]:
    """Positions of left- or right-padded rows: 0 at each row's first real token (padding gets 0 too)."""
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


@torch.no_grad()
def hooked_forward_shared_prefix(
    model: LoadedModel,
    groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
    *,
    layers: Sequence[int],
) -> BatchOut:
    """Option rows of many questions: each question's prefix runs once, its KV cache is reused by its options.

    `groups` holds (prefix ids, [continuation ids, ...]) per question. The prefixes run as one left-padded batch
    with explicit position ids; the cache row of each prefix is then selected once per continuation, and the
    continuations run as one right-padded batch whose positions continue from their prefix's length and whose
    attention mask spans prefix and continuation. Rows come back in group order, continuations in the order
    given. Equals `hooked_forward` on the joined sequences (tests check it on the tiny model and SmolLM2).
    Residuals are taken at each continuation's last token, log-probs summed over its tokens.
    """
    if not groups:
        raise ValueError("hooked_forward_shared_prefix: no groups")
    pad = model.tokenizer.pad_token_id
    hf = model.hf_model
    device = model.device
    prefixes = [list(p) for p, _ in groups]
    if any(not p for p in prefixes) or any(not c for _, cs in groups for c in cs):
        raise ValueError("hooked_forward_shared_prefix: empty prefix or continuation")
    p_ids, p_mask = pad_left(prefixes, pad)
    p_ids, p_mask = p_ids.to(device), p_mask.to(device)
    first = hf(input_ids=p_ids, attention_mask=p_mask, position_ids=position_ids(p_mask), use_cache=True,
               logits_to_keep=1)
    cache = output_cache(first)
    owner = torch.tensor([g for g, (_, cs) in enumerate(groups) for _ in cs], device=device)
    cache.batch_select_indices(owner.cpu())  # CPU indices work for cache layers on any device
    conts = [list(c) for _, cs in groups for c in cs]
    n, width = len(conts), max(len(c) for c in conts)
    ids = torch.full((n, width), pad, dtype=torch.long)
    c_mask = torch.zeros((n, width), dtype=torch.long)
    for i, c in enumerate(conts):
        ids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        c_mask[i, : len(c)] = 1
    ids, c_mask = ids.to(device), c_mask.to(device)
    prefix_len = p_mask.sum(dim=1)[owner]
    positions = prefix_len[:, None] + torch.arange(width, device=device)[None, :]
    mask = torch.cat([p_mask[owner], c_mask], dim=1)
    last = torch.tensor([len(c) - 1 for c in conts], device=device)
    rows = torch.arange(n, device=device)
    names = resid_hook_names(model.n_layers, layers)
    grabbed: dict[int, torch.Tensor] = {}

    def make_hook(slot: int):  # noqa: ANN202 - hook factory
        def hook_fn(tensor: torch.Tensor, *, hook: object) -> torch.Tensor:
            grabbed[slot] = tensor[rows, last, :].detach()
            return tensor

        return hook_fn

    with model.bridge.hooks(fwd_hooks=[(name, make_hook(i)) for i, name in enumerate(names)]):
        logits = model.bridge(ids, attention_mask=mask, position_ids=positions, **cache_kwargs(hf, cache))
    # token k of a continuation is predicted by the prefix's last position (k = 0) or continuation position k-1
    out_dev = logits.device
    first_logits = first.logits.to(out_dev)[owner.to(out_dev)][:, -1:, :].float()
    preds = torch.cat([first_logits, logits[:, :-1, :].float()], dim=1)
    ids, c_mask = ids.to(out_dev), c_mask.to(out_dev)
    logp = preds.gather(2, ids[:, :, None])[:, :, 0] - torch.logsumexp(preds, dim=-1)
    logprob = (logp * c_mask).sum(dim=1).cpu()
    resid = torch.stack([grabbed[i].to(out_dev) for i in range(len(names))], dim=1).float()
    return BatchOut(resid=resid, last_logits=torch.empty(n, 1, 0), logprob_sum=logprob)


@torch.no_grad()
def logit_lens(
    model: LoadedModel,
    resid: Float[torch.Tensor, "batch layers d_model"],
    choice_ids: Int[torch.Tensor, "batch choices"],
) -> Float[torch.Tensor, "batch layers choices"]:
    """The logit lens restricted to the choice tokens: final norm applied to every layer's residual, then unembed.

    The last stored layer (final resid_post) gives exactly the model's own logits for those tokens.
    """
    bridge = model.bridge
    choice_ids = choice_ids.to(bridge.W_U.device)
    normed = bridge.ln_final(resid.to(device=bridge.W_U.device, dtype=bridge.W_U.dtype))
    w = bridge.W_U  # (d_model, vocab)
    ids = choice_ids.clamp(min=0)
    cols = w[:, ids].permute(1, 0, 2)  # (batch, d_model, choices)
    out = torch.einsum("bld,bdc->blc", normed, cols)
    b_u = getattr(bridge, "b_U", None)
    if b_u is not None:
        out = out + b_u[ids][:, None, :]
    softcap = getattr(model.hf_model.config, "final_logit_softcapping", None)
    if softcap:
        out = torch.tanh(out / softcap) * softcap
    return out.float().masked_fill((choice_ids < 0)[:, None, :], float("nan")).cpu()


def continuation_ids(tok: Any, prefix_text: str, continuations: Sequence[str]) -> list[list[int]]:
    """Token ids of each continuation as the tokenizer splits prefix + continuation, when that keeps the prefix's
    own tokens as they are; else the continuation tokenized alone. One tokenizer call for all of them."""
    bare, *joins = tok([prefix_text, *(prefix_text + c for c in continuations)], add_special_tokens=False).input_ids
    out = []
    for cont, joined in zip(continuations, joins, strict=True):
        if joined[: len(bare)] == bare and len(joined) > len(bare):
            out.append(list(joined[len(bare) :]))
            continue
        ids = tok(cont, add_special_tokens=False).input_ids
        if not ids:
            raise ValueError(f"continuation {cont!r} tokenizes to nothing")
        out.append(list(ids))
    return out


def first_token_ids(tok: Any, prefix_text: str, continuations: Sequence[str]) -> tuple[int, ...]:
    """The first token of each continuation (see `continuation_ids`): what first-token answer scoring reads."""
    return tuple(ids[0] for ids in continuation_ids(tok, prefix_text, continuations))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
