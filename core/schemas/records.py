"""The files around results: the sweep record (`cli.py sweep`) and the report manifest (`cli.py report`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.schemas.base import Result, register
from core.schemas.common import Estimate


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
    """One model and task of the report's summary: the elicitation gap on the same held-out questions."""

    model: str  # model label
    task: str  # task
    n_params: int | None  # parameters (from the runs' model identity; null when no run records it)
    family: str  # the model kind (base, instruct, fine-tuned), plus " locked" for locked models
    chance: float | None  # mean 1 / choices over the test questions (null: no straight-up)
    n_dev: int  # dev questions (a probe run's train questions) the choices were made on
    n_test: int  # test questions everything is reported on
    straight_up: Estimate | None  # the straight-up accuracy on the test questions (Wilson over questions)
    best_method: str | None  # the method chosen on dev over every family (null: nothing to compare)
    best_family: str | None  # its family (prompt variants, chain of thought, majority vote, logit lens, probe,
    # unlocking)
    n_candidates: int  # candidates it was chosen from
    best: Estimate | None  # its accuracy on the test questions (Wilson over questions; a mean over runs: bootstrap)
    gap: Estimate | None  # best minus straight-up on the same test questions (paired percentile bootstrap over
    # questions)
    mcnemar_b: int | None  # test questions best gets right and straight-up wrong
    mcnemar_c: int | None  # test questions straight-up gets right and best wrong
    mcnemar_p: float | None  # exact McNemar (or sign test) p on those discordant questions
    ratio: Estimate | None  # best / straight-up (paired bootstrap); null unless straight-up is above chance by
    # its whole interval
    ratio_reason: str  # why the ratio is or is not shown
    naive_max_method: str | None  # the best candidate on the test questions themselves (optimistic)
    naive_max_test: float | None  # its test accuracy
    inflation: float | None  # naive max minus the chosen method's test accuracy
    null_excess: float | None  # how far the max over candidates beats their mean by chance alone (permutation null)
    probe_method: str | None  # the probe ceiling: target and layer chosen on train cross-validation
    probe: Estimate | None  # its test accuracy (Wilson over questions)
    probe_gap: Estimate | None  # probe ceiling minus straight-up on the same test questions (paired bootstrap)


@register
@dataclass(frozen=True)
class ReportManifest(Result):
    """`report.json` in a report directory: what the report read and wrote."""

    SCHEMA = "gaplens.report"
    VERSION = 2

    config: dict[str, Any]  # the report command's config
    command: str  # the command line that made it
    n_runs: int  # runs read
    kinds: list[str]  # the kinds of runs read (probe, eval, ...)
    runs: list[str]  # their directories
    figures: list[str]  # figures written, relative to the report directory
    n_rows: int  # tidy rows written to results.csv
    settings: dict[str, Any]  # resampling settings of the paired analysis (n_boot, n_perm, confidence, seed)
    summary: list[SummaryRow]  # the summary table, one row per model and task
