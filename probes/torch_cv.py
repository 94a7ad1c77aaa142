"""`LinearProbe`'s grouped cross-validation for many layers and label sets at once, solved in torch.

Same folds (`GroupKFold` over question ids), the same `StandardScaler` statistics per fold (float64, constant
features scaled by 1), the same C grid, score function and choice of C (ties to the smaller C), the same refit on
every training row. What differs is the solver: every (layer, label set, fold or refit, C) problem is one column of
one batched L-BFGS (`probes.torch_linear`), on any torch device. The refits at every C are solved in the same
batch as the folds; only the one at the C chosen by cross-validation is kept, so nothing about the choice changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from jaxtyping import Float
from threadpoolctl import threadpool_limits

from probes.linear import DEFAULT_CS, LinearProbe, ScoreFn, choose_C, group_folds
from probes.torch_linear import BatchFit, TorchSolver, fit_logistic_batch

# score_fn(block, label_set) -> the ScoreFn of that layer and label set (None: row accuracy)
BlockScoreFn = Callable[[int, int], ScoreFn | None]


def standardisation(
    X: Float[np.ndarray, "rows d"], masks: Float[np.ndarray, "splits rows"]
) -> tuple[Float[np.ndarray, "splits d"], Float[np.ndarray, "splits d"]]:
    """`StandardScaler().fit(X[mask])` (mean_, scale_) for each row mask, in float64 as scikit-learn computes them.

    One pass: sums over each mask of the globally centred rows and their squares; a (mask, feature) whose variance
    comes out below 1e-6 of its mean square (nearly constant on the mask) is recomputed in two passes, so that
    scikit-learn's constant-feature rule sees the same numbers.
    """
    Xc = np.array(X, dtype=np.float64)
    centre = Xc.mean(0)
    Xc -= centre
    M = np.asarray(masks, dtype=np.float64)
    n = M.sum(1)[:, None]
    delta = (M @ Xc) / n
    msq = (M @ np.square(Xc, out=Xc)) / n
    var = np.maximum(msq - np.square(delta), 0.0)
    mean = delta + centre
    for s, f in zip(*np.nonzero(var <= 1e-6 * msq), strict=True):
        col = np.asarray(X[np.asarray(masks[s], dtype=bool), f], dtype=np.float64)
        mean[s, f] = col.mean()
        var[s, f] = np.square(col - mean[s, f]).mean()
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + np.square(n * mean * eps)  # sklearn.preprocessing._data._is_constant_feature
    scale = np.sqrt(var)
    scale[constant | (scale < 10 * eps)] = 1.0
    return mean, scale


def fit_probes(
    X: Float[np.ndarray, "blocks rows d"],
    labels: Sequence[np.ndarray],
    groups: np.ndarray | None,
    *,
    Cs: Sequence[float] = DEFAULT_CS,
    n_folds: int = 4,
    score_fn: BlockScoreFn | None = None,
    solver: TorchSolver | None = None,
) -> list[list[LinearProbe]]:
    """probes[j][b]: a fitted `LinearProbe` of label set `labels[j]` on block `X[b]` (e.g. one layer's rows), C
    chosen by GroupKFold over `groups`, as `LinearProbe(Cs, n_folds=n_folds).fit(X[b], labels[j], groups,
    score_fn=score_fn(b, j))` would choose it; the blocks are solved `solver.layers_per_batch` at a time."""
    solver = solver or TorchSolver()
    with threadpool_limits(1, user_api="blas"), solver.execution():  # numpy's BLAS: small products
        return _fit_probes(X, labels, groups, Cs, n_folds, score_fn, solver)


def _fit_probes(
    X: np.ndarray, labels: Sequence[np.ndarray], groups: np.ndarray | None, Cs: Sequence[float], n_folds: int,
    score_fn: BlockScoreFn | None, solver: TorchSolver,
) -> list[list[LinearProbe]]:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3 or any(np.shape(y) != X.shape[1:2] for y in labels) or not labels:
        raise ValueError(f"X must be (blocks, rows, d) with label sets of one label per row; got X {X.shape}, "
                         f"labels {[np.shape(y) for y in labels]}")
    groups = np.arange(X.shape[1]) if groups is None else np.asarray(groups)
    if len(groups) != X.shape[1]:
        raise ValueError(f"groups has {len(groups)} entries, X has {X.shape[1]} rows")
    Cs = tuple(sorted(float(c) for c in Cs))
    folds = group_folds(groups, n_folds)
    masks = np.zeros((len(folds) + 1, X.shape[1]), dtype=bool)  # splits: the folds' train rows, then every row
    for s, (train, _) in enumerate(folds):
        masks[s, train] = True
    masks[-1] = True
    values = np.unique(np.concatenate([np.asarray(y) for y in labels]))
    codes = [np.searchsorted(values, y) for y in labels]
    present = [[np.unique(c[m]) for m in masks] for c in codes]  # class codes each (label set, split) sees
    out: list[list[LinearProbe]] = [[] for _ in labels]
    step = solver.layers_per_batch(X.shape[1], X.shape[2])
    for start in range(0, len(X), step):
        blocks = range(start, min(start + step, len(X)))
        stats = [standardisation(X[b], masks) for b in blocks]
        fit = _solve(X[blocks.start:blocks.stop], stats, codes, masks, Cs, len(values), solver)
        for j, y in enumerate(labels):
            for i, b in enumerate(blocks):
                sfn = score_fn(b, j) if score_fn is not None else None
                probes = [[_probe(fit, i, _index(j, s, c, len(masks), len(Cs)), stats[i], s, present[j][s], values,
                                  Cs, n_folds, solver) for c in range(len(Cs))] for s in range(len(masks))]
                cv = {C: float("nan") for C in Cs}
                if folds:
                    cv = {C: float(np.mean([sfn(probes[s][c], val) if sfn is not None
                                            else probes[s][c].score(X[b][val], y[val])
                                            for s, (_, val) in enumerate(folds)])) for c, C in enumerate(Cs)}
                best = choose_C(cv, Cs)
                final = probes[-1][Cs.index(best)]
                final.C_, final.cv_scores_, final.cv_score_ = best, cv, cv[best]
                out[j].append(final)
    return out


def _index(label_set: int, split: int, c: int, n_splits: int, n_cs: int) -> int:
    return (label_set * n_splits + split) * n_cs + c


def _solve(
    X: np.ndarray, stats: list[tuple[np.ndarray, np.ndarray]], codes: list[np.ndarray], masks: np.ndarray,
    Cs: tuple[float, ...], n_classes: int, solver: TorchSolver,
) -> BatchFit:
    """One batched solve of every (label set, split, C) problem on blocks X, whose features are centred first
    (the mean of every row, rounded to the solve dtype): large offsets, like a residual stream's massive
    activations, would otherwise cancel in float32 products; each problem's own mean is taken relative to it."""
    dev, dt = torch.device(solver.device), solver.torch_dtype
    n_splits, n_cs = len(masks), len(Cs)
    ref = torch.as_tensor(np.stack([m[-1] for m, _ in stats]), dtype=dt)  # (B, d)
    G = torch.as_tensor(X).to(dev, dt, copy=True).sub_(ref[:, None].to(dev))
    mean = np.stack([m - ref[i].double().numpy() for i, (m, _) in enumerate(stats)])  # (B, splits, d)
    scale = np.stack([s for _, s in stats])
    per = np.array([s for _ in codes for s in range(n_splits) for _ in range(n_cs)])  # split of each problem

    def t(a: np.ndarray, dtype: torch.dtype = dt) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype).to(dev)

    fit = fit_logistic_batch(
        G,
        t(np.stack([c for c in codes for _ in range(n_splits * n_cs)]), torch.long),
        t(masks[per].astype(np.float64)),
        t(np.tile(np.asarray(Cs), len(codes) * n_splits)),
        t(mean[:, per]),
        t(scale[:, per]),
        n_classes=n_classes, tol=solver.tol, max_iter=solver.max_iter, history=solver.history,
    )
    return BatchFit(*(x.cpu() for x in (fit.coef, fit.intercept, fit.n_iter, fit.grad_max, fit.converged)))


def _probe(
    fit: BatchFit, block: int, problem: int, stats: tuple[np.ndarray, np.ndarray], split: int, present: np.ndarray,
    values: np.ndarray, Cs: tuple[float, ...], n_folds: int, solver: TorchSolver,
) -> LinearProbe:
    """The LinearProbe of one solved problem, shaped as scikit-learn shapes it: one class -> a constant probe,
    two -> one row of coef_ (the second class's logit), more -> one row per class present (`present`: codes)."""
    coef = fit.coef[block, problem].double().numpy()
    intercept = fit.intercept[block, problem].double().numpy()
    probe = LinearProbe(Cs, n_folds=n_folds, solver=solver)
    if len(present) < 2:
        coef, intercept = np.zeros((1, coef.shape[1])), np.zeros(1)
    elif len(present) == 2:
        col = 0 if len(values) <= 2 else present[1]
        coef, intercept = coef[col:col + 1], intercept[col:col + 1]
    else:
        coef, intercept = coef[present], intercept[present]
    return probe._set(stats[0][split], stats[1][split], coef, intercept, values[present])
