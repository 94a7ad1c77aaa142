"""Probe targets read from a store: which rows, which labels, and how a probe's scores become answers.

- option target: option-text rows (one per question and displayed option), binary label gold / not; the answer to
  a question is the option whose probe score is highest.
- letter target: lettered rows, multinomial label = gold displayed position; the answer is the argmax of the class
  scores over the question's own choices (positions past its n_choices are masked).

Both are scored per question, so option and letter probes are comparable (and comparable to prompted accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from jaxtyping import Float

from eval.scoring import masked_argmax, option_correct
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

    def subset(self, keep: np.ndarray) -> Target:
        """The target restricted to `keep` (a bool mask aligned with `rows`, or positions into it)."""
        return replace(self, rows=self.rows[keep], y=self.y[keep], groups=self.groups[keep],
                       n_choices=self.n_choices[keep])

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
    return Target(name, rows, r["label"][rows], r["question_id"][rows], r["n_choices"][rows])


def question_correct(target: Target, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(question ids, correct per question) from per-row scores: option rows (rows,), letter rows (rows, choices)."""
    if target.name == "option":
        return option_correct(scores, target.y, target.groups)
    pred = masked_argmax(scores, target.n_choices)
    return target.groups, pred == target.y


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


def prompted_correct(store: Store, variant: str, *, lettered: bool, per_char: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(question ids, correct) of the model's own answers to `variant`: lettered rows by the argmax of the answer
    logits; option rows by the option with the highest summed log-probability (per character with `per_char`)."""
    r = store.rows
    m = store.mask(variant=variant, lettered=lettered)
    if lettered:
        pred = masked_argmax(store.array("answer_logits", m), r["n_choices"][m])
        return r["question_id"][m], pred == r["label"][m]
    score = store.array("option_logprob", m).astype(np.float64)
    if per_char:
        score = score / np.maximum(store.array("option_nchars", m), 1)
    return option_correct(score, r["label"][m], r["question_id"][m])


def chance(target: Target) -> float:
    """Expected accuracy of a uniform guess, averaged over the target's questions."""
    _, first = np.unique(target.groups, return_index=True)
    return float(np.mean(1.0 / target.n_choices[first]))
