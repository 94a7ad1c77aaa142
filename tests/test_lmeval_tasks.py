"""Tests for eval.lmeval_tasks and the lm-eval templates of eval.variants, checked against lm-eval itself.

lm-eval is an optional extra: everything but the install hint skips without it. Datasets are local JSONL
files named in the task YAML (``dataset_path: json``), so nothing needs the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eval import lmeval_tasks, tasks
from eval.records import MCRecord, TaskError
from eval.tasks import TaskSpec, few_shot_pool, few_shot_split, load_task
from eval.variants import parse, render, to_text

DATA = Path("/work/shared/data")
needs_lmeval = pytest.mark.skipif(not lmeval_tasks.lmeval_available(), reason="lm-eval not installed")

ROWS = [
    {"id": "a1", "question": "  Which is a fruit? ", "choices": {"text": ["rock", "apple", "car"], "label": list("ABC")},
     "answerKey": "B", "topic": "food"},
    {"id": "a2", "question": "Which is blue?", "choices": {"text": ["sky", "grass"], "label": list("AB")},
     "answerKey": "A", "topic": "colour"},
]
YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
    train: {data}
output_type: {output_type}
test_split: test
training_split: train
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
doc_to_choice: "{{{{choices.text}}}}"
description: "About {{{{topic}}}}.\\n\\n"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv(tasks.DATA_DIR_ENV, raising=False)
    try:
        import datasets
    except ImportError:
        return
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def write_task(tmp_path: Path, name: str = "toy_mc", output_type: str = "multiple_choice",
               rows: list[dict[str, Any]] = ROWS) -> Path:
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = tmp_path / f"{name}.yaml"
    path.write_text(YAML.format(name=name, data=data, output_type=output_type), encoding="utf-8")
    return path


def lm_task(path: Path) -> Any:
    from lm_eval.tasks import TaskManager

    loaded = TaskManager(include_defaults=False).load([str(path)])["tasks"]
    return next(iter(loaded.values()))


def lm_prompt(task: Any, doc: Any, shots: int = 0) -> tuple[str, list[str]]:
    """lm-eval's context and continuations for one document."""
    ctx = task.fewshot_context(doc, shots)
    return ctx, [inst.arguments[1] for inst in task.construct_requests(doc, ctx)]


def test_missing_lmeval_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lmeval_tasks, "lmeval_available", lambda: False)
    with pytest.raises(TaskError, match=r"lm-eval is not installed: pip install \"gaplens\[lmeval\]\""):
        load_task(TaskSpec("lmeval:not_installed_check"))
    with pytest.raises(TaskError, match=r"unknown key 'shots' after '\?'; known: include"):
        load_task(TaskSpec("lmeval:arc_easy?shots=5"))


@needs_lmeval
def test_yaml_task_records_and_verbatim_prompt_match_lmeval(tmp_path: Path) -> None:
    path = write_task(tmp_path)
    recs = load_task(TaskSpec(f"lmeval:{path}"))
    assert [(r.id, r.answer, r.choices, r.subject, r.split) for r in recs] == [
        ("lmeval/toy_mc/test/1", 1, ("rock", "apple", "car"), "toy_mc", "test"),
        ("lmeval/toy_mc/test/2", 0, ("sky", "grass"), "toy_mc", "test"),
    ]
    assert recs[0].question == "Question:   Which is a fruit? \nAnswer:"
    assert dict(recs[0].meta) == {"description": "About food.\n\n", "target_delimiter": " ", "fewshot_delimiter": "\n\n"}
    task = lm_task(path)
    docs = list(task.test_docs())
    for rec, doc in zip(recs, docs, strict=True):
        prompt = render(parse("verbatim"), rec)
        assert (to_text(prompt), list(prompt.continuations)) == lm_prompt(task, doc)
        assert prompt.answer == task.doc_to_target(doc)
    assert to_text(render(parse("verbatim"), recs[1])) == "About colour.\n\nQuestion: Which is blue?\nAnswer:"
    # one few-shot example, in the order lm-eval would use it
    pool = few_shot_pool(TaskSpec(f"lmeval:{path}"))
    assert few_shot_split(TaskSpec(f"lmeval:{path}")) == "train" and [r.split for r in pool] == ["train", "train"]
    shot = render(parse("verbatim+shots:1"), recs[1], [pool[0]])
    assert to_text(shot) == ("About colour.\n\nQuestion:   Which is a fruit? \nAnswer: apple\n\n"
                             "Question: Which is blue?\nAnswer:")


