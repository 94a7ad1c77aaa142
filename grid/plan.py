"""Sweep configs to cells: the JSON grid, read and checked, becomes a list of independent `Cell`s.

The config (see `docs/sweeps.md`) is a JSON object: `out` (the sweep directory), `methods` (commands), the axes
`models`, `tasks` and `variants`, any other key a flag for every method that has it, per-method blocks of flags,
`resources` (top level and per method) and `env`. What a method accepts is given by a `Method` (its config's
field names), so this module knows no command. A method's flag value `@OTHER` (or `@OTHER/sub/path`) names the
directory of a cell of the method OTHER listed earlier: the method then gets one cell per OTHER cell, with that
cell's axis values, and runs after it (`transfer --store @eval`, `unlock --model @lock/model`).
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from grid.cellrun import DONE, RESULTS, read_cell_json

AXES = {"models": "model", "tasks": "task", "variants": "variants"}  # config key -> flag field
TOP_KEYS = frozenset({"out", "methods", "env", "resources", *AXES})
RESOURCE_KEYS = ("cpus", "gpus", "memory_gb")


@dataclass(frozen=True)
class Resources:
    """What one cell needs: CPUs, GPUs (a number, or "auto": 1 when the cluster has GPUs, else 0), memory (GiB)."""

    cpus: float = 1.0
    gpus: float | str = 0.0
    memory_gb: float = 0.0

    def merged(self, over: Any, where: str) -> Resources:
        """These resources with the keys of `over` (a config object) replaced; ValueError naming `where`."""
        if not over:
            return self
        if not isinstance(over, dict):
            raise ValueError(f"'{where}' must be an object with keys {', '.join(RESOURCE_KEYS)}")
        for key, value in over.items():
            if key not in RESOURCE_KEYS:
                raise ValueError(f"'{where}.{key}' is not a resource; use {', '.join(RESOURCE_KEYS)}")
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and value >= 0) and not (key == "gpus" and value == "auto"):
                raise ValueError(f"'{where}.{key}' must be a number >= 0" + (' or "auto"' if key == "gpus" else "")
                                 + f", got {value!r}")
            if key == "cpus" and value <= 0:
                raise ValueError(f"'{where}.cpus' must be > 0, got {value!r}")
        return replace(self, **over)

    def resolved(self, cluster_gpus: float) -> Resources:
        """`gpus="auto"` made a number: 1 where the cluster has GPUs, else 0."""
        return replace(self, gpus=(1.0 if cluster_gpus > 0 else 0.0)) if self.gpus == "auto" else self


@dataclass(frozen=True)
class Method:
    """A command as the sweep sees it: its flag fields, which are positional, its default resources, and whether
    its `threads` field defaults to every core (the sweep then passes `--threads` = the cell's CPUs)."""

    name: str
    fields: frozenset[str]
    positional: frozenset[str] = frozenset()
    resources: Resources = Resources()
    threads_auto: bool = False


@dataclass(frozen=True)
class Cell:
    """One independent run: `cli.py METHOD LAUNCH --out DIR`; `args` is its identity (what cell.json records)."""

    method: str
    model: str
    task: str
    variants: str
    args: tuple[str, ...]  # flags without --out; a reference to another cell as @CELLNAME[/sub]
    dir: Path
    launch: tuple[str, ...] = ()  # the flags it runs with (references resolved to paths); args if empty
    resources: Resources = Resources()
    after: tuple[str, ...] = ()  # cells that must be done first
    threads_auto: bool = False

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def argv(self) -> list[str]:
        """The full argument list after `cli.py`."""
        return [self.method, *(self.launch or self.args), "--out", str(self.dir)]

    def is_done(self) -> bool:
        """results.json exists and cell.json records the same arguments and status done.

        Only the runner that saw the command exit 0 writes status done. A cell whose command wrote results.json but
        whose runner was killed before recording the exit (cell.json still says running), or whose command failed
        after writing it, is not done: it runs again, and its command reuses its finished results when the config
        is the same (eval, probe, transfer, lock, diff and audit do).
        """
        if not (self.dir / RESULTS).exists():
            return False
        doc = read_cell_json(self.dir)
        return doc is not None and doc.get("args") == list(self.args) and doc.get("status") == DONE


# ---------------------------------------------------------------- reading the config


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _strings(spec: Mapping[str, Any], key: str, path: Path) -> list[str]:
    v = spec.get(key)
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"{path}: '{key}' must be a non-empty list of strings, got {v!r}")
    return v


def _check_value(path: Path, key: str, value: Any) -> None:
    ok = value is None or isinstance(value, (str, int, float, bool)) or (
        isinstance(value, list) and all(isinstance(x, (str, int, float)) for x in value))
    if not ok:
        raise ValueError(f"{path}: flag '{key}' must be a string, number, boolean, list or null; got {value!r}")


