"""Provenance shared by every artifact: package version, time, and a stable hash of a config."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
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


def config_hash(cfg: Any) -> str:
    """A short stable hash of a config (its JSON form), used to decide whether a result can be reused.

    A dataclass field with ``metadata={"hash_if_set": True}`` counts only when it differs from its default: a
    field added later that way leaves the hashes (and so the finished runs) of configs that do not use it valid.
    """
    doc = to_jsonable(cfg)
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        for f in dataclasses.fields(cfg):
            if f.metadata.get("hash_if_set") and getattr(cfg, f.name) == f.default:
                doc.pop(f.name, None)
    blob = json.dumps(doc, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stamp(**extra: Any) -> dict[str, Any]:
    """Base provenance record: package version and UTC time, plus whatever the caller adds."""
    return {
        "package": PACKAGE,
        "package_version": package_version(),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **{k: to_jsonable(v) for k, v in extra.items()},
    }
