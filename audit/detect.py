"""The detector view: how well a per-organism statistic (a method's gain over straight-up) separates the organisms
that hide a capability from those that do not. Pure numpy.

`auroc(pos, neg)` is the Mann-Whitney probability that a random positive scores above a random negative, ties
counting half (equal to `sklearn.metrics.roc_auc_score`). `auroc_estimate` adds a percentile bootstrap over
organisms: positives and negatives are resampled separately (each class keeps its size), so every replicate has both.
With a handful of organisms the interval is wide and coarse (and degenerate, [1, 1], when the classes are perfectly
separated), so `auroc_p_value` adds the exact permutation p-value: the chance that a random relabelling of the same
organisms separates at least as well (3 locked against 3 others can do no better than 1/20).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from core.schemas.common import Estimate


def _scores(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} scores must be finite")
    return a


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + P(pos == neg) / 2 over every (positive, negative) pair; nan when a class is empty."""
    p, n = _scores(pos, "positive"), _scores(neg, "negative")
    if not len(p) or not len(n):
        return float("nan")
    diff = p[:, None] - n[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def _auroc_rows(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """AUROC of each replicate: p (b, n_pos), n (b, n_neg)."""
    diff = p[:, :, None] - n[:, None, :]
    return ((diff > 0).sum(axis=(1, 2)) + 0.5 * (diff == 0).sum(axis=(1, 2))) / (p.shape[1] * n.shape[1])


def auroc_estimate(pos: np.ndarray, neg: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
                   confidence: float = 0.95) -> Estimate:
    """`auroc` with a percentile interval from a stratified bootstrap over organisms (method "bootstrap_organisms";
    "none" with lo = hi = nan when a class is empty). `n` is the number of organisms."""
    p, n = _scores(pos, "positive"), _scores(neg, "negative")
    value = auroc(p, n)
    if not len(p) or not len(n):
        return Estimate(value, float("nan"), float("nan"), len(p) + len(n), "none")
    if n_boot < 1 or not 0 < confidence < 1:
        raise ValueError("n_boot must be >= 1 and confidence in (0, 1)")
    rng = np.random.default_rng(seed)
    bp = p[rng.integers(0, len(p), size=(n_boot, len(p)))]
    bn = n[rng.integers(0, len(n), size=(n_boot, len(n)))]
    boot = _auroc_rows(bp, bn)
    lo, hi = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Estimate(value, float(lo), float(hi), len(p) + len(n), "bootstrap_organisms")


def auroc_p_value(pos: np.ndarray, neg: np.ndarray, *, max_exact: int = 100_000, n_perm: int = 20_000,
                  seed: int = 0) -> float:
    """One-sided permutation p-value of `auroc(pos, neg)`: the fraction of the ways to label len(pos) of the pooled
    organisms "positive" whose AUROC is at least the observed one (every way when there are at most `max_exact`,
    else `n_perm` random ones, the observed labelling counted once). nan when a class is empty."""
    p, n = _scores(pos, "positive"), _scores(neg, "negative")
    if not len(p) or not len(n):
        return float("nan")
    pooled = np.concatenate([p, n])
    k = len(p)
    observed = auroc(p, n) - 1e-12
    if math.comb(len(pooled), k) <= max_exact:
        hits = total = 0
        for chosen in itertools.combinations(range(len(pooled)), k):
            mask = np.zeros(len(pooled), dtype=bool)
            mask[list(chosen)] = True
            hits += auroc(pooled[mask], pooled[~mask]) >= observed
            total += 1
        return hits / total
    rng = np.random.default_rng(seed)
    hits = 1
    for _ in range(n_perm):
        perm = rng.permutation(len(pooled))
        hits += auroc(pooled[perm[:k]], pooled[perm[k:]]) >= observed
    return hits / (n_perm + 1)
