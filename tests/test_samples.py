"""samples.parquet: one writer and reader, one set of columns, values checked against them."""

from __future__ import annotations

import numpy as np
import pytest

from core.samples import COLUMNS, NAMES, SampleTable, read_samples, write_samples


def table() -> SampleTable:
    t = SampleTable(model="m", weight_hash=None, task="capitals", seed=0, command="probe", condition=None)
    t.add(question_id=["q1", "q2"], subject=["geo", None], split=["train", "test"], variant="default",
          method="prompted:letter", layer=None, prediction=np.array([1, -1]), gold=np.array([1, 0]),
          correct=np.array([True, False]), score=np.array([0.5, np.nan]), n_choices=np.array([4, 4]))
    t.add(question_id=["q2"], subject=[None], split="test", variant="option", method="probe:option", layer=3,
          prediction=[0], gold=[0], correct=[True], score=[2.5], n_choices=[4])
    return t


def test_write_read_round_trip(tmp_path) -> None:
    path = write_samples(tmp_path / "run" / "samples.parquet", table())
    arrow = read_samples(path)
    assert tuple(arrow.column_names) == NAMES and [c.name for c in COLUMNS] == list(NAMES)
    df = arrow.to_pandas()
    assert len(df) == 3 and list(df.question_id) == ["q1", "q2", "q2"]
    assert df.layer.isna().tolist() == [True, True, False] and df.layer.iloc[2] == 3
    assert df.score.isna().tolist() == [False, True, False]  # NaN scores are null
    assert df.subject.isna().tolist() == [False, True, True] and set(df.model) == {"m"}
    assert str(arrow.schema.field("layer").type) == "int32" and str(arrow.schema.field("correct").type) == "bool"
    assert not list(path.parent.glob("*.tmp"))
    import pandas as pd

    assert pd.read_parquet(path).equals(df)  # plain pandas reads it


@pytest.mark.parametrize(("change", "match"), [
    ({"bogus": 1}, "unknown columns"),
    ({"prediction": [1.5]}, "prediction: expected an integer"),
    ({"correct": [1]}, "correct: expected a bool"),
    ({"question_id": [None]}, "question_id may not be null"),
    ({"gold": [0, 1]}, "gold has 2 values, question_id has 1"),
])
def test_bad_values_name_the_column(change, match) -> None:
    t = SampleTable(model="m", weight_hash=None, task="t", seed=0, command="eval", condition=None, layer=None)
    row = dict(question_id=["q"], subject=[None], split="all", variant="v", method="prompted:letter",
               prediction=[0], gold=[0], correct=[True], score=[0.1], n_choices=[2])
    with pytest.raises(ValueError, match=match):
        t.add(**{**row, **change})
        t.columns()


def test_missing_columns_and_foreign_files_are_refused(tmp_path) -> None:
    t = SampleTable(model="m")
    with pytest.raises(ValueError, match="missing"):
        t.add(question_id=["q"])
    import pyarrow as pa
    import pyarrow.parquet as pq

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1]}), other)
    with pytest.raises(ValueError, match="other.parquet: samples schema"):
        read_samples(other)
