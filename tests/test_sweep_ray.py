"""Tests of the sweep on Ray with real tiny-model cells: concurrency, a failing cell, a killed driver and its rerun,
resources that fit no node, and (slow) the same config against a `ray start` cluster by address.

One embedded Ray (2 CPUs, loopback) serves the whole module; the sweeps run in this process and use it. The
killed driver and the cluster test run `cli.py sweep` as subprocesses, each with its own Ray.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands import report, sweep
from grid import cellrun
from grid.executors import EMBEDDED_ENV, Launch, RayExecutor

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """An embedded Ray with 2 CPUs for the module, shut down after it (the environment restored)."""
    saved = dict(os.environ)
    with RayExecutor(cpus=2):
        yield
    os.environ.clear()
    os.environ.update(saved)


def spec(out: Path, cache: Path, **over) -> dict:
    return {"out": str(out), "models": ["tiny-llama", "tiny-llama-4l"], "tasks": ["capitals"],
            "variants": "default,option", "methods": ["eval", "transfer"], "n": 8, "seed": 0,
            "eval": {"resid": True, "n_boot": 200}, "transfer": {"store": "@eval", "train_variant": "default"},
            "env": {"HF_HUB_OFFLINE": "1", "GAPLENS_CACHE": str(cache)}, **over}


def write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def cell_docs(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/cell.json"))}


def report_numbers(sweep_dir: Path, out: Path) -> tuple:
    """The report's tidy rows (run directories by name) and manifest numbers: what must not depend on how the
    sweep ran."""
    rep = report.run(report.Config(runs=(str(sweep_dir),), out=str(out)))
    with (rep / "results.csv").open() as fh:
        rows = sorted(tuple({**r, "run_dir": Path(r["run_dir"]).name}.items()) for r in csv.DictReader(fh))
    m = json.loads((rep / "report.json").read_text())
    return rows, m["summary"], m["n_rows"], m["kinds"], m["figures"], sorted(Path(r).name for r in m["runs"])


@pytest.fixture(scope="module")
def uninterrupted(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep of 2 eval cells and their 2 transfer cells, run once without interruption."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    path = write(tmp / "sweep.json", spec(tmp / "sweep", tmp / "cache"))
    return sweep.run(sweep.Config(config=str(path)))


def test_cells_run_concurrently_on_two_workers(uninterrupted: Path) -> None:
    docs = cell_docs(uninterrupted)
    assert len(docs) == 4 and all(d["status"] == "done" for d in docs.values())
    evals = [d for d in docs.values() if d["method"] == "eval"]
    assert max(d["started_unix"] for d in evals) < min(d["finished_unix"] for d in evals)  # they overlapped
    for d in docs.values():
        if d["method"] == "transfer":
            (parent,) = d["after"]
            assert d["started_unix"] >= docs[parent]["finished_unix"]  # ran after the eval it reads
            assert d["model"] == docs[parent]["model"]
        assert d["resources"]["gpus"] == 0 and d["host"] == socket.gethostname()
    rec = json.loads((uninterrupted / "sweep.json").read_text())
    assert rec["progress"]["done"] == 4 and rec["progress"]["left"] == 0 and rec["executor"] == "ray"
    assert "4 cells (4 done)" in sweep.summarize(uninterrupted)


def test_a_failing_cell_is_reported_with_its_log(local_ray: None, tmp_path: Path) -> None:
    path = write(tmp_path / "sweep.json", spec(tmp_path / "sweep", tmp_path / "cache", models=["tiny-llama"],
                                               tasks=["no-such-task"]))
    with pytest.raises(sweep.SweepFailed, match="2 of 2 cells failed") as err:
        sweep.run(sweep.Config(config=str(path)))
    docs = cell_docs(tmp_path / "sweep")
    ev = next(d for d in docs.values() if d["method"] == "eval")
    tr = next(d for d in docs.values() if d["method"] == "transfer")
    assert ev["status"] == "failed" and ev["returncode"] == 2 and tr["status"] == "blocked"
    log_path = next((tmp_path / "sweep").glob("eval-*/cell.log"))
    assert str(log_path) in str(err.value) and "no-such-task" in log_path.read_text()


def _cell_processes(out: Path) -> list[int]:
    """Pids of processes whose command line names `out` (the cells of a sweep there)."""
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and str(out) in (p / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(p.name))
        except OSError:
            continue
    return pids


def test_killed_driver_then_rerun_runs_only_unfinished_cells(uninterrupted: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "sweep.json", spec(tmp_path / "sweep", tmp_path / "cache"))
    out = tmp_path / "sweep"
    driver = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "sweep", str(path)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **EMBEDDED_ENV},
                              start_new_session=True)
    try:
        deadline = time.time() + 300
        while not any(d.get("status") == "done" for d in cell_docs(out).values()):
            assert driver.poll() is None and time.time() < deadline, "the driver ended before a cell finished"
            time.sleep(0.5)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    before = cell_docs(out)
    finished = {n: d["attempt"] for n, d in before.items() if d["status"] == "done"}
    assert 1 <= len(finished) < 4
    deadline = time.time() + 60
    while _cell_processes(out):  # the cells die with their workers (parent-death signal)
        assert time.time() < deadline, f"cells still running after their driver was killed: {_cell_processes(out)}"
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):  # Ray's agents would wait ~2 min for their raylet; end them now
        os.killpg(driver.pid, signal.SIGKILL)

    sweep.run(sweep.Config(config=str(path)))
    after = cell_docs(out)
    assert all(d["status"] == "done" for d in after.values()) and len(after) == 4
    for name, attempt in finished.items():  # not run again
        assert after[name]["attempt"] == attempt
        assert (out / name / "cell.log").read_text().count("\n$ ") == 1
    rec = json.loads((out / "sweep.json").read_text())
    skipped = {n for n, c in rec["cells"].items() if c["status"] == "skipped (done)"}
    assert set(finished) <= skipped and len(skipped) < 4  # (a runner may record done after `before` was read)
    assert report_numbers(out, tmp_path / "rep") == report_numbers(uninterrupted, tmp_path / "rep0")


def test_cells_no_node_can_hold_and_invisible_paths_are_refused(local_ray: None, tmp_path: Path) -> None:
    path = write(tmp_path / "sweep.json", spec(tmp_path / "sweep", tmp_path / "cache", resources={"cpus": 64}))
    with pytest.raises(ValueError, match=r"needs 64 CPUs, 0 GPUs and 3 GiB, which no Ray node has"):
        sweep.run(sweep.Config(config=str(path)))
    assert not list((tmp_path / "sweep").glob("*/cell.json"))
    ex = RayExecutor()
    with ex:
        with pytest.raises(ValueError, match=r"same paths \(a shared filesystem\).*cli.py /nowhere/cli.py does not"):
            ex.prepare([], tmp_path, Launch(cli="/nowhere/cli.py", cwd=str(ROOT)))
    assert not (tmp_path / ".gaplens-node-check").exists()
    assert cellrun.CELL_JSON == "cell.json"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def ray_cluster() -> Iterator[tuple[str, str]]:
    """A one-node cluster from `ray start --head --block` on loopback (stopped by its pid, never `ray stop`,
    which would stop every Ray on this machine); yields (HOST:PORT, ray://HOST:CLIENT_PORT)."""
    port, client, agent, metrics, grpc, runtime_env = _free_ports(6)
    temp = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths live under it
    ray_bin = Path(sys.executable).parent / "ray"
    log = Path(temp) / "head.log"
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "2", "--num-gpus", "0", "--disable-usage-stats", "--include-dashboard", "false",
         "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
         "--metrics-export-port", str(metrics), "--dashboard-agent-grpc-port", str(grpc),
         "--runtime-env-agent-port", str(runtime_env), "--object-store-memory", str(100 * 2**20), "--temp-dir", temp],
        env={**os.environ, **EMBEDDED_ENV}, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.time() < deadline, f"ray start --head failed:\n{log.read_text()}"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", f"ray://127.0.0.1:{client}"
    finally:
        head.terminate()  # --block: SIGTERM stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_the_same_config_on_a_ray_cluster_by_address(uninterrupted: Path, ray_cluster: tuple[str, str],
                                                       tmp_path: Path) -> None:
    address, client = ray_cluster
    env = {**os.environ, **EMBEDDED_ENV}  # loopback, as the cluster was started
    path = write(tmp_path / "sweep.json", spec(tmp_path / "sweep", tmp_path / "cache"))
    t0 = time.time()
    res = subprocess.run([sys.executable, "cli.py", "sweep", str(path), "--address", address], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    print(f"sweep on {address}: {time.time() - t0:.1f} s\n{res.stdout}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert report_numbers(tmp_path / "sweep", tmp_path / "rep") == report_numbers(uninterrupted, tmp_path / "rep0")

    path = write(tmp_path / "client.json", spec(tmp_path / "client", tmp_path / "cache", models=["tiny-llama"],
                                                methods=["eval"]))
    t0 = time.time()
    res = subprocess.run([sys.executable, "cli.py", "sweep", str(path), "--address", client], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    print(f"sweep on {client}: {time.time() - t0:.1f} s\n{res.stdout}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert all(d["status"] == "done" for d in cell_docs(tmp_path / "client").values())


@pytest.mark.slow
def test_ctrl_c_cancels_the_cells_and_a_rerun_finishes_them(tmp_path: Path) -> None:
    path = write(tmp_path / "sweep.json", spec(tmp_path / "sweep", tmp_path / "cache", methods=["eval"]))
    out = tmp_path / "sweep"
    driver = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "sweep", str(path)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **EMBEDDED_ENV})
    deadline = time.time() + 120
    while sum(d.get("status") == "running" for d in cell_docs(out).values()) < 2:
        assert driver.poll() is None and time.time() < deadline
        time.sleep(0.5)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130 and "rerun the same command to resume" in err
    rec = json.loads((out / "sweep.json").read_text())
    assert [c["status"] for c in rec["cells"].values()] == ["interrupted", "interrupted"]
    deadline = time.time() + 60
    while _cell_processes(out):
        assert time.time() < deadline, "cells still running after Ctrl-C"
        time.sleep(0.5)
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "sweep", str(path)], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, **EMBEDDED_ENV}, timeout=600)
    assert res.returncode == 0 and "2 cells (2 done)" in res.stdout
