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

Writes DIR/results.json (`core.schemas.TransferResult`), DIR/samples.parquet (every test question's answer per
method, variant and layer, see `core.samples`), DIR/transfer.csv and DIR/transfer_by_layer.png; DIR defaults to
<eval run>/transfer-<train variant>.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from core.config import ExecutionOptions, OutputOptions, PluginOptions, opt
from core.io import save_png, write_csv
from core.provenance import config_hash, to_jsonable
from core.rundir import results_to_reuse, run_directory
from core.samples import SampleTable, write_samples
from core.schemas import TaskInfo, TransferResult, from_data, recorded_identity, run_header
from hooks.execution import execution_record
from hooks.models import describe
from hooks.store import Store, StoreError
from probes.targets import Answers
from probes.transfer import TransferAnswers, fit_transfer, plan

log = logging.getLogger(__name__)

RESULTS_NAME, CSV_NAME, PNG_NAME, SAMPLES_NAME = "results.json", "transfer.csv", "transfer_by_layer.png", "samples.parquet"


@dataclass(frozen=True)
class Config(PluginOptions, ExecutionOptions, OutputOptions):
    """Probes trained on one prompt variant of an eval store and tested on the others."""

    store: str = opt("", "an `eval --resid` run directory, or its activations.h5")
    train_variant: str = opt("default", "the variant the probes are trained on")
    test_variants: str = opt("all", "comma-separated variants to test on, or all (every variant of the same kind in "
                             "the store)")
    layers: tuple[int, ...] | None = opt(None, "stored resid layers to use (default all)")
    test_fraction: float = opt(0.5, "fraction of questions held out for testing")
    seed: int = opt(0, "seed for the train/test split and the shuffled control")
    control: bool = opt(True, "also fit the shuffled-label control")
    out: str | None = opt(None, "output directory (default <run>/transfer-<variant>)", ui=True)


def store_path(cfg: Config) -> Path:
    p = Path(cfg.store)
    return p / "activations.h5" if p.is_dir() else p


def out_dir(cfg: Config) -> Path:
    if cfg.out:
        return Path(cfg.out)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", cfg.train_variant).strip("-.")
    return store_path(cfg).parent / f"transfer-{safe}"


def run(cfg: Config) -> Path:
    """Fit, score and write DIR/results.json, samples.parquet, transfer.csv and transfer_by_layer.png."""
    if not cfg.store:
        raise ValueError("--store is required: an `eval --resid` run directory or its activations.h5")
    if not store_path(cfg).exists():
        raise ValueError(f"--store: no activation store at {store_path(cfg)} (run `cli.py eval --resid` first)")
    with run_directory(out_dir(cfg), "transfer"):
        return _run(cfg)


def _run(cfg: Config) -> Path:
    t0 = time.perf_counter()
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
        store_hash = store.config_hash
        inputs = {"store": store.checksum}
        if results_to_reuse(res_path, config=to_jsonable(cfg), config_hash=chash, inputs=inputs,
                            overwrite=cfg.overwrite) and (out / SAMPLES_NAME).exists():
            log.info("reusing finished transfer run %s", out)
            return out
        doc, answers = fit_transfer(store, p, seed=cfg.seed, control=cfg.control)
        prov = store.provenance
        ident = recorded_identity(prov) or describe(str(prov.get("model")), digest=prov.get("weight_hash"))
        header = run_header(
            command="transfer", model=ident,
            task=TaskInfo(str(prov.get("task")), str(prov.get("split")), int(prov["n_questions"]),
                          store.config.get("data_dir"), store.inputs.get("data")),
            seed=cfg.seed, config=cfg, config_hash=chash,
            execution=execution_record(cfg, runs_model=False, threads=torch.get_num_threads()),
            timing={"total": time.perf_counter() - t0}, inputs=inputs)
        result = from_data(TransferResult, {"header": header, "store": str(path), "store_config_hash": store_hash,
                                            **doc})
        samples = _samples(result, answers, store.subjects())
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / CSV_NAME, result)
    _write_png(out / PNG_NAME, result)
    write_samples(out / SAMPLES_NAME, samples)
    result.write(res_path)
    return out


