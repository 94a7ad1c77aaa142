"""A linear probe: standardised features -> logistic regression, C chosen by grouped cross-validation.

`LinearProbe.fit(X, y, groups)` picks the inverse regularisation strength C from a small grid by `GroupKFold`
over `groups` (question ids: no question is on both sides of a fold), then refits on every row with that C.
Fitting uses scikit-learn (`StandardScaler` + lbfgs `LogisticRegression`, one BLAS thread) by default, or with
`solver=TorchSolver(...)` the same folds, standardisation, C grid, scoring and refit solved in torch on any device
(`probes.torch_cv`); predicting uses the extracted arrays, so a saved and reloaded probe gives the same scores
without scikit-learn or torch objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxtyping import Float
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from probes.torch_linear import TorchSolver

DEFAULT_CS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)

# score_fn(fold_probe, val_rows) -> score to maximise; val_rows index the arrays given to fit().
ScoreFn = Callable[["LinearProbe", np.ndarray], float]


class LinearProbe:
    """Logistic-regression probe on standardised features (binary or multinomial).

    After `fit`: `C_` (the chosen C), `cv_scores_` (C -> mean validation score over folds), `cv_score_` (the
    chosen C's), `classes_`, `mean_`, `scale_`, `coef_` (classes or 1, d), `intercept_`.

    `max_iter` and `tol` are scikit-learn's; `solver` is "sklearn" or a `probes.torch_linear.TorchSolver`, which
    carries its own (tighter) tolerance and its device.
    """

    def __init__(
        self,
        Cs: Sequence[float] = DEFAULT_CS,
        *,
        n_folds: int = 4,
        max_iter: int = 300,
        tol: float = 1e-4,
        solver: str | TorchSolver = "sklearn",
    ) -> None:
        if not Cs or any(c <= 0 for c in Cs):
            raise ValueError(f"Cs must be a non-empty list of positive numbers, got {Cs!r}")
        if n_folds < 2:
            raise ValueError(f"n_folds must be >= 2, got {n_folds}")
        if isinstance(solver, str) and solver != "sklearn":
            raise ValueError(f"solver must be 'sklearn' or a TorchSolver, got {solver!r}")
        self.Cs = tuple(sorted(float(c) for c in Cs))
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.tol = tol
        self.solver = solver
        self.provenance: dict[str, Any] = {}

    # ------------------------------------------------------------------ fitting

    def _lr(self, C: float, warm: bool = False) -> LogisticRegression:
        return LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol, warm_start=warm)

    def fit(
        self,
        X: Float[np.ndarray, "rows d"],
        y: np.ndarray,
        groups: np.ndarray | None = None,
        *,
        score_fn: ScoreFn | None = None,
    ) -> LinearProbe:
        """Choose C by GroupKFold over `groups` (each row its own group if None), then refit on all rows.

        `score_fn(fold_probe, val_rows)` scores one fold (default: row accuracy); ties go to the smaller C.
        """
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be (rows, d) with one label per row; got X {X.shape}, y {y.shape}")
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        if len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries, y has {len(y)}")
        if not isinstance(self.solver, str):
            from probes.torch_cv import fit_probes

            fitted = fit_probes(X[None], [y], groups, Cs=self.Cs, n_folds=self.n_folds, solver=self.solver,
                                score_fn=None if score_fn is None else lambda _b, _j: score_fn)[0][0]
            self.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
            return self
        with threadpool_limits(1):
            self.cv_scores_ = self._cross_validate(X, y, groups, score_fn)
            best = choose_C(self.cv_scores_, self.Cs)
            self._fit_fixed(X, y, best)
            self.cv_score_ = self.cv_scores_[best]
        return self

    def _cross_validate(
        self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, score_fn: ScoreFn | None
    ) -> dict[float, float]:
        folds = group_folds(groups, self.n_folds)
        if not folds:
            return {c: float("nan") for c in self.Cs}
        totals = {c: [] for c in self.Cs}
        for train, val in folds:
            fold = LinearProbe(self.Cs, n_folds=self.n_folds, max_iter=self.max_iter, tol=self.tol)
            scaler = StandardScaler().fit(X[train])
            Xs = scaler.transform(X[train])
            lr = self._lr(self.Cs[0], warm=True)  # ascending C: each fit starts from the last solution
            for c in self.Cs:
                fold._set(scaler.mean_, scaler.scale_, *_fit_lr(lr.set_params(C=c), Xs, y[train]))
                score = score_fn(fold, val) if score_fn is not None else fold.score(X[val], y[val])
                totals[c].append(score)
        return {c: float(np.mean(v)) for c, v in totals.items()}

    def _fit_fixed(self, X: np.ndarray, y: np.ndarray, C: float) -> None:
        scaler = StandardScaler().fit(X)
        self._set(scaler.mean_, scaler.scale_, *_fit_lr(self._lr(C), scaler.transform(X), y))
        self.C_ = C

    def _set(
        self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray
    ) -> LinearProbe:
        """Set the fitted arrays: standardisation (mean, scale), then coef (classes or 1, d) and intercept on it."""
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.scale_ = np.asarray(scale, dtype=np.float64)
        self.coef_, self.intercept_, self.classes_ = coef, intercept, classes
        return self

    # ------------------------------------------------------------------ predicting

    def decision_function(self, X: Float[np.ndarray, "rows d"]) -> np.ndarray:
        """Like scikit-learn: (rows,) for two classes (positive -> classes_[1]), else (rows, classes)."""
        z = np.array(X, dtype=np.float64)  # in place below: the same numbers as (X - mean_) / scale_
        z -= self.mean_
        z /= self.scale_
        out = z @ self.coef_.T + self.intercept_
        return out[:, 0] if out.shape[1] == 1 else out

    def class_scores(self, X: Float[np.ndarray, "rows d"]) -> Float[np.ndarray, "rows classes"]:
        """One column per entry of `classes_` (two classes: [0, logit]); softmax of it is predict_proba."""
        s = self.decision_function(X)
        if s.ndim == 1:
            return np.zeros((len(s), 1)) if len(self.classes_) == 1 else np.stack([np.zeros_like(s), s], axis=1)
        return s

    def predict_proba(self, X: Float[np.ndarray, "rows d"]) -> Float[np.ndarray, "rows classes"]:
        s = self.class_scores(X)
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: Float[np.ndarray, "rows d"]) -> np.ndarray:
        return self.classes_[self.class_scores(X).argmax(axis=1)]

    def score(self, X: Float[np.ndarray, "rows d"], y: np.ndarray) -> float:
        """Row accuracy."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
        """Write `path` (.npz arrays) and `path` with .json (C, CV scores, provenance), each atomically."""
        path = Path(path).with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, mean=self.mean_, scale=self.scale_, coef=self.coef_, intercept=self.intercept_,
                     classes=self.classes_)
        os.replace(tmp, path)
        meta = {"Cs": list(self.Cs), "n_folds": self.n_folds, "max_iter": self.max_iter, "tol": self.tol,
                "solver": self.solver if isinstance(self.solver, str) else {"torch": asdict(self.solver)},
                "C": self.C_, "cv_scores": {str(c): s for c, s in getattr(self, "cv_scores_", {}).items()},
                "provenance": provenance if provenance is not None else self.provenance}
        jpath = path.with_suffix(".json")
        jtmp = jpath.with_name(jpath.name + ".tmp")
        jtmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.replace(jtmp, jpath)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LinearProbe:
        """A probe written by `save` (predicting only; `provenance` holds what was saved with it)."""
        path = Path(path).with_suffix(".npz")
        meta = json.loads(path.with_suffix(".json").read_text())
        probe = cls(meta["Cs"], n_folds=meta["n_folds"], max_iter=meta["max_iter"], tol=meta["tol"],
                    solver=_solver_from_meta(meta.get("solver", "sklearn")))
        with np.load(path) as z:
            probe.mean_, probe.scale_, probe.coef_ = z["mean"], z["scale"], z["coef"]
            probe.intercept_, probe.classes_ = z["intercept"], z["classes"]
        probe.C_ = meta["C"]
        probe.cv_scores_ = {float(c): s for c, s in meta["cv_scores"].items()}
        probe.provenance = meta["provenance"]
        return probe


