"""Sweeps: `python cli.py sweep CONFIG` runs a grid of models x tasks x variants x methods as independent cells.

CONFIG is a JSON object::

    {"out": "runs/sweep-x",                       # the sweep directory (one sub-directory per cell)
     "models": ["smollm2-135m-instruct"],         # axis -> --model
     "tasks": ["mmlu", "arc-easy"],               # axis -> --task
     "variants": "default,numbers,option",        # one set -> --variants; a list of sets is an axis
     "methods": ["eval", "probe"],                # the cli commands each cell runs
     "data_dir": "$GAPLENS_DATA_DIR", "n": 100,   # any other key: a flag for every method that accepts it
     "eval": {"batch_size": 16},                  # flags for one method only (null drops a common flag)
     "env": {"OMP_NUM_THREADS": "2"}}             # extra environment for the cells

String values may name environment variables ($VAR or ${VAR}); they are expanded when the config is read, and
an unset one is an error naming the key. The expanded value is what a cell's arguments (and its hash) record.

An axis applies to a method only if the method has its flag (the probe command, which has no --variants, gets one
cell per model and task). Flags are checked against each command's `--help` before anything runs.

Each cell runs `python cli.py METHOD ... --out DIR` in a subprocess (crash-isolated), its output streamed to
DIR/cell.log. DIR is named by a readable slug and a hash of the cell's arguments; DIR/cell.json is written first
and records the arguments, status, return code and timing. A cell is skipped when DIR holds results.json and a
cell.json with the same arguments, so rerunning the sweep after an interruption continues where it stopped (an
unfinished cell is rerun, and the stages themselves resume what they had finished). A failed cell is logged and the
sweep goes on; at the end the sweep fails (exit 2) listing the failed cells. DIR/../sweep.json
(`core.schemas.SweepRecord`) holds the plan and every cell's status. The report reads the sweep directory: `python cli.py report OUT --out OUT/report`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from core.io import write_json
from core.provenance import package_version
from core.schemas import SweepRecord, from_data

log = logging.getLogger(__name__)

CLI = Path(__file__).resolve().parent.parent / "cli.py"
METHODS = ("eval", "probe", "lock", "unlock", "diff")
AXES = {"models": "model", "tasks": "task", "variants": "variants"}  # config key -> flag field
RESERVED = {"out", "methods", "env", *AXES, *METHODS}
CELL_JSON, CELL_LOG, SWEEP_JSON, RESULTS = "cell.json", "cell.log", "sweep.json", "results.json"

# (argv after `cli.py`, log file, environment, callback for output text) -> return code
CellRunner = Callable[[list[str], Path, dict[str, str], Callable[[str], None]], int]
FlagsOf = Callable[[str], set[str]]


class SweepFailed(ValueError):
    """Some cells failed; the message lists them and their logs."""


@dataclass(frozen=True)
class Config:
    """A sweep: the JSON grid to run."""

    config: str | None = field(default=None, metadata={"help": "sweep config file (JSON; see `commands.sweep`)",
                                                       "positional": True})
    dry_run: bool = field(default=False, metadata={"help": "plan the cells and record which are done; run none"})


@dataclass(frozen=True)
class Cell:
    """One independent run: `cli.py METHOD ARGS --out DIR`."""

    method: str
    model: str
    task: str
    variants: str
    args: tuple[str, ...]  # flags, without --out
    dir: Path

    @property
    def argv(self) -> list[str]:
        """The full argument list after `cli.py`."""
        return [self.method, *self.args, "--out", str(self.dir)]

    def is_done(self) -> bool:
        """results.json exists and cell.json records the same arguments."""
        meta = self.dir / CELL_JSON
        if not (self.dir / RESULTS).exists() or not meta.exists():
            return False
        try:
            return json.loads(meta.read_text()).get("args") == list(self.args)
        except (OSError, json.JSONDecodeError):
            return False


# ---------------------------------------------------------------- config -> cells


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flag_args(name: str, value: Any) -> list[str]:
    """The argv tokens of one flag: booleans as --x/--no-x, lists comma-joined."""
    if isinstance(value, bool):
        return [_flag(name) if value else "--no-" + name.replace("_", "-")]
    if isinstance(value, (list, tuple)):
        return [_flag(name), ",".join(str(v) for v in value)]
    return [_flag(name), str(value)]


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", Path(text).name if "/" in text else text).strip("-")[:limit] or "x"


def _strings(spec: Mapping[str, Any], key: str, path: Path) -> list[str]:
    v = spec.get(key)
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"{path}: '{key}' must be a non-empty list of strings, got {v!r}")
    return v


def _check_value(path: Path, where: str, key: str, value: Any) -> None:
    ok = value is None or isinstance(value, (str, int, float, bool)) or (
        isinstance(value, list) and all(isinstance(x, (str, int, float)) for x in value))
    if not ok:
        raise ValueError(f"{path}: {where} '{key}' must be a string, number, boolean, list or null; got {value!r}")


def load_spec(path: Path) -> dict[str, Any]:
    """The sweep config as a dict; ValueError naming the file and key on bad input."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep config {path} does not exist")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: the top level must be a JSON object")
    if not isinstance(spec.get("out"), str) or not spec["out"]:
        raise ValueError(f"{path}: 'out' (the sweep directory) must be a non-empty string")
    methods = _strings(spec, "methods", path)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"{path}: unknown method {m!r} in 'methods'; known: {', '.join(METHODS)}")
    for key in ("models", "tasks"):
        _strings(spec, key, path)
    v = spec.get("variants")
    if v is not None and not (isinstance(v, str) and v) and not (
            isinstance(v, list) and v and all(isinstance(x, str) and x for x in v)):
        raise ValueError(f"{path}: 'variants' must be a comma-separated string or a list of such strings")
    if not isinstance(spec.get("env", {}), dict):
        raise ValueError(f"{path}: 'env' must be an object of environment variables")
    for where, flags in [("", spec)] + [(f"{m}.", spec[m]) for m in METHODS if m in spec]:
        if not isinstance(flags, dict):
            raise ValueError(f"{path}: '{where[:-1]}' must be an object of flags for that command")
        for key, value in list(flags.items()):
            if isinstance(value, str) and "$" in value:
                flags[key] = value = _expand(value, path, where + key)
            if where and key in ("out", "model", "task", *AXES, *METHODS):
                if key != "variants":
                    raise ValueError(f"{path}: '{where}{key}' cannot be set per method (the sweep sets --out and "
                                     "the model and task axes)")
            elif not where and key in ("model", "task"):
                raise ValueError(f"{path}: '{key}' is not a sweep key; use '{key}s': [...]")
            elif key not in RESERVED or where:
                _check_value(path, "flag", where + key, value)
    return spec


