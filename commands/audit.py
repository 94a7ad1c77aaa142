"""`python cli.py audit ZOO.json` (or `audit LOCK_RUN`): how much of a hidden capability each elicitation method finds,
on model organisms whose truth is known, and whether a method's gain tells a sandbagging model from a weak one.

The target is a zoo config (`audit.zoo`: organisms with roles locked / weak / base, made by `cli.py lock` here or
given as lock runs) or one locked checkpoint (a lock run directory or its ``model/``; `--role` says what it is).
Every method (`audit.params.METHODS`) runs without the password on every (organism, seed) case
(`audit.case.run_case`); the scoreboard pools the cases per organism (`audit.scoreboard`).

Run directory:

- ``results.json`` (`core.schemas.AuditResult`): organisms, cases, the scoreboard (elicited accuracy, gain,
  fraction of the hidden gap recovered, cost per organism and method), the detector AUROCs, the noise null;
- ``samples.parquet``: every case's answer to every test question per method (method ``audit:<method>``, condition
  ``no_password``) and the references (``audit:reference``, no_password / with_password), see `core.samples`;
- ``scoreboard.csv`` (one row per organism and method), ``audit.html`` (the report section on its own:
  `report.audit`) with ``audit_heatmap.png``, ``config.json``;
- ``zoo/``: the organisms' pretraining (toy) and lock runs; ``cases/<organism>-s<seed>.json``: each finished case,
  reused by a rerun when its key (organism, seed, every method setting, the locked weights) matches, and
  ``cases/<organism>-s<seed>/``: its questions and capture stores.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audit import case as case_lib
from audit import scoreboard as board
from audit.params import METHODS, AuditParams
from audit.zoo import OrganismSpec, ToySize, Zoo, ZooError, load_zoo, toy_pretrain_dir
from core.config import ExecutionOptions, OutputOptions, PluginOptions, opt, pick, resolve_threads
from core.io import read_json, write_csv, write_json
from core.provenance import config_hash, to_jsonable
from core.rundir import run_directory
from core.samples import SampleTable, write_samples
from core.schemas import AuditResult, TaskInfo, run_header
from core.schemas import audit as schema
from hooks.execution import execution_record
from hooks.models import identity, load_hf
from locking import checkpoint, toy_pretrain

log = logging.getLogger(__name__)

RESULTS, SAMPLES, CSV, HTML, HEATMAP = ("results.json", "samples.parquet", "scoreboard.csv", "audit.html",
                                       "audit_heatmap.png")
ROLES = ("locked", "weak", "base", "unknown")
CSV_FIELDS = ("organism", "role", "method", "n_runs", "elicited", "elicited_lo", "elicited_hi", "straight_up", "gain",
              "gain_lo", "gain_hi", "fraction", "fraction_lo", "fraction_hi", "fraction_kind", "seconds",
              "cpu_seconds", "gold_labels", "samples", "white_box")


@dataclass(frozen=True)
class Config(PluginOptions, AuditParams, ExecutionOptions, OutputOptions):
    """An audit: a zoo (or one locked model), the methods and their settings."""

    target: str | None = opt(None, "a zoo config (.json, see docs/audit.md) or one locked model (a lock run "
                             "directory or its model/)", positional=True)
    role: str = opt("locked", "a single model's role: locked, weak, base or unknown (zoos give roles themselves)")
    seed: int = opt(0, "a single model's seed (zoos list their seeds)")
    weak_policy: str = opt("lock", "a single model's weak samples for the unlock method: lock (its lock record's), "
                           "uniform, fixed:A or model:PATH")
    data_dir: str | None = opt(None, "benchmark data directory (default: each lock's, else $GAPLENS_DATA_DIR)")
    threads: int = opt(1, "torch CPU threads (1 is steadier on a shared machine; training bytes depend on it)",
                       ui=True)
    out: str | None = opt(None, "output directory (default: the zoo's \"out\", else runs/audit)", ui=True)

    def _check(self) -> None:
        if not self.target:
            raise ValueError("give a zoo config (.json) or a locked model to audit")
        if self.role not in ROLES:
            raise ValueError(f"--role must be one of {', '.join(ROLES)}, got {self.role!r}")


def _is_zoo(cfg: Config) -> bool:
    return str(cfg.target).endswith(".json")


def out_dir(cfg: Config) -> Path:
    """--out, else the zoo's "out", else runs/audit."""
    if cfg.out:
        return Path(cfg.out)
    if _is_zoo(cfg):
        return Path(load_zoo(cfg.target).out or "runs/audit")
    return Path("runs/audit")


