"""The batched torch logistic regression against scikit-learn's, problem by problem.

In float64 with a tight tolerance both solvers reach the same optimum of the same objective. scikit-learn is run
with tol=1e-10 here, but scipy's L-BFGS-B also stops once the objective decreases by less than 64 machine epsilons
(relative), which leaves its largest gradient entry near 1e-8 on these correlated features: coefficients agree to
~1e-5 and probabilities to ~1e-6, and the torch solution (gradient <= 1e-9) is the closer of the two. At
scikit-learn's default tol=1e-4 it stops much earlier, which `test_torch_cv.py` covers. float32 (the CPU default)
agrees with float64 to ~1e-3 of the largest coefficient.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from probes.torch_linear import TorchSolver, fit_logistic_batch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _data(n: int = 300, d: int = 10, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Anisotropic, offset features; labels from a noisy linear score (well conditioned, not separable)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) @ (rng.normal(size=(d, d)) * rng.uniform(0.2, 5.0, size=d)) + 30 * rng.normal(size=d)
    Z = StandardScaler().fit_transform(X)
    y = (Z @ rng.normal(size=(d, k)) + rng.gumbel(size=(n, k)) * 1.5).argmax(1)
    return X, y


def _sk(X: np.ndarray, y: np.ndarray, C: float) -> tuple[LogisticRegression, StandardScaler]:
    sc = StandardScaler().fit(X)
    return LogisticRegression(C=C, tol=1e-10, max_iter=100_000).fit(sc.transform(X), y), sc


def _solve(X, codes, masks, Cs, n_classes, dtype=torch.float64, device="cpu", tol=1e-9, **kw):
    """One block; problem p fits rows masks[p] with C Cs[p], standardised like StandardScaler on those rows."""
    stats = [StandardScaler().fit(X[m]) for m in masks]
    t = {"dtype": dtype, "device": device}
    return fit_logistic_batch(
        torch.tensor(X, **t)[None], torch.tensor(np.asarray(codes), device=device),
        torch.tensor(np.asarray(masks, dtype=float), **t), torch.tensor(Cs, **t),
        torch.tensor(np.stack([s.mean_ for s in stats]), **t)[None],
        torch.tensor(np.stack([s.scale_ for s in stats]), **t)[None],
        n_classes=n_classes, tol=tol, **kw,
    )


@pytest.mark.numerics
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [2, 3, 4])
def test_optimum_matches_sklearn(k, device):
    X, y = _data(n=200, k=k, seed=k)
    Cs = [1e-3, 1e-1, 3.0]
    fit = _solve(X, [y] * 3, [np.ones(len(y), bool)] * 3, Cs, k, device=device)
    assert bool(fit.converged.all())
    for p, C in enumerate(Cs):
        ref, sc = _sk(X, y, C)
        coef = fit.coef[0, p].cpu().numpy()[: 1 if k == 2 else k]
        intercept = fit.intercept[0, p].cpu().numpy()[: 1 if k == 2 else k]
        np.testing.assert_allclose(coef, ref.coef_, atol=2e-5 * max(1.0, np.abs(ref.coef_).max()))
        np.testing.assert_allclose(intercept, ref.intercept_, atol=2e-5 * max(1.0, np.abs(ref.intercept_).max()))
        logits = sc.transform(X) @ coef.T + intercept
        logits = np.concatenate([np.zeros_like(logits), logits], 1) if k == 2 else logits
        proba = np.exp(logits - logits.max(1, keepdims=True))
        np.testing.assert_allclose(proba / proba.sum(1, keepdims=True), ref.predict_proba(sc.transform(X)), atol=1e-6)


@pytest.mark.numerics
def test_row_subsets_and_missing_classes_are_separate_sklearn_fits():
    """Problems share one block but see different rows, and so different class sets: 4 classes, 3, 2 (a binary
    model, as scikit-learn fits it) and 1 (nothing to fit)."""
    X, y = _data(n=200, k=4, seed=1)
    masks = [np.ones(len(y), bool), y != 2, np.isin(y, [1, 3]), y == 0]
    fit = _solve(X, [y] * 4, masks, [0.1] * 4, 4)
    for p in range(3):
        ref, sc = _sk(X[masks[p]], y[masks[p]], 0.1)
        rows = ref.classes_ if len(ref.classes_) > 2 else ref.classes_[1:]
        np.testing.assert_allclose(fit.coef[0, p].numpy()[rows], ref.coef_, atol=2e-5)
        np.testing.assert_allclose(fit.intercept[0, p].numpy()[rows], ref.intercept_, atol=2e-5)
        absent = np.setdiff1d(np.arange(4), rows)
        assert not fit.coef[0, p].numpy()[absent].any()
    assert not fit.coef[0, 3].any() and not fit.intercept[0, 3].any() and bool(fit.converged[0, 3])


def test_blocks_are_independent():
    X1, y = _data(seed=2)
    X2, _ = _data(seed=3)
    masks = np.ones((2, len(y)), bool)
    masks[1, ::3] = False
    one = [_solve(X, [y, y], masks, [0.1, 1.0], 3) for X in (X1, X2)]
    t = torch.float64
    stats = [[StandardScaler().fit(X[m]) for m in masks] for X in (X1, X2)]
    both = fit_logistic_batch(
        torch.tensor(np.stack([X1, X2]), dtype=t), torch.tensor(np.stack([y, y])),
        torch.tensor(masks, dtype=t), torch.tensor([0.1, 1.0], dtype=t),
        torch.tensor([[s.mean_ for s in st] for st in stats], dtype=t),
        torch.tensor([[s.scale_ for s in st] for st in stats], dtype=t), n_classes=3, tol=1e-9)
    for b in range(2):
        np.testing.assert_allclose(both.coef[b].numpy(), one[b].coef[0].numpy(), atol=1e-7)


@pytest.mark.parametrize("n", [40, 300])  # fewer rows than features (Gram preconditioner) and more
def test_float32_close_to_float64(n):
    X, y = _data(n=n, d=60, k=3, seed=4)
    args = (X, [y] * 3, [np.ones(len(y), bool)] * 3, [0.01, 0.3, 3.0], 3)
    hi, lo = _solve(*args), _solve(*args, dtype=torch.float32, tol=TorchSolver().tol)
    assert bool(hi.converged.all()) and bool(lo.converged.all())
    np.testing.assert_allclose(lo.coef.double().numpy(), hi.coef.numpy(), atol=1e-3 * float(hi.coef.abs().max()))


def test_warm_start_reaches_the_same_optimum():
    X, y = _data(seed=5)
    args = (X, [y], [np.ones(len(y), bool)], [1.0], 3)
    cold = _solve(*args)
    init = torch.cat([cold.coef, cold.intercept[..., None]], -1) * 0.5
    warm = _solve(*args, init=init)
    np.testing.assert_allclose(warm.coef.numpy(), cold.coef.numpy(), atol=1e-7)


def test_bad_shapes_and_options_raise():
    X, y = _data()
    t = torch.float64
    with pytest.raises(ValueError, match="shapes disagree"):
        fit_logistic_batch(torch.tensor(X, dtype=t)[None], torch.tensor(y[None, :-1]), torch.ones(1, len(y) - 1),
                           torch.ones(1), torch.zeros(1, 1, X.shape[1]), torch.ones(1, 1, X.shape[1]), n_classes=3)
    with pytest.raises(ValueError, match="dtype"):
        TorchSolver(dtype="float16")
    with pytest.raises(ValueError, match="bad solver options"):
        TorchSolver(tol=0)
