"""The results base class, the registry of results schemas and `load_result`.

Every results file is one `Result` subclass: a frozen dataclass with a schema name (`SCHEMA`, e.g. "gaplens.probe")
and a version (`VERSION`). `to_json()` writes ``{"schema": "gaplens.probe/2", <fields>}`` (strict JSON: NaN and inf
as null); `from_json(doc)` checks the name and version and refuses missing or unknown fields; `write(path)` writes
atomically and `read(path)` reads back, errors naming the file and the field. `load_result(path)` reads any
registered schema, dispatching on the file's `schema` field only.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from core.io import write_json
from core.schemas.convert import SchemaError, from_data, hints, to_data

REGISTRY: dict[str, type[Result]] = {}
"""schema name ("gaplens.probe") -> its results class."""

R = TypeVar("R", bound="Result")


@dataclasses.dataclass(frozen=True)
class Result:
    """Base of every results class (subclasses are frozen dataclasses registered with `register`)."""

    SCHEMA: ClassVar[str] = ""
    VERSION: ClassVar[int] = 0

    @classmethod
    def schema_id(cls) -> str:
        """"name/version", the value of the JSON `schema` field."""
        return f"{cls.SCHEMA}/{cls.VERSION}"

    def to_json(self) -> dict[str, Any]:
        """The results as strict JSON values, `schema` first."""
        return {"schema": self.schema_id(), **to_data(self)}

    @classmethod
    def from_json(cls, doc: Any, *, file: str | Path | None = None) -> Self:
        """The results of a JSON document; SchemaError (naming `file` and the field) unless it fits exactly."""
        where = f"{file}: " if file is not None else ""
        if not isinstance(doc, dict):
            raise SchemaError(f"{where}expected a JSON object, got {type(doc).__name__}")
        body = dict(doc)
        if "schema" not in body:
            raise SchemaError(f"{where}schema: missing field (this is not a gaplens results file, or one written "
                              f"before results were typed; rerun the command that made it)")
        name, version = parse_schema(body.pop("schema"), where)
        if name != cls.SCHEMA:
            raise SchemaError(f"{where}schema: {name!r}, expected {cls.SCHEMA!r}")
        if version != cls.VERSION:
            raise SchemaError(f"{where}schema: {name} version {version}; this gaplens reads version {cls.VERSION} "
                              f"({'an older' if version < cls.VERSION else 'a newer'} gaplens wrote it: rerun the "
                              "command with this version)")
        try:
            return from_data(cls, body)
        except SchemaError as exc:
            raise SchemaError(f"{where}{exc}") from None

    def write(self, path: str | Path) -> Path:
        """Write the results to `path` atomically (checked by reading the document back first)."""
        doc = self.to_json()
        type(self).from_json(json.loads(json.dumps(doc)), file=path)
        return write_json(path, doc)

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """The results in `path` (SchemaError naming the file when they do not fit this schema)."""
        return cls.from_json(_read(path), file=path)


def _read(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc})") from None


def parse_schema(value: Any, where: str = "") -> tuple[str, int]:
    """("gaplens.probe", 2) from "gaplens.probe/2"; SchemaError otherwise."""
    name, sep, version = str(value).rpartition("/")
    if not isinstance(value, str) or not sep or not version.isdigit():
        raise SchemaError(f"{where}schema: {value!r} is not of the form 'gaplens.<kind>/<version>'")
    return name, int(version)


def register(cls: type[R]) -> type[R]:
    """Class decorator: add a results class to `REGISTRY` (a schema name may be registered once)."""
    if not cls.SCHEMA or cls.VERSION < 1:
        raise TypeError(f"{cls.__name__} needs SCHEMA and a VERSION >= 1")
    if cls.SCHEMA in REGISTRY and REGISTRY[cls.SCHEMA] is not cls:
        raise ValueError(f"schema {cls.SCHEMA!r} is already registered by {REGISTRY[cls.SCHEMA].__name__}")
    if "schema" in hints(cls):
        raise TypeError(f"{cls.__name__}: a field may not be called 'schema'")
    REGISTRY[cls.SCHEMA] = cls
    return cls


def recorded_config_hash(path: str | Path, cls: type[Result]) -> str | None:
    """`header.config_hash` of the `cls` results in `path`; None when the file is absent or does not read as `cls`
    (an older schema version included), so a command reruns instead of reusing it."""
    try:
        result = cls.read(path)
    except (OSError, SchemaError):
        return None
    header = getattr(result, "header", None)
    return getattr(header, "config_hash", None)


def load_result(path: str | Path) -> Result:
    """The results in `path`, as the class its `schema` field names (SchemaError naming the file otherwise)."""
    doc = _read(path)
    if not isinstance(doc, dict) or "schema" not in doc:
        raise SchemaError(f"{path}: no 'schema' field (not a gaplens results file, or one written before results "
                          "were typed; rerun the command that made it)")
    name, _ = parse_schema(doc["schema"], f"{path}: ")
    if name not in REGISTRY:
        raise SchemaError(f"{path}: unknown schema {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name].from_json(doc, file=path)
