"""The files around results: the sweep record (`cli.py sweep`) and the report manifest (`cli.py report`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.schemas.base import Result, register


@dataclass(frozen=True)
class CellStatus:
    """One cell of a sweep."""

    method: str  # the command the cell runs
    model: str  # its --model
    task: str  # its --task
    variants: str  # its --variants ("" when the command has none)
    status: str  # pending, running, done, skipped (done), failed, blocked or interrupted
    returncode: int | None  # the command's exit code (null until it ran)
    seconds: float | None  # wall time of the cell (null until it ran)
    host: str | None  # the node that ran it (null until it ran)
    error: str | None  # why it failed (null otherwise)


@dataclass(frozen=True)
class SweepProgress:
    """Where a sweep stands: this run's cells (`skipped`: finished in an earlier run) and times in seconds."""

    total: int  # cells in the sweep
    skipped: int  # finished before this run started
    done: int  # finished in this run
    failed: int  # failed (or blocked) in this run
    running: int  # running now
    left: int  # not started yet
    elapsed: float  # seconds since this run started
    eta: float | None  # estimated seconds left (null before a cell has finished)


@register
@dataclass(frozen=True)
class SweepRecord(Result):
    """`sweep.json` in a sweep directory: the plan and every cell's status (rewritten as cells finish)."""

    SCHEMA = "gaplens.sweep"
    VERSION = 2

    config_file: str  # the sweep config file
    config: dict[str, Any]  # the sweep config as read (environment variables expanded)
    started_utc: str  # when the sweep started
    finished_utc: str | None  # when it finished (null while running)
    dry_run: bool  # planned only, nothing run
    executor: str  # ray or serial
    address: str | None  # the Ray cluster address (null: an embedded local Ray)
    progress: SweepProgress | None  # where the sweep stands (null before a cell has started)
    cells: dict[str, CellStatus]  # cell directory name -> its status


@dataclass(frozen=True)
class SummaryRow:
    """One model and task of the report's across-model table."""

    model: str  # model label
    task: str  # task
    n_params: int | None  # parameters (from the runs' model identity; null when no run records it)
    family: str  # the model kind (base, instruct, fine-tuned), plus " locked" for locked models
    straight_up: float  # the straight-up (default prompt) accuracy (null: not measured)
    best_elicited: float  # the best honest behavioural score (null: none)
    best_elicited_by: str  # what gave it
    best_elicited_over_straight_up: float  # their ratio (null when undefined)
    probe_ceiling: float  # the probe ceiling (null: no probe run)
    probe_ceiling_over_straight_up: float  # its ratio to straight-up (null when undefined)


@register
@dataclass(frozen=True)
class ReportManifest(Result):
    """`report.json` in a report directory: what the report read and wrote."""

    SCHEMA = "gaplens.report"
    VERSION = 1

    config: dict[str, Any]  # the report command's config
    command: str  # the command line that made it
    n_runs: int  # runs read
    kinds: list[str]  # the kinds of runs read (probe, eval, ...)
    runs: list[str]  # their directories
    figures: list[str]  # figures written, relative to the report directory
    n_rows: int  # tidy rows written to results.csv
    summary: list[SummaryRow]  # the across-model table