def _expand(value: str, path: Path, key: str) -> str:
    """`value` with $VAR / ${VAR} replaced from the environment; ValueError naming `key` if one is unset."""
    out = os.path.expandvars(value)
    missing = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", out)
    if missing:
        raise ValueError(f"{path}: '{key}' names the environment variable ${missing[0]}, which is not set")
    return out


def load_spec(path: Path, methods: Collection[str]) -> dict[str, Any]:
    """The sweep config as a dict with $VARS expanded; ValueError naming the file and key on bad input.

    `methods`: the names a config may list in 'methods' (and use as per-method blocks).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep config {path} does not exist")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: the top level must be a JSON object")
    if not isinstance(spec.get("out"), str) or not spec["out"]:
        raise ValueError(f"{path}: 'out' (the sweep directory) must be a non-empty string")
    for m in _strings(spec, "methods", path):
        if m not in methods:
            raise ValueError(f"{path}: unknown method {m!r} in 'methods'; known: {', '.join(sorted(methods))}")
    for key in ("models", "tasks"):
        _strings(spec, key, path)
    v = spec.get("variants")
    if v is not None and not (isinstance(v, str) and v) and not (
            isinstance(v, list) and v and all(isinstance(x, str) and x for x in v)):
        raise ValueError(f"{path}: 'variants' must be a comma-separated string or a list of such strings")
    if not isinstance(spec.get("env", {}), dict):
        raise ValueError(f"{path}: 'env' must be an object of environment variables")
    spec["out"] = _expand(spec["out"], path, "out")
    spec["env"] = {str(k): _expand(str(x), path, f"env.{k}") for k, x in spec.get("env", {}).items()}
    blocks = [("", spec)] + [(f"{m}.", spec[m]) for m in methods if m in spec]
    for where, flags in blocks:
        if not isinstance(flags, dict):
            raise ValueError(f"{path}: '{where[:-1]}' must be an object of flags for that command")
        for key, value in list(flags.items()):
            if key == "resources":
                Resources().merged(value, where + key)  # checked here, applied in `plan`
                continue
            if not where and (key in TOP_KEYS or key in methods):
                continue
            if isinstance(value, str) and "$" in value:
                flags[key] = value = _expand(value, path, where + key)
            if where and key in ("out", "models", "tasks", "methods"):
                raise ValueError(f"{path}: '{where}{key}' cannot be set per method (the sweep sets --out, the "
                                 "methods and the model and task axes)")
            if key in ("model", "task") and not (where and isinstance(value, str) and value.startswith("@")):
                raise ValueError(f"{path}: '{where}{key}' is not a sweep key; use '{key}s': [...] (per method, "
                                 "only a reference to another method's cells, '@METHOD[/path]')")
            _check_value(path, where + key, value)
    return spec


# ---------------------------------------------------------------- config -> cells


def _flag_args(name: str, value: Any, positional: bool = False) -> list[str]:
    """The argv tokens of one flag: booleans as --x/--no-x, lists comma-joined (positional lists as tokens)."""
    if positional:
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if isinstance(value, bool):
        return [_flag(name) if value else "--no-" + name.replace("_", "-")]
    if isinstance(value, (list, tuple)):
        return [_flag(name), ",".join(str(v) for v in value)]
    return [_flag(name), str(value)]


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", Path(text).name if "/" in text else text).strip("-")[:limit] or "x"


@dataclass(frozen=True)
class _Ref:
    method: str
    sub: str  # "" or "/sub/path"


def _refs(own: Mapping[str, Any], method: str, earlier: list[str], path: Path) -> dict[str, _Ref]:
    """The flags of a method block that reference another method's cells (`@METHOD[/sub]`)."""
    refs: dict[str, _Ref] = {}
    for key, value in own.items():
        if isinstance(value, str) and value.startswith("@"):
            target, _, sub = value[1:].partition("/")
            if target not in earlier:
                raise ValueError(f"{path}: '{method}.{key}': {value!r} must name a method listed before {method} "
                                 f"in 'methods' (listed before: {', '.join(earlier) or 'none'})")
            refs[key] = _Ref(target, "/" + sub if sub else "")
    if len({r.method for r in refs.values()}) > 1:
        raise ValueError(f"{path}: '{method}': references name more than one method ({', '.join(own)})")
    return refs


def _unknown(path: Path, cell: Cell, method: Method, key: str, where: str) -> ValueError:
    close = difflib.get_close_matches(key, sorted(method.fields), n=1)
    hint = f"; did you mean {_flag(close[0])}?" if close else ""
    return ValueError(f"{path}: cell {cell.name}: the {method.name} command has no flag {_flag(key)} (set by "
                      f"'{where}'){hint}")


