"""Tests for the `diff` command: smoke tests on tiny checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.schemas import DiffResult, to_data


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _orthogonal(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(_rng(seed).normal(size=(d, d)))
    return q


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
    assert result.schema_id() == "gaplens.diff/3" and doc["conditions"] == ["nopw", "pw"]
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
