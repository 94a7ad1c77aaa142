"""Atomic files for run directories: JSON (strict: NaN and inf become null), CSV and PNG, each written to a
temporary name and renamed, so a reader never sees half a file."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.provenance import to_jsonable


def clean(obj: Any) -> Any:
    """`obj` as strict-JSON values: numpy scalars and arrays as Python values, non-finite floats as None,
    dataclasses, tuples and paths as in `core.provenance.to_jsonable`."""
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return clean(to_jsonable(obj))


def write_json(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Write `obj` (see `clean`) to `path` atomically; parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(clean(obj), indent=indent, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | Path) -> Any:
    """The JSON value in `path`."""
    return json.loads(Path(path).read_text())


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write a CSV with `header` atomically; parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def save_png(fig: Any, path: str | Path, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=dpi)
    os.replace(tmp, path)
    return path
