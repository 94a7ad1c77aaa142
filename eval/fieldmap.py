"""Field mappings: how a row of someone else's multiple-choice file or dataset becomes an `MCRecord`.

The string form (after ``?`` in a task name, ``--fields`` on the command line, `FieldMap.parse`) is
``&``-separated ``KEY=VALUE`` pairs, every key optional::

    question=FIELD         the question text             (default "question"; inspect layout "input")
    choices=FIELD          a list of option strings      (default "choices")
    choices=F1,F2,F3,...   or one column per option; trailing empty/null columns are dropped
    answer=FIELD           the gold answer               (default "answer"; inspect layout "target")
    answer_format=FORMAT   how the answer names an option (default auto):
                             index   0-based int (or digit string, as CSV cells are)
                             index1  1-based int (or digit string)
                             letter  "A", "B", ... (case-insensitive)
                             text    the gold option's own text
                             label   an entry of labels= (ARC's answerKey in choices.label)
                             auto    label if labels= is set; an int or digit string is an index; one letter
                                     is a letter (an error if it is also another option's text); else text
    labels=FIELD           a list of the options' labels that the answer names (implies answer_format=label)
    id=FIELD               a unique id (default: "id" when the row has it, else "<name>/<row>")
    subject=FIELD          a subject (default: "subject" when the row has it)

FIELD is a column name or a dotted path into nested objects and lists ("choices.text", "meta.0"). Values
are percent-decoded ("%26" is "&", "%2C" a comma inside one column name).

Layouts, detected from the first row when ``question=`` is not given: a row with "question" is the gaplens
layout (the defaults above); a row with "input" and "target" but no "question" is inspect_ai's sample layout
(``input``, ``choices``, ``target`` as a letter, optional ``id``): question=input, answer=target,
answer_format=letter.

Errors are `TaskError`s that name the file (or dataset), the 1-based row and the field as the user named it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from eval.records import MCRecord, TaskError

ANSWER_FORMATS: tuple[str, ...] = ("auto", "index", "index1", "letter", "text", "label")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MISSING = object()


@dataclass(frozen=True)
class FieldMap:
    """Which fields of a row hold the question, options, answer, id and subject; None: from the layout."""

    question: str | None = None
    choices: tuple[str, ...] | None = None
    answer: str | None = None
    answer_format: str | None = None
    labels: str | None = None
    id: str | None = None
    subject: str | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            items = value if isinstance(value, tuple) else (value,)
            if value is not None and (not items or any(not isinstance(v, str) or not v.strip() for v in items)):
                raise TaskError(f"fields: {f.name}= needs a non-empty field name, got {value!r}")
        if self.answer_format is not None and self.answer_format not in ANSWER_FORMATS:
            raise TaskError(f"fields: answer_format={self.answer_format!r} is unknown; known: {', '.join(ANSWER_FORMATS)}")
        if self.labels is not None and self.answer_format not in (None, "auto", "label"):
            raise TaskError(f"fields: labels= needs answer_format=label, got answer_format={self.answer_format}")

    @classmethod
    def parse(cls, text: str) -> FieldMap:
        """The mapping in `text` ("question=q&choices=A,B,C,D&answer=label"); "" is all defaults."""
        kwargs, options = parse_query(text)
        if options:
            raise TaskError(f"fields {text!r}: unknown key {next(iter(options))!r}; known: {', '.join(FIELD_KEYS)}")
        return cls(**kwargs)

    def to_query(self) -> str:
        """The string form (only the keys that are set); `FieldMap.parse(m.to_query()) == m`."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                items = value if isinstance(value, tuple) else (value,)
                parts.append(f"{f.name}=" + ",".join(quote(v, safe="._-:/ ") for v in items))
        return "&".join(parts)

    def is_default(self) -> bool:
        return self == FieldMap()

    def resolve(self, first_row: Mapping[str, Any]) -> FieldMap:
        """Every layout-dependent field filled in from the layout of `first_row` (see the module docstring)."""
        inspect = self.question is None and "question" not in first_row and {"input", "target"} <= set(first_row)
        fmt = self.answer_format or ("label" if self.labels else "letter" if inspect else "auto")
        return dataclasses.replace(
            self,
            question=self.question or ("input" if inspect else "question"),
            choices=self.choices or ("choices",),
            answer=self.answer or ("target" if inspect else "answer"),
            answer_format=fmt,
        )


