"""The `probe` stage: capture -> per-layer probes, logit lens and controls -> results.json and a figure.

Writes into one directory: `activations.h5` (and `activations_control.h5` for the random-init control),
`results.json` (`core.schemas.ProbeResult`), `samples.parquet` (every question's answer per method and layer, see
`core.samples`), `probe_by_layer.png` and `probe_ceiling.npz/.json` (the probe behind the reported ceiling).
Beside the option probe, the surface-cue control (`probes.surface`: a probe on each option's length and words alone,
fit and selected the same way) with the option probe's paired margin over it; layers whose probe scores below chance
by its whole interval are flagged (`below_chance`: a label-position artefact, not knowledge).
Rerunning with the same config reuses the captures and, if complete, the results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import (
    ExecutionOptions,
    ModelKindOptions,
    ModelOptions,
    OutputOptions,
    PluginOptions,
    TaskOptions,
    opt,
    pick,
    resolve_threads,
)
from core.provenance import config_hash, to_jsonable
from core.rundir import results_to_reuse, run_directory
from core.samples import SampleTable, write_samples
from core.schemas import (
    Estimate,
    ProbeResult,
    TaskInfo,
    format_estimate,
    from_data,
    recorded_identity,
    run_header,
    to_data,
)
from core.schemas import probe as schema
from eval.paired import mcnemar_exact, paired_difference
from eval.runs import accuracy_over_runs
from eval.stats import accuracy, bootstrap_mean, split_ids
from hooks import execution
from hooks.capture import CaptureConfig, capture, select_records
from hooks.execution import resolve_device, torch_threads
from hooks.models import describe
from hooks.store import Store, store_checksum
from probes.fit import FeatureReader, LayerFit, Sweep, ceiling, fit_layer, select_layer, sweep_layers
from probes.lens import lens_predictions
from probes.plot import plot_by_layer
from probes.surface import option_texts, surface_features
from probes.targets import TARGETS, Answers, Target, chance, load_target, prompted_answers
from probes.torch_linear import TorchSolver

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("default", "option")
CONTROLS: dict[str, tuple[str, ...]] = {
    "shuffled": ("shuffled",), "random-init": ("random-init",), "both": ("shuffled", "random-init"), "none": (),
}
RESULTS, FIGURE, ACTIVATIONS, CONTROL_ACTIVATIONS, SAMPLES = (
    "results.json", "probe_by_layer.png", "activations.h5", "activations_control.h5", "samples.parquet")
PROMPTED: tuple[tuple[str, str, bool, bool], ...] = (  # (key, variant, lettered, per character)
    ("letter", "default", True, False), ("option", "option", False, False), ("option_norm", "option", False, True))
TARGET_VARIANT = {"letter": "default", "option": "option"}  # the capture variant each probe target reads


@dataclass(frozen=True)
class Config(PluginOptions, ModelOptions, ModelKindOptions, TaskOptions, ExecutionOptions, OutputOptions):
    """One probe run: the capture it needs, the train/test split by question, and the controls."""

    n: int | None = opt(200, "number of questions (seeded subsample)")
    layers: tuple[int, ...] | None = opt(None, "resid layers to probe (default all)")
    control: str = opt("shuffled", "controls: shuffled, random-init, both or none")
    n_shuffles: int = opt(5, "label shuffles of the shuffled control (its accuracies are the mean over them; one "
                          "draw can land far from chance)")
    test_fraction: float = opt(0.5, "fraction of questions held out for testing")
    solver: str = opt("torch", "probe fitting: torch (every layer, fold and C in one batched L-BFGS solve on --device; "
                      "tested equal to scikit-learn at its optimum) or sklearn (the reference: one fit at a time)")
    surface: bool = opt(True, "fit the surface-cue control beside the option probe: a probe on each option's "
                        "length and words alone, without the question (reads the task's records)")

    def _check(self) -> None:
        if self.control not in CONTROLS:
            raise ValueError(f"--control must be one of {', '.join(CONTROLS)}, got {self.control!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        if self.n is not None and self.n < 4:
            raise ValueError(f"--n must be at least 4 (train and test questions for cross-validation), got {self.n}")
        if self.n_shuffles < 1:
            raise ValueError(f"--n-shuffles must be >= 1, got {self.n_shuffles}")
        if self.solver not in ("torch", "sklearn"):
            raise ValueError(f"--solver must be torch or sklearn, got {self.solver!r}")
        if self.load_in is not None and "random-init" in CONTROLS[self.control]:
            raise ValueError(f"--control {self.control} with --load-in {self.load_in}: the random-init control "
                             "re-initialises full-precision weights; use --control shuffled (or drop --load-in)")


def output_dir(cfg: Config) -> Path:
    """The run directory: `--out`, else runs/probe-<model>-<task>."""
    return cfg.out_dir("probe")


def capture_config(cfg: Config, *, random_init: bool = False) -> CaptureConfig:
    return pick(CaptureConfig, cfg, variants=VARIANTS, random_init=random_init)


def run(cfg: Config) -> Path:
    """Capture (or reuse) the activations, fit and score every probe, write results.json, samples.parquet and the
    figure."""
    capture_config(cfg)  # bad flags (e.g. --layers) fail before anything is written
    execution.check(cfg)  # and so does a device this machine does not have
    with run_directory(output_dir(cfg), "probe"):
        return _run(cfg)


def _run(cfg: Config) -> Path:
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
                        overwrite=cfg.overwrite) and (out / FIGURE).exists() and (out / SAMPLES).exists():
        log.info("reusing %s (same config and inputs)", res_path)
        return out
    t1 = time.perf_counter()
    results, samples = compute(cfg, act, ctrl, out)
    timing = {"capture": capture_s, "probes": time.perf_counter() - t1}
    results = dataclasses.replace(results, header=dataclasses.replace(
        results.header, timing={k: round(v, 1) for k, v in timing.items()}, inputs=inputs))
    write_samples(out / SAMPLES, samples)
    plot_by_layer(results, out / FIGURE)
    results.write(res_path)  # last: a run with results.json is complete (what a sweep rerun relies on)
    return out


def _solver(cfg: Config) -> TorchSolver | str:
    """The probe solver the flags name: torch on the run's device (the CPU when it resolves to one), or sklearn."""
    if cfg.solver == "sklearn":
        return "sklearn"
    device = resolve_device(cfg.device)
    return TorchSolver(device=str(device), threads=resolve_threads(cfg.threads) if device.type == "cpu" else 1)


