"""Fault injection: nothing is lost and nothing stale is served (a killed process, a write error, an edited task
file, damaged files)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import hooks.capture as run_mod
import hooks.store as store_mod
from hooks.capture import CaptureConfig, capture
from hooks.store import Store, StoreError, parts_dir

ROOT = Path(__file__).resolve().parent.parent


def _task(path: Path, answers: list[int]) -> Path:
    rows = [{"id": f"q{i}", "question": f"Which number is {i}?", "choices": [str(i), str(i + 1), str(i + 2)],
             "answer": a} for i, a in enumerate(answers)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_an_edited_task_file_is_never_served_stale(tiny_model, tmp_path, caplog):
    data = _task(tmp_path / "t.jsonl", [0] * 10)
    cfg = CaptureConfig(model="tiny-llama", task=f"jsonl:{data}", variants=("default",), batch_size=4)
    path = capture(cfg, tmp_path / "s.h5", model=tiny_model)
    with Store(path) as s:
        before, labels = s.checksum, s.rows["label"].copy()
    _task(data, [2] * 10)  # every answer changed, same questions
    capture(cfg, path, model=tiny_model)
    assert "captured from other inputs (data changed)" in caplog.text
    with Store(path) as s:
        assert s.checksum != before and (s.rows["label"] != labels).all()


def test_an_edited_task_file_recomputes_the_probe_results(tmp_path, capsys):
    import cli

    data = _task(tmp_path / "t.jsonl", [i % 3 for i in range(16)])
    args = ["probe", "--model", "tiny-llama", "--task", f"jsonl:{data}", "--n-shuffles", "1", "--out",
            str(tmp_path / "p")]
    assert cli.main(args) == 0
    first = json.loads((tmp_path / "p" / "results.json").read_text())
    _task(data, [(i + 1) % 3 for i in range(16)])
    assert cli.main(args) == 0
    second = json.loads((tmp_path / "p" / "results.json").read_text())
    assert second["header"]["inputs"]["store"] != first["header"]["inputs"]["store"]
    assert second["prompted"] != first["prompted"]


def test_a_failed_block_write_keeps_every_finished_block(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(run_mod, "BLOCK_ROWS", 8)
    cfg = CaptureConfig(model="tiny-llama", task="capitals", n=10, variants=("default", "option"), batch_size=4)
    clean = capture(cfg, tmp_path / "clean.h5", model=tiny_model)
    real, writes = store_mod._fsync_write, []

    def full_disk(path, write):  # the fourth block file hits a full disk, half written
        if path.name.startswith("block-"):
            writes.append(path.name)
            if len(writes) == 4:
                def torn(fh):
                    fh.write(b"PK\x03\x04 half a block")
                    raise OSError(errno.ENOSPC, "No space left on device")

                return real(path, torn)
        return real(path, write)

    monkeypatch.setattr(store_mod, "_fsync_write", full_disk)
    target = tmp_path / "s.h5"
    with pytest.raises(StoreError, match="writing block 3 failed .*No space left.* kept in"):
        capture(cfg, target, model=tiny_model)
    kept = sorted(p.name for p in parts_dir(target).glob("block-*.npz"))
    assert kept == ["block-00000.npz", "block-00001.npz", "block-00002.npz"]
    assert not list(parts_dir(target).glob("*.tmp"))
    monkeypatch.setattr(store_mod, "_fsync_write", real)
    computed = []
    real_block = run_mod._run_block
    monkeypatch.setattr(run_mod, "_run_block", lambda m, rows, *a, **k: (computed.append(len(rows)),
                                                                           real_block(m, rows, *a, **k))[1])
    capture(cfg, target, model=tiny_model)
    with Store(clean) as a, Store(target) as b:
        assert len(computed) == -(-len(a) // 8) - 3  # only the blocks that were not finished
        assert a.checksum == b.checksum and b.verify()


def test_free_space_is_checked_before_starting(tiny_model, tmp_path, monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(store_mod.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 1000))
    cfg = CaptureConfig(model="tiny-llama", task="capitals", n=10, variants=("default",))
    with pytest.raises(StoreError, match=r"needs about .* GiB .* free"):
        capture(cfg, tmp_path / "s.h5", model=tiny_model)
    assert not parts_dir(tmp_path / "s.h5").exists()


def test_damaged_files_are_named_with_the_remedy(tiny_model, tmp_path, caplog):
    cfg = CaptureConfig(model="tiny-llama", task="capitals", n=6, variants=("default",))
    path = capture(cfg, tmp_path / "s.h5", model=tiny_model)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=rf"{path}: not a readable HDF5 store .* delete it and rerun"):
        Store(path)
    from core.rundir import results_to_reuse

    res = tmp_path / "results.json"
    res.write_text('{"config_hash": "ab')  # truncated
    assert results_to_reuse(res, config={}, config_hash="ab") is False
    assert f"{res} is unreadable" in caplog.text


def test_a_store_without_its_completion_record_is_never_read(tiny_model, tmp_path):
    import h5py

    cfg = CaptureConfig(model="tiny-llama", task="capitals", n=6, variants=("default",))
    path = capture(cfg, tmp_path / "s.h5", model=tiny_model)
    with h5py.File(path, "a") as f:  # the test plays a writer that died before completing
        del f.attrs["complete"]
    with pytest.raises(StoreError, match="incomplete"):
        Store(path)


def test_kill_9_during_a_capture_resumes_to_the_same_bytes(tmp_path):
    """A probe run killed with SIGKILL mid-capture, then rerun: its store equals an uninterrupted run's."""
    args = [sys.executable, "cli.py", "probe", "--model", "tiny-llama", "--n", "120", "--n-shuffles", "1"]
    subprocess.run([*args, "--out", str(tmp_path / "clean")], cwd=ROOT, check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    parts = parts_dir(out / "activations.h5")
    deadline = time.time() + 120
    while time.time() < deadline and not list(parts.glob("block-*.npz")) and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if not list(parts.glob("block-*.npz")):
        pytest.skip("the capture finished before it could be killed")
    rerun = subprocess.run([*args, "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "no longer running" in rerun.stderr  # the dead run's lock was taken over
    with Store(tmp_path / "clean" / "activations.h5") as a, Store(out / "activations.h5") as b:
        assert a.checksum == b.checksum
        np.testing.assert_array_equal(a.resid_rows(), b.resid_rows())


def test_a_prompt_longer_than_the_context_is_named_before_the_model_loads(tmp_path, monkeypatch):
    import hooks.capture as cap_mod

    rows = [{"id": "short", "question": "Which is first?", "choices": ["a", "b"], "answer": 0},
            {"id": "huge", "question": "word " * 3000 + "Which?", "choices": ["a", "b"], "answer": 1}]
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(cap_mod, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    cfg = CaptureConfig(model="tiny-llama", task=f"jsonl:{data}", variants=("default", "option"))
    with pytest.raises(ValueError, match=r"context of 1024 tokens; the longest: question huge, variant \w+, \d{4} "
                                         r"tokens.*--truncate left"):
        capture(cfg, tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists() and not parts_dir(tmp_path / "s.h5").exists()
    monkeypatch.undo()
    import dataclasses

    path = capture(dataclasses.replace(cfg, truncate="left"), tmp_path / "t.h5")
    with Store(path) as s:
        assert s.provenance["truncated"]["questions"] == 1 and s.provenance["truncated"]["context"] == 1024
        assert s.rows["n_tokens"].max() <= 1024


def test_a_lock_killed_mid_training_resumes_to_the_same_model(tmp_path):
    """The toy lock killed with SIGKILL after a training checkpoint, then rerun: the same final weights and metrics
    as an uninterrupted lock."""
    from safetensors.torch import load_file

    toy = tmp_path / "toy"
    args = [sys.executable, "cli.py", "lock", "--toy-steps", "40", "--steps", "160", "--n", "64", "--batch-size", "8",
            "--checkpoint-every", "10", "--toy-dir", str(toy)]
    subprocess.run([*args, "--out", str(tmp_path / "clean")], cwd=ROOT, check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "train_checkpoint.pt").exists() and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if not (out / "train_checkpoint.pt").exists():
        pytest.skip("the lock finished before it could be killed")
    rerun = subprocess.run([args[0], "cli.py", "-v", *args[2:], "--out", str(out)], cwd=ROOT, capture_output=True,
                           text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stderr and not (out / "train_checkpoint.pt").exists()
    a = load_file(next((tmp_path / "clean" / "model").glob("*.safetensors")))
    b = load_file(next((out / "model").glob("*.safetensors")))
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    ra = json.loads((tmp_path / "clean" / "results.json").read_text())
    rb = json.loads((out / "results.json").read_text())
    assert ra["metrics"] == rb["metrics"]
