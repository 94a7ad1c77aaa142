"""What one method gives on one case: each test question's answer, what it chose, and what it cost.

An `Outcome` is the unit everything downstream reads: the scoreboard pools outcomes over a model's cases (seeds),
the samples table writes their answers. `to_dict` / `from_dict` keep it in a case file (``cases/*.json``) so that a
rerun of the audit reuses finished cases.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Outcome:
    """One method on one case (all answers on the case's test questions, without the password)."""

    method: str
    ids: np.ndarray  # (n,) test question ids
    pred: np.ndarray  # (n,) the answer, ORIGINAL choice index (-1: none)
    gold: np.ndarray  # (n,) the gold answer, original choice index
    chosen: str | None = None  # what the method chose on dev (a variant, "layer 1", "scale 0.05 draw 2", ...)
    variant: str = "default"  # the prompt variant the answers come from
    layer: int | None = None  # the layer, for probes, the lens and steering
    dev_value: float | None = None  # the chosen candidate's dev accuracy (train CV for probes)
    naive_max_test: float | None = None  # the best candidate on the test questions themselves (optimistic)
    n_candidates: int = 1  # candidates chosen from
    seconds: float = 0.0  # wall time of the method on this case
    cpu_seconds: float = 0.0  # CPU time of this process (all threads) during it
    gold_labels: int = 0  # gold answers the method used (training and choosing)
    samples: int = 0  # demonstrations or weak samples it was trained on
    extra: dict[str, float | None] = field(default_factory=dict)  # method-specific numbers (controls, nulls)

    @property
    def correct(self) -> np.ndarray:
        """(n,) bool: the answer is gold."""
        return (self.pred >= 0) & (self.pred == self.gold)

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.ids) else float("nan")

    def with_cost(self, seconds: float, cpu_seconds: float) -> Outcome:
        return replace(self, seconds=round(seconds, 2), cpu_seconds=round(cpu_seconds, 2))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "ids": self.ids.tolist(), "pred": self.pred.tolist(), "gold": self.gold.tolist(),
                "chosen": self.chosen, "variant": self.variant, "layer": self.layer, "dev_value": self.dev_value,
                "naive_max_test": self.naive_max_test, "n_candidates": self.n_candidates, "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds, "gold_labels": self.gold_labels, "samples": self.samples,
                "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Outcome:
        return cls(**{**d, "ids": np.asarray(d["ids"], dtype=str), "pred": np.asarray(d["pred"], dtype=np.int64),
                      "gold": np.asarray(d["gold"], dtype=np.int64), "extra": dict(d.get("extra") or {})})


def answers_on(ids: np.ndarray, pred: np.ndarray, gold: np.ndarray, keep: list[str] | np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, pred, gold) of the questions in `keep`, in the order of `keep` (ValueError if one is missing)."""
    pos = {q: i for i, q in enumerate(np.asarray(ids).astype(str).tolist())}
    want = [str(q) for q in keep]
    missing = [q for q in want if q not in pos]
    if missing:
        raise ValueError(f"{len(missing)} questions have no answer ({missing[0]}, ...)")
    idx = np.array([pos[q] for q in want], dtype=np.int64)
    return np.asarray(want, dtype=str), np.asarray(pred)[idx].astype(np.int64), np.asarray(gold)[idx].astype(np.int64)


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Wall and CPU seconds of the block, in the yielded dict ("seconds", "cpu_seconds") once it ends."""
    out: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
