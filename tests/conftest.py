"""Shared fixtures: tiny models load once per session; tests stay offline and single-threaded."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model():
    from hooks.models import load_model

    return load_model("tiny-llama")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Model caches written by tests go to a temporary folder, never the user's ~/.cache."""
    monkeypatch.setenv("GAPLENS_CACHE", str(tmp_path_factory.getbasetemp() / "gaplens-cache"))
