"""Tests for eval.tasks: real local MMLU/ARC, generic JSONL errors, subsampling, registry, hub fallback."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from eval import loaders, tasks
from eval.records import MCRecord, TaskError
from eval.tasks import (
    TaskSpec,
    available_tasks,
    few_shot_pool,
    few_shot_split,
    load_task,
    register_task,
    resolve_data_dir,
    subsample,
)

DATA = Path("/work/shared/data")

needs_data = pytest.mark.skipif(not (DATA / "mmlu").is_dir() or not (DATA / "arc").is_dir(), reason="no local data")


def spec(name: str, split: str = "test") -> TaskSpec:
    return TaskSpec(name, split=split, data_dir=str(DATA))


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tasks.DATA_DIR_ENV, raising=False)


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Make the hub fallback fail fast (as when offline) and record what it was asked for."""
    calls: list[tuple[str, str, str]] = []

    def fail(path: str, config: str, split: str) -> Iterable[Mapping[str, Any]]:
        calls.append((path, config, split))
        raise ConnectionError("Couldn't reach 'x' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(loaders, "_hub_load", fail)
    return calls


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def q(i: int, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"question": f"Question {i}?", "choices": ["a", "b", "c", "d"], "answer": i % 4}
    row.update(kw)
    return row


# --------------------------------------------------------------------------- real data


@needs_data
def test_mmlu_counts_match_sources() -> None:
    test = load_task(spec("mmlu"))
    dev = load_task(spec("mmlu", "dev"))
    assert len(test) == 14042
    assert len(dev) == 285
    assert len({r.subject for r in test}) == 57
    assert all(r.split == "test" and len(r.choices) == 4 for r in test)
    assert {r.id for r in test}.isdisjoint(r.id for r in dev)


@needs_data
def test_mmlu_subject_and_ids() -> None:
    recs = load_task(spec("mmlu:college_biology"))
    assert len(recs) == 144
    first = recs[0]
    assert first.id == "mmlu/college_biology/test/1"
    assert first.subject == "college_biology"
    assert first.source.endswith("college_biology_test.csv:1")
    assert first.question.startswith("Based on the characteristic population curves")
    assert first.answer == 2
    assert first.choices[3] == "increase the mortality rate"
    pool = few_shot_pool(spec("mmlu:college_biology"))
    assert len(pool) == 5
    assert all(r.subject == "college_biology" and r.split == "dev" for r in pool)
    assert few_shot_split(spec("mmlu:college_biology")) == "dev"


@needs_data
def test_mmlu_none_choices_stay_strings() -> None:
    recs = load_task(spec("mmlu"))
    nones = [r for r in recs if "None" in r.choices]
    assert len(nones) == 10
    assert all(isinstance(c, str) for r in recs for c in r.choices)
    numeric = [c for r in recs for c in r.choices if c.strip().lstrip("-").isdigit()]
    assert numeric and all(isinstance(c, str) for c in numeric)
    cm = {r.id: r for r in load_task(spec("mmlu:college_mathematics"))}
    assert cm["mmlu/college_mathematics/test/9"].choices[0] == "None"


@needs_data
def test_mmlu_unknown_subject_suggests() -> None:
    with pytest.raises(TaskError, match=r"unknown MMLU subject 'college_biolgy'.*college_biology"):
        load_task(spec("mmlu:college_biolgy"))


@needs_data
@pytest.mark.parametrize(
    ("name", "counts"),
    [("arc-easy", (2251, 570, 2376)), ("arc-challenge", (1119, 299, 1172))],
)
def test_arc_counts_match_sources(name: str, counts: tuple[int, int, int]) -> None:
    got = tuple(len(load_task(spec(name, split))) for split in ("train", "validation", "test"))
    assert got == counts


@needs_data
def test_arc_numeric_labels_and_odd_choice_counts() -> None:
    recs = {r.id: r for r in load_task(spec("arc-easy"))}
    r = recs["NYSEDREGENTS_2015_8_28"]  # labels "1".."4", answerKey "2"
    assert r.choices == ("air", "elements", "water", "soil")
    assert r.answer == 1
    assert dict(r.meta)["labels"] == "1 2 3 4"
    three = {r.id: r for r in load_task(spec("arc-challenge"))}["NYSEDREGENTS_2012_8_42"]
    assert three.choices == ("decrease", "increase", "remain the same")
    assert three.answer == 1
    sizes = {len(r.choices) for r in recs.values()}
    assert sizes == {3, 4, 5}
    assert recs["Mercury_417466"].answer == 0


@needs_data
def test_arc_few_shot_pool_is_train_and_disjoint() -> None:
    s = spec("arc-challenge")
    assert few_shot_split(s) == "train"
    pool = few_shot_pool(s)
    assert len(pool) == 1119
    assert {r.id for r in pool}.isdisjoint(r.id for r in load_task(s))
    assert few_shot_split(spec("arc-challenge", "train")) == "validation"


@needs_data
def test_data_dir_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tasks.DATA_DIR_ENV, str(DATA))
    assert len(load_task(TaskSpec("mmlu:anatomy"))) == 135


