"""The zoo config: toy sizes expanded into locked / weak / base organisms, other organisms, and errors that name the
file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.zoo import ZooError, load_zoo, parse_size, parse_zoo
from commands import audit as audit_cmd

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_toy_zoo_parses() -> None:
    zoo = load_zoo(ROOT / "sweeps" / "zoo-toy.json")
    sizes = {o.toy.name for o in zoo.organisms}
    assert len(sizes) >= 3 and len(zoo.seeds) >= 2
    assert sorted(o.role for o in zoo.organisms) == sorted(["locked", "weak", "base"] * len(sizes))


def test_toy_sizes_expand_into_three_roles(tmp_path: Path) -> None:
    zoo = parse_zoo({"seeds": [0, 1], "lock": {"n": 400}, "toy": {"sizes": ["32x1"], "steps": {"weak": 7}}},
                    out=str(tmp_path))
    by = {o.role: o for o in zoo.organisms}
    pre = tmp_path / "zoo" / "toy-32x1" / "pretrain"
    assert by["locked"].lock == {"n": 400, "model": str(pre / "base"), "strong": "base", "weak": f"model:{pre / 'weak'}"}
    assert by["weak"].lock["model"] == str(pre / "weak") and by["weak"].lock["steps"] == 7
    assert by["base"].lock["weak"] == f"model:{pre / 'base'}" and "steps" not in by["base"].lock
    assert by["weak"].reference == by["base"].reference == "toy-32x1-locked" and by["locked"].reference is None
    assert all(o.weak_policy == f"model:{pre / 'weak'}" and not o.generates and o.seeds == (0, 1)
               for o in zoo.organisms)
    assert parse_size("256x4").d_model == 256


@pytest.mark.parametrize(("doc", "match"), [
    ({"out": "x", "toy": {"sizes": ["64x2"]}, "organsims": []}, r"unknown field\(s\) \['organsims'\]"),
    ({"out": "x", "toy": {"sizes": ["64-2"]}}, "toy.sizes: toy size '64-2'"),
    ({"out": "x", "toy": {"sizes": ["64x2"], "steps": {"strong": 3}}}, r"toy.steps: unknown role\(s\)"),
    ({"out": "x", "lock": {"seed": 3}, "toy": {"sizes": ["64x2"]}}, "lock.seed: set per organism"),
    ({"out": "x"}, "no organisms"),
    ({"toy": {"sizes": ["64x2"]}}, "out: missing"),
    ({"out": "x", "seeds": [0, 0], "toy": {"sizes": ["64x2"]}}, "no repeats"),
    ({"out": "x", "organisms": [{"name": "a", "role": "locked"}]}, "organisms\\[0\\]: give either lock"),
    ({"out": "x", "organisms": [{"name": "a", "role": "sandbag", "runs": ["r"]}]}, "role: 'sandbag'"),
    ({"out": "x", "seeds": [0, 1], "organisms": [{"name": "a", "role": "locked", "runs": ["r"]}]}, "1 lock runs for 2"),
    ({"out": "x", "organisms": [{"name": "a", "role": "weak", "runs": ["r"], "reference": "b"}]}, "reference 'b'"),
    ({"out": "x", "toy": {"sizes": ["64x2", "64x2"]}}, "names repeat"),
])
def test_bad_zoo_names_the_field(doc: dict, match: str) -> None:
    with pytest.raises(ZooError, match=match):
        parse_zoo(doc, where="zoo.json")


def test_a_bad_zoo_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "zoo.json"
    out = tmp_path / "out"
    path.write_text(json.dumps({"out": str(out), "toy": {"sizes": ["32x1"]}, "params": {"epocs": 3}}))
    with pytest.raises(ValueError, match=r"params: unknown audit flag\(s\) \['epocs'\]"):
        audit_cmd.run(audit_cmd.Config(target=str(path)))
    path.write_text(json.dumps({"out": str(out), "toy": {"sizes": ["32x1"]}, "lock": {"stpes": 3}}))
    with pytest.raises(ValueError, match=r"toy-32x1-locked: unknown lock flag\(s\) \['stpes'\]"):
        audit_cmd.run(audit_cmd.Config(target=str(path)))
    assert not out.exists()


def test_zoo_params_then_flags(tmp_path: Path) -> None:
    zoo = parse_zoo({"out": "x", "methods": ["probe", "lens"], "params": {"epochs": 3, "noise_scales": [0.1]},
                     "toy": {"sizes": ["32x1"]}})
    p = audit_cmd.effective_params(audit_cmd.Config(target="z.json"), zoo)
    assert p.methods == ("probe", "lens") and p.epochs == 3 and p.noise_scales == (0.1,)
    p = audit_cmd.effective_params(audit_cmd.Config(target="z.json", epochs=5), zoo)
    assert p.epochs == 5  # a flag given on the command line wins
