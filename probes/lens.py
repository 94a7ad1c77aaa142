"""Scoring answers read from arrays: masked argmax over choices, per-question argmax over option rows, logit lens.

Pure numpy functions; nothing here touches a model or a file.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float


def masked_argmax(scores: Float[np.ndarray, "rows choices"], n_choices: np.ndarray | None = None) -> np.ndarray:
    """Argmax over the first n_choices[i] columns of each row (NaN counts as -inf; ties -> lowest index).

    Rows with no finite score give -1.
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
    s = np.where(valid, s, -np.inf)
    return np.where(valid.any(axis=1), s.argmax(axis=1), -1)


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


def lens_predictions(
    lens_logits: Float[np.ndarray, "rows layers choices"], n_choices: np.ndarray | None = None
) -> np.ndarray:
    """(rows, layers) argmax choice of the logit lens per layer (-1 where a row has no finite logit)."""
    lens = np.asarray(lens_logits)
    if lens.ndim != 3:
        raise ValueError(f"lens_logits must be (rows, layers, choices), got shape {lens.shape}")
    rows, n_layers, c = lens.shape
    nc = None if n_choices is None else np.tile(np.asarray(n_choices), n_layers)
    return masked_argmax(lens.transpose(1, 0, 2).reshape(n_layers * rows, c), nc).reshape(n_layers, rows).T


def lens_correct(
    lens_logits: Float[np.ndarray, "rows layers choices"], labels: np.ndarray, n_choices: np.ndarray | None = None
) -> np.ndarray:
    """(rows, layers) bool: the logit lens's argmax over each row's choices equals its label, per layer."""
    return lens_predictions(lens_logits, n_choices) == np.asarray(labels)[:, None]
