"""The elicitation gap as a paired comparison on the same questions, and best-of-k chosen on dev, reported on test.

Inputs are per-question correctness: 0/1 (one run) or per-question mean correctness in [0, 1] (a method averaged
over several runs or shuffles). The elicited method and the straight-up method must be scored on the SAME questions;
with question ids they are aligned by id, without ids they must have equal lengths (same order), else ValueError.

What is computed (n questions, e_i and s_i the elicited and straight-up correctness of question i; intervals
two-sided at `confidence`, bootstrap intervals the percentile ones at (1 -/+ confidence) / 2):
- each method's accuracy: the Wilson interval for 0/1 input (`eval.stats.accuracy`), else the percentile bootstrap
  over questions of the per-question means (each question's mean is one observation: variation between runs enters
  only through those means; resample runs with `eval.runs` when that matters).
- `paired_difference`: mean(e) - mean(s) with a percentile bootstrap interval over questions, each replicate
  resampling question indices once (with replacement) and applying them to both arrays (`eval.stats.bootstrap_mean`
  of e - s).
- `mcnemar_exact`: b = #(e_i > s_i), c = #(e_i < s_i); p = the exact two-sided binomial test of b ~ Bin(b + c, 1/2),
  min(1, 2 P(X <= min(b, c))) (1 when b + c = 0). For 0/1 inputs this is the exact McNemar test on the discordant
  questions; for per-question means it is the sign test on the per-question differences (ties dropped).
- `paired_ratio`: mean(e) / mean(s) with the same paired percentile bootstrap (`eval.stats.bootstrap_ratio`;
  replicates with sum(s) = 0 dropped), shown ONLY when the straight-up accuracy is above chance by the conservative
  rule: the LOWER bound of the straight-up interval (Wilson for 0/1, the question bootstrap for means) is strictly
  above `chance`. A straight-up score whose interval reaches chance makes the ratio meaningless (it divides by noise).
- `paired_gap`: all of the above in one `PairedGap`; every bootstrap in it uses the same seed, hence the same
  question resamples.
- `select_best_of_k`: best-of-k with the one selection rule (`eval.stats.select_then_report`): chosen on dev
  accuracy, reported on test with its `paired_gap` against straight-up; beside it the naive max over test and
  `eval.stats.max_excess_null` on the test table (the max's expected excess over the average candidate when
  candidates are interchangeable per question).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _sps

from eval.stats import (
    Estimate,
    accuracy,
    bootstrap_mean,
    bootstrap_ratio,
    json_safe,
    max_excess_null,
    select_then_report,
)

_TIE = 1e-9  # |e_i - s_i| at or below this counts as a tie (per-question means computed in different orders)


def _unit(x: Any, name: str) -> np.ndarray:
    """1-D float array of correctness in [0, 1] (bool, 0/1 or per-question means)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D per-question correctness, got shape {a.shape}")
    a = a.astype(float)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values")
    if np.any((a < 0) | (a > 1)):
        raise ValueError(f"{name} must hold correctness in [0, 1] (0/1 or per-question means); "
                         f"got values from {a.min():g} to {a.max():g}")
    return a


def _ids(x: Any, name: str, n: int) -> np.ndarray:
    """Question ids as strings, one per value, without duplicates."""
    ids = np.asarray(x).astype(str)
    if ids.ndim != 1 or len(ids) != n:
        raise ValueError(f"{name} has {ids.size} ids for {n} values")
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"duplicate question ids in {name}: {uniq[counts > 1][:5].tolist()}")
    return ids


def _binary(a: np.ndarray) -> bool:
    return bool(np.all((a == 0) | (a == 1)))


