"""Tests for eval.fieldmap: the FIELDS syntax, layout detection and answer formats, on hand-built rows."""

from __future__ import annotations

from typing import Any

import pytest

from eval.fieldmap import FieldMap, answer_index, map_row, parse_query
from eval.records import TaskError

CHOICES = ("red", "green", "blue", "A")


def test_parse_and_to_query_round_trip() -> None:
    fm = FieldMap.parse("question=Q%20text&choices=A,B,C,D&answer=label&answer_format=letter&id=uid&subject=topic")
    assert fm == FieldMap(question="Q text", choices=("A", "B", "C", "D"), answer="label", answer_format="letter",
                          id="uid", subject="topic")
    assert FieldMap.parse(fm.to_query()) == fm
    assert FieldMap.parse("") == FieldMap() and FieldMap().is_default() and FieldMap().to_query() == ""
    odd = FieldMap(question="a&b=c", choices=("x,y", "z"))
    assert FieldMap.parse(odd.to_query()) == odd
    assert parse_query("choices=choices.text&fewshot=dev") == ({"choices": ("choices.text",)}, {"fewshot": "dev"})


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("question", r"'question' is not KEY=VALUE"),
        ("question=a&question=b", r"key 'question' given twice"),
        ("colour=red", r"unknown key 'colour'"),
        ("answer_format=roman", r"answer_format='roman' is unknown"),
        ("choices=A,,C", r"choices= needs a non-empty field name"),
        ("labels=l&answer_format=index", r"labels= needs answer_format=label"),
    ],
)
def test_parse_errors(text: str, pattern: str) -> None:
    with pytest.raises(TaskError, match=pattern):
        FieldMap.parse(text)


def test_layout_detection() -> None:
    gaplens = FieldMap().resolve({"question": "q", "choices": [], "answer": 0})
    assert (gaplens.question, gaplens.choices, gaplens.answer, gaplens.answer_format) == (
        "question", ("choices",), "answer", "auto")
    inspect = FieldMap().resolve({"input": "q", "choices": [], "target": "A"})
    assert (inspect.question, inspect.answer, inspect.answer_format) == ("input", "target", "letter")
    # explicit keys win over the layout; labels= implies the label format
    assert FieldMap(answer="gold").resolve({"input": "q", "target": "A"}).answer == "gold"
    assert FieldMap(labels="choices.label").resolve({"question": "q"}).answer_format == "label"


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (1, "auto", 1), ("2", "auto", 2), (2.0, "auto", 2), ("b", "auto", 1), ("C", "letter", 2),
        ("blue", "auto", 2), (" blue ", "text", 2), ("A", "text", 3), (3, "index1", 2), ("1", "index1", 0),
        (["green"], "auto", 1),
    ],
)
def test_answer_formats(value: Any, fmt: str, expected: int) -> None:
    assert answer_index(value, CHOICES, fmt, "answer", "f row 1") == expected


@pytest.mark.parametrize(
    ("value", "fmt", "pattern"),
    [
        ("A", "auto", r"f row 1: field 'answer' is 'A', read as a letter but also the text of option 3"),
        (True, "auto", r"field 'answer' must be an index.*got bool"),
        (7, "auto", r"field 'answer' is 7 but there are 4 options"),
        ("purple", "auto", r"field 'answer' is 'purple', which matches no option"),
        ("Z", "letter", r"field 'answer' is 'Z' but there are 4 options"),
        ("red", "index", r"field 'answer' must be an int index \(index\)"),
        (0, "index1", r"field 'answer' is 0 but there are 4 options \(index1\)"),
        (["red", "blue"], "auto", r"field 'answer' has 2 gold answers"),
    ],
)
def test_answer_errors(value: Any, fmt: str, pattern: str) -> None:
    with pytest.raises(TaskError, match=pattern):
        answer_index(value, CHOICES, fmt, "answer", "f row 1")


def test_digit_text_ambiguity_is_an_error() -> None:
    with pytest.raises(TaskError, match=r"read as an index but also the text of option 0"):
        answer_index("2", ("2", "3", "4"), "auto", "answer", "f row 1")
    assert answer_index("2", ("2", "3", "4"), "text", "answer", "f row 1") == 0


def _map(row: dict[str, Any], fm: FieldMap) -> Any:
    return map_row(row, fm.resolve(row), where="f row 3", source="f:3", default_id="f/3", split="test")


def test_map_row_columns_paths_labels_ids() -> None:
    row = {"stem": {"text": "Q?"}, "A": "x", "B": "y", "C": "", "D": None, "key": "2", "topic": "bio"}
    rec = _map(row, FieldMap(question="stem.text", choices=("A", "B", "C", "D"), answer="key", answer_format="index1",
                             subject="topic"))
    assert (rec.question, rec.choices, rec.answer, rec.subject, rec.id) == ("Q?", ("x", "y"), 1, "bio", "f/3")
    arc = {"id": 17, "question": "Q", "choices": {"text": ["p", "q", "r"], "label": ["1", "2", "3"]}, "answerKey": "3"}
    rec = _map(arc, FieldMap(choices=("choices.text",), labels="choices.label", answer="answerKey"))
    assert rec.answer == 2 and rec.id == "17" and dict(rec.meta)["labels"] == "1 2 3"


@pytest.mark.parametrize(
    ("row", "fm", "pattern"),
    [
        ({"q": "Q"}, FieldMap(), r"f row 3: missing field 'question' \(the row has 'q'\)"),
        ({"question": None, "choices": ["a", "b"], "answer": 0}, FieldMap(), r"f row 3: field 'question' is null"),
        ({"question": 5, "choices": ["a", "b"], "answer": 0}, FieldMap(), r"field 'question' must be a string, got int"),
        ({"question": "Q", "choices": "ab", "answer": 0}, FieldMap(), r"field 'choices' must be a list of strings"),
        ({"question": "Q", "choices": ["a", 2], "answer": 0}, FieldMap(), r"field 'choices\[1\]' must be a string"),
        ({"question": "Q", "A": "a", "B": "", "C": "c", "ans": 0}, FieldMap(choices=("A", "B", "C"), answer="ans"),
         r"f row 3: field 'B' is empty"),
        ({"question": "Q", "A": "a", "ans": 0}, FieldMap(choices=("A", "B"), answer="ans"),
         r"f row 3: missing field 'B' \(choices=A,B\)"),
        ({"question": "Q", "A": "a", "B": None, "ans": 0}, FieldMap(choices=("A", "B"), answer="ans"),
         r"field 'A,B' needs at least 2 options, got 1"),
        ({"question": "Q", "c": ["a", "b"], "l": ["A"], "k": "A"}, FieldMap(choices=("c",), labels="l", answer="k"),
         r"labels field has 1 entries but there are 2 options"),
        ({"question": "Q", "choices": ["a", "b"], "answer": 0, "id": [1]}, FieldMap(),
         r"field 'id' must be a string or int"),
        ({"question": "Q", "choices": ["a", "b"], "answer": 0, "subject": 3}, FieldMap(),
         r"field 'subject' must be a string"),
    ],
)
def test_map_row_errors_name_row_and_field(row: dict[str, Any], fm: FieldMap, pattern: str) -> None:
    with pytest.raises(TaskError, match=pattern):
        _map(row, fm)