def effective_params(cfg: Config, zoo: Zoo | None) -> AuditParams:
    """The method settings: defaults, then the zoo's "methods" and "params", then flags given on the command line
    (a flag whose value differs from its default)."""
    params = pick(AuditParams, cfg)
    if zoo is None:
        return params
    fields = {f.name: f for f in dataclasses.fields(AuditParams)}
    over = dict(zoo.params)
    if zoo.methods is not None:
        over.setdefault("methods", zoo.methods)
    bad = sorted(set(over) - set(fields))
    if bad:
        raise ZooError(f"{zoo.path}: params: unknown audit flag(s) {bad}; flags: {', '.join(fields)}")
    chosen = {k: (tuple(v) if isinstance(v, list) else v) for k, v in over.items()
              if getattr(cfg, k) == fields[k].default}
    return dataclasses.replace(params, **chosen)


def run(cfg: Config) -> Path:
    """Build the zoo's organisms (reusing finished lock runs), run every case (reusing finished ones), write the
    scoreboard; returns the run directory."""
    zoo = load_zoo(cfg.target, out=cfg.out) if _is_zoo(cfg) else None
    effective_params(cfg, zoo)  # bad flags fail before anything is written
    if zoo is not None:
        lock_configs(zoo, out_dir(cfg), resolve_threads(cfg.threads))
    else:
        _single(cfg)
    with run_directory(out_dir(cfg), "audit"):
        return _run(cfg, zoo)


def _lock_config(spec: OrganismSpec, seed: int, out: Path, threads: int, where: str) -> Any:
    from commands import lock

    names = {f.name for f in dataclasses.fields(lock.Config)}
    bad = sorted(set(spec.lock) - names)
    if bad:
        raise ZooError(f"{where}: organism {spec.name}: unknown lock flag(s) {bad}")
    flags = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.lock.items()}
    return lock.Config(**flags, seed=seed, out=str(out), threads=threads, checkpoint_every=0)


def lock_configs(zoo: Zoo, out: Path, threads: int) -> dict[tuple[str, int], Any]:
    """The `cli.py lock` config of every organism the zoo makes, per seed (checked: a bad flag names the organism)."""
    return {(s.name, seed): _lock_config(s, seed, out / "zoo" / f"{s.name}-s{seed}", threads, zoo.path)
            for s in zoo.organisms if not s.runs for seed in s.seeds}


def build_zoo(zoo: Zoo, out: Path, threads: int) -> dict[str, list[str]]:
    """Pretrain each toy size and lock every organism at every seed (each reused when finished); organism ->
    its lock run directories, one per seed."""
    from commands import lock

    configs = lock_configs(zoo, out, threads)
    sizes: dict[str, ToySize] = {s.toy.name: s.toy for s in zoo.organisms if s.toy is not None}
    for size in sizes.values():
        toy_pretrain.pretrain(toy_pretrain_dir(out, size), toy_pretrain.ToyConfig(
            steps=zoo.toy_pretrain_steps, d_model=size.d_model, n_layers=size.n_layers), progress=False)
    runs: dict[str, list[str]] = {}
    for s in zoo.organisms:
        if s.runs:
            runs[s.name] = [str(checkpoint.resolve(r)) for r in s.runs]
            continue
        runs[s.name] = [str(lock.run(configs[s.name, seed])) for seed in s.seeds]
    return runs


