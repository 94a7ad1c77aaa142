"""`python cli.py transfer`: probes trained on one prompt variant of an eval store, tested on the others.

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

from core.io import save_png, write_csv, write_json
from core.provenance import config_hash, stamp, to_jsonable
from core.rundir import run_directory
from hooks.store import Store, StoreError
from probes.transfer import fit_transfer, plan

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


def run(cfg: Config) -> Path:
    """Fit, score and write DIR/results.json, transfer.csv and transfer_by_layer.png."""
    if not cfg.store:
        raise ValueError("--store is required: an `eval --resid` run directory or its activations.h5")
    if not store_path(cfg).exists():
        raise ValueError(f"--store: no activation store at {store_path(cfg)} (run `cli.py eval --resid` first)")
    with run_directory(out_dir(cfg), "transfer"):
        return _run(cfg)


def _run(cfg: Config) -> Path:
    """Fit, score and write DIR/results.json, transfer.csv and transfer_by_layer.png."""
    path = store_path(cfg)
    if not cfg.store:
        raise ValueError("--store is required: an `eval --resid` run directory or its activations.h5")
    try:
        store = Store(path)
    except StoreError as exc:
        raise ValueError(f"--store: {exc}") from None
    with store:
        p = plan(store, train_variant=cfg.train_variant, test_variants=cfg.test_variants, layers=cfg.layers,
                 test_fraction=cfg.test_fraction, seed=cfg.seed)
        out = out_dir(cfg)
        chash = config_hash(cfg)
        res_path = out / RESULTS_NAME
        if res_path.exists():
            try:
                old = json.loads(res_path.read_text())
            except json.JSONDecodeError:
                old = {}
            if old.get("config_hash") == chash and old.get("store_config_hash") == store.config_hash:
                log.info("reusing finished transfer run %s", out)
                return out
        doc = fit_transfer(store, p, seed=cfg.seed, control=cfg.control)
        doc.update(schema=SCHEMA, config=to_jsonable(cfg), config_hash=chash,
                   store_config_hash=store.config_hash,
                   provenance=stamp(**{k: store.provenance.get(k) for k in
                                       ("model", "weight_hash", "task", "split", "n_questions")},
                                    seed=cfg.seed, train_variant=cfg.train_variant, store=str(path),
                                    capture_package_version=store.provenance.get("package_version")))
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / CSV_NAME, doc)
    _write_png(out / PNG_NAME, doc)
    write_json(res_path, doc)
    return out


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
