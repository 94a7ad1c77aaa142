"""Tests for locking.weights: weight diffs on hand-built cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from locking import weights


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _orthogonal(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(_rng(seed).normal(size=(d, d)))
    return q


# --- parameter names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "layer", "component"),
    [
        ("model.layers.3.self_attn.q_proj.weight", 3, "attn.q"),
        ("model.layers.0.self_attn.o_proj.bias", 0, "attn.o.bias"),
        ("model.layers.11.mlp.down_proj.weight", 11, "mlp.down"),
        ("model.layers.2.input_layernorm.weight", 2, "ln1"),
        ("model.layers.2.post_attention_layernorm.weight", 2, "ln2"),
        ("transformer.h.5.attn.c_attn.weight", 5, "attn.qkv"),
        ("model.embed_tokens.weight", None, "embed"),
        ("lm_head.weight", None, "unembed"),
        ("model.norm.weight", None, "ln_final"),
        ("model.layers.1.some_new.thing.weight", 1, "some_new.thing"),
    ],
)
def test_parse_param_name(name: str, layer: int | None, component: str) -> None:
    key = weights.parse_param_name(name)
    assert (key.layer, key.component) == (layer, component)


# --- weights --------------------------------------------------------------------------------


def test_relative_change_identical_and_known() -> None:
    w = torch.randn(8, 5)
    assert weights.relative_change(w, w.clone()) == 0.0
    assert weights.relative_change(w, 1.5 * w) == pytest.approx(0.5)
    assert weights.relative_change(torch.zeros(3), torch.zeros(3)) == 0.0
    assert weights.relative_change(torch.zeros(3), torch.ones(3)) == math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        weights.relative_change(torch.zeros(3), torch.zeros(4))


def test_rank2_update_recovered() -> None:
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(40, 2, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(24, 2, generator=g, dtype=torch.float64))
    delta = u @ torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)) @ v.T
    spec = weights.update_spectrum(delta, k=4)
    assert spec.numerical_rank == 2
    assert spec.top[:2] == pytest.approx((3.0, 1.0), abs=1e-10)
    assert spec.top[2:] == pytest.approx((0.0, 0.0), abs=1e-10)
    p = np.array([0.75, 0.25])
    assert spec.effective_rank == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert spec.stable_rank == pytest.approx(10.0 / 9.0)
    assert spec.energy_rank == 1  # 9 / 10 of the energy is in the first direction
    assert spec.frobenius == pytest.approx(math.sqrt(10.0))


def test_effective_rank_of_equal_singular_values() -> None:
    assert weights.effective_rank(torch.ones(5)) == pytest.approx(5.0)
    assert weights.effective_rank(torch.tensor([2.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert weights.effective_rank(torch.zeros(3)) == 0.0


def test_tall_matrix_goes_through_gram_and_agrees() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5000, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 16, generator=g, dtype=torch.float64)
    s = weights.singular_values(a)
    ref = torch.linalg.svdvals(a)
    assert torch.allclose(s[:3], ref[:3], rtol=1e-9)
    assert weights.update_spectrum(a).numerical_rank == 3


def test_zero_update_spectrum() -> None:
    spec = weights.update_spectrum(torch.zeros(4, 3), k=2)
    assert spec.top == (0.0, 0.0) and spec.numerical_rank == 0 and spec.effective_rank == 0.0


def test_cosine_of_updates() -> None:
    a = torch.randn(6, 7)
    assert weights.cosine(a, a) == pytest.approx(1.0)
    assert weights.cosine(a, -a) == pytest.approx(-1.0)
    b = torch.zeros(6, 7)
    b[0, 0] = 1.0
    c = torch.zeros(6, 7)
    c[1, 1] = 2.0
    assert weights.cosine(b, c) == 0.0
    assert math.isnan(weights.cosine(a, torch.zeros(6, 7)))


def _tiny_state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "model.embed_tokens.weight": torch.randn(50, 16, generator=g),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(16, 16, generator=g),
        "model.layers.0.input_layernorm.weight": torch.ones(16),
        "model.layers.1.mlp.up_proj.weight": torch.randn(32, 16, generator=g),
    }


def test_weight_diff_identical_is_zero_and_lowrank_recovered() -> None:
    a = _tiny_state(0)
    g = torch.Generator().manual_seed(5)
    u, _ = torch.linalg.qr(torch.randn(32, 2, generator=g))
    v, _ = torch.linalg.qr(torch.randn(16, 2, generator=g))
    low = (u @ torch.diag(torch.tensor([0.8, 0.3])) @ v.T).float()
    b = {k: t.clone() for k, t in a.items()}
    b["model.layers.1.mlp.up_proj.weight"] += low
    c = {k: t.clone() for k, t in a.items()}
    c["model.layers.1.mlp.up_proj.weight"] -= low  # c undoes b
    out = weights.weight_diff({"a": a, "a2": {k: t.clone() for k, t in a.items()}, "b": b, "c": c},
                           {"a2": ("a", "a2"), "b": ("a", "b"), "c": ("a", "c"), "b_to_c": ("b", "c")},
                           cosine_pairs=[("b", "c"), ("b", "b_to_c"), ("b", "mean")], mean_of=["b", "c"], k=3)
    by = {p["name"]: p for p in out["params"]}
    for p in out["params"]:
        assert p["updates"]["a2"]["relative_change"] == 0.0
        if p["updates"]["a2"]["spectrum"] is not None:
            assert p["updates"]["a2"]["spectrum"]["numerical_rank"] == 0
    assert out["totals"]["relative_change"]["a2"] == 0.0
    up = by["model.layers.1.mlp.up_proj.weight"]
    assert (up["layer"], up["component"]) == (1, "mlp.up")
    spec = up["updates"]["b"]["spectrum"]
    assert spec["numerical_rank"] == 2
    assert spec["top"][:2] == pytest.approx([0.8, 0.3], abs=1e-5)
    w = a["model.layers.1.mlp.up_proj.weight"].double()
    assert up["updates"]["b"]["relative_change"] == pytest.approx(float(low.double().norm() / w.norm()), rel=1e-5)
    assert up["cosine"]["b~c"] == pytest.approx(-1.0)
    assert up["cosine"]["b~b_to_c"] == pytest.approx(-1.0)  # the step b -> c undoes the update a -> b
    assert abs(up["updates"]["b"]["norm"] - up["updates"]["c"]["norm"]) < 1e-5
    assert by["model.layers.0.self_attn.q_proj.weight"]["updates"]["b"]["relative_change"] == 0.0
    assert out["totals"]["cosine"]["b~c"] == pytest.approx(-1.0)
    json.dumps(out)  # JSON-able
    layers, comps, grid = weights.layer_component_grid(out["params"], "relative_change", "b")
    assert layers == [0, 1] and set(comps) == {"attn.q", "ln1", "mlp.up"}
    assert grid[1, comps.index("mlp.up")] > 0 and grid[0, comps.index("attn.q")] == 0.0


def test_weight_diff_runs_against_their_mean() -> None:
    a = _tiny_state(0)
    g = torch.Generator().manual_seed(6)
    shared = {k: 0.1 * torch.randn(t.shape, generator=g) for k, t in a.items()}
    runs = {f"u{i}": {k: a[k] + shared[k] + 0.1 * torch.randn(t.shape, generator=g) for k, t in a.items()}
            for i in range(3)}
    out = weights.weight_diff({"a": a, **runs}, {u: ("a", u) for u in runs},
                           cosine_pairs=[("u0", "u1"), ("u0", "mean")], mean_of=list(runs))
    tot = out["totals"]["cosine"]
    # two runs share half their variance: cos ~ 1/2; each run against the mean of three: ~ sqrt(2/3)
    assert tot["u0~u1"] == pytest.approx(0.5, abs=0.1)
    assert tot["u0~mean"] == pytest.approx(math.sqrt(2 / 3), abs=0.1)


def test_weight_diff_rejects_other_architecture() -> None:
    a = _tiny_state(0)
    b = dict(a)
    b["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(16, 8)
    with pytest.raises(ValueError, match="shape"):
        weights.weight_diff({"a": a, "b": b}, {"b": ("a", "b")})
    c = {k: v for k, v in a.items() if "norm" not in k}
    with pytest.raises(ValueError, match="not the same architecture"):
        weights.weight_diff({"a": a, "c": c}, {"c": ("a", "c")})


def test_weight_diff_by_layer_totals() -> None:
    a = _tiny_state(0)
    b = {k: t.clone() for k, t in a.items()}
    b["model.layers.1.mlp.up_proj.weight"] *= 2.0
    tot = weights.weight_diff({"a": a, "b": b}, {"b": ("a", "b")})["totals"]
    assert tot["relative_change_by_layer"]["b"] == pytest.approx([0.0, 1.0])
    w = a["model.layers.1.mlp.up_proj.weight"].double().norm() ** 2
    all_sq = sum(t.double().norm() ** 2 for t in a.values())
    assert tot["relative_change"]["b"] == pytest.approx(float((w / all_sq) ** 0.5))
