"""Plug-ins: a user's own tasks, prompt variants, probes and policies, from an installed package or a module or file.

Two ways in, both working from the command line, the library and inside sweeps:

- **entry points**: a package declares, in its pyproject.toml::

      [project.entry-points."gaplens.tasks"]
      my_tasks = "my_pkg.tasks"              # a module: importing it registers (eval.tasks.register_task, ...)
      [project.entry-points."gaplens.variants"]
      my_variants = "my_pkg.variants:setup"  # or a function, called once with no arguments

  Groups: `GROUPS`. A registry loads its group on its first lookup (`load_group`), once per process, so an
  installed plug-in needs no flag: `eval.tasks` loads "gaplens.tasks", `eval.variants` "gaplens.variants".
- **--include MODULE|PATH.py** (`core.config.PluginOptions`, on every command): `include` imports a module by
  name or a Python file by path before the command runs; the sweep passes the flag on to its cells.

A plug-in that fails to import raises `PluginError` naming it (never a silent skip).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

GROUPS = ("gaplens.tasks", "gaplens.variants", "gaplens.probes", "gaplens.policies")
_loaded_groups: set[str] = set()
_included: dict[str, ModuleType] = {}


class PluginError(ValueError):
    """A plug-in that cannot be loaded: the message names it and why."""


def load_group(group: str) -> list[str]:
    """Load every entry point of `group` (once per process); the names loaded now ([] when already loaded).

    An entry point naming a module imports it; one naming a function (`module:function`) calls it."""
    if group not in GROUPS:
        raise ValueError(f"unknown plug-in group {group!r}; groups: {', '.join(GROUPS)}")
    if group in _loaded_groups:
        return []
    _loaded_groups.add(group)
    names = []
    for ep in entry_points(group=group):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, ModuleType):
                obj()
        except Exception as exc:  # noqa: BLE001 - any failure of foreign code, reported with its name
            raise PluginError(f"plug-in {ep.name!r} ({ep.value}) of entry-point group {group!r} failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
        log.info("loaded plug-in %s (%s) of %s", ep.name, ep.value, group)
        names.append(ep.name)
    return names


def load_all() -> None:
    """Load every group (the command line does this before a command runs)."""
    for group in GROUPS:
        load_group(group)


def is_path(spec: str) -> bool:
    """Whether an --include value names a Python file (ends in .py or is a file) rather than a module."""
    return spec.endswith(".py") or Path(spec).expanduser().is_file()


def include(spec: str) -> ModuleType:
    """Import the module named `spec`, or the Python file at path `spec` (once per file); PluginError otherwise."""
    spec = spec.strip()
    if not spec:
        raise PluginError("--include: empty module name or path")
    if not is_path(spec):
        try:
            return importlib.import_module(spec)
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"--include {spec}: cannot import module: {type(exc).__name__}: {exc}") from exc
    path = Path(spec).expanduser().resolve()
    key = str(path)
    if key in _included:
        return _included[key]
    if not path.is_file():
        raise PluginError(f"--include {spec}: no such file {path}")
    name = "gaplens_include_" + re.sub(r"\W", "_", path.stem) + "_" + hashlib.sha256(key.encode()).hexdigest()[:8]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"--include {spec}: {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001
        del sys.modules[name]
        raise PluginError(f"--include {spec}: {path} failed: {type(exc).__name__}: {exc}") from exc
    _included[key] = module
    log.info("included %s", path)
    return module


def include_all(specs: tuple[str, ...] | list[str] | None) -> list[ModuleType]:
    """`include` each of `specs` in order."""
    return [include(s) for s in specs or ()]
