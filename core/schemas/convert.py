"""One converter between dataclasses and JSON values, driven by type hints.

`to_data(obj)` turns a dataclass (and what it holds) into plain JSON values: fields in declaration order, tuples as
lists, numpy scalars and arrays as Python values, non-finite floats as null. `from_data(tp, data)` is its inverse and
checks as it goes: a dataclass needs a JSON object with exactly its fields (a missing or unknown field is an error),
and every value must match its type hint. Supported hints: dataclasses, `list[T]`, `tuple[T, ...]` and fixed tuples,
`dict[str, T]`, `T | None` (and unions of such types, tried in order), `Literal[...]`, `str`, `int`, `float`,
`bool` and `Any` (any JSON value, passed through). A `float` reads null as NaN (the way NaN and inf are written); a
`float | None` reads null as None. Errors are `SchemaError`s naming the field path, e.g. ``ceiling.test_accuracy.n``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np


class SchemaError(ValueError):
    """A value that does not fit its schema; the message names the file (when read from one) and the field path."""


def _describe(x: Any) -> str:
    text = repr(x)
    return f"{type(x).__name__} {text[:60] + '...' if len(text) > 60 else text}"


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass's fields (ClassVars left out)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in typing.get_type_hints(cls).items() if k in names}


def to_data(obj: Any) -> Any:
    """`obj` as plain JSON values (see the module docstring)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, np.ndarray):
        return [to_data(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, Mapping):
        return {str(k): to_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    raise SchemaError(f"cannot write a {type(obj).__name__} as JSON: {_describe(obj)}")


def _fail(where: str, want: str, data: Any) -> SchemaError:
    return SchemaError(f"{where or '(top level)'}: expected {want}, got {_describe(data)}")


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def from_data(tp: Any, data: Any, where: str = "") -> Any:
    """A value of type `tp` from JSON values `data`, checked against the type (SchemaError naming `where`)."""
    if tp is Any:
        return data
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None:
            if type(None) in args:
                return None
            raise _fail(where, "a value (null is not allowed here)", data)
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return from_data(options[0], data, where)
        errors = []
        for a in options:
            try:
                return from_data(a, data, where)
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(" / ".join(errors))
    if origin is Literal:
        allowed = typing.get_args(tp)
        if data not in allowed or isinstance(data, bool) != any(isinstance(a, bool) for a in allowed):
            raise _fail(where, "one of " + ", ".join(repr(a) for a in allowed), data)
        return data
    if dataclasses.is_dataclass(tp):
        return _from_object(tp, data, where)
    if isinstance(data, np.ndarray) and origin in (list, tuple):
        data = list(data)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(data, (list, tuple)):
            raise _fail(where, "a list", data)
        return [from_data(item, x, f"{where}[{i}]") for i, x in enumerate(data)]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(data, (list, tuple)):
            raise _fail(where, "a list", data)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_data(args[0], x, f"{where}[{i}]") for i, x in enumerate(data))
        if len(data) != len(args):
            raise _fail(where, f"a list of {len(args)} values", data)
        return tuple(from_data(a, x, f"{where}[{i}]") for i, (a, x) in enumerate(zip(args, data, strict=True)))
    if origin is dict:
        key, value = typing.get_args(tp)
        if key is not str:
            raise TypeError(f"{where}: only dict[str, ...] is supported, got {tp}")
        if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
            raise _fail(where, "an object with string keys", data)
        return {k: from_data(value, v, f"{where}.{k}" if where else k) for k, v in data.items()}
    if tp is float:
        if data is None:
            return math.nan
        if _is_int(data) or isinstance(data, (float, np.floating)):
            return float(data)
        raise _fail(where, "a number", data)
    if tp is int:
        if _is_int(data):
            return int(data)
        raise _fail(where, "an integer", data)
    if tp is bool:
        if isinstance(data, (bool, np.bool_)):
            return bool(data)
        raise _fail(where, "true or false", data)
    if tp is str:
        if isinstance(data, str):
            return data
        raise _fail(where, "a string", data)
    raise TypeError(f"{where}: unsupported type hint {tp!r}")


def _from_object(cls: type, data: Any, where: str) -> Any:
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        data = to_data(data)
    if not isinstance(data, Mapping):
        raise _fail(where, f"an object ({cls.__name__})", data)
    fields = hints(cls)
    prefix = f"{where}." if where else ""
    unknown = [k for k in data if k not in fields]
    missing = [k for k in fields if k not in data]
    if unknown:
        also = f"; missing: {', '.join(prefix + k for k in missing)}" if missing else ""
        raise SchemaError(f"{prefix}{unknown[0]}: unknown field of {cls.__name__} (its fields: {', '.join(fields)})"
                          + also)
    if missing:
        raise SchemaError(f"{prefix}{missing[0]}: missing field of {cls.__name__}")
    return cls(**{k: from_data(tp, data[k], prefix + k) for k, tp in fields.items()})
