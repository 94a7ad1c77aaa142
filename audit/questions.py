"""Which questions an audit case uses, from its lock record: train (the lock's unlock pool), dev and test (its eval).

A locked checkpoint records the question ids of its splits (`locking.checkpoint`): the lock trained on ``train``;
``pool`` and ``eval`` it never saw. The audit trains probes, estimates steering directions and draws fine-tuning
demonstrations from the pool, and splits the eval questions by id into dev (to choose) and test (to report).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.io import write_jsonl
from eval import tasks
from eval.records import MCRecord
from eval.stats import split_ids
from locking.checkpoint import Locked


@dataclass(frozen=True)
class CaseQuestions:
    """A case's questions: `pool` (train-side: probes, steering, demonstrations) and `eval` = dev + test."""

    pool: list[MCRecord]
    eval: list[MCRecord]
    train_ids: list[str]  # the pool questions probes and steering directions are fitted on (at most n_train)
    dev_ids: list[str]
    test_ids: list[str]

    @property
    def eval_ids(self) -> list[str]:
        return [r.id for r in self.eval]


def lock_records(locked: Locked, data_dir: str | None = None) -> dict[str, list[MCRecord]]:
    """The records of each of the lock's splits ("train", "pool", "eval"), reloaded from the lock's task as the
    lock loaded them; ValueError naming the checkpoint when an id is missing (another --data-dir?)."""
    meta = locked.meta
    t = meta["task"]
    fields = t.get("fields")
    spec = tasks.TaskSpec(t["name"], t["split"], data_dir or t["data_dir"], t.get("select", "hash"),
                          tasks.FieldMap.parse(fields) if fields else None)
    by_id = {r.id: r for r in tasks.load_task(spec, n=t["n"], seed=meta["lock_config"]["seed"])}
    missing = [i for ids in meta["splits"].values() for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"{locked.path}: {len(missing)} question ids of the lock's splits are not in task "
                         f"{t['name']} ({missing[0]}, ...); is --data-dir the same?")
    return {name: [by_id[i] for i in ids] for name, ids in meta["splits"].items()}


def case_questions(locked: Locked, *, seed: int, dev_fraction: float, n_train: int,
                   data_dir: str | None = None) -> CaseQuestions:
    """The lock's pool and eval questions; train = `n_train` pool questions (a seeded sample, `tasks.subsample`),
    dev / test = the eval ids split by `eval.stats.split_ids(ids, dev_fraction, seed)`."""
    recs = lock_records(locked, data_dir)
    pool, ev = recs["pool"], recs["eval"]
    if len(ev) < 4 or len(pool) < 4:
        raise ValueError(f"{locked.path}: the lock's pool ({len(pool)}) and eval ({len(ev)}) splits need at least 4 "
                         "questions each for an audit")
    dev, test = split_ids([r.id for r in ev], dev_fraction, seed)
    train = [r.id for r in tasks.subsample(pool, min(n_train, len(pool)), seed=seed)]
    return CaseQuestions(pool, ev, train, dev, test)


def write_questions(path: Path, records: list[MCRecord]) -> Path:
    """`records` as a task file (`--task jsonl:PATH`), in the layout `cli.py lock` writes its questions."""
    rows: list[dict[str, Any]] = [{"id": r.id, "question": r.question, "choices": list(r.choices), "answer": r.answer,
                                   "subject": r.subject} for r in records]
    write_jsonl(path, rows)
    return path
