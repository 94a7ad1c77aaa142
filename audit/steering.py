"""Activation steering as an elicitation method: a direction from a few labelled train questions, added at a layer
with a scale, both (and the positions) chosen on dev and reported on test.

Direction (pure, `mean_difference`): at each layer, the mean residual (answer position, the lock's prompt, no
password) of train questions the model answers right minus that of those it answers wrong. The vector added is
``alpha * norm * direction / |direction|`` where ``norm`` is the mean residual norm at that layer over the same
examples, so `alpha` is in units of the residual's own size; alpha 0 (no steering) is always a candidate, listed
first, so a tie keeps the unsteered model. The hook is `hooks.steer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float

from audit.outcome import Outcome, answers_on
from audit.questions import CaseQuestions
from eval.records import MCRecord
from eval.scoring import masked_argmax
from eval.stats import select_then_report
from eval.tasks import subsample
from hooks.capture import plan_rows
from hooks.models import LoadedModel
from hooks.steer import steered_choice_logits
from hooks.store import Store

MIN_PER_CLASS = 2  # right and wrong examples each needed for a direction


def mean_difference(x: Float[np.ndarray, "n d"], positive: np.ndarray) -> Float[np.ndarray, " d"]:
    """mean(x[positive]) - mean(x[~positive]); ValueError when either group is empty."""
    x = np.asarray(x, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    if x.ndim != 2 or len(pos) != len(x):
        raise ValueError(f"x must be (n, d) with one label per row; got {x.shape} and {pos.shape}")
    if pos.all() or not pos.any():
        raise ValueError(f"mean difference needs both groups; got {int(pos.sum())} positive of {len(pos)}")
    return x[pos].mean(axis=0) - x[~pos].mean(axis=0)


def steering_vector(direction: np.ndarray, norm: float, alpha: float) -> np.ndarray:
    """`alpha * norm` along the unit `direction` (zeros for alpha 0 or a zero direction)."""
    length = float(np.linalg.norm(direction))
    if alpha == 0 or length == 0:
        return np.zeros_like(direction, dtype=np.float32)
    return (alpha * norm / length * np.asarray(direction)).astype(np.float32)


@dataclass(frozen=True)
class Candidate:
    """One steering setting."""

    layer: int
    positions: str
    alpha: float

    def key(self) -> str:
        return "none" if self.alpha == 0 else f"layer {self.layer}, {self.positions}, alpha {self.alpha:g}"


def candidates(layers: Sequence[int], positions: Sequence[str], alphas: Sequence[float]) -> list[Candidate]:
    """No steering first, then every (layer, positions, nonzero alpha)."""
    out = [Candidate(-1, "all", 0.0)]
    out += [Candidate(la, p, a) for la in layers for p in positions for a in alphas if a != 0]
    return out


def _examples(store: Store, ids: Sequence[str], sample: Sequence[str], variant: str
              ) -> tuple[np.ndarray, np.ndarray, int]:
    """(residuals (n, layers, d), right (n,), questions looked at) of the `sample` questions (`variant`'s lettered
    rows); all of `ids` when the sample holds fewer than MIN_PER_CLASS right or wrong answers."""
    m = store.mask(variant=variant, lettered=True)
    r = store.rows
    rows = np.flatnonzero(m)
    by_q = {q: i for q, i in zip(r["question_id"][rows].astype(str).tolist(), rows.tolist(), strict=True)}
    logits = store.array("answer_logits", rows)
    right_all = masked_argmax(logits, r["n_choices"][rows]) == r["label"][rows]
    right_of = dict(zip(rows.tolist(), right_all.tolist(), strict=True))
    order = [by_q[q] for q in ids]
    take = [by_q[q] for q in sample]
    got = np.array([right_of[i] for i in take], dtype=bool)
    if min(got.sum(), (~got).sum()) < MIN_PER_CLASS:
        take = order
        got = np.array([right_of[i] for i in take], dtype=bool)
    return store.resid_rows(np.array(take)).astype(np.float32), got, len(take)


def steer_outcome(model: LoadedModel, store_path: Path, q: CaseQuestions, records: Sequence[MCRecord], *,
                  alphas: Sequence[float], positions: Sequence[str], n_examples: int, seed: int,
                  variant: str = "default", first_token: bool = False, batch_size: int = 64) -> Outcome:
    """Steering of `model` on the eval `records`: direction from `n_examples` train questions of the store (a seeded
    sample), each candidate scored on dev and test; the best on dev is reported on test. Questions are asked in
    `variant` (scored by each answer's first token with `first_token`, as the store's rows were)."""
    with Store(store_path) as store:
        layers = [x for x in store.layers if x < model.n_layers]  # resid_pre of the blocks
        pos = [store.layers.index(x) for x in layers]
        train = set(q.train_ids)
        sample = [r.id for r in subsample([r for r in q.pool if r.id in train], n_examples, seed=seed)]
        resid, right, n_seen = _examples(store, q.train_ids, sample, variant)
    rows = plan_rows(model, records, [variant], [], seed, first_token=first_token)
    max_c = max(len(r.choice_ids) for r in rows)
    choice = torch.full((len(rows), max_c), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        choice[i, : len(r.choice_ids)] = torch.tensor(r.choice_ids)
    seqs = [r.ids for r in rows]
    qids = np.array([r.question_id for r in rows], dtype=str)
    labels = np.array([r.label for r in rows])
    dev, test = np.isin(qids, q.dev_ids), np.isin(qids, q.test_ids)
    n_right = int(right.sum())
    usable = min(n_right, len(right) - n_right) >= 1
    cands = candidates(layers if usable else [], positions, alphas)
    directions = {la: mean_difference(resid[:, p], right) for la, p in zip(layers, pos, strict=True)} if usable else {}
    norms = {la: float(np.linalg.norm(resid[:, p], axis=1).mean()) for la, p in zip(layers, pos, strict=True)}
    answers: dict[str, np.ndarray] = {}
    for c in cands:
        vec = None if c.alpha == 0 else steering_vector(directions[c.layer], norms[c.layer], c.alpha)
        logits = steered_choice_logits(model, seqs, choice, layer=c.layer, vector=vec, positions=c.positions,
                                       batch_size=batch_size)
        answers[c.key()] = masked_argmax(logits)
    correct = {k: a == labels for k, a in answers.items()}
    sel = select_then_report({k: float(v[dev].mean()) for k, v in correct.items()},
                             {k: float(v[test].mean()) for k, v in correct.items()})
    best = next(c for c in cands if c.key() == sel["chosen"])
    pos_best = answers[sel["chosen"]]
    order = [r.order for r in rows]
    pred = np.array([o[p] if p >= 0 else -1 for o, p in zip(order, pos_best.tolist(), strict=True)])
    gold = np.array([r.answer_original for r in rows])
    ids, pred, gold = answers_on(qids, pred, gold, q.test_ids)
    return Outcome("steer", ids, pred, gold, chosen=sel["chosen"], variant=variant, layer=None if best.alpha == 0 else best.layer,
                   dev_value=sel["dev_value"], naive_max_test=sel["naive_max_test"], n_candidates=len(cands),
                   gold_labels=n_seen + len(q.dev_ids),
                   extra={"examples": float(n_seen), "examples_right": float(n_right),
                          "direction": 1.0 if usable else 0.0})
