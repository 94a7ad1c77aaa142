"""Tables of the report, computed from tidy rows: the elicitation-gap items per model and task, and the
across-model summary (best elicited and probe ceiling over the straight-up score, against model size).

Pure functions over `report.rows.Row`s and `Run`s; no plotting and no file access except `write_csv`. Model size and
family come from the runs' model identity (`core.schemas.ModelIdentity`), never from a model's name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import io
from report.rows import TIDY_COLUMNS, Row, Run

NAIVE = "naive max, optimistic"


@dataclass(frozen=True)
class GapItem:
    """One bar of the elicitation-gap chart."""

    key: str  # straight_up, best_variant, majority_vote, lens_best, probe_ceiling, probe_control, ...
    label: str
    value: float
    lo: float
    hi: float
    n: int | None
    honest: bool = True  # False: a best-of-k picked and scored on the same data
    group: str = "prompting"  # prompting, internals, control, locking
    selected: bool = False  # a best-of-k (variant, layer): chosen on held-out data when `honest`

    @property
    def selection(self) -> str:
        """How a best-of-k was chosen: 'held-out', 'naive max, optimistic', or '' for a plain measurement."""
        return "" if not self.selected else ("held-out" if self.honest else NAIVE)


@dataclass(frozen=True)
class ModelSummary:
    """One row of the across-model table (one model and task)."""

    model: str
    task: str
    n_params: int | None
    family: str  # the model kind (base, instruct, fine-tuned), plus " locked"
    straight_up: float
    best_elicited: float
    best_elicited_by: str
    probe_ceiling: float
    locked: bool

    @property
    def elicited_ratio(self) -> float:
        """Best elicited over straight-up (nan when either is missing or straight-up is 0)."""
        return _ratio(self.best_elicited, self.straight_up)

    @property
    def probe_ratio(self) -> float:
        """Probe ceiling over straight-up."""
        return _ratio(self.probe_ceiling, self.straight_up)


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


def groups(rows: Iterable[Row]) -> dict[tuple[str, str], list[Row]]:
    """Rows grouped by (model, task), in sorted order."""
    out: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        out.setdefault((r.model, r.task), []).append(r)
    return dict(sorted(out.items()))


def _pick(rows: Sequence[Row], method: str, metric: str = "accuracy", variant: str | None = None) -> list[Row]:
    return [r for r in rows if r.method == method and r.metric == metric and (variant is None or r.variant == variant)]


def _item(key: str, label: str, r: Row, *, honest: bool = True, group: str = "prompting") -> GapItem:
    return GapItem(key, label, r.value, r.lo, r.hi, r.n, honest, group, key in SELECTED)


SELECTED = ("best_variant", "lens_best", "probe_ceiling")


def _layer(r: Row) -> str:
    return f", layer {r.layer}" if r.layer is not None else ""


def _probe_kind(variant: str) -> str:
    return {"default": "letter probe", "option": "option-text probe"}.get(variant, f"{variant} probe")


def gap_items(rows: Sequence[Row]) -> list[GapItem]:
    """The bars of one model/task's elicitation-gap chart, in display order; missing sections are left out."""
    items: list[GapItem] = []
    straight = _pick(rows, "straight_up") or _pick(rows, "probe_prompted", variant="default")
    if straight:
        r = straight[0]
        items.append(_item("straight_up", f"straight-up ({r.variant} prompt)", r))
    for r in _pick(rows, "best_variant")[:1]:
        items.append(_item("best_variant", f"best variant, chosen on dev ({r.variant})", r))
    for r in _pick(rows, "majority_vote", variant="all")[:1]:
        items.append(_item("majority_vote", "majority vote over variants", r))
    for r in _pick(rows, "lens_best"):
        items.append(_item("lens_best", f"best logit-lens layer, chosen on train{_layer(r)}", r, group="internals"))
    for r in _pick(rows, "probe_ceiling"):
        items.append(_item("probe_ceiling", f"probe ceiling ({_probe_kind(r.variant)}{_layer(r)})", r,
                           group="internals"))
    for r in rows:
        if r.method.startswith("probe_control") and r.metric == "accuracy":
            kind = r.method.partition(":")[2] or "control"
            items.append(_item("probe_control", f"control: {kind} ({_probe_kind(r.variant)}{_layer(r)})", r,
                               group="control"))
    for r in _pick(rows, "base", variant="no_password")[:1]:
        items.append(_item("base_model", "base model before locking", r, group="locking"))
    for variant, label in (("with_password", "with password"), ("no_password", "locked (no password)"),
                           ("decoy", "decoy password")):
        for r in _pick(rows, "lock", variant=variant)[:1]:
            items.append(_item(variant, label, r, group="locking"))
    for r in _pick(rows, "weak_policy")[:1]:
        items.append(_item("weak_policy", "weak policy (imitated without password)", r, group="control"))
    unlocked = _pick(rows, "unlocked")
    several = len({r.run_dir for r in unlocked}) > 1
    for r in unlocked:
        tag = f" [{Path(r.run_dir).name}]" if several else ""
        items.append(_item("unlocked", f"unlocked{': ' + r.variant if r.variant else ''}{tag}", r, group="locking"))
    return items