def _expand(value: str, path: Path, key: str) -> str:
    """`value` with $VAR / ${VAR} replaced from the environment; ValueError naming `key` if one is unset."""
    out = os.path.expandvars(value)
    missing = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", out)
    if missing:
        raise ValueError(f"{path}: '{key}' names the environment variable ${missing[0]}, which is not set")
    return out


def plan(spec: Mapping[str, Any], flags_of: FlagsOf, path: Path = Path("sweep config")) -> list[Cell]:
    """The cells of a sweep, in order (method, model, task, variants); checks every flag against its command."""
    out = Path(spec["out"])
    common = {k: v for k, v in spec.items() if k not in RESERVED}
    used: set[str] = set()
    cells: list[Cell] = []
    for method in spec["methods"]:
        accepted = flags_of(method)
        own = dict(spec.get(method) or {})
        variants = own.pop("variants", spec.get("variants"))
        axes = {"models": spec["models"], "tasks": spec["tasks"],
                "variants": [None] if variants is None else ([variants] if isinstance(variants, str) else variants)}
        if "variants" in (spec.get(method) or {}) and "--variants" not in accepted:
            raise ValueError(f"{path}: '{method}.variants': the {method} command has no flag --variants")
        for key in own:
            if _flag(key) not in accepted:
                raise ValueError(f"{path}: '{method}.{key}': the {method} command has no flag {_flag(key)}")
        flags = {k: v for k, v in {**common, **own}.items() if v is not None and _flag(k) in accepted}
        used.update(k for k in common if _flag(k) in accepted)
        values = [axes[a] if _flag(f) in accepted else [None] for a, f in AXES.items()]
        for model, task, var in itertools.product(*values):
            args: list[str] = []
            for name, value in (("model", model), ("task", task), ("variants", var)):
                if value is not None:
                    args += _flag_args(name, value)
            for name in sorted(flags):
                if name not in AXES.values():
                    args += _flag_args(name, flags[name])
            digest = hashlib.sha256(json.dumps([method, *args]).encode()).hexdigest()[:10]
            parts = [method] + [_slug(x) for x in (model, task) if x is not None]
            if var is not None and len(axes["variants"]) > 1:
                parts.append(_slug(var, 24))
            cells.append(Cell(method, model or "", task or "", var or "", tuple(args),
                              out / f"{'-'.join(parts)}-{digest}"))
    unused = sorted(k for k in common if k not in used)
    if unused:
        raise ValueError(f"{path}: {', '.join(_flag(k) for k in unused)} is accepted by none of the methods "
                         f"{', '.join(spec['methods'])}")
    return cells


