"""Tests for eval.builtin: determinism, answer balance, split disjointness, correct gold."""

from __future__ import annotations

import builtins
import re
from collections import Counter

import pytest

from eval.builtin import (
    BUILTIN_TASKS,
    CAPITALS,
    SPLITS,
    arithmetic,
    capital_of,
    capitals,
)
from eval.records import TaskError


@pytest.mark.parametrize("name", sorted(BUILTIN_TASKS))
@pytest.mark.parametrize("split", SPLITS)
def test_answer_positions_balanced(name: str, split: str) -> None:
    recs = BUILTIN_TASKS[name](split)
    counts = Counter(r.answer for r in recs)
    assert set(counts) == {0, 1, 2, 3}
    assert max(counts.values()) - min(counts.values()) <= 1
    assert all(len(r.choices) == 4 and len(set(r.choices)) == 4 for r in recs)
    assert all(r.split == split and r.subject == name for r in recs)
    # not a sequential A, B, C, D pattern
    answers = [r.answer for r in recs]
    assert answers != [i % 4 for i in range(len(recs))]


@pytest.mark.parametrize("name", sorted(BUILTIN_TASKS))
def test_dev_and_test_disjoint_and_unique(name: str) -> None:
    test, dev = BUILTIN_TASKS[name]("test"), BUILTIN_TASKS[name]("dev")
    test_ids, dev_ids = [r.id for r in test], [r.id for r in dev]
    assert len(set(test_ids)) == len(test_ids) and len(set(dev_ids)) == len(dev_ids)
    assert set(test_ids).isdisjoint(dev_ids)
    assert {r.question for r in test}.isdisjoint(r.question for r in dev)
    assert all(i.startswith(f"{name}/") for i in test_ids + dev_ids)
    assert len(dev) >= 8 and len(test) >= 3 * len(dev)


@pytest.mark.parametrize("name", sorted(BUILTIN_TASKS))
def test_deterministic(name: str) -> None:
    assert BUILTIN_TASKS[name]("test") == BUILTIN_TASKS[name]("test")


def test_capitals_table() -> None:
    assert len(CAPITALS) >= 60
    countries = [c for c, _, _ in CAPITALS]
    caps = [c for _, c, _ in CAPITALS]
    assert len(set(countries)) == len(countries) and len(set(caps)) == len(caps)
    assert capital_of("France") == "Paris"
    assert capital_of("Japan") == "Tokyo"
    assert capital_of("Australia") == "Canberra"
    assert capital_of("Canada") == "Ottawa"
    assert capital_of("Brazil") == "Brasília"
    assert capital_of("Nigeria") == "Abuja"


def test_capitals_gold_and_questions() -> None:
    recs = {r.id: r for split in SPLITS for r in capitals(split)}
    assert len(recs) == len(CAPITALS)
    spot = {"France": "Paris", "Germany": "Berlin", "Kenya": "Nairobi", "Peru": "Lima", "United_Kingdom": "London"}
    for key, capital in spot.items():
        r = recs[f"capitals/{key}"]
        assert r.choices[r.answer] == capital
    assert recs["capitals/France"].question == "What is the capital of France?"
    assert recs["capitals/United_Kingdom"].question == "What is the capital of the United Kingdom?"
    table = {c: cap for c, cap, _ in CAPITALS}
    all_caps = set(table.values())
    for r in recs.values():
        country = dict(r.meta)["country"]
        assert r.choices[r.answer] == table[country]
        assert set(r.choices) <= all_caps  # distractors are other real capitals
        assert " " not in r.id


def test_arithmetic_gold_by_evaluating_expression() -> None:
    for split in SPLITS:
        for r in arithmetic(split):
            m = re.fullmatch(r"What is (\d+ [+-] \d+)\?", r.question)
            assert m, r.question
            value = builtins.eval(m.group(1))
            assert int(r.choices[r.answer]) == value
            assert value > 0
            assert r.id == "arithmetic/" + m.group(1).replace(" ", "")
            others = [int(c) for i, c in enumerate(r.choices) if i != r.answer]
            assert all(0 < abs(o - value) <= 11 and o >= 0 for o in others)  # near the answer


def test_unknown_split() -> None:
    with pytest.raises(TaskError, match="unknown split 'train'"):
        capitals("train")
    with pytest.raises(TaskError, match="unknown split 'train'"):
        arithmetic("train")
