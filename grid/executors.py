"""Where a sweep's cells run: one after another here (`SerialExecutor`), or as Ray tasks (`RayExecutor`).

Both run the same thing per cell, `grid.cellrun.run_cell` (a `python cli.py ...` subprocess), and report
`Event`s (a cell started, a cell finished with its result) to a callback; neither prints.

`RayExecutor` starts an embedded Ray on this machine (loopback only, no dashboard, a small object store) or
connects to a cluster by address (`auto`, `HOST:PORT`, `ray://HOST:PORT`). Every cell is a task that declares its
CPUs, GPUs and memory; a cell that references another (`@eval`) is given that cell's task as an argument, so it
starts once that one has finished. Before any cell runs, it checks that some node can hold each cell and that every
node sees the sweep directory (a marker file the driver writes), the checkout's `cli.py` and the working
directory: on a cluster these must be on a filesystem all nodes share. `grid.cellrun` is sent to the workers by
value, so a worker needs Ray and the shared checkout, nothing installed from gaplens.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from core.config import available_cores
from core.provenance import package_version
from grid import cellrun
from grid.plan import Cell

log = logging.getLogger(__name__)

OBJECT_STORE_BYTES = 100 * 2**20  # cells return a few numbers: Ray's object store can stay small
NODE_CHECK_SECONDS = 120.0
MARKER = ".gaplens-node-check"
EMBEDDED_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # a single-machine Ray: every address is loopback
    "RAY_AUTH_MODE": "token",  # Ray's default, set explicitly so that it does not warn about it
    "RAY_USAGE_STATS_ENABLED": "0",
}


@dataclass(frozen=True)
class Event:
    """A cell `started` (at: when) or `finished` (result: `grid.cellrun.run_cell`'s dict)."""

    kind: str
    name: str
    at: float | None = None
    result: dict[str, Any] | None = None


OnEvent = Callable[[Event], None]


@dataclass(frozen=True)
class Launch:
    """How every cell is started: `python CLI ...` in `cwd`, with `env` added to the worker's environment."""

    cli: str
    cwd: str
    env: Mapping[str, str] = field(default_factory=dict)


def payload(cell: Cell, launch: Launch, threads: int | None) -> dict[str, Any]:
    """The plain dict a worker needs to run `cell` (see `grid.cellrun.run_cell`)."""
    argv = cell.argv + (["--threads", str(threads)] if threads and cell.threads_auto else [])
    env = {"OMP_NUM_THREADS": str(threads or 1), **launch.env}
    doc = {"method": cell.method, "model": cell.model, "task": cell.task, "variants": cell.variants,
           "args": list(cell.args), "after": list(cell.after),
           "command": shlex.join(["python", "cli.py", *argv]), "package_version": package_version()}
    res = cell.resources
    return {"name": cell.name, "dir": str(cell.dir), "argv": argv, "cli": launch.cli, "cwd": launch.cwd, "env": env,
            "attempt": uuid.uuid4().hex, "doc": doc,
            "resources": {"cpus": res.cpus, "gpus": res.gpus, "memory_gb": res.memory_gb}}


def _interrupted(cell: Cell) -> dict[str, Any]:
    return {"name": cell.name, "status": cellrun.INTERRUPTED, "returncode": None, "seconds": None,
            "error": "interrupted", "started_unix": None, "finished_unix": None, "host": None}


class SerialExecutor:
    """One cell after another, each a subprocess of this process with every core this process may use."""

    def __init__(self, cpus: int = 0) -> None:
        self.cpus = cpus or available_cores()
        self.slots = 1

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def prepare(self, cells: list[Cell], out: Path, launch: Launch) -> list[Cell]:
        """The cells as they will run (no GPU is assigned: a cell sees every device of this machine)."""
        return [replace(c, resources=c.resources.resolved(0)) for c in cells]

    def run(self, cells: list[Cell], launch: Launch, on_event: OnEvent) -> dict[str, dict[str, Any]]:
        """Run `cells` in order; results by cell name. KeyboardInterrupt ends the running cell and propagates."""
        results: dict[str, dict[str, Any]] = {}
        for cell in cells:
            on_event(Event("started", cell.name, at=time.time()))
            try:
                res = cellrun.run_cell(payload(cell, launch, self.cpus), *(results[a] for a in cell.after
                                                                             if a in results))
            except KeyboardInterrupt:
                on_event(Event("finished", cell.name, result=_interrupted(cell)))
                raise
            results[cell.name] = res
            on_event(Event("finished", cell.name, result=res))
        return results


def _fits(node: Mapping[str, float], cell: Cell) -> bool:
    r = cell.resources
    return (node.get("CPU", 0.0) >= r.cpus and node.get("GPU", 0.0) >= float(r.gpus)
            and node.get("memory", 0.0) >= r.memory_gb * 2**30)


def _slots(node: Mapping[str, float], cell: Cell) -> int:
    r = cell.resources
    limits = [node.get("CPU", 0.0) / r.cpus]
    if float(r.gpus) > 0:
        limits.append(node.get("GPU", 0.0) / float(r.gpus))
    if r.memory_gb > 0:
        limits.append(node.get("memory", 0.0) / (r.memory_gb * 2**30))
    return int(min(limits))


class RayExecutor:
    """Cells as Ray tasks on an embedded Ray (`address=None`) or a running cluster (`address`)."""

    def __init__(self, address: str | None = None, cpus: int = 0, gpus: int | None = None,
                 poll_seconds: float = 1.0) -> None:
        self.address = None if address in (None, "", "local") else address
        self.cpus, self.gpus, self.poll = cpus, gpus, poll_seconds
        self.slots = 1
        self._owned = False
        self._ray: Any = None

    # ---------------------------------------------------------- lifecycle

    def __enter__(self) -> RayExecutor:
        if self.address is None:
            for key, value in EMBEDDED_ENV.items():  # read when ray is imported and by the processes it starts
                os.environ.setdefault(key, value)
        import ray

        self._ray = ray
        if ray.is_initialized():  # a Ray this process already runs (tests, notebooks): used, not shut down
            log.info("sweep: using the Ray this process is already connected to")
            return self
        if self.address is None:
            ray.init(address="local", num_cpus=self.cpus or available_cores(), num_gpus=self.gpus,
                     include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, log_to_driver=False,
                     logging_level=logging.WARNING)
        else:
            try:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ValueError(f"--address {self.address}: cannot connect to a Ray cluster there: {exc}") from exc
        self._owned = True
        log.info("sweep: Ray %s with %s", "started here" if self.address is None else f"at {self.address}",
                 ray.cluster_resources())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._owned:
            self._ray.shutdown()
            self._owned = False

    # ---------------------------------------------------------- checks

    def _nodes(self) -> list[dict[str, Any]]:
        return [n for n in self._ray.nodes() if n.get("Alive")]

    def prepare(self, cells: list[Cell], out: Path, launch: Launch) -> list[Cell]:
        """The cells with their GPUs resolved; ValueError when a cell fits on no node or a node cannot see the
        sweep directory, cli.py or the working directory."""
        nodes = self._nodes()
        gpus = max((n["Resources"].get("GPU", 0.0) for n in nodes), default=0.0)
        cells = [replace(c, resources=c.resources.resolved(gpus)) for c in cells]
        for cell in cells:
            if not any(_fits(n["Resources"], cell) for n in nodes):
                have = "; ".join(f"{n['NodeManagerAddress']}: {n['Resources'].get('CPU', 0):g} CPUs, "
                                 f"{n['Resources'].get('GPU', 0):g} GPUs, "
                                 f"{n['Resources'].get('memory', 0) / 2**30:.1f} GiB" for n in nodes)
                r = cell.resources
                raise ValueError(f"cell {cell.name} needs {r.cpus:g} CPUs, {float(r.gpus):g} GPUs and "
                                 f"{r.memory_gb:g} GiB, which no Ray node has ({have}); lower its 'resources' in "
                                 "the sweep config")
        if cells:
            common = max(cells, key=lambda c: sum(c.resources == d.resources for d in cells))
            self.slots = max(1, sum(_slots(n["Resources"], common) for n in nodes))
        self._check_nodes(nodes, out, launch)
        return cells

    def _check_nodes(self, nodes: list[dict[str, Any]], out: Path, launch: Launch) -> None:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray.cloudpickle.register_pickle_by_value(cellrun)
        marker, token = out / MARKER, uuid.uuid4().hex
        marker.write_text(token + "\n")
        check = ray.remote(cellrun.check_node)
        paths = {"the sweep directory": str(out), "cli.py": launch.cli, "the working directory": launch.cwd}
        refs = {check.options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(paths, str(marker), token): n for n in nodes}
        try:
            ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=NODE_CHECK_SECONDS)
            problems = [f"node {refs[r]['NodeManagerAddress']} did not answer in {NODE_CHECK_SECONDS:.0f} s"
                        for r in late]
            for ref in ready:
                got = ray.get(ref)
                problems += [f"node {refs[ref]['NodeManagerAddress']} ({got['host']}): {p}" for p in got["problems"]]
        finally:
            marker.unlink(missing_ok=True)
        if problems:
            raise ValueError("every Ray node must see the sweep directory, the gaplens checkout and the working "
                             "directory at the same paths (a shared filesystem): " + "; ".join(problems))

    # ---------------------------------------------------------- running

    def run(self, cells: list[Cell], launch: Launch, on_event: OnEvent) -> dict[str, dict[str, Any]]:
        """Submit every cell, then report starts and finishes until all are finished; results by cell name.

        KeyboardInterrupt cancels the cells still queued or running (their workers are killed, and with them
        the cells' subprocesses) and propagates.
        """
        ray = self._ray
        ray.cloudpickle.register_pickle_by_value(cellrun)
        remote = ray.remote(cellrun.run_cell)
        refs: dict[str, Any] = {}
        pending: dict[Any, tuple[Cell, str]] = {}
        for cell in cells:
            task = payload(cell, launch, max(1, math.ceil(cell.resources.cpus)))
            r = cell.resources
            ref = remote.options(num_cpus=r.cpus, num_gpus=float(r.gpus), memory=int(r.memory_gb * 2**30) or None,
                                 max_retries=1, name=f"cell:{cell.name}").remote(
                task, *(refs[a] for a in cell.after if a in refs))
            refs[cell.name] = ref
            pending[ref] = (cell, task["attempt"])
        results: dict[str, dict[str, Any]] = {}
        seen: set[str] = set()
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll)
                for ref in ready:
                    cell, _ = pending.pop(ref)
                    results[cell.name] = res = self._result(ref, cell)
                    on_event(Event("finished", cell.name, result=res))
                for cell, attempt in pending.values():
                    if cell.name not in seen and (at := cellrun.started(cell.dir, attempt)) is not None:
                        seen.add(cell.name)
                        on_event(Event("started", cell.name, at=at))
        except KeyboardInterrupt:
            for ref, (cell, _) in pending.items():
                ray.cancel(ref, force=True)
                on_event(Event("finished", cell.name, result=_interrupted(cell)))
                doc = cellrun.read_cell_json(cell.dir)
                if doc is not None and doc.get("status") == cellrun.RUNNING:
                    cellrun.write_cell_json(cell.dir, {**doc, "status": cellrun.INTERRUPTED})
            raise
        return results

    def _result(self, ref: Any, cell: Cell) -> dict[str, Any]:
        """The task's result, or a failed result (recorded in cell.json) when the task itself failed."""
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            error = f"the Ray task failed: {type(exc).__name__}: {str(exc)[-2000:]}"
            doc = cellrun.read_cell_json(cell.dir) or {"args": list(cell.args)}
            cell.dir.mkdir(parents=True, exist_ok=True)
            cellrun.write_cell_json(cell.dir, {**doc, "status": cellrun.FAILED, "error": error})
            return {"name": cell.name, "status": cellrun.FAILED, "returncode": None, "seconds": None,
                    "error": error, "started_unix": None, "finished_unix": None, "host": None}
