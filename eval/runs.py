"""Accuracy over several runs (e.g. unlocking seeds) and the fraction of the gap recovered, with intervals.

A run is a 1-D array of 0/1 correctness, one per question, optionally with question ids (one per value, no
duplicates within a run). A list of runs may be given as a list of arrays or a 2-D (runs, questions) array; a single
1-D array is one run. Runs are weighted equally: a group's accuracy is the mean over its runs of each run's accuracy.

Resampling (B = n_boot replicates, percentile intervals at (1 -/+ confidence) / 2):
- "bootstrap_nested" (`accuracy_over_runs` without ids): each replicate draws R runs with replacement, then,
  independently for every drawn run, its n_r questions with replacement (for 0/1 outcomes that resample's count is
  Binomial(n_r, p_r), drawn directly). Right when runs are scored on different questions; when runs share
  questions it ignores that sharing and is too narrow, so pass ids.
- "bootstrap_crossed" (`accuracy_over_runs` with ids, and always `fraction_recovered`): each replicate draws R runs
  with replacement AND one resample of the union of question ids (multiplicity weights), shared by every run, so a
  question drawn twice counts twice in every run that scored it. A run that drew none of its questions is left out
  of that replicate.

Known limits of these percentile intervals: with 2-3 runs the spread between runs is poorly estimated (a run
bootstrap's variance is (R - 1) / R of the sample variance, and R runs give few distinct replicates), so the
interval is too narrow; near 0 or 1 with only a few differing outcomes it undercovers too. Every interval for an
accuracy lies within [0, 1] (each replicate is a mean of 0/1 outcomes); the fraction recovered is not bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from eval.stats import Estimate, accuracy, json_safe, wilson_interval

_CHUNK = 4_000_000  # max elements of one (replicates x questions) weight block

Runs = ArrayLike | Sequence[ArrayLike]
"""One run (a 1-D array), or several (a 2-D array or a sequence of 1-D arrays)."""
Run = tuple[np.ndarray, np.ndarray]  # (index into the question universe, 0/1 values as float)


def _check(n_boot: int, confidence: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _as_runs(x: Any, name: str) -> list[np.ndarray]:
    """A list of 1-D arrays: a 1-D array (or list of scalars) is one run, a 2-D array or list of arrays many."""
    if isinstance(x, np.ndarray) and x.ndim in (1, 2):
        return [x] if x.ndim == 1 else list(x)
    items = list(x)
    if items and all(np.ndim(i) == 0 for i in items):
        return [np.asarray(items)]
    runs = [np.asarray(i) for i in items]
    for j, r in enumerate(runs):
        if r.ndim != 1:
            raise ValueError(f"{name}: run {j} must be 1-D, got shape {r.shape}")
    return runs


def _binary(runs: list[np.ndarray], name: str) -> list[np.ndarray]:
    out = []
    for j, r in enumerate(runs):
        a = r.astype(float)
        if not np.all((a == 0) | (a == 1)):
            raise ValueError(f"{name}: run {j} must hold 0/1 correctness")
        out.append(a)
    return out


def _run_ids(ids: Any, runs: list[np.ndarray], name: str) -> list[np.ndarray]:
    """Per-run question ids as strings: one id per value, no duplicates within a run."""
    lists = _as_runs(ids, name)
    if len(lists) != len(runs):
        raise ValueError(f"{name} has ids for {len(lists)} runs, there are {len(runs)} runs")
    out = []
    for j, (i, r) in enumerate(zip(lists, runs, strict=True)):
        s = np.asarray(i).astype(str)
        if len(s) != len(r):
            raise ValueError(f"{name}: run {j} has {len(s)} ids for {len(r)} values")
        uniq, counts = np.unique(s, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"{name}: run {j} has duplicate question ids {uniq[counts > 1][:5].tolist()}")
        out.append(s)
    return out


def _index(ids_by_group: list[list[np.ndarray]]) -> tuple[list[list[np.ndarray]], int]:
    """Per-run indices into the sorted union of all ids, and the union's size."""
    universe = np.unique(np.concatenate([i for g in ids_by_group for i in g]))
    return [[np.searchsorted(universe, i) for i in g] for g in ids_by_group], len(universe)


def _run_acc(runs: list[Run], w: np.ndarray) -> np.ndarray:
    """(b, R) accuracy of each run under question weights w (b, Q); nan where a run drew none of its questions."""
    out = np.empty((w.shape[0], len(runs)))
    for j, (idx, vals) in enumerate(runs):
        ww = w[:, idx]
        den = ww.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(den > 0, (ww @ vals) / den, np.nan)
    return out


