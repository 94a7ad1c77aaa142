"""Shared fixtures: tiny models load once per session; tests stay offline and single-threaded."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)
TEST_DEVICE = os.environ.get("GAPLENS_TEST_DEVICE", "cpu")
"""Where `tiny_model` runs: cpu by default; `GAPLENS_TEST_DEVICE=cuda pytest -m numerics` runs the numerics tests
(bridge == HF, shared prefix == whole sequences, lens == logits, generation == an argmax loop) on a GPU
(benchmarks/gpu_check.sh)."""


@pytest.fixture(scope="session")
def tiny_model():
    from hooks.models import load_model

    return load_model("tiny-llama", device=TEST_DEVICE)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Model caches written by tests go to a temporary folder, never the user's ~/.cache."""
    monkeypatch.setenv("GAPLENS_CACHE", str(tmp_path_factory.getbasetemp() / "gaplens-cache"))


@pytest.fixture(scope="session")
def contract_runs(tmp_path_factory):
    """Every command's real output on tiny models, made once per test session (about half a minute): the report
    and contract tests read these instead of hand-built results. kind -> run directory ("root": their parent)."""
    from commands import diff, evaluate, lock, probe, transfer, unlock

    root = tmp_path_factory.mktemp("contract") / "runs"
    runs = {"root": root}
    runs["probe"] = probe.run(probe.Config(model="tiny-llama", task="capitals", n=16, n_shuffles=2,
                                           out=str(root / "probe")))
    runs["eval"] = evaluate.run(evaluate.Config(model="tiny-llama", task="capitals", n=16, n_boot=50, resid=True,
                                                variants="default,rotate:1,option", out=str(root / "eval")))
    runs["transfer"] = transfer.run(transfer.Config(store=str(runs["eval"]), train_variant="default",
                                                    out=str(root / "transfer")))
    runs["lock"] = lock.run(lock.Config(toy_steps=40, steps=10, n=64, batch_size=8, out=str(root / "lock")))
    runs["unlock"] = unlock.run(unlock.Config(model=str(runs["lock"]), epochs=4, eval_every=2, seeds=2, n_eval=40,
                                              controls=("noise",), progress=False, out=str(root / "unlock")))
    runs["diff"] = diff.run(diff.Config(base=str(runs["lock"] / "toy" / "base"), a=str(runs["lock"]),
                                        b=str(runs["lock"] / "toy" / "weak"), n=16, out=str(root / "diff")))
    return runs
