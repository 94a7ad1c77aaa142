"""The capture runner and the HDF5 store: layout, provenance, resume after interruption, reuse."""

from __future__ import annotations

import numpy as np
import pytest

import hooks.capture as run_mod
from hooks.capture import CaptureConfig, capture
from hooks.store import Store, StoreError, parts_dir

CFG = CaptureConfig(model="tiny-llama", task="capitals", n=12, variants=("default", "option", "numbers"), batch_size=4)


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    """Blocks of 8 rows, so a 72-row store has 9 of them to interrupt and resume."""
    monkeypatch.setattr(run_mod, "BLOCK_ROWS", 8)


def test_store_layout_and_provenance(tiny_model, tmp_path):
    path = capture(CFG, tmp_path / "a.h5", model=tiny_model)
    with Store(path) as s:
        assert len(s) == 12 * 2 + 12 * 4  # two lettered variants + one option row per choice
        assert set(s.variants()) == {"default", "option", "numbers"}
        assert s.layers == list(range(tiny_model.n_layers + 1))
        assert s.resid_shape == (len(s), tiny_model.n_layers + 1, tiny_model.d_model)
        lettered = s.mask(lettered=True)
        assert np.isfinite(s.array("answer_logits", lettered)).all()
        assert np.isnan(s.array("answer_logits", ~lettered)).all()
        assert np.isfinite(s.array("option_logprob", ~lettered)).all()
        # exactly one gold option per (question, option variant)
        opt = ~lettered
        golds = {q: 0 for q in set(s.rows["question_id"][opt])}
        for q, lab in zip(s.rows["question_id"][opt], s.rows["label"][opt], strict=True):
            golds[q] += lab
        assert set(golds.values()) == {1}
        for key in ("model", "weight_hash", "task", "split", "seed", "package_version", "variants"):
            assert key in s.provenance
        assert s.provenance["weight_hash"] == tiny_model.weight_hash


