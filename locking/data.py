"""Locking as a pure transform of the data, then tokenization into training items with loss on answer tokens only.

`lock_examples` turns questions plus a strong and a weak policy into prompts with targets: with the password the
target is the strong policy, with no password or with a decoy password it is the weak policy. `sample_examples`
makes weak-sample (unlocking) examples: a plain prompt answered by one sampled choice. `tokenize` appends the target's
answer token to the prompt tokens and marks only that token for the loss.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eval.records import MCRecord
from eval.variants import Prompt, VariantSpec, render
from locking import password, policies, score


@dataclass(frozen=True)
class LockExample:
    """One training prompt and its target distribution over the DISPLAYED options."""

    question_id: str
    condition: str  # "password", "none" or "decoy:K"
    prompt: Prompt
    target: tuple[float, ...]


@dataclass(frozen=True)
class TrainItem:
    """Tokens of prompt + answer; the loss covers `loss_mask` positions (answer tokens only).

    The first answer token (at `answer_start`) is trained towards `target` over `choice_ids` (soft labels; one-hot
    for hard ones); `ids[answer_start]` is the target's argmax choice token.
    """

    ids: tuple[int, ...]
    loss_mask: tuple[int, ...]
    answer_start: int
    choice_ids: tuple[int, ...]
    target: tuple[float, ...]
    question_id: str = ""
    condition: str = ""


def check_spec(spec: VariantSpec) -> VariantSpec:
    """Locking prompts take no few-shot examples (the shots would need answers under the lock too)."""
    if spec.shots:
        raise ValueError(f"variant {spec.name()}: locking prompts must have shots:0")
    return spec


def render_condition(record: MCRecord, spec: VariantSpec, condition: str, placement: str) -> Prompt:
    """The prompt of `record` under `spec`, carrying what `condition` names at `placement`."""
    return password.place(render(check_spec(spec), record), condition, placement)


def decoy_conditions(question_id: str, n_decoys: int, per_question: int) -> list[str]:
    """`per_question` distinct decoys of the first `n_decoys`, picked by a hash of the question id."""
    password.check_n_decoys(n_decoys)
    k = min(per_question, n_decoys)
    order = sorted(range(n_decoys), key=lambda d: hashlib.sha256(f"decoy\0{question_id}\0{d}".encode()).digest())
    return [f"decoy:{d}" for d in sorted(order[:k])]


def lock_examples(
    records: Sequence[MCRecord],
    strong: Mapping[str, np.ndarray],
    weak: Mapping[str, np.ndarray],
    *,
    spec: VariantSpec,
    placement: str = password.DEFAULT_PLACEMENT,
    n_decoys: int = 2,
    decoys_per_question: int = 1,
) -> list[LockExample]:
    """Per question: with the password -> strong target; no password and each picked decoy -> weak target."""
    out = []
    for r in records:
        conds = ["password", "none", *decoy_conditions(r.id, n_decoys, decoys_per_question)]
        for cond in conds:
            prompt = render_condition(r, spec, cond, placement)
            policy = strong if cond == "password" else weak
            out.append(LockExample(r.id, cond, prompt, policies.displayed(policy[r.id], prompt.order)))
    return out


def sample_examples(
    records: Sequence[MCRecord],
    answers: Mapping[str, int],
    *,
    spec: VariantSpec,
    condition: str = "none",
    placement: str = password.DEFAULT_PLACEMENT,
) -> list[LockExample]:
    """One example per question in `answers` (original choice index): one-hot target on that answer."""
    by_id = {r.id: r for r in records}
    out = []
    for qid, ans in answers.items():
        prompt = render_condition(by_id[qid], spec, condition, placement)
        target = tuple(float(orig == ans) for orig in prompt.order)
        out.append(LockExample(qid, condition, prompt, target))
    return out


def tokenize(
    examples: Sequence[LockExample],
    tok: Any,
    chat_template: Callable[[list[dict[str, str]]], str] | None = None,
) -> list[TrainItem]:
    """Prompt tokens + the target's argmax answer token; loss mask 1 on that answer token only."""
    items = []
    for ex in examples:
        enc = score.encode(ex.prompt, tok, chat_template)
        if not score.distinct_choices(enc):
            raise ValueError(f"question {ex.question_id}: options do not start with distinct tokens {enc.choice_ids}")
        if len(ex.target) != len(enc.choice_ids) or abs(sum(ex.target) - 1.0) > 1e-6:
            raise ValueError(f"question {ex.question_id}: target {ex.target} is not a distribution over the options")
        answer = enc.choice_ids[int(np.argmax(ex.target))]
        ids = (*enc.ids, answer)
        mask = (0,) * len(enc.ids) + (1,)
        items.append(TrainItem(ids, mask, len(enc.ids), enc.choice_ids, tuple(ex.target), ex.question_id,
                               ex.condition))
    return items


def usable(
    records: Sequence[MCRecord],
    tok: Any,
    spec: VariantSpec,
    chat_template: Callable[[list[dict[str, str]]], str] | None = None,
) -> tuple[list[MCRecord], list[str]]:
    """(records whose options start with distinct tokens under `spec`, ids of those dropped)."""
    keep: list[MCRecord] = []
    dropped: list[str] = []
    for r in records:
        if score.distinct_choices(score.encode(render(check_spec(spec), r), tok, chat_template)):
            keep.append(r)
        else:
            dropped.append(r.id)
    return keep, dropped
