"""Surface-cue features of each answer option alone, without the question: the surface-cue control's inputs.

An option probe reads the residual stream of "question + option" rows. If the options' surface alone (the gold
option is longer, or uses certain words) tells the gold one apart, a probe can score above chance without the model
knowing the answer. The control fits the same kind of probe, the same way (`probes.fit.fit_layer`: C chosen by
grouped cross-validation on the train questions, scored per question on the test questions), on features of each
option's text alone:

- its length in tokens (the store's ``option_ntokens``) and in characters (``option_nchars``);
- a bag of words of the option text (lower-cased word tokens, binary), with the vocabulary taken from the train
  questions' options only (words in at least `min_df` of them, at most `max_features` words), never the question.

`option_texts` gives the text of each option row from the task records (the original choice the row displays).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float
from sklearn.feature_extraction.text import CountVectorizer

from eval.records import MCRecord

TOKEN_PATTERN = r"(?u)\b\w+\b"  # single-character words count ("A", "5")


@dataclass(frozen=True)
class SurfaceFeatures:
    """The feature matrix of the option rows, and what each column is."""

    X: Float[np.ndarray, "rows features"]
    names: list[str]  # "n_tokens", "n_chars", then "word:<w>" per vocabulary word

    def describe(self) -> str:
        """The features in words."""
        n_words = len(self.names) - 2
        return (f"option length in tokens and characters, and a binary bag of {n_words} words of the option text "
                "(vocabulary from the train questions' options); no question text")


def option_texts(records: Sequence[MCRecord] | Mapping[str, MCRecord], question_ids: np.ndarray, order: np.ndarray,
                 option_index: np.ndarray) -> list[str]:
    """The text of each option row: `records` (or id -> record) give the choices; row i shows original choice
    `order[i, option_index[i]]` of question `question_ids[i]`. ValueError naming the question when a row's question
    is not among the records or its choice index is out of range."""
    by_id = records if isinstance(records, Mapping) else {r.id: r for r in records}
    out = []
    for q, o, k in zip(np.asarray(question_ids).tolist(), np.asarray(order), np.asarray(option_index).tolist(),
                       strict=True):
        rec = by_id.get(str(q))
        if rec is None:
            raise ValueError(f"question {q!r} of the store is not among the task's records (the task data changed "
                             "since the capture?)")
        if k < 0:
            raise ValueError(f"question {q!r}: row has no option (option_index {k}): pass option rows only")
        original = int(o[k])
        if not 0 <= original < len(rec.choices):
            raise ValueError(f"question {q!r}: choice {original} is outside its {len(rec.choices)} choices")
        out.append(rec.choices[original])
    return out


def surface_features(texts: Sequence[str], n_tokens: np.ndarray, n_chars: np.ndarray, train: np.ndarray, *,
                     min_df: int = 2, max_features: int = 2000) -> SurfaceFeatures:
    """Length and bag-of-words features of each option text (rows aligned with `texts`); the vocabulary comes from
    the rows where `train` (bool) is set. With no word passing `min_df`, only the two length columns."""
    train = np.asarray(train, dtype=bool)
    n = len(texts)
    if not (len(n_tokens) == len(n_chars) == len(train) == n):
        raise ValueError(f"texts ({n}), n_tokens ({len(n_tokens)}), n_chars ({len(n_chars)}) and train "
                         f"({len(train)}) must have one entry per option row")
    if not train.any():
        raise ValueError("no train rows to take the vocabulary from")
    lengths = np.column_stack([np.asarray(n_tokens, dtype=np.float32), np.asarray(n_chars, dtype=np.float32)])
    vec = CountVectorizer(lowercase=True, binary=True, token_pattern=TOKEN_PATTERN, min_df=min_df,
                          max_features=max_features, dtype=np.float32)
    train_texts = [t for t, m in zip(texts, train.tolist(), strict=True) if m]
    try:
        vec.fit(train_texts)
    except ValueError:  # empty vocabulary: no word in min_df train options
        return SurfaceFeatures(lengths, ["n_tokens", "n_chars"])
    words = vec.transform(list(texts)).toarray().astype(np.float32)
    names = ["n_tokens", "n_chars", *(f"word:{w}" for w in vec.get_feature_names_out().tolist())]
    return SurfaceFeatures(np.hstack([lengths, words]), names)