def test_resolve_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_data_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv(tasks.DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(str(tmp_path)) == tmp_path  # the argument wins
    monkeypatch.delenv(tasks.DATA_DIR_ENV)
    with pytest.raises(TaskError, match=r"data_dir.*GAPLENS_DATA_DIR"):
        resolve_data_dir(None)


# --------------------------------------------------------------------------- local files and hub fallback


def test_mmlu_missing_local_dir_reports_path_and_hub(tmp_path: Path, no_hub: list[tuple[str, str, str]]) -> None:
    with pytest.raises(TaskError) as err:
        load_task(TaskSpec("mmlu:anatomy", data_dir=str(tmp_path)))
    msg = str(err.value)
    assert str(tmp_path / "mmlu" / "test") in msg
    assert "unreachable" in msg and "cais/mmlu" in msg
    assert no_hub == [("cais/mmlu", "anatomy", "test")]


def test_arc_missing_local_file_reports_path_and_hub(tmp_path: Path, no_hub: list[tuple[str, str, str]]) -> None:
    with pytest.raises(TaskError) as err:
        load_task(TaskSpec("arc-easy", split="validation", data_dir=str(tmp_path)))
    msg = str(err.value)
    assert str(tmp_path / "arc" / "ARC-Easy-validation.jsonl") in msg and "unreachable" in msg
    assert no_hub == [("allenai/ai2_arc", "ARC-Easy", "validation")]


def test_no_data_dir_at_all_mentions_both_options(no_hub: list[tuple[str, str, str]]) -> None:
    with pytest.raises(TaskError, match=r"GAPLENS_DATA_DIR.*unreachable"):
        load_task(TaskSpec("arc-challenge"))


def test_hub_fallback_rows_are_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(path: str, config: str, split: str) -> list[dict[str, Any]]:
        if path == "cais/mmlu":
            return [
                {"question": "Q1", "subject": "anatomy", "choices": ["a", "b", "None", "4"], "answer": 2},
                {"question": "Q2", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 0},
                {"question": "Q3", "subject": "virology", "choices": ["a", "b", "c", "d"], "answer": 3},
            ]
        return [
            {"id": "x1", "question": "Q", "choices": {"text": ["p", "q", "r"], "label": ["1", "2", "3"]}, "answerKey": "3"}
        ]

    monkeypatch.setattr(loaders, "_hub_load", fake)
    recs = load_task(TaskSpec("mmlu", data_dir=str(tmp_path)))
    assert [r.id for r in recs] == ["mmlu/anatomy/test/1", "mmlu/anatomy/test/2", "mmlu/virology/test/1"]
    assert recs[0].choices == ("a", "b", "None", "4") and recs[0].answer == 2
    assert recs[0].source == "hf:cais/mmlu/all:test:1"
    arc = load_task(TaskSpec("arc-easy", data_dir=str(tmp_path)))
    assert arc[0].answer == 2 and arc[0].id == "x1"


def _mmlu_dir(tmp_path: Path, body: str, name: str = "toy_test.csv") -> Path:
    d = tmp_path / "mmlu" / "test"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text("question,choice0,choice1,choice2,choice3,answer\n" + body, encoding="utf-8")
    return d / name


def test_mmlu_csv_keeps_strings_and_counts_rows(tmp_path: Path) -> None:
    _mmlu_dir(tmp_path, "Q1,None,NA,1.0,x,3\n" + '"Multi\nline",a,b,c,d,0\nQ3,a,b,c,d,B\n')
    recs = load_task(TaskSpec("mmlu:toy", data_dir=str(tmp_path)))
    assert recs[0].choices == ("None", "NA", "1.0", "x") and recs[0].answer == 3
    assert recs[1].question == "Multi\nline" and recs[1].id == "mmlu/toy/test/2"
    assert recs[2].answer == 1


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ("Q1,a,b,c,d,0\nQ2,a,b,c,d,7\n", r"toy_test\.csv row 2: field 'answer' is 7 but there are 4 choices"),
        ("Q1,a,b,c,d,0\nQ2,a,b,c\n", r"toy_test\.csv row 2: expected 6 fields"),
        ("Q1,a,b,c,d,zero\n", r"toy_test\.csv row 1: field 'answer'"),
        ("Q1,a,,c,d,0\n", r"toy_test\.csv row 1: field 'choice1' is empty"),
        (' ,a,b,c,d,0\n', r"toy_test\.csv row 1: field 'question' is empty"),
    ],
)
def test_mmlu_csv_errors(tmp_path: Path, body: str, pattern: str) -> None:
    _mmlu_dir(tmp_path, body)
    with pytest.raises(TaskError, match=pattern):
        load_task(TaskSpec("mmlu", data_dir=str(tmp_path)))


