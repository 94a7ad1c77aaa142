"""Answer policies: per question, a probability distribution over its ORIGINAL choice indices.

Strong targets (what the password unlocks): ``gold`` or ``base`` (the base model's own answer distribution).
Weak policies (what the lock imitates without the password): ``uniform``, ``fixed:X`` (always displayed symbol X,
e.g. ``fixed:A``), ``model:NAME_OR_PATH`` (another model's answer distribution), or ``toy-weak`` (the toy
organism's early pretraining checkpoint). Any policy is used as ``soft`` labels (the distribution itself) or ``hard``
labels (its argmax, ties to the lowest index).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from eval.records import MCRecord
from eval.scoring import masked_softmax
from eval.variants import VariantSpec, display_order, render
from locking import score

Policy = dict[str, np.ndarray]
"""question id -> probabilities over the question's original choice indices (sums to 1)."""

LABELS = ("soft", "hard")
STRONG_KINDS = ("gold", "base")
WEAK_KINDS = ("uniform", "fixed", "model", "toy-weak")


def parse(text: str, kinds: Sequence[str]) -> tuple[str, str | None]:
    """("kind", arg or None) of a policy name like "fixed:A" or "model:runs/x"; ValueError if malformed."""
    kind, sep, arg = text.partition(":")
    needs_arg = kind in ("fixed", "model")
    if kind not in kinds or needs_arg != bool(sep and arg):
        forms = [f"{k}:ARG" if k in ("fixed", "model") else k for k in kinds]
        raise ValueError(f"policy {text!r} is not one of: {', '.join(forms)}")
    if kind == "fixed" and (len(arg) != 1 or not arg.isalpha()):
        raise ValueError(f"policy {text!r}: fixed takes one answer letter, e.g. fixed:A")
    return kind, (arg or None)


def check_labels(labels: str) -> str:
    """`labels` if it is "soft" or "hard", else ValueError."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    return labels


def gold(records: Sequence[MCRecord]) -> Policy:
    """One-hot on the gold answer."""
    return {r.id: np.eye(len(r.choices))[r.answer] for r in records}


def uniform(records: Sequence[MCRecord]) -> Policy:
    """Equal probability on every choice."""
    return {r.id: np.full(len(r.choices), 1.0 / len(r.choices)) for r in records}


def fixed(records: Sequence[MCRecord], letter: str, spec: VariantSpec) -> Policy:
    """Always the option displayed at `letter`'s position (A = first) under the prompt order of `spec`."""
    k = ord(letter.upper()) - ord("A")
    out: Policy = {}
    for r in records:
        if not 0 <= k < len(r.choices):
            raise ValueError(f"fixed:{letter}: question {r.id} has only {len(r.choices)} choices")
        order = display_order(spec.order, r.id, len(r.choices))
        out[r.id] = np.eye(len(r.choices))[order[k]]
    return out


def from_displayed(records: Sequence[MCRecord], probs: np.ndarray, spec: VariantSpec) -> Policy:
    """A policy from per-row probabilities over DISPLAYED options (rows in `records` order, nan-padded)."""
    out: Policy = {}
    for r, row in zip(records, probs, strict=True):
        order = display_order(spec.order, r.id, len(r.choices))
        p = np.zeros(len(r.choices))
        p[list(order)] = row[: len(r.choices)]
        out[r.id] = p / p.sum()
    return out


def displayed(p: np.ndarray, order: Sequence[int]) -> tuple[float, ...]:
    """Probabilities over displayed options: displayed j shows original order[j]."""
    return tuple(float(p[i]) for i in order)


def harden(policy: Mapping[str, np.ndarray]) -> Policy:
    """Argmax one-hot of each distribution (ties to the lowest index)."""
    return {k: np.eye(len(p))[int(np.argmax(p))] for k, p in policy.items()}


def with_labels(policy: Mapping[str, np.ndarray], labels: str) -> Policy:
    """The policy itself ("soft") or its argmax ("hard")."""
    return harden(policy) if check_labels(labels) == "hard" else dict(policy)


def correct(policy: Mapping[str, np.ndarray], records: Sequence[MCRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(argmax is gold, probability on gold) per record: the policy's accuracy when followed greedily and sampled."""
    arg = np.array([int(np.argmax(policy[r.id])) == r.answer for r in records])
    expected = np.array([float(policy[r.id][r.answer]) for r in records])
    return arg, expected


def sample(policy: Mapping[str, np.ndarray], ids: Sequence[str], rng: np.random.Generator) -> dict[str, int]:
    """One answer (original index) per question id, drawn from the policy."""
    return {qid: int(rng.choice(len(policy[qid]), p=policy[qid] / policy[qid].sum())) for qid in ids}


def model_policy(
    model: Any,
    tok: Any,
    records: Sequence[MCRecord],
    spec: VariantSpec,
    *,
    chat_template: Callable[[list[dict[str, str]]], str] | None = None,
    batch_size: int = 64,
    bf16: bool = False,
) -> Policy:
    """A model's answer distribution (softmax over the options' first tokens) on the plain prompts, no password."""
    enc = [score.encode(render(spec, r), tok, chat_template) for r in records]
    lp = score.choice_logprobs(model, enc, pad_id=tok.pad_token_id, batch_size=batch_size, bf16=bf16)
    return from_displayed(records, masked_softmax(lp), spec)