def results_hash(cfg: Config) -> str:
    """Hash of the fields results depend on (not the output folder or the thread count: see `core.config`)."""
    return config_hash(cfg)


def compute(cfg: Config, act: Path, ctrl: Path | None, out: Path) -> tuple[ProbeResult, SampleTable]:
    """Every number of results.json (timing left empty) and the per-question table, from the store files."""
    controls = CONTROLS[cfg.control]
    with Store(act) as store:
        targets = [load_target(store, t) for t in TARGETS]
        train_ids, test_ids = split_ids(store.rows["question_id"], 1.0 - cfg.test_fraction, cfg.seed)
        layers = list(store.layers)
        reader = FeatureReader(store, np.concatenate([t.rows for t in targets]))
        solver = _solver(cfg)
        sweeps = sweep_layers(reader, targets, train_ids, range(len(layers)), seed=cfg.seed, solver=solver)
        shuffles = [sweep_layers(reader, targets, train_ids, range(len(layers)), kinds=("shuffled",), solver=solver,
                                 seed=cfg.seed + i, desc=f"shuffled {i + 1}/{cfg.n_shuffles}")["shuffled"]
                    for i in range(cfg.n_shuffles)] if "shuffled" in controls else []
        prompted, prompted_ans = prompted_accuracy(store, test_ids)
        lens, lens_sel, lens_ans = lens_accuracy(store, train_ids, test_ids, layers)
        header = _header(cfg, store)
        captures = [_capture_record(store)]
        subjects = store.subjects()
        ceil = ceiling(sweeps["probe"], layers)
        letter = next(t for t in targets if t.name == "letter")
        test_letter = letter.subset(np.isin(letter.groups, test_ids))
        chance_test = chance(test_letter)
        majority = int(np.bincount(letter.subset(np.isin(letter.groups, train_ids)).y).argmax())
        option = next(t for t in targets if t.name == "option")
        surface, surface_fit = (surface_control(cfg, store, option, train_ids, sweeps["probe"], layers)
                                if cfg.surface else (None, None))
    if ctrl is not None:
        with Store(ctrl) as cstore:
            ctargets = [load_target(cstore, t) for t in TARGETS]
            creader = FeatureReader(cstore, np.concatenate([t.rows for t in ctargets]))
            rs = sweep_layers(creader, ctargets, train_ids, range(len(layers)), seed=cfg.seed, desc="random-init",
                              solver=solver)
            sweeps["random-init"] = Sweep("random-init", rs["probe"].fits)
            captures.append(_capture_record(cstore))
    best = sweeps["probe"].fits[ceil["target"]][layers.index(ceil["layer"])].probe
    best.save(out / "probe_ceiling.npz", provenance={**to_data(header), "target": ceil["target"],
                                                      "layer": ceil["layer"]})
    control_results = {}
    for k in controls:
        if k == "shuffled":
            control_results[k] = schema.Control(shuffled_by_layer(shuffles, cfg.seed), cfg.n_shuffles,
                                                from_data(schema.ControlCeiling, shuffled_ceiling(shuffles, layers, cfg.seed)))
        else:
            c = ceiling(sweeps[k], layers)
            control_results[k] = schema.Control(
                _estimates(sweeps[k].test_by_layer()), None,
                schema.ControlCeiling(c["target"], c["layer"], from_data(Estimate, c["test_accuracy"]), c["selected_on"],
                                      []))
    results = ProbeResult(
        header=header, captures=captures,
        split=schema.ProbeSplit(by="question_id", seed=cfg.seed, test_fraction=cfg.test_fraction,
                                n_train=len(train_ids), n_test=len(test_ids),
                                test_ids_sha256=hashlib.sha256("\n".join(test_ids).encode()).hexdigest()[:16]),
        layers=layers, chance=chance_test, prompted=prompted,
        probe_by_layer=_estimates(sweeps["probe"].test_by_layer()), probe_cv_by_layer=sweeps["probe"].cv_by_layer(),
        probe_C_by_layer={t: [f.C for f in fits] for t, fits in sweeps["probe"].fits.items()},
        lens_by_layer=lens, lens_best=lens_sel, controls=control_results,
        ceiling=from_data(schema.Ceiling, ceil),
        ceiling_by_target={t: from_data(schema.Ceiling, _target_ceiling(sweeps["probe"], t, layers))
                           for t in sweeps["probe"].fits},
        majority_baseline=schema.MajorityBaseline(majority, accuracy(test_letter.y == majority)),
        surface=surface, below_chance=below_chance(sweeps["probe"], layers, chance_test))
    samples = _samples(cfg, header, subjects, train_ids, test_ids, layers, prompted_ans, lens_ans, sweeps, shuffles,
                       surface_fit)
    return results, samples


