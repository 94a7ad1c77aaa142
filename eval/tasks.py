"""Task loading: turn a task name into a list of `MCRecord`s.

Task names (``TaskSpec.name``):

- ``mmlu`` / ``mmlu:SUBJECT``: MMLU from ``<data_dir>/mmlu/{dev,test}/<subject>_<split>.csv``
  (header ``question,choice0,choice1,choice2,choice3,answer``); falls back to the Hugging Face
  Hub (``cais/mmlu``) when the local split folder is missing. Few-shot pool: the ``dev`` split.
- ``arc-easy`` / ``arc-challenge``: AI2 ARC from ``<data_dir>/arc/ARC-Easy-<split>.jsonl`` etc.
  (the ``allenai/ai2_arc`` row layout); hub fallback ``allenai/ai2_arc``. Splits
  train/validation/test. Few-shot pool: ``train`` (``validation`` when evaluating on train).
- ``jsonl:PATH``: one JSON object per line, ``{"question", "choices": [...], "answer": int or
  letter, optional "id", "subject"}``. Few-shot pool: a sibling ``<stem>.dev.jsonl`` (or
  ``..._dev.jsonl`` next to a ``..._test.jsonl``) if present, else empty. A file of inspect_ai samples
  (``{"input", "choices", "target": letter}``) is recognised from its first row.
- ``jsonl:PATH?FIELDS``, ``csv:PATH[?FIELDS]``, ``parquet:PATH[?FIELDS]``: any layout, through a field
  mapping such as ``csv:q.csv?question=Question&choices=A,B,C,D&answer=Answer`` (`eval.readers`;
  the FIELDS syntax is in `eval.fieldmap`).
- ``hf:DATASET[:CONFIG]:SPLIT[?FIELDS]``: a split of a Hugging Face dataset through
  ``datasets.load_dataset`` (a hub name or a local path), e.g.
  ``hf:allenai/ai2_arc:ARC-Easy:test?choices=choices.text&labels=choices.label&answer=answerKey``;
  ``&fewshot=train`` names the few-shot split (`eval.readers`).
- ``lmeval:TASK[?include=DIR]`` / ``lmeval:PATH.yaml``: an lm-evaluation-harness multiple_choice task,
  loaded by lm-eval (optional extra; `eval.lmeval_tasks`); score with the ``verbatim`` variant.
- built-in generated tasks (``capitals``, ``arithmetic``; see `eval.builtin`), splits test/dev.

`TaskSpec` fields beyond the name: ``select`` ("hash", the default: a seeded hash sample of n, nested across
n; "first": the first n records in file order, as lm-eval's ``--limit``; "stratified": n records spread over the
subjects in proportion to their sizes, largest remainders first, each subject's records in the seeded hash order)
and ``fields`` (a `FieldMap`, the same as a ``?FIELDS`` query on the name, for the jsonl/csv/parquet/hf families;
not both).

The data directory comes from ``TaskSpec.data_dir``, else ``$GAPLENS_DATA_DIR``; it is only
needed by the MMLU and ARC tasks. This module is the registry (names, splits, subsampling, few-shot
pools); the readers are in `eval.loaders` (MMLU, ARC, plain JSONL; re-exported here), `eval.readers`
(mapped files, hf) and `eval.lmeval_tasks`, where malformed input raises `TaskError` naming the file
(or dataset), the 1-based row and the field.

Your own tasks: `register_task(name, load, ...)` in a module that an installed package names under the entry-point
group ``gaplens.tasks`` (loaded on the registry's first use) or that ``--include MODULE|FILE.py`` imports
(`core.plugins`); an unknown name is answered with the closest registered one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.plugins import load_group
from core.suggest import did_you_mean
from eval import builtin, lmeval_tasks, readers
from eval.fieldmap import FieldMap
from eval.loaders import (  # noqa: F401 - re-exported: the readers are part of this module's interface
    ARC_CONFIGS,
    DATA_DIR_ENV,
    Loader,
    _arc_few_shot_split,
    _arc_loader,
    _load_mmlu,
    jsonl_sibling,
    mmlu_subjects,
    read_arc_jsonl,
    read_jsonl,
    read_mmlu_csv,
    resolve_data_dir,
)
from eval.records import MCRecord, TaskError

log = logging.getLogger(__name__)

SELECTS: tuple[str, ...] = ("hash", "first", "stratified")


@dataclass(frozen=True)
class TaskSpec:
    """What a user names on the command line: a task, the split to evaluate on, and where data lives."""

    name: str = field(
        metadata={
            "help": 'task: "mmlu", "mmlu:SUBJECT", "arc-easy", "arc-challenge", "jsonl:PATH", '
            '"csv:PATH", "parquet:PATH", "hf:DATASET[:CONFIG]:SPLIT" (files and hf take "?FIELDS"), '
            '"lmeval:TASK", or a built-in ("capitals", "arithmetic")'
        }
    )
    split: str = field(
        default="test",
        metadata={"help": "split to evaluate on (the few-shot pool comes from few_shot_split())"},
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": f"benchmark data directory (default: ${DATA_DIR_ENV})"},
    )
    select: str = field(
        default="hash",
        metadata={"help": 'which n records: "hash" (seeded hash sample, nested across n), "first" (file order) or '
                  '"stratified" (by subject, in proportion to each subject\'s size; hash order within a subject)'},
    )
    fields: FieldMap | None = field(
        default=None,
        metadata={"help": 'field mapping for jsonl/csv/parquet/hf tasks, e.g. "question=q&choices=A,B,C,D&answer=label"'},
    )

    @classmethod
    def of(cls, options: Any) -> TaskSpec:
        """The spec a config's task options name (`core.config.TaskOptions`: task, split, data_dir, select,
        fields)."""
        fields = getattr(options, "fields", None)
        return cls(options.task, options.split, getattr(options, "data_dir", None),
                   getattr(options, "select", "hash"), FieldMap.parse(fields) if isinstance(fields, str) else fields)

    def __post_init__(self) -> None:
        if self.select not in SELECTS:
            raise TaskError(f"TaskSpec.select={self.select!r} is unknown; choose one of {', '.join(SELECTS)}")
        if self.fields is not None and not isinstance(self.fields, FieldMap):
            raise TypeError(f"TaskSpec.fields must be a FieldMap (FieldMap.parse(text)), got {type(self.fields).__name__}")


# A loader maps (argument after ':' or None, split, data_dir) to records.
# Names the split the few-shot pool comes from, given (argument, eval split, data_dir); None: no pool.
FewShotSplit = Callable[[str | None, str, str | None], str | None]


@dataclass(frozen=True)
class TaskEntry:
    """One registered task family."""

    name: str
    load: Loader
    few_shot_split: FewShotSplit
    few_shot: Loader | None = None  # loads the pool itself (given the eval split) instead of load(arg, pool split)
    arg: str = "none"  # "none", "optional" or "required": whether "name:ARG" is allowed / needed
    usage: str = ""
    description: str = ""
    fields: bool = False  # takes a field mapping ("name:ARG?FIELDS" or TaskSpec.fields)


_REGISTRY: dict[str, TaskEntry] = {}
_DEFAULTS_REGISTERED = False


def register_task(
    name: str,
    load: Loader,
    *,
    few_shot_split: str | FewShotSplit | None = "dev",
    few_shot: Loader | None = None,
    arg: str = "none",
    usage: str | None = None,
    description: str = "",
    fields: bool = False,
) -> TaskEntry:
    """Register a task family under `name`; refuses a name that is already registered.

    `load(arg, split, data_dir)` returns the records of one split. `few_shot_split` names the
    split the few-shot pool is loaded from (a constant, a function of (arg, eval split,
    data_dir), or None for no pool); `few_shot`, if given, loads the pool itself. With `fields`,
    `TaskSpec.fields` reaches the loaders as a "?FIELDS" query appended to the argument.
    """
    _ensure_defaults()
    return _register(name, load, few_shot_split, few_shot, arg, usage, description, fields)


def _register(
    name: str,
    load: Loader,
    few_shot_split: str | FewShotSplit | None,
    few_shot: Loader | None,
    arg: str,
    usage: str | None,
    description: str,
    fields: bool = False,
) -> TaskEntry:
    if not name or ":" in name or name != name.strip():
        raise ValueError(f"task name {name!r} must be non-empty, without ':' or surrounding spaces")
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} is already registered")
    if arg not in ("none", "optional", "required"):
        raise ValueError(f"arg must be 'none', 'optional' or 'required', got {arg!r}")
    if few_shot_split is None or isinstance(few_shot_split, str):
        constant = few_shot_split

        def fs_split(_arg: str | None, _split: str, _data_dir: str | None) -> str | None:
            return constant

    else:
        fs_split = few_shot_split
    if usage is None:
        usage = {"none": name, "optional": f"{name}[:ARG]", "required": f"{name}:ARG"}[arg]
    entry = TaskEntry(name, load, fs_split, few_shot, arg, usage, description, fields)
    _REGISTRY[name] = entry
    return entry


def available_tasks() -> list[str]:
    """Registered task names, sorted ("mmlu" also accepts "mmlu:SUBJECT"; "jsonl" needs "jsonl:PATH")."""
    _ensure_defaults()
    return sorted(_REGISTRY)


def parse_task_name(name: str) -> tuple[str, str | None]:
    """Split "family:arg" into ("family", "arg"); ("family", None) without a colon."""
    family, sep, arg = name.strip().partition(":")
    return family, (arg if sep else None)


def _lookup(name: str) -> tuple[TaskEntry, str | None]:
    _ensure_defaults()
    family, arg = parse_task_name(name)
    entry = _REGISTRY.get(family)
    if entry is None:
        known = sorted(_REGISTRY)
        hint = did_you_mean(family, known)
        usages = ", ".join(_REGISTRY[k].usage for k in known)
        raise TaskError(f"unknown task {name!r}{hint}; available: {usages}")
    if arg is not None and entry.arg == "none":
        raise TaskError(f"task {family!r} takes no ':' argument, got {name!r}")
    if entry.arg == "required" and not arg:
        raise TaskError(f"task {family!r} needs an argument: {entry.usage}")
    if arg == "":
        arg = None
    return entry, arg


def _resolve(spec: TaskSpec) -> tuple[TaskEntry, str | None]:
    """The entry and argument of `spec`, with `spec.fields` folded into the argument as "?FIELDS"."""
    entry, arg = _lookup(spec.name)
    if spec.fields is None or spec.fields.is_default():
        return entry, arg
    if not entry.fields:
        raise TaskError(f"task {spec.name!r} takes no field mapping (TaskSpec.fields / --fields)")
    assert arg is not None
    base, sep, query = arg.partition("?")
    if sep and query.strip():
        raise TaskError(f"task {spec.name!r}: give the field mapping once, in the name after '?' or as TaskSpec.fields")
    return entry, f"{base}?{spec.fields.to_query()}"


def load_task(spec: TaskSpec, *, n: int | None = None, seed: int = 0, select: str | None = None) -> list[MCRecord]:
    """The records of `spec.split` of `spec.name`, or `n` of them chosen by `select` (default `spec.select`)."""
    entry, arg = _resolve(spec)
    records = entry.load(arg, spec.split, spec.data_dir)
    _check_unique_ids(records, spec.name)
    if not records:
        raise TaskError(f"task {spec.name!r} split {spec.split!r} has no records")
    log.info("loaded %d records of %s (%s)", len(records), spec.name, spec.split)
    return subsample(records, n, seed=seed, select=spec.select if select is None else select)


def subsample(records: Sequence[MCRecord], n: int | None, *, seed: int = 0, select: str = "hash") -> list[MCRecord]:
    """`n` records (all records if `n` is None or >= len), chosen by `select`.

    "hash": a seeded permutation of ids. The permutation orders ids by SHA-256 of "seed:id", so it
    does not depend on the Python version or on the order of `records`, and the sample for n is a
    subset of the sample for any larger n. The chosen records keep their original order.
    "first": the first n records in their given (file) order; `seed` is not used.
    "stratified": by subject (records without one form one stratum): subject s of size N_s gets floor(n N_s / N)
    records, the records left over go one each to the subjects with the largest remainders (ties: subject name);
    within a subject the first ones in the hash order. Every subject's share is within one record of proportional;
    not nested across n.
    """
    if select not in SELECTS:
        raise ValueError(f"select must be one of {', '.join(SELECTS)}, got {select!r}")
    if n is None:
        return list(records)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    if n >= len(records):
        if n > len(records):
            log.warning("asked for n=%d records but only %d exist; using all", n, len(records))
        return list(records)
    if select == "first":
        return list(records[:n])
    order = sorted(range(len(records)), key=lambda i: _perm_key(seed, records[i].id))
    if select == "stratified":
        chosen = _stratified(records, order, n)
    else:
        chosen = set(order[:n])
    return [r for i, r in enumerate(records) if i in chosen]


def _stratified(records: Sequence[MCRecord], order: Sequence[int], n: int) -> set[int]:
    """Indices of n records spread over subjects in proportion to their sizes (largest remainder), each subject's
    in the hash `order`."""
    by_subject: dict[str, list[int]] = {}
    for i in order:
        by_subject.setdefault(records[i].subject, []).append(i)
    total = len(records)
    quota = {s: n * len(ix) / total for s, ix in by_subject.items()}
    take = {s: int(q) for s, q in quota.items()}
    left = n - sum(take.values())
    for s in sorted(quota, key=lambda s: (-(quota[s] - take[s]), s))[:left]:
        take[s] += 1
    return {i for s, ix in by_subject.items() for i in ix[:take[s]]}


def _perm_key(seed: int, record_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{record_id}".encode()).digest()


def few_shot_split(spec: TaskSpec) -> str | None:
    """The split the few-shot pool of `spec` comes from (None: the task has no pool)."""
    entry, arg = _resolve(spec)
    return entry.few_shot_split(arg, spec.split, spec.data_dir)


def few_shot_pool(spec: TaskSpec) -> list[MCRecord]:
    """Records to draw few-shot examples from; never shares an id with the eval split `spec.split`.

    MMLU: the dev split (of the subject, if one is named); ARC: train; jsonl/csv/parquet: the
    fewshot= file or the sibling dev file or []; hf: the fewshot= split or []; lmeval: the task's
    fewshot docs; built-ins: their "dev" split.
    """
    entry, arg = _resolve(spec)
    pool_split = entry.few_shot_split(arg, spec.split, spec.data_dir)
    if pool_split is None:
        return []
    if entry.few_shot is not None:
        pool = entry.few_shot(arg, spec.split, spec.data_dir)
    elif pool_split == spec.split:
        log.warning("few-shot pool of %s is its eval split %r; using no few-shot pool", spec.name, spec.split)
        return []
    else:
        pool = entry.load(arg, pool_split, spec.data_dir)
    _check_unique_ids(pool, f"{spec.name} few-shot pool")
    eval_ids = {r.id for r in entry.load(arg, spec.split, spec.data_dir)}
    kept = [r for r in pool if r.id not in eval_ids]
    if len(kept) < len(pool):
        log.warning(
            "dropped %d few-shot records of %s whose ids are in the eval split %r",
            len(pool) - len(kept),
            spec.name,
            spec.split,
        )
    return kept


def few_shot_examples(pool: Sequence[MCRecord], record: MCRecord, k: int, seed: int) -> list[MCRecord]:
    """The `k` few-shot examples shown before `record`: drawn from `pool` (same number of choices when it has
    enough), never `record` itself, by a generator seeded from (seed, record id), so every run draws the same."""
    if k == 0:
        return []
    cands = [r for r in pool if r.id != record.id and len(r.choices) == len(record.choices)] or [
        r for r in pool if r.id != record.id
    ]
    if len(cands) < k:
        raise ValueError(f"few-shot needs {k} examples but the few-shot pool has {len(cands)}")
    h = int(hashlib.sha256(f"{seed}:{record.id}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(h)
    return [cands[i] for i in rng.choice(len(cands), size=k, replace=False)]


def _check_unique_ids(records: Iterable[MCRecord], what: str) -> None:
    seen: dict[str, str] = {}
    for r in records:
        if r.id in seen:
            raise TaskError(f"{what}: duplicate id {r.id!r} at {r.source or '?'} (first at {seen[r.id] or '?'})")
        seen[r.id] = r.source


# --------------------------------------------------------------------------- registry defaults


def _builtin_loader(name: str) -> Loader:
    generate = builtin.BUILTIN_TASKS[name]

    def load(arg: str | None, split: str, data_dir: str | None) -> list[MCRecord]:
        return generate(split)

    return load


def _ensure_defaults() -> None:
    """Register the standard tasks, then the installed plug-ins' (entry-point group "gaplens.tasks",
    `core.plugins`), on first use (no work at import time)."""
    global _DEFAULTS_REGISTERED
    if _DEFAULTS_REGISTERED:
        return
    _DEFAULTS_REGISTERED = True
    _register_standard()
    load_group("gaplens.tasks")


def _register_standard() -> None:
    _register(
        "mmlu",
        _load_mmlu,
        "dev",
        None,
        "optional",
        "mmlu[:SUBJECT]",
        "MMLU (57 subjects, or one); splits dev/test locally, validation from the hub",
    )
    for task, config in ARC_CONFIGS.items():
        _register(task, _arc_loader(task), _arc_few_shot_split, None, "none", None, f"AI2 {config}; splits train/validation/test")
    for fmt in readers.FILE_FORMATS:
        _register(
            fmt,
            readers.file_loader(fmt),
            readers.file_few_shot_split(fmt),
            readers.file_few_shot(fmt),
            "required",
            f"{fmt}:PATH[?FIELDS]",
            'generic JSONL {"question", "choices", "answer", "id"?, "subject"?} or inspect samples; '
            "any layout with ?FIELDS; few-shot from <stem>.dev.jsonl" if fmt == "jsonl" else
            f"a {fmt.upper()} file through a field mapping ?FIELDS; few-shot from <stem>.dev.{fmt} or fewshot=PATH",
            True,
        )
    _register(
        "hf",
        readers.load_hf_task,
        readers.hf_few_shot_split,
        readers.hf_few_shot,
        "required",
        "hf:DATASET[:CONFIG]:SPLIT[?FIELDS]",
        "a Hugging Face dataset split (hub or local) through datasets.load_dataset; few-shot from fewshot=SPLIT",
        True,
    )
    _register(
        "lmeval",
        lmeval_tasks.load_lmeval_task,
        lmeval_tasks.lmeval_few_shot_split,
        lmeval_tasks.lmeval_few_shot,
        "required",
        "lmeval:TASK[?include=DIR]",
        "an lm-evaluation-harness multiple_choice task or task YAML, loaded by lm-eval (optional extra)",
    )
    for name in builtin.BUILTIN_TASKS:
        _register(name, _builtin_loader(name), "dev", None, "none", None, builtin.BUILTIN_DESCRIPTIONS[name] + " (built in)")
    sizes = builtin.TOY_SPLIT_SIZES
    _register(
        builtin.TOY_MAX,
        lambda arg, split, data_dir: builtin.toy_max(split),
        "dev",
        None,
        "none",
        None,
        f"largest of four numbers (toy organism), {sizes['test']} test / {sizes['dev']} dev (built in)",
    )