def _fit_lr(lr: LogisticRegression, Xs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coef, intercept, classes) of `lr` fit on (Xs, y); a single class gives a constant predictor."""
    classes = np.unique(y)
    if len(classes) < 2:
        return np.zeros((1, Xs.shape[1])), np.zeros(1), classes
    lr.fit(Xs, y)
    return lr.coef_.astype(np.float64), lr.intercept_.astype(np.float64), lr.classes_


def group_folds(groups: np.ndarray, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) of `GroupKFold` over `groups` (at most one fold per group); [] if < 2 groups."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        return []
    index = np.zeros((len(groups), 1))
    return list(GroupKFold(n_splits=min(n_folds, n_groups)).split(index, groups=groups))


def choose_C(cv_scores: Mapping[float, float], Cs: Sequence[float]) -> float:
    """The C with the best finite cross-validation score (ties to the smaller C); the middle of `Cs` if none."""
    finite = [c for c, s in cv_scores.items() if np.isfinite(s)]
    return max(finite, key=lambda c: (cv_scores[c], -c)) if finite else Cs[len(Cs) // 2]


def _solver_from_meta(meta: str | dict[str, Any]) -> str | TorchSolver:
    if isinstance(meta, str):
        return meta
    from probes.torch_linear import TorchSolver

    return TorchSolver(**meta["torch"])