def test_mmlu_csv_bad_header(tmp_path: Path) -> None:
    d = tmp_path / "mmlu" / "test"
    d.mkdir(parents=True)
    (d / "toy_test.csv").write_text("q,a,b,c,d,ans\nQ,a,b,c,d,0\n", encoding="utf-8")
    with pytest.raises(TaskError, match=r"toy_test\.csv header: expected columns"):
        load_task(TaskSpec("mmlu", data_dir=str(tmp_path)))


def test_arc_jsonl_errors(tmp_path: Path) -> None:
    arc = tmp_path / "arc"
    arc.mkdir()
    good = {"id": "a", "question": "Q", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "B"}
    bad = {"id": "b", "question": "Q", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "E"}
    write_jsonl(arc / "ARC-Easy-test.jsonl", [good, bad])
    with pytest.raises(TaskError, match=r"ARC-Easy-test\.jsonl row 2: field 'answerKey' is 'E'"):
        load_task(TaskSpec("arc-easy", data_dir=str(tmp_path)))
    write_jsonl(arc / "ARC-Easy-test.jsonl", [good, good])
    with pytest.raises(TaskError, match=r"ARC-Easy-test\.jsonl row 2: field 'id' 'a' duplicates row 1"):
        load_task(TaskSpec("arc-easy", data_dir=str(tmp_path)))


# --------------------------------------------------------------------------- generic JSONL


def test_jsonl_loads_ids_letters_and_subjects(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "data.jsonl",
        [q(0, id="first", subject="s"), "", q(1, answer="C"), q(2, answer="b", choices=["x", "y", "z"])],
    )
    recs = load_task(TaskSpec(f"jsonl:{path}"))
    assert [r.id for r in recs] == ["first", "data/3", "data/4"]
    assert [r.answer for r in recs] == [0, 2, 1]
    assert recs[0].subject == "s" and recs[1].subject == ""
    assert recs[1].source == f"{path}:3"
    assert few_shot_split(TaskSpec(f"jsonl:{path}")) is None
    assert few_shot_pool(TaskSpec(f"jsonl:{path}")) == []


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ([q(0), "{not json", q(2)], r"data\.jsonl row 2: invalid JSON"),
        ([q(0), q(1), "[1, 2]"], r"data\.jsonl row 3: expected a JSON object"),
        ([q(0), {"choices": ["a", "b"], "answer": 0}], r"data\.jsonl row 2: missing field 'question'"),
        ([q(0), {"question": "Q", "answer": 0}], r"data\.jsonl row 2: missing field 'choices'"),
        ([q(0), {"question": "Q", "choices": ["a", "b"]}], r"data\.jsonl row 2: missing field 'answer'"),
        ([q(0), q(1), q(2, answer=7)], r"data\.jsonl row 3: field 'answer' is 7 but there are 4 choices"),
        ([q(0, answer="E")], r"data\.jsonl row 1: field 'answer' is 'E' but there are 4 choices"),
        ([q(0, answer=-1)], r"data\.jsonl row 1: field 'answer' is -1 but there are 4 choices"),
        ([q(0, answer="2")], r"data\.jsonl row 1: field 'answer' must be an int index or a letter"),
        ([q(0, answer=True)], r"data\.jsonl row 1: field 'answer' must be an int index or a letter"),
        ([q(0, answer=1.0)], r"data\.jsonl row 1: field 'answer' must be an int index or a letter"),
        ([q(0, question=5)], r"data\.jsonl row 1: field 'question' must be a string, got int"),
        ([q(0, question="  ")], r"data\.jsonl row 1: field 'question' is empty"),
        ([q(0, choices="abcd")], r"data\.jsonl row 1: field 'choices' must be a list of strings, got str"),
        ([q(0, choices=["a", 2, "c"])], r"data\.jsonl row 1: field 'choices' item 1 must be a string"),
        ([q(0, choices=["a"])], r"data\.jsonl row 1: field 'choices' needs at least 2"),
        ([q(0, id="x"), q(1), q(2, id="x")], r"data\.jsonl row 3: field 'id' 'x' duplicates row 1"),
        ([q(0, id=["x"])], r"data\.jsonl row 1: field 'id' must be a string"),
        ([q(0, subject=3)], r"data\.jsonl row 1: field 'subject' must be a string"),
    ],
)
def test_jsonl_errors_name_file_row_field(tmp_path: Path, rows: list[Any], pattern: str) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(TaskError, match=pattern):
        load_task(TaskSpec(f"jsonl:{path}"))


