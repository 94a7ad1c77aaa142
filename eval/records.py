"""The one normalised multiple-choice record every loader produces and every later stage consumes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field


class TaskError(ValueError):
    """Bad task input: the message names the file, row and field."""


@dataclass(frozen=True)
class MCRecord:
    """One multiple-choice question.

    `id` is unique within a task and stable across runs (splits, few-shot pools and
    caches are keyed on it). `answer` indexes `choices`.
    """

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str = ""
    split: str = ""
    source: str = ""  # "file:row" or "hf:name/config:split:row", for error messages and provenance
    meta: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        where = self.source or self.id
        if not self.question.strip():
            raise TaskError(f"{where}: field 'question' is empty")
        if len(self.choices) < 2:
            raise TaskError(f"{where}: field 'choices' needs at least 2 options, got {len(self.choices)}")
        if not 0 <= self.answer < len(self.choices):
            raise TaskError(
                f"{where}: field 'answer' is {self.answer}, outside 0..{len(self.choices) - 1}"
            )


def fingerprint(records: Sequence[MCRecord]) -> str:
    """A short sha256 of the questions' content, in order (ids, texts, choices, answers, subjects, meta): an edited
    task file gives another fingerprint, so a run made from the old one is never reused."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.id, r.question, list(r.choices), r.answer, r.subject, [list(m) for m in r.meta]],
                            ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]
