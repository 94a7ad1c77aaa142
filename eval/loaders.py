"""Benchmark file formats: MMLU CSV, ARC JSONL, generic JSONL, and the Hugging Face Hub fallback.

Pure readers from files (or hub rows) to `MCRecord`s; the task registry in `eval.tasks` names them. Malformed
input raises `TaskError` naming the file, the 1-based row and the field. Row numbers: JSONL, the line number;
CSV, the record number after the header (the physical line is given too when a quoted field spans lines).
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from eval.records import MCRecord, TaskError

log = logging.getLogger(__name__)

# (argument after "name:", split, data_dir) -> records
Loader = Callable[[str | None, str, str | None], list[MCRecord]]

DATA_DIR_ENV = "GAPLENS_DATA_DIR"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

MMLU_HEADER: tuple[str, ...] = ("question", "choice0", "choice1", "choice2", "choice3", "answer")
MMLU_SPLITS: tuple[str, ...] = ("dev", "validation", "test")
MMLU_HUB = "cais/mmlu"

ARC_CONFIGS: dict[str, str] = {"arc-easy": "ARC-Easy", "arc-challenge": "ARC-Challenge"}
ARC_SPLITS: tuple[str, ...] = ("train", "validation", "test")
ARC_HUB = "allenai/ai2_arc"



def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The benchmark data directory: `data_dir` if given, else $GAPLENS_DATA_DIR, else TaskError."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "")
    if env:
        return Path(env).expanduser()
    raise TaskError(
        "no benchmark data directory: pass data_dir (--data-dir on the command line) "
        f"or set the {DATA_DIR_ENV} environment variable"
    )



# --------------------------------------------------------------------------- field checks


def _field(obj: Mapping[str, Any], key: str, where: str, types: type | tuple[type, ...], kind: str) -> Any:
    """obj[key], checked to be present and of `types` (bools are never ints here)."""
    if key not in obj:
        raise TaskError(f"{where}: missing field {key!r}")
    value = obj[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise TaskError(f"{where}: field {key!r} must be {kind}, got bool {value!r}")
    if not isinstance(value, types):
        raise TaskError(f"{where}: field {key!r} must be {kind}, got {type(value).__name__} {_short(value)}")
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _nonempty_text(value: str, key: str, where: str) -> str:
    if not value.strip():
        raise TaskError(f"{where}: field {key!r} is empty")
    return value


def _string_list(obj: Mapping[str, Any], key: str, where: str, *, min_len: int = 2) -> list[str]:
    items = _field(obj, key, where, list, "a list of strings")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TaskError(f"{where}: field {key!r} item {i} must be a string, got {type(item).__name__} {_short(item)}")
        _nonempty_text(item, f"{key}[{i}]", where)
    if len(items) < min_len:
        raise TaskError(f"{where}: field {key!r} needs at least {min_len} entries, got {len(items)}")
    return items


def _answer_index(value: Any, n_choices: int, where: str, key: str = "answer") -> int:
    """An answer given as a 0-based int or a letter "A".. as an index into n_choices."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TaskError(
            f"{where}: field {key!r} must be an int index or a letter 'A'..; got {type(value).__name__} {_short(value)}"
        )
    if isinstance(value, str):
        letter = value.strip().upper()
        if len(letter) != 1 or letter not in LETTERS:
            raise TaskError(f"{where}: field {key!r} must be an int index or a letter 'A'..; got {value!r}")
        index = LETTERS.index(letter)
    else:
        index = value
    if not 0 <= index < n_choices:
        raise TaskError(f"{where}: field {key!r} is {value!r} but there are {n_choices} choices")
    return index


# --------------------------------------------------------------------------- JSONL reading


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line; TaskError on a bad line."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise TaskError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path} row {lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise TaskError(f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(obj, dict):
                raise TaskError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


class _IdTracker:
    """Raises TaskError when an id repeats, naming both rows."""

    def __init__(self) -> None:
        self._rows: dict[str, str] = {}

    def add(self, record_id: str, where: str, row: str, key: str = "id") -> None:
        if record_id in self._rows:
            raise TaskError(f"{where}: field {key!r} {record_id!r} duplicates row {self._rows[record_id]}")
        self._rows[record_id] = row


