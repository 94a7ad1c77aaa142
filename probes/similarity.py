"""Similarity of two activation matrices whose rows are the same prompts (pure numpy).

- linear CKA (Kornblith et al. 2019), centred Gram matrices; `debiased=True` uses the unbiased HSIC estimator
  (Song et al. 2012), which stays near 0 for unrelated activations even when n < d, where plain CKA is inflated;
- mean cosine of paired rows, and the relative distance `mean_i ||x_i - y_i|| / mean_i ||y_i||`.

Undefined values (CKA of a constant matrix) are NaN, never an error.
"""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import Float


def _rows(x: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"{what}: need two (n, d) matrices with the same rows, got {a.shape} and {b.shape}")
    return a, b


def _center_gram(gram: np.ndarray, debiased: bool) -> np.ndarray:
    g = gram.copy()
    n = g.shape[0]
    if not debiased:
        means = g.mean(0)
        return g - means[:, None] - means[None, :] + means.mean()
    np.fill_diagonal(g, 0.0)
    means = g.sum(0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    g -= means[:, None] + means[None, :]
    np.fill_diagonal(g, 0.0)
    return g


def linear_cka(x: Float[np.ndarray, "n d1"], y: Float[np.ndarray, "n d2"], *, debiased: bool = False) -> float:
    """Linear CKA between two activation matrices over the same n rows; NaN if either has no variance."""
    a, b = _rows(x, y, "linear_cka")
    if debiased and a.shape[0] < 4:
        raise ValueError(f"debiased CKA needs at least 4 rows, got {a.shape[0]}")
    kx, ky = _center_gram(a @ a.T, debiased), _center_gram(b @ b.T, debiased)
    hsic = float((kx * ky).sum())
    nx, ny = float(np.sqrt((kx * kx).sum())), float(np.sqrt((ky * ky).sum()))
    scale = float(max(np.abs(a @ a.T).max(), np.abs(b @ b.T).max(), 1e-300))
    if nx <= 1e-12 * scale * a.shape[0] or ny <= 1e-12 * scale * a.shape[0]:
        return math.nan
    return hsic / (nx * ny)


def mean_cosine(x: Float[np.ndarray, "n d"], y: Float[np.ndarray, "n d"]) -> float:
    """Mean over rows of cos(x_i, y_i); rows where either vector is zero are left out (NaN if all are)."""
    a, b = _rows(x, y, "mean_cosine")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ok = (na > 0) & (nb > 0)
    if not ok.any():
        return math.nan
    return float(np.mean((a[ok] * b[ok]).sum(1) / (na[ok] * nb[ok])))


def relative_distance(x: Float[np.ndarray, "n d"], y: Float[np.ndarray, "n d"]) -> float:
    """`mean_i ||x_i - y_i|| / mean_i ||y_i||`: how far x sits from the reference y, in units of y's norm."""
    a, b = _rows(x, y, "relative_distance")
    den = float(np.linalg.norm(b, axis=1).mean())
    num = float(np.linalg.norm(a - b, axis=1).mean())
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den
