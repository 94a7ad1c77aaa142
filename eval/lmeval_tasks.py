"""lm-evaluation-harness ``multiple_choice`` tasks, loaded by lm-eval itself (the optional extra ``gaplens[lmeval]``).

Task names:

- ``lmeval:TASK`` a task, group or tag that lm-eval knows (a group or tag gives every leaf task);
  ``lmeval:TASK?include=DIR`` also searches the task YAMLs in DIR (``TaskManager(include_path=DIR)``).
- ``lmeval:PATH.yaml`` one task YAML file (its ``include:`` lines are resolved by lm-eval).

Each document becomes an `MCRecord` through the task's own ``doc_to_text`` / ``doc_to_choice`` /
``doc_to_target``:

- ``question``: the rendered ``doc_to_text``, the whole prompt (e.g. ``"Question: ...\\nAnswer:"``);
- ``choices``: ``doc_to_choice``; ``answer``: ``doc_to_target`` (an index, or the gold choice's text);
- ``subject``: the lm-eval task name; ``id``: ``lmeval/<task>/<split>/<row>`` (1-based);
- ``meta``: ``description`` (rendered for the document), ``target_delimiter``, ``fewshot_delimiter``.

Score them with the variant ``verbatim`` (`eval.variants`), which renders description + ``doc_to_text``
unchanged and continues with target_delimiter + choice: lm-eval's context and continuations, string for
string. Other variants treat the rendered prompt as the question.

Splits: "test" is the documents lm-eval evaluates (its test split, else its validation split); "validation"
and "train" the task's validation and training splits. Few-shot pool: the task's ``fewshot_docs`` (its
fewshot split, else training, else validation), rendered with its fewshot config; gaplens draws the shots
itself (seeded), so k-shot prompts match lm-eval's layout but not its choice of examples.
Tasks are loaded once per process (lm-eval indexes thousands of YAML files on the first call).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from eval.fieldmap import answer_index, parse_query, split_query
from eval.records import MCRecord, TaskError

log = logging.getLogger(__name__)

INSTALL_HINT = 'lm-eval is not installed: pip install "gaplens[lmeval]" (lm-eval==0.4.13)'


def lmeval_available() -> bool:
    """Whether lm-eval can be imported."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return False
    return True


def parse_lmeval(arg: str) -> tuple[str, str | None]:
    """(task name or YAML path, include dir or None) of "TASK[?include=DIR]"."""
    base, query = split_query(arg)
    fields, options = parse_query(query)
    unknown = [k for k in (*fields, *options) if k != "include"]
    if unknown:
        raise TaskError(f"lmeval:{arg}: unknown key {unknown[0]!r} after '?'; known: include")
    if not base.strip():
        raise TaskError(f"lmeval:{arg}: no task name or YAML path")
    return base.strip(), options.get("include")


@functools.lru_cache(maxsize=4)
def _manager(include: str | None, defaults: bool) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include, include_defaults=defaults)


@functools.lru_cache(maxsize=8)
def _load_tasks(name: str, include: str | None) -> tuple[tuple[str, Any], ...]:
    """(task name, lm-eval Task) for every leaf task of `name`, sorted by name."""
    if not lmeval_available():
        raise TaskError(f"lmeval:{name}: {INSTALL_HINT}")
    is_yaml = name.endswith((".yaml", ".yml"))
    if is_yaml and not Path(name).expanduser().is_file():
        raise TaskError(f"lm-eval task file not found: {Path(name).expanduser()}")
    if include is not None and not Path(include).expanduser().is_dir():
        raise TaskError(f"lmeval:{name}: include={include} is not a directory")
    spec = str(Path(name).expanduser()) if is_yaml else name
    try:
        manager = _manager(str(Path(include).expanduser()) if include else None, not is_yaml)
        tasks = manager.load([spec])["tasks"]
    except Exception as exc:  # unknown names, bad YAML, unreachable datasets: one TaskError
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise TaskError(f"lmeval:{name}: lm-eval could not load the task ({type(exc).__name__}: {detail})") from exc
    if not tasks:
        raise TaskError(f"lmeval:{name}: lm-eval found no tasks")
    for task_name, task in tasks.items():
        if task.OUTPUT_TYPE != "multiple_choice":
            raise TaskError(f"lmeval:{name}: task {task_name!r} has output_type {task.OUTPUT_TYPE!r}; "
                            "only multiple_choice tasks can be read")
    return tuple(sorted(tasks.items()))


