"""Scoring: from the arrays of a capture store to predictions per (question, variant). Pure numpy, no model.

Two kinds of rows come out of a capture (see `hooks.store`):

- lettered rows (``option_index == -1``): the logits of the answer symbols at the answer position,
  ``answer_logits[row, j]`` for DISPLAYED position j (NaN past the question's ``n_choices``). The
  prediction is the argmax over the valid positions (ties: the lowest position), mapped back to the
  ORIGINAL choice index through ``order[row]`` (displayed position -> original index).
- option rows (one per displayed option): the summed log-probability of the option text,
  ``option_logprob``, and its length in characters, ``option_nchars``. Per (question, variant) the
  prediction is the argmax of the log-probability ("acc") or of the log-probability per character
  ("acc_norm", as in lm-evaluation-harness), mapped back to the original index. A group missing an
  option row, or with a non-finite score, has no prediction (-1).

Every prediction carries the question's gold answer (displayed and original), so correctness is one
comparison, and softmax weights per ORIGINAL choice (for tie-breaking in `eval.stats.majority_vote`).
`prediction_matrix` lays predictions out as (questions x variants) for `eval.stats.agreement` and
`eval.stats.majority_vote`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
from jaxtyping import Float

LETTER, OPTION, OPTION_NORM, COT, COT_FORCED = "letter", "option", "option_norm", "cot", "cot_forced"
NORM_SUFFIX = "[norm]"  # metric name of an option variant scored with acc_norm: "option[norm]"
FORCED_SUFFIX = "[forced]"  # store variant id and metric of a chain of thought's forced answer: "cot[forced]"


@dataclass(frozen=True)
class Predictions:
    """One prediction per (question, metric); all arrays have the same first dimension.

    `variant` is the metric name: the variant name for lettered and acc-scored option variants,
    "<variant>[norm]" for acc_norm. Positions are displayed, `*_orig` original choice indices;
    -1 marks a missing prediction. `probs[i, c]` is the softmax of the scores over valid choices,
    indexed by ORIGINAL choice c (NaN past n_choices or when missing).
    """

    question_id: np.ndarray  # (n,) str
    variant: np.ndarray  # (n,) str, metric name
    base_variant: np.ndarray  # (n,) str, the capture variant the metric comes from
    scoring: np.ndarray  # (n,) str: "letter", "option" or "option_norm"
    pred_pos: np.ndarray  # (n,) int
    pred_orig: np.ndarray  # (n,) int
    gold_pos: np.ndarray  # (n,) int
    gold_orig: np.ndarray  # (n,) int
    n_choices: np.ndarray  # (n,) int
    probs: np.ndarray  # (n, max_choices) float

    def __len__(self) -> int:
        return len(self.question_id)

    @property
    def correct(self) -> np.ndarray:
        """(n,) bool: a prediction was made and it is the gold answer."""
        return (self.pred_orig >= 0) & (self.pred_orig == self.gold_orig)

    @property
    def missing(self) -> np.ndarray:
        """(n,) bool: no prediction could be made."""
        return self.pred_orig < 0

    def select(self, mask: np.ndarray) -> Predictions:
        """The predictions where `mask` (bool or index array) holds."""
        return Predictions(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    def metrics(self) -> list[str]:
        """Metric names in order of first appearance."""
        return list(dict.fromkeys(self.variant.tolist()))


def concat(parts: Sequence[Predictions]) -> Predictions:
    """Predictions stacked in order; `probs` is padded with NaN to the widest part."""
    if not parts:
        raise ValueError("concat needs at least one Predictions")
    width = max(p.probs.shape[1] for p in parts)
    out = {}
    for f in fields(Predictions):
        arrays = [getattr(p, f.name) for p in parts]
        if f.name == "probs":
            arrays = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan) for a in arrays]
        out[f.name] = np.concatenate(arrays)
    return Predictions(**out)


# --------------------------------------------------------------------------- helpers


def _as_1d(x: np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"{name} has {len(a)} rows, expected {n}")
    return a


def _check_order(order: np.ndarray, n_choices: np.ndarray) -> np.ndarray:
    o = np.asarray(order)
    if o.ndim != 2 or len(o) != len(n_choices):
        raise ValueError(f"order must be (rows, max_choices) with {len(n_choices)} rows, got shape {o.shape}")
    if np.any(n_choices < 1) or np.any(n_choices > o.shape[1]):
        raise ValueError(f"n_choices must lie in 1..{o.shape[1]} (the width of order)")
    valid = np.arange(o.shape[1])[None, :] < n_choices[:, None]
    if np.any(o[valid] < 0) or np.any(o[valid] >= np.broadcast_to(n_choices[:, None], o.shape)[valid]):
        raise ValueError("order maps a displayed position outside 0..n_choices-1")
    return o.astype(np.int64)


def masked_argmax(scores: Float[np.ndarray, "rows choices"], n_choices: np.ndarray | None = None) -> np.ndarray:
    """Row-wise argmax over the first n_choices[i] columns of (rows, c) `scores` (all columns when None), NaN and
    -inf counting as missing. Ties go to the lowest column; a row with no finite valid score gives -1.

    The one implementation of "the answer the scores pick": prompted letters, probe class scores, the logit lens
    and the locking trainer's first-token scores all go through it.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (rows, choices), got shape {s.shape}")
    valid = np.isfinite(s)
    if n_choices is not None:
        nc = np.asarray(n_choices)
        if nc.shape != (len(s),):
            raise ValueError(f"n_choices must have shape ({len(s)},), got {nc.shape}")
        valid &= np.arange(s.shape[1])[None, :] < nc[:, None]
    key = np.where(valid, s, -np.inf)
    return np.where(valid.any(axis=1), key.argmax(axis=1), -1).astype(np.int64)


