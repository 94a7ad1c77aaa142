"""Probes across prompt variants (`python cli.py transfer`): trained on one variant, tested on the others.

Reads the store of an `eval --resid` run (every variant's residuals, same questions). Questions are split once into
train and test (by question id). At every stored layer a probe is fit on the train questions of `--train-variant`
(letter probe on lettered rows, option probe on option-text rows; `probes.fit.fit_layer`, C by cross-validation
on train questions) and scored on the test questions of every variant of the same kind. The layer is chosen by
that train cross-validation alone. Beside each variant's transfer accuracy at the chosen layer the results give:

- ``prompted``: the variant's own prompted accuracy on the same test questions (argmax of the answer logits, or of
  the options' log-likelihood);
- ``own_probe``: a probe trained on that variant itself (its layer chosen by its own train cross-validation);
- ``control``: a probe trained on shuffled train labels of `--train-variant` (layer chosen the same way), scored
  against the true labels.

A representation of "the answer" that a prompt format merely re-labels transfers (transfer near own_probe); one
the format creates does not. Lettered variants that reorder the options keep their displayed-position labels, so
the letter probe is asked for the gold position as that variant shows it.

Writes DIR/results.json (schema gaplens.transfer/1), DIR/transfer.csv and DIR/transfer_by_layer.png; DIR defaults
to <eval run>/transfer-<train variant>.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eval.io import save_png, write_csv, write_json
from eval.provenance import config_hash, stamp, to_jsonable
from eval.stats import accuracy, split_ids
from hooks.store import Store, StoreError
from probes.fit import FeatureReader, LayerFit, fit_layer
from probes.targets import Target, load_target, probe_scores, prompted_correct, question_correct, shuffled_labels

log = logging.getLogger(__name__)

SCHEMA = "gaplens.transfer/1"
RESULTS_NAME, CSV_NAME, PNG_NAME = "results.json", "transfer.csv", "transfer_by_layer.png"


@dataclass(frozen=True)
class Config:
    """Probes trained on one prompt variant of an eval store and tested on the others."""

    store: str = field(default="", metadata={"help": "an `eval --resid` run directory, or its activations.h5"})
    train_variant: str = field(default="default", metadata={"help": "the variant the probes are trained on"})
    test_variants: str = field(default="all", metadata={
        "help": "comma-separated variants to test on, or all (every variant of the same kind in the store)"})
    layers: tuple[int, ...] | None = field(default=None, metadata={"help": "stored resid layers to use (default all)"})
    test_fraction: float = field(default=0.5, metadata={"help": "fraction of questions held out for testing"})
    seed: int = field(default=0, metadata={"help": "seed for the train/test split and the shuffled control"})
    control: bool = field(default=True, metadata={"help": "also fit the shuffled-label control"})
    out: str | None = field(default=None, metadata={"help": "output directory (default <run>/transfer-<variant>)"})


def store_path(cfg: Config) -> Path:
    p = Path(cfg.store)
    return p / "activations.h5" if p.is_dir() else p


def out_dir(cfg: Config) -> Path:
    if cfg.out:
        return Path(cfg.out)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", cfg.train_variant).strip("-.")
    return store_path(cfg).parent / f"transfer-{safe}"


@dataclass(frozen=True)
class Plan:
    """What one run fits: the target kind, its per-variant targets, the layers and the question split."""

    kind: str  # "letter" or "option"
    targets: dict[str, Target]  # variant -> target (train variant first)
    layer_pos: list[int]  # positions in the store's layer axis
    layers: list[int]  # the stored layer indices at those positions
    train_ids: list[str]
    test_ids: list[str]


def plan(cfg: Config, store: Store) -> Plan:
    """Validate `cfg` against the store (ValueError naming the flag) and lay out the run."""
    if not store.has_resid:
        raise ValueError(f"--store: {store.path} has no residuals; rerun `cli.py eval` with --resid")
    if not 0.0 < cfg.test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in (0, 1), got {cfg.test_fraction}")
    known = store.variants()
    if cfg.train_variant not in known:
        raise ValueError(f"--train-variant {cfg.train_variant!r} is not in {store.path}; it has {', '.join(known)}")
    lettered = bool(store.mask(variant=cfg.train_variant, lettered=True).any())
    kind = "letter" if lettered else "option"
    same_kind = [v for v in known if store.mask(variant=v, lettered=lettered).any()]
    if cfg.test_variants.strip() == "all":
        tests = same_kind
    else:
        tests = [v.strip() for v in cfg.test_variants.split(",") if v.strip()]
        bad = [v for v in tests if v not in same_kind]
        if bad or not tests:
            raise ValueError(f"--test-variants: {bad or cfg.test_variants!r} not among the {kind} variants of the "
                             f"store: {', '.join(same_kind)}")
    names = [cfg.train_variant, *[v for v in tests if v != cfg.train_variant]]
    stored = list(store.layers)
    if cfg.layers is None:
        layers = stored
    else:
        missing = [x for x in cfg.layers if x not in stored]
        if missing:
            raise ValueError(f"--layers {missing} are not stored; stored layers: {stored}")
        layers = list(cfg.layers)
    targets = {v: load_target(store, kind, v) for v in names}
    qids = sorted(set(targets[cfg.train_variant].groups.tolist()))
    if len(qids) < 4:
        raise ValueError(f"--store: {len(qids)} questions; the split needs at least 4")
    train_ids, test_ids = split_ids(qids, 1.0 - cfg.test_fraction, cfg.seed)
    return Plan(kind, targets, [stored.index(x) for x in layers], layers, train_ids, test_ids)


def prompted(store: Store, variant: str, kind: str, test_ids: list[str]) -> dict[str, Any]:
    """The variant's prompted accuracy on the test questions (Wilson interval)."""
    qids, correct = prompted_correct(store, variant, lettered=kind == "letter")
    return accuracy(correct[np.isin(qids, test_ids)]).to_dict()


