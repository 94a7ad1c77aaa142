"""Finding and reading run directories for the report: results.json files -> `Run`s with tidy rows.

The report reads files only. A path may be a run directory, a sweep directory (searched recursively) or a
results.json; a file that cannot be read, or whose kind is unknown, is skipped with a logged note.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from report.kinds import EXTRACTORS, detect_kind, identity
from report.rows import LOCKED_SUFFIX, Run

log = logging.getLogger(__name__)

RESULTS = "results.json"


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """Every results.json at or below each path (a run dir, a sweep dir, or a results.json), sorted, unique."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_file() and p.name == RESULTS:
            found.add(p.resolve())
        elif p.is_dir():
            found.update(q.resolve() for q in p.rglob(RESULTS) if q.is_file())
        else:
            raise FileNotFoundError(f"run path {p} does not exist (give run directories or a sweep directory)")
    return sorted(found)


def display_path(path: Path) -> Path:
    """`path` relative to the working directory when it lies below it (portable CSVs and pages), else absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve())
    except ValueError:
        return p


def load_run(path: Path) -> Run | None:
    """A `Run` from one results.json, or None (logged) when it cannot be read or its kind is unknown."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("skipping %s: not readable as JSON (%s)", path, exc)
        return None
    if not isinstance(data, Mapping):
        log.warning("skipping %s: top level is not a JSON object", path)
        return None
    kind = detect_kind(data)
    if kind is None:
        log.warning("skipping %s: unknown kind of results (keys: %s)", path, ", ".join(sorted(data)[:12]))
        return None
    prov = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
    cfg = data.get("config") if isinstance(data.get("config"), Mapping) else {}
    model, task = identity(kind, data)
    run = Run(display_path(Path(path).parent), kind, model, task, dict(prov), dict(cfg),
              source=str(prov.get("model") or cfg.get("model") or ""))
    if kind == "lock":
        ck = data.get("checkpoint")
        run.provides = tuple(_resolved(p) for p in (ck, Path(path).parent) if p)
    run.locked = bool(prov.get("locked") or cfg.get("locked")) or kind in ("lock", "unlock")
    if run.locked and not run.model.endswith(LOCKED_SUFFIX):
        run.model += LOCKED_SUFFIX
    try:
        EXTRACTORS[kind](run, data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a layout not foreseen: keep what was read
        log.warning("%s: part of the %s results could not be read (%s: %s)", path, kind, type(exc).__name__, exc)
        run.notes.append(f"partly unreadable: {type(exc).__name__}: {exc}")
    if not run.rows and not run.tables:
        run.notes.append("no measurements recognised in this file")
    return run


def _resolved(p: str | Path) -> str:
    return str(Path(p).expanduser().resolve())


def link_locked(runs: list[Run]) -> None:
    """Label every run on a locked checkpoint like the lock run that made it ("<base> [locked]", or with the lock
    run's directory when several lock runs share a base), so locking, unlocking and evals of it group together."""
    locks = [r for r in runs if r.kind == "lock"]
    counts: dict[str, int] = {}
    for r in locks:
        counts[r.model] = counts.get(r.model, 0) + 1
    for r in locks:
        if counts[r.model] > 1:
            r.relabel(f"{r.model.removesuffix(LOCKED_SUFFIX)} [locked: {r.path.name}]")
    by_path = {p: r for r in locks for p in r.provides}
    for r in runs:
        if r.kind == "lock" or not r.source:
            continue
        lock = by_path.get(_resolved(r.source)) if ("/" in r.source or Path(r.source).exists()) else None
        if lock is not None:
            r.locked = True
            r.relabel(lock.model)


def load_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[str]]:
    """Every readable run under `paths` (runs on a locked checkpoint linked to their lock run) and the paths of
    the files that were skipped."""
    runs, skipped = [], []
    for p in find_results(paths):
        r = load_run(p)
        if r is None:
            skipped.append(str(display_path(p)))
        else:
            runs.append(r)
    link_locked(runs)
    return runs, skipped