FIELD_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(FieldMap))


def parse_query(text: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(FieldMap keyword arguments, other keys) of "k=v&k=v"; a key given twice is an error."""
    fields: dict[str, Any] = {}
    others: dict[str, str] = {}
    for part in text.split("&"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            raise TaskError(f"fields {text!r}: {part!r} is not KEY=VALUE")
        if key in fields or key in others:
            raise TaskError(f"fields {text!r}: key {key!r} given twice")
        if key == "choices":
            fields[key] = tuple(unquote(v).strip() for v in value.split(","))
        elif key in FIELD_KEYS:
            fields[key] = unquote(value).strip()
        else:
            others[key] = unquote(value).strip()
    return fields, others


def split_query(arg: str) -> tuple[str, str]:
    """("PATH or dataset", "query") of "PATH?query"; ("PATH", "") without a '?'."""
    base, _, query = arg.partition("?")
    return base, query


# --------------------------------------------------------------------------- one row -> one record


def lookup(row: Mapping[str, Any], path: str) -> Any:
    """row[path], else the dotted path through nested mappings and list indices; _MISSING if absent."""
    if path in row:
        return row[path]
    cur: Any = row
    for part in path.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, Sequence) and not isinstance(cur, str) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _get(row: Mapping[str, Any], path: str, where: str) -> Any:
    value = lookup(row, path)
    if value is _MISSING:
        known = ", ".join(repr(k) for k in list(row)[:12])
        raise TaskError(f"{where}: missing field {path!r} (the row has {known})")
    if value is None:
        raise TaskError(f"{where}: field {path!r} is null")
    return value


def _text(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise TaskError(f"{where}: field {key!r} must be a string, got {type(value).__name__} {_short(value)}")
    if not value.strip():
        raise TaskError(f"{where}: field {key!r} is empty")
    return value


def _choices(row: Mapping[str, Any], columns: tuple[str, ...], where: str) -> tuple[str, ...]:
    if len(columns) == 1:
        key = columns[0]
        items = _get(row, key, where)
        if isinstance(items, str) or not isinstance(items, Sequence):
            raise TaskError(f"{where}: field {key!r} must be a list of strings, got {type(items).__name__} {_short(items)}")
        names = [f"{key}[{i}]" for i in range(len(items))]
    else:
        items = [lookup(row, c) for c in columns]
        missing = [c for c, v in zip(columns, items, strict=True) if v is _MISSING]
        if missing:
            raise TaskError(f"{where}: missing field {missing[0]!r} (choices={','.join(columns)})")
        names = list(columns)
        while items and (items[-1] is None or items[-1] == ""):  # fewer options than columns
            items, names = items[:-1], names[:-1]
    out = []
    for name, item in zip(names, items, strict=True):
        if not isinstance(item, str):
            raise TaskError(f"{where}: field {name!r} must be a string, got {type(item).__name__} {_short(item)}")
        if not item.strip():
            raise TaskError(f"{where}: field {name!r} is empty")
        out.append(item)
    if len(out) < 2:
        raise TaskError(f"{where}: field {','.join(columns)!r} needs at least 2 options, got {len(out)}")
    return tuple(out)


def _as_int(value: Any) -> int | None:
    """An int from an int, an integral float (parquet with nulls) or a digit string (CSV); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _letter(value: Any) -> int | None:
    if isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in LETTERS:
        return LETTERS.index(value.strip().upper())
    return None


def _text_index(value: Any, choices: tuple[str, ...]) -> list[int]:
    if not isinstance(value, str):
        return []
    exact = [i for i, c in enumerate(choices) if c == value]
    return exact or [i for i, c in enumerate(choices) if c.strip() == value.strip()]


def answer_index(value: Any, choices: tuple[str, ...], fmt: str, key: str, where: str,
                 labels: Sequence[Any] | None = None) -> int:
    """The gold option index that `value` (field `key`) names under answer format `fmt`."""
    n = len(choices)
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise TaskError(f"{where}: field {key!r} has {len(value)} gold answers {_short(value)}; one is needed")
        value = value[0]
    if isinstance(value, bool):
        raise TaskError(f"{where}: field {key!r} must be an index, a letter or an option's text, got bool {value!r}")
    if fmt == "auto":
        if labels is not None:
            fmt = "label"
        else:
            index, kind = (_as_int(value), "index") if _as_int(value) is not None else (_letter(value), "letter")
            if index is None:
                fmt = "text"
            else:
                as_text = [i for i in _text_index(value, choices) if i != index]
                if as_text:
                    raise TaskError(
                        f"{where}: field {key!r} is {value!r}, read as {'an index' if kind == 'index' else 'a letter'} but also the text of option "
                        f"{as_text[0]}; set answer_format={kind} or answer_format=text"
                    )
                fmt = kind
    if fmt in ("index", "index1"):
        index = _as_int(value)
        if index is None:
            raise TaskError(f"{where}: field {key!r} must be an int index ({fmt}), got {type(value).__name__} {_short(value)}")
        index -= fmt == "index1"
    elif fmt == "letter":
        index = _letter(value)
        if index is None:
            raise TaskError(f"{where}: field {key!r} must be a letter 'A'.., got {type(value).__name__} {_short(value)}")
    elif fmt == "label":
        if labels is None:
            raise TaskError(f"{where}: answer_format=label needs labels=FIELD")
        names = [str(lab).strip() for lab in labels]
        if len(names) != n:
            raise TaskError(f"{where}: the labels field has {len(names)} entries but there are {n} options")
        if str(value).strip() not in names:
            raise TaskError(f"{where}: field {key!r} is {value!r} but the labels are {names}")
        index = names.index(str(value).strip())
    else:  # text
        found = _text_index(value, choices)
        if len(found) != 1:
            what = "matches no option" if not found else f"matches options {found}"
            raise TaskError(f"{where}: field {key!r} is {_short(value)}, which {what} (answer_format=text)")
        index = found[0]
    if not 0 <= index < n:
        raise TaskError(f"{where}: field {key!r} is {value!r} but there are {n} options ({fmt})")
    return index


def map_row(row: Mapping[str, Any], fields: FieldMap, *, where: str, source: str, default_id: str,
            split: str) -> MCRecord:
    """One record from one row under a resolved mapping (`FieldMap.resolve`)."""
    if not isinstance(row, Mapping):
        raise TaskError(f"{where}: expected an object with named fields, got {type(row).__name__}")
    assert fields.question and fields.choices and fields.answer and fields.answer_format
    question = _text(_get(row, fields.question, where), fields.question, where)
    choices = _choices(row, fields.choices, where)
    labels = None
    if fields.labels:
        labels = _get(row, fields.labels, where)
        if isinstance(labels, str) or not isinstance(labels, Sequence):
            raise TaskError(f"{where}: field {fields.labels!r} must be a list of labels, got {_short(labels)}")
    answer = answer_index(_get(row, fields.answer, where), choices, fields.answer_format, fields.answer, where, labels)
    id_key = fields.id or ("id" if lookup(row, "id") not in (_MISSING, None) else None)
    record_id = default_id
    if id_key:
        raw = _get(row, id_key, where)
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise TaskError(f"{where}: field {id_key!r} must be a string or int, got {type(raw).__name__} {_short(raw)}")
        record_id = _text(str(raw), id_key, where).strip()
    subject_key = fields.subject or ("subject" if lookup(row, "subject") not in (_MISSING, None) else None)
    subject = ""
    if subject_key:
        subject = _get(row, subject_key, where)
        if not isinstance(subject, str):
            raise TaskError(f"{where}: field {subject_key!r} must be a string, got {type(subject).__name__} {_short(subject)}")
    meta = (("labels", " ".join(str(x) for x in labels)),) if labels is not None else ()
    return MCRecord(id=record_id, question=question, choices=choices, answer=answer, subject=subject,
                    split=split, source=source, meta=meta)
