"""Run directories: early checks, one command per directory, one writer at a time, stale locks taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.rundir import LOCK_NAME, MARKER_NAME, RunDirError, run_directory

ROOT = Path(__file__).resolve().parent.parent
HOLD = "import sys, time\nfrom core.rundir import run_directory\nwith run_directory(sys.argv[1], 'probe'):\n" \
       "    print('locked', flush=True)\n    time.sleep(60)\n"


def _holder(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path, caplog):
    out = tmp_path / "run"
    proc = _holder(out)
    try:
        with pytest.raises(RunDirError, match=rf"being written by `probe` \(pid {proc.pid} on "):
            with run_directory(out, "probe"):
                pytest.fail("entered a locked directory")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (out / LOCK_NAME).exists()  # kill -9 leaves the lock behind
    with run_directory(out, "probe"):
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert "no longer running" in caplog.text
    assert not (out / LOCK_NAME).exists()


def test_a_command_never_writes_another_commands_directory(tmp_path):
    out = tmp_path / "run"
    with run_directory(out, "probe"):
        (out / "results.json").write_text("{}")
    with pytest.raises(RunDirError, match="is a `probe` run directory; `eval` does not write"):
        with run_directory(out, "eval"):
            pytest.fail("entered")
    with run_directory(out, "probe"):  # the same command again is fine
        pass
    assert json.loads((out / MARKER_NAME).read_text())["command"] == "probe"


def test_out_under_a_file_or_unwritable_fails_before_anything_is_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a directory"):
        with run_directory(blocker / "run", "probe"):
            pass
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(RunDirError, match="not writable|cannot create"):
            with run_directory(ro / "run", "probe"):
                pass


def test_a_failure_leaves_no_new_empty_directory(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(ValueError, match="boom"), run_directory(out, "probe"):
        raise ValueError("boom")
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="boom"), run_directory(out, "probe"):
        raise ValueError("boom")
    assert (out / "keep.txt").exists() and not (out / LOCK_NAME).exists()


def test_two_cli_runs_on_one_out_second_is_refused(tmp_path):
    """The issue's failure: two probe runs started seconds apart on the same --out. The second is refused at once
    (exit 2) instead of deleting the first one's unfinished capture."""
    out = tmp_path / "probe"
    first = subprocess.Popen([sys.executable, "cli.py", "probe", "--model", "tiny-llama", "--n", "60",
                              "--n-shuffles", "1", "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if (out / LOCK_NAME).exists():
                break
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "cli.py", "probe", "--model", "tiny-llama", "--n", "16",
                                 "--n-shuffles", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
        assert second.returncode == 2 and "being written by `probe`" in second.stderr
    finally:
        assert first.wait(timeout=300) == 0
    assert (out / "results.json").exists() and not (out / LOCK_NAME).exists()
