"""Atomic file writes for run directories: write to a temporary name, then rename."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.io import read_json, write_csv, write_json  # noqa: F401 - re-exported
from core.provenance import to_jsonable


def write_jsonl(path: str | Path, rows: Sequence[Any]) -> Path:
    """Write one JSON object per line atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(to_jsonable(r)) + "\n" for r in rows))
    os.replace(tmp, path)
    return path