def masked_softmax(scores: Float[np.ndarray, "rows choices"]) -> Float[np.ndarray, "rows choices"]:
    """Softmax over each row's finite entries (the answer distribution restricted to the choices); NaN stays NaN."""
    s = np.asarray(scores, dtype=np.float64)
    z = np.where(np.isfinite(s), s, -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p = p / p.sum(axis=1, keepdims=True)
    return np.where(np.isnan(s), np.nan, p)


def group_argmax(scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique groups, row index of the highest score in each group); NaN scores lose, ties -> first row."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    uniq, inv = np.unique(np.asarray(groups), return_inverse=True)
    inv = inv.ravel()
    order = np.lexsort((np.arange(len(s)), -s, inv))  # by group, then score descending, then row
    first = order[np.r_[True, inv[order][1:] != inv[order][:-1]]]
    return uniq, first


def option_correct(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Option rows -> (question ids, correct per question): is the top-scoring option of each question gold?

    `labels` is 1 for the gold option row, 0 otherwise.
    """
    uniq, best = group_argmax(scores, groups)
    return uniq, np.asarray(labels)[best] == 1


def to_original(pos: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Displayed positions (-1 = missing) -> original choice indices through per-row `order`."""
    p = np.asarray(pos, dtype=np.int64)
    o = np.asarray(order)
    picked = o[np.arange(len(p)), np.clip(p, 0, o.shape[1] - 1)]
    return np.where(p >= 0, picked, -1).astype(np.int64)


def softmax_original(scores: np.ndarray, n_choices: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Softmax of (rows, c) displayed-position scores over valid finite entries, re-indexed by original choice.

    Rows whose valid scores are not all finite are NaN throughout (no partial distributions).
    """
    s = np.asarray(scores, dtype=float)
    nc = np.asarray(n_choices)
    valid = np.arange(s.shape[1])[None, :] < nc[:, None]
    complete = np.all(np.isfinite(s) | ~valid, axis=1)
    z = np.where(valid, s, -np.inf)
    z = z - np.where(complete, z.max(axis=1), 0.0)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.where(valid & complete[:, None], np.exp(z), 0.0)
        p = e / e.sum(axis=1, keepdims=True)
    p = np.where(valid & complete[:, None], p, np.nan)
    out = np.full_like(p, np.nan)
    rows = np.repeat(np.arange(len(s)), s.shape[1]).reshape(s.shape)
    cols = np.where(valid, order, 0)
    out[rows[valid], cols[valid]] = p[valid]
    return out


# --------------------------------------------------------------------------- lettered rows


def score_letter_rows(
    question_id: np.ndarray,
    variant_id: np.ndarray,
    answer_logits: np.ndarray,
    n_choices: np.ndarray,
    order: np.ndarray,
    gold_pos: np.ndarray,
    gold_orig: np.ndarray,
) -> Predictions:
    """Predictions of lettered rows: argmax of the valid `answer_logits`, mapped to original indices.

    `answer_logits` is (rows, max_choices) by displayed position; `gold_pos` is the store's `label`
    (gold displayed position) and `gold_orig` its `answer_original`.
    """
    q = _as_1d(question_id, "question_id").astype(str)
    n = len(q)
    v = _as_1d(variant_id, "variant_id", n).astype(str)
    nc = _as_1d(n_choices, "n_choices", n).astype(np.int64)
    logits = np.asarray(answer_logits, dtype=float)
    if logits.ndim != 2 or len(logits) != n:
        raise ValueError(f"answer_logits must be (rows, max_choices) with {n} rows, got shape {logits.shape}")
    o = _check_order(order, nc)
    if logits.shape[1] < o.shape[1]:
        raise ValueError(f"answer_logits has {logits.shape[1]} columns, order has {o.shape[1]}")
    logits = logits[:, : o.shape[1]]
    gp = _as_1d(gold_pos, "gold_pos", n).astype(np.int64)
    go = _as_1d(gold_orig, "gold_orig", n).astype(np.int64)
    if n and (np.any(gp < 0) or np.any(gp >= nc) or np.any(o[np.arange(n), np.clip(gp, 0, None)] != go)):
        raise ValueError("gold_pos / gold_orig disagree with order (order[gold_pos] must be gold_orig)")
    pos = masked_argmax(logits, nc)
    return Predictions(
        question_id=q, variant=v, base_variant=v.copy(), scoring=np.full(n, LETTER),
        pred_pos=pos, pred_orig=to_original(pos, o), gold_pos=gp, gold_orig=go, n_choices=nc,
        probs=softmax_original(logits, nc, o),
    )


# --------------------------------------------------------------------------- generated answers


def score_generated(
    question_id: np.ndarray,
    variant_id: np.ndarray,
    pred_pos: np.ndarray,
    n_choices: np.ndarray,
    order: np.ndarray,
    gold_pos: np.ndarray,
    gold_orig: np.ndarray,
) -> Predictions:
    """Predictions of generation (chain-of-thought) variants from the extracted DISPLAYED answer (-1: none).

    Laid out like lettered rows with a one-hot score, so `probs` is one-hot on the extracted original choice
    (NaN when nothing was extracted) and `scoring` is "cot".
    """
    pos = _as_1d(pred_pos, "pred_pos").astype(np.int64)
    nc = _as_1d(n_choices, "n_choices", len(pos)).astype(np.int64)
    if np.any(pos >= nc) or np.any(pos < -1):
        raise ValueError("pred_pos must be -1 (no answer) or a displayed position below n_choices")
    width = np.asarray(order).shape[1] if np.asarray(order).ndim == 2 else 0
    scores = np.where(np.arange(width)[None, :] == pos[:, None], 0.0, -1e4)
    scores[pos < 0] = np.nan
    out = score_letter_rows(question_id, variant_id, scores, nc, order, gold_pos, gold_orig)
    return Predictions(**{**{f.name: getattr(out, f.name) for f in fields(out)},
                          "scoring": np.full(len(pos), COT)})


# --------------------------------------------------------------------------- option rows


def score_option_rows(
    question_id: np.ndarray,
    variant_id: np.ndarray,
    option_index: np.ndarray,
    option_logprob: np.ndarray,
    option_nchars: np.ndarray,
    n_choices: np.ndarray,
    order: np.ndarray,
    gold_orig: np.ndarray,
    *,
    normalize: bool = False,
) -> Predictions:
    """Per (question, variant) predictions from option rows (one row per displayed option).

    The score of an option is `option_logprob` ("acc"), or `option_logprob / option_nchars` with
    `normalize=True` ("acc_norm"; metric name "<variant>[norm]"). The argmax over displayed options
    (ties: lowest position) is mapped to the original index through the group's `order`. Groups come
    out sorted by (variant, question). A group missing an option or with a non-finite score is -1.
    """
    q = _as_1d(question_id, "question_id").astype(str)
    n = len(q)
    v = _as_1d(variant_id, "variant_id", n).astype(str)
    j = _as_1d(option_index, "option_index", n).astype(np.int64)
    lp = _as_1d(option_logprob, "option_logprob", n).astype(float)
    nch = _as_1d(option_nchars, "option_nchars", n).astype(float)
    nc = _as_1d(n_choices, "n_choices", n).astype(np.int64)
    go = _as_1d(gold_orig, "gold_orig", n).astype(np.int64)
    o = _check_order(order, nc)
    if np.any(j < 0) or np.any(j >= nc):
        raise ValueError("option_index must lie in 0..n_choices-1 for option rows (lettered rows have -1)")
    if normalize and np.any(nch <= 0):
        raise ValueError("option_nchars must be > 0 for acc_norm scoring")
    score = lp / nch if normalize else lp
    v_names, v_code = np.unique(v, return_inverse=True)
    q_names, q_code = np.unique(q, return_inverse=True)
    code = v_code.ravel() * len(q_names) + q_code.ravel()
    uniq, first, group = np.unique(code, return_index=True, return_inverse=True)
    group = group.ravel()
    g, width = len(uniq), o.shape[1]
    for name, arr in (("n_choices", nc), ("gold_orig", go)):
        if np.any(arr != arr[first][group]):
            raise ValueError(f"option rows of one (question, variant) disagree on {name}")
    if np.any(np.any(o != o[first][group], axis=1)):
        raise ValueError("option rows of one (question, variant) disagree on order")
    table = np.full((g, width), np.nan)
    count = np.zeros((g, width), dtype=np.int64)
    np.add.at(count, (group, j), 1)
    if np.any(count > 1):
        raise ValueError("duplicate option rows for one (question, variant, option_index)")
    table[group, j] = score
    g_nc, g_order = nc[first], o[first]
    complete = np.all(np.isfinite(table) | (np.arange(width)[None, :] >= g_nc[:, None]), axis=1)
    pos = np.where(complete, masked_argmax(table, g_nc), -1)
    g_gold = go[first]
    gold_pos = np.argmax(g_order == g_gold[:, None], axis=1).astype(np.int64)
    names = v_names[uniq // len(q_names)].astype(str)
    metric = np.char.add(names, NORM_SUFFIX) if normalize else names.copy()
    return Predictions(
        question_id=q_names[uniq % len(q_names)].astype(str), variant=metric, base_variant=names.copy(),
        scoring=np.full(g, OPTION_NORM if normalize else OPTION),
        pred_pos=pos, pred_orig=to_original(pos, g_order), gold_pos=gold_pos, gold_orig=g_gold,
        n_choices=g_nc, probs=softmax_original(table, g_nc, g_order),
    )


# --------------------------------------------------------------------------- whole store


def score_store(
    rows: Mapping[str, np.ndarray],
    answer_logits: np.ndarray,
    option_logprob: np.ndarray,
    option_nchars: np.ndarray,
    *,
    acc_norm: bool = True,
) -> Predictions:
    """Every prediction of a store: lettered rows, then option variants by acc (and acc_norm).

    Lettered rows whose variant id ends with FORCED_SUFFIX are a chain of thought's forced answer: scoring
    "cot_forced", base variant the chain-of-thought variant.

    `rows` is `Store.rows` (question_id, variant_id, option_index, label, answer_original, n_choices,
    order); the other arrays are the store datasets of the same name, over all rows.
    """
    need = ("question_id", "variant_id", "option_index", "label", "answer_original", "n_choices", "order")
    missing = [k for k in need if k not in rows]
    if missing:
        raise ValueError(f"rows lacks {missing}")
    opt = np.asarray(rows["option_index"])
    lettered = opt < 0
    parts = []
    if lettered.any():
        m = lettered
        parts.append(score_letter_rows(
            rows["question_id"][m], rows["variant_id"][m], np.asarray(answer_logits)[m], rows["n_choices"][m],
            rows["order"][m], rows["label"][m], rows["answer_original"][m]))
    if (~lettered).any():
        m = ~lettered
        args = (rows["question_id"][m], rows["variant_id"][m], opt[m], np.asarray(option_logprob)[m],
                np.asarray(option_nchars)[m], rows["n_choices"][m], rows["order"][m], rows["answer_original"][m])
        parts.append(score_option_rows(*args))
        if acc_norm:
            parts.append(score_option_rows(*args, normalize=True))
    if not parts:
        raise ValueError("the store has no rows")
    out = concat(parts)
    forced = np.char.endswith(out.variant.astype(str), FORCED_SUFFIX)
    if forced.any():  # lettered rows of a chain of thought's forced answer
        base = np.array([v[: -len(FORCED_SUFFIX)] if f else b for v, b, f in
                         zip(out.variant.tolist(), out.base_variant.tolist(), forced.tolist(), strict=True)])
        out = Predictions(**{**{f.name: getattr(out, f.name) for f in fields(out)}, "base_variant": base,
                             "scoring": np.where(forced, COT_FORCED, out.scoring)})
    return out


@dataclass(frozen=True)
class PredictionMatrix:
    """Predictions as a (questions x metrics) grid, ready for `eval.stats.agreement` / `majority_vote`."""

    question_ids: list[str]
    variants: list[str]
    pred: np.ndarray  # (q, v) int, predicted ORIGINAL index, -1 missing
    correct: np.ndarray  # (q, v) bool, False where missing
    present: np.ndarray  # (q, v) bool, a prediction exists (row present and not missing)
    gold: np.ndarray  # (q,) int, original index
    n_choices: np.ndarray  # (q,) int
    probs: np.ndarray  # (q, v, max_choices) float by original index, NaN when missing


def prediction_matrix(
    preds: Predictions, *, questions: Sequence[str] | None = None, variants: Sequence[str] | None = None
) -> PredictionMatrix:
    """Lay out `preds` as (questions x metrics); absent cells are -1 / not present.

    Defaults: questions sorted, metrics in order of first appearance. Raises ValueError if one
    question has two different gold answers or choice counts, or a (question, metric) appears twice.
    """
    qs = sorted(set(preds.question_id.tolist())) if questions is None else [str(x) for x in questions]
    vs = preds.metrics() if variants is None else [str(x) for x in variants]
    qi = {k: i for i, k in enumerate(qs)}
    vi = {k: i for i, k in enumerate(vs)}
    keep = np.isin(preds.question_id, np.array(qs, dtype=str)) & np.isin(preds.variant, np.array(vs, dtype=str))
    p = preds.select(keep)
    rows = np.array([qi[q] for q in p.question_id], dtype=np.int64)
    cols = np.array([vi[v] for v in p.variant], dtype=np.int64)
    seen = np.zeros((len(qs), len(vs)), dtype=np.int64)
    np.add.at(seen, (rows, cols), 1)
    if np.any(seen > 1):
        raise ValueError("a (question, metric) pair appears more than once in the predictions")
    gold = np.full(len(qs), -1, dtype=np.int64)
    nch = np.zeros(len(qs), dtype=np.int64)
    for name, target, values in (("gold answer", gold, p.gold_orig), ("n_choices", nch, p.n_choices)):
        target[rows] = values
        if np.any(target[rows] != values):
            bad = qs[int(rows[np.flatnonzero(target[rows] != values)[0]])]
            raise ValueError(f"question {bad!r} has different {name}s across variants")
    pred = np.full((len(qs), len(vs)), -1, dtype=np.int64)
    pred[rows, cols] = p.pred_orig
    width = p.probs.shape[1] if len(p) else 1
    probs = np.full((len(qs), len(vs), width), np.nan)
    probs[rows, cols] = p.probs
    present = pred >= 0
    correct = present & (pred == gold[:, None])
    return PredictionMatrix(qs, vs, pred, correct, present, gold, nch, probs)