def surface_control(cfg: Config, store: Store, option: Target, train_ids: list[str], sweep: Sweep,
                    layers: list[int]) -> tuple[schema.SurfaceControl, LayerFit]:
    """The surface-cue control (`probes.surface`) fit like the option probe on the train questions, and the option
    probe (its layer chosen on train CV) against it on the same test questions: paired margin and McNemar test."""
    texts = option_texts(select_records(capture_config(cfg)), option.groups, option.order, option.option_index)
    train = np.isin(option.groups, train_ids)
    feats = surface_features(texts, store.array("option_ntokens", option.rows),
                             store.array("option_nchars", option.rows), train)
    fit = fit_layer(option, feats.X, train)
    layer = _target_ceiling(sweep, "option", layers)["layer"]
    probe = sweep.fits["option"][layers.index(layer)]
    kw = {"elicited_ids": probe.test_ids, "straight_ids": fit.test_ids}
    mc = mcnemar_exact(probe.test_correct, fit.test_correct, **kw)
    return schema.SurfaceControl(
        features=feats.describe(), n_features=len(feats.names), test_accuracy=accuracy(fit.test_correct),
        cv_accuracy=fit.cv, C=fit.C, probe_layer=layer, probe_test_accuracy=accuracy(probe.test_correct),
        margin=paired_difference(probe.test_correct, fit.test_correct, seed=cfg.seed, **kw),
        mcnemar=schema.PairedTest(mc.b, mc.c, mc.p_value)), fit