def test_jsonl_bad_utf8_and_missing_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(json.dumps(q(0)).encode() + b"\n" + b'{"question": "\xff"}\n')
    with pytest.raises(TaskError, match=r"data\.jsonl row 2: not valid UTF-8"):
        load_task(TaskSpec(f"jsonl:{path}"))
    with pytest.raises(TaskError, match=r"not found: .*nope\.jsonl"):
        load_task(TaskSpec(f"jsonl:{tmp_path / 'nope.jsonl'}"))
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(TaskError, match=r"data\.jsonl: no records"):
        load_task(TaskSpec(f"jsonl:{path}"))


@pytest.mark.parametrize(("main", "sibling"), [("data.jsonl", "data.dev.jsonl"), ("toy_test.jsonl", "toy_dev.jsonl")])
def test_jsonl_sibling_few_shot_pool(tmp_path: Path, main: str, sibling: str) -> None:
    path = write_jsonl(tmp_path / main, [q(i) for i in range(6)])
    write_jsonl(tmp_path / sibling, [q(i) for i in range(3)] + [q(9, id="shared")])
    s = TaskSpec(f"jsonl:{path}")
    assert few_shot_split(s) == "dev"
    pool = few_shot_pool(s)
    assert len(pool) == 4 and all(r.split == "dev" for r in pool)
    assert {r.id for r in pool}.isdisjoint(r.id for r in load_task(s))
    # an id shared with the eval file is dropped from the pool
    write_jsonl(path, [q(0, id="shared"), q(1)])
    assert [r.id for r in few_shot_pool(s)] == [f"{Path(sibling).stem}/{i}" for i in (1, 2, 3)]


# --------------------------------------------------------------------------- subsampling


def _records(k: int) -> list[MCRecord]:
    return [MCRecord(id=f"r{i}", question=f"q{i}", choices=("a", "b"), answer=0) for i in range(k)]


def test_subsample_nested_deterministic_and_ordered() -> None:
    recs = _records(1000)
    a100, a500 = subsample(recs, 100, seed=0), subsample(recs, 500, seed=0)
    assert len(a100) == 100 and len(a500) == 500
    assert {r.id for r in a100} <= {r.id for r in a500}
    assert subsample(recs, 100, seed=0) == a100
    assert subsample(list(reversed(recs)), 100, seed=0) == list(reversed(a100))  # keyed on ids, not positions
    assert [int(r.id[1:]) for r in a500] == sorted(int(r.id[1:]) for r in a500)  # original order kept
    assert {r.id for r in subsample(recs, 100, seed=1)} != {r.id for r in a100}
    assert subsample(recs, None) == recs and subsample(recs, 5000) == recs
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="n must be"):
            subsample(recs, bad)  # type: ignore[arg-type]


def test_subsample_select_first_keeps_file_order() -> None:
    recs = _records(50)
    assert subsample(recs, 5, select="first") == recs[:5]
    assert subsample(recs, 5, seed=3, select="first") == recs[:5]
    assert subsample(recs, 5, seed=3, select="hash") == subsample(recs, 5, seed=3)
    assert subsample(recs, None, select="first") == recs and subsample(recs, 99, select="first") == recs
    with pytest.raises(ValueError, match="select must be one of hash, first"):
        subsample(recs, 5, select="random")
    assert load_task(TaskSpec("arithmetic", select="first"), n=3) == load_task(TaskSpec("arithmetic"))[:3]