def align(
    elicited: ArrayLike, straight: ArrayLike, elicited_ids: ArrayLike | None = None, straight_ids: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(elicited, straight, ids) on the same questions in elicited's order.

    With ids for both, `straight` is reordered to elicited's ids; the two id sets must be equal, each without
    duplicates. Without ids, the lengths must be equal (the arrays are taken as aligned by position). Anything
    else (ids on one side only, a different length, different or duplicate ids) raises ValueError naming it.
    """
    e, s = _unit(elicited, "elicited"), _unit(straight, "straight")
    if (elicited_ids is None) != (straight_ids is None):
        raise ValueError("give question ids for both elicited and straight, or for neither")
    if elicited_ids is None:
        if len(e) != len(s):
            raise ValueError(f"elicited has {len(e)} questions, straight has {len(s)}: not the same questions "
                             "(pass question ids to align them by id)")
        return e, s, None
    ei, si = _ids(elicited_ids, "elicited_ids", len(e)), _ids(straight_ids, "straight_ids", len(s))
    only_e, only_s = np.setdiff1d(ei, si), np.setdiff1d(si, ei)
    if only_e.size or only_s.size:
        raise ValueError(f"question ids differ: {only_e.size} only in elicited (e.g. {only_e[:3].tolist()}), "
                         f"{only_s.size} only in straight (e.g. {only_s[:3].tolist()})")
    pos = {q: i for i, q in enumerate(si.tolist())}
    return e, s[np.array([pos[q] for q in ei.tolist()], dtype=int)], ei


def _level(a: np.ndarray, *, n_boot: int, seed: int, confidence: float) -> Estimate:
    """Accuracy of one method: Wilson for 0/1, percentile bootstrap over questions for per-question means."""
    if _binary(a):
        return accuracy(a, confidence)
    return bootstrap_mean(a, n_boot=n_boot, seed=seed, confidence=confidence)


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar / sign test: b = #(elicited > straight), c = #(straight > elicited), two-sided p.

    `test` is "mcnemar_exact" (both inputs 0/1) or "sign_test" (per-question means).
    """

    b: int
    c: int
    n_discordant: int
    p_value: float
    test: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with keys b, c, n_discordant, p_value, test."""
        return asdict(self)


@dataclass(frozen=True)
class Ratio:
    """elicited / straight accuracy with its interval, or `estimate` None; `reason` says why in either case."""

    estimate: Estimate | None
    reason: str

    @property
    def shown(self) -> bool:
        """True when the ratio is reported (straight-up above chance by the lower-bound rule)."""
        return self.estimate is not None


@dataclass(frozen=True)
class PairedGap:
    """An elicited method against straight-up on the same n questions (see the module docstring)."""

    n: int
    elicited: Estimate
    straight: Estimate
    difference: Estimate
    mcnemar: McNemar
    ratio: Estimate | None
    ratio_reason: str
    chance: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (nan -> None): n, chance, confidence, elicited, straight, difference, mcnemar (dicts),
        ratio (dict or None) and ratio_reason."""
        return json_safe({"n": self.n, "chance": self.chance, "confidence": self.confidence,
                      "elicited": self.elicited.to_dict(), "straight": self.straight.to_dict(),
                      "difference": self.difference.to_dict(), "mcnemar": self.mcnemar.to_dict(),
                      "ratio": None if self.ratio is None else self.ratio.to_dict(), "ratio_reason": self.ratio_reason})


def paired_difference(
    elicited: ArrayLike,
    straight: ArrayLike,
    *,
    elicited_ids: ArrayLike | None = None,
    straight_ids: ArrayLike | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """mean(elicited) - mean(straight) on the same questions, with a paired percentile bootstrap over questions.

    Each replicate draws n question indices with replacement and applies them to both arrays; the interval is the
    (1 - confidence)/2 and (1 + confidence)/2 quantiles of the replicate differences. Deterministic for a seed.
    """
    e, s, _ = align(elicited, straight, elicited_ids, straight_ids)
    if len(e) == 0:
        raise ValueError("no questions to compare")
    return bootstrap_mean(e - s, n_boot=n_boot, seed=seed, confidence=confidence)


def mcnemar_exact(elicited: ArrayLike, straight: ArrayLike, *, elicited_ids: ArrayLike | None = None, straight_ids: ArrayLike | None = None) -> McNemar:
    """Exact McNemar test (0/1 inputs) or sign test (per-question means) on the questions where the two differ.

    b = #(elicited_i > straight_i), c = #(elicited_i < straight_i) (differences within 1e-9 are ties, dropped);
    p = min(1, 2 * BinomCDF(min(b, c); b + c, 1/2)), the two-sided exact binomial p-value (1 when b + c = 0).
    """
    e, s, _ = align(elicited, straight, elicited_ids, straight_ids)
    d = e - s
    b, c = int(np.sum(d > _TIE)), int(np.sum(d < -_TIE))
    n = b + c
    p = 1.0 if n == 0 else float(min(1.0, 2.0 * _sps.binom.cdf(min(b, c), n, 0.5)))
    return McNemar(b, c, n, p, "mcnemar_exact" if _binary(e) and _binary(s) else "sign_test")


def _check_chance(chance: float) -> float:
    ch = float(chance)
    if not (math.isfinite(ch) and 0.0 <= ch < 1.0):
        raise ValueError(f"chance must be in [0, 1), got {chance}")
    return ch


def _ratio(e: np.ndarray, s: np.ndarray, straight: Estimate, chance: float, *, n_boot: int, seed: int,
           confidence: float) -> Ratio:
    what = f"straight-up {straight.value:.3g} ({confidence:.0%} {straight.method} interval {straight.lo:.3g}" \
           f" to {straight.hi:.3g})"
    if not straight.lo > chance:
        return Ratio(None, f"ratio not shown: {what} is at or below chance {chance:.3g} (its lower bound must be "
                           "above chance)")
    est = bootstrap_ratio(e, s, n_boot=n_boot, seed=seed, confidence=confidence)
    return Ratio(est, f"ratio shown: {what} is above chance {chance:.3g}")


def paired_ratio(
    elicited: ArrayLike,
    straight: ArrayLike,
    *,
    chance: float,
    elicited_ids: ArrayLike | None = None,
    straight_ids: ArrayLike | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Ratio:
    """mean(elicited) / mean(straight) with a paired percentile bootstrap over questions, only above chance.

    Shown only when the lower bound of the straight-up accuracy's interval (Wilson for 0/1, percentile bootstrap
    over questions for per-question means) is strictly above `chance` (e.g. the mean of 1/n_choices); otherwise
    `estimate` is None and `reason` says so with the numbers. Replicates with sum(straight) = 0 are dropped.
    """
    e, s, _ = align(elicited, straight, elicited_ids, straight_ids)
    if len(e) == 0:
        raise ValueError("no questions to compare")
    st = _level(s, n_boot=n_boot, seed=seed, confidence=confidence)
    return _ratio(e, s, st, _check_chance(chance), n_boot=n_boot, seed=seed, confidence=confidence)


def paired_gap(
    elicited: ArrayLike,
    straight: ArrayLike,
    *,
    chance: float,
    elicited_ids: ArrayLike | None = None,
    straight_ids: ArrayLike | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedGap:
    """The elicitation gap on the same questions: both accuracies (Wilson for 0/1, question bootstrap for means),
    `paired_difference`, `mcnemar_exact` and `paired_ratio` (None below chance), all with one seed."""
    e, s, _ = align(elicited, straight, elicited_ids, straight_ids)
    if len(e) == 0:
        raise ValueError("no questions to compare")
    ch = _check_chance(chance)
    kw = {"n_boot": n_boot, "seed": seed, "confidence": confidence}
    st = _level(s, **kw)
    ratio = _ratio(e, s, st, ch, **kw)
    return PairedGap(n=len(e), elicited=_level(e, **kw), straight=st,
                     difference=bootstrap_mean(e - s, **kw), mcnemar=mcnemar_exact(e, s),
                     ratio=ratio.estimate, ratio_reason=ratio.reason, chance=ch, confidence=confidence)


@dataclass(frozen=True)
class SelectedGap:
    """Best-of-k chosen on dev and reported on test, with the naive max over test and its permutation null.

    `gap` is `paired_gap(test[chosen], straight_test)`: its `elicited` is the chosen method's test accuracy.
    `inflation` = naive_max_test - the chosen method's test accuracy. `null` is `eval.stats.max_excess_null` of the
    (test questions x candidates) table (None with one candidate): `observed` = naive max - mean over candidates,
    `null_mean` the excess expected when candidates are interchangeable per question, `p_value`.
    """

    chosen: str
    dev_accuracy: dict[str, float]
    test_accuracy: dict[str, float]
    gap: PairedGap
    naive_max: str
    naive_max_test: float
    naive_max_difference: float
    inflation: float
    null: dict[str, float] | None
    n_dev: int
    n_test: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (nan -> None), the gap as `PairedGap.to_dict`."""
        d = {k: v for k, v in self.__dict__.items() if k != "gap"}
        d["gap"] = self.gap.to_dict()
        return json_safe(d)


def _methods(x: Mapping[str, ArrayLike], name: str, ids: ArrayLike | None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    if not x:
        raise ValueError(f"{name} has no candidate methods")
    arrs = {str(k): _unit(v, f"{name}[{k!r}]") for k, v in x.items()}
    lens = {k: len(v) for k, v in arrs.items()}
    if len(set(lens.values())) > 1:
        raise ValueError(f"{name} methods have different numbers of questions: {lens}")
    n = next(iter(lens.values()))
    if n == 0:
        raise ValueError(f"{name} has no questions")
    return arrs, None if ids is None else _ids(ids, f"{name}_ids", n)


def _dev_scores(dev: Mapping[str, ArrayLike | float], ids: ArrayLike | None
                ) -> tuple[dict[str, float], np.ndarray | None, int]:
    """Dev accuracy per candidate, the dev ids and the number of dev questions. A candidate is per-question
    correctness on the dev questions (all such candidates on the same questions) or a number in [0, 1]: its dev
    accuracy measured without per-question outcomes (e.g. a probe's cross-validated accuracy on the dev questions)."""
    if not dev:
        raise ValueError("dev has no candidate methods")
    arrays = {str(k): v for k, v in dev.items() if np.ndim(v) != 0}
    out: dict[str, float] = {}
    for k, v in dev.items():
        if np.ndim(v) == 0:
            x = float(v)  # type: ignore[arg-type]
            if not (math.isfinite(x) and 0.0 <= x <= 1.0):
                raise ValueError(f"dev[{k!r}] must be an accuracy in [0, 1], got {v!r}")
            out[str(k)] = x
    if arrays:
        d, di = _methods(arrays, "dev", ids)
        out.update({k: float(a.mean()) for k, a in d.items()})
        return out, di, len(next(iter(d.values())))
    di = None if ids is None else _ids(ids, "dev_ids", len(np.asarray(ids)))
    return out, di, 0 if di is None else len(di)


def select_best_of_k(
    dev: Mapping[str, ArrayLike | float],
    test: Mapping[str, ArrayLike],
    straight_test: ArrayLike,
    *,
    chance: float,
    dev_ids: ArrayLike | None = None,
    test_ids: ArrayLike | None = None,
    straight_ids: ArrayLike | None = None,
    n_boot: int = 2000,
    n_perm: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> SelectedGap:
    """Choose the candidate with the best dev accuracy, report its test accuracy and paired gap vs straight-up.

    `dev` / `test` map candidate name -> per-question correctness (every candidate on the same dev questions, and on
    the same test questions in one order, `test_ids` if given); a `dev` value may instead be a number, the
    candidate's accuracy on the dev questions measured another way (a probe's cross-validated accuracy on them).
    `n_dev` is the number of dev questions (of the per-question candidates, else of `dev_ids`, else 0). `straight_test` is straight-up on the test questions
    (aligned by `straight_ids` against `test_ids`, or by position). Selection is `eval.stats.select_then_report`
    over names in sorted order (ties go to the first name). With `dev_ids` and `test_ids`, dev and test must be
    disjoint. Returns a `SelectedGap` (the naive max over test and `max_excess_null` of the test table beside it).
    """
    dev_acc, di, n_dev = _dev_scores(dev, dev_ids)
    t, ti = _methods(test, "test", test_ids)
    if set(dev_acc) != set(t):
        raise ValueError(f"dev and test candidates differ: only dev {sorted(set(dev_acc) - set(t))}, "
                         f"only test {sorted(set(t) - set(dev_acc))}")
    if di is not None and ti is not None and (common := np.intersect1d(di, ti)).size:
        raise ValueError(f"dev and test share {common.size} question ids (e.g. {common[:3].tolist()}): choose on "
                         "one split and report on another")
    names = sorted(dev_acc)
    dev_acc = {k: dev_acc[k] for k in names}
    test_acc = {k: float(t[k].mean()) for k in names}
    sel = select_then_report(dev_acc, test_acc)
    chosen, naive = str(sel["chosen"]), str(sel["naive_max_key"])
    gap = paired_gap(t[chosen], straight_test, chance=chance, elicited_ids=ti, straight_ids=straight_ids,
                     n_boot=n_boot, confidence=confidence, seed=seed)
    table = np.column_stack([t[k] for k in names])
    null = max_excess_null(table, n_perm=n_perm, seed=seed) if len(names) >= 2 else None
    return SelectedGap(chosen=chosen, dev_accuracy=dev_acc, test_accuracy=test_acc, gap=gap, naive_max=naive,
                       naive_max_test=test_acc[naive], naive_max_difference=test_acc[naive] - gap.straight.value,
                       inflation=float(sel["gap"]), null=null, n_dev=n_dev, n_test=gap.n)
