"""Probes across prompt variants: trained on one variant of an `eval --resid` store, tested on the others.

Questions are split once into train and test (by question id). At every stored layer a probe is fit on the train
questions of the train variant (letter probe on lettered rows, option probe on option-text rows;
`probes.fit.fit_layer`, C by cross-validation on train questions) and scored on the test questions of every
variant of the same kind. The layer is chosen by that train cross-validation alone. Beside each variant's transfer
accuracy at the chosen layer: its prompted accuracy on the same test questions, a probe trained on that variant
itself (its own layer chosen by its own train CV), and a probe trained on shuffled train labels of the train
variant (layer chosen the same way), scored against the true labels.

A representation of "the answer" that a prompt format merely re-labels transfers (transfer near own_probe); one
the format creates does not. Lettered variants that reorder the options keep their displayed-position labels, so
the letter probe is asked for the gold position as that variant shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eval.stats import accuracy, split_ids
from hooks.store import Store
from probes.fit import FeatureReader, LayerFit, fit_layer
from probes.targets import (
    Answers,
    Target,
    load_target,
    probe_scores,
    prompted_answers,
    question_answers,
    shuffled_labels,
)


@dataclass(frozen=True)
class Plan:
    """What one run fits: the target kind, its per-variant targets, the layers and the question split."""

    kind: str  # "letter" or "option"
    targets: dict[str, Target]  # variant -> target (train variant first)
    layer_pos: list[int]  # positions in the store's layer axis
    layers: list[int]  # the stored layer indices at those positions
    train_ids: list[str]
    test_ids: list[str]


def plan(store: Store, *, train_variant: str, test_variants: str = "all", layers: tuple[int, ...] | None = None,
         test_fraction: float = 0.5, seed: int = 0) -> Plan:
    """Validate the arguments against the store (ValueError naming the flag) and lay out the run."""
    if not store.has_resid:
        raise ValueError(f"--store: {store.path} has no residuals; rerun `cli.py eval` with --resid")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    known = store.variants()
    if train_variant not in known:
        raise ValueError(f"--train-variant {train_variant!r} is not in {store.path}; it has {', '.join(known)}")
    lettered = bool(store.mask(variant=train_variant, lettered=True).any())
    kind = "letter" if lettered else "option"
    same_kind = [v for v in known if store.mask(variant=v, lettered=lettered).any()]
    if test_variants.strip() == "all":
        tests = same_kind
    else:
        tests = [v.strip() for v in test_variants.split(",") if v.strip()]
        bad = [v for v in tests if v not in same_kind]
        if bad or not tests:
            raise ValueError(f"--test-variants: {bad or test_variants!r} not among the {kind} variants of the "
                             f"store: {', '.join(same_kind)}")
    names = [train_variant, *[v for v in tests if v != train_variant]]
    stored = list(store.layers)
    if layers is None:
        layers = stored
    else:
        missing = [x for x in layers if x not in stored]
        if missing:
            raise ValueError(f"--layers {missing} are not stored; stored layers: {stored}")
        layers = list(layers)
    targets = {v: load_target(store, kind, v) for v in names}
    qids = sorted(set(targets[train_variant].groups.tolist()))
    if len(qids) < 4:
        raise ValueError(f"--store: {len(qids)} questions; the split needs at least 4")
    train_ids, test_ids = split_ids(qids, 1.0 - test_fraction, seed)
    return Plan(kind, targets, [stored.index(x) for x in layers], layers, train_ids, test_ids)


@dataclass(frozen=True)
class TransferAnswers:
    """Every test question's answer: per variant its prompted answers, and per kind (transfer, own_probe,
    control), variant and layer the probe's answers."""

    prompted: dict[str, Answers]
    by_layer: dict[str, dict[str, list[Answers]]]


def prompted(store: Store, variant: str, kind: str, test_ids: list[str]) -> tuple[dict[str, Any], Answers]:
    """The variant's prompted accuracy on the test questions (Wilson interval), and those questions' answers."""
    a = prompted_answers(store, variant, lettered=kind == "letter")
    test = np.isin(a.qids, test_ids)
    a = Answers(a.qids[test], a.pred[test], a.gold[test], a.correct[test], a.score[test], a.n_choices[test])
    return accuracy(a.correct).to_dict(), a