def below_chance(sweep: Sweep, layers: list[int], chance_level: float, alpha: float = 0.05) -> dict[str, list[int]]:
    """Per target, the layers whose test accuracy is below chance by its whole Wilson interval, at confidence
    1 - alpha / (layers x targets) (Bonferroni over every probe scanned, so chance alone flags one with probability
    at most about alpha / 2): the probe picks wrong answers systematically, which knowledge cannot explain (usually
    the gold answer's displayed position learnt from train, or a question's rows not yet differing at a layer)."""
    confidence = 1.0 - alpha / max(1, sum(len(fits) for fits in sweep.fits.values()))
    return {t: [layer for layer, f in zip(layers, fits, strict=True)
                if accuracy(f.test_correct, confidence).hi < chance_level] for t, fits in sweep.fits.items()}


def _estimates(by_target: dict[str, list[dict[str, Any]]]) -> dict[str, list[Estimate]]:
    return {t: [from_data(Estimate, e) for e in ests] for t, ests in by_target.items()}


def _header(cfg: Config, store: Store) -> Any:
    """The run header: model identity and task from the capture store (the store's model loaded to describe it
    when the store predates recorded identities)."""
    p = store.provenance
    ident = recorded_identity(p) or describe(cfg.model, digest=p.get("weight_hash"), seed=cfg.seed)
    return run_header(
        command="probe", model=ident.with_kind(cfg.model_kind),
        task=TaskInfo(p.get("task", cfg.task), p.get("split", cfg.split), int(p["n_questions"]), cfg.data_dir, None),
        seed=cfg.seed, config=cfg, config_hash=results_hash(cfg),
        execution=execution.execution_record(cfg, placement=p.get("execution")), timing={})


def _capture_record(store: Store) -> schema.Capture:
    return schema.Capture(store.path.name, store.config_hash,
                          str(store.provenance.get("created_utc")), str(store.provenance.get("package_version")),
                          bool(store.provenance.get("random_init", False)))


def _samples(cfg: Config, header: Any, subjects: dict[str, str], train_ids: list[str], test_ids: list[str],
             layers: list[int], prompted: dict[str, Answers], lens: Answers, sweeps: dict[str, Sweep],
             shuffles: list[Sweep], surface: LayerFit | None = None) -> SampleTable:
    """samples.parquet: prompted answers and the lens (every question), probes and controls (test questions; the
    surface-cue control as ``control:surface`` of the option variant, no layer)."""
    m = header.model
    table = SampleTable(model=m.name, weight_hash=m.weight_hash, task=cfg.task, seed=cfg.seed, command="probe",
                        condition=None)
    test = set(test_ids)

    def add(a: Answers, *, variant: str, method: str, layer: int | None) -> None:
        ids = a.qids.tolist()
        table.add(question_id=ids, subject=[subjects.get(q) or None for q in ids],
                  split=["test" if q in test else "train" for q in ids], variant=variant, method=method, layer=layer,
                  prediction=a.pred, gold=a.gold, correct=a.correct, score=a.score, n_choices=a.n_choices)

    for key, variant, _, _ in PROMPTED:
        if key in prompted:
            add(prompted[key], variant=variant, method=f"prompted:{key}", layer=None)
    for i, layer in enumerate(layers):
        add(Answers(lens.qids, lens.pred[:, i], lens.gold, lens.correct[:, i], lens.score[:, i], lens.n_choices),
            variant="default", method="lens", layer=layer)
    named = [("probe:{t}", sweeps["probe"])] + [(f"control:shuffled-s{i}", sw) for i, sw in enumerate(shuffles)]
    named += [("control:random-init", sweeps["random-init"])] if "random-init" in sweeps else []
    for method, sweep in named:
        for t, fits in sweep.fits.items():
            for layer, fit in zip(layers, fits, strict=True):
                if fit.answers is not None:
                    add(fit.answers, variant=TARGET_VARIANT[t], method=method.format(t=t), layer=layer)
    if surface is not None and surface.answers is not None:
        add(surface.answers, variant=TARGET_VARIANT["option"], method="control:surface", layer=None)
    return table


def shuffled_by_layer(shuffles: list[Sweep], seed: int) -> dict[str, list[Estimate]]:
    """Per target and layer, the shuffled control's test accuracy averaged over the label shuffles; the interval
    is a bootstrap over test questions of each question's mean correctness across shuffles."""
    out: dict[str, list[Estimate]] = {}
    for t, fits in shuffles[0].fits.items():
        out[t] = []
        for i in range(len(fits)):
            per = [sw.fits[t][i] for sw in shuffles]
            if any(not np.array_equal(f.test_ids, per[0].test_ids) for f in per):
                raise RuntimeError("shuffled controls were scored on different test questions")
            mean = np.mean([f.test_correct for f in per], axis=0)
            out[t].append(bootstrap_mean(mean, n_boot=1000, seed=seed))
    return out


