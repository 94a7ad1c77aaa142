"""Reading run directories for the report: find results.json files, tell their kind, turn them into tidy rows.

The report reads files only. Each run kind (eval, probe, lock, unlock, diff) has one small extractor that maps its
results.json onto tidy rows (one per model, task, method, variant, layer, metric, step). Extractors tolerate missing
sections and a few spellings of each key, because the runners' schemas may still move; a file of no known kind is
skipped with a logged note.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESULTS = "results.json"
LOCKED_SUFFIX = " [locked]"
KINDS = ("eval", "probe", "lock", "unlock", "diff")
TIDY_COLUMNS = ("model", "task", "method", "variant", "layer", "metric", "value", "lo", "hi", "n", "run_dir", "step")

# Parameter counts of named models whose runs do not record `n_params` in their provenance.
KNOWN_SIZES: dict[str, float] = {
    "smollm2-135m-instruct": 135e6,
    "huggingfacetb/smollm2-135m-instruct": 135e6,
    "gemma-3-270m": 270e6,
    "google/gemma-3-270m": 270e6,
}


@dataclass(frozen=True)
class Row:
    """One tidy measurement; `lo`/`hi` are nan without an interval, `layer`/`step`/`n` None when not applicable."""

    model: str
    task: str
    method: str
    variant: str
    layer: int | None
    metric: str
    value: float
    lo: float = math.nan
    hi: float = math.nan
    n: int | None = None
    run_dir: str = ""
    step: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The row as a dict in `TIDY_COLUMNS` order."""
        return {c: getattr(self, c) for c in TIDY_COLUMNS}


@dataclass
class Run:
    """One results.json: its kind, identity, provenance, tidy rows and any extra tables to show as they are."""

    path: Path
    kind: str
    model: str
    task: str
    provenance: dict[str, Any]
    config: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    locked: bool = False


# ---------------------------------------------------------------- discovery


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """Every results.json at or below each path (a run dir, a sweep dir, or a results.json), sorted, unique."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_file() and p.name == RESULTS:
            found.add(p.resolve())
        elif p.is_dir():
            found.update(q.resolve() for q in p.rglob(RESULTS) if q.is_file())
        else:
            raise FileNotFoundError(f"run path {p} does not exist (give run directories or a sweep directory)")
    return sorted(found)


def detect_kind(data: Mapping[str, Any]) -> str | None:
    """The run kind from an explicit `kind` field, else from the keys present; None when unknown."""
    kind = data.get("kind") or data.get("command")
    if isinstance(kind, str) and kind.lower() in KINDS:
        return kind.lower()
    keys = set(data)
    if keys & {"probe_accuracy_by_layer", "lens_accuracy_by_layer", "control_accuracy_by_layer"}:
        return "probe"
    if keys & {"pgr", "curves", "unlock_curves", "unlocking"}:
        return "unlock"
    if keys & {"with_password", "no_password", "decoy", "locked_accuracy"} or _lock_block(data):
        return "lock"
    if keys & {"cka", "cka_by_layer", "cosine_by_layer", "weight_change", "weight_changes", "activations"}:
        return "diff"
    if keys & {"variants", "per_variant", "accuracy_by_variant", "best_variant", "honest_best", "majority_vote"}:
        return "eval"
    return None


def _lock_block(data: Mapping[str, Any]) -> bool:
    acc = data.get("accuracy")
    return isinstance(acc, Mapping) and bool(set(acc) & {"with_password", "no_password"})


# ---------------------------------------------------------------- value helpers


def estimate(x: Any) -> tuple[float, float, float, int | None] | None:
    """(value, lo, hi, n) from an Estimate dict, a bare number, or a dict holding one under a usual key."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x), math.nan, math.nan, None
    if isinstance(x, Mapping):
        if "value" in x and isinstance(x["value"], (int, float)) and not isinstance(x["value"], bool):
            n = x.get("n")
            return (float(x["value"]), _num(x.get("lo")), _num(x.get("hi")),
                    int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None)
        for key in ("test_accuracy", "accuracy", "test", "estimate", "test_value"):
            if key in x:
                return estimate(x[key])
    return None


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def by_layer(x: Any) -> dict[int, Any]:
    """{layer: value} from a dict keyed by layer (ints or digit strings) or a list indexed by layer."""
    if isinstance(x, Mapping):
        out = {}
        for k, v in x.items():
            try:
                out[int(k)] = v
            except (TypeError, ValueError):
                return {}
        return out
    if isinstance(x, list):
        if all(isinstance(v, Mapping) and "layer" in v for v in x):
            return {int(v["layer"]): v for v in x}
        return dict(enumerate(x))
    return {}


def first(data: Mapping[str, Any], *keys: str) -> Any:
    """The value of the first key present (and not None) in `data`."""
    for k in keys:
        if k in data and data[k] is not None:
            return data[k]
    return None