def _test_correct(fit: LayerFit, target: Target, X: np.ndarray, test: np.ndarray) -> np.ndarray:
    t = target.subset(test)
    return question_correct(t, probe_scores(t, fit.probe, X[test]))[1]


def run(cfg: Config) -> Path:
    """Fit, score and write DIR/results.json, transfer.csv and transfer_by_layer.png."""
    path = store_path(cfg)
    if not cfg.store:
        raise ValueError("--store is required: an `eval --resid` run directory or its activations.h5")
    try:
        store = Store(path)
    except StoreError as exc:
        raise ValueError(f"--store: {exc}") from None
    with store:
        p = plan(cfg, store)
        out = out_dir(cfg)
        chash = config_hash(cfg)
        res_path = out / RESULTS_NAME
        if res_path.exists():
            try:
                old = json.loads(res_path.read_text())
            except json.JSONDecodeError:
                old = {}
            if old.get("config_hash") == chash and old.get("store_config_hash") == store.file.attrs.get("config_hash"):
                log.info("reusing finished transfer run %s", out)
                return out
        doc = _fit_all(cfg, store, p)
        doc.update(schema=SCHEMA, config=to_jsonable(cfg), config_hash=chash,
                   store_config_hash=store.file.attrs.get("config_hash"),
                   provenance=stamp(**{k: store.provenance.get(k) for k in
                                       ("model", "weight_hash", "task", "split", "n_questions")},
                                    seed=cfg.seed, train_variant=cfg.train_variant, store=str(path),
                                    capture_package_version=store.provenance.get("package_version")))
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / CSV_NAME, doc)
    _write_png(out / PNG_NAME, doc)
    write_json(res_path, doc)
    return out


def _fit_all(cfg: Config, store: Store, p: Plan) -> dict[str, Any]:
    train_t = p.targets[cfg.train_variant]
    reader = FeatureReader(store, np.concatenate([t.rows for t in p.targets.values()]))
    rng = np.random.default_rng(cfg.seed)
    tr_mask = {v: np.isin(t.groups, p.train_ids) for v, t in p.targets.items()}
    te_mask = {v: np.isin(t.groups, p.test_ids) for v, t in p.targets.items()}
    y_shuf = shuffled_labels(train_t.subset(tr_mask[cfg.train_variant]), rng) if cfg.control else None
    cv: dict[str, list[float]] = {"transfer": [], "control": []}
    own_cv: dict[str, list[float]] = {v: [] for v in p.targets}
    by_layer: dict[str, dict[str, list[np.ndarray]]] = {k: {v: [] for v in p.targets}
                                                        for k in ("transfer", "control", "own_probe")}
    for pos in tqdm(p.layer_pos, desc=f"transfer from {cfg.train_variant}", unit="layer"):
        X = {v: reader.layer(pos, t.rows) for v, t in p.targets.items()}
        kinds = [("transfer", None)] + ([("control", y_shuf)] if cfg.control else [])
        fits = {}
        for kind, y in kinds:
            fits[kind] = fit = fit_layer(train_t, X[cfg.train_variant], tr_mask[cfg.train_variant], y_train=y)
            cv[kind].append(fit.cv)
            for v, t in p.targets.items():
                by_layer[kind][v].append(_test_correct(fit, t, X[v], te_mask[v]))
        for v, t in p.targets.items():  # the train variant's own probe is the transfer probe itself
            own = fits["transfer"] if v == cfg.train_variant else fit_layer(t, X[v], tr_mask[v])
            own_cv[v].append(own.cv)
            by_layer["own_probe"][v].append(own.test_correct)

    def chosen(scores: list[float]) -> int:
        """The position with the best train CV score (the first of ties)."""
        finite = [i for i, s in enumerate(scores) if np.isfinite(s)]
        return max(finite, key=lambda i: scores[i])

    at = {"transfer": chosen(cv["transfer"]), "control": chosen(cv["control"]) if cfg.control else None}
    variants = {}
    for v in p.targets:
        own_at = chosen(own_cv[v])
        variants[v] = {
            "prompted": prompted(store, v, p.kind, p.test_ids),
            "transfer": accuracy(by_layer["transfer"][v][at["transfer"]]).to_dict(),
            "transfer_by_layer": [accuracy(c).to_dict() for c in by_layer["transfer"][v]],
            "own_probe": accuracy(by_layer["own_probe"][v][own_at]).to_dict(),
            "own_probe_layer": p.layers[own_at],
            "own_probe_by_layer": [accuracy(c).to_dict() for c in by_layer["own_probe"][v]],
            "control": (accuracy(by_layer["control"][v][at["control"]]).to_dict() if cfg.control else None),
        }
    return {
        "kind": p.kind, "train_variant": cfg.train_variant, "layers": p.layers,
        "chosen_layer": p.layers[at["transfer"]], "cv_by_layer": cv["transfer"],
        "control_layer": p.layers[at["control"]] if cfg.control else None,
        "n_train_questions": len(p.train_ids), "n_test_questions": len(p.test_ids),
        "chance": float(np.mean(1.0 / train_t.n_choices)), "variants": variants,
    }