def shuffled_ceiling(shuffles: list[Sweep], layers: list[int], seed: int = 0) -> dict[str, Any]:
    """The control ceiling chosen the same way as the probe's (on train CV), once per shuffle, and its mean over
    shuffles with `eval.runs.accuracy_over_runs` (each shuffle a run on the same test questions: a crossed bootstrap
    over shuffles and questions, within [0, 1]; Wilson for one shuffle); target is the one chosen most often, layer
    None when the shuffles disagree."""
    each = [ceiling(sw, layers) for sw in shuffles]
    chosen = [sw.fits[c["target"]][layers.index(c["layer"])] for sw, c in zip(shuffles, each, strict=True)]
    acc = accuracy_over_runs([f.test_correct for f in chosen], ids_by_run=[f.test_ids for f in chosen], seed=seed)
    targets = [c["target"] for c in each]
    layer_set = {c["layer"] for c in each}
    return {
        "target": max(set(targets), key=targets.count), "layer": layer_set.pop() if len(layer_set) == 1 else None,
        "test_accuracy": acc.to_dict(), "selected_on": "train-cv",
        "per_shuffle": [{"target": c["target"], "layer": c["layer"], "test_accuracy": c["test_accuracy"]["value"]}
                        for c in each],
    }


def _target_ceiling(sweep: Sweep, target: str, layers: list[int]) -> dict[str, Any]:
    return ceiling(Sweep(sweep.kind, {target: sweep.fits[target]}), layers)


def prompted_accuracy(store: Store, test_ids: list[str]) -> tuple[dict[str, schema.Prompted], dict[str, Answers]]:
    """Letter answers (argmax answer_logits) and option scoring (argmax summed log-prob, and per character),
    per question, on all questions and on the test questions, with Wilson intervals; and each question's answer."""
    out: dict[str, schema.Prompted] = {}
    answers: dict[str, Answers] = {}
    for key, variant, lettered, per_char in PROMPTED:
        if store.mask(variant=variant, lettered=lettered).any():
            a = answers[key] = prompted_answers(store, variant, lettered=lettered, per_char=per_char)
            out[key] = schema.Prompted(accuracy(a.correct), accuracy(a.correct[np.isin(a.qids, test_ids)]))
    return out, answers


def lens_accuracy(
    store: Store, train_ids: list[str], test_ids: list[str], layers: list[int]
) -> tuple[list[Estimate], schema.LensSelection, Answers]:
    """Logit lens on the letters per layer: test accuracy by layer, the layer chosen on train questions, and every
    question's lens answer per layer (`Answers` arrays of shape (questions, layers) for pred, correct, score)."""
    m = store.mask(variant="default", lettered=True)
    r = store.rows
    logits = store.array("lens_logits", m)
    pos = lens_predictions(logits, r["n_choices"][m])
    correct = pos == r["label"][m][:, None]
    test = np.isin(r["question_id"][m], test_ids)
    train = np.isin(r["question_id"][m], train_ids)
    by_layer = [accuracy(correct[test, i]) for i in range(len(layers))]
    sel = select_layer({layer: float(correct[train, i].mean()) for i, layer in enumerate(layers)},
                       {layer: float(correct[test, i].mean()) for i, layer in enumerate(layers)})
    chosen = layers.index(sel["chosen"])
    best = schema.LensSelection(layer=sel["chosen"], test_accuracy=accuracy(correct[test, chosen]),
                                train_accuracy=sel["dev_value"], selected_on="train",
                                naive_max_layer=sel["naive_max_key"], naive_max_test=sel["naive_max_test"],
                                gap=sel["gap"])
    order = r["order"][m]
    rows = np.arange(len(pos))[:, None]
    clipped = np.clip(pos, 0, None)
    pred = np.where(pos >= 0, order[rows, clipped], -1)
    score = np.where(pos >= 0, np.take_along_axis(logits, clipped[:, :, None], axis=2)[:, :, 0], np.nan)
    answers = Answers(r["question_id"][m], pred, r["answer_original"][m], correct, score, r["n_choices"][m])
    return by_layer, best, answers


# ---------------------------------------------------------------------------- summary


