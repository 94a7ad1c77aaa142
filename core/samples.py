"""`samples.parquet`: the per-question table beside every run's results.json, one schema for every command.

One row per question x variant x method x condition x layer (where there is one): what the method answered for that
question and whether it was right, so runs can be joined question by question (`pd.read_parquet(run /
"samples.parquet")`) without reading HDF5 stores. Columns (`COLUMNS`; nullable ones may be null):

- ``question_id`` (string): the question's id in its task.
- ``subject`` (string, nullable): the question's subject (MMLU subject, ...); null when the task has none.
- ``split`` (string): the question's role in this run: ``train`` / ``test`` (probe runs: probes fit on train,
  scored on test; transfer runs: test only), ``dev`` / ``test`` (eval and unlock: choose on dev, report on test),
  ``eval`` (lock: the lock's held-out questions), ``all`` (diff: every question; its probe rows are ``test``).
- ``variant`` (string): the prompt variant the answer came from (``default``, ``option``, ``rotate:1``...).
- ``method`` (string): how the answer was read. ``prompted:<scoring>`` (the model's own answer: ``letter`` = argmax
  of the answer-symbol logits, ``option`` = option text with the highest summed log-prob, ``option_norm`` = per
  character, ``cot`` = extracted from a chain of thought, ``cot_forced`` = the forced answer after it);
  ``probe:<target>`` (a linear probe on the residual stream: ``option`` or ``letter`` target; in transfer runs the
  variant's own probe); ``lens`` (the logit lens); ``control:shuffled-s<k>`` (probe fit on the k-th label shuffle)
  and ``control:random-init`` (probe on a re-initialised model), ``control:surface`` (probe runs: the surface-cue
  control, a probe on each option's length and words alone, option variant, no layer); ``control:shuffled`` and
  ``transfer`` (transfer runs: the shuffled-label control, and the train variant's probe scored on this variant);
  ``probe:transfer``
  (diff runs: the probe trained on one checkpoint scored on this one); ``lock`` / ``base`` (the locked model and
  the model before locking) and ``policy:weak`` / ``policy:strong`` (the policies' argmax answers); ``locked``
  (the locked model an unlock run starts from) and ``unlock:<method>-s<seed>`` (the final model of one unlocking
  run), ``unlock:<method>=<parameter>-s<seed>`` (a weight-space control at one noise scale / weight factor).
- ``condition`` (string, nullable): lock, unlock and diff runs: ``no_password``, ``with_password`` or
  ``decoy:<k>``; null elsewhere.
- ``layer`` (int32, nullable): the resid layer of probes and the lens (null for methods without one).
- ``prediction`` (int64): the answer, as the question's ORIGINAL choice index (-1: no answer).
- ``gold`` (int64): the gold answer's original choice index.
- ``correct`` (bool): prediction == gold.
- ``score`` (float64, nullable): the method's score for its answer: the logit of the chosen answer symbol (prompted
  letter answers in probe, transfer and diff runs, the lens), the first-token log-probability of the chosen option
  (lock, base, locked, unlock), the option text's summed log-probability (``prompted:option``; per character for
  ``option_norm``), the softmax probability of the answer over the choices (every eval row), the probe's logit for the
  answer (probes, controls, transfer), the policy's probability of its answer (policies); null when the method has
  none (diff probes) or there is no answer.
- ``n_choices`` (int32): the question's number of choices.
- ``model`` (string): the model as named by the run (diff: each checkpoint).
- ``weight_hash`` (string, nullable): the weights' hash (null for models a run made and did not save).
- ``task`` (string): the task name.
- ``seed`` (int64): the run's seed.
- ``command`` (string): the command that wrote the run (probe, eval, transfer, lock, unlock, diff).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.io import atomic_path

FILE = "samples.parquet"
SCHEMA = "gaplens.samples/1"


@dataclass(frozen=True)
class Column:
    """One column of the table: name, Arrow type, whether it may be null."""

    name: str
    type: str  # string, int32, int64, bool, float64
    nullable: bool


COLUMNS: tuple[Column, ...] = (
    Column("question_id", "string", False), Column("subject", "string", True), Column("split", "string", False),
    Column("variant", "string", False), Column("method", "string", False), Column("condition", "string", True),
    Column("layer", "int32", True), Column("prediction", "int64", False), Column("gold", "int64", False),
    Column("correct", "bool", False), Column("score", "float64", True), Column("n_choices", "int32", False),
    Column("model", "string", False), Column("weight_hash", "string", True), Column("task", "string", False),
    Column("seed", "int64", False), Column("command", "string", False),
)
NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
_BY_NAME = {c.name: c for c in COLUMNS}


class SampleTable:
    """Rows gathered in blocks: `add(**columns)` appends len(question_id) rows; a scalar is repeated for every row.

    `constants` (e.g. model, task, seed, command, weight_hash) fill columns no block gives. Every column must be
    given (by a block or a constant); a value that does not fit its column is a ValueError naming it.
    """

    def __init__(self, **constants: Any) -> None:
        unknown = set(constants) - set(NAMES)
        if unknown:
            raise ValueError(f"unknown samples columns {sorted(unknown)}; columns: {', '.join(NAMES)}")
        self.constants = constants
        self.blocks: list[dict[str, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(b["question_id"]) for b in self.blocks)

    def add(self, **columns: Any) -> None:
        """Append one block of rows (see the class docstring)."""
        values = {**self.constants, **columns}
        unknown = set(values) - set(NAMES)
        missing = [n for n in NAMES if n not in values]
        if unknown or missing:
            raise ValueError(f"samples block: unknown columns {sorted(unknown)}, missing {missing}")
        n = len(np.asarray(values["question_id"]))
        block = {}
        for name in NAMES:
            v = values[name]
            if isinstance(v, (str, int, float, bool, np.generic)) or v is None:
                arr = np.full(n, v, dtype=object)
            else:
                arr = np.asarray(v, dtype=object).ravel()
                if len(arr) != n:
                    raise ValueError(f"samples block: column {name} has {len(arr)} values, question_id has {n}")
            block[name] = arr
        self.blocks.append(block)

    def columns(self) -> dict[str, list[Any]]:
        """Every column as a list of Python values (nulls as None), checked against `COLUMNS`."""
        out = {}
        for name in NAMES:
            vals = np.concatenate([b[name] for b in self.blocks]) if self.blocks else np.array([], dtype=object)
            out[name] = [_cell(_BY_NAME[name], v) for v in vals.tolist()]
        return out


def _cell(col: Column, v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or (isinstance(v, float) and math.isnan(v) and col.type != "float64"):
        if not col.nullable:
            raise ValueError(f"samples column {col.name} may not be null")
        return None
    if col.type == "string":
        if not isinstance(v, str):
            raise ValueError(f"samples column {col.name}: expected a string, got {v!r}")
        return v
    if col.type == "bool":
        if not isinstance(v, bool):
            raise ValueError(f"samples column {col.name}: expected a bool, got {v!r}")
        return v
    if col.type.startswith("int"):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"samples column {col.name}: expected an integer, got {v!r}")
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"samples column {col.name}: expected a number, got {v!r}")
    return float(v) if math.isfinite(v) else None


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(), "bool": pa.bool_(),
             "float64": pa.float64()}
    return pa.schema([pa.field(c.name, types[c.type], nullable=c.nullable) for c in COLUMNS],
                     metadata={b"schema": SCHEMA.encode()})


def write_samples(path: str | Path, table: SampleTable) -> Path:
    """Write the table to `path` (parquet) atomically; parent directories are created."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = _arrow_schema()
    cols = table.columns()
    arrow = pa.table({c.name: pa.array(cols[c.name], type=schema.field(c.name).type) for c in COLUMNS},
                     schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)
    return path


def read_samples(path: str | Path) -> Any:
    """The samples table in `path` as a pyarrow Table (`.to_pandas()` for a DataFrame); ValueError naming the file
    when its columns are not `COLUMNS`."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if meta.get(b"schema", b"").decode() != SCHEMA:
        raise ValueError(f"{path}: samples schema {meta.get(b'schema', b'(none)').decode()!r}, expected {SCHEMA!r}")
    if tuple(table.column_names) != NAMES:
        raise ValueError(f"{path}: columns {table.column_names}, expected {list(NAMES)}")
    return table


def subjects(ids: Sequence[str], by_id: Mapping[str, str]) -> list[str | None]:
    """The subject of each question id ("" or absent: None)."""
    return [by_id.get(i) or None for i in ids]
