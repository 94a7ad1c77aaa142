"""Sweep progress: cells done, running, failed and left, the elapsed time and an estimate of the time left.

`Tracker` is fed the executor's events and answers `snapshot()`; it never prints (the command shows it). The
estimate: each cell still to run or running is expected to take the mean time of the finished cells of its
method (of all finished cells when none of its method has finished), less what a running cell has already
spent; that work is shared among the cells that can run at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """Counts of this run's cells (`skipped`: finished in an earlier run) and times in seconds."""

    total: int
    skipped: int
    done: int
    failed: int
    running: int
    left: int
    elapsed: float
    eta: float | None

    def line(self) -> str:
        """One line: `3/10 done, 2 running, 1 failed, 4 left, 2 skipped; 1m05s elapsed, about 2m30s left`."""
        eta = f", about {duration(self.eta)} left" if self.eta is not None and self.left + self.running else ""
        skipped = f", {self.skipped} already done" if self.skipped else ""
        return (f"{self.done}/{self.total - self.skipped} done, {self.running} running, {self.failed} failed, "
                f"{self.left} left{skipped}; {duration(self.elapsed)} elapsed{eta}")


def duration(seconds: float) -> str:
    """`75.0` -> `1m15s`; `3700` -> `1h01m`."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Tracker:
    """Counts cells through queued -> running -> done / failed (blocked and interrupted count as failed)."""

    def __init__(self, methods: dict[str, str], skipped: int, slots: int,
                 clock: Callable[[], float] = time.time) -> None:
        """`methods`: the method of every cell to run, by cell name; `slots`: how many cells can run at once."""
        self.methods, self.skipped, self.slots, self.clock = methods, skipped, max(1, slots), clock
        self.t0 = clock()
        self.started: dict[str, float] = {}
        self.finished: dict[str, tuple[str, float]] = {}  # name -> (status, seconds)

    def start(self, name: str, at: float | None = None) -> None:
        if name not in self.finished:
            self.started.setdefault(name, self.clock() if at is None else at)

    def finish(self, name: str, status: str, seconds: float | None) -> None:
        if seconds is None:
            t = self.started.get(name)
            seconds = self.clock() - t if t is not None else 0.0
        self.finished[name] = (status, float(seconds))
        self.started.pop(name, None)

    def eta(self) -> float | None:
        """Seconds until every cell has finished, or None before any cell has finished."""
        times = [(self.methods[n], s) for n, (st, s) in self.finished.items() if st == "done" and s > 0]
        if not times:
            return None
        overall = sum(s for _, s in times) / len(times)

        def expected(name: str) -> float:
            mine = [s for m, s in times if m == self.methods[name]]
            return sum(mine) / len(mine) if mine else overall

        now = self.clock()
        work = sum(max(expected(n) - (now - t), 0.0) for n, t in self.started.items())
        work += sum(expected(n) for n in self.methods if n not in self.started and n not in self.finished)
        return work / self.slots

    def snapshot(self) -> Progress:
        done = sum(1 for st, _ in self.finished.values() if st == "done")
        failed = len(self.finished) - done
        running = len(self.started)
        return Progress(total=len(self.methods) + self.skipped, skipped=self.skipped, done=done, failed=failed,
                        running=running, left=len(self.methods) - done - failed - running,
                        elapsed=self.clock() - self.t0, eta=self.eta())
