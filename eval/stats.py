"""Intervals, bootstraps and honest best-of-k selection for multiple-choice accuracies (numpy only)."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as _sps

from core.schemas.common import Estimate as Estimate  # the one Estimate class; `eval.stats.Estimate` stays

_CHUNK = 4_000_000  # max elements of one (replicates x groups) weight block


def json_safe(x: Any) -> Any:
    """`x` as plain JSON values: non-finite floats become None, numpy scalars Python ones, tuples lists (recursive)."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if np.isfinite(x) else None
    return x


def _check_conf(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _vec(x: Any, name: str, *, allow_empty: bool = False) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    return a


def _finite(x: Any, name: str, *, allow_empty: bool = False) -> np.ndarray:
    a = _vec(x, name, allow_empty=allow_empty).astype(float)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values")
    return a


def _same_len(**arrays: np.ndarray) -> None:
    lens = {k: len(v) for k, v in arrays.items()}
    if len(set(lens.values())) > 1:
        raise ValueError(f"length mismatch: {lens}")


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> Estimate:
    """Wilson score interval for `correct` of `n`; value is correct/n (nan with [0, 1] if n == 0)."""
    _check_conf(confidence)
    if n < 0 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n, got correct={correct}, n={n}")
    if n == 0:
        return Estimate(float("nan"), 0.0, 1.0, 0, "wilson")
    z = float(_sps.norm.ppf(0.5 + confidence / 2))
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Estimate(p, float(max(0.0, centre - half)), float(min(1.0, centre + half)), int(n), "wilson")


def accuracy(correct: np.ndarray, confidence: float = 0.95) -> Estimate:
    """Accuracy of a bool / 0-1 array of any shape with a Wilson interval; empty -> value nan."""
    a = np.asarray(correct).ravel()
    if a.size and not np.all((a == 0) | (a == 1)):
        raise ValueError("correct must contain only booleans or 0/1")
    return wilson_interval(int(a.sum()), int(a.size), confidence)


def _group_index(groups: np.ndarray | None, n: int) -> np.ndarray:
    """Dense group index per row (each row its own group when `groups` is None)."""
    if groups is None:
        return np.arange(n)
    g = _vec(groups, "groups")
    if len(g) != n:
        raise ValueError(f"groups has length {len(g)}, values has {n}")
    return np.unique(g, return_inverse=True)[1].ravel()


def _resample_sums(table: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap over the rows (groups) of `table` (g, k): (n_boot, k) sums of the resampled rows."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    g = table.shape[0]
    step = max(1, _CHUNK // g)
    out = []
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        idx = rng.integers(0, g, size=(b, g)) + (np.arange(b) * g)[:, None]
        weights = np.bincount(idx.ravel(), minlength=b * g).reshape(b, g)
        out.append(weights @ table)
    return np.concatenate(out)


def _interval(value: float, boot: np.ndarray, n: int, confidence: float) -> Estimate:
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return Estimate(value, float("nan"), float("nan"), n, "bootstrap")
    alpha = 1 - confidence
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return Estimate(value, float(lo), float(hi), n, "bootstrap")


def bootstrap_ratio(
    num: np.ndarray,
    den: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """mean(num) / mean(den) with a paired percentile bootstrap (rows, or whole `groups`, resampled).

    E.g. fraction of the gap recovered over runs. Value is nan when sum(den) == 0;
    replicates with a zero denominator are dropped from the interval.
    """
    _check_conf(confidence)
    a, b = _finite(num, "num"), _finite(den, "den")
    _same_len(num=a, den=b)
    gi = _group_index(groups, len(a))
    k = int(gi.max()) + 1
    table = np.stack([np.bincount(gi, a, k), np.bincount(gi, b, k)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(a.sum() / b.sum()) if b.sum() != 0 else float("nan")
        r = _resample_sums(table, n_boot, seed)
        boot = r[:, 0] / r[:, 1]
    return _interval(value, boot, len(a), confidence)


def bootstrap_mean(
    values: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Mean with a percentile bootstrap; with `groups` (e.g. question ids) whole groups are resampled."""
    v = _finite(values, "values")
    ones = np.ones_like(v)
    return bootstrap_ratio(v, ones, groups=groups, n_boot=n_boot, seed=seed, confidence=confidence)


def mean_over_runs(values: np.ndarray, confidence: float = 0.95) -> Estimate:
    """Mean over a handful of runs (seeds) with a Student-t interval (method "t"; degenerate if n == 1)."""
    _check_conf(confidence)
    v = _finite(values, "values")
    m = float(v.mean())
    if len(v) == 1:
        return Estimate(m, m, m, 1, "t")
    half = float(_sps.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return Estimate(m, m - half, m + half, len(v), "t")


def per_variant_accuracy(
    correct: np.ndarray,
    variant_ids: np.ndarray,
    *,
    question_ids: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Accuracy per variant (keys str(variant), sorted), bootstrap CI resampling questions (or rows)."""
    c, v = _finite(correct, "correct"), _vec(variant_ids, "variant_ids").astype(str)
    _same_len(correct=c, variant_ids=v)
    q = None if question_ids is None else _vec(question_ids, "question_ids").astype(str)
    if q is not None:
        _same_len(correct=c, question_ids=q)
    out = {}
    for name in np.unique(v):
        m = v == name
        grp = None if q is None else q[m]
        out[str(name)] = bootstrap_mean(c[m], groups=grp, n_boot=n_boot, seed=seed)
    return out


def spread(acc_by_variant: Mapping[str, float]) -> dict[str, float]:
    """max, min, spread (max - min), std (ddof=0), mean and n_variants of per-variant accuracies."""
    if not acc_by_variant:
        raise ValueError("acc_by_variant is empty")
    a = np.array([float(x) for x in acc_by_variant.values()])
    return {"max": float(a.max()), "min": float(a.min()), "spread": float(a.max() - a.min()),
            "std": float(a.std()), "mean": float(a.mean()), "n_variants": len(a)}


def _pred_matrix(pred: np.ndarray) -> np.ndarray:
    p = np.asarray(pred)
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"pred must be a non-empty (questions, variants) array, got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"pred must hold integer choice indices, got dtype {p.dtype}")
    if np.any(p < -1):
        raise ValueError("pred holds values < -1 (only -1 means missing)")
    return p


def agreement(pred: np.ndarray) -> np.ndarray:
    """Per question, the fraction of non-missing variants giving the modal answer (nan if all missing).

    `pred` is (questions, variants) of predicted ORIGINAL choice indices, -1 = missing.
    """
    p = _pred_matrix(pred)
    k = int(p.max()) + 1
    counts = np.stack([(p == c).sum(axis=1) for c in range(max(k, 1))], axis=1)
    present = (p >= 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present > 0, counts.max(axis=1) / present, np.nan)


def majority_vote(
    pred: np.ndarray, n_choices: np.ndarray | int, *, scores: np.ndarray | None = None
) -> np.ndarray:
    """Modal choice per question of `pred` (q, v) (-1 = missing; -1 out if a row is all missing).

    Ties go to the highest score summed over non-missing variants when `scores` (q, v, c) is
    given (e.g. softmax probabilities per original choice), then to the lowest index.
    """
    p = _pred_matrix(pred)
    nq, nv = p.shape
    nc = np.broadcast_to(np.asarray(n_choices, dtype=int), (nq,))
    if np.any(nc < 1) or np.any(p >= nc[:, None]):
        raise ValueError("pred holds an index >= n_choices for its question (or n_choices < 1)")
    width = int(nc.max())
    counts = np.stack([(p == c).sum(axis=1) for c in range(width)], axis=1)
    tied = counts == counts.max(axis=1, keepdims=True)
    key = np.zeros((nq, width))
    if scores is not None:
        s = np.asarray(scores, dtype=float)
        if s.ndim != 3 or s.shape[:2] != (nq, nv) or s.shape[2] < width:
            raise ValueError(f"scores must have shape ({nq}, {nv}, >={width}), got {s.shape}")
        key = np.nan_to_num(s[:, :, :width] * (p >= 0)[:, :, None]).sum(axis=1)
    key = np.where(tied & (np.arange(width)[None, :] < nc[:, None]), key, -np.inf)
    return np.where((p >= 0).any(axis=1), key.argmax(axis=1), -1)


def symbol_bias(
    pred_pos: np.ndarray, gold_pos: np.ndarray, n_choices: int
) -> dict[str, list[float] | float]:
    """Distribution of predicted display positions vs gold positions (rows with pred -1 are dropped).

    Returns pred_dist, gold_dist, tv_distance, chi2 and chi2_p (goodness of fit of predicted counts
    to the gold proportions; p = 0 if a position never gold is predicted), n and n_missing.
    """
    p, g = np.asarray(pred_pos).ravel(), np.asarray(gold_pos).ravel()
    if p.size == 0 or p.shape != g.shape:
        raise ValueError(f"pred_pos and gold_pos must be non-empty, equal sizes; got {p.size}, {g.size}")
    if np.any(p < -1) or np.any(p >= n_choices) or np.any(g < 0) or np.any(g >= n_choices):
        raise ValueError(f"positions must lie in 0..{n_choices - 1} (pred may be -1 = missing)")
    keep = p >= 0
    n = int(keep.sum())
    if n == 0:
        raise ValueError("every prediction is missing")
    pc = np.bincount(p[keep], minlength=n_choices).astype(float)
    gc = np.bincount(g[keep], minlength=n_choices).astype(float)
    pd, gd = pc / n, gc / n
    support = gc > 0
    if np.any(pc[~support] > 0):
        chi2, pval = float("inf"), 0.0
    elif support.sum() < 2:
        chi2, pval = 0.0, 1.0
    else:
        res = _sps.chisquare(pc[support], gc[support])
        chi2, pval = float(res.statistic), float(res.pvalue)
    tv = float(0.5 * np.abs(pd - gd).sum())
    return {"pred_dist": pd.tolist(), "gold_dist": gd.tolist(), "tv_distance": tv,
            "chi2": chi2, "chi2_p": pval, "n": n, "n_missing": int(p.size - n)}


def honest_best(
    correct: np.ndarray,
    variant_ids: np.ndarray,
    question_ids: np.ndarray,
    dev_ids: set[str] | np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Pick the variant best on dev questions; report it on the other (test) questions.

    Rows are (question, variant) results. Also reports the naive max over variants on test,
    inflation = naive_max_test - chosen test accuracy; expected_max_by_chance =
    mean_b max_k acc_k^b - max_k mean_b acc_k^b over a question bootstrap of the test set (the optimism of the
    max if the observed accuracies were the true ones: small whenever one variant is clearly ahead); and
    max_excess_null (`max_excess_null` on the test questions): how far the naive max beats the average variant,
    beside what chance alone gives when variants are interchangeable (None with a single variant).
    Ties go to the lexicographically first variant.
    """
    c = _finite(correct, "correct")
    v = _vec(variant_ids, "variant_ids").astype(str)
    q = _vec(question_ids, "question_ids").astype(str)
    _same_len(correct=c, variant_ids=v, question_ids=q)
    dev = np.isin(q, np.array(sorted(str(x) for x in np.asarray(list(dev_ids)).ravel()), dtype=str))
    if not dev.any() or dev.all():
        raise ValueError(f"dev_ids must select some but not all rows (dev rows: {int(dev.sum())}/{len(q)})")
    names_arr, vi = np.unique(v, return_inverse=True)
    names, vi = [str(x) for x in names_arr], vi.ravel()
    k_all = len(names)
    dev_acc = {names[k]: float(c[m].mean()) for k in range(k_all) if (m := dev & (vi == k)).any()}
    test_acc = {names[k]: float(c[m].mean()) for k in range(k_all) if (m := ~dev & (vi == k)).any()}
    chosen = max(dev_acc, key=lambda k: dev_acc[k])  # dicts are in sorted order: first wins ties
    if chosen not in test_acc:
        raise ValueError(f"chosen variant {chosen!r} has no test rows")
    naive = max(test_acc, key=lambda k: test_acc[k])
    m = ~dev & (v == chosen)
    est = bootstrap_mean(c[m], groups=q[m], n_boot=n_boot, seed=seed)
    tq, tqi = np.unique(q[~dev], return_inverse=True)
    sums, cnts = np.zeros((len(tq), k_all)), np.zeros((len(tq), k_all))
    np.add.at(sums, (tqi.ravel(), vi[~dev]), c[~dev])
    np.add.at(cnts, (tqi.ravel(), vi[~dev]), 1.0)
    r = _resample_sums(np.hstack([sums, cnts]), n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = r[:, :k_all] / r[:, k_all:]
    boot = boot[:, [names.index(k) for k in test_acc]]
    emax = float(np.nanmean(np.nanmax(boot, axis=1)) - np.nanmax(np.nanmean(boot, axis=0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        table = (sums / cnts)[:, [names.index(k) for k in test_acc]]
    null = max_excess_null(table, n_perm=n_boot, seed=seed) if table.shape[1] >= 2 else None
    return {"chosen": chosen, "dev_accuracy": dev_acc[chosen], "test_accuracy": est.to_dict(),
            "naive_max_variant": naive, "naive_max_test": test_acc[naive],
            "inflation": test_acc[naive] - test_acc[chosen], "expected_max_by_chance": emax,
            "max_excess_null": null,
            "n_dev": len(np.unique(q[dev])), "n_test": len(tq),
            "dev_by_variant": dev_acc, "test_by_variant": test_acc}


def max_excess_null(table: np.ndarray, *, n_perm: int = 1000, seed: int = 0) -> dict[str, float]:
    """How far the best column's mean beats the average column, against chance.

    `table` is (questions, variants) of 0/1 outcomes (NaN: missing). Observed excess = max_k mean_k - mean_k
    mean_k. The null shuffles each question's outcomes across variants (variants interchangeable, every
    question keeping its difficulty and its number of correct variants); `null_mean` is the excess expected
    by chance alone, `p_value` = (1 + #{null >= observed}) / (1 + n_perm).
    """
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 2:
        raise ValueError(f"table must be (questions, variants >= 2), got shape {t.shape}")
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")

    def excess(x: np.ndarray) -> np.ndarray:  # (..., q, k) -> (...)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(x, axis=-2)
            return np.nanmax(means, axis=-1) - np.nanmean(means, axis=-1)

    observed = float(excess(t))
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK // t.size)
    null = []
    for start in range(0, n_perm, step):
        b = min(step, n_perm - start)
        perm = np.argsort(rng.random((b, *t.shape)), axis=-1)
        null.append(excess(np.take_along_axis(np.broadcast_to(t, (b, *t.shape)), perm, axis=-1)))
    nulls = np.concatenate(null)
    return {"observed": observed, "null_mean": float(np.mean(nulls)),
            "null_q95": float(np.quantile(nulls, 0.95)),
            "p_value": float((1 + np.sum(nulls >= observed - 1e-12)) / (1 + n_perm)), "n_perm": n_perm}


def split_ids(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split unique ids by a seeded sha256 order: round(fraction * n) ids first (clamped so both are
    non-empty when n >= 2). Independent of input order and duplicates; each part is returned sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    uniq = sorted({str(i) for i in ids})
    if not uniq:
        raise ValueError("ids is empty")
    order = sorted(uniq, key=lambda s: (hashlib.sha256(f"{seed}\0{s}".encode()).hexdigest(), s))
    n = len(uniq)
    k = min(max(round(fraction * n), 1), n - 1) if n >= 2 else round(fraction * n)
    return sorted(order[:k]), sorted(order[k:])


def select_then_report(
    scores_dev: Mapping[Hashable, float], scores_test: Mapping[Hashable, float]
) -> dict[str, Any]:
    """Generic best-of-k: argmax key on dev (nan skipped, first wins ties), its test value, the naive
    max on test and gap = naive_max_test - test_value. Used for layers, noise scales, checkpoints."""
    cand = [k for k, s in scores_dev.items() if np.isfinite(s)]
    if not cand:
        raise ValueError("scores_dev has no finite scores")
    chosen = max(cand, key=lambda k: scores_dev[k])
    if chosen not in scores_test:
        raise ValueError(f"chosen key {chosen!r} missing from scores_test")
    tcand = [k for k, s in scores_test.items() if np.isfinite(s)]
    naive = max(tcand, key=lambda k: scores_test[k])
    return {"chosen": chosen, "dev_value": float(scores_dev[chosen]),
            "test_value": float(scores_test[chosen]),
            "naive_max_key": naive, "naive_max_test": float(scores_test[naive]),
            "gap": float(scores_test[naive] - scores_test[chosen]), "n_candidates": len(cand)}
