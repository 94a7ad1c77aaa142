"""The results schemas: the dataclass <-> JSON converter, versioned results, the registry, every schema round trip,
and docs/results.md generated from the schemas."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pytest

from core.schemas import REGISTRY, Estimate, Result, SchemaError, from_data, load_result, register, to_data
from core.schemas import docs as schema_docs
from core.schemas.convert import hints


@dataclass(frozen=True)
class Leaf:
    x: float
    y: float | None
    tag: Literal["a", "b"]


@dataclass(frozen=True)
class Tree:
    name: str
    n: int
    ok: bool
    leaves: list[Leaf]
    by_name: dict[str, Leaf]
    pair: tuple[float, int]
    many: tuple[int, ...]
    maybe: Leaf | None
    either: int | str
    anything: Any


def tree() -> Tree:
    return Tree("t", 3, True, [Leaf(1.5, None, "a"), Leaf(math.nan, 2.0, "b")], {"k": Leaf(math.inf, -1.0, "a")},
                (0.5, 2), (1, 2, 3), None, "s", {"free": [1, None]})


def test_round_trip_of_every_supported_type() -> None:
    data = to_data(tree())
    assert data["leaves"][1]["x"] is None and data["by_name"]["k"]["x"] is None  # NaN and inf as null
    assert data["leaves"][0]["y"] is None and data["pair"] == [0.5, 2] and data["many"] == [1, 2, 3]
    json.dumps(data, allow_nan=False)  # strict JSON
    back = from_data(Tree, json.loads(json.dumps(data)))
    assert math.isnan(back.leaves[1].x) and math.isnan(back.by_name["k"].x)  # a float reads null as NaN
    assert back.leaves[0].y is None  # an optional float reads null as None
    assert back.pair == (0.5, 2) and back.many == (1, 2, 3) and back.either == "s" and back.anything == {"free": [1, None]}
    assert to_data(back) == data


def test_numpy_values_are_accepted_and_written_as_python_values() -> None:
    leaf = from_data(Leaf, {"x": np.float32(0.25), "y": np.int64(2), "tag": "a"})
    assert leaf == Leaf(0.25, 2.0, "a") and type(leaf.x) is float
    assert to_data({"a": np.arange(3), "b": np.bool_(True), "c": np.float64(np.nan)}) == {"a": [0, 1, 2], "b": True,
                                                                                           "c": None}
    assert from_data(list[int], np.array([1, 2])) == [1, 2]
    with pytest.raises(SchemaError, match="cannot write a object"):
        to_data({"x": object()})


@pytest.mark.parametrize(("data", "match"), [
    ({"x": 1.0, "y": None}, r"^tag: missing field of Leaf"),
    ({"x": 1.0, "y": None, "tag": "a", "extra": 1}, r"^extra: unknown field of Leaf"),
    ({"x": 1.0, "y": None, "label": "a"}, r"^label: unknown field of Leaf .* missing: tag"),
    ({"x": "1", "y": None, "tag": "a"}, r"^x: expected a number, got str"),
    ({"x": True, "y": None, "tag": "a"}, r"^x: expected a number, got bool"),
    ({"x": 1.0, "y": None, "tag": "c"}, r"^tag: expected one of 'a', 'b'"),
    ([1.0], r"expected an object \(Leaf\)"),
])
def test_bad_values_name_the_field(data, match) -> None:
    with pytest.raises(SchemaError, match=match):
        from_data(Leaf, data)


def test_nested_errors_give_the_field_path() -> None:
    data = to_data(tree())
    data["leaves"][1]["tag"] = "z"
    with pytest.raises(SchemaError, match=r"^leaves\[1\].tag: expected one of"):
        from_data(Tree, data)
    data = to_data(tree())
    del data["by_name"]["k"]["y"]
    with pytest.raises(SchemaError, match=r"^by_name.k.y: missing field"):
        from_data(Tree, data)
    data = to_data(tree())
    data["n"] = 3.0
    with pytest.raises(SchemaError, match=r"^n: expected an integer"):
        from_data(Tree, data)
    data = to_data(tree())
    data["pair"] = [1.0]
    with pytest.raises(SchemaError, match=r"^pair: expected a list of 2 values"):
        from_data(Tree, data)
    data = to_data(tree())
    data["name"] = None
    with pytest.raises(SchemaError, match=r"^name: expected a string, got NoneType None"):
        from_data(Tree, data)


@dataclass(frozen=True)
class Demo(Result):
    """A results class for the tests (not registered globally)."""

    SCHEMA: ClassVar[str] = "gaplens.test-demo"
    VERSION: ClassVar[int] = 3

    accuracy: Estimate
    layers: list[int]


def test_results_write_atomically_and_read_back(tmp_path: Path) -> None:
    r = Demo(Estimate(0.5, 0.25, 0.75, 8, "wilson"), [0, 1])
    path = r.write(tmp_path / "sub" / "results.json")
    doc = json.loads(path.read_text())
    assert list(doc)[0] == "schema" and doc["schema"] == "gaplens.test-demo/3"
    assert Demo.read(path) == r and not list(path.parent.glob("*.tmp"))
    with pytest.raises(SchemaError, match=rf"{path}: schema: gaplens.test-demo version 2; this gaplens reads "
                                          r"version 3 \(an older gaplens"):
        Demo.from_json({**doc, "schema": "gaplens.test-demo/2"}, file=path)
    with pytest.raises(SchemaError, match="expected 'gaplens.test-demo'"):
        Demo.from_json({**doc, "schema": "gaplens.probe/2"})
    with pytest.raises(SchemaError, match="is not of the form"):
        Demo.from_json({**doc, "schema": "probe"})
    with pytest.raises(SchemaError, match="schema: missing field"):
        Demo.from_json({k: v for k, v in doc.items() if k != "schema"})
    bad = Demo(Estimate(0.5, 0.25, 0.75, 8, "wilson"), ["zero"])  # type: ignore[list-item]
    with pytest.raises(SchemaError, match=r"layers\[0\]: expected an integer"):
        bad.write(tmp_path / "bad.json")  # what would not read back is never written
    assert not (tmp_path / "bad.json").exists()


def test_registry_refuses_duplicates_and_load_result_dispatches_on_schema(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("core.schemas.base.REGISTRY", dict(REGISTRY))
    register(Demo)
    register(Demo)  # the same class again is fine

    @dataclass(frozen=True)
    class Other(Result):
        SCHEMA: ClassVar[str] = "gaplens.test-demo"
        VERSION: ClassVar[int] = 1

    with pytest.raises(ValueError, match="already registered by Demo"):
        register(Other)
    path = Demo(Estimate(0.5, 0.25, 0.75, 8, "wilson"), [0]).write(tmp_path / "results.json")
    assert isinstance(load_result(path), Demo)
    path.write_text(json.dumps({"schema": "gaplens.nope/1"}))
    with pytest.raises(SchemaError, match=rf"{path}: unknown schema 'gaplens.nope'"):
        load_result(path)


def example(tp: Any, depth: int = 0) -> Any:
    """A value of every field's type, with a NaN in every float (the hardest case for a round trip)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return tp(**{k: example(t, depth + 1) for k, t in hints(tp).items()})
    if origin in (typing.Union, __import__("types").UnionType):
        return example(next(a for a in args if a is not type(None)), depth)
    if origin is Literal:
        return args[-1]
    if origin is list:
        return [example(args[0], depth + 1)]
    if origin is tuple:
        return (example(args[0], depth + 1),) if args[1:] == (Ellipsis,) else tuple(example(a, depth) for a in args)
    if origin is dict:
        return {"k": example(args[1], depth + 1)}
    return {float: 0.5, int: 2, bool: True, str: "s", Any: {"any": [1, "x"]}}[tp]


