"""Locked checkpoints: HF model directories that carry their lock record and policy targets.

A locked checkpoint is a plain HF directory (weights, config, tokenizer; loads with `hooks.models.load_model(path)`
and so with `--model PATH` in every command) plus two files written last:

- ``gaplens_lock.json``: schema ``gaplens.lock/1``: the lock config and its hash, the weight hash (equal to
  `load_model(path).weight_hash`), the base model and its hash, task, variant, password placement and fingerprint,
  the question-id splits (``train`` / ``pool`` / ``eval``), the lock metrics and provenance;
- ``gaplens_targets.json``: the strong and weak policies per question id (original choice order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.io import read_json, write_json
from hooks.models import load_hf, save_checkpoint, weight_hash
from locking.policies import Policy

SCHEMA = "gaplens.lock/1"
LOCK_META = "gaplens_lock.json"
TARGETS = "gaplens_targets.json"


@dataclass(frozen=True)
class Locked:
    """A locked checkpoint's directory, lock record and policies."""

    path: Path
    meta: dict[str, Any]
    strong: Policy
    weak: Policy

    @property
    def splits(self) -> dict[str, list[str]]:
        return self.meta["splits"]


def save_locked(model: Any, tok: Any, path: str | Path, meta: Mapping[str, Any],
                strong: Mapping[str, np.ndarray], weak: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Save `model` (plain HF, never bridge-wrapped) as a locked checkpoint; returns the lock record written."""
    path = Path(path)
    save_checkpoint(model, tok, path)
    record = {"schema": SCHEMA, **meta, "weight_hash": weight_hash(model)}
    write_json(path / TARGETS, {"strong": {k: list(map(float, v)) for k, v in strong.items()},
                                "weak": {k: list(map(float, v)) for k, v in weak.items()}})
    write_json(path / LOCK_META, record)  # last: its presence marks the checkpoint complete
    return record


def resolve(path: str | Path) -> Path:
    """The checkpoint directory for `path`: a locked checkpoint itself, or a lock run directory holding ``model/``."""
    p = Path(path)
    for cand in (p, p / "model"):
        if (cand / LOCK_META).is_file():
            return cand
    raise ValueError(
        f"--model {path}: not a locked checkpoint ({LOCK_META} missing); pass the directory written by "
        "`cli.py lock` (its run directory or its model/ subdirectory)"
    )


def read(path: str | Path) -> Locked:
    """The lock record and policies of a locked checkpoint (or lock run directory)."""
    p = resolve(path)
    meta = read_json(p / LOCK_META)
    if meta.get("schema") != SCHEMA:
        raise ValueError(f"{p / LOCK_META}: schema {meta.get('schema')!r}, expected {SCHEMA!r}")
    targets = read_json(p / TARGETS)
    return Locked(p, meta, {k: np.array(v) for k, v in targets["strong"].items()},
                  {k: np.array(v) for k, v in targets["weak"].items()})


def load(locked: Locked, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """(plain HF model, tokenizer) of a locked checkpoint, checked against its recorded weight hash."""
    m = load_hf(str(locked.path), dtype=dtype)
    if dtype == torch.float32 and weight_hash(m.model) != locked.meta["weight_hash"]:
        raise ValueError(f"{locked.path}: weights do not match the weight hash in {LOCK_META}")
    return m.model, m.tokenizer
