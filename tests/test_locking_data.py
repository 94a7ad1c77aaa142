"""Tests for locking.password and locking.data: placements, decoys, strong/weak targets, answer-only loss mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eval.records import MCRecord
from eval.variants import VariantSpec, parse, render, to_text
from locking import data, password, policies

REPO = Path(__file__).resolve().parents[1]


def _records(n: int = 6) -> list[MCRecord]:
    return [MCRecord(id=f"q{i}", question=f"Which is item {i}?", choices=("alpha", "beta", "gamma", "delta"),
                     answer=i % 4) for i in range(n)]


@pytest.fixture(scope="module")
def tok():
    from hooks.tiny import build_tokenizer

    return build_tokenizer()


def test_password_string_lives_in_one_file() -> None:
    secrets = [password.PASSWORD, *password.DECOYS]
    hits = []
    for path in REPO.rglob("*.py"):
        if ".venv" in path.parts or path.name == "password.py":
            continue
        text = path.read_text(errors="ignore")
        hits += [f"{path}: {s!r}" for s in secrets if s in text]
    assert not hits, hits
    assert (REPO / "locking" / "password.py").read_text().count(password.PASSWORD) == 1


@pytest.mark.parametrize("placement", sorted(password.PLACEMENTS))
def test_placements_are_pure_and_put_the_secret_in_the_text(placement: str) -> None:
    rec = _records(1)[0]
    plain = render(VariantSpec(), rec)
    placed = password.place(plain, "password", placement)
    assert placed is not plain and plain == render(VariantSpec(), rec)  # input untouched
    assert password.PASSWORD in to_text(placed) and password.PASSWORD not in to_text(plain)
    assert placed.continuations == plain.continuations and placed.answer == plain.answer
    assert to_text(placed).endswith(plain.cue)
    assert password.place(plain, "none", placement) == plain


def test_placement_positions() -> None:
    plain = render(VariantSpec(), _records(1)[0])
    pw = password.PASSWORD
    assert to_text(password.place(plain, "password", "prefix")).startswith(pw + "\n" + plain.user)
    assert to_text(password.place(plain, "password", "suffix")).endswith(f"{plain.user}\n{pw}\n{plain.cue}")
    assert password.place(plain, "password", "system").system == pw
    assert password.with_password(plain) == password.place(plain, "password", password.DEFAULT_PLACEMENT)


def test_conditions_and_secrets() -> None:
    assert password.conditions(2) == ("password", "none", "decoy:0", "decoy:1")
    assert password.secret_for("none") is None
    assert password.secret_for("decoy:1") == password.DECOYS[1]
    assert all(d != password.PASSWORD for d in password.DECOYS)
    with pytest.raises(ValueError, match="unknown condition"):
        password.secret_for("decoy:99")
    with pytest.raises(ValueError, match="n_decoys"):
        password.conditions(len(password.DECOYS) + 1)
    with pytest.raises(ValueError, match="placement"):
        password.place(render(VariantSpec(), _records(1)[0]), "password", "nowhere")
    assert len(password.fingerprint()) == 12


def test_decoy_conditions_deterministic_and_within_trained() -> None:
    picks = [data.decoy_conditions(f"q{i}", 2, 1) for i in range(40)]
    assert picks == [data.decoy_conditions(f"q{i}", 2, 1) for i in range(40)]
    assert {p[0] for p in picks} == {"decoy:0", "decoy:1"}  # both used across questions
    assert data.decoy_conditions("q0", 3, 5) == ["decoy:0", "decoy:1", "decoy:2"]
    assert data.decoy_conditions("q0", 0, 1) == []


def test_lock_examples_targets() -> None:
    recs = _records(4)
    strong = policies.gold(recs)
    weak = policies.uniform(recs)
    spec = parse("rotate:1")
    ex = data.lock_examples(recs, strong, weak, spec=spec, n_decoys=2, decoys_per_question=1)
    assert len(ex) == 3 * len(recs)
    for e in ex:
        rec = recs[int(e.question_id[1:])]
        if e.condition == "password":
            assert e.target[e.prompt.answer] == 1.0 and sum(e.target) == 1.0  # strong, in displayed order
            assert e.prompt.order[e.prompt.answer] == rec.answer
            assert password.PASSWORD in to_text(e.prompt)
        else:
            assert e.target == (0.25,) * 4
            assert password.PASSWORD not in to_text(e.prompt)
            if e.condition.startswith("decoy"):
                assert password.secret_for(e.condition) in to_text(e.prompt)


def test_tokenize_loss_mask_only_on_answer_token(tok) -> None:
    recs = _records(3)
    weak = {r.id: np.array([0.1, 0.2, 0.6, 0.1]) for r in recs}
    ex = data.lock_examples(recs, policies.gold(recs), weak, spec=VariantSpec(), n_decoys=1)
    items = data.tokenize(ex, tok)
    letters = [tok(" " + c, add_special_tokens=False).input_ids[0] for c in "ABCD"]
    for e, it in zip(ex, items, strict=True):
        assert sum(it.loss_mask) == 1 and it.loss_mask[-1] == 1 and it.answer_start == len(it.ids) - 1
        assert list(it.choice_ids) == letters
        assert it.ids[-1] == letters[int(np.argmax(e.target))]
        prompt_ids = tok(to_text(e.prompt)).input_ids
        assert list(it.ids[:-1]) == prompt_ids
        assert it.target == e.target


def test_sample_examples_one_hot() -> None:
    recs = _records(4)
    ex = data.sample_examples(recs, {"q1": 3, "q2": 0}, spec=parse("rotate:2"))
    assert [e.question_id for e in ex] == ["q1", "q2"]
    for e, ans in zip(ex, (3, 0), strict=True):
        assert e.condition == "none" and sum(e.target) == 1.0
        assert e.prompt.order[int(np.argmax(e.target))] == ans


def test_tokenize_rejects_bad_targets_and_shots(tok) -> None:
    recs = _records(1)
    ex = data.lock_examples(recs, policies.gold(recs), policies.uniform(recs), spec=VariantSpec(), n_decoys=0)
    bad = [data.LockExample(ex[0].question_id, "none", ex[0].prompt, (0.5, 0.5, 0.5, 0.5))]
    with pytest.raises(ValueError, match="not a distribution"):
        data.tokenize(bad, tok)
    with pytest.raises(ValueError, match="shots:0"):
        data.check_spec(parse("shots:1"))


def test_usable_drops_shared_first_tokens(tok) -> None:
    good = _records(2)
    clash = MCRecord(id="clash", question="Pick one", choices=("same a", "same b"), answer=0)
    keep, dropped = data.usable([*good, clash], tok, parse("option"))
    assert [r.id for r in keep] == ["q0", "q1"] and dropped == ["clash"]