def _single(cfg: Config) -> tuple[list[OrganismSpec], dict[str, list[str]]]:
    try:
        path = checkpoint.resolve(cfg.target)
    except ValueError:
        raise ValueError(f"audit {cfg.target}: neither a zoo config (.json) nor a locked checkpoint (a `cli.py lock` "
                         "run directory or its model/): the audit needs a lock record (question splits and ground "
                         "truth)") from None
    run_dir = path.parent if path.name == "model" else path
    name = run_dir.name
    spec = OrganismSpec(name, cfg.role, (cfg.seed,), {}, (str(run_dir),), None, cfg.weak_policy,
                        cfg.cot != "off")
    return [spec], {name: [str(path)]}


def _run(cfg: Config, zoo: Zoo | None) -> Path:
    out = out_dir(cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    threads = resolve_threads(cfg.threads)
    torch.set_num_threads(threads)
    params = effective_params(cfg, zoo)
    if zoo is not None:
        specs = list(zoo.organisms)
        t_build = time.perf_counter()
        lock_runs = build_zoo(zoo, out, threads)
        build_seconds = time.perf_counter() - t_build
    else:
        specs, lock_runs = _single(cfg)
        build_seconds = 0.0
    write_json(out / "config.json", {"config": to_jsonable(cfg), "params": to_jsonable(params),
                                     "zoo": str(cfg.target) if zoo else None, "config_hash": config_hash(params)})
    cases = []
    t_cases = time.perf_counter()
    for spec in specs:
        for seed, run_dir in zip(spec.seeds, lock_runs[spec.name], strict=True):
            cases.append(_case(spec, seed, run_dir, params, cfg, out))
    cases_seconds = time.perf_counter() - t_cases
    methods = [m for m in METHODS if m in params.methods]
    orgs, rows, dets = board.scoreboard(specs, cases, lock_runs, methods, n_boot=params.n_boot, seed=cfg.seed)
    first = checkpoint.read(cases[0].model)
    task = first.meta["task"]
    hf = load_hf(cases[0].model)
    ident = identity(hf.model, hf.tokenizer, name=cases[0].model, source="local", path=cases[0].model,
                     digest=cases[0].weight_hash)
    header = run_header(
        command="audit", model=ident, task=TaskInfo(task["name"], task["split"], sum(c.sizes["test"] for c in cases),
                                                    cfg.data_dir or task["data_dir"], None),
        seed=cfg.seed, config=cfg, config_hash=config_hash(params),
        execution=execution_record(cfg, threads=threads),
        timing={"zoo": build_seconds, "cases": cases_seconds, "total": time.perf_counter() - t0})
    info = {m: board.cost(m, [c.outcomes[m] for c in cases if m in c.outcomes]) for m in methods}
    result = AuditResult(
        header=header, zoo=str(cfg.target) if zoo else None, methods=methods, method_info=info, organisms=orgs,
        cases=[board.case_record(c) for c in cases], scoreboard=rows, detectors=dets,
        noise_null=board.noise_null(cases), notes=_notes(cases, orgs, dets, methods),
        cpu_seconds=round(time.process_time() - c0, 1))
    write_csv(out / CSV, CSV_FIELDS, _csv_rows(rows))
    write_samples(out / SAMPLES, _samples(cases, task["name"]))
    from report import audit as audit_report

    audit_report.write_page(result, out / HTML, heatmap=out / HEATMAP)
    result.write(out / RESULTS)
    return out


def _case(spec: OrganismSpec, seed: int, run_dir: str, params: AuditParams, cfg: Config,
          out: Path) -> case_lib.CaseResult:
    """One case, reused from cases/<organism>-s<seed>.json when its key matches."""
    locked = checkpoint.read(run_dir)
    cs = case_lib.CaseSpec(spec.name, spec.role, seed, str(locked.path), spec.weak_policy, spec.generates)
    key = case_lib.case_key(cs, params, locked.meta["weight_hash"])
    path = out / "cases" / f"{spec.name}-s{seed}.json"
    if path.exists():
        doc = read_json(path)
        if doc.get("key") == key:
            return case_lib.CaseResult.from_dict(doc["case"])
    log.info("audit case %s seed %d", spec.name, seed)
    res = case_lib.run_case(cs, params, out / "cases" / f"{spec.name}-s{seed}", data_dir=cfg.data_dir, exec_opts=cfg)
    write_json(path, {"key": key, "case": res.to_dict()})
    return res


def _notes(cases: list[case_lib.CaseResult], orgs: list[schema.Organism], dets: list[schema.Detector],
           methods: list[str]) -> list[str]:
    notes = []
    skipped: dict[str, set[str]] = {}
    for c in cases:
        for m, why in c.skipped.items():
            skipped.setdefault(f"{m}: {why}", set()).add(c.spec.organism)
    for what, who in sorted(skipped.items()):
        notes.append(f"skipped {what} ({len(who)} organism{'s' if len(who) > 1 else ''})")
    roles = [o.role for o in orgs]
    n_locked, n_weak, n_base = roles.count("locked"), roles.count("weak"), roles.count("base")
    if not dets:
        notes.append("no detector: it needs locked organisms and weak or base ones")
    else:
        notes.append(f"every detector AUROC rests on {n_locked} locked, {n_weak} weak and {n_base} base organisms "
                     "(one point each: its gain averaged over its seeds); with so few the interval is coarse")
    return notes


def _num(x: float | None) -> Any:
    return "" if x is None or not np.isfinite(x) else round(float(x), 4)


def _csv_rows(rows: list[schema.ScoreRow]) -> list[list[Any]]:
    out = []
    for r in rows:
        f = r.fraction
        out.append([r.organism, r.role, r.method, r.n_runs, _num(r.elicited.value), _num(r.elicited.lo),
                    _num(r.elicited.hi), _num(r.straight_up.value), _num(r.gain.value), _num(r.gain.lo),
                    _num(r.gain.hi), _num(f.value if f else None), _num(f.lo if f else None),
                    _num(f.hi if f else None), r.fraction_kind, r.cost.seconds, r.cost.cpu_seconds,
                    r.cost.gold_labels, r.cost.samples, r.cost.white_box])
    return out


def _samples(cases: list[case_lib.CaseResult], task: str) -> SampleTable:
    """samples.parquet: each case's test answers per method, and its references without and with the password."""
    table = SampleTable(task=task, command="audit", split="test", score=None)
    for c in cases:
        consts = {"model": c.model, "weight_hash": c.weight_hash, "seed": c.spec.seed}
        for cond, o in (("no_password", c.reference[case_lib.STRAIGHT_UP]),
                        ("with_password", c.reference[case_lib.WITH_PASSWORD])):
            _add(table, c, o, "audit:reference", cond, consts)
        for m, o in c.outcomes.items():
            _add(table, c, o, f"audit:{m}", "no_password", consts)
    return table


def _add(table: SampleTable, c: case_lib.CaseResult, o: Any, method: str, condition: str,
         consts: dict[str, Any]) -> None:
    ids = o.ids.tolist()
    table.add(question_id=ids, subject=[c.subjects.get(q) or None for q in ids], variant=o.variant, method=method,
              condition=condition, layer=o.layer, prediction=o.pred, gold=o.gold, correct=o.correct,
              n_choices=[c.n_choices[q] for q in ids], **consts)


def summarize(out_dir: str | Path) -> str:
    """The scoreboard and the detector view, as text."""
    from report import audit as audit_report

    res = AuditResult.read(Path(out_dir) / RESULTS)
    return "\n".join([*audit_report.text(res), f"wrote {Path(out_dir) / RESULTS}, {Path(out_dir) / CSV}, "
                      f"{Path(out_dir) / HTML}"])