def _samples(result: TransferResult, answers: TransferAnswers, subjects: dict[str, str]) -> SampleTable:
    """samples.parquet: per test question, each variant's prompted answer and, per layer, the transferred probe's,
    its own probe's and the control's answers."""
    m = result.header.model
    table = SampleTable(model=m.name, weight_hash=m.weight_hash, task=result.header.task.name,
                        seed=result.header.seed, command="transfer", condition=None, split="test")

    def add(a: Answers, *, variant: str, method: str, layer: int | None) -> None:
        ids = a.qids.tolist()
        table.add(question_id=ids, subject=[subjects.get(q) or None for q in ids], variant=variant, method=method,
                  layer=layer, prediction=a.pred, gold=a.gold, correct=a.correct, score=a.score,
                  n_choices=a.n_choices)

    for v, a in answers.prompted.items():
        add(a, variant=v, method=f"prompted:{result.kind}", layer=None)
    methods = {"transfer": "transfer", "own_probe": f"probe:{result.kind}", "control": "control:shuffled"}
    for kind, per_variant in answers.by_layer.items():
        for v, per_layer in per_variant.items():
            for layer, a in zip(result.layers, per_layer, strict=True):
                add(a, variant=v, method=methods[kind], layer=layer)
    return table


# --------------------------------------------------------------------------- files

CSV_FIELDS = ("variant", "prompted", "transfer", "transfer_lo", "transfer_hi", "own_probe", "own_probe_layer",
              "control", "n")


def _write_csv(path: Path, result: TransferResult) -> None:
    write_csv(path, CSV_FIELDS, [
        [v, f"{r.prompted.value:.6g}", f"{r.transfer.value:.6g}", f"{r.transfer.lo:.6g}", f"{r.transfer.hi:.6g}",
         f"{r.own_probe.value:.6g}", r.own_probe_layer, "" if r.control is None else f"{r.control.value:.6g}",
         r.transfer.n]
        for v, r in result.variants.items()])


def _write_png(path: Path, result: TransferResult) -> None:
    """Transfer accuracy per layer, one line per test variant (the train variant thick), chance dotted."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, (v, r) in enumerate(result.variants.items()):
        ys = [e.value for e in r.transfer_by_layer]
        ax.plot(result.layers, ys, color=f"C{i % 10}", linewidth=2.5 if v == result.train_variant else 1.0,
                label=v + (" (train)" if v == result.train_variant else ""))
    ax.axhline(result.chance, color="black", linestyle=":", linewidth=1, label="chance")
    ax.axvline(result.chosen_layer, color="grey", linestyle="--", linewidth=0.8, label="layer chosen on train CV")
    ax.set_xlabel("layer (resid_pre; last = final resid)")
    ax.set_ylabel(f"test accuracy ({result.n_test_questions} questions)")
    ax.set_ylim(0, 1)
    ax.set_title(f"{result.kind} probe trained on '{result.train_variant}', tested on each variant", fontsize=10)
    ax.legend(fontsize=6, ncol=2)
    save_png(fig, path)


# --------------------------------------------------------------------------- summary


def summarize(out: str | Path) -> str:
    doc = TransferResult.read(Path(out) / RESULTS_NAME)
    m = doc.header.model
    lines = [f"{m.name} ({m.weight_hash}) on {doc.header.task.name}: {doc.kind} probe trained on "
             f"'{doc.train_variant}' ({doc.n_train_questions} train questions), tested on "
             f"{doc.n_test_questions}; layer {doc.chosen_layer} chosen on train CV -> {Path(out)}"]
    w = max(12, *(len(v) for v in doc.variants))
    lines.append(f"{'variant':<{w}}  {'prompted':>8}  {'transfer':>8}  {'95% CI':<15} {'own probe':>9} (layer)"
                 + ("  control" if doc.control_layer is not None else ""))
    for v, r in doc.variants.items():
        t = r.transfer
        line = (f"{v:<{w}}  {r.prompted.value:>8.3f}  {t.value:>8.3f}  [{t.lo:.3f}, {t.hi:.3f}]  "
                f"{r.own_probe.value:>9.3f} ({r.own_probe_layer})")
        if r.control is not None:
            line += f"  {r.control.value:>7.3f}"
        lines.append(line)
    lines.append(f"chance {doc.chance:.3f}"
                 + (f"; control: shuffled train labels of '{doc.train_variant}', layer {doc.control_layer} "
                    "chosen on its own train CV" if doc.control_layer is not None else ""))
    return "\n".join(lines)