def chance_level(rows: Sequence[Row]) -> float:
    """The chance accuracy a run recorded (`chance` method), else 1/4."""
    c = _pick(rows, "chance")
    return c[0].value if c else 0.25


def model_summaries(runs: Sequence[Run]) -> list[ModelSummary]:
    """One across-model row per (model, task): straight-up, best elicited (max of the honest behavioural
    methods: held-out best variant, majority vote, unlocked) and the probe ceiling (max over probe variants)."""
    rows = [r for run in runs for r in run.rows]
    sizes: dict[str, int] = {}
    families: dict[str, str] = {}
    locked: dict[str, bool] = {}
    for run in sorted(runs, key=lambda r: r.kind != "lock"):  # a lock run names its group's family first
        sizes.setdefault(run.model, run.n_params)
        families.setdefault(run.model, run.family)
        locked[run.model] = locked.get(run.model, False) or run.locked
    out = []
    for (model, task), grp in groups(rows).items():
        items = gap_items(grp)
        by = {i.key: i for i in items}
        straight = by["straight_up"].value if "straight_up" in by else math.nan
        if "straight_up" not in by and "no_password" in by:
            straight = by["no_password"].value
        cands = [i for i in items if i.key in ("best_variant", "majority_vote", "unlocked") and i.honest]
        best = max(cands, key=lambda i: i.value) if cands else None
        ceil = [i.value for i in items if i.key == "probe_ceiling"]
        if not (math.isfinite(straight) or best or ceil):
            continue  # nothing to compare (e.g. only a diff run)
        out.append(ModelSummary(model, task, sizes.get(model), families.get(model, ""), straight,
                                best.value if best else math.nan, best.label if best else "",
                                max(ceil) if ceil else math.nan, locked.get(model, False)))
    return out


def fmt(x: Any, digits: int = 3) -> str:
    """A number for tables: rounded, '' for None/nan."""
    if x is None:
        return ""
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def fmt_size(n: int | float | None) -> str:
    """135000000 -> '135M'; None -> 'unknown'."""
    if n is None:
        return "unknown"
    for div, suf in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{suf}"
    return f"{n:g}"


def write_csv(path: Path, records: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write dict rows to CSV (temporary name, then renamed); floats that are nan become empty cells."""
    return io.write_csv(path, list(columns), [[_cell(rec.get(c)) for c in columns] for rec in records])


def _cell(x: Any) -> Any:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return repr(x)
    return x


def tidy_records(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Tidy rows as dicts, sorted by model, task, method, variant, layer, step, metric."""
    def key(r: Row) -> tuple:
        return (r.model, r.task, r.method, r.variant, -1 if r.layer is None else r.layer,
                -1.0 if r.step is None else r.step, r.metric, r.run_dir)

    return [r.as_dict() for r in sorted(rows, key=key)]


SUMMARY_COLUMNS = ("model", "task", "n_params", "family", "straight_up", "best_elicited", "best_elicited_by",
                   "best_elicited_over_straight_up", "probe_ceiling", "probe_ceiling_over_straight_up")


def summary_records(summaries: Sequence[ModelSummary]) -> list[dict[str, Any]]:
    """Across-model rows as dicts with `SUMMARY_COLUMNS`."""
    return [{"model": s.model, "task": s.task, "n_params": s.n_params, "family": s.family,
             "straight_up": s.straight_up, "best_elicited": s.best_elicited, "best_elicited_by": s.best_elicited_by,
             "best_elicited_over_straight_up": s.elicited_ratio, "probe_ceiling": s.probe_ceiling,
             "probe_ceiling_over_straight_up": s.probe_ratio} for s in summaries]


__all__ = ["GapItem", "ModelSummary", "TIDY_COLUMNS", "chance_level", "gap_items", "groups", "model_summaries",
           "summary_records", "tidy_records", "write_csv"]