def _split_docs(task: Any, split: str) -> tuple[str, Iterable[Mapping[str, Any]]]:
    cfg = task.config
    if split == "test":
        if task.has_test_docs():
            return cfg.test_split, task.test_docs()
        if task.has_validation_docs():
            return cfg.validation_split, task.validation_docs()
    elif split == "validation" and task.has_validation_docs():
        return cfg.validation_split, task.validation_docs()
    elif split == "train" and task.has_training_docs():
        return cfg.training_split, task.training_docs()
    have = [s for s, ok in (("test", task.has_test_docs() or task.has_validation_docs()),
                            ("validation", task.has_validation_docs()), ("train", task.has_training_docs())) if ok]
    raise TaskError(f"lm-eval task {cfg.task!r} has no split {split!r}; choose one of {', '.join(have) or 'none'}")


def _fewshot_split_name(task: Any) -> str | None:
    cfg = task.config
    fewshot = getattr(task, "fewshot_cfg", None)
    return (getattr(fewshot, "split", None) or cfg.training_split or cfg.validation_split or cfg.test_split)


def doc_record(task: Any, doc: Mapping[str, Any], *, split: str, row: int, fewshot: bool = False) -> MCRecord:
    """One record from one lm-eval document (rendered with the task's fewshot config when `fewshot`)."""
    cfg = task.config
    name = cfg.task
    where = f"lm-eval task {name!r} split {split!r} row {row}"
    fs = getattr(task, "fewshot_cfg", None) if fewshot else None
    try:
        text = task.doc_to_text(doc, getattr(fs, "doc_to_text", None))
        choices = task.doc_to_choice(doc, getattr(fs, "doc_to_choice", None))
        target = task.doc_to_target(doc, getattr(fs, "doc_to_target", None))
        description = task.resolve_field(doc, cfg.description) if hasattr(task, "resolve_field") else cfg.description
    except Exception as exc:  # template errors name the document
        raise TaskError(f"{where}: rendering failed ({type(exc).__name__}: {exc})") from exc
    if not isinstance(text, str):
        raise TaskError(f"{where}: field 'doc_to_text' gave {type(text).__name__} {text!r}; multiple-input "
                        "tasks (one context per choice) are not supported")
    if not isinstance(choices, list | tuple) or not all(isinstance(c, str) for c in choices):
        raise TaskError(f"{where}: field 'doc_to_choice' must give a list of strings, got {choices!r}")
    answer = answer_index(target, tuple(choices), "index" if isinstance(target, int) else "text",
                          "doc_to_target", where)
    tgt = getattr(fs, "target_delimiter", None) or cfg.target_delimiter
    few = getattr(fs, "fewshot_delimiter", None) or cfg.fewshot_delimiter
    meta = (("description", description or ""), ("target_delimiter", " " if tgt is None else tgt),
            ("fewshot_delimiter", "\n\n" if few is None else few))
    return MCRecord(id=f"lmeval/{name}/{split}/{row}", question=text, choices=tuple(choices), answer=answer,
                    subject=name, split=split, source=f"lmeval:{name}:{split}:{row}", meta=meta)


def read_lmeval(name: str, split: str = "test", *, include: str | None = None) -> list[MCRecord]:
    """Records of `split` of every leaf task of `name` (a task, group, tag or YAML path)."""
    records: list[MCRecord] = []
    for _, task in _load_tasks(name, include):
        real, docs = _split_docs(task, split)
        records.extend(doc_record(task, doc, split=real, row=i) for i, doc in enumerate(docs, start=1))
    if not records:
        raise TaskError(f"lmeval:{name} split {split!r}: no records")
    return records


def read_lmeval_fewshot(name: str, *, include: str | None = None) -> list[MCRecord]:
    """The few-shot pool of every leaf task of `name` ([] for a task without one)."""
    records: list[MCRecord] = []
    for _, task in _load_tasks(name, include):
        split = _fewshot_split_name(task)
        docs = task.fewshot_docs() if split else None
        records.extend(doc_record(task, doc, split=split, row=i, fewshot=True)
                       for i, doc in enumerate(docs or (), start=1) if split)
    return records


# --------------------------------------------------------------------------- registry loaders


def load_lmeval_task(arg: str | None, split: str, data_dir: str | None) -> list[MCRecord]:
    assert arg is not None
    name, include = parse_lmeval(arg)
    return read_lmeval(name, split, include=include)


def lmeval_few_shot_split(arg: str | None, split: str, data_dir: str | None) -> str | None:
    assert arg is not None
    name, include = parse_lmeval(arg)
    splits = {_fewshot_split_name(task) for _, task in _load_tasks(name, include)} - {None}
    return sorted(splits)[0] if splits else None


def lmeval_few_shot(arg: str | None, split: str, data_dir: str | None) -> list[MCRecord]:
    assert arg is not None
    name, include = parse_lmeval(arg)
    return read_lmeval_fewshot(name, include=include)
