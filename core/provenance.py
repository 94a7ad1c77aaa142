"""Provenance shared by every artifact: package version, time, and a stable hash of a config."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
from importlib import metadata
from typing import Any

PACKAGE = "gaplens"


def package_version() -> str:
    """The installed gaplens version, or '0+unknown' when running from a bare checkout."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples and paths as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def config_hash(cfg: Any, **extra: Any) -> str:
    """A short stable hash of a config (its JSON form), used to decide whether a result can be reused.

    Fields with ``metadata={"ui": True}`` (output folder, threads, progress bars: see `core.config.opt`) never
    count. A field with ``metadata={"hash_if_set": True}`` counts only when it differs from its default: a field
    added later that way leaves the hashes (and so the finished runs) of configs that do not use it valid.
    `extra` adds what the config resolves to at run time (e.g. the variant list chain of thought adds on a GPU).
    """
    doc = to_jsonable(cfg)
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        for f in dataclasses.fields(cfg):
            if f.metadata.get("ui") or (f.metadata.get("hash_if_set") and getattr(cfg, f.name) == f.default):
                doc.pop(f.name, None)
    doc.update(to_jsonable(extra))
    blob = json.dumps(doc, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


VERSIONED = ("torch", "transformers", "transformer-lens", "numpy", "scikit-learn", "h5py", "accelerate", "peft")


def versions() -> dict[str, str]:
    """Versions of the packages whose changes can move gaplens' numbers (and Python's)."""
    out = {"python": platform.python_version(), PACKAGE: package_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def machine() -> dict[str, Any]:
    """The machine a run ran on: platform, CPU kind and cores (bytes of float results can differ across CPU kinds
    and thread counts)."""
    return {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count()}


def stamp(**extra: Any) -> dict[str, Any]:
    """Base provenance record: package version and UTC time, plus whatever the caller adds."""
    return {
        "package": PACKAGE,
        "package_version": package_version(),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "machine": machine(),
        **{k: to_jsonable(v) for k, v in extra.items()},
    }