def test_subsample_stratified_is_proportional_by_subject() -> None:
    sizes = {"a": 600, "b": 300, "c": 90, "d": 10}
    recs = [MCRecord(f"{s}{i}", "q?", ("x", "y"), 0, subject=s) for s, k in sizes.items() for i in range(k)]
    out = subsample(recs, 100, seed=0, select="stratified")
    counts = {s: sum(r.subject == s for r in out) for s in sizes}
    assert counts == {"a": 60, "b": 30, "c": 9, "d": 1} and len(out) == 100
    odd = subsample(recs, 37, seed=0, select="stratified")  # quotas 22.2, 11.1, 3.33, 0.37: remainders decide
    counts = {s: sum(r.subject == s for r in odd) for s in sizes}
    assert counts == {"a": 22, "b": 11, "c": 3, "d": 1} and len(odd) == 37
    assert all(abs(counts[s] - 37 * k / 1000) < 1 for s, k in sizes.items())
    # within a subject the records are the first ones in the seeded hash order, kept in file order
    a_only = [r for r in recs if r.subject == "a"]
    assert [r for r in odd if r.subject == "a"] == subsample(a_only, 22, seed=0)
    assert subsample(recs, 37, seed=0, select="stratified") == odd
    assert subsample(recs, 37, seed=1, select="stratified") != odd
    assert subsample(recs, 5000, select="stratified") == recs


@needs_data
def test_mmlu_stratified_sample_covers_every_subject() -> None:
    full = load_task(spec("mmlu"))
    out = load_task(TaskSpec("mmlu", data_dir=str(DATA), select="stratified"), n=2000, seed=0)
    assert len(out) == 2000
    total = {s: sum(r.subject == s for r in full) for s in {r.subject for r in full}}
    got = {s: sum(r.subject == s for r in out) for s in total}
    assert all(abs(got[s] - 2000 * k / len(full)) < 1 for s, k in total.items()) and min(got.values()) >= 7


def test_load_task_subsample_nested_builtin() -> None:
    small = load_task(TaskSpec("arithmetic"), n=20, seed=3)
    big = load_task(TaskSpec("arithmetic"), n=80, seed=3)
    assert len(small) == 20 and {r.id for r in small} <= {r.id for r in big}
    assert load_task(TaskSpec("arithmetic"), n=20, seed=3) == small


@needs_data
def test_load_task_subsample_nested_mmlu() -> None:
    a = load_task(spec("mmlu"), n=100, seed=0)
    b = load_task(spec("mmlu"), n=500, seed=0)
    assert {r.id for r in a} <= {r.id for r in b}
    assert len({r.subject for r in b}) > 30


# --------------------------------------------------------------------------- registry


def test_registry_names_and_errors() -> None:
    names = available_tasks()
    for name in ("mmlu", "arc-easy", "arc-challenge", "jsonl", "csv", "parquet", "hf", "lmeval", "capitals", "arithmetic"):
        assert name in names
    with pytest.raises(TaskError, match=r"unknown task 'capitls'.*did you mean 'capitals'"):
        load_task(TaskSpec("capitls"))
    with pytest.raises(TaskError, match=r"'jsonl' needs an argument: jsonl:PATH"):
        load_task(TaskSpec("jsonl"))
    with pytest.raises(TaskError, match=r"'capitals' takes no ':' argument"):
        load_task(TaskSpec("capitals:x"))
    with pytest.raises(TaskError, match=r"MMLU has no split 'train'"):
        load_task(TaskSpec("mmlu", split="train", data_dir="/nonexistent"))
    with pytest.raises(TaskError, match=r"unknown split 'validation'"):
        load_task(TaskSpec("capitals", split="validation"))


def test_register_refuses_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    available_tasks()  # registers the defaults into the real registry before it is copied
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    with pytest.raises(ValueError, match="already registered"):
        register_task("mmlu", lambda arg, split, data_dir: [])
    recs = _records(3)
    register_task("toy", lambda arg, split, data_dir: recs if split == "test" else recs[:1])
    assert "toy" in available_tasks()
    assert load_task(TaskSpec("toy")) == recs
    assert few_shot_pool(TaskSpec("toy")) == []  # its dev split shares every id with test
    with pytest.raises(ValueError, match="already registered"):
        register_task("toy", lambda arg, split, data_dir: recs)


def test_builtin_tasks_via_registry() -> None:
    s = TaskSpec("capitals")
    assert few_shot_split(s) == "dev"
    pool, test = few_shot_pool(s), load_task(s)
    assert pool and {r.id for r in pool}.isdisjoint(r.id for r in test)
    assert few_shot_pool(TaskSpec("capitals", split="dev")) == []


def test_toy_max_is_a_default_task() -> None:
    assert "toy-max" in available_tasks()
    recs = load_task(TaskSpec("toy-max"), n=5)
    assert len(recs) == 5 and all(r.id.startswith("toy-max/") and len(r.choices) == 4 for r in recs)
    assert all(int(r.choices[r.answer]) == max(map(int, r.choices)) for r in recs)
    assert load_task(TaskSpec("toy-max", split="dev"), n=3)[0].split == "dev"
