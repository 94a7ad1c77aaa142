"""Finding and reading run directories for the report: results.json files -> `Run`s with tidy rows.

The report reads files only, each with `core.schemas.load_result` (the file's `schema` field says what it is). A
path may be a run directory, a sweep directory (searched recursively) or a results.json. A file that is not a valid
results file of a kind the report reads is an error naming the file and the field: nothing is skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from core.schemas import LockResult, SchemaError, load_result
from report.kinds import EXTRACTORS
from report.rows import LOCKED_SUFFIX, Run, model_label

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


def _resolved(p: str | Path) -> str:
    return str(Path(p).expanduser().resolve())


def load_run(path: Path) -> Run:
    """A `Run` from one results.json; SchemaError naming the file when it is not a run's valid results."""
    result = load_result(path)
    extract = EXTRACTORS.get(type(result))
    if extract is None:
        raise SchemaError(f"{path}: a {result.schema_id()} file is not a run's results "
                          f"(the report reads {', '.join(c.SCHEMA for c in EXTRACTORS)})")
    header = result.header  # type: ignore[attr-defined]
    ident = header.model
    locked = isinstance(result, LockResult) or ident.kind_source == "lock-record"
    if isinstance(result, LockResult):
        label, family = model_label(result.base_model.name), f"{result.base_model.kind} locked"
    else:
        label, family = model_label(ident.name), ident.kind + (" locked" if locked else "")
    run = Run(display_path(Path(path).parent), header.command, label + (LOCKED_SUFFIX if locked else ""),
              header.task.name, result, ident, family, locked=locked)
    if isinstance(result, LockResult):
        run.provides = (_resolved(result.checkpoint), _resolved(Path(path).parent))
    extract(run, result)
    if not run.rows and not run.tables:
        run.notes.append("no measurements in this file")
    return run


def link_locked(runs: list[Run]) -> None:
    """Label every run on a locked checkpoint like the lock run that made it ("<base> [locked]", or with the lock
    run's directory when several lock runs share a base), so locking, unlocking and evals of it group together."""
    locks = [r for r in runs if isinstance(r.result, LockResult)]
    counts: dict[str, int] = {}
    for r in locks:
        counts[r.model] = counts.get(r.model, 0) + 1
    for r in locks:
        if counts[r.model] > 1:
            r.relabel(f"{r.model.removesuffix(LOCKED_SUFFIX)} [locked: {r.path.name}]")
    by_path = {p: r for r in locks for p in r.provides}
    for r in runs:
        if isinstance(r.result, LockResult) or not r.locked or r.identity.path is None:
            continue
        lock = by_path.get(_resolved(r.identity.path))
        if lock is not None:
            r.relabel(lock.model)


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run under `paths`, runs on a locked checkpoint linked to their lock run (errors name the file)."""
    runs = [load_run(p) for p in find_results(paths)]
    link_locked(runs)
    return runs
