"""Tests for locking.diff (numerics on hand-built cases) and the `diff` command (smoke test on tiny checkpoints)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from core.schemas import DiffResult, to_data
from locking import diff


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
    key = diff.parse_param_name(name)
    assert (key.layer, key.component) == (layer, component)


# --- weights --------------------------------------------------------------------------------


def test_relative_change_identical_and_known() -> None:
    w = torch.randn(8, 5)
    assert diff.relative_change(w, w.clone()) == 0.0
    assert diff.relative_change(w, 1.5 * w) == pytest.approx(0.5)
    assert diff.relative_change(torch.zeros(3), torch.zeros(3)) == 0.0
    assert diff.relative_change(torch.zeros(3), torch.ones(3)) == math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        diff.relative_change(torch.zeros(3), torch.zeros(4))


def test_rank2_update_recovered() -> None:
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(40, 2, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(24, 2, generator=g, dtype=torch.float64))
    delta = u @ torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)) @ v.T
    spec = diff.update_spectrum(delta, k=4)
    assert spec.numerical_rank == 2
    assert spec.top[:2] == pytest.approx((3.0, 1.0), abs=1e-10)
    assert spec.top[2:] == pytest.approx((0.0, 0.0), abs=1e-10)
    p = np.array([0.75, 0.25])
    assert spec.effective_rank == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert spec.stable_rank == pytest.approx(10.0 / 9.0)
    assert spec.energy_rank == 1  # 9 / 10 of the energy is in the first direction
    assert spec.frobenius == pytest.approx(math.sqrt(10.0))


def test_effective_rank_of_equal_singular_values() -> None:
    assert diff.effective_rank(torch.ones(5)) == pytest.approx(5.0)
    assert diff.effective_rank(torch.tensor([2.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert diff.effective_rank(torch.zeros(3)) == 0.0


def test_tall_matrix_goes_through_gram_and_agrees() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5000, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 16, generator=g, dtype=torch.float64)
    s = diff.singular_values(a)
    ref = torch.linalg.svdvals(a)
    assert torch.allclose(s[:3], ref[:3], rtol=1e-9)
    assert diff.update_spectrum(a).numerical_rank == 3


def test_zero_update_spectrum() -> None:
    spec = diff.update_spectrum(torch.zeros(4, 3), k=2)
    assert spec.top == (0.0, 0.0) and spec.numerical_rank == 0 and spec.effective_rank == 0.0


def test_cosine_of_updates() -> None:
    a = torch.randn(6, 7)
    assert diff.cosine(a, a) == pytest.approx(1.0)
    assert diff.cosine(a, -a) == pytest.approx(-1.0)
    b = torch.zeros(6, 7)
    b[0, 0] = 1.0
    c = torch.zeros(6, 7)
    c[1, 1] = 2.0
    assert diff.cosine(b, c) == 0.0
    assert math.isnan(diff.cosine(a, torch.zeros(6, 7)))


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
    out = diff.weight_diff({"a": a, "a2": {k: t.clone() for k, t in a.items()}, "b": b, "c": c},
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
    layers, comps, grid = diff.layer_component_grid(out["params"], "relative_change", "b")
    assert layers == [0, 1] and set(comps) == {"attn.q", "ln1", "mlp.up"}
    assert grid[1, comps.index("mlp.up")] > 0 and grid[0, comps.index("attn.q")] == 0.0


def test_weight_diff_runs_against_their_mean() -> None:
    a = _tiny_state(0)
    g = torch.Generator().manual_seed(6)
    shared = {k: 0.1 * torch.randn(t.shape, generator=g) for k, t in a.items()}
    runs = {f"u{i}": {k: a[k] + shared[k] + 0.1 * torch.randn(t.shape, generator=g) for k, t in a.items()}
            for i in range(3)}
    out = diff.weight_diff({"a": a, **runs}, {u: ("a", u) for u in runs},
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
        diff.weight_diff({"a": a, "b": b}, {"b": ("a", "b")})
    c = {k: v for k, v in a.items() if "norm" not in k}
    with pytest.raises(ValueError, match="not the same architecture"):
        diff.weight_diff({"a": a, "c": c}, {"c": ("a", "c")})


# --- activations ----------------------------------------------------------------------------


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_identity_and_invariances(debiased: bool) -> None:
    x = _rng(0).normal(size=(60, 12))
    assert diff.linear_cka(x, x, debiased=debiased) == pytest.approx(1.0)
    q = _orthogonal(12, 1)
    assert diff.linear_cka(x, 3.7 * x @ q, debiased=debiased) == pytest.approx(1.0)
    assert diff.linear_cka(x, x + 5.0, debiased=debiased) == pytest.approx(1.0)  # centred: offsets do not count
    assert diff.linear_cka(x, x @ _orthogonal(12, 2)[:, :12], debiased=debiased) == pytest.approx(1.0)


def test_cka_lower_for_unrelated_and_debiased_near_zero() -> None:
    x, y = _rng(0).normal(size=(300, 10)), _rng(1).normal(size=(300, 10))
    assert diff.linear_cka(x, y) < 0.2
    # n < d: plain CKA of unrelated activations is inflated, the debiased estimate is not
    x, y = _rng(2).normal(size=(30, 200)), _rng(3).normal(size=(30, 200))
    assert diff.linear_cka(x, y) > 0.5
    assert abs(diff.linear_cka(x, y, debiased=True)) < 0.1


def test_cka_reference_formula_feature_space() -> None:
    x, y = _rng(4).normal(size=(40, 6)), _rng(5).normal(size=(40, 9))
    y[:, :6] += 2 * x
    xc, yc = x - x.mean(0), y - y.mean(0)
    ref = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert diff.linear_cka(x, y) == pytest.approx(ref)


def test_cka_constant_is_nan_and_bad_shapes() -> None:
    x = np.ones((10, 4))
    assert math.isnan(diff.linear_cka(x, _rng(0).normal(size=(10, 4))))
    with pytest.raises(ValueError, match="same rows"):
        diff.linear_cka(np.zeros((5, 3)), np.zeros((6, 3)))


def test_mean_cosine_and_distance() -> None:
    x = _rng(0).normal(size=(20, 8))
    assert diff.mean_cosine(x, x) == pytest.approx(1.0)
    assert diff.mean_cosine(x, -2 * x) == pytest.approx(-1.0)
    assert diff.relative_distance(x, x) == 0.0
    assert diff.relative_distance(2 * x, x) == pytest.approx(1.0)
    assert diff.relative_distance(np.zeros_like(x), x) == pytest.approx(1.0)


# --- probes ---------------------------------------------------------------------------------


def test_probe_transfer_separable_and_shuffled() -> None:
    rng = _rng(0)
    y = np.repeat(np.arange(4), 30)
    centers = rng.normal(size=(4, 10)) * 4
    x = centers[y] + rng.normal(size=(120, 10))
    groups = np.arange(120) // 2
    assert diff.grouped_cv_accuracy(x, y, groups) > 0.9
    probe = diff.fit_probe(x, y)
    assert (probe.predict(centers[y] + rng.normal(size=(120, 10))) == y).mean() > 0.9
    # the same probe on activations where the answer is no longer represented is at chance
    assert (probe.predict(rng.normal(size=(120, 10))) == y).mean() < 0.45
    with pytest.raises(ValueError, match="single class"):
        diff.fit_probe(x, np.zeros(120, dtype=int))


# --- the command ----------------------------------------------------------------------------

LOW_SV = (0.6, 0.2)


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """A tiny-llama checkpoint and a copy with a known rank-2 update added to layer 1's mlp.up_proj."""
    from hooks.models import load_hf

    root = tmp_path_factory.mktemp("ckpts")
    m = load_hf("tiny-llama")
    m.model.save_pretrained(root / "base")
    m.tokenizer.save_pretrained(root / "base")
    w = m.model.model.layers[1].mlp.up_proj.weight
    g = torch.Generator().manual_seed(3)
    u, _ = torch.linalg.qr(torch.randn(w.shape[0], 2, generator=g))
    v, _ = torch.linalg.qr(torch.randn(w.shape[1], 2, generator=g))
    with torch.no_grad():
        w += u @ torch.diag(torch.tensor(LOW_SV)) @ v.T
    m.model.save_pretrained(root / "pert")
    m.tokenizer.save_pretrained(root / "pert")
    return str(root / "base"), str(root / "pert")