def model_label(model: Any) -> str:
    """A short display name: embedded/HF names as they are, local paths by their last two parts."""
    s = str(model or "unknown")
    if s.startswith(("/", ".")) or s.count("/") > 1:
        parts = Path(s).parts
        return "/".join(parts[-2:]) if len(parts) >= 2 else s
    return s


def model_size(provenance: Mapping[str, Any], model: str) -> float | None:
    """Parameter count from provenance (`n_params`), else the table of known names, else None."""
    for key in ("n_params", "num_params", "n_parameters"):
        v = provenance.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return float(v)
    for name in (model, str(provenance.get("base_model", "")), str(provenance.get("hf_id", ""))):
        if name.lower() in KNOWN_SIZES:
            return KNOWN_SIZES[name.lower()]
    return None


class _Emitter:
    """Collects rows for one run with the run's identity filled in."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def add(self, method: str, metric: str, value: Any, *, variant: str = "", layer: int | None = None,
            step: float | None = None) -> bool:
        est = estimate(value)
        if est is None or not math.isfinite(est[0]):
            return False
        v, lo, hi, n = est
        self.run.rows.append(Row(self.run.model, self.run.task, method, variant, layer, metric, v, lo, hi, n,
                                 str(self.run.path), step))
        return True


# ---------------------------------------------------------------- per-kind extractors


def _extract_probe(run: Run, d: Mapping[str, Any]) -> None:
    e = _Emitter(run)
    variant = _probe_variant(run.config, d)
    e.add("prompted", "accuracy", first(d, "prompted_accuracy", "prompted"), variant=variant)
    for method, key in (("probe", "probe_accuracy_by_layer"), ("lens", "lens_accuracy_by_layer"),
                        ("control", "control_accuracy_by_layer")):
        for layer, val in sorted(by_layer(d.get(key)).items()):
            e.add(method, "accuracy", val, variant=variant, layer=layer)
    ceiling = d.get("ceiling")
    if isinstance(ceiling, Mapping):
        layer = _int_or_none(first(ceiling, "layer", "chosen_layer", "chosen", "best_layer"))
        e.add("probe_ceiling", "accuracy", first(ceiling, "test_accuracy", "accuracy", "value", "probe", "test_value"),
              variant=variant, layer=layer)
        control = first(ceiling, "control_accuracy", "control")
        if control is None and layer is not None:
            control = by_layer(d.get("control_accuracy_by_layer")).get(layer)
        e.add("probe_control", "accuracy", control, variant=variant, layer=layer)
        if "selection" in ceiling or "selected_on" in ceiling:
            run.notes.append(f"probe ceiling layer selected on {first(ceiling, 'selection', 'selected_on')}")
    elif ceiling is not None:
        e.add("probe_ceiling", "accuracy", ceiling, variant=variant)
    lens_sel = first(d, "lens_best", "best_lens", "lens_selection", "lens_ceiling")
    if isinstance(lens_sel, Mapping):
        layer = _int_or_none(first(lens_sel, "layer", "chosen_layer", "chosen"))
        e.add("lens_best", "accuracy", first(lens_sel, "test_accuracy", "test_value", "accuracy", "value"),
              variant=variant, layer=layer)
    else:
        raw = by_layer(d.get("lens_accuracy_by_layer"))
        lens = {k: est for k, v in raw.items() if (est := estimate(v)) is not None and math.isfinite(est[0])}
        if lens:
            best = max(lens, key=lambda k: (lens[k][0], -k))
            e.add("lens_best_naive", "accuracy", raw[best], variant=variant, layer=best)
            run.notes.append("best logit-lens layer is a naive max over layers on the same data (optimistic)")


def _probe_variant(config: Mapping[str, Any], d: Mapping[str, Any]) -> str:
    v = first(d, "variant") or first(config, "variant")
    if v is None:
        vs = first(config, "variants")
        v = vs[0] if isinstance(vs, list) and len(vs) == 1 else (vs if isinstance(vs, str) else "")
    return str(v or "")


def _int_or_none(x: Any) -> int | None:
    try:
        return int(x) if x is not None and not isinstance(x, bool) else None
    except (TypeError, ValueError):
        return None


def _extract_eval(run: Run, d: Mapping[str, Any]) -> None:
    e = _Emitter(run)
    per = first(d, "per_variant", "accuracy_by_variant", "variants")
    if isinstance(per, Mapping):
        for name, val in per.items():
            e.add("prompted", "accuracy", val, variant=str(name))
    elif isinstance(per, list):
        for item in per:
            if isinstance(item, Mapping) and ("variant" in item or "name" in item):
                e.add("prompted", "accuracy", first(item, "accuracy", "estimate", "value"),
                      variant=str(first(item, "variant", "name")))
    straight = first(d, "straight_up", "default_accuracy", "baseline")
    default_name = str(first(d, "straight_up_variant", "default_variant") or "default")
    if straight is None and isinstance(per, Mapping):
        straight = per.get(default_name)
    e.add("straight_up", "accuracy", straight, variant=default_name)
    best = first(d, "honest_best", "best_variant", "best")
    if isinstance(best, Mapping):
        chosen = str(first(best, "chosen", "variant") or "")
        e.add("best_variant", "accuracy", first(best, "test_accuracy", "accuracy", "value"), variant=chosen)
        naive = first(best, "naive_max_test")
        if naive is not None:
            e.add("naive_max_variant", "accuracy", naive, variant=str(best.get("naive_max_variant", "")))
        for k in ("inflation", "expected_max_by_chance", "dev_accuracy"):
            e.add("best_variant", k, best.get(k), variant=chosen)
    naive_top = d.get("naive_max")
    if naive_top is not None:
        e.add("naive_max_variant", "accuracy", naive_top,
              variant=str(naive_top.get("variant", "")) if isinstance(naive_top, Mapping) else "")
    e.add("majority_vote", "accuracy", first(d, "majority_vote", "majority"), variant="all")
    sp = d.get("spread")
    if isinstance(sp, Mapping):
        for k, v in sp.items():
            if k != "n_variants":
                e.add("spread", k, v, variant="all")
    bias = first(d, "symbol_bias", "bias")
    if isinstance(bias, Mapping):
        if "tv_distance" in bias or "chi2_p" in bias:
            bias = {"": bias}
        for name, b in bias.items():
            if isinstance(b, Mapping):
                for k in ("tv_distance", "chi2_p"):
                    e.add("symbol_bias", k, b.get(k), variant=str(name))


def _extract_lock(run: Run, d: Mapping[str, Any]) -> None:
    e = _Emitter(run)
    acc = d.get("accuracy") if isinstance(d.get("accuracy"), Mapping) else d
    for name in ("with_password", "no_password", "decoy"):
        val = first(acc, name, f"{name}_accuracy")
        if isinstance(val, Mapping) and estimate(val) is None:  # several decoys
            for sub, v in val.items():
                e.add("lock", "accuracy", v, variant=f"{name}:{sub}")
        else:
            e.add("lock", "accuracy", val, variant=name)
    e.add("weak_policy", "accuracy", first(d, "weak_policy_accuracy", "weak_accuracy", "weak_policy"), variant="weak")
    e.add("strong", "accuracy", first(d, "strong_accuracy", "base_accuracy", "strong_policy_accuracy"), variant="strong")
    for k in ("weak_agreement", "no_password_weak_agreement", "final_loss"):
        e.add("lock", k, d.get(k), variant="no_password" if "agreement" in k else "")


def _extract_unlock(run: Run, d: Mapping[str, Any]) -> None:
    e = _Emitter(run)
    curves = first(d, "curves", "unlock_curves", "unlocking")
    for method, seeds in _curve_items(curves):
        for seed, points in seeds:
            for x, y in points:
                e.add("unlock_curve", "accuracy", y, variant=f"{method}/seed={seed}", step=x)
    final = first(d, "unlocked", "unlocked_accuracy", "final_accuracy")
    if isinstance(final, Mapping) and estimate(final) is None:
        for method, v in final.items():
            e.add("unlocked", "accuracy", v, variant=str(method))
    else:
        e.add("unlocked", "accuracy", final, variant=str(first(run.config, "method") or ""))
    pgr = d.get("pgr")
    if isinstance(pgr, Mapping) and estimate(pgr) is None:
        for method, v in pgr.items():
            e.add("pgr", "pgr", v, variant=str(method))
    else:
        e.add("pgr", "pgr", pgr, variant=str(first(run.config, "method") or ""))
    acc = d.get("accuracy") if isinstance(d.get("accuracy"), Mapping) else d
    for name in ("with_password", "no_password"):
        e.add("lock", "accuracy", first(acc, name, f"{name}_accuracy", f"locked_{name}"), variant=name)
    e.add("weak_policy", "accuracy", first(d, "weak_policy_accuracy", "weak_accuracy"), variant="weak")


def _curve_items(curves: Any) -> list[tuple[str, list[tuple[str, list[tuple[float, Any]]]]]]:
    """[(method, [(seed, [(x, y), ...])])] from {method: {seed: points}} or a list of {method, seed, points}."""
    out: dict[str, list[tuple[str, list[tuple[float, Any]]]]] = {}
    if isinstance(curves, Mapping):
        for method, seeds in curves.items():
            if isinstance(seeds, Mapping):
                for seed, pts in seeds.items():
                    out.setdefault(str(method), []).append((str(seed), _points(pts)))
            elif isinstance(seeds, list):
                out.setdefault(str(method), []).append(("0", _points(seeds)))
    elif isinstance(curves, list):
        for c in curves:
            if isinstance(c, Mapping):
                pts = first(c, "points", "curve", "accuracy")
                out.setdefault(str(c.get("method", "")), []).append((str(c.get("seed", 0)), _points(pts, c)))
    return list(out.items())


def _points(pts: Any, parent: Mapping[str, Any] | None = None) -> list[tuple[float, Any]]:
    """[(x, y)] from a list of {step|n_samples|x, accuracy|value} dicts, {x: y}, or parallel lists in `parent`."""
    if isinstance(pts, Mapping):
        if "steps" in pts or "x" in pts:
            xs, ys = first(pts, "steps", "x"), first(pts, "accuracy", "y", "values")
            return list(zip(map(float, xs), ys, strict=False)) if isinstance(xs, list) and isinstance(ys, list) else []
        try:
            return [(float(k), v) for k, v in pts.items()]
        except ValueError:
            return []
    if isinstance(pts, list):
        if parent is not None and isinstance(first(parent, "steps", "x"), list):
            return list(zip(map(float, first(parent, "steps", "x")), pts, strict=False))
        out = []
        for i, p in enumerate(pts):
            if isinstance(p, Mapping) and estimate(p) is not None and not ({"step", "n_samples", "x"} & set(p)):
                out.append((float(i), p))
            elif isinstance(p, Mapping):
                x = first(p, "step", "n_samples", "x", "epoch")
                out.append((float(x) if x is not None else float(i), first(p, "accuracy", "value", "y")))
            else:
                out.append((float(i), p))
        return out
    return []


def _extract_diff(run: Run, d: Mapping[str, Any]) -> None:
    e = _Emitter(run)
    acts = d.get("activations") if isinstance(d.get("activations"), Mapping) else d
    for metric, keys in (("cka", ("cka_by_layer", "cka")), ("cosine", ("cosine_by_layer", "cosine"))):
        val = first(acts, *keys)
        if isinstance(val, Mapping) and not by_layer(val):  # {comparison: {layer: v}}
            for comp, layers in val.items():
                for layer, v in sorted(by_layer(layers).items()):
                    e.add("diff", metric, v, variant=str(comp), layer=layer)
        else:
            for layer, v in sorted(by_layer(val).items()):
                e.add("diff", metric, v, variant=str(first(d, "comparison") or ""), layer=layer)
    weights = first(d, "weight_change", "weight_changes", "weights")
    if isinstance(weights, list):
        run.tables["weight change"] = [dict(r) for r in weights if isinstance(r, Mapping)]
    elif isinstance(weights, Mapping):
        rows = []
        for name, v in weights.items():
            rows.append({"parameter": name, **(dict(v) if isinstance(v, Mapping) else {"value": v})})
        run.tables["weight change"] = rows


EXTRACTORS: dict[str, Callable[[Run, Mapping[str, Any]], None]] = {
    "probe": _extract_probe, "eval": _extract_eval, "lock": _extract_lock, "unlock": _extract_unlock,
    "diff": _extract_diff,
}


# ---------------------------------------------------------------- loading


def load_run(path: Path) -> Run | None:
    """A `Run` from one results.json, or None (logged) when it cannot be read or its kind is unknown."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("skipping %s: not readable as JSON (%s)", path, exc)
        return None
    if not isinstance(data, Mapping):
        log.warning("skipping %s: top level is not a JSON object", path)
        return None
    kind = detect_kind(data)
    if kind is None:
        log.warning("skipping %s: unknown kind of results (keys: %s)", path, ", ".join(sorted(data)[:12]))
        return None
    prov = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
    cfg = data.get("config") if isinstance(data.get("config"), Mapping) else {}
    model = first(prov, "model_label", "model") or first(cfg, "model") or "unknown"
    task = first(prov, "task") or first(cfg, "task") or "unknown"
    run = Run(Path(path).parent, kind, model_label(model), str(task), dict(prov), dict(cfg))
    run.locked = bool(prov.get("locked") or cfg.get("locked")) or kind in ("lock", "unlock")
    if run.locked and not run.model.endswith(LOCKED_SUFFIX):
        run.model += LOCKED_SUFFIX
    try:
        EXTRACTORS[kind](run, data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a schema we did not foresee: keep the rest
        log.warning("%s: part of the %s results could not be read (%s: %s)", path, kind, type(exc).__name__, exc)
        run.notes.append(f"partly unreadable: {type(exc).__name__}: {exc}")
    if not run.rows and not run.tables:
        run.notes.append("no measurements recognised in this file")
    return run


def load_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[str]]:
    """Every readable run under `paths` and the notes on files that were skipped."""
    runs, skipped = [], []
    for p in find_results(paths):
        r = load_run(p)
        if r is None:
            skipped.append(str(p))
        else:
            runs.append(r)
    return runs, skipped