def _fmt(e: Estimate | None) -> str:
    return "   -  " if e is None else f"{e.value:.3f}"


def _ci(e: Estimate) -> str:
    return format_estimate(e, with_n=True)


def summarize(out_dir: Path) -> str:
    """A plain-text table of results.json: prompted accuracy, accuracy by layer, the ceiling and its gap."""
    res = ProbeResult.read(Path(out_dir) / RESULTS)
    h, sp = res.header, res.split
    lines = [f"probe: {h.model.name} on {h.task.name} ({h.task.split} split), "
             f"{sp.n_train + sp.n_test} questions: {sp.n_train} train / {sp.n_test} test "
             f"(split by question, seed {sp.seed}); 95% Wilson intervals over questions unless stated",
             "prompted accuracy                     test questions                 all questions"]
    names = {"letter": "letter (argmax answer logits)", "option": "option text (sum log-prob)",
             "option_norm": "option text (log-prob per char)"}
    for key, e in res.prompted.items():
        lines.append(f"  {names.get(key, key):34s}  {_ci(e.test):29s}  {_ci(e.all)}")
    cols = [("option probe", res.probe_by_layer.get("option")),
            ("letter probe", res.probe_by_layer.get("letter")),
            ("lens", res.lens_by_layer)]
    for kind, control in res.controls.items():
        cols += [(f"{kind} opt", control.by_layer.get("option")), (f"{kind} let", control.by_layer.get("letter"))]
    shuffled = res.controls.get("shuffled")
    lines.append("test accuracy by layer" + (f" (shuffled columns: mean over {shuffled.n_shuffles} label shuffles)"
                                             if shuffled is not None and shuffled.n_shuffles else "") + ":")
    lines.append("layer " + " ".join(f"{c:>14s}" for c, _ in cols))
    for i, layer in enumerate(res.layers):
        lines.append(f"{layer:5d} " + " ".join(f"{_fmt(v[i] if v else None):>14s}" for _, v in cols))
    c = res.ceiling
    lines.append(f"ceiling (target and layer chosen on train CV): {c.target} probe, layer {c.layer}: "
                 f"{_ci(c.test_accuracy)}")
    nm = c.naive_max
    lines.append(f"naive max over layers on test: {nm.test_accuracy.value:.3f} ({nm.target} probe, layer "
                 f"{nm.layer}); selection gap {c.gap:+.3f}")
    for kind, control in res.controls.items():
        cc = control.ceiling
        if control.n_shuffles is not None:
            each = ", ".join(f"{x.test_accuracy:.2f} ({x.target} L{x.layer})" for x in cc.per_shuffle)
            lines.append(f"{kind} control, chosen the same way, mean over {control.n_shuffles} shuffles (interval: "
                         f"{cc.test_accuracy.method} over shuffles and questions): "
                         f"{_ci(cc.test_accuracy)}; each: {each}")
        else:
            lines.append(f"{kind} control, chosen the same way: {cc.target} layer {cc.layer}: "
                         f"{_ci(cc.test_accuracy)}")
    sc = res.surface
    if sc is not None:
        lines.append(f"surface-cue control (option length and words alone, chosen on train CV): "
                     f"{_ci(sc.test_accuracy)}; option probe (layer {sc.probe_layer}) minus it, same test questions: "
                     f"{format_estimate(sc.margin, signed=True)} (paired bootstrap over "
                     f"questions), McNemar {sc.mcnemar.b}/{sc.mcnemar.c} p={sc.mcnemar.p_value:.2g}")
    for t, flagged in res.below_chance.items():
        if flagged:
            lines.append(f"{t} probe below chance by its whole interval at layer(s) {', '.join(map(str, flagged))}: "
                         "a label-position artefact, not knowledge")
    lb = res.lens_best
    lines.append(f"logit lens, layer chosen on train: layer {lb.layer}: {_ci(lb.test_accuracy)}")
    mb = res.majority_baseline
    lines.append(f"chance: {res.chance:.3f}; always the train questions' most common gold position "
                 f"({mb.position}): {_ci(mb.test_accuracy)}")
    t = h.timing
    lines.append(f"time: capture {t.get('capture', '?')} s, probes {t.get('probes', '?')} s")
    lines.append(f"wrote {Path(out_dir) / RESULTS} and {Path(out_dir) / FIGURE}")
    return "\n".join(lines)
