"""Fitting probes layer by layer on train questions and scoring them on held-out test questions.

For every layer and target, a `LinearProbe` is fit on the train questions only (its C chosen by GroupKFold over
train question ids, scored per question), then scored once on the test questions. The layer (and target) is
chosen by that train cross-validation score alone; test accuracy is only ever reported, never compared.

`sweep_layers` solves the probes of a target's layers, label sets, folds and Cs as batched torch problems
(`probes.torch_cv`, `TorchSolver`: device, dtype, tolerance); `solver="sklearn"` runs the reference loop, one
scikit-learn fit after another (`fit_layer`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from jaxtyping import Float
from tqdm.auto import tqdm

from eval.stats import accuracy, select_then_report
from hooks.store import Store
from probes.linear import LinearProbe, ScoreFn
from probes.targets import Answers, Target, probe_scores, question_answers, question_correct, shuffled_labels
from probes.torch_cv import fit_probes
from probes.torch_linear import TorchSolver

MAX_IN_MEMORY_BYTES = 2 * 1024**3  # read every stored layer at once when the rows' residuals fit in this
DEFAULT_SOLVER = TorchSolver()


class FeatureReader:
    """Residuals of some store rows, layer by layer: only those rows are read (all their layers at once when they
    fit in `MAX_IN_MEMORY_BYTES`, else one layer at a time)."""

    def __init__(self, store: Store, rows: np.ndarray) -> None:
        self.store = store
        self.rows = np.unique(np.asarray(rows))
        if not store.has_resid:
            raise ValueError(f"{store.path} has no residuals (captured with resid=False); probes need them")
        _, n_layers, d_model = store.resid_shape
        size = len(self.rows) * n_layers * d_model * store.resid_dtype.itemsize
        self._all = store.resid_rows(self.rows) if size <= MAX_IN_MEMORY_BYTES else None

    def layer(self, pos: int, rows: np.ndarray) -> np.ndarray:
        """(len(rows), d_model) float32 at stored layer position `pos` for store rows `rows` (a subset)."""
        idx = np.searchsorted(self.rows, rows)
        if self._all is not None:
            return self._all[idx, pos, :].astype(np.float32)
        return self.store.resid(pos, self.rows)[idx]


@dataclass
class LayerFit:
    """One probe at one layer: its train CV score and chosen C, its test questions' correctness and (`answers`) each
    test question's answer, gold answer and score."""

    cv: float
    C: float
    test_ids: np.ndarray
    test_correct: np.ndarray
    probe: LinearProbe
    answers: Answers | None = None

    def test_estimate(self) -> dict[str, Any]:
        return accuracy(self.test_correct).to_dict()


def fit_layer(
    target: Target, X: np.ndarray, train: np.ndarray, *, y_train: np.ndarray | None = None,
    probe_kwargs: Mapping[str, Any] | None = None,
) -> LayerFit:
    """Fit on rows where `train` (bool, aligned with target rows); score per question on the other rows.

    `y_train` replaces the train labels (the shuffled-label control); test labels are always the true ones.
    """
    tr = target.subset(train)
    if y_train is not None:
        tr = tr.with_labels(y_train)
    Xtr = X[train]
    probe = LinearProbe(**(probe_kwargs or {})).fit(Xtr, tr.y, tr.groups, score_fn=question_score_fn(tr, Xtr))
    return score_on_test(probe, target.subset(~train), X[~train])


def question_score_fn(tr: Target, Xtr: Float[np.ndarray, "rows d"]) -> ScoreFn:
    """The cross-validation score: per-question accuracy of a fold probe on its validation rows of `tr`."""

    def score_fn(fold: LinearProbe, val: np.ndarray) -> float:
        part = tr.subset(val)
        return float(np.mean(question_correct(part, probe_scores(part, fold, Xtr[val]))[1]))

    return score_fn


def score_on_test(probe: LinearProbe, te: Target, Xte: Float[np.ndarray, "rows d"]) -> LayerFit:
    """Score a fitted probe once on the test rows `te` (features `Xte`)."""
    answers = question_answers(te, probe_scores(te, probe, Xte))
    return LayerFit(probe.cv_score_, probe.C_, answers.qids, answers.correct, probe, answers)


@dataclass
class Sweep:
    """Per target, one `LayerFit` per stored layer position; `kind` is "probe", "shuffled" or "random-init"."""

    kind: str
    fits: dict[str, list[LayerFit]]

    def test_by_layer(self) -> dict[str, list[dict[str, Any]]]:
        return {t: [f.test_estimate() for f in fits] for t, fits in self.fits.items()}

    def cv_by_layer(self) -> dict[str, list[float]]:
        return {t: [f.cv for f in fits] for t, fits in self.fits.items()}