def read_jsonl(path: str | os.PathLike[str], *, split: str = "test") -> list[MCRecord]:
    """Records of a generic multiple-choice JSONL file (see the module docstring for the format)."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"jsonl task file not found: {path}")
    records: list[MCRecord] = []
    ids = _IdTracker()
    for lineno, obj in _iter_jsonl(path):
        where = f"{path} row {lineno}"
        question = _nonempty_text(_field(obj, "question", where, str, "a string"), "question", where)
        choices = _string_list(obj, "choices", where)
        answer = _answer_index(_field(obj, "answer", where, (int, str), "an int index or a letter"), len(choices), where)
        if "id" in obj:
            raw_id = _field(obj, "id", where, (str, int), "a string")
            record_id = _nonempty_text(str(raw_id), "id", where).strip()
        else:
            record_id = f"{path.stem}/{lineno}"
        ids.add(record_id, where, str(lineno))
        subject = _field(obj, "subject", where, str, "a string") if "subject" in obj else ""
        records.append(
            MCRecord(
                id=record_id,
                question=question,
                choices=tuple(choices),
                answer=answer,
                subject=subject,
                split=split,
                source=f"{path}:{lineno}",
            )
        )
    if not records:
        raise TaskError(f"{path}: no records")
    return records


def jsonl_sibling(path: str | os.PathLike[str]) -> Path | None:
    """The few-shot file next to a jsonl task file, if one exists.

    Candidates, first existing wins: ``<stem>.dev.jsonl``; and for a stem ending in
    ``test`` after '_', '-' or '.', the same name with ``dev`` (``x_test.jsonl`` -> ``x_dev.jsonl``).
    """
    path = Path(path)
    stem, suffix = path.stem, path.suffix or ".jsonl"
    candidates = [path.with_name(f"{stem}.dev{suffix}")]
    if len(stem) > 4 and stem.endswith("test") and stem[-5] in "_-.":
        candidates.append(path.with_name(f"{stem[:-4]}dev{suffix}"))
    for cand in candidates:
        if cand != path and cand.is_file():
            return cand
    return None


# --------------------------------------------------------------------------- hub fallback


def _hub_load(path: str, config: str, split: str) -> Iterable[Mapping[str, Any]]:
    """Rows of a Hugging Face dataset split (imported lazily; tests replace this function)."""
    import datasets  # heavy; only needed when local data is missing

    return datasets.load_dataset(path, config, split=split)


def _local_root(data_dir: str | None, sub: str) -> tuple[Path | None, str]:
    """(<data_dir>/<sub>, or None when no data dir is configured; why local data was not used)."""
    try:
        root = resolve_data_dir(data_dir) / sub
    except TaskError as exc:
        return None, f"no local data ({exc})"
    return root, f"local data not found at {root}"


def _hub_rows(hub: str, config: str, split: str, local: str, what: str) -> list[Mapping[str, Any]]:
    """Rows from the hub; `local` says why local data was not used (it names the path tried)."""
    log.warning("%s: %s; trying the Hugging Face Hub (%s, %s, %s)", what, local, hub, config, split)
    try:
        return list(_hub_load(hub, config, split))
    except Exception as exc:  # any hub failure becomes one clear TaskError
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise TaskError(
            f"{what}: {local}, and the Hugging Face Hub fallback ({hub!r}, config {config!r}, "
            f"split {split!r}) failed: the hub is unreachable or the dataset is unavailable "
            f"({type(exc).__name__}: {detail})"
        ) from exc


# --------------------------------------------------------------------------- MMLU


def mmlu_subjects(data_dir: str | None = None, split: str = "test") -> list[str]:
    """MMLU subjects present locally in `split` (from the <subject>_<split>.csv file names)."""
    split_dir = resolve_data_dir(data_dir) / "mmlu" / split
    return sorted(_mmlu_files(split_dir, split))


def _mmlu_files(split_dir: Path, split: str) -> dict[str, Path]:
    suffix = f"_{split}.csv"
    return {p.name[: -len(suffix)]: p for p in sorted(split_dir.glob(f"*{suffix}")) if p.is_file()}


def _load_mmlu(subject: str | None, split: str, data_dir: str | None) -> list[MCRecord]:
    if split not in MMLU_SPLITS:
        raise TaskError(f"MMLU has no split {split!r}; choose one of {', '.join(MMLU_SPLITS)}")
    root, tried = _local_root(data_dir, "mmlu")
    if root is not None and (root / split).is_dir():
        return _read_mmlu_dir(root / split, split, subject)
    if root is not None:
        tried = f"local data not found at {root / split}"
    return _mmlu_from_hub(subject, split, tried)


def _read_mmlu_dir(split_dir: Path, split: str, subject: str | None) -> list[MCRecord]:
    files = _mmlu_files(split_dir, split)
    if not files:
        raise TaskError(f"{split_dir}: no MMLU files named <subject>_{split}.csv")
    if subject is not None:
        if subject not in files:
            close = difflib.get_close_matches(subject, list(files), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise TaskError(
                f"unknown MMLU subject {subject!r}: {split_dir / f'{subject}_{split}.csv'} does not exist{hint}; "
                f"{len(files)} subjects available: {', '.join(files)}"
            )
        files = {subject: files[subject]}
    records: list[MCRecord] = []
    for subj, path in files.items():
        records.extend(read_mmlu_csv(path, subject=subj, split=split))
    return records


def read_mmlu_csv(path: str | os.PathLike[str], *, subject: str, split: str) -> list[MCRecord]:
    """Records of one MMLU CSV file; every cell is kept as the exact string in the file."""
    path = Path(path)
    records: list[MCRecord] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise TaskError(f"{path}: empty file, expected header {','.join(MMLU_HEADER)}")
            if tuple(h.strip() for h in header) != MMLU_HEADER:
                raise TaskError(f"{path} header: expected columns {','.join(MMLU_HEADER)}, got {','.join(header)}")
            for row, cells in enumerate(reader, start=1):
                line = reader.line_num
                where = f"{path} row {row}" + (f" (line {line})" if line != row + 1 else "")
                records.append(_mmlu_record(cells, where, subject, split, row, f"{path}:{row}"))
    except UnicodeDecodeError as exc:
        raise TaskError(f"{path} row {len(records) + 1}: not valid UTF-8 ({exc.reason})") from exc
    except csv.Error as exc:
        raise TaskError(f"{path} row {len(records) + 1}: malformed CSV ({exc})") from exc
    if not records:
        raise TaskError(f"{path}: no records after the header")
    return records


def _mmlu_record(cells: list[str], where: str, subject: str, split: str, row: int, source: str) -> MCRecord:
    if len(cells) != len(MMLU_HEADER):
        raise TaskError(f"{where}: expected {len(MMLU_HEADER)} fields ({','.join(MMLU_HEADER)}), got {len(cells)}")
    question = _nonempty_text(cells[0], "question", where)
    choices = tuple(_nonempty_text(c, f"choice{i}", where) for i, c in enumerate(cells[1:5]))
    raw = cells[5].strip()
    if raw.isdigit():
        answer = _answer_index(int(raw), len(choices), where)
    elif len(raw) == 1 and raw.upper() in LETTERS:
        answer = _answer_index(raw, len(choices), where)
    else:
        raise TaskError(f"{where}: field 'answer' must be an int 0-3 (or a letter A-D), got {cells[5]!r}")
    return MCRecord(
        id=f"mmlu/{subject}/{split}/{row}",
        question=question,
        choices=choices,
        answer=answer,
        subject=subject,
        split=split,
        source=source,
    )


def _mmlu_from_hub(subject: str | None, split: str, tried: str) -> list[MCRecord]:
    config = subject or "all"
    rows = _hub_rows(MMLU_HUB, config, split, tried, f"MMLU split {split!r}")
    records: list[MCRecord] = []
    per_subject: dict[str, int] = {}
    for i, obj in enumerate(rows, start=1):
        where = f"hf:{MMLU_HUB}/{config}:{split} row {i}"
        subj = obj.get("subject") or config
        if not isinstance(subj, str):
            raise TaskError(f"{where}: field 'subject' must be a string, got {_short(subj)}")
        row = per_subject[subj] = per_subject.get(subj, 0) + 1
        question = _nonempty_text(_field(obj, "question", where, str, "a string"), "question", where)
        choices = _string_list(obj, "choices", where)
        answer = _answer_index(_field(obj, "answer", where, (int, str), "an int index"), len(choices), where)
        records.append(
            MCRecord(
                id=f"mmlu/{subj}/{split}/{row}",
                question=question,
                choices=tuple(choices),
                answer=answer,
                subject=subj,
                split=split,
                source=f"hf:{MMLU_HUB}/{config}:{split}:{i}",
            )
        )
    if not records:
        raise TaskError(f"hf:{MMLU_HUB}/{config}:{split}: no records")
    return records


# --------------------------------------------------------------------------- ARC


def _arc_loader(task: str) -> Loader:
    config = ARC_CONFIGS[task]

    def load(arg: str | None, split: str, data_dir: str | None) -> list[MCRecord]:
        if split not in ARC_SPLITS:
            raise TaskError(f"{task} has no split {split!r}; choose one of {', '.join(ARC_SPLITS)}")
        root, tried = _local_root(data_dir, "arc")
        if root is not None:
            path = root / f"{config}-{split}.jsonl"
            if path.is_file():
                return read_arc_jsonl(path, split=split, subject=task)
            tried = f"local data not found at {path}"
        rows = _hub_rows(ARC_HUB, config, split, tried, f"{task} split {split!r}")
        ids = _IdTracker()
        records = []
        for i, obj in enumerate(rows, start=1):
            rec = _arc_record(obj, f"hf:{ARC_HUB}/{config}:{split} row {i}", split, task, f"hf:{ARC_HUB}/{config}:{split}:{i}")
            ids.add(rec.id, f"hf:{ARC_HUB}/{config}:{split} row {i}", str(i))
            records.append(rec)
        return records

    return load


def _arc_few_shot_split(arg: str | None, split: str, data_dir: str | None) -> str | None:
    return "validation" if split == "train" else "train"


def read_arc_jsonl(path: str | os.PathLike[str], *, split: str, subject: str = "") -> list[MCRecord]:
    """Records of an ARC JSONL file (``{id, question, choices: {text, label}, answerKey}`` per line)."""
    path = Path(path)
    ids = _IdTracker()
    records = []
    for lineno, obj in _iter_jsonl(path):
        where = f"{path} row {lineno}"
        rec = _arc_record(obj, where, split, subject, f"{path}:{lineno}")
        ids.add(rec.id, where, str(lineno))
        records.append(rec)
    if not records:
        raise TaskError(f"{path}: no records")
    return records


def _arc_record(obj: Mapping[str, Any], where: str, split: str, subject: str, source: str) -> MCRecord:
    record_id = _nonempty_text(_field(obj, "id", where, str, "a string"), "id", where)
    question = _nonempty_text(_field(obj, "question", where, str, "a string"), "question", where)
    choices = _field(obj, "choices", where, dict, "an object {text: [...], label: [...]}")
    texts = _string_list(choices, "text", where)
    labels = _string_list(choices, "label", where)
    if len(labels) != len(texts):
        raise TaskError(f"{where}: field 'choices' has {len(texts)} texts but {len(labels)} labels")
    if len(set(labels)) != len(labels):
        raise TaskError(f"{where}: field 'choices.label' has repeated labels {labels}")
    key = _field(obj, "answerKey", where, str, "a string").strip()
    if key not in labels:
        raise TaskError(f"{where}: field 'answerKey' is {key!r} but the labels are {labels}")
    return MCRecord(
        id=record_id,
        question=question,
        choices=tuple(texts),
        answer=labels.index(key),
        subject=subject,
        split=split,
        source=source,
        meta=(("labels", " ".join(labels)),),
    )
