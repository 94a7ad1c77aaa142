"""Tests for locking.controls on a tiny model: noise, scaling and averaging of weights."""

from __future__ import annotations

import pytest
import torch

from locking import controls


@pytest.fixture(scope="module")
def tiny():
    from hooks.tiny import build

    return build("tiny-llama", seed=0)


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_noise_scale_zero_is_identity(tiny) -> None:
    state = controls.state_of(tiny[0])
    assert _same(controls.noisy(state, 0.0, seed=5), state)


def test_noise_is_seeded_relative_and_pure(tiny) -> None:
    state = controls.state_of(tiny[0])
    before = {k: v.clone() for k, v in state.items()}
    a, b, c = controls.noisy(state, 0.1, 1), controls.noisy(state, 0.1, 1), controls.noisy(state, 0.1, 2)
    assert _same(a, b) and not _same(a, c)
    assert _same(state, before)  # input untouched
    for name, w in state.items():
        if w.is_floating_point() and w.numel() > 100:
            rel = (a[name] - w).pow(2).mean().sqrt() / w.pow(2).mean().sqrt()
            assert 0.07 < float(rel) < 0.13, name
    with pytest.raises(ValueError):
        controls.noisy(state, -1.0, 0)


def test_scale(tiny) -> None:
    state = controls.state_of(tiny[0])
    assert _same(controls.scaled(state, 1.0), state)
    double = controls.scaled(state, 2.0)
    for name, w in state.items():
        expected = w * 2 if w.ndim >= 2 else w
        assert torch.equal(double[name], expected), name


def test_average(tiny) -> None:
    state = controls.state_of(tiny[0])
    assert _same(controls.average([state, state]), state)
    other = controls.noisy(state, 0.5, 3)
    mid = controls.average([state, other])
    for name in state:
        assert torch.allclose(mid[name], (state[name] + other[name]) / 2, atol=1e-6)
    with pytest.raises(ValueError):
        controls.average([])
    with pytest.raises(ValueError, match="different keys"):
        controls.average([state, {k: v for k, v in list(state.items())[1:]}])


def test_load_state_round_trip(tiny) -> None:
    from hooks.tiny import build

    model, _ = build("tiny-llama", seed=1)
    state = controls.noisy(controls.state_of(tiny[0]), 0.2, 0)
    controls.load_state(model, state)
    assert _same(controls.state_of(model), state)
