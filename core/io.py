"""Atomic files: every file gaplens writes goes to a temporary sibling name and is renamed into place when
complete, so a reader never sees half a file and an interrupted write leaves the old file (or none).

`atomic_path` / `atomic_write` are the one implementation (optionally flushed to disk with fsync, for data that a
resume depends on); `atomic_dir` does the same for a directory; JSON (strict: NaN and inf become null), JSON lines,
text, CSV and figures are written through them.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from core.provenance import to_jsonable


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path` (unique to this process) to write; it replaces `path` when the block
    completes (flushed to disk first with `fsync`) and is removed if the block fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], *, fsync: bool = False) -> Path:
    """Write `path` through `write(binary file)` atomically (see `atomic_path`)."""
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "wb") as fh:
        write(fh)
    return Path(path)


def write_text(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), fsync=fsync)


def write_jsonl(path: str | Path, rows: Sequence[Any]) -> Path:
    """Write one JSON object per line atomically."""
    return write_text(path, "".join(json.dumps(clean(r)) + "\n" for r in rows))


@contextlib.contextmanager
def atomic_dir(target: str | Path, *, owner: dict[str, Any] | None = None,
               owner_file: str = ".gaplens-owner.json") -> Iterator[Path]:
    """Yield a temporary hidden sibling directory that replaces `target` only if the block completes. `owner`
    (e.g. pid and host) is recorded in it while it is being written, so that one left by a killed process can be
    recognised and cleaned later."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    if owner is not None:
        (tmp / owner_file).write_text(json.dumps(owner))
    try:
        yield tmp
        (tmp / owner_file).unlink(missing_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    return write_text(path, json.dumps(clean(obj), indent=indent, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON value in `path` (a ValueError naming the file when it is not JSON)."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it and rerun the command that wrote it") from None


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write a CSV with `header` atomically; parent directories are created."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return Path(path)


def save_figure(fig: Any, path: str | Path, *, dpi: int = 110, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically, in the format the suffix names (.png, .svg, .pdf)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, **kwargs)
    return path


def save_png(fig: Any, path: str | Path, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    return save_figure(fig, path, dpi=dpi)
