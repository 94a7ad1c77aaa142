"""Probe targets read from a store: which rows, which labels, and how a probe's scores become answers.

- option target: option-text rows (one per question and displayed option), binary label gold / not; the answer to
  a question is the option whose probe score is highest.
- letter target: lettered rows, multinomial label = gold displayed position; the answer is the argmax of the class
  scores over the question's own choices (positions past its n_choices are masked).

Both are scored per question, so option and letter probes are comparable (and comparable to prompted accuracy).
`question_answers` and `prompted_answers` give each question's answer (original choice index), gold answer,
correctness and score; `question_correct` and `prompted_correct` are their correctness alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from jaxtyping import Float

from eval.scoring import group_argmax, masked_argmax
from hooks.store import Store
from probes.linear import LinearProbe

TARGETS: tuple[str, ...] = ("option", "letter")


@dataclass(frozen=True)
class Target:
    """Rows of one probe target: `rows` index the store; the other arrays are aligned with `rows`."""

    name: str
    rows: np.ndarray
    y: np.ndarray
    groups: np.ndarray  # question id per row
    n_choices: np.ndarray
    order: np.ndarray | None = None  # (rows, max_choices) displayed position -> original index (store `order`)
    option_index: np.ndarray | None = None  # option rows: displayed position of the row's option
    answer_original: np.ndarray | None = None  # gold answer's original index per row

    def subset(self, keep: np.ndarray) -> Target:
        """The target restricted to `keep` (a bool mask aligned with `rows`, or positions into it)."""
        def part(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[keep]

        return replace(self, rows=self.rows[keep], y=self.y[keep], groups=self.groups[keep],
                       n_choices=self.n_choices[keep], order=part(self.order), option_index=part(self.option_index),
                       answer_original=part(self.answer_original))

    def with_labels(self, y: np.ndarray) -> Target:
        return replace(self, y=np.asarray(y))

    @property
    def max_choices(self) -> int:
        return int(self.n_choices.max())


def load_target(store: Store, name: str, variant: str | None = None) -> Target:
    """The option target ("option" variant rows) or letter target ("default" variant rows) of `store`."""
    if name not in TARGETS:
        raise ValueError(f"unknown probe target {name!r}; known: {', '.join(TARGETS)}")
    lettered = name == "letter"
    variant = variant or ("default" if lettered else "option")
    mask = store.mask(variant=variant, lettered=lettered)
    if not mask.any():
        raise ValueError(f"{store.path}: no {'lettered' if lettered else 'option'} rows of variant {variant!r}; "
                         f"variants in the store: {', '.join(store.variants())}")
    rows = np.flatnonzero(mask)
    r = store.rows
    return Target(name, rows, r["label"][rows], r["question_id"][rows], r["n_choices"][rows], r["order"][rows],
                  r["option_index"][rows], r["answer_original"][rows])


@dataclass(frozen=True)
class Answers:
    """One answer per question: ids, the answer and the gold answer as ORIGINAL choice indices (-1: no answer, or
    not known when the rows carry no choice order), correctness, the score of the answer, and the choice count."""

    qids: np.ndarray
    pred: np.ndarray
    gold: np.ndarray
    correct: np.ndarray
    score: np.ndarray
    n_choices: np.ndarray


def _original(order: np.ndarray | None, rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Original choice index of displayed position `pos` of each row (-1 where pos < 0 or the order is unknown)."""
    if order is None:
        return np.full(len(pos), -1, dtype=np.int64)
    picked = np.asarray(order)[rows, np.clip(pos, 0, None)] if len(pos) else np.zeros(0, dtype=np.int64)
    return np.where(pos >= 0, picked, -1).astype(np.int64)


def _gold(target: Target, idx: np.ndarray) -> np.ndarray:
    if target.answer_original is None:
        return np.full(len(idx), -1, dtype=np.int64)
    return np.asarray(target.answer_original)[idx].astype(np.int64)