def _drawn_mean(acc: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(b,) mean of run accuracies weighted by how often each run was drawn, leaving out nan runs."""
    ok = np.isfinite(acc)
    c = np.where(ok, counts, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(ok, acc, 0.0) * c).sum(axis=1) / c.sum(axis=1)


def _draw_runs(rng: np.random.Generator, r: int, b: int) -> np.ndarray:
    """(b, r) times each of r runs is drawn when drawing r runs with replacement, b times."""
    return rng.multinomial(r, np.full(r, 1.0 / r), size=b)


def _crossed(groups: list[list[Run]], n_q: int, *, n_boot: int, seed: int, paired_runs: bool) -> np.ndarray:
    """(n_boot, groups) group accuracies under the crossed bootstrap: one question resample shared by every run of
    every group; runs resampled within each group (with `paired_runs`, one run draw shared by all groups)."""
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK // max(n_q, 1))
    out = []
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        draws = rng.integers(0, n_q, size=(b, n_q)) + (np.arange(b) * n_q)[:, None]  # n_q questions per replicate
        w = np.bincount(draws.ravel(), minlength=b * n_q).reshape(b, n_q).astype(float)  # times each is drawn
        shared = _draw_runs(rng, len(groups[0]), b) if paired_runs else None
        cols = []
        for g in groups:
            counts = shared if shared is not None else _draw_runs(rng, len(g), b)
            cols.append(_drawn_mean(_run_acc(g, w), counts.astype(float)))
        out.append(np.stack(cols, axis=1))
    return np.concatenate(out)


def _nested(runs: list[np.ndarray], *, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) mean accuracy over R runs drawn with replacement, each with its questions resampled anew."""
    rng = np.random.default_rng(seed)
    n = np.array([len(r) for r in runs])
    p = np.array([r.mean() for r in runs])
    slots = rng.integers(0, len(runs), size=(n_boot, len(runs)))
    return (rng.binomial(n[slots], p[slots]) / n[slots]).mean(axis=1)


def _percentile(value: float, boot: np.ndarray, n: int, confidence: float, method: str, *,
                unit: bool) -> Estimate:
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return Estimate(value, float("nan"), float("nan"), n, method)
    lo, hi = (float(v) for v in np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2]))
    if unit:  # weighted means of 0/1 values: guard against rounding past the ends
        lo, hi = max(0.0, lo), min(1.0, hi)
    return Estimate(value, lo, hi, n, method)


