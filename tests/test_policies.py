"""Tests for locking.policies: soft / hard / fixed policies, display order, accuracy and sampling."""

from __future__ import annotations

import numpy as np
import pytest

from eval.records import MCRecord
from eval.variants import VariantSpec, parse
from locking import policies


def _records(n: int = 8) -> list[MCRecord]:
    return [MCRecord(id=f"q{i}", question=f"Question {i}?", choices=("w", "x", "y", "z"), answer=i % 4)
            for i in range(n)]


def test_gold_uniform() -> None:
    recs = _records()
    g, u = policies.gold(recs), policies.uniform(recs)
    for r in recs:
        assert g[r.id].tolist() == [float(i == r.answer) for i in range(4)]
        assert np.allclose(u[r.id], 0.25)
    arg, exp = policies.correct(g, recs)
    assert arg.all() and np.allclose(exp, 1.0)
    _, exp_u = policies.correct(u, recs)
    assert np.allclose(exp_u, 0.25)


def test_fixed_follows_displayed_position() -> None:
    recs = _records(4)
    ident = policies.fixed(recs, "A", VariantSpec())
    assert all(ident[r.id].tolist() == [1, 0, 0, 0] for r in recs)
    rot = policies.fixed(recs, "A", parse("rotate:1"))  # displayed A shows original (0 - 1) % 4 = 3
    assert all(int(np.argmax(rot[r.id])) == 3 for r in recs)
    arg, _ = policies.correct(ident, recs)
    assert arg.tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="only 4 choices"):
        policies.fixed(recs, "E", VariantSpec())


def test_harden_and_labels() -> None:
    soft = {"a": np.array([0.2, 0.5, 0.3]), "b": np.array([0.4, 0.4, 0.2])}
    hard = policies.harden(soft)
    assert hard["a"].tolist() == [0, 1, 0] and hard["b"].tolist() == [1, 0, 0]  # ties -> lowest index
    assert policies.with_labels(soft, "soft")["a"] is soft["a"]
    assert policies.with_labels(soft, "hard")["b"].tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match="labels"):
        policies.with_labels(soft, "medium")


def test_from_displayed_round_trip() -> None:
    recs = _records(4)
    spec = parse("rotate:2")
    displayed = np.array([[0.1, 0.2, 0.3, 0.4]] * 4)
    pol = policies.from_displayed(recs, displayed, spec)
    from eval.variants import display_order

    for r in recs:
        order = display_order(spec.order, r.id, 4)
        assert np.allclose(policies.displayed(pol[r.id], order), [0.1, 0.2, 0.3, 0.4])


def test_sample_is_seeded_and_follows_policy() -> None:
    pol = {f"q{i}": np.array([0.0, 1.0, 0.0]) for i in range(5)}
    assert set(policies.sample(pol, list(pol), np.random.default_rng(0)).values()) == {1}
    mixed = {f"q{i}": np.array([0.5, 0.5]) for i in range(200)}
    a = policies.sample(mixed, list(mixed), np.random.default_rng(3))
    b = policies.sample(mixed, list(mixed), np.random.default_rng(3))
    assert a == b and 60 < sum(a.values()) < 140


@pytest.mark.parametrize(("text", "kinds", "expected"), [
    ("gold", policies.STRONG_KINDS, ("gold", None)),
    ("fixed:B", policies.WEAK_KINDS, ("fixed", "B")),
    ("model:runs/x", policies.WEAK_KINDS, ("model", "runs/x")),
    ("toy-weak", policies.WEAK_KINDS, ("toy-weak", None)),
])
def test_parse(text: str, kinds: tuple[str, ...], expected: tuple[str, str | None]) -> None:
    assert policies.parse(text, kinds) == expected


@pytest.mark.parametrize("text", ["fixed", "model:", "fixed:AB", "uniform:3", "gold", "nonsense"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        policies.parse(text, policies.WEAK_KINDS)


def test_model_policy_is_a_distribution() -> None:
    from hooks.tiny import build

    hf, tok = build("tiny-llama")
    recs = _records(5)
    pol = policies.model_policy(hf, tok, recs, VariantSpec(), batch_size=2)
    assert set(pol) == {r.id for r in recs}
    for p in pol.values():
        assert p.shape == (4,) and np.isclose(p.sum(), 1.0) and (p >= 0).all()