@needs_lmeval
def test_lmeval_errors(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"lm-eval task file not found"):
        load_task(TaskSpec(f"lmeval:{tmp_path / 'none.yaml'}"))
    gen = write_task(tmp_path, "toy_gen", output_type="generate_until")
    with pytest.raises(TaskError, match=r"task 'toy_gen' has output_type 'generate_until'"):
        load_task(TaskSpec(f"lmeval:{gen}"))
    bad = write_task(tmp_path, "toy_bad", rows=[ROWS[0], dict(ROWS[1], answerKey="Z")])
    with pytest.raises(TaskError, match=r"lm-eval task 'toy_bad' split 'test' row 2: rendering failed"):
        load_task(TaskSpec(f"lmeval:{bad}"))
    with pytest.raises(TaskError, match=r"has no split 'validation'"):
        load_task(TaskSpec(f"lmeval:{write_task(tmp_path, 'toy_split')}", split="validation"))


# --------------------------------------------------------------------------- gaplens' own tasks vs lm-eval's YAMLs


def _lmeval_yaml(rel: str) -> str:
    import lm_eval

    return (Path(lm_eval.__file__).parent / "tasks" / rel).read_text(encoding="utf-8")


@needs_lmeval
@pytest.mark.skipif(not (DATA / "arc").is_dir(), reason="no local data")
def test_lmeval_arc_template_matches_lmeval_arc_easy(tmp_path: Path) -> None:
    text = _lmeval_yaml("arc/arc_easy.yaml").replace(
        "dataset_path: allenai/ai2_arc\ndataset_name: ARC-Easy",
        f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {DATA / 'arc' / 'ARC-Easy-test.jsonl'}",
    ).replace("training_split: train\nvalidation_split: validation\n", "")
    assert "dataset_path: json" in text and "Question: {{question}}" in text
    (tmp_path / "arc_easy_local.yaml").write_text(text.replace("task: arc_easy", "task: arc_easy_local"))
    task = lm_task(tmp_path / "arc_easy_local.yaml")
    recs = load_task(TaskSpec("arc-easy", data_dir=str(DATA)))
    for rec, doc in list(zip(recs, task.test_docs(), strict=True))[:400]:
        prompt = render(parse("lmeval-arc"), rec)
        assert (to_text(prompt), list(prompt.continuations)) == lm_prompt(task, doc), rec.id
        assert prompt.answer == task.doc_to_target(doc)


@needs_lmeval
@pytest.mark.skipif(not (DATA / "mmlu").is_dir(), reason="no local data")
@pytest.mark.parametrize("subject", ["nutrition", "anatomy"])
def test_lmeval_mmlu_template_matches_lmeval_mmlu(tmp_path: Path, subject: str) -> None:
    files = {}
    for split in ("test", "dev"):
        recs = load_task(TaskSpec(f"mmlu:{subject}", split=split, data_dir=str(DATA)))
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps({"question": r.question, "subject": subject,
                                                    "choices": list(r.choices), "answer": r.answer}) + "\n"
                                        for r in recs), encoding="utf-8")
    text = _lmeval_yaml("mmlu/default/_default_template_yaml").replace(
        "dataset_path: cais/mmlu",
        f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {files['test']}\n    dev: {files['dev']}",
    )
    description = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}."
    text += f'task: mmlu_{subject}_local\ndescription: "{description}\\n\\n"\n'
    (tmp_path / "mmlu_local.yaml").write_text(text)
    task = lm_task(tmp_path / "mmlu_local.yaml")
    recs = load_task(TaskSpec(f"mmlu:{subject}", data_dir=str(DATA)))
    dev = load_task(TaskSpec(f"mmlu:{subject}", split="dev", data_dir=str(DATA)))  # lm-eval's first_n sampler: in order
    unstripped = 0
    for rec, doc in zip(recs, task.test_docs(), strict=True):
        prompt = render(parse("lmeval-mmlu"), rec)
        assert (to_text(prompt), list(prompt.continuations)) == lm_prompt(task, doc), rec.id
        assert to_text(render(parse("lmeval-mmlu+shots:5"), rec, dev)) == lm_prompt(task, doc, 5)[0], rec.id
        unstripped += to_text(render(parse("header"), rec)) != to_text(prompt)
    assert (unstripped > 0) == (subject == "nutrition")  # today's default keeps the whitespace lm-eval strips


def test_templates_without_lmeval_on_a_constructed_record() -> None:
    """The strings lm-eval's ARC and MMLU YAMLs produce, written out by hand."""
    rec = MCRecord(id="m1", question=" What is 2 + 2?\n", choices=("3", "4", "5", "22"), answer=1,
                   subject="elementary_mathematics")
    arc = render(parse("lmeval-arc"), rec)
    assert to_text(arc) == "Question:  What is 2 + 2?\n\nAnswer:"
    assert arc.continuations == (" 3", " 4", " 5", " 22")
    mmlu = render(parse("lmeval-mmlu"), rec)
    assert to_text(mmlu) == (
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
        "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:"
    )
    assert mmlu.continuations == (" A", " B", " C", " D")