def accuracy_over_runs(
    correct_by_run: Runs,
    *,
    ids_by_run: Runs | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean over runs of each run's accuracy, with an interval that never leaves [0, 1].

    - no runs, or only empty runs (n = 0): nothing to vary, no interval: Estimate(nan, nan, nan, 0, "none");
    - one run: the Wilson interval over its questions (`eval.stats.accuracy`), method "wilson";
    - several runs where every outcome is the same (all correct or all wrong): the bootstrap cannot vary, so the
      Wilson interval for that outcome over the distinct questions (the number of distinct ids; without ids the
      largest run, the conservative count since runs may share questions), method "wilson";
    - otherwise the percentile bootstrap over runs and questions: "bootstrap_crossed" with ids (one question
      resample shared by all runs: use it when runs share questions), "bootstrap_nested" without (see the module).
    `n` is the number of scored (run, question) pairs. An empty run among non-empty ones raises ValueError.
    """
    _check(n_boot, confidence)
    runs = _binary(_as_runs(correct_by_run, "correct_by_run"), "correct_by_run")
    sizes = [len(r) for r in runs]
    if sum(sizes) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "none")
    if 0 in sizes:
        raise ValueError(f"run {sizes.index(0)} has no questions (of {len(runs)} runs): drop it or score it")
    ids = None if ids_by_run is None else _run_ids(ids_by_run, runs, "ids_by_run")
    if len(runs) == 1:
        return accuracy(runs[0], confidence)
    n = sum(sizes)
    value = float(np.mean([r.mean() for r in runs]))
    pooled = np.concatenate(runs)
    if np.all(pooled == pooled[0]):
        n_q = max(sizes) if ids is None else len(np.unique(np.concatenate(ids)))
        w = wilson_interval(int(pooled[0]) * n_q, n_q, confidence)
        return Estimate(value, w.lo, w.hi, n, "wilson")
    if ids is None:
        return _percentile(value, _nested(runs, n_boot=n_boot, seed=seed), n, confidence, "bootstrap_nested",
                           unit=True)
    (idx,), n_q = _index([ids])
    boot = _crossed([list(zip(idx, runs, strict=True))], n_q, n_boot=n_boot, seed=seed, paired_runs=False)[:, 0]
    return _percentile(value, boot, n, confidence, "bootstrap_crossed", unit=True)


@dataclass(frozen=True)
class Recovered:
    """Fraction of the gap recovered, (elicited - locked) / (with_password - locked), with a crossed bootstrap.

    `elicited`, `locked`, `with_password` are the point accuracies (mean over each group's runs); `n_runs` the runs
    per group in that order; `n_dropped` the replicates left out because their gap with_password - locked was 0
    (or a group drew none of its questions). The interval is NOT clipped: the fraction can be < 0 or > 1.
    """

    fraction: Estimate
    elicited: float
    locked: float
    with_password: float
    n_runs: tuple[int, int, int]
    n_questions: int
    n_dropped: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (nan -> None)."""
        return json_safe({"fraction": self.fraction.to_dict(), "elicited": self.elicited, "locked": self.locked,
                          "with_password": self.with_password, "n_runs": list(self.n_runs),
                          "n_questions": self.n_questions, "n_dropped": self.n_dropped})


def fraction_recovered(
    elicited: Runs,
    locked: Runs,
    with_password: Runs,
    *,
    elicited_ids: Runs | None = None,
    locked_ids: Runs | None = None,
    with_password_ids: Runs | None = None,
    paired_runs: bool = False,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Recovered:
    """(E - L) / (W - L) with E, L, W each the mean over its runs of the run's accuracy, and a crossed bootstrap.

    Each of `elicited`, `locked`, `with_password` is one run (1-D 0/1 array) or several. Each replicate draws one
    resample of the questions (the union of ids; without ids every run of every group must score the same
    questions in the same order) shared by all three groups, and draws each group's runs with replacement,
    independently per group, or with `paired_runs` one draw of run indices shared by all three (run i of each group
    belongs together, e.g. the same locked model; the groups must then have equal numbers of runs). The value is
    nan when W == L; replicates with a zero gap are dropped and counted in `n_dropped`. Percentile interval.
    """
    _check(n_boot, confidence)
    names = ("elicited", "locked", "with_password")
    groups = [_binary(_as_runs(x, k), k) for x, k in zip((elicited, locked, with_password), names, strict=True)]
    for g, k in zip(groups, names, strict=True):
        if not g or any(len(r) == 0 for r in g):
            raise ValueError(f"{k} needs at least one run, each with questions")
    n_runs = (len(groups[0]), len(groups[1]), len(groups[2]))
    if paired_runs and len(set(n_runs)) > 1:
        raise ValueError(f"paired_runs needs equal numbers of runs per group, got {dict(zip(names, n_runs, strict=True))}")
    given = [x is not None for x in (elicited_ids, locked_ids, with_password_ids)]
    if any(given) and not all(given):
        raise ValueError("give question ids for all of elicited, locked and with_password, or for none")
    if all(given):
        ids = [_run_ids(i, g, k) for i, g, k in zip((elicited_ids, locked_ids, with_password_ids), groups, names,
                                                     strict=True)]
        idx, n_q = _index(ids)
    else:
        lens = {f"{k}[{j}]": len(r) for g, k in zip(groups, names, strict=True) for j, r in enumerate(g)}
        if len(set(lens.values())) > 1:
            raise ValueError(f"without question ids every run must score the same questions in the same order; "
                             f"lengths differ: {lens} (pass ids to align them)")
        n_q = next(iter(lens.values()))
        idx = [[np.arange(n_q)] * len(g) for g in groups]
    e, lo, hi = (float(np.mean([r.mean() for r in g])) for g in groups)
    value = (e - lo) / (hi - lo) if hi != lo else float("nan")
    runs = [list(zip(i, g, strict=True)) for i, g in zip(idx, groups, strict=True)]
    boot = _crossed(runs, n_q, n_boot=n_boot, seed=seed, paired_runs=paired_runs)
    gap = boot[:, 2] - boot[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(gap != 0, (boot[:, 0] - boot[:, 1]) / np.where(gap != 0, gap, 1.0), np.nan)
    n_dropped = int(np.sum(~np.isfinite(frac)))
    est = _percentile(value, frac, sum(len(r) for g in groups for r in g), confidence, "bootstrap_crossed",
                      unit=False)
    return Recovered(est, e, lo, hi, n_runs, n_q, n_dropped)