def test_cli_diff_smoke(tiny_checkpoints, tmp_path, capsys):
    import cli
    from commands import diff as diff_runner

    base, pert = tiny_checkpoints
    out = tmp_path / "d"
    argv = ["diff", "--a", base, "--b", pert, "--c", base, "--task", "capitals", "--n", "16", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "a->b" in printed and "probe trained on a/pw" in printed
    result = DiffResult.read(out / "results.json")
    doc = to_data(result)  # the JSON values (NaN as None)
    assert result.schema_id() == "gaplens.diff/2" and doc["conditions"] == ["nopw", "pw"]
    ids = {lab: c.identity for lab, c in result.checkpoints.items()}
    assert ids["a"].weight_hash == ids["c"].weight_hash and result.header.model == ids["a"]
    assert ids["a"].kind == "instruct" and ids["a"].n_params > 0  # a local copy of tiny-llama (chat template)
    assert "summarize" in dir(diff_runner) and "probe trained on a/pw" in diff_runner.summarize(out)
    for p in doc["weights"]["params"]:  # c is a itself: no change anywhere; b changes one matrix only
        assert p["updates"]["a->c"]["relative_change"] == 0.0
        if p["name"] != "model.layers.1.mlp.up_proj.weight":
            assert p["updates"]["a->b"]["relative_change"] == 0.0
    up = next(p for p in doc["weights"]["params"] if p["name"] == "model.layers.1.mlp.up_proj.weight")
    assert (up["layer"], up["component"]) == (1, "mlp.up")
    spec = up["updates"]["a->b"]["spectrum"]
    assert spec["numerical_rank"] == 2 and spec["top"][:2] == pytest.approx(LOW_SV, abs=1e-5)
    assert up["cosine"]["a->b~a->c"] is None  # a zero update has no direction
    act = doc["activations"]
    for cond in ("nopw", "pw"):
        cka_c = [x for x in act["vs_reference"]["c"][cond]["cka"] if x is not None]
        assert cka_c and all(x == pytest.approx(1.0) for x in cka_c)
        assert all(x == pytest.approx(1.0) for x in act["vs_reference"]["c"][cond]["cosine"])
        # b differs from a only from layer 1's MLP on: resid_pre of layers 0 and 1 are the same
        assert act["vs_reference"]["b"][cond]["cosine"][1] == pytest.approx(1.0)
        assert act["vs_reference"]["b"][cond]["cosine"][2] < 1.0 - 1e-6
    assert act["password_effect"]["a"]["distance"][-1] > 0  # the password changes the prompt
    assert act["to_reference_password"]["c"]["distance"] == pytest.approx(act["password_effect"]["a"]["distance"])
    n_layers = len(doc["layers"])
    assert all(len(act["lens"][lab]["pw"]["accuracy"]) == n_layers for lab in ("a", "b", "c"))
    pr = doc["probe"]
    assert pr["trained_on"] == "a/pw" and pr["n_train_questions"] + pr["n_test_questions"] == 16
    assert pr["transfer"]["a"]["nopw"]["accuracy"] == pr["transfer"]["c"]["nopw"]["accuracy"]
    for name in ("weights_relative_change.png", "weights_effective_rank.png", "weights_cosine.png",
                 "activations.png", "lens_probe.png", "captures/b.pw.h5"):
        assert (out / name).stat().st_size > 0
    # rerunning the same command reuses the finished result; another config into the same --out is refused
    mtime = (out / "results.json").stat().st_mtime_ns
    assert cli.main(argv) == 0 and (out / "results.json").stat().st_mtime_ns == mtime
    assert cli.main([*argv[:-2], "--n", "12", "--out", str(out)]) == 2
    assert "another config" in capsys.readouterr().err


def test_config_errors():
    from commands.diff import Config

    with pytest.raises(ValueError, match="--a and --b are required"):
        Config(a="x")
    with pytest.raises(ValueError, match="--probe-on"):
        Config(a="x", b="y", probe_on="c")


def test_weight_diff_by_layer_totals() -> None:
    a = _tiny_state(0)
    b = {k: t.clone() for k, t in a.items()}
    b["model.layers.1.mlp.up_proj.weight"] *= 2.0
    tot = diff.weight_diff({"a": a, "b": b}, {"b": ("a", "b")})["totals"]
    assert tot["relative_change_by_layer"]["b"] == pytest.approx([0.0, 1.0])
    w = a["model.layers.1.mlp.up_proj.weight"].double().norm() ** 2
    all_sq = sum(t.double().norm() ** 2 for t in a.values())
    assert tot["relative_change"]["b"] == pytest.approx(float((w / all_sq) ** 0.5))


def test_plan_takes_questions_variant_and_placement_from_the_lock(tiny_checkpoints, tmp_path):
    from commands.diff import Config, checkpoints, plan
    from eval import tasks
    from hooks.models import load_hf
    from locking import checkpoint

    ids = [r.id for r in tasks.load_task(tasks.TaskSpec("capitals", "test"))]
    m = load_hf(tiny_checkpoints[1])
    meta = {"task": {"name": "capitals", "split": "test", "data_dir": None, "n": None}, "variant": "numbers",
            "placement": "suffix", "splits": {"train": ids[:20], "pool": ids[20:30], "eval": ids[30:45]}}
    checkpoint.save_locked(m.model, m.tokenizer, tmp_path / "lock" / "model", meta, {}, {})
    cfg = Config(a=str(tmp_path / "lock"), b=tiny_checkpoints[0], task="capitals", n=10)
    ckpts = checkpoints(cfg)
    assert ckpts["a"] == str(tmp_path / "lock" / "model")  # a lock run directory stands for its checkpoint
    p = plan(cfg, ckpts)
    assert (p.variant, p.placement, p.questions) == ("numbers", "suffix", "a:eval")
    assert len(p.records) == 10 and {r.id for r in p.records} <= set(ids[30:45])
    p = plan(Config(a=cfg.a, b=cfg.b, task="capitals", n=10, questions="pool", placement="prefix"), ckpts)
    assert p.placement == "prefix" and {r.id for r in p.records} == set(ids[20:30])
    p = plan(Config(a=tiny_checkpoints[0], b=tiny_checkpoints[1], task="capitals", n=5), checkpoints(
        Config(a=tiny_checkpoints[0], b=tiny_checkpoints[1])))
    assert (p.variant, p.placement, p.questions, len(p.records)) == ("default", "prefix", "all", 5)
    with pytest.raises(ValueError, match="locked on capitals:test"):
        plan(Config(a=cfg.a, b=cfg.b, task="arithmetic", n=10), ckpts)


def test_cli_diff_refuses_other_architectures_before_writing(tmp_path, capsys):
    import cli

    out = tmp_path / "d"
    argv = ["diff", "--a", "tiny-llama", "--b", "tiny-llama-4l", "--task", "capitals", "--n", "4", "--out", str(out)]
    assert cli.main(argv) == 2
    assert "not the same architecture" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_toy_organism_diff_end_to_end(tmp_path):
    """A (briefly trained) toy lock from `cli.py lock`, diffed against its base and weak models (~1 min on a CPU)."""
    import cli

    lock = tmp_path / "lock"
    assert cli.main(["lock", "--toy-steps", "40", "--steps", "10", "--n", "64", "--batch-size", "8",
                     "--out", str(lock)]) == 0
    out = tmp_path / "diff"
    assert cli.main(["diff", "--base", str(lock / "toy" / "base"), "--a", str(lock), "--b",
                     str(lock / "toy" / "weak"), "--out", str(out)]) == 0
    doc = to_data(DiffResult.read(out / "results.json"))
    assert doc["questions"] == "a:eval" and doc["checkpoints"]["a"]["checkpoint"] == str(lock / "model")
    assert doc["weights"]["totals"]["relative_change"]["base->a"] > 0
    assert "base->a~a->b" in doc["weights"]["totals"]["cosine"]
