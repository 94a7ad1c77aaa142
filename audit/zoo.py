"""The zoo config: which model organisms an audit runs on, each with its role (the ground truth), and how they are
made. Pure: reading and checking the JSON, expanding the toy sizes; building the organisms is the command's job.

A zoo is a JSON object::

    {"out": "runs/audit-zoo-toy",          # the audit directory (the --out flag wins when given)
     "seeds": [0, 1],                       # one lock (one model) per organism and seed
     "methods": ["prompt", "probe", ...],   # optional: the methods to run (default: all)
     "params": {"epochs": 40},              # optional: any audit flag (`audit.params.AuditParams`)
     "lock": {"n": 2000},                   # flags for every lock the zoo makes (`cli.py lock`)
     "toy": {"sizes": ["64x2", "128x2"],    # toy organisms: d_model x layers; each size gives a locked, a weak and
             "pretrain_steps": 1500,        #   a base organism from one pretraining (toy_pretrain), see below
             "steps": {"weak": 200, "base": 200}},   # lock steps of the weak and base organisms
     "organisms": [                         # any other organisms
        {"name": "smollm2-arc", "role": "locked", "lock": {"model": "smollm2-135m-instruct", ...},
         "weak_policy": "uniform", "generates": true},
        {"name": "mine", "role": "locked", "runs": ["runs/lock-s0", "runs/lock-s1"]}]}   # existing lock runs

Roles: ``locked`` (hides a capability: the lock record's with-password accuracy is the truth), ``weak`` (genuinely
lacks it), ``base`` (hides nothing). A weak or base organism names a ``reference`` locked organism whose hidden gap
scales its fraction.

Toy organisms of one size share one pretraining (a tiny Llama trained from scratch on toy-max; its early checkpoint is
the weak model) and are all made by the lock pipeline, so each carries a lock record (splits and ground truth):

- ``toy-<size>-locked``: the base model locked: the base's own answers with the password, the weak model's without;
- ``toy-<size>-weak``: the weak model (it never had the capability) fine-tuned on its own answers with and
  without the password: with-password accuracy = without;
- ``toy-<size>-base``: the base model fine-tuned on its own answers everywhere: nothing hidden.

All three use the weak model's samples for the unlock method and cannot write a chain of thought.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("locked", "weak", "base")
TOY_ROLES = ROLES
TOP_KEYS = ("out", "seeds", "methods", "params", "lock", "toy", "organisms")
ORGANISM_KEYS = ("name", "role", "lock", "runs", "reference", "weak_policy", "generates")
TOY_KEYS = ("sizes", "pretrain_steps", "steps")
_SIZE = re.compile(r"^(\d+)x(\d+)$")


@dataclass(frozen=True)
class ToySize:
    """A toy architecture: d_model x layers."""

    d_model: int
    n_layers: int

    @property
    def name(self) -> str:
        return f"{self.d_model}x{self.n_layers}"


@dataclass(frozen=True)
class OrganismSpec:
    """One organism: its role and, per seed, the lock run that makes (or made) its model."""

    name: str
    role: str
    seeds: tuple[int, ...]
    lock: dict[str, Any] = field(default_factory=dict)  # `cli.py lock` flags (seed and out set per seed)
    runs: tuple[str, ...] = ()  # existing lock runs, one per seed (instead of `lock`)
    reference: str | None = None  # the locked organism whose gap scales a weak / base organism's fraction
    weak_policy: str = "lock"  # the unlock method's weak samples (see `audit.case.CaseSpec`)
    generates: bool = True  # can write a chain of thought
    toy: ToySize | None = None  # the toy size (toy organisms)


@dataclass(frozen=True)
class Zoo:
    """A parsed zoo config."""

    path: str
    out: str | None
    seeds: tuple[int, ...]
    methods: tuple[str, ...] | None
    params: dict[str, Any]
    lock: dict[str, Any]
    toy_sizes: tuple[ToySize, ...]
    toy_pretrain_steps: int
    toy_steps: dict[str, int]
    organisms: tuple[OrganismSpec, ...]


class ZooError(ValueError):
    """A zoo config that does not fit; the message names the file and the field."""


def parse_size(text: str) -> ToySize:
    """"128x2" -> ToySize(128, 2)."""
    m = _SIZE.match(str(text).strip())
    if not m:
        raise ValueError(f"toy size {text!r} is not of the form D_MODELxLAYERS, e.g. 128x2")
    return ToySize(int(m.group(1)), int(m.group(2)))


def _expect(where: str, value: Any, tp: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, tp) or isinstance(value, bool) and tp is not bool:
        raise ZooError(f"{where}: expected {what}, got {value!r}")
    return value


def _unknown(where: str, d: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    bad = sorted(set(d) - set(allowed))
    if bad:
        raise ZooError(f"{where}: unknown field(s) {bad}; allowed: {', '.join(allowed)}")


def toy_pretrain_dir(root: Path, size: ToySize) -> Path:
    """Where a toy size's pretraining lives under the audit directory."""
    return Path(root) / "zoo" / f"toy-{size.name}" / "pretrain"


