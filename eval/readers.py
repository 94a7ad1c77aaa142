"""Mapped readers: JSONL, CSV and Parquet files and Hugging Face datasets, through a `FieldMap`.

Task names (registered in `eval.tasks`; the field mapping syntax is in `eval.fieldmap`):

- ``jsonl:PATH[?FIELDS]``, ``csv:PATH[?FIELDS]``, ``parquet:PATH[?FIELDS]``: a local file. Row numbers in
  errors: JSONL the line, CSV the record after the header, Parquet the 1-based row. Ids: the id field, else
  ``<file stem>/<row>``. A plain ``jsonl:PATH`` whose first row has "question" is read by
  `eval.loaders.read_jsonl` exactly as before. Few-shot pool: ``fewshot=PATH`` in the query, else a sibling
  file (``<stem>.dev.<ext>``, or ``x_dev.<ext>`` next to ``x_test.<ext>``), read with the same mapping.
- ``hf:DATASET[:CONFIG]:SPLIT[?FIELDS]``: ``datasets.load_dataset(DATASET, CONFIG, split=SPLIT)``; DATASET
  may be a hub name or a local path (a folder written by ``save_to_disk`` is read with ``load_from_disk``).
  The split in the name is the one evaluated: `TaskSpec.split` must equal it or be left at "test". Ids: the id
  field, else ``<dataset name>[/<config>]/<split>/<row>``. Few-shot pool: ``fewshot=SPLIT`` in the query, else
  none.

Only ``fewshot=`` may join the field keys in the query.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from eval import loaders
from eval.fieldmap import FIELD_KEYS, FieldMap, map_row, parse_query, split_query
from eval.records import MCRecord, TaskError

log = logging.getLogger(__name__)

FILE_FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")
TASK_OPTIONS: tuple[str, ...] = ("fewshot",)
Rows = Iterator[tuple[int, str, Any]]  # (row number, "where" for errors, row)


def parse_arg(arg: str, what: str) -> tuple[str, FieldMap, dict[str, str]]:
    """(path or dataset, field map, task options) of "BASE?query"."""
    base, query = split_query(arg)
    fields, options = parse_query(query)
    for key in options:
        if key not in TASK_OPTIONS:
            known = ", ".join((*FIELD_KEYS, *TASK_OPTIONS))
            raise TaskError(f"{what}:{arg}: unknown key {key!r} after '?'; known: {known}")
    if not base.strip():
        raise TaskError(f"{what}:{arg}: no {'dataset' if what == 'hf' else 'path'} before '?'")
    return base.strip(), FieldMap(**fields), options


# --------------------------------------------------------------------------- files


def _jsonl_rows(path: Path) -> Rows:
    for lineno, obj in loaders._iter_jsonl(path):
        yield lineno, f"{path} row {lineno}", obj


def _csv_rows(path: Path) -> Rows:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise TaskError(f"{path}: empty file, expected a header row")
            names = [h.strip() for h in header]
            dups = sorted({h for h in names if names.count(h) > 1})
            if dups or "" in names:
                raise TaskError(f"{path} header: column names must be unique and non-empty, got {','.join(header)}")
            row = 0
            for row, cells in enumerate(reader, start=1):
                line = reader.line_num
                where = f"{path} row {row}" + (f" (line {line})" if line != row + 1 else "")
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(names):
                    raise TaskError(f"{where}: expected {len(names)} fields ({','.join(names)}), got {len(cells)}")
                yield row, where, dict(zip(names, cells, strict=True))
    except UnicodeDecodeError as exc:
        raise TaskError(f"{path}: not valid UTF-8 ({exc.reason})") from exc
    except csv.Error as exc:
        raise TaskError(f"{path}: malformed CSV ({exc})") from exc


def _parquet_rows(path: Path) -> Rows:
    import pyarrow.parquet as pq  # installed with datasets

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise TaskError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc
    for i, row in enumerate(table.to_pylist(), start=1):
        yield i, f"{path} row {i}", row


_ROW_READERS: dict[str, Callable[[Path], Rows]] = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}


def map_rows(rows: Rows, fields: FieldMap, *, what: str, split: str, id_prefix: str,
             source: Callable[[int], str]) -> list[MCRecord]:
    """Records of `rows` under `fields` (resolved from the first row); ids must be unique."""
    records: list[MCRecord] = []
    ids = loaders._IdTracker()
    resolved: FieldMap | None = None
    for row_no, where, row in rows:
        if resolved is None:
            if not isinstance(row, Mapping):
                raise TaskError(f"{where}: expected an object with named fields, got {type(row).__name__}")
            resolved = fields.resolve(row)
            log.debug("%s: fields %s", what, resolved.to_query())
        rec = map_row(row, resolved, where=where, source=source(row_no), default_id=f"{id_prefix}/{row_no}",
                      split=split)
        ids.add(rec.id, where, str(row_no), resolved.id or "id")
        records.append(rec)
    if not records:
        raise TaskError(f"{what}: no records")
    return records


def read_table(path: str | os.PathLike[str], fields: FieldMap | None = None, *, fmt: str | None = None,
               split: str = "test") -> list[MCRecord]:
    """Records of a JSONL, CSV or Parquet file (`fmt`, default from the suffix) under `fields`."""
    path = Path(path).expanduser()
    fmt = fmt or {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(path.suffix.lower())
    if fmt not in _ROW_READERS:
        raise TaskError(f"{path}: unknown file format; use one of {', '.join(FILE_FORMATS)}")
    if not path.is_file():
        raise TaskError(f"{fmt} task file not found: {path}")
    return map_rows(_ROW_READERS[fmt](path), fields or FieldMap(), what=str(path), split=split, id_prefix=path.stem,
                    source=lambda row: f"{path}:{row}")


def _legacy_jsonl(path: Path, fields: FieldMap) -> bool:
    """Whether a plain `jsonl:PATH` (no mapping) is the gaplens layout, read by `loaders.read_jsonl` as before."""
    if not fields.is_default():
        return False
    try:
        first = next(_jsonl_rows(path), None)
    except TaskError:
        return True  # let the old reader report it
    return first is None or not isinstance(first[2], dict) or "question" in first[2] or "input" not in first[2]


def _read_file(fmt: str, path: Path, fields: FieldMap, split: str) -> list[MCRecord]:
    if fmt == "jsonl" and path.is_file() and _legacy_jsonl(path, fields):
        return loaders.read_jsonl(path, split=split)
    return read_table(path, fields, fmt=fmt, split=split)


def _pool_path(path: Path, options: Mapping[str, str]) -> Path | None:
    if "fewshot" in options:
        pool = Path(options["fewshot"]).expanduser()
        if not pool.is_file():
            raise TaskError(f"few-shot file not found: {pool} (fewshot= of {path})")
        return pool
    return loaders.jsonl_sibling(path)


def file_loader(fmt: str) -> loaders.Loader:
    """The registry loader of `fmt:PATH[?FIELDS]`."""

    def load(arg: str | None, split: str, data_dir: str | None) -> list[MCRecord]:
        assert arg is not None
        base, fields, _ = parse_arg(arg, fmt)
        return _read_file(fmt, Path(base).expanduser(), fields, split)

    return load


def file_few_shot_split(fmt: str) -> Callable[[str | None, str, str | None], str | None]:
    def few_shot_split(arg: str | None, split: str, data_dir: str | None) -> str | None:
        assert arg is not None
        base, _, options = parse_arg(arg, fmt)
        return "dev" if _pool_path(Path(base).expanduser(), options) is not None else None

    return few_shot_split


def file_few_shot(fmt: str) -> loaders.Loader:
    def few_shot(arg: str | None, split: str, data_dir: str | None) -> list[MCRecord]:
        assert arg is not None
        base, fields, options = parse_arg(arg, fmt)
        pool = _pool_path(Path(base).expanduser(), options)
        return [] if pool is None else _read_file(fmt, pool, fields, "dev")

    return few_shot


# --------------------------------------------------------------------------- Hugging Face datasets


def parse_hf(arg: str) -> tuple[str, str | None, str]:
    """(dataset, config or None, split) of "DATASET[:CONFIG]:SPLIT" (no query)."""
    parts = arg.split(":")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise TaskError(f"hf:{arg}: expected hf:DATASET[:CONFIG]:SPLIT, e.g. hf:allenai/ai2_arc:ARC-Easy:test")
    parts = [p.strip() for p in parts]
    return parts[0], (parts[1] if len(parts) == 3 else None), parts[-1]


def _hf_dataset(dataset: str, config: str | None, split: str) -> Any:
    """The rows of one split (a `datasets.Dataset`); a `save_to_disk` folder is read with `load_from_disk`."""
    import datasets  # heavy; only for hf: tasks

    local = Path(dataset).expanduser()
    if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
        saved = datasets.load_from_disk(str(local))
        if isinstance(saved, datasets.DatasetDict):
            if split not in saved:
                raise KeyError(f"no split {split!r}; the saved dataset has {', '.join(saved)}")
            return saved[split]
        return saved
    return datasets.load_dataset(dataset, config, split=split)


def read_hf(dataset: str, config: str | None, split: str, fields: FieldMap | None = None) -> list[MCRecord]:
    """Records of one split of a Hugging Face dataset (hub name or local path) under `fields`."""
    label = f"hf:{dataset}" + (f":{config}" if config else "") + f":{split}"
    try:
        rows = _hf_dataset(dataset, config, split)
    except TaskError:
        raise
    except Exception as exc:  # any datasets failure becomes one TaskError naming the dataset
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise TaskError(f"{label}: datasets could not load it ({type(exc).__name__}: {detail})") from exc
    name = Path(dataset.rstrip("/")).name + (f"/{config}" if config else "")
    numbered = ((i, f"{label} row {i}", row) for i, row in enumerate(rows, start=1))
    return map_rows(numbered, fields or FieldMap(), what=label, split=split, id_prefix=f"{name}/{split}",
                    source=lambda i: f"{label}:{i}")


def _hf_split(arg: str, split: str) -> tuple[str, str | None, str, FieldMap, dict[str, str]]:
    base, fields, options = parse_arg(arg, "hf")
    dataset, config, named = parse_hf(base)
    if split not in (named, "test"):
        raise TaskError(f"hf:{arg}: the name says split {named!r} but split {split!r} was asked; give the split once")
    return dataset, config, named, fields, options


def load_hf_task(arg: str | None, split: str, data_dir: str | None) -> list[MCRecord]:
    assert arg is not None
    dataset, config, named, fields, _ = _hf_split(arg, split)
    return read_hf(dataset, config, named, fields)


def hf_few_shot_split(arg: str | None, split: str, data_dir: str | None) -> str | None:
    assert arg is not None
    return _hf_split(arg, split)[4].get("fewshot")


def hf_few_shot(arg: str | None, split: str, data_dir: str | None) -> list[MCRecord]:
    assert arg is not None
    dataset, config, _, fields, options = _hf_split(arg, split)
    return read_hf(dataset, config, options["fewshot"], fields) if "fewshot" in options else []

