"""A linear probe: standardised features -> logistic regression, C chosen by grouped cross-validation.

`LinearProbe.fit(X, y, groups)` picks the inverse regularisation strength C from a small grid by `GroupKFold`
over `groups` (question ids: no question is on both sides of a fold), then refits on every row with that C.
Fitting uses scikit-learn (`StandardScaler` + lbfgs `LogisticRegression`, one BLAS thread); predicting uses the
extracted arrays, so a saved and reloaded probe gives the same scores without scikit-learn objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

DEFAULT_CS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)

# score_fn(fold_probe, val_rows) -> score to maximise; val_rows index the arrays given to fit().
ScoreFn = Callable[["LinearProbe", np.ndarray], float]


class LinearProbe:
    """Logistic-regression probe on standardised features (binary or multinomial).

    After `fit`: `C_` (the chosen C), `cv_scores_` (C -> mean validation score over folds), `cv_score_` (the
    chosen C's), `classes_`, `mean_`, `scale_`, `coef_` (classes or 1, d), `intercept_`.
    """

    def __init__(
        self,
        Cs: Sequence[float] = DEFAULT_CS,
        *,
        n_folds: int = 4,
        max_iter: int = 300,
        tol: float = 1e-4,
    ) -> None:
        if not Cs or any(c <= 0 for c in Cs):
            raise ValueError(f"Cs must be a non-empty list of positive numbers, got {Cs!r}")
        if n_folds < 2:
            raise ValueError(f"n_folds must be >= 2, got {n_folds}")
        self.Cs = tuple(sorted(float(c) for c in Cs))
        self.n_folds = n_folds
        self.max_iter = max_iter
        self.tol = tol
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
        with threadpool_limits(1):
            self.cv_scores_ = self._cross_validate(X, y, groups, score_fn)
            finite = [c for c, s in self.cv_scores_.items() if np.isfinite(s)]
            best = max(finite, key=lambda c: (self.cv_scores_[c], -c)) if finite else self.Cs[len(self.Cs) // 2]
            self._fit_fixed(X, y, best)
            self.cv_score_ = self.cv_scores_[best]
        return self

    def _cross_validate(
        self, X: np.ndarray, y: np.ndarray, groups: np.ndarray, score_fn: ScoreFn | None
    ) -> dict[float, float]:
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            return {c: float("nan") for c in self.Cs}
        folds = GroupKFold(n_splits=min(self.n_folds, n_groups)).split(X, y, groups)
        totals = {c: [] for c in self.Cs}
        for train, val in folds:
            fold = LinearProbe(self.Cs, n_folds=self.n_folds, max_iter=self.max_iter, tol=self.tol)
            scaler = StandardScaler().fit(X[train])
            Xs = scaler.transform(X[train])
            lr = self._lr(self.Cs[0], warm=True)  # ascending C: each fit starts from the last solution
            for c in self.Cs:
                fold._set(scaler, *_fit_lr(lr.set_params(C=c), Xs, y[train]))
                score = score_fn(fold, val) if score_fn is not None else fold.score(X[val], y[val])
                totals[c].append(score)
        return {c: float(np.mean(v)) for c, v in totals.items()}

    def _fit_fixed(self, X: np.ndarray, y: np.ndarray, C: float) -> None:
        scaler = StandardScaler().fit(X)
        self._set(scaler, *_fit_lr(self._lr(C), scaler.transform(X), y))
        self.C_ = C

    def _set(self, scaler: StandardScaler, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray) -> None:
        self.mean_ = scaler.mean_.astype(np.float64)
        self.scale_ = scaler.scale_.astype(np.float64)
        self.coef_, self.intercept_, self.classes_ = coef, intercept, classes

    # ------------------------------------------------------------------ predicting

    def decision_function(self, X: Float[np.ndarray, "rows d"]) -> np.ndarray:
        """Like scikit-learn: (rows,) for two classes (positive -> classes_[1]), else (rows, classes)."""
        z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
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
        probe = cls(meta["Cs"], n_folds=meta["n_folds"], max_iter=meta["max_iter"], tol=meta["tol"])
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