def test_interrupted_capture_resumes_without_redoing_blocks(tiny_model, tmp_path, monkeypatch):
    full = capture(CFG, tmp_path / "full.h5", model=tiny_model)
    calls = []
    real = run_mod._run_block

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_mod, "_run_block", flaky)
    target = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        capture(CFG, target, model=tiny_model)
    assert not target.exists() and parts_dir(target).exists()
    with pytest.raises(StoreError, match="unfinished capture"):
        Store(target)
    calls.clear()
    monkeypatch.setattr(run_mod, "_run_block", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    capture(CFG, target, model=tiny_model)
    with Store(full) as a, Store(target) as b:
        n_blocks = -(-len(a) // 8)
        assert len(calls) == n_blocks - 2  # the two finished blocks were not recomputed
        np.testing.assert_array_equal(a.resid_rows(), b.resid_rows())
        assert a.checksum == b.checksum and b.verify()
        np.testing.assert_allclose(a.array("option_logprob"), b.array("option_logprob"), equal_nan=True)


def test_finished_capture_is_reused_and_other_config_refused(tiny_model, tmp_path, monkeypatch):
    path = capture(CFG, tmp_path / "a.h5", model=tiny_model)
    monkeypatch.setattr(run_mod, "_run_block", lambda *a, **k: pytest.fail("should reuse"))
    capture(CFG, path, model=tiny_model)
    other = CaptureConfig(**{**CFG.__dict__, "n": 5})
    with pytest.raises(FileExistsError, match="different capture config"):
        capture(other, path, model=tiny_model)


def test_bad_variant_and_layers_fail_before_writing(tiny_model, tmp_path):
    with pytest.raises(ValueError):
        capture(CaptureConfig(**{**CFG.__dict__, "variants": ("nonsense",)}), tmp_path / "x.h5", model=tiny_model)
    with pytest.raises(ValueError, match="outside"):
        capture(CaptureConfig(**{**CFG.__dict__, "layers": (0, 99)}), tmp_path / "y.h5", model=tiny_model)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="need their generations file"):
        capture(CaptureConfig(**{**CFG.__dict__, "variants": ("default", "cot")}), tmp_path / "z.h5",
                model=tiny_model)
    assert list(tmp_path.iterdir()) == []


def test_fields_added_with_hash_if_set_keep_old_hashes_and_ui_fields_never_count():
    import dataclasses

    from core.provenance import config_hash, to_jsonable

    meta = {f.name: f.metadata for f in dataclasses.fields(CFG)}
    old = {k: v for k, v in to_jsonable(CFG).items() if not meta[k].get("ui") and not meta[k].get("hash_if_set")}
    import hashlib
    import json

    assert config_hash(CFG) == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    assert config_hash(dataclasses.replace(CFG, generations="g.jsonl")) != config_hash(CFG)
    assert config_hash(dataclasses.replace(CFG, threads=3)) == config_hash(CFG)


@pytest.mark.numerics
def test_option_rows_equal_whole_sequences_at_any_batch_size(tiny_model, tmp_path):
    """The capture's batched shared-prefix option rows equal each row run whole and alone, whether a batch
    holds one question or several (padding of prefixes and continuations differs)."""
    import dataclasses

    from hooks import forward as cap

    one = capture(dataclasses.replace(CFG, batch_size=1), tmp_path / "one.h5", model=tiny_model)
    many = capture(dataclasses.replace(CFG, batch_size=16), tmp_path / "many.h5", model=tiny_model)
    plan = sorted(run_mod.plan_rows(tiny_model, run_mod.tasks.load_task(run_mod.tasks.TaskSpec(CFG.task, CFG.split),
                                                                        n=CFG.n, seed=CFG.seed),
                                    run_mod.variants.variant_set(",".join(CFG.variants)), [], CFG.seed),
                  key=run_mod.row_order)
    opt_rows = [r for r in plan if r.option_index >= 0]
    layers = list(range(tiny_model.n_layers + 1))
    whole = [cap.hooked_forward(tiny_model, [r.ids], layers=layers, n_cont=[r.n_cont]) for r in opt_rows]
    ref_lp = np.array([w.logprob_sum[0].item() for w in whole])
    ref_resid = np.stack([w.resid[0].cpu().numpy() for w in whole])
    for path in (one, many):
        with Store(path) as s:
            opt = ~s.mask(lettered=True)
            assert opt.sum() == len(opt_rows)
            np.testing.assert_allclose(s.array("option_logprob", opt), ref_lp, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(s.resid_rows(opt), ref_resid, rtol=1e-2, atol=1e-2)  # float16 store


def test_a_store_with_fewer_variants_supplies_its_rows(tiny_model, tmp_path, monkeypatch):
    import dataclasses

    path = tmp_path / "s.h5"
    capture(CFG, path, model=tiny_model)
    bigger = dataclasses.replace(CFG, variants=("default", "option", "numbers", "rotate:1"))
    with pytest.raises(FileExistsError, match="different capture config"):
        capture(bigger, path, model=tiny_model)  # without reuse_rows
    with pytest.raises(FileExistsError, match="different capture config"):
        capture(dataclasses.replace(bigger, n=10), path, model=tiny_model, reuse_rows=True)  # other questions
    computed = []
    real = run_mod._run_block
    monkeypatch.setattr(run_mod, "_run_block", lambda m, rows, *a, **k: (computed.extend(rows), real(m, rows, *a, **k))[1])
    capture(bigger, path, model=tiny_model, reuse_rows=True)
    assert computed and {r.variant for r in computed} == {"rotate:1"}
    monkeypatch.setattr(run_mod, "_run_block", real)
    fresh = capture(bigger, tmp_path / "fresh.h5", model=tiny_model)
    with Store(path) as a, Store(fresh) as b:
        assert a.config_hash == b.config_hash
        key = lambda s: [f"{q}|{v}|{o}" for q, v, o in zip(s.rows["question_id"], s.rows["variant_id"],  # noqa: E731
                                                            s.rows["option_index"], strict=True)]
        ia, ib = np.argsort(key(a)), np.argsort(key(b))
        for name in ("answer_logits", "option_logprob", "lens_logits"):
            np.testing.assert_allclose(a.array(name)[ia], b.array(name)[ib], rtol=1e-4, atol=1e-4, equal_nan=True)
        np.testing.assert_allclose(a.resid_rows(ia), b.resid_rows(ib), rtol=1e-2, atol=1e-2)


def test_batch_size_auto_halves_on_out_of_memory_and_gives_the_same_store(tiny_model, tmp_path, monkeypatch):
    """--batch-size auto: a pass over more rows than the device holds (simulated) halves the budget and continues;
    the store equals a fixed-size capture's."""
    import dataclasses

    import torch

    from hooks import forward as cap

    fixed = capture(CFG, tmp_path / "fixed.h5", model=tiny_model)
    real_fwd, real_shared, sizes = cap.hooked_forward, cap.hooked_forward_shared_prefix, []

    def small_device(model, seqs, **kw):
        sizes.append(len(seqs))
        if len(seqs) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_fwd(model, seqs, **kw)

    def small_device_shared(model, groups, **kw):
        if sum(len(c) for _, c in groups) > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_shared(model, groups, **kw)

    monkeypatch.setattr(cap, "hooked_forward", small_device)
    monkeypatch.setattr(cap, "hooked_forward_shared_prefix", small_device_shared)
    monkeypatch.setattr(run_mod.Budget, "of", classmethod(lambda c, cfg, device: c(64, 65536, auto=True)))
    auto = capture(dataclasses.replace(CFG, batch_size="auto"), tmp_path / "auto.h5", model=tiny_model)
    assert max(sizes) > 3 and sizes[-1] <= 3  # it tried big, then ran at the size that fits
    with Store(fixed) as a, Store(auto) as b:
        np.testing.assert_allclose(a.array("answer_logits"), b.array("answer_logits"), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(a.array("option_logprob"), b.array("option_logprob"), rtol=1e-4, atol=1e-4,
                                   equal_nan=True)
        np.testing.assert_allclose(a.resid_rows(), b.resid_rows(), rtol=1e-2, atol=1e-2)