# --------------------------------------------------------------------------- files

CSV_FIELDS = ("variant", "prompted", "transfer", "transfer_lo", "transfer_hi", "own_probe", "own_probe_layer",
              "control", "n")


def _write_csv(path: Path, doc: dict[str, Any]) -> None:
    write_csv(path, CSV_FIELDS, [
        [v, f"{r['prompted']['value']:.6g}", f"{r['transfer']['value']:.6g}", f"{r['transfer']['lo']:.6g}",
         f"{r['transfer']['hi']:.6g}", f"{r['own_probe']['value']:.6g}", r["own_probe_layer"],
         "" if r["control"] is None else f"{r['control']['value']:.6g}", r["transfer"]["n"]]
        for v, r in doc["variants"].items()])


def _write_png(path: Path, doc: dict[str, Any]) -> None:
    """Transfer accuracy per layer, one line per test variant (the train variant thick), chance dotted."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, (v, r) in enumerate(doc["variants"].items()):
        ys = [e["value"] for e in r["transfer_by_layer"]]
        ax.plot(doc["layers"], ys, color=f"C{i % 10}", linewidth=2.5 if v == doc["train_variant"] else 1.0,
                label=v + (" (train)" if v == doc["train_variant"] else ""))
    ax.axhline(doc["chance"], color="black", linestyle=":", linewidth=1, label="chance")
    ax.axvline(doc["chosen_layer"], color="grey", linestyle="--", linewidth=0.8, label="layer chosen on train CV")
    ax.set_xlabel("layer (resid_pre; last = final resid)")
    ax.set_ylabel(f"test accuracy ({doc['n_test_questions']} questions)")
    ax.set_ylim(0, 1)
    ax.set_title(f"{doc['kind']} probe trained on '{doc['train_variant']}', tested on each variant", fontsize=10)
    ax.legend(fontsize=6, ncol=2)
    save_png(fig, path)


# --------------------------------------------------------------------------- summary


def summarize(out: str | Path) -> str:
    doc = json.loads((Path(out) / RESULTS_NAME).read_text())
    prov = doc["provenance"]
    lines = [f"{prov['model']} ({prov['weight_hash']}) on {prov['task']}: {doc['kind']} probe trained on "
             f"'{doc['train_variant']}' ({doc['n_train_questions']} train questions), tested on "
             f"{doc['n_test_questions']}; layer {doc['chosen_layer']} chosen on train CV -> {Path(out)}"]
    w = max(12, *(len(v) for v in doc["variants"]))
    lines.append(f"{'variant':<{w}}  {'prompted':>8}  {'transfer':>8}  {'95% CI':<15} {'own probe':>9} (layer)"
                 + ("  control" if doc["control_layer"] is not None else ""))
    for v, r in doc["variants"].items():
        t = r["transfer"]
        line = (f"{v:<{w}}  {r['prompted']['value']:>8.3f}  {t['value']:>8.3f}  [{t['lo']:.3f}, {t['hi']:.3f}]  "
                f"{r['own_probe']['value']:>9.3f} ({r['own_probe_layer']})")
        if r["control"] is not None:
            line += f"  {r['control']['value']:>7.3f}"
        lines.append(line)
    lines.append(f"chance {doc['chance']:.3f}"
                 + (f"; control: shuffled train labels of '{doc['train_variant']}', layer {doc['control_layer']} "
                    "chosen on its own train CV" if doc["control_layer"] is not None else ""))
    return "\n".join(lines)
