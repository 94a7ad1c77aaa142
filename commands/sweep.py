"""Sweeps: `python cli.py sweep CONFIG` runs a grid of models x tasks x variants x methods as independent cells,
on an embedded Ray by default, on a Ray cluster with `--address`, or one after another with `--executor serial`.

CONFIG is a JSON object (`docs/sweeps.md` has the details)::

    {"out": "runs/sweep-x",                       # the sweep directory (one sub-directory per cell)
     "models": ["smollm2-135m-instruct"],         # axis -> --model
     "tasks": ["mmlu", "arc-easy"],               # axis -> --task
     "variants": "default,numbers,option",        # one set -> --variants; a list of sets is an axis
     "methods": ["eval", "probe", "transfer"],    # any registered command but sweep
     "data_dir": "$GAPLENS_DATA_DIR", "n": 100,   # any other key: a flag for every method that has it
     "eval": {"resid": true},                     # flags for one method only (null drops a common flag)
     "transfer": {"store": "@eval"},              # @METHOD: that method's cell of the same model, task, variants
     "resources": {"cpus": 1},                    # per cell, over the method's defaults; also per method
     "env": {"HF_HUB_OFFLINE": "1"}}              # extra environment for the cells

Valid flags are the fields of each command's `Config` (read from the command registry, `commands.COMMANDS`), and
every cell's arguments are parsed by the same parser the command line uses, so a bad flag or value is refused
before anything runs, naming the cell. String values may name environment variables ($VAR or ${VAR}).

Each cell runs `python cli.py METHOD ... --out DIR` in a subprocess (crash-isolated), its output in DIR/cell.log
and its arguments, status, host and times in DIR/cell.json. A cell is skipped when DIR holds results.json and a
cell.json with the same arguments, so rerunning the sweep after an interruption (or a killed driver) runs only
what is unfinished, and the commands themselves resume what they had finished. A failed cell is logged and the
sweep goes on; at the end the sweep fails (exit 2) listing the failed cells. OUT/sweep.json holds the plan and
every cell's status. The report reads the sweep directory: `python cli.py report OUT --out OUT/report`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import logging
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from commands import COMMANDS
from core.config import PluginOptions, opt
from core.schemas import SweepRecord, from_data
from grid import (
    CELL_LOG,
    Cell,
    Event,
    Launch,
    Method,
    RayExecutor,
    Resources,
    SerialExecutor,
    Tracker,
    duration,
    load_spec,
    plan,
    record_status,
)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "cli.py"
SWEEP_JSON = "sweep.json"
EXECUTORS = ("ray", "serial")

# What one cell of each command needs by default ("auto" GPUs: one where the cluster has GPUs); a command
# registered later gets FALLBACK. The config's "resources" (top level, then per method) override these.
RESOURCES: dict[str, Resources] = {
    "eval": Resources(cpus=1, gpus="auto", memory_gb=3),
    "probe": Resources(cpus=1, gpus="auto", memory_gb=3),
    "transfer": Resources(cpus=1, gpus=0, memory_gb=2),
    "lock": Resources(cpus=1, gpus="auto", memory_gb=6),
    "unlock": Resources(cpus=1, gpus="auto", memory_gb=6),
    "diff": Resources(cpus=1, gpus="auto", memory_gb=4),
    "report": Resources(cpus=1, gpus=0, memory_gb=1),
}
FALLBACK = Resources(cpus=1, gpus="auto", memory_gb=2)


class SweepFailed(ValueError):
    """Some cells failed; the message lists them and their logs."""


@dataclass(frozen=True)
class Config(PluginOptions):
    """A sweep: the JSON grid to run, and where to run it."""

    config: str | None = opt(None, "sweep config file (JSON; see docs/sweeps.md)", positional=True)
    executor: str = opt("ray", "ray (an embedded Ray, or the cluster at --address) or serial (one cell after "
                        "another in this process)", ui=True)
    address: str | None = opt(None, "a running Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start "
                              "an embedded Ray on this machine)", ui=True)
    cpus: int = opt(0, "CPUs the embedded Ray offers cells (0: every core this process may use); with --executor "
                    "serial, the threads of each cell", ui=True)
    gpus: int | None = opt(None, "GPUs the embedded Ray offers cells (default: every GPU it finds)", ui=True)
    dry_run: bool = opt(False, "plan the cells, check their flags and record which are done; run none", ui=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.executor not in EXECUTORS:
            raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.address and self.executor != "ray":
            raise ValueError("--address needs --executor ray")
        if self.cpus < 0 or (self.gpus is not None and self.gpus < 0):
            raise ValueError("--cpus and --gpus must be >= 0")


# ---------------------------------------------------------------- the command registry, as the sweep sees it


def _positional(cfg_cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cfg_cls) if f.metadata.get("positional"))


def method(name: str) -> Method:
    """The registered command `name` as a sweep method: its Config's fields and its default resources."""
    cfg_cls = COMMANDS[name].load().Config
    fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
    threads = fields.get("threads")
    return Method(name, frozenset(f for f in fields if f != "out"), _positional(cfg_cls),
                  RESOURCES.get(name, FALLBACK), threads is not None and threads.default == 0)


def methods(names: list[str]) -> dict[str, Method]:
    """The sweep methods `names` (each command's module is imported to read its Config)."""
    return {n: method(n) for n in names}


def method_names() -> list[str]:
    """Every registered command but the sweep itself."""
    return [n for n in COMMANDS if n != "sweep"]