@pytest.mark.parametrize("cls", sorted(REGISTRY.values(), key=lambda c: c.SCHEMA), ids=lambda c: c.SCHEMA)
def test_every_schema_round_trips(cls, tmp_path: Path) -> None:
    value = example(cls)
    path = value.write(tmp_path / "results.json")
    assert load_result(path) == value
    assert cls.read(path).to_json() == json.loads(path.read_text())


def test_estimate_is_one_class_and_its_dict_is_unchanged() -> None:
    from eval import stats

    assert stats.Estimate is Estimate
    e = stats.accuracy(np.array([True, False, True, True]))
    assert e.to_dict() == {"value": 0.75, "lo": e.lo, "hi": e.hi, "n": 4, "method": "wilson"}
    assert list(e.to_dict()) == ["value", "lo", "hi", "n", "method"]


def test_every_field_of_every_schema_is_documented() -> None:
    for cls in schema_docs.reachable(list(REGISTRY.values())):
        missing = [name for name, doc in schema_docs.field_docs(cls).items() if not doc]
        assert not missing, f"{cls.__name__}: fields without a comment: {missing}"
        assert cls.__doc__, cls.__name__


def test_docs_results_md_is_up_to_date() -> None:
    committed = schema_docs.DOC_PATH.read_text()
    assert committed == schema_docs.render(), "docs/results.md is stale: run `python -m core.schemas.docs`"


def test_format_estimate_is_the_one_text_of_an_estimate() -> None:
    from core.schemas import format_estimate

    e = Estimate(0.1234, 0.1, 0.15, 500, "wilson")
    assert format_estimate(e) == "0.123 [0.100, 0.150]"
    assert format_estimate(Estimate(0.02, -0.01, 0.05, 9, "bootstrap"), signed=True) == "+0.020 [-0.010, +0.050]"
    assert format_estimate(e, digits=2, with_n=True) == "0.12 [0.10, 0.15] (n=500)"
    assert format_estimate(e, over={"wilson": "Wilson over questions"}) == "0.123 [0.100, 0.150] (Wilson over questions)"
    assert format_estimate(Estimate(0.5, float("nan"), float("nan"), 1, "none")) == "0.500 (no interval)"
    assert format_estimate(Estimate(0.5, None, None, 1, "none"), no_interval="") == "0.500"  # as read from JSON
    assert format_estimate(None) == "n/a" and format_estimate(Estimate(float("nan"), 0, 1, 0, "wilson"), missing="-") == "-"
