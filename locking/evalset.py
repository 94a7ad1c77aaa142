"""Questions encoded once per condition (password, none, decoys) and scored many times during lock and unlock runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eval.records import MCRecord
from eval.scoring import masked_argmax
from eval.variants import VariantSpec
from locking import policies, score
from locking.data import render_condition


@dataclass
class EvalSet:
    """Held-out questions: per condition their encoded prompts, and the gold displayed index of each."""

    records: list[MCRecord]
    spec: VariantSpec
    placement: str
    encoded: dict[str, list[score.Encoded]]
    gold: np.ndarray  # displayed index of the gold answer, per record
    orders: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def subset(self, ids: Sequence[str]) -> np.ndarray:
        """Boolean mask of the records whose id is in `ids`."""
        want = set(ids)
        return np.array([r.id in want for r in self.records])


def build(
    records: Sequence[MCRecord],
    tok: Any,
    spec: VariantSpec,
    placement: str,
    conditions: Sequence[str],
    chat_template: Callable[[list[dict[str, str]]], str] | None = None,
) -> EvalSet:
    """Render and encode every record under every condition."""
    encoded: dict[str, list[score.Encoded]] = {}
    gold, orders = [], []
    for cond in conditions:
        prompts = [render_condition(r, spec, cond, placement) for r in records]
        encoded[cond] = [score.encode(p, tok, chat_template) for p in prompts]
        if not orders:
            gold = [p.answer for p in prompts]
            orders = [p.order for p in prompts]
    return EvalSet(list(records), spec, placement, encoded, np.array(gold, dtype=int), orders)


def logprobs(model: Any, es: EvalSet, condition: str, *, pad_id: int, batch_size: int = 64,
             bf16: bool = False) -> np.ndarray:
    """(n, choices) first-token log-probabilities of the displayed options under `condition`."""
    return score.choice_logprobs(model, es.encoded[condition], pad_id=pad_id, batch_size=batch_size, bf16=bf16)


def correct(lp: np.ndarray, es: EvalSet) -> np.ndarray:
    """Whether the argmax option is gold, per record."""
    return masked_argmax(lp) == es.gold


@dataclass(frozen=True)
class Answers:
    """Per record: the argmax answer and the gold answer as ORIGINAL choice indices, whether it is gold (exactly
    `correct`), the answer's first-token log-probability and the number of choices."""

    pred: np.ndarray
    gold: np.ndarray
    correct: np.ndarray
    score: np.ndarray
    n_choices: np.ndarray


def answers(lp: np.ndarray, es: EvalSet) -> Answers:
    """Each record's answer under (n, choices) first-token log-probabilities `lp` (see `Answers`)."""
    pos = masked_argmax(lp)
    rows = np.arange(len(pos))
    orders = [list(o) for o in es.orders]
    return Answers(np.array([o[p] for o, p in zip(orders, pos.tolist(), strict=True)], dtype=np.int64),
                   np.array([o[g] for o, g in zip(orders, es.gold.tolist(), strict=True)], dtype=np.int64),
                   pos == es.gold, np.asarray(lp, dtype=np.float64)[rows, pos],
                   np.array([len(o) for o in orders], dtype=np.int64))


def policy_matrix(policy: policies.Policy, es: EvalSet) -> np.ndarray:
    """A policy's distributions over the DISPLAYED options of each record, nan-padded (n, choices)."""
    width = max((len(o) for o in es.orders), default=0)
    out = np.full((len(es.records), width), np.nan)
    for i, (r, order) in enumerate(zip(es.records, es.orders, strict=True)):
        out[i, : len(order)] = policies.displayed(policy[r.id], order)
    return out
