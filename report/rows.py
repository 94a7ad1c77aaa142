"""The report's data model: tidy rows, runs, and helpers to read values out of results.json files.

A `Row` is one measurement (model, task, method, variant, layer, metric, value, lo, hi, n, run_dir, step); a `Run` is
one results.json with its identity, provenance and rows. `Emitter.add` turns an Estimate dict (or a bare number)
into a row and silently ignores missing values, so extractors can tolerate missing sections.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIDY_COLUMNS = ("model", "task", "method", "variant", "layer", "metric", "value", "lo", "hi", "n", "run_dir", "step")
LOCKED_SUFFIX = " [locked]"

# Parameter counts of named models whose runs do not record `n_params` in their provenance.
KNOWN_SIZES: dict[str, float] = {
    "smollm2-135m-instruct": 135e6,
    "huggingfacetb/smollm2-135m-instruct": 135e6,
    "gemma-3-270m": 270e6,
    "google/gemma-3-270m": 270e6,
}


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
    """One results.json: its kind, identity, provenance, tidy rows and any extra tables to show as they are."""

    path: Path
    kind: str
    model: str
    task: str
    provenance: dict[str, Any]
    config: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    locked: bool = False
    source: str = ""  # the model as the run named it (name, HF id or path)
    provides: tuple[str, ...] = ()  # resolved paths under which later runs may name this run's checkpoint

    def relabel(self, model: str) -> None:
        """Give the run (and its rows) another model label."""
        self.model = model
        self.rows = [dataclasses.replace(r, model=model) for r in self.rows]


def estimate(x: Any) -> tuple[float, float, float, int | None] | None:
    """(value, lo, hi, n) from an Estimate dict {value, lo, hi, n}, a bare number, or None."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x), math.nan, math.nan, None
    if isinstance(x, Mapping):
        v = x.get("value", x.get("accuracy"))
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            n = x.get("n")
            return (float(v), _num(x.get("lo", x.get("ci_lo"))), _num(x.get("hi", x.get("ci_hi"))),
                    int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None)
        if "test_accuracy" in x:
            return estimate(x["test_accuracy"])
    return None


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def by_layer(x: Any, layers: list[int] | None = None) -> dict[int, Any]:
    """{layer: value} from a list indexed like `layers` (or by layer when None) or a dict keyed by layer."""
    if isinstance(x, Mapping):
        try:
            return {int(k): v for k, v in x.items()}
        except (TypeError, ValueError):
            return {}
    if isinstance(x, list):
        if layers is not None and len(layers) == len(x):
            return dict(zip(layers, x, strict=True))
        return dict(enumerate(x))
    return {}


def first(data: Any, *keys: str) -> Any:
    """The value of the first key present (and not None) in `data` (None if `data` is not a mapping)."""
    if not isinstance(data, Mapping):
        return None
    for k in keys:
        if data.get(k) is not None:
            return data[k]
    return None


def as_int(x: Any) -> int | None:
    """int(x), or None for None, booleans and non-numbers."""
    try:
        return int(x) if x is not None and not isinstance(x, bool) else None
    except (TypeError, ValueError):
        return None


def model_label(model: Any) -> str:
    """A short display name: embedded/HF names as they are, local paths by their last two parts."""
    s = str(model or "unknown")
    if s.startswith(("/", ".")) or s.count("/") > 1:
        parts = Path(s).parts
        return "/".join(parts[-2:]) if len(parts) >= 2 else s
    return s


def model_size(provenance: Mapping[str, Any], model: str) -> float | None:
    """Parameter count from provenance (`n_params`), else the table of known names, else None."""
    for key in ("n_params", "num_params", "n_parameters"):
        v = provenance.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return float(v)
    names = (model, str(provenance.get("model", "")), str(provenance.get("base_model", "")),
             str(provenance.get("hf_id", "")))
    for name in names:
        if name.lower().removesuffix(LOCKED_SUFFIX) in KNOWN_SIZES:
            return KNOWN_SIZES[name.lower().removesuffix(LOCKED_SUFFIX)]
    return None


class Emitter:
    """Adds rows to one run with the run's identity filled in; values that are missing or not finite are skipped."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def add(self, method: str, metric: str, value: Any, *, variant: str = "", layer: int | None = None,
            step: float | None = None) -> bool:
        """Add one row from an Estimate dict or number; False (nothing added) when there is no finite value."""
        est = estimate(value)
        if est is None or not math.isfinite(est[0]):
            return False
        v, lo, hi, n = est
        self.run.rows.append(Row(self.run.model, self.run.task, method, variant, layer, metric, v, lo, hi, n,
                                 str(self.run.path), step))
        return True
