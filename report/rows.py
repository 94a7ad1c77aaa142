"""The report's data model: tidy rows and runs, built from typed results (`core.schemas`).

A `Row` is one measurement (model, task, method, variant, layer, metric, value, lo, hi, n, run_dir, step); a `Run` is
one results file: its typed results, the model's identity, its tidy rows, tables shown as they are, and notes.
`Emitter.add` turns an `Estimate` or a number into a row; a value that is absent (an optional field the schema allows
to be null) or undefined (NaN) is never dropped silently: it becomes a note on the run saying what is missing and why.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.schemas import Estimate, ModelIdentity, Result, RunHeader

TIDY_COLUMNS = ("model", "task", "method", "variant", "layer", "metric", "value", "lo", "hi", "n", "run_dir", "step")
LOCKED_SUFFIX = " [locked]"


@dataclass(frozen=True)
class Row:
    """One tidy measurement; `lo`/`hi` are nan without an interval, `layer`/`step`/`n` None when not applicable."""

    model: str
    task: str
    method: str
    variant: str
    layer: int | None
    metric: str
    value: float
    lo: float = math.nan
    hi: float = math.nan
    n: int | None = None
    run_dir: str = ""
    step: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The row as a dict in `TIDY_COLUMNS` order."""
        return {c: getattr(self, c) for c in TIDY_COLUMNS}


@dataclass
class Run:
    """One results file: its kind, label, typed results, tidy rows, tables to show as they are, and notes."""

    path: Path
    kind: str  # the command that wrote it: probe, eval, transfer, lock, unlock, diff
    model: str  # the label the report groups by (a locked model: "<base> [locked]")
    task: str
    result: Result
    identity: ModelIdentity  # the model the run is about (see RunHeader.model)
    family: str  # the model's kind (base, instruct, fine-tuned), plus " locked" for a locked model
    rows: list[Row] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    locked: bool = False
    provides: tuple[str, ...] = ()  # resolved paths under which later runs may name this run's checkpoint

    @property
    def header(self) -> RunHeader:
        """The run header of the results."""
        return self.result.header  # type: ignore[attr-defined]

    @property
    def n_params(self) -> int:
        """The model's parameter count (from its identity)."""
        return self.identity.n_params

    def relabel(self, model: str) -> None:
        """Give the run (and its rows) another model label."""
        self.model = model
        self.rows = [dataclasses.replace(r, model=model) for r in self.rows]


def model_label(model: str) -> str:
    """A short display name: embedded/HF names as they are, local paths by their last two parts."""
    s = str(model)
    if s.startswith(("/", ".")) or s.count("/") > 1:
        parts = Path(s).parts
        return "/".join(parts[-2:]) if len(parts) >= 2 else s
    return s


class Emitter:
    """Adds rows to one run with the run's identity filled in; a missing or undefined value becomes a note."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._absent: dict[tuple[str, str, str, str], list[str]] = {}

    def add(self, method: str, metric: str, value: Estimate | float | None, *, variant: str = "",
            layer: int | None = None, step: float | None = None, why: str = "") -> bool:
        """Add one row from an `Estimate` or a number. None (an optional value the run did not produce: `why` says
        why) or a NaN value adds a note instead; returns whether a row was added."""
        if value is None:
            self._note(method, metric, variant, why or "not recorded by the run", layer, step)
            return False
        v, lo, hi, n = ((value.value, value.lo, value.hi, value.n) if isinstance(value, Estimate)
                        else (float(value), math.nan, math.nan, None))
        if not math.isfinite(v):
            self._note(method, metric, variant, why or "undefined (NaN) in the run", layer, step)
            return False
        self.run.rows.append(Row(self.run.model, self.run.task, method, variant, layer, metric, v, lo, hi, n,
                                 str(self.run.path), step))
        return True

    def _note(self, method: str, metric: str, variant: str, why: str, layer: int | None, step: float | None) -> None:
        where = f"layer {layer}" if layer is not None else (f"step {step:g}" if step is not None else "")
        self._absent.setdefault((method, metric, variant, why), []).append(where)

    def close(self) -> None:
        """Turn the absent values into the run's notes (one per method, metric, variant and reason)."""
        for (method, metric, variant, why), where in self._absent.items():
            at = [w for w in where if w]
            self.run.notes.append(f"no {metric} for {method}" + (f" ({variant})" if variant else "")
                                  + (f" at {', '.join(at)}" if at else "") + f": {why}")
        self._absent.clear()
