"""The `probe` stage: capture -> per-layer probes, logit lens and controls -> results.json and a figure.

Writes into one directory: `activations.h5` (and `activations_control.h5` for the random-init control),
`results.json`, `probe_by_layer.png` and `probe_ceiling.npz/.json` (the probe behind the reported ceiling).
Rerunning with the same config reuses the captures and, if complete, the results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import ExecutionOptions, ModelOptions, OutputOptions, TaskOptions, opt, pick
from core.io import write_json
from core.provenance import config_hash, stamp, to_jsonable
from core.rundir import results_to_reuse, run_directory
from eval.stats import accuracy, bootstrap_mean, mean_over_runs, split_ids
from hooks.capture import CaptureConfig, capture
from hooks.execution import torch_threads
from hooks.store import Store, store_checksum
from probes.fit import FeatureReader, Sweep, ceiling, select_layer, sweep_layers
from probes.lens import lens_correct
from probes.plot import plot_by_layer
from probes.targets import TARGETS, chance, load_target, prompted_correct

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("default", "option")
CONTROLS: dict[str, tuple[str, ...]] = {
    "shuffled": ("shuffled",), "random-init": ("random-init",), "both": ("shuffled", "random-init"), "none": (),
}
RESULTS, FIGURE, ACTIVATIONS, CONTROL_ACTIVATIONS = (
    "results.json", "probe_by_layer.png", "activations.h5", "activations_control.h5")


@dataclass(frozen=True)
class Config(ModelOptions, TaskOptions, ExecutionOptions, OutputOptions):
    """One probe run: the capture it needs, the train/test split by question, and the controls."""

    n: int | None = opt(200, "number of questions (seeded subsample)")
    layers: tuple[int, ...] | None = opt(None, "resid layers to probe (default all)")
    control: str = opt("shuffled", "controls: shuffled, random-init, both or none")
    n_shuffles: int = opt(5, "label shuffles of the shuffled control (its accuracies are the mean over them; one "
                          "draw can land far from chance)")
    test_fraction: float = opt(0.5, "fraction of questions held out for testing")

    def _check(self) -> None:
        if self.control not in CONTROLS:
            raise ValueError(f"--control must be one of {', '.join(CONTROLS)}, got {self.control!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        if self.n is not None and self.n < 4:
            raise ValueError(f"--n must be at least 4 (train and test questions for cross-validation), got {self.n}")
        if self.n_shuffles < 1:
            raise ValueError(f"--n-shuffles must be >= 1, got {self.n_shuffles}")


def output_dir(cfg: Config) -> Path:
    """cfg.out, or runs/probe-<model>-<task> with path separators and odd characters replaced."""
    if cfg.out:
        return Path(cfg.out)
    name = f"probe-{Path(cfg.model).name if Path(cfg.model).exists() else cfg.model}-{cfg.task}"
    return Path("runs") / re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120]


def capture_config(cfg: Config, *, random_init: bool = False) -> CaptureConfig:
    return pick(CaptureConfig, cfg, variants=VARIANTS, random_init=random_init)


def run(cfg: Config) -> Path:
    """Capture (or reuse) the activations, fit and score every probe, write results.json and the figure."""
    capture_config(cfg)  # bad flags (e.g. --layers) fail before anything is written
    with run_directory(output_dir(cfg), "probe"):
        return _run(cfg)


def _run(cfg: Config) -> Path:
    """Capture (or reuse) the activations, fit and score every probe, write results.json and the figure."""
    out = output_dir(cfg)
    controls = CONTROLS[cfg.control]
    t0 = time.perf_counter()
    with torch_threads(cfg.threads):
        act = capture(capture_config(cfg), out / ACTIVATIONS)
        ctrl = capture(capture_config(cfg, random_init=True), out / CONTROL_ACTIVATIONS) \
            if "random-init" in controls else None
    capture_s = time.perf_counter() - t0
    chash = results_hash(cfg)
    res_path = out / RESULTS
    inputs = {"store": store_checksum(act), "control_store": store_checksum(ctrl) if ctrl else None}
    if results_to_reuse(res_path, config=to_jsonable(cfg), config_hash=chash, inputs=inputs,
                        overwrite=cfg.overwrite) and (out / FIGURE).exists():
        log.info("reusing %s (same config and inputs)", res_path)
        return out
    t1 = time.perf_counter()
    results = compute(cfg, act, ctrl, out)
    results["config_hash"] = chash
    results["inputs"] = inputs
    results["timing"] = {"capture_s": round(capture_s, 1), "probes_s": round(time.perf_counter() - t1, 1)}
    write_json(res_path, results)
    plot_by_layer(results, out / FIGURE)
    return out


def results_hash(cfg: Config) -> str:
    """Hash of the fields results depend on (not the output folder or the thread count: see `core.config`)."""
    return config_hash(cfg)


def compute(cfg: Config, act: Path, ctrl: Path | None, out: Path) -> dict[str, Any]:
    """Every number of results.json (except config hash and timing), from the store files."""
    controls = CONTROLS[cfg.control]
    with Store(act) as store:
        targets = [load_target(store, t) for t in TARGETS]
        train_ids, test_ids = split_ids(store.rows["question_id"], 1.0 - cfg.test_fraction, cfg.seed)
        layers = list(store.layers)
        reader = FeatureReader(store, np.concatenate([t.rows for t in targets]))
        sweeps = sweep_layers(reader, targets, train_ids, range(len(layers)), seed=cfg.seed)
        shuffles = [sweep_layers(reader, targets, train_ids, range(len(layers)), kinds=("shuffled",),
                                 seed=cfg.seed + i, desc=f"shuffled {i + 1}/{cfg.n_shuffles}")["shuffled"]
                    for i in range(cfg.n_shuffles)] if "shuffled" in controls else []
        prompted = prompted_accuracy(store, test_ids)
        lens, lens_sel = lens_accuracy(store, train_ids, test_ids, layers)
        provenance = _provenance(cfg, store)
        ceil = ceiling(sweeps["probe"], layers)
        letter = next(t for t in targets if t.name == "letter")
        test_letter = letter.subset(np.isin(letter.groups, test_ids))
        chance_test = chance(test_letter)
        majority = int(np.bincount(letter.subset(np.isin(letter.groups, train_ids)).y).argmax())
    if ctrl is not None:
        with Store(ctrl) as cstore:
            ctargets = [load_target(cstore, t) for t in TARGETS]
            creader = FeatureReader(cstore, np.concatenate([t.rows for t in ctargets]))
            rs = sweep_layers(creader, ctargets, train_ids, range(len(layers)), seed=cfg.seed, desc="random-init")
            sweeps["random-init"] = Sweep("random-init", rs["probe"].fits)
            provenance["control_capture"] = cstore.provenance
    best = sweeps["probe"].fits[ceil["target"]][layers.index(ceil["layer"])].probe
    best.save(out / "probe_ceiling.npz", provenance={**provenance, "target": ceil["target"], "layer": ceil["layer"]})
    return {
        "prompted_accuracy": prompted,
        "probe_accuracy_by_layer": sweeps["probe"].test_by_layer(),
        "probe_cv_accuracy_by_layer": sweeps["probe"].cv_by_layer(),
        "probe_C_by_layer": {t: [f.C for f in fits] for t, fits in sweeps["probe"].fits.items()},
        "lens_accuracy_by_layer": lens,
        "lens_best": lens_sel,
        "control_accuracy_by_layer": {k: (shuffled_by_layer(shuffles, cfg.seed) if k == "shuffled"
                                          else sweeps[k].test_by_layer()) for k in controls},
        "control_ceiling": {k: (shuffled_ceiling(shuffles, layers) if k == "shuffled" else ceiling(sweeps[k], layers))
                            for k in controls},
        "ceiling": ceil,
        "ceiling_by_target": {t: _target_ceiling(sweeps["probe"], t, layers) for t in sweeps["probe"].fits},
        "chance": chance_test,
        "majority_baseline": {"position": majority, "test_accuracy": accuracy(test_letter.y == majority).to_dict(),
                              "note": "always the most common gold position of the train questions"},
        "split": {"by": "question_id", "seed": cfg.seed, "test_fraction": cfg.test_fraction,
                  "n_train": len(train_ids), "n_test": len(test_ids),
                  "test_ids_sha256": hashlib.sha256("\n".join(test_ids).encode()).hexdigest()[:16]},
        "layers": layers,
        "provenance": provenance,
        "config": to_jsonable(cfg),
    }


def shuffled_by_layer(shuffles: list[Sweep], seed: int) -> dict[str, list[dict[str, Any]]]:
    """Per target and layer, the shuffled control's test accuracy averaged over the label shuffles; the interval
    is a bootstrap over test questions of each question's mean correctness across shuffles."""
    out: dict[str, list[dict[str, Any]]] = {}
    for t, fits in shuffles[0].fits.items():
        out[t] = []
        for i in range(len(fits)):
            per = [sw.fits[t][i] for sw in shuffles]
            if any(not np.array_equal(f.test_ids, per[0].test_ids) for f in per):
                raise RuntimeError("shuffled controls were scored on different test questions")
            mean = np.mean([f.test_correct for f in per], axis=0)
            out[t].append({**bootstrap_mean(mean, n_boot=1000, seed=seed).to_dict(), "n_shuffles": len(per)})
    return out


