"""Tests for locking.checkpoint: save, resolve, read back, and load through hooks.models with the same hash."""

from __future__ import annotations

import numpy as np
import pytest

from hooks.models import load_model, weight_hash
from locking import checkpoint


def test_round_trip_through_load_model(tmp_path) -> None:
    from hooks.tiny import build

    model, tok = build("tiny-llama", seed=3)
    strong = {"q0": np.array([0.0, 1.0]), "q1": np.array([1.0, 0.0])}
    weak = {"q0": np.array([0.5, 0.5]), "q1": np.array([0.5, 0.5])}
    meta = {"splits": {"train": ["q0"], "pool": [], "eval": ["q1"]}, "variant": "default"}
    run_dir = tmp_path / "lock"
    record = checkpoint.save_locked(model, tok, run_dir / "model", meta, strong, weak)
    assert record["weight_hash"] == weight_hash(model)

    loaded = load_model(str(run_dir / "model"))  # the path every CLI command accepts as --model
    assert loaded.weight_hash == record["weight_hash"]
    assert loaded.tokenizer.get_vocab() == tok.get_vocab()

    assert checkpoint.resolve(run_dir) == run_dir / "model"
    locked = checkpoint.read(run_dir)
    assert locked.splits["eval"] == ["q1"] and locked.meta["schema"] == checkpoint.SCHEMA
    assert locked.strong["q0"].tolist() == [0.0, 1.0] and locked.weak["q1"].tolist() == [0.5, 0.5]
    hf, tok2 = checkpoint.load(locked)
    assert weight_hash(hf) == record["weight_hash"]


def test_resolve_rejects_plain_dirs(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a locked checkpoint"):
        checkpoint.resolve(tmp_path)