class _Refuse(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise ValueError(message)


def check_cell(cell: Cell) -> None:
    """Parse the cell's arguments with the parser `cli.py` builds for its command and build its Config, so a bad
    value is refused now; ValueError naming the cell."""
    import cli  # the flag parser of the command line (imported here: cli.py imports this registry)

    mod = COMMANDS[cell.method].load()
    parser = _Refuse(prog=f"cli.py {cell.method}", add_help=False)
    cli.add_config_args(parser, mod.Config)
    try:
        cli.build_config(mod.Config, parser.parse_args(cell.argv[1:]))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cell {cell.name}: {exc}") from None


# ---------------------------------------------------------------- running


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _executor(cfg: Config) -> SerialExecutor | RayExecutor:
    if cfg.executor == "serial":
        return SerialExecutor(cfg.cpus)
    return RayExecutor(cfg.address, cpus=cfg.cpus, gpus=cfg.gpus)


def _plan(cfg: Config) -> tuple[Path, dict[str, Any], list[Cell]]:
    if not cfg.config:
        raise ValueError("give the sweep config file: python cli.py sweep CONFIG")
    path = Path(cfg.config)
    spec = load_spec(path, method_names())
    if cfg.include:  # `sweep --include X`: every cell gets --include X too (after the config's own)
        own = spec.get("include") or []
        spec["include"] = [*([own] if isinstance(own, str) else own), *cfg.include]
    spec["out"] = str(Path(spec["out"]).expanduser().absolute())  # cells run elsewhere: an absolute path
    cells = plan(spec, methods(spec["methods"]), path)
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: two cells have the same arguments; remove the duplicate axis values")
    for cell in cells:
        check_cell(cell)
    return path, spec, cells


def run(cfg: Config, *, executor: SerialExecutor | RayExecutor | None = None) -> Path:
    """Run (or, with dry_run, plan) every unfinished cell of the sweep; returns the sweep directory.

    `executor` replaces the one `cfg` names (tests). Raises SweepFailed listing failed cells at the end.
    """
    path, spec, cells = _plan(cfg)
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    status = record_status(cells)
    todo = [c for c in cells if status[c.name]["status"] != "done"]
    for c in cells:
        if status[c.name]["status"] == "done":
            status[c.name]["status"] = "skipped (done)"
    record = {"config_file": str(path), "config": spec, "started_utc": _now(), "finished_utc": None,
              "dry_run": cfg.dry_run, "executor": cfg.executor, "address": cfg.address, "progress": None,
              "cells": status}
    _save(out, record)
    log.info("sweep %s: %d cells, %d already done", out, len(cells), len(cells) - len(todo))
    if cfg.dry_run or not todo:
        return out
    launch = Launch(cli=str(CLI), cwd=os.getcwd(), env=spec.get("env", {}))
    failed: list[Cell] = []
    with executor or _executor(cfg) as ex:
        todo = ex.prepare(todo, out, launch)
        tracker = Tracker({c.name: c.method for c in todo}, skipped=len(cells) - len(todo), slots=ex.slots)
        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="sweep", unit="cell", mininterval=1.0)
        by_name = {c.name: c for c in cells}

        def on_event(ev: Event) -> None:
            entry = status[ev.name]
            if ev.kind == "started":
                tracker.start(ev.name, ev.at)
                entry["status"] = "running"
            else:
                res = ev.result or {}
                tracker.finish(ev.name, res.get("status", "failed"), res.get("seconds"))
                entry.update({k: res.get(k) for k in ("status", "returncode", "seconds", "host", "error")})
                bar.update(1)
                cell = by_name[ev.name]
                if res.get("status") == "done":
                    log.info("cell %s done in %.0f s [%s]", ev.name, res.get("seconds") or 0, tracker.snapshot().line())
                else:
                    failed.append(cell)
                    log.error("cell %s %s (%s); log: %s", ev.name, res.get("status"), res.get("error"),
                              cell.dir / CELL_LOG)
            snap = tracker.snapshot()
            bar.set_postfix_str(f"{snap.running} running, {snap.failed} failed, {snap.left} left"
                                + (f", ETA {duration(snap.eta)}" if snap.eta is not None else ""))
            record["progress"] = dataclasses.asdict(snap)
            _save(out, record)

        try:
            ex.run(todo, launch, on_event)
        finally:
            bar.close()
            record["finished_utc"] = _now()
            _save(out, record)
    if failed:
        listing = "; ".join(f"{c.name} ({status[c.name]['status']}: {status[c.name].get('error')}; log: "
                            f"{c.dir / CELL_LOG})" for c in failed)
        raise SweepFailed(f"{len(failed)} of {len(cells)} cells failed: {listing}. Finished cells are kept; "
                          f"rerun `python cli.py sweep {path}` to retry the failed ones.")
    return out


def _save(out: Path, record: dict[str, Any]) -> None:
    """Write the sweep record (typed: `core.schemas.SweepRecord`) as it stands."""
    from_data(SweepRecord, record).write(out / SWEEP_JSON)


def summarize(out_dir: Path) -> str:
    """Cells by status with their times and hosts, the progress line, and the report command."""
    rec = SweepRecord.read(Path(out_dir) / SWEEP_JSON)
    counts: dict[str, int] = {}
    for c in rec.cells.values():
        counts[c.status] = counts.get(c.status, 0) + 1
    lines = [f"sweep {out_dir}: {len(rec.cells)} cells ("
             + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + ")" + (" [dry run]" if rec.dry_run else "")]
    for name, c in rec.cells.items():
        secs = f"{c.seconds:.0f} s" if c.seconds is not None else ""
        lines.append(f"  {c.status:<15} {secs:>7}  {name}" + (f"  [{c.host}]" if c.host else ""))
    if rec.progress is not None:
        lines.append(f"wall time {duration(rec.progress.elapsed)} for the cells run now")
    lines.append(f"report: python cli.py report {out_dir} --out {Path(out_dir) / 'report'}")
    return "\n".join(lines)