def shuffled_ceiling(shuffles: list[Sweep], layers: list[int]) -> dict[str, Any]:
    """The control ceiling chosen the same way as the probe's (on train CV), once per shuffle, and its mean over
    shuffles (Student-t interval); target is the one chosen most often, layer None when the shuffles disagree."""
    each = [ceiling(sw, layers) for sw in shuffles]
    values = np.array([c["test_accuracy"]["value"] for c in each])
    targets = [c["target"] for c in each]
    layer_set = {c["layer"] for c in each}
    return {
        "target": max(set(targets), key=targets.count), "layer": layer_set.pop() if len(layer_set) == 1 else None,
        "test_accuracy": mean_over_runs(values).to_dict(), "selected_on": "train-cv", "n_shuffles": len(each),
        "per_shuffle": [{"target": c["target"], "layer": c["layer"], "test_accuracy": c["test_accuracy"]["value"]}
                        for c in each],
    }


def _target_ceiling(sweep: Sweep, target: str, layers: list[int]) -> dict[str, Any]:
    return ceiling(Sweep(sweep.kind, {target: sweep.fits[target]}), layers)


def prompted_accuracy(store: Store, test_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Letter answers (argmax answer_logits) and option scoring (argmax summed log-prob, and per character),
    per question, on all questions and on the test questions, with Wilson intervals."""
    out: dict[str, dict[str, Any]] = {}
    if store.mask(variant="default", lettered=True).any():
        out["letter"] = _all_and_test(*prompted_correct(store, "default", lettered=True), test_ids)
    if store.mask(variant="option", lettered=False).any():
        for key, per_char in (("option", False), ("option_norm", True)):
            out[key] = _all_and_test(*prompted_correct(store, "option", lettered=False, per_char=per_char), test_ids)
    return out


def _all_and_test(qids: np.ndarray, correct: np.ndarray, test_ids: list[str]) -> dict[str, Any]:
    test = np.isin(qids, test_ids)
    return {"all": accuracy(correct).to_dict(), "test": accuracy(correct[test]).to_dict()}


def lens_accuracy(
    store: Store, train_ids: list[str], test_ids: list[str], layers: list[int]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Logit lens on the letters per layer: test accuracy by layer, and the layer chosen on train questions."""
    m = store.mask(variant="default", lettered=True)
    r = store.rows
    correct = lens_correct(store.array("lens_logits", m), r["label"][m], r["n_choices"][m])
    test = np.isin(r["question_id"][m], test_ids)
    train = np.isin(r["question_id"][m], train_ids)
    by_layer = [accuracy(correct[test, i]).to_dict() for i in range(len(layers))]
    sel = select_layer({layer: float(correct[train, i].mean()) for i, layer in enumerate(layers)},
                       {layer: float(correct[test, i].mean()) for i, layer in enumerate(layers)})
    chosen = layers.index(sel["chosen"])
    best = {"layer": sel["chosen"], "test_accuracy": accuracy(correct[test, chosen]).to_dict(),
            "train_accuracy": sel["dev_value"], "selected_on": "train", "naive_max_layer": sel["naive_max_key"],
            "naive_max_test": sel["naive_max_test"], "gap": sel["gap"]}
    return by_layer, best


def _provenance(cfg: Config, store: Store) -> dict[str, Any]:
    p = store.provenance
    return stamp(model=p.get("model", cfg.model), weight_hash=p.get("weight_hash"), task=p.get("task", cfg.task),
                 split=p.get("split", cfg.split), seed=cfg.seed, variants=p.get("variants", list(VARIANTS)),
                 n_questions=p.get("n_questions"), capture_package_version=p.get("package_version"), capture=p)


# ---------------------------------------------------------------------------- summary


def _fmt(e: dict[str, Any] | None) -> str:
    return "   -  " if e is None else f"{e['value']:.3f}"


def _ci(e: dict[str, Any]) -> str:
    return f"{e['value']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}] (n={e['n']})"


def summarize(out_dir: Path) -> str:
    """A plain-text table of results.json: prompted accuracy, accuracy by layer, the ceiling and its gap."""
    res = json.loads((Path(out_dir) / RESULTS).read_text())
    prov, sp = res["provenance"], res["split"]
    lines = [f"probe: {prov['model']} on {prov['task']} ({prov['split']} split), "
             f"{sp['n_train'] + sp['n_test']} questions: {sp['n_train']} train / {sp['n_test']} test "
             f"(split by question, seed {sp['seed']}); 95% Wilson intervals",
             "prompted accuracy                     test questions                 all questions"]
    names = {"letter": "letter (argmax answer logits)", "option": "option text (sum log-prob)",
             "option_norm": "option text (log-prob per char)"}
    for key, e in res["prompted_accuracy"].items():
        lines.append(f"  {names.get(key, key):34s}  {_ci(e['test']):29s}  {_ci(e['all'])}")
    cols = [("option probe", res["probe_accuracy_by_layer"].get("option")),
            ("letter probe", res["probe_accuracy_by_layer"].get("letter")),
            ("lens", res["lens_accuracy_by_layer"])]
    for kind, per in res["control_accuracy_by_layer"].items():
        cols += [(f"{kind} opt", per.get("option")), (f"{kind} let", per.get("letter"))]
    n_shuf = res["config"].get("n_shuffles")
    lines.append("test accuracy by layer" + (f" (shuffled columns: mean over {n_shuf} label shuffles)"
                                             if "shuffled" in res["control_accuracy_by_layer"] and n_shuf else "") + ":")
    lines.append("layer " + " ".join(f"{c:>14s}" for c, _ in cols))
    for i, layer in enumerate(res["layers"]):
        lines.append(f"{layer:5d} " + " ".join(f"{_fmt(v[i] if v else None):>14s}" for _, v in cols))
    c = res["ceiling"]
    lines.append(f"ceiling (target and layer chosen on train CV): {c['target']} probe, layer {c['layer']}: "
                 f"{_ci(c['test_accuracy'])}")
    nm = c["naive_max"]
    lines.append(f"naive max over layers on test: {nm['test_accuracy']['value']:.3f} ({nm['target']} probe, layer "
                 f"{nm['layer']}); selection gap {c['gap']:+.3f}")
    for kind, cc in res["control_ceiling"].items():
        if "per_shuffle" in cc:
            each = ", ".join(f"{x['test_accuracy']:.2f} ({x['target']} L{x['layer']})" for x in cc["per_shuffle"])
            lines.append(f"{kind} control, chosen the same way, mean over {cc['n_shuffles']} shuffles: "
                         f"{_ci(cc['test_accuracy'])}; each: {each}")
        else:
            lines.append(f"{kind} control, chosen the same way: {cc['target']} layer {cc['layer']}: "
                         f"{_ci(cc['test_accuracy'])}")
    lb = res["lens_best"]
    lines.append(f"logit lens, layer chosen on train: layer {lb['layer']}: {_ci(lb['test_accuracy'])}")
    mb = res["majority_baseline"]
    lines.append(f"chance: {res['chance']:.3f}; always the train questions' most common gold position "
                 f"({mb['position']}): {_ci(mb['test_accuracy'])}")
    t = res.get("timing", {})
    lines.append(f"time: capture {t.get('capture_s', '?')} s, probes {t.get('probes_s', '?')} s")
    lines.append(f"wrote {Path(out_dir) / RESULTS} and {Path(out_dir) / FIGURE}")
    return "\n".join(lines)
