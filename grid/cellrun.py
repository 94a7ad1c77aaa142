"""What runs where a cell runs: one `python cli.py METHOD ...` subprocess, its log and its `cell.json`.

This module imports nothing but the standard library, so a Ray worker can run it by value (see
`grid.executors`) on a node where gaplens is only present as the checkout that `cli.py` lives in. A cell is a
plain dict (`Cell.payload`); the result is a plain dict too:
``{"name", "status", "returncode", "seconds", "started_unix", "finished_unix", "host", "error"}``.

The subprocess is started with a parent-death signal (Linux), so a cell dies with the worker or driver that
launched it: a killed sweep leaves no cell running that a rerun would race with.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CELL_JSON, CELL_LOG, RESULTS = "cell.json", "cell.log", "results.json"
DONE, FAILED, BLOCKED, INTERRUPTED, RUNNING = "done", "failed", "blocked", "interrupted", "running"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_cell_json(cell_dir: Path, doc: dict[str, Any]) -> None:
    """Write `cell_dir/cell.json` atomically."""
    tmp = cell_dir / (CELL_JSON + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, cell_dir / CELL_JSON)


def read_cell_json(cell_dir: Path) -> dict[str, Any] | None:
    """`cell_dir/cell.json`, or None when it is missing or unreadable."""
    try:
        doc = json.loads((Path(cell_dir) / CELL_JSON).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL this process when the thread that started it exits."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run(cmd: list[str], log_path: Path, env: dict[str, str], cwd: str | None) -> int:
    """Run `cmd` with stdout and stderr appended to `log_path`; the child is ended if this is interrupted."""
    with log_path.open("ab") as fh:
        fh.write(f"\n$ {shlex.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        try:
            return proc.wait()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise


def run_cell(cell: dict[str, Any], *after: dict[str, Any]) -> dict[str, Any]:
    """Run one cell (a `Cell.payload`) unless a cell it depends on (`after`, their results) did not finish.

    Writes `cell.json` (status running, then done / failed / blocked / interrupted) and appends the command's
    output to `cell.log`; returns the result dict. A cell is done when the command exits 0 and wrote results.json.
    """
    cell_dir = Path(cell["dir"])
    cell_dir.mkdir(parents=True, exist_ok=True)
    base = {**cell["doc"], "attempt": cell["attempt"], "host": socket.gethostname(), "resources": cell["resources"]}
    result: dict[str, Any] = {"name": cell["name"], "host": base["host"], "returncode": None, "error": None}
    unfinished = [r["name"] for r in after if r.get("status") != DONE]
    if unfinished:
        result.update(status=BLOCKED, seconds=0.0, started_unix=None, finished_unix=None,
                      error=f"not run: {', '.join(unfinished)} did not finish")
        write_cell_json(cell_dir, {**base, "status": BLOCKED, "error": result["error"]})
        return result
    t0, started = time.time(), _now()
    write_cell_json(cell_dir, {**base, "status": RUNNING, "started_utc": started, "started_unix": t0})
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **cell["env"]}
    cmd = [sys.executable, cell["cli"], *cell["argv"]]
    try:
        rc = _run(cmd, cell_dir / CELL_LOG, env, cell.get("cwd"))
    except KeyboardInterrupt:
        write_cell_json(cell_dir, {**base, "status": INTERRUPTED, "started_utc": started, "started_unix": t0})
        raise
    except OSError as exc:  # the interpreter or cli.py cannot be started here
        rc, result["error"] = None, f"could not start {shlex.join(cmd)}: {exc}"
    t1 = time.time()
    ok = rc == 0 and (cell_dir / RESULTS).exists()
    if not ok and result["error"] is None:
        result["error"] = f"exit code {rc}" if rc != 0 else "no results.json written"
    result.update(status=DONE if ok else FAILED, returncode=rc, seconds=round(t1 - t0, 1), started_unix=t0,
                  finished_unix=t1)
    write_cell_json(cell_dir, {**base, "status": result["status"], "returncode": rc, "error": result["error"],
                               "seconds": result["seconds"], "started_utc": started, "finished_utc": _now(),
                               "started_unix": t0, "finished_unix": t1})
    return result


def started(cell_dir: Path, attempt: str) -> float | None:
    """When this attempt of the cell started running (from its cell.json), or None if it has not yet."""
    doc = read_cell_json(cell_dir)
    if doc is None or doc.get("attempt") != attempt:
        return None
    at = doc.get("started_unix")
    return float(at) if isinstance(at, (int, float)) else None


def check_node(paths: dict[str, str], marker: str, token: str) -> dict[str, Any]:
    """On one node: can it see the driver's `marker` file holding `token`, and every path in `paths`?"""
    problems = []
    try:
        if Path(marker).read_text().strip() != token:
            problems.append(f"{marker} holds another sweep's token (a different directory of the same name?)")
    except OSError as exc:
        problems.append(f"cannot read {marker} ({exc.strerror or exc})")
    problems += [f"{what} {path} does not exist here" for what, path in paths.items() if not Path(path).exists()]
    return {"host": socket.gethostname(), "python": sys.executable, "problems": problems}