def plan(spec: Mapping[str, Any], methods: Mapping[str, Method], path: Path = Path("sweep config")) -> list[Cell]:
    """The cells of a sweep, in order (method, then model, task, variants); every flag checked against its method.

    Unknown flags are refused naming the cell and the flag; a top-level flag that no method has is refused too.
    """
    out = Path(spec["out"])
    common = {k: v for k, v in spec.items() if k not in TOP_KEYS and not isinstance(v, dict)}  # dict: a method block
    top_resources = spec.get("resources") or {}
    used: set[str] = set()
    cells: list[Cell] = []
    by_method: dict[str, list[Cell]] = {}
    for name in spec["methods"]:
        m = methods[name]
        own = dict(spec.get(name) or {})
        resources = m.resources.merged(top_resources, "resources").merged(own.pop("resources", None),
                                                                             f"{name}.resources")
        variants = own.pop("variants", spec.get("variants"))
        refs = _refs(own, name, list(by_method), path)
        parents = by_method[next(iter(refs.values())).method] if refs else [None]
        values = {"model": spec["models"], "task": spec["tasks"],
                  "variants": [None] if variants is None else ([variants] if isinstance(variants, str) else variants)}
        axes = [f for f in AXES.values() if f in m.fields and f not in refs]
        flags = {k: v for k, v in {**common, **own}.items()
                 if v is not None and (k in m.fields or k in own) and (k not in AXES.values() or k in refs)}
        used.update(k for k in common if k in m.fields)
        mine: list[Cell] = []
        for parent in parents:
            labels = {f: getattr(parent, f) for f in AXES.values()} if parent else {}
            inherited = {f: labels[f] for f in axes if labels.get(f)}
            free = [f for f in axes if f not in inherited]
            for combo in itertools.product(*(values[f] for f in free)):
                axis = {**inherited, **dict(zip(free, combo, strict=True))}
                labels_ = {**labels, **{f: v for f, v in axis.items() if v is not None}}
                args: list[str] = []
                launch: list[str] = []
                for f in AXES.values():
                    if axis.get(f) is not None:
                        args += _flag_args(f, axis[f])
                        launch += _flag_args(f, axis[f])
                for key in sorted(flags, key=lambda k: (k not in m.positional, k)):
                    value = flags[key]
                    if key in refs:
                        assert parent is not None
                        args += _flag_args(key, f"@{parent.name}{refs[key].sub}")
                        launch += _flag_args(key, f"{parent.dir}{refs[key].sub}")
                    else:
                        args += _flag_args(key, value, key in m.positional)
                        launch += _flag_args(key, value, key in m.positional)
                digest = hashlib.sha256(json.dumps([name, *args]).encode()).hexdigest()[:10]
                parts = [name] + [_slug(labels_[f]) for f in ("model", "task") if labels_.get(f)]
                if labels_.get("variants") and len(values["variants"]) > 1:
                    parts.append(_slug(labels_["variants"], 24))
                cell = Cell(name, labels_.get("model") or "", labels_.get("task") or "", labels_.get("variants") or "",
                            tuple(args), out / f"{'-'.join(parts)}-{digest}", tuple(launch), resources,
                            (parent.name,) if parent and refs else (), m.threads_auto)
                mine.append(cell)
        for key in sorted(own):
            if key not in m.fields:
                raise _unknown(path, mine[0], m, key, f"{name}.{key}")
        if "variants" in (spec.get(name) or {}) and "variants" not in m.fields:
            raise _unknown(path, mine[0], m, "variants", f"{name}.variants")
        by_method[name] = mine
        cells += mine
    unused = sorted(k for k in common if k not in used)
    if unused:
        raise ValueError(f"{path}: {', '.join(_flag(k) for k in unused)} is accepted by none of the methods "
                         f"{', '.join(spec['methods'])}")
    return cells


def record_status(cells: list[Cell]) -> dict[str, dict[str, Any]]:
    """sweep.json's view of each cell: its labels, and done (with when it ran) or pending."""
    status: dict[str, dict[str, Any]] = {}
    for c in cells:
        entry: dict[str, Any] = {"method": c.method, "model": c.model, "task": c.task, "variants": c.variants,
                                 "status": "pending", "returncode": None, "seconds": None, "host": None,
                                 "error": None}
        if c.is_done():
            meta = read_cell_json(c.dir) or {}
            entry.update(status="done", **{k: meta[k] for k in ("returncode", "seconds") if k in meta})
        status[c.name] = entry
    return status