def sweep_layers(
    reader: FeatureReader,
    targets: Sequence[Target],
    train_ids: Sequence[str],
    layer_positions: Sequence[int],
    *,
    kinds: Sequence[str] = ("probe",),
    seed: int = 0,
    probe_kwargs: Mapping[str, Any] | None = None,
    desc: str = "probes",
    solver: TorchSolver | str = DEFAULT_SOLVER,
) -> dict[str, Sweep]:
    """Fit every target at every layer position for each kind: "probe" (true labels) and/or "shuffled"
    (labels shuffled within train questions, same pipeline). Returns kind -> Sweep.

    `solver`: a `TorchSolver` (default: CPU, float32, one layer's folds, Cs and kinds per batch) fits through
    `probes.torch_cv.fit_probes` with the `Cs` and `n_folds` of `probe_kwargs`; "sklearn" fits each probe with
    `LinearProbe(**probe_kwargs)` in turn (the reference).
    """
    train_set = np.asarray(sorted(set(train_ids)))
    masks = {t.name: np.isin(t.groups, train_set) for t in targets}
    for t in targets:
        if not masks[t.name].any() or masks[t.name].all():
            raise ValueError(f"{t.name} target: the split leaves no train or no test questions")
    rng = np.random.default_rng(seed)
    shuffled = {t.name: shuffled_labels(t.subset(masks[t.name]), rng) for t in targets}
    out = {k: Sweep(k, {t.name: [] for t in targets}) for k in kinds}
    positions = list(layer_positions)
    if isinstance(solver, str):
        if solver != "sklearn":
            raise ValueError(f"solver must be 'sklearn' or a TorchSolver, got {solver!r}")
        for pos in tqdm(positions, desc=desc, unit="layer"):
            for t in targets:
                X = reader.layer(pos, t.rows)
                for k in kinds:
                    y = shuffled[t.name] if k == "shuffled" else None
                    out[k].fits[t.name].append(fit_layer(t, X, masks[t.name], y_train=y, probe_kwargs=probe_kwargs))
        return out
    kw = {k: v for k, v in (probe_kwargs or {}).items() if k in ("Cs", "n_folds")}
    with tqdm(total=len(positions) * len(targets), desc=desc, unit="layer") as bar:
        for t in targets:
            tr = t.subset(masks[t.name])
            trs = [tr.with_labels(shuffled[t.name]) if k == "shuffled" else tr for k in kinds]
            fits = _sweep_target(reader, t, masks[t.name], trs, positions, solver, kw, bar)
            for k, f in zip(kinds, fits, strict=True):
                out[k].fits[t.name] = f
    return out


def _sweep_target(
    reader: FeatureReader, t: Target, train: np.ndarray, trs: list[Target], positions: list[int],
    solver: TorchSolver, kw: Mapping[str, Any], bar: tqdm,
) -> list[list[LayerFit]]:
    """One target's fits (per label set in `trs`, per layer), `solver.layers_per_batch` layers per batched solve."""
    te = t.subset(~train)
    fits: list[list[LayerFit]] = [[] for _ in trs]
    start, step = 0, 0
    while start < len(positions):
        first = reader.layer(positions[start], t.rows)
        step = step or solver.layers_per_batch(int(train.sum()), first.shape[1])
        chunk = positions[start:start + step]
        Xtr = np.empty((len(chunk), int(train.sum()), first.shape[1]), dtype=np.float32)
        Xte = np.empty((len(chunk), int((~train).sum()), first.shape[1]), dtype=np.float32)
        for i, pos in enumerate(chunk):
            f = first if i == 0 else reader.layer(pos, t.rows)
            Xtr[i], Xte[i] = f[train], f[~train]
        del first
        probes = fit_probes(Xtr, [tr.y for tr in trs], trs[0].groups, solver=solver, **kw,
                            score_fn=lambda b, j, Xtr=Xtr: question_score_fn(trs[j], Xtr[b]))
        for j in range(len(trs)):
            fits[j].extend(score_on_test(p, te, x) for p, x in zip(probes[j], Xte, strict=True))
        bar.update(len(chunk))
        start += len(chunk)
    return fits


def select_layer(cv: Mapping[Hashable, float], test: Mapping[Hashable, float]) -> dict[str, Any]:
    """Choose the key with the best train-CV score and report its test value (`eval.stats.select_then_report`)."""
    return select_then_report(cv, test)


def ceiling(sweep: Sweep, layers: Sequence[int]) -> dict[str, Any]:
    """The honest ceiling: (target, layer) chosen on train CV over every target and layer, reported on test,
    with the naive max over test and the gap between them."""
    cv, test, est = {}, {}, {}
    for t, fits in sweep.fits.items():
        for layer, f in zip(layers, fits, strict=True):
            cv[(t, layer)], test[(t, layer)] = f.cv, float(np.mean(f.test_correct))
            est[(t, layer)] = f
    sel = select_layer(cv, test)
    (target, layer), (ntarget, nlayer) = sel["chosen"], sel["naive_max_key"]
    return {
        "target": target, "layer": layer, "test_accuracy": est[(target, layer)].test_estimate(),
        "cv_accuracy": sel["dev_value"], "C": est[(target, layer)].C, "selected_on": "train-cv",
        "naive_max": {"target": ntarget, "layer": nlayer, "test_accuracy": est[(ntarget, nlayer)].test_estimate()},
        "gap": sel["gap"], "n_candidates": sel["n_candidates"],
    }