def _test_answers(fit: LayerFit, target: Target, X: np.ndarray, test: np.ndarray) -> Answers:
    t = target.subset(test)
    return question_answers(t, probe_scores(t, fit.probe, X[test]))


def fit_transfer(store: Store, p: Plan, *, seed: int = 0, control: bool = True
                 ) -> tuple[dict[str, Any], TransferAnswers]:
    """Per layer: the transfer probe (train variant), each variant's own probe and the shuffled control; the
    layers chosen on train CV; per variant its prompted, transfer, own-probe and control test accuracy. Also every
    test question's answers (`TransferAnswers`)."""
    train_variant = next(iter(p.targets))
    train_t = p.targets[train_variant]
    reader = FeatureReader(store, np.concatenate([t.rows for t in p.targets.values()]))
    rng = np.random.default_rng(seed)
    tr_mask = {v: np.isin(t.groups, p.train_ids) for v, t in p.targets.items()}
    te_mask = {v: np.isin(t.groups, p.test_ids) for v, t in p.targets.items()}
    y_shuf = shuffled_labels(train_t.subset(tr_mask[train_variant]), rng) if control else None
    cv: dict[str, list[float]] = {"transfer": [], "control": []}
    own_cv: dict[str, list[float]] = {v: [] for v in p.targets}
    by_layer: dict[str, dict[str, list[Answers]]] = {k: {v: [] for v in p.targets}
                                                     for k in ("transfer", "control", "own_probe")}
    for pos in tqdm(p.layer_pos, desc=f"transfer from {train_variant}", unit="layer"):
        X = {v: reader.layer(pos, t.rows) for v, t in p.targets.items()}
        kinds = [("transfer", None)] + ([("control", y_shuf)] if control else [])
        fits = {}
        for kind, y in kinds:
            fits[kind] = fit = fit_layer(train_t, X[train_variant], tr_mask[train_variant], y_train=y)
            cv[kind].append(fit.cv)
            for v, t in p.targets.items():
                by_layer[kind][v].append(_test_answers(fit, t, X[v], te_mask[v]))
        for v, t in p.targets.items():  # the train variant's own probe is the transfer probe itself
            own = fits["transfer"] if v == train_variant else fit_layer(t, X[v], tr_mask[v])
            own_cv[v].append(own.cv)
            by_layer["own_probe"][v].append(own.answers)

    def chosen(scores: list[float]) -> int:
        """The position with the best train CV score (the first of ties)."""
        finite = [i for i, s in enumerate(scores) if np.isfinite(s)]
        return max(finite, key=lambda i: scores[i])

    at = {"transfer": chosen(cv["transfer"]), "control": chosen(cv["control"]) if control else None}
    def acc(kind: str, v: str, i: int) -> dict[str, Any]:
        return accuracy(by_layer[kind][v][i].correct).to_dict()

    variants, prompted_answers_ = {}, {}
    for v in p.targets:
        own_at = chosen(own_cv[v])
        prompted_acc, prompted_answers_[v] = prompted(store, v, p.kind, p.test_ids)
        variants[v] = {
            "prompted": prompted_acc,
            "transfer": acc("transfer", v, at["transfer"]),
            "transfer_by_layer": [acc("transfer", v, i) for i in range(len(p.layers))],
            "own_probe": acc("own_probe", v, own_at),
            "own_probe_layer": p.layers[own_at],
            "own_probe_by_layer": [acc("own_probe", v, i) for i in range(len(p.layers))],
            "control": (acc("control", v, at["control"]) if control else None),
        }
    doc = {
        "kind": p.kind, "train_variant": train_variant, "layers": p.layers,
        "chosen_layer": p.layers[at["transfer"]], "cv_by_layer": cv["transfer"],
        "control_layer": p.layers[at["control"]] if control else None,
        "n_train_questions": len(p.train_ids), "n_test_questions": len(p.test_ids),
        "chance": float(np.mean(1.0 / train_t.n_choices)), "variants": variants,
    }
    return doc, TransferAnswers(prompted_answers_, {k: d for k, d in by_layer.items() if control or k != "control"})