def question_answers(target: Target, scores: np.ndarray) -> Answers:
    """Per question, the answer of per-row scores: option rows (rows,): the question's top-scoring option; letter
    rows (rows, choices): the argmax over its own choices."""
    if target.name == "option":
        uniq, best = group_argmax(scores, target.groups)
        pos = target.option_index[best] if target.option_index is not None else np.full(len(best), -1)
        return Answers(uniq, _original(target.order, best, pos), _gold(target, best), target.y[best] == 1,
                       np.asarray(scores, dtype=np.float64)[best], target.n_choices[best])
    pos = masked_argmax(scores, target.n_choices)
    idx = np.arange(len(pos))
    s = np.asarray(scores, dtype=np.float64)
    score = np.where(pos >= 0, s[idx, np.clip(pos, 0, None)] if len(pos) else s[:0, 0], np.nan)
    return Answers(target.groups, _original(target.order, idx, pos), _gold(target, idx), pos == target.y, score,
                   target.n_choices)


def question_correct(target: Target, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(question ids, correct per question) from per-row scores: option rows (rows,), letter rows (rows, choices)."""
    a = question_answers(target, scores)
    return a.qids, a.correct


def probe_scores(target: Target, probe: LinearProbe, X: Float[np.ndarray, "rows d"]) -> np.ndarray:
    """Option target: the gold-class logit per row. Letter target: (rows, max_choices) class scores, -inf for
    positions the probe never saw as a label."""
    cs = probe.class_scores(X)
    classes = list(probe.classes_)
    if target.name == "option":
        return cs[:, classes.index(1)] if 1 in classes else np.zeros(len(X))
    full = np.full((len(X), target.max_choices), -np.inf)
    cols = np.asarray(classes, dtype=int)
    ok = cols < target.max_choices
    full[:, cols[ok]] = cs[:, ok]
    return full


def shuffled_labels(target: Target, rng: np.random.Generator) -> np.ndarray:
    """Control labels. Option: a random option of each question is "gold". Letter: gold positions permuted
    among questions with the same number of choices (class balance kept)."""
    y = np.zeros_like(target.y)
    if target.name == "option":
        uniq, inv = np.unique(target.groups, return_inverse=True)
        inv = inv.ravel()
        keys = rng.random(len(inv))
        order = np.lexsort((keys, inv))
        first = order[np.r_[True, inv[order][1:] != inv[order][:-1]]]
        y[first] = 1
        return y
    y = target.y.copy()
    for n in np.unique(target.n_choices):
        idx = np.flatnonzero(target.n_choices == n)
        y[idx] = target.y[idx][rng.permutation(len(idx))]
    return y


def prompted_answers(store: Store, variant: str, *, lettered: bool, per_char: bool = False) -> Answers:
    """The model's own answers to `variant`: lettered rows by the argmax of the answer logits (score: that logit);
    option rows by the option with the highest summed log-probability (per character with `per_char`; score: it)."""
    r = store.rows
    m = store.mask(variant=variant, lettered=lettered)
    t = Target("letter" if lettered else "option", np.flatnonzero(m), r["label"][m], r["question_id"][m],
               r["n_choices"][m], r["order"][m], r["option_index"][m], r["answer_original"][m])
    if lettered:
        return question_answers(t, store.array("answer_logits", m))
    score = store.array("option_logprob", m).astype(np.float64)
    if per_char:
        score = score / np.maximum(store.array("option_nchars", m), 1)
    return question_answers(t, score)


def prompted_correct(store: Store, variant: str, *, lettered: bool, per_char: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(question ids, correct) of the model's own answers to `variant` (see `prompted_answers`)."""
    a = prompted_answers(store, variant, lettered=lettered, per_char=per_char)
    return a.qids, a.correct


def chance(target: Target) -> float:
    """Expected accuracy of a uniform guess, averaged over the target's questions."""
    _, first = np.unique(target.groups, return_index=True)
    return float(np.mean(1.0 / target.n_choices[first]))
