"""Tests for eval.readers through the task registry: mapped JSONL/CSV/Parquet, inspect samples, hf datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eval import readers, tasks
from eval.fieldmap import FieldMap
from eval.records import TaskError
from eval.tasks import TaskSpec, few_shot_pool, few_shot_split, load_task

DATA = Path("/work/shared/data")


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tasks.DATA_DIR_ENV, raising=False)


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


ROWS = [
    {"Question": "Which is red?", "A": "sky", "B": "blood", "C": "grass", "D": "", "Gold": "B", "topic": "colour"},
    {"Question": "Which is blue?", "A": "sky", "B": "blood", "C": "grass", "D": "sea", "Gold": "A", "topic": "colour"},
    {"Question": "Which is green?", "A": "sky", "B": "blood", "C": "grass", "D": "sea", "Gold": "C", "topic": "colour"},
]
QUERY = "question=Question&choices=A,B,C,D&answer=Gold&subject=topic"


def _check_rows(recs: list[Any], stem: str) -> None:
    assert [r.question for r in recs] == [r["Question"] for r in ROWS]
    assert recs[0].choices == ("sky", "blood", "grass") and recs[1].choices == ("sky", "blood", "grass", "sea")
    assert [r.answer for r in recs] == [1, 0, 2]
    assert [r.id for r in recs] == [f"{stem}/{i}" for i in (1, 2, 3)]
    assert all(r.subject == "colour" for r in recs)


def test_mapped_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mine.jsonl", ROWS)
    recs = load_task(TaskSpec(f"jsonl:{path}?{QUERY}"))
    _check_rows(recs, "mine")
    assert recs[0].source == f"{path}:1"
    # the same mapping given as TaskSpec.fields
    assert load_task(TaskSpec(f"jsonl:{path}", fields=FieldMap.parse(QUERY))) == recs
    with pytest.raises(TaskError, match=r"give the field mapping once"):
        load_task(TaskSpec(f"jsonl:{path}?{QUERY}", fields=FieldMap.parse(QUERY)))
    with pytest.raises(TaskError, match=r"'capitals' takes no field mapping"):
        load_task(TaskSpec("capitals", fields=FieldMap(question="q")))


def test_csv_with_header_row_numbers(tmp_path: Path) -> None:
    header = "Question,A,B,C,D,Gold,topic\n"
    body = "".join(",".join(json.dumps(r[k]) if "," in r[k] else r[k] for k in r) + "\n" for r in ROWS)
    path = write_csv(tmp_path / "mine.csv", header + body)
    recs = load_task(TaskSpec(f"csv:{path}?{QUERY}"))
    _check_rows(recs, "mine")
    assert recs[2].source == f"{path}:3"


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [dict(r, D=r["D"] or None) for r in ROWS]  # a null column value, as pandas writes it
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mine.parquet")
    recs = load_task(TaskSpec(f"parquet:{tmp_path / 'mine.parquet'}?{QUERY}"))
    _check_rows(recs, "mine")


def test_inspect_samples_detected(tmp_path: Path) -> None:
    samples = [
        {"input": "Which is red?", "choices": ["sky", "blood"], "target": "B", "id": "s1"},
        {"input": "Which is blue?", "choices": ["sky", "blood", "sea"], "target": "A", "id": 2,
         "metadata": {"subject": "x"}},
    ]
    path = write_jsonl(tmp_path / "inspect.jsonl", samples)
    recs = load_task(TaskSpec(f"jsonl:{path}"))
    assert [(r.id, r.question, r.answer, len(r.choices)) for r in recs] == [
        ("s1", "Which is red?", 1, 2), ("2", "Which is blue?", 0, 3)]
    write_jsonl(path, [*samples, {"input": "Q", "choices": ["a", "b"], "target": "C"}])
    with pytest.raises(TaskError, match=r"inspect\.jsonl row 3: field 'target' is 'C' but there are 2 options"):
        load_task(TaskSpec(f"jsonl:{path}"))
    write_jsonl(path, [*samples, {"input": "Q", "choices": ["a", "b"]}])
    with pytest.raises(TaskError, match=r"inspect\.jsonl row 3: missing field 'target'"):
        load_task(TaskSpec(f"jsonl:{path}"))


def test_plain_jsonl_keeps_the_old_reader(tmp_path: Path) -> None:
    row = {"question": "Q", "choices": ["a", "b"], "answer": "2"}
    path = write_jsonl(tmp_path / "data.jsonl", [row])
    with pytest.raises(TaskError, match=r"field 'answer' must be an int index or a letter"):
        load_task(TaskSpec(f"jsonl:{path}"))
    row = {"question": "Q", "choices": ["a", "b", "c"], "answer": "2"}
    write_jsonl(path, [row])
    assert load_task(TaskSpec(f"jsonl:{path}?answer_format=index"))[0].answer == 2


@pytest.mark.parametrize(
    ("fmt", "text", "pattern"),
    [
        ("csv", "Question,A,B,Gold\nQ1,a,b,A\nQ2,a,b,C\n", r"mine\.csv row 2: field 'Gold' is 'C' but there are 2 options"),
        ("csv", "Question,A,B,Gold\nQ1,a,b,A\nQ2,a,b\n", r"mine\.csv row 2: expected 4 fields"),
        ("csv", "Question,A,B,Gold\nQ1,a,b,A\n,a,b,A\n", r"mine\.csv row 2: field 'Question' is empty"),
        ("csv", "Question,A,A,Gold\nQ1,a,b,A\n", r"mine\.csv header: column names must be unique"),
        ("csv", "Question,A,B\nQ1,a,b\n", r"mine\.csv row 1: missing field 'Gold'"),
        ("csv", 'Question,A,B,Gold\n"Two\nlines",a,b,A\nQ2,a,b,Z\n', r"mine\.csv row 2 \(line 4\): field 'Gold'"),
        ("jsonl", '{"Question": "Q", "A": "a", "B": "b", "Gold": "B"}\n{"Question": "Q", "A": "a", "B": 3, "Gold": "A"}\n',
         r"mine\.jsonl row 2: field 'B' must be a string, got int 3"),
        ("jsonl", '{"Question": "Q", "A": "a", "B": "b", "Gold": "B"}\n{"Question": "Q2", "A": "a", "B": "b", "Gold": "B", '
         '"id": "mine/1"}\n', r"mine\.jsonl row 2: field 'id' 'mine/1' duplicates row 1"),
    ],
)
def test_file_errors_name_file_row_field(tmp_path: Path, fmt: str, text: str, pattern: str) -> None:
    path = write_csv(tmp_path / f"mine.{fmt}", text)
    with pytest.raises(TaskError, match=pattern):
        load_task(TaskSpec(f"{fmt}:{path}?question=Question&choices=A,B&answer=Gold"))


def test_bad_task_arguments(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"csv task file not found"):
        load_task(TaskSpec(f"csv:{tmp_path / 'none.csv'}"))
    with pytest.raises(TaskError, match=r"unknown key 'shots' after '\?'"):
        load_task(TaskSpec(f"csv:{tmp_path / 'none.csv'}?shots=3"))
    with pytest.raises(TaskError, match=r"expected hf:DATASET\[:CONFIG\]:SPLIT"):
        load_task(TaskSpec("hf:cais/mmlu"))
    with pytest.raises(TaskError, match=r"no path before '\?'"):
        load_task(TaskSpec("csv:?question=q"))


def test_file_few_shot_sibling_and_option(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "quiz_test.csv", "q,a,b,g\nQ1,x,y,0\nQ2,x,y,1\n")
    name = f"csv:{path}?question=q&choices=a,b&answer=g"
    assert few_shot_split(TaskSpec(name)) is None and few_shot_pool(TaskSpec(name)) == []
    write_csv(tmp_path / "quiz_dev.csv", "q,a,b,g\nD1,x,y,1\n")
    pool = few_shot_pool(TaskSpec(name))
    assert few_shot_split(TaskSpec(name)) == "dev"
    assert [(r.id, r.question, r.answer, r.split) for r in pool] == [("quiz_dev/1", "D1", 1, "dev")]
    other = write_csv(tmp_path / "shots.csv", "q,a,b,g\nS1,x,y,0\nS2,x,y,0\n")
    assert [r.question for r in few_shot_pool(TaskSpec(f"{name}&fewshot={other}"))] == ["S1", "S2"]
    with pytest.raises(TaskError, match=r"few-shot file not found"):
        few_shot_pool(TaskSpec(f"{name}&fewshot={tmp_path / 'nope.csv'}"))


# --------------------------------------------------------------------------- select


def test_select_first_vs_hash(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "many.jsonl",
                       [{"question": f"Q{i}", "choices": ["a", "b"], "answer": i % 2} for i in range(50)])
    first = load_task(TaskSpec(f"jsonl:{path}", select="first"), n=5)
    assert [r.id for r in first] == [f"many/{i}" for i in range(1, 6)]
    hashed = load_task(TaskSpec(f"jsonl:{path}"), n=5, seed=0)
    assert hashed == load_task(TaskSpec(f"jsonl:{path}"), n=5, seed=0, select="hash")
    assert hashed != first
    assert load_task(TaskSpec(f"jsonl:{path}"), n=5, select="first") == first  # keyword overrides the spec
    assert load_task(TaskSpec(f"jsonl:{path}", select="first"), n=5, seed=9) == first  # seed unused
    with pytest.raises(TaskError, match=r"TaskSpec.select='random' is unknown"):
        TaskSpec("capitals", select="random")


@pytest.mark.skipif(not (DATA / "mmlu").is_dir(), reason="no local data")
def test_select_first_on_mmlu_is_file_order() -> None:
    recs = load_task(TaskSpec("mmlu:anatomy", data_dir=str(DATA), select="first"), n=3)
    assert [r.id for r in recs] == [f"mmlu/anatomy/test/{i}" for i in (1, 2, 3)]


@pytest.mark.skipif(not (DATA / "mmlu").is_dir(), reason="no local data")
def test_real_mmlu_csv_through_the_mapping() -> None:
    path = DATA / "mmlu" / "test" / "anatomy_test.csv"
    mapped = load_task(TaskSpec(f"csv:{path}?choices=choice0,choice1,choice2,choice3&answer_format=index"))
    native = load_task(TaskSpec("mmlu:anatomy", data_dir=str(DATA)))
    assert [(r.question, r.choices, r.answer) for r in mapped] == [(r.question, r.choices, r.answer) for r in native]


# --------------------------------------------------------------------------- Hugging Face datasets


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path


def test_hf_local_folder_through_load_dataset(hf_cache: Path) -> None:
    folder = hf_cache / "arcish"
    folder.mkdir()
    rows = [{"id": f"x{i}", "question": f"Q{i}", "choices": {"text": ["p", "q", "r"], "label": ["1", "2", "3"]},
             "answerKey": str(1 + i % 3)} for i in range(4)]
    write_jsonl(folder / "test.jsonl", rows)
    write_jsonl(folder / "train.jsonl", [dict(r, id=f"t{i}") for i, r in enumerate(rows)])
    name = f"hf:{folder}:test?choices=choices.text&labels=choices.label&answer=answerKey&fewshot=train"
    recs = load_task(TaskSpec(name))
    assert [(r.id, r.answer, r.split) for r in recs] == [("x0", 0, "test"), ("x1", 1, "test"), ("x2", 2, "test"),
                                                         ("x3", 0, "test")]
    assert recs[0].source == f"hf:{folder}:test:1"
    assert few_shot_split(TaskSpec(name)) == "train"
    assert [r.id for r in few_shot_pool(TaskSpec(name))] == ["t0", "t1", "t2", "t3"]
    with pytest.raises(TaskError, match=r"the name says split 'test' but split 'train' was asked"):
        load_task(TaskSpec(name, split="train"))
    with pytest.raises(TaskError, match=r"Unknown split"):
        load_task(TaskSpec(f"hf:{folder}:validation"))
    write_jsonl(folder / "test.jsonl", [*rows, dict(rows[0], id="x9", answerKey="7")])
    with pytest.raises(TaskError, match=rf"hf:{folder}:test row 5: field 'answerKey' is '7' but the labels are"):
        load_task(TaskSpec(f"hf:{folder}:test", fields=FieldMap(choices=("choices.text",), labels="choices.label",
                                                                 answer="answerKey")))


def test_hf_save_to_disk_dataset(hf_cache: Path) -> None:
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({
        "test": datasets.Dataset.from_list([{"q": "Q1", "opts": ["a", "b"], "gold": "b"},
                                            {"q": "Q2", "opts": ["a", "b"], "gold": "a"}]),
        "dev": datasets.Dataset.from_list([{"q": "D1", "opts": ["a", "b"], "gold": "a"}]),
    })
    dd.save_to_disk(str(hf_cache / "saved"))
    name = f"hf:{hf_cache / 'saved'}:test?question=q&choices=opts&answer=gold&answer_format=text&fewshot=dev"
    recs = load_task(TaskSpec(name))
    assert [(r.id, r.answer) for r in recs] == [("saved/test/1", 1), ("saved/test/2", 0)]
    assert [r.id for r in few_shot_pool(TaskSpec(name))] == ["saved/dev/1"]


def test_hf_hub_names_go_to_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls: list[tuple[Any, ...]] = []

    def fake(path: str, name: str | None = None, *, split: str) -> list[dict[str, Any]]:
        calls.append((path, name, split))
        return [{"question": "Q", "choices": ["a", "b", "c", "d"], "answer": 3, "subject": "anatomy"}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    recs = load_task(TaskSpec("hf:cais/mmlu:anatomy:test"))
    assert calls == [("cais/mmlu", "anatomy", "test")]
    assert recs[0].id == "mmlu/anatomy/test/1" and recs[0].answer == 3 and recs[0].subject == "anatomy"
    load_task(TaskSpec("hf:org/data:validation"))
    assert calls[-1] == ("org/data", None, "validation")

    def offline(path: str, name: str | None = None, *, split: str) -> Any:
        raise ConnectionError("Couldn't reach 'org/data' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(TaskError, match=r"hf:org/data:test: datasets could not load it \(ConnectionError"):
        readers.read_hf("org/data", None, "test")