# ---------------------------------------------------------------- running


@cache
def cli_flags(method: str) -> set[str]:
    """The flags `cli.py METHOD --help` lists (runs the CLI in a subprocess, so nothing is imported here)."""
    res = subprocess.run([sys.executable, str(CLI), method, "--help"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if res.returncode != 0:
        raise ValueError(f"`cli.py {method} --help` failed: {res.stderr.strip()[-500:]}")
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", res.stdout))


def subprocess_runner(argv: list[str], log_path: Path, env: dict[str, str], on_output: Callable[[str], None]) -> int:
    """Run `python cli.py ARGV` with output appended to `log_path` and passed to `on_output` as it comes."""
    cmd = [sys.executable, str(CLI), *argv]
    with Path(log_path).open("ab") as fh:
        fh.write(f"\n$ {shlex.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            assert proc.stdout is not None
            while chunk := proc.stdout.read1(65536):
                fh.write(chunk)
                fh.flush()
                on_output(chunk.decode(errors="replace"))
            return proc.wait()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _save(out: Path, record: dict[str, Any]) -> None:
    """Write the sweep record (typed: `core.schemas.SweepRecord`) as it stands."""
    from_data(SweepRecord, record).write(out / SWEEP_JSON)


def _cell_doc(cell: Cell, **status: Any) -> dict[str, Any]:
    return {"method": cell.method, "model": cell.model, "task": cell.task, "variants": cell.variants,
            "args": list(cell.args), "command": shlex.join(["python", "cli.py", *cell.argv]),
            "package_version": package_version(), **status}


def _last_line(text: str) -> str:
    lines = [x.strip() for x in text.replace("\r", "\n").split("\n") if x.strip()]
    return lines[-1] if lines else ""


def run(cfg: Config, *, runner: CellRunner | None = None, flags_of: FlagsOf | None = None) -> Path:
    """Run (or, with dry_run, plan) every cell of the sweep; returns the sweep directory.

    `runner` and `flags_of` replace the subprocess runner and the `--help` flag check (tests).
    """
    if not cfg.config:
        raise ValueError("give the sweep config file: python cli.py sweep CONFIG")
    path = Path(cfg.config)
    spec = load_spec(path)
    cells = plan(spec, flags_of or cli_flags, path)
    names = [c.dir.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: two cells have the same arguments; remove the duplicate axis values")
    runner = runner or subprocess_runner
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **{str(k): str(v) for k, v in spec.get("env", {}).items()}}
    status: dict[str, dict[str, Any]] = {}
    record = {"config_file": str(path), "config": spec, "started_utc": _now(), "finished_utc": None,
              "dry_run": cfg.dry_run, "cells": status}
    done = [c for c in cells if c.is_done()]
    for c in cells:
        status[c.dir.name] = {"method": c.method, "model": c.model, "task": c.task, "variants": c.variants,
                              "status": "done" if c in done else "pending", "returncode": None, "seconds": None}
        if c in done:  # keep how long it took when it ran
            meta = json.loads((c.dir / CELL_JSON).read_text())
            status[c.dir.name].update({k: meta[k] for k in ("returncode", "seconds") if k in meta})
    _save(out, record)
    log.info("sweep %s: %d cells, %d already done", out, len(cells), len(done))
    if cfg.dry_run:
        return out
    failed: list[Cell] = []
    bar = tqdm(total=len(cells), desc="sweep", unit="cell", initial=len(done))
    try:
        for cell in cells:
            if cell in done:
                status[cell.dir.name]["status"] = "skipped (done)"
                continue
            cell.dir.mkdir(parents=True, exist_ok=True)
            t0, started = time.time(), _now()
            write_json(cell.dir / CELL_JSON, _cell_doc(cell, status="running", started_utc=started))
            status[cell.dir.name]["status"] = "running"
            _save(out, record)
            bar.set_postfix_str(cell.dir.name[:50])
            log.info("cell %s: %s", cell.dir.name, shlex.join(cell.argv))

            def show(text: str, name: str = cell.dir.name[:40]) -> None:
                if line := _last_line(text):
                    bar.set_postfix_str(f"{name}: {line[:60]}")

            try:
                rc = runner(cell.argv, cell.dir / CELL_LOG, env, show)
            except KeyboardInterrupt:
                write_json(cell.dir / CELL_JSON, _cell_doc(cell, status="interrupted", started_utc=started))
                status[cell.dir.name]["status"] = "interrupted"
                _save(out, record)
                raise
            secs = round(time.time() - t0, 1)
            ok = rc == 0 and (cell.dir / RESULTS).exists()
            state = "done" if ok else "failed"
            write_json(cell.dir / CELL_JSON, _cell_doc(cell, status=state, returncode=rc, seconds=secs,
                                                        started_utc=started, finished_utc=_now()))
            status[cell.dir.name].update(status=state, returncode=rc, seconds=secs)
            _save(out, record)
            if ok:
                log.info("cell %s done in %.0f s", cell.dir.name, secs)
            else:
                failed.append(cell)
                why = f"exit code {rc}" if rc != 0 else "no results.json written"
                log.error("cell %s failed (%s); log: %s", cell.dir.name, why, cell.dir / CELL_LOG)
            bar.update(1)
    finally:
        bar.close()
        record["finished_utc"] = _now()
        _save(out, record)
    if failed:
        listing = "; ".join(f"{c.dir.name} (log: {c.dir / CELL_LOG})" for c in failed)
        raise SweepFailed(f"{len(failed)} of {len(cells)} cells failed: {listing}. Finished cells are kept; "
                          f"rerun `python cli.py sweep {path}` to retry the failed ones.")
    return out


def summarize(out_dir: Path) -> str:
    """Cells by status with their times, and the report command."""
    rec = SweepRecord.read(Path(out_dir) / SWEEP_JSON)
    counts: dict[str, int] = {}
    for c in rec.cells.values():
        counts[c.status] = counts.get(c.status, 0) + 1
    lines = [f"sweep {out_dir}: {len(rec.cells)} cells (" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
             + ")" + (" [dry run]" if rec.dry_run else "")]
    for name, c in rec.cells.items():
        secs = f"{c.seconds:.0f} s" if c.seconds is not None else ""
        lines.append(f"  {c.status:<15} {secs:>7}  {name}")
    lines.append(f"report: python cli.py report {out_dir} --out {Path(out_dir) / 'report'}")
    return "\n".join(lines)