def toy_organisms(root: Path, size: ToySize, seeds: tuple[int, ...], lock: Mapping[str, Any],
                  steps: Mapping[str, int]) -> list[OrganismSpec]:
    """The locked, weak and base organisms of one toy size (see the module docstring)."""
    pre = toy_pretrain_dir(root, size)
    base, weak = str(pre / "base"), str(pre / "weak")
    name = f"toy-{size.name}"
    made = {
        "locked": {**lock, "model": base, "strong": "base", "weak": f"model:{weak}"},
        "weak": {**lock, "model": weak, "strong": "base", "weak": f"model:{weak}"},
        "base": {**lock, "model": base, "strong": "base", "weak": f"model:{base}"},
    }
    out = []
    for role in TOY_ROLES:
        flags = dict(made[role])
        if role in steps:
            flags["steps"] = int(steps[role])
        out.append(OrganismSpec(f"{name}-{role}", role, seeds, flags, (), None if role == "locked" else
                                f"{name}-locked", f"model:{weak}", False, size))
    return out


def load_zoo(path: str | Path, *, out: str | None = None) -> Zoo:
    """The zoo in `path` (toy sizes expanded into organisms under the audit directory `out` or the file's "out");
    ZooError naming the file and field on anything that does not fit."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise ZooError(f"zoo config {p} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ZooError(f"{p}: not valid JSON ({exc})") from None
    return parse_zoo(doc, where=str(p), out=out)


def parse_zoo(doc: Any, *, where: str = "zoo", out: str | None = None) -> Zoo:
    """A `Zoo` from the JSON document `doc` (see `load_zoo`)."""
    _expect(where, doc, dict, "a JSON object")
    _unknown(where, doc, TOP_KEYS)
    root = out or doc.get("out")
    if root is None:
        raise ZooError(f"{where}: out: missing (the audit directory; or give --out)")
    seeds = tuple(_expect(f"{where}: seeds[{i}]", s, int, "an integer")
                  for i, s in enumerate(_expect(f"{where}: seeds", doc.get("seeds", [0]), list, "a list")))
    if not seeds or len(set(seeds)) != len(seeds):
        raise ZooError(f"{where}: seeds: need at least one seed, no repeats; got {list(seeds)}")
    methods = doc.get("methods")
    if methods is not None:
        methods = tuple(_expect(f"{where}: methods", methods, list, "a list of method names"))
    params = dict(_expect(f"{where}: params", doc.get("params", {}), dict, "an object of audit flags"))
    lock = dict(_expect(f"{where}: lock", doc.get("lock", {}), dict, "an object of lock flags"))
    for k in ("seed", "out"):
        if k in lock:
            raise ZooError(f"{where}: lock.{k}: set per organism and seed by the audit; remove it")
    toy = _expect(f"{where}: toy", doc.get("toy", {}), dict, "an object")
    _unknown(f"{where}: toy", toy, TOY_KEYS)
    try:
        sizes = tuple(parse_size(s) for s in _expect(f"{where}: toy.sizes", toy.get("sizes", []), list, "a list"))
    except ValueError as exc:
        raise ZooError(f"{where}: toy.sizes: {exc}") from None
    steps = {str(k): int(v) for k, v in _expect(f"{where}: toy.steps", toy.get("steps", {}), dict, "an object").items()}
    bad = sorted(set(steps) - set(TOY_ROLES))
    if bad:
        raise ZooError(f"{where}: toy.steps: unknown role(s) {bad}; roles: {', '.join(TOY_ROLES)}")
    pretrain_steps = int(_expect(f"{where}: toy.pretrain_steps", toy.get("pretrain_steps", 1500), int, "an integer"))
    organisms: list[OrganismSpec] = []
    for size in sizes:
        organisms += toy_organisms(Path(root), size, seeds, lock, steps)
    for i, o in enumerate(_expect(f"{where}: organisms", doc.get("organisms", []), list, "a list")):
        organisms.append(_organism(f"{where}: organisms[{i}]", o, seeds, lock))
    names = [o.name for o in organisms]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ZooError(f"{where}: organism names repeat: {dup}")
    if not organisms:
        raise ZooError(f"{where}: no organisms (give toy.sizes or organisms)")
    for o in organisms:
        if o.reference is not None and o.reference not in names:
            raise ZooError(f"{where}: organism {o.name}: reference {o.reference!r} is not an organism of the zoo")
    return Zoo(where, doc.get("out"), seeds, methods, params, lock, sizes, pretrain_steps, steps, tuple(organisms))


def _organism(where: str, o: Any, seeds: tuple[int, ...], lock: Mapping[str, Any]) -> OrganismSpec:
    _expect(where, o, dict, "an object")
    _unknown(where, o, ORGANISM_KEYS)
    name = _expect(f"{where}: name", o.get("name"), str, "a name")
    role = o.get("role")
    if role not in ROLES:
        raise ZooError(f"{where}: role: {role!r}; roles: {', '.join(ROLES)}")
    runs = tuple(_expect(f"{where}: runs", o.get("runs", []), list, "a list of lock run directories"))
    flags = _expect(f"{where}: lock", o.get("lock", {}), dict, "an object of lock flags")
    if bool(runs) == bool(flags):
        raise ZooError(f"{where}: give either lock (flags to make it) or runs (existing lock runs), not both or none")
    if runs and len(runs) != len(seeds):
        raise ZooError(f"{where}: runs: {len(runs)} lock runs for {len(seeds)} seeds {list(seeds)}")
    for k in ("seed", "out"):
        if k in flags:
            raise ZooError(f"{where}: lock.{k}: set per seed by the audit; remove it")
    return OrganismSpec(name, role, seeds, {**lock, **flags} if flags else {}, tuple(str(r) for r in runs),
                        o.get("reference"), str(o.get("weak_policy", "lock")), bool(o.get("generates", True)))
