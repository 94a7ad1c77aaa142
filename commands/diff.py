"""What changes inside a model when it is locked and unlocked (`python cli.py diff`).

Checkpoints and roles (labels in every output):

- ``a``: the reference, e.g. the locked model. Every *update* is ``X - a`` for the compared checkpoints.
- ``b`` and ``c`` (``c1``, ``c2``, ... when several): compared checkpoints, e.g. unlocking runs on different samples.
- ``base`` (optional): the checkpoint ``a`` was made from, e.g. the model before locking. It adds the *prior update*
  ``a - base`` and its cosine with every update: -1 means the update undoes it (unlocking undoes locking), ~0 that
  it goes somewhere else. With two or more compared checkpoints, their updates are also compared pairwise and with
  their mean (do unlocking runs on different samples agree?).

One run writes one directory:

- ``captures/{label}.{nopw,pw}.h5``: activation stores (`hooks.store` layout, float32 residuals) of every checkpoint
  on the same questions, without and with the password (`locking.password.with_password`; ``--no-password``: only
  without);
- ``results.json`` (`core.schemas.DiffResult`; NaN is written as null; per-layer lists run over resid layers
  0..L, ``layers``):
  ``header`` (the run; its model is checkpoint a), ``password_fingerprint``,
  ``checkpoints`` (label -> path and model identity), ``conditions`` (["nopw", "pw"]), ``questions``
  ("all" or "LABEL:SPLIT" of a lock record), ``variant``, ``password_placement``, ``n_questions``, ``layers``;
  ``weights``: ``updates`` (name "X->Y" -> [X, Y]), ``cosine_pairs``, ``params`` (one record per tensor: name,
  layer, component, shape, ``updates[u]`` = {relative_change, norm, spectrum (2-D only, else null): top,
  effective_rank, stable_rank, numerical_rank, energy_rank, frobenius}, ``cosine["u~v"]``), ``totals`` (relative_change,
  relative_change_by_layer, cosine, per update / pair over the whole model);
  ``activations``: ``behaviour[label][cond]`` (answer accuracy, Wilson interval), ``lens[label][cond]``
  {accuracy, gold_prob}, ``vs_reference[label][cond]`` {cka, cka_debiased, cosine} against a,
  ``password_effect[label]`` {cka, cosine, distance} no password vs its own with-password activations,
  ``to_reference_password[label]`` {distance, cosine} no password vs a's with-password activations;
  ``probe``: trained_on, n_train_questions, n_test_questions, cv_accuracy (per layer, train questions),
  chosen_layer, ``transfer[label][cond]`` {accuracy per layer, at_chosen_layer (Wilson interval)};
- ``samples.parquet``: per checkpoint and condition, each question's answer (answer logits), its logit-lens answer
  per layer and the transferred probe's answer per layer on the test questions (`core.samples`);
- ``weights_relative_change.png``, ``weights_effective_rank.png``, ``weights_cosine.png`` (heatmaps, layer x
  component, one panel per update or pair) and ``activations.png``, ``lens_probe.png`` (per-layer curves).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import ExecutionOptions, OutputOptions, PluginOptions, TaskOptions, opt, pick, resolve_threads
from core.provenance import config_hash, to_jsonable
from core.rundir import results_to_reuse, run_directory
from core.samples import SampleTable, write_samples
from core.schemas import DiffResult, TaskInfo, format_estimate, from_data, run_header, to_data
from core.schemas import diff as schema
from eval import stats, tasks, variants
from eval.records import MCRecord, fingerprint
from eval.scoring import masked_argmax
from hooks import execution
from hooks.capture import CaptureConfig, capture
from hooks.models import load_hf, model_fingerprint, wrap
from hooks.store import Store
from locking import checkpoint, toy, weights
from locking import password as pwd
from probes import similarity
from probes.fit import fit_layer
from probes.lens import lens_correct, lens_predictions
from probes.targets import Target, probe_scores
from report import diff_figures

log = logging.getLogger(__name__)

RESULTS_NAME, SAMPLES_NAME = "results.json", "samples.parquet"
CONDITIONS = ("nopw", "pw")
SAMPLE_CONDITIONS = {"nopw": "no_password", "pw": "with_password"}


@dataclass(frozen=True)
class Config(PluginOptions, TaskOptions, ExecutionOptions, OutputOptions):
    """Checkpoints of one architecture compared on the same questions."""

    a: str | None = opt(None, "reference checkpoint (e.g. locked); updates are X - a")
    b: str | None = opt(None, "checkpoint compared with --a (e.g. unlocked)")
    c: tuple[str, ...] = opt((), "more checkpoints compared like --b")
    base: str | None = opt(None, "checkpoint --a was made from (e.g. base): adds the prior update a - base and "
                           "whether updates undo it")
    task: str = opt(toy.TASK, "task name (see `cli.py tasks`; default: the toy organism's)")
    n: int = opt(64, "number of questions (seeded subsample)")
    questions: str = opt("auto", 'which questions of --split: "all", a lock split ("eval", "pool", "train") of the '
                         'first locked checkpoint given, or "auto" ("eval" if one is locked, else "all")')
    variant: str | None = opt(None, "prompt variant, scored on each continuation's first token (default: the "
                              "lock's, else default)")
    password: bool = opt(True, "also run every checkpoint with the password")
    placement: str | None = opt(None, "where the prompt carries the password, see locking.password (default: the "
                                f"lock's, else {pwd.DEFAULT_PLACEMENT})")
    probe_on: str = opt("a", "label whose with-password activations (no-password ones with --no-password) train the "
                        "probe")
    out: str = opt("runs/diff", "output directory", ui=True)
    top_k: int = opt(8, "singular values kept per update matrix")
    threads: int = opt(1, "torch CPU threads (1 is steadier on a shared 2-core machine)", ui=True)

    def _check(self) -> None:
        if not self.a or not self.b:
            raise ValueError("--a and --b are required: two checkpoints (model names or HF directories)")
        if self.n < 4:
            raise ValueError(f"--n must be at least 4 (CKA and the probe split need questions), got {self.n}")
        if self.probe_on not in labels(self):
            raise ValueError(f"--probe-on {self.probe_on!r} is not a checkpoint label; labels: {labels(self)}")
        if self.placement is not None:
            pwd.check_placement(self.placement)
        if self.questions not in ("auto", "all", "eval", "pool", "train"):
            raise ValueError(f"--questions must be auto, all, eval, pool or train, got {self.questions!r}")
        if self.load_in is not None:
            raise ValueError(f"--load-in {self.load_in}: diff compares the checkpoints' weights; load them in full")


def labels(cfg: Config) -> list[str]:
    """Checkpoint labels in order: base (if given), a, b, c or c1, c2, ..."""
    cs = ["c"] if len(cfg.c) == 1 else [f"c{i + 1}" for i in range(len(cfg.c))]
    return (["base"] if cfg.base else []) + ["a", "b", *cs]


def checkpoints(cfg: Config) -> dict[str, str]:
    """label -> checkpoint name or path (a lock run directory resolved to its checkpoint)."""
    paths = ([cfg.base] if cfg.base else []) + [cfg.a, cfg.b, *cfg.c]
    return {lab: resolve_checkpoint(p) for lab, p in zip(labels(cfg), paths, strict=True)}


def resolve_checkpoint(ckpt: str) -> str:
    """A lock (or unlock) run directory stands for its ``model/`` checkpoint; anything else is returned as is."""
    try:
        return str(checkpoint.resolve(ckpt))
    except ValueError:
        return ckpt


def lock_record(ckpts: dict[str, str]) -> tuple[str, dict[str, Any]] | None:
    """(label, lock record) of the first locked checkpoint among `ckpts` in the order a, b, c..., base."""
    for lab in sorted(ckpts, key=lambda k: k == "base"):
        try:
            return lab, checkpoint.read(ckpts[lab]).meta
        except (ValueError, OSError):
            continue
    return None


@dataclass(frozen=True)
class Plan:
    """What the flags and a lock record settle: the questions, the variant and the password placement."""

    records: list[MCRecord]
    variant: str
    placement: str
    questions: str  # "all" or "<label>:<lock split>"


def plan(cfg: Config, ckpts: dict[str, str]) -> Plan:
    """The questions (a seeded subsample of `cfg.n`), variant and placement, defaults taken from the lock record."""
    lock = lock_record(ckpts)
    meta = lock[1] if lock else {}
    if cfg.task == toy.TASK:
        toy.ensure_task()
    records = tasks.load_task(tasks.TaskSpec.of(cfg))
    which = cfg.questions if cfg.questions != "auto" else ("eval" if lock else "all")
    where = "all"
    if which != "all":
        if lock is None:
            raise ValueError(f"--questions {which}: none of the checkpoints is locked (no {checkpoint.LOCK_META})")
        task = meta.get("task") or {}
        if (task.get("name"), task.get("split")) != (cfg.task, cfg.split):
            raise ValueError(f"--questions {which}: checkpoint {lock[0]} was locked on {task.get('name')}:"
                             f"{task.get('split')}, not --task {cfg.task} --split {cfg.split}")
        ids = set(meta["splits"][which])
        records = [r for r in records if r.id in ids]
        where = f"{lock[0]}:{which}"
    if not records:
        raise ValueError(f"--questions {which}: no questions of {cfg.task}:{cfg.split} left")
    records = tasks.subsample(records, cfg.n, seed=cfg.seed)
    variant = cfg.variant or meta.get("variant") or "default"
    placement = cfg.placement or meta.get("placement") or pwd.DEFAULT_PLACEMENT
    for name, mine in (("variant", variant), ("placement", placement)):
        if meta.get(name) not in (None, mine):
            log.warning("--%s %s differs from the lock's %s %s", name, mine, name, meta[name])
    return Plan(records, variants.parse(variant).name(), pwd.check_placement(placement), where)


def password_placement(placement: str) -> Callable[[variants.Prompt], variants.Prompt]:
    """prompt -> the same prompt carrying the password where `placement` (see `locking.password`) puts it."""
    pwd.check_placement(placement)
    return functools.partial(pwd.with_password, placement=placement)


# --------------------------------------------------------------------------- capture


def capture_config(cfg: Config, ckpt: str, pl: Plan, cond: str) -> CaptureConfig:
    """The capture of one checkpoint under one condition: the plan's questions, the variant scored on each
    continuation's first token (as the lock trains it), every layer in float32, the password placed for "pw"."""
    return pick(CaptureConfig, cfg, model=ckpt, n=None, question_ids=tuple(sorted(r.id for r in pl.records)),
                variants=(pl.variant,), first_token=True, resid_dtype="float32",
                prompt_transform=f"password:{pl.placement}:{pwd.fingerprint()}" if cond == "pw" else None)


@dataclass
class Acts:
    """One checkpoint under one condition, rows sorted by question id."""

    qids: np.ndarray  # (n,)
    labels: np.ndarray  # (n,) gold displayed position
    n_choices: np.ndarray  # (n,)
    resid: np.ndarray  # (n, layers, d)
    lens: np.ndarray  # (n, layers, choices)
    answer: np.ndarray  # (n, choices)
    order: np.ndarray  # (n, choices) displayed position -> original index
    gold: np.ndarray  # (n,) gold original index


def read_acts(path: Path) -> Acts:
    """A diff capture store as arrays, rows in question-id order."""
    with Store(path) as s:
        idx = np.argsort(s.rows["question_id"], kind="stable")
        return Acts(s.rows["question_id"][idx], s.rows["label"][idx], s.rows["n_choices"][idx],
                    s.resid_rows(idx).astype(np.float32), s.array("lens_logits", idx), s.array("answer_logits", idx),
                    s.rows["order"][idx], s.rows["answer_original"][idx])


def answer_positions(x: Acts) -> np.ndarray:
    """(n,) argmax displayed position of the answer logits over each question's choices."""
    return masked_argmax(x.answer, x.n_choices)


def lens_positions(x: Acts) -> np.ndarray:
    """(n, layers) argmax displayed position of the logit lens over each question's choices."""
    return lens_predictions(x.lens, x.n_choices)


# --------------------------------------------------------------------------- analysis


def _per_layer(fn: Callable[[np.ndarray, np.ndarray], float], x: Acts, y: Acts) -> list[float]:
    return [fn(x.resid[:, i], y.resid[:, i]) for i in range(x.resid.shape[1])]


def _gold_prob(logits: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """(n, layers, choices) lens logits (NaN: no such choice), (n,) gold -> (n, layers) softmax prob of gold."""
    z = np.where(np.isnan(logits), -np.inf, logits)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return p[np.arange(len(gold)), :, gold]


def activation_report(acts: dict[tuple[str, str], Acts], ref: str) -> dict[str, Any]:
    """Per-layer similarity to the reference, the password's effect, distance to the reference's with-password
    representations, and the logit lens of every checkpoint and condition."""
    conds = sorted({c for _, c in acts}, key=CONDITIONS.index)
    labs = list(dict.fromkeys(lab for lab, _ in acts))
    out: dict[str, Any] = {"vs_reference": {}, "password_effect": {}, "to_reference_password": {}, "lens": {},
                           "behaviour": {}}
    for lab in labs:
        out["lens"][lab], out["behaviour"][lab] = {}, {}
        for cond in conds:
            x = acts[lab, cond]
            out["lens"][lab][cond] = {
                "accuracy": lens_correct(x.lens, x.labels, x.n_choices).mean(0).tolist(),
                "gold_prob": _gold_prob(x.lens, x.labels).mean(0).tolist()}
            correct = answer_positions(x) == x.labels
            out["behaviour"][lab][cond] = stats.accuracy(correct).to_dict()
            if lab != ref:
                r = acts[ref, cond]
                out["vs_reference"].setdefault(lab, {})[cond] = {
                    "cka": _per_layer(similarity.linear_cka, x, r),
                    "cka_debiased": _per_layer(lambda u, v: similarity.linear_cka(u, v, debiased=True), x, r),
                    "cosine": _per_layer(similarity.mean_cosine, x, r)}
        if "pw" in conds:
            no, pw = acts[lab, "nopw"], acts[lab, "pw"]
            out["password_effect"][lab] = {"cka": _per_layer(similarity.linear_cka, no, pw),
                                           "cosine": _per_layer(similarity.mean_cosine, no, pw),
                                           "distance": _per_layer(similarity.relative_distance, no, pw)}
            out["to_reference_password"][lab] = {"distance": _per_layer(similarity.relative_distance, no, acts[ref, "pw"]),
                                                 "cosine": _per_layer(similarity.mean_cosine, no, acts[ref, "pw"])}
    return out


def probe_transfer(acts: dict[tuple[str, str], Acts], train_on: tuple[str, str], seed: int,
                   predictions: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] | None = None
                   ) -> dict[str, Any]:
    """Per-layer letter probes (`probes.fit.fit_layer`: C chosen by grouped cross-validation on the train
    questions) trained on `train_on`'s activations of the train questions, tested on every checkpoint and condition
    on the test questions (split by question id). The reported layer is chosen by that train cross-validation. `predictions` (when given) receives, keyed (label, condition,
    layer), the rows of the test questions (a mask over the checkpoint's rows) and the probe's predicted displayed
    positions there."""
    src = acts[train_on]
    train_ids, test_ids = stats.split_ids(src.qids.tolist(), 0.5, seed)
    target = Target("letter", np.arange(len(src.qids)), src.labels, src.qids, src.n_choices)
    tr = np.isin(src.qids, train_ids)
    n_layers = src.resid.shape[1]
    fits = [fit_layer(target, src.resid[:, layer], tr) for layer in range(n_layers)]
    cv = [f.cv for f in fits]
    finite = {i: v for i, v in enumerate(cv) if np.isfinite(v)}
    chosen = max(finite, key=lambda i: finite[i]) if finite else None
    transfer: dict[str, Any] = {}
    for (lab, cond), a in acts.items():
        m = np.isin(a.qids, test_ids)
        t = Target("letter", np.arange(int(m.sum())), a.labels[m], a.qids[m], a.n_choices[m])
        accs, chosen_est = [], None
        for layer, fit in enumerate(fits):
            pred = masked_argmax(probe_scores(t, fit.probe, a.resid[m, layer]), t.n_choices)
            correct = pred == t.y
            if predictions is not None:
                predictions[lab, cond, layer] = (m, pred)
            accs.append(float(correct.mean()))
            if layer == chosen:
                chosen_est = stats.accuracy(correct).to_dict()
        transfer.setdefault(lab, {})[cond] = {"accuracy": accs, "at_chosen_layer": chosen_est}
    return {"trained_on": f"{train_on[0]}/{train_on[1]}", "n_train_questions": len(train_ids),
            "n_test_questions": len(test_ids), "cv_accuracy": cv, "chosen_layer": chosen, "transfer": transfer}


def weight_report(states: dict[str, dict[str, torch.Tensor]], labs: list[str], top_k: int) -> dict[str, Any]:
    """Updates X - a for every compared checkpoint, the prior update a - base, and their cosines."""
    compared = [lab for lab in labs if lab not in ("a", "base")]
    updates = {f"a->{x}": ("a", x) for x in compared}
    pairs: list[tuple[str, str]] = []
    if "base" in labs:
        updates = {"base->a": ("base", "a"), **updates}
        pairs += [("base->a", f"a->{x}") for x in compared]
    names = [f"a->{x}" for x in compared]
    pairs += [(u, v) for i, u in enumerate(names) for v in names[i + 1:]]
    if len(names) >= 2:
        pairs += [(u, "mean") for u in names]
    out = weights.weight_diff(states, updates, cosine_pairs=pairs, mean_of=names, k=top_k)
    return {"updates": {u: list(p) for u, p in updates.items()}, "cosine_pairs": ["~".join(p) for p in pairs], **out}


# --------------------------------------------------------------------------- run


def run(cfg: Config) -> Path:
    """Load every checkpoint, capture it with and without the password, compare; returns the output directory."""
    with run_directory(Path(cfg.out), "diff"):
        return _run(cfg)


def _run(cfg: Config) -> Path:
    """Load every checkpoint, capture it with and without the password, compare; returns the output directory."""
    t0 = time.perf_counter()
    out = Path(cfg.out)
    chash = config_hash(cfg)
    results = out / RESULTS_NAME
    ckpts = checkpoints(cfg)
    inputs: dict[str, str | None] = {f"model:{lab}": model_fingerprint(ckpt) for lab, ckpt in ckpts.items()}
    if results_to_reuse(results, config=to_jsonable(cfg), config_hash=chash, inputs=inputs,
                        overwrite=cfg.overwrite) and (out / SAMPLES_NAME).exists():
        log.info("reusing finished diff %s", out)
        return out
    execution.check(cfg)  # a device this machine does not have fails before anything loads
    torch.set_num_threads(resolve_threads(cfg.threads))
    pl = plan(cfg, ckpts)
    place = password_placement(pl.placement) if cfg.password else None
    conds = CONDITIONS if cfg.password else CONDITIONS[:1]
    states: dict[str, dict[str, torch.Tensor]] = {}
    loaded = {}
    for lab, ckpt in ckpts.items():  # all loaded and checked before anything is written
        loaded[lab] = load_hf(ckpt, dtype=cfg.dtype, device=cfg.device, device_map=cfg.device_map)
        states[lab] = {k: v.detach().cpu() for k, v in loaded[lab].model.named_parameters()}  # wrapping renames them
        first = next(iter(states))
        if {k: v.shape for k, v in states[lab].items()} != {k: v.shape for k, v in states[first].items()}:
            raise ValueError(f"--{lab.rstrip('0123456789')} {ckpt}: parameter names or shapes differ from "
                             f"--{first} {ckpts[first]} (not the same architecture)")
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, schema.Checkpoint] = {}
    acts: dict[tuple[str, str], Acts] = {}
    placement = loaded["a"].placement
    for lab, hf in loaded.items():
        model = wrap(hf.model, hf.tokenizer, name=ckpts[lab], source=hf.source, path=hf.path, digest=hf.digest(),
                     placement=hf.placement)
        models[lab] = schema.Checkpoint(ckpts[lab], model.identity)
        for cond in conds:
            path = capture(capture_config(cfg, ckpts[lab], pl, cond), out / "captures" / f"{lab}.{cond}.h5",
                           model=model, transform=place if cond == "pw" else None)
            acts[lab, cond] = read_acts(path)
    del loaded
    ref_ids = acts["a", "nopw"].qids
    for key, a in acts.items():
        if not np.array_equal(a.qids, ref_ids):
            raise ValueError(f"captures of {key[0]}/{key[1]} are not on the same questions as a/nopw")
    labs = list(states)
    probe_preds: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
    probe = probe_transfer(acts, (cfg.probe_on, conds[-1]), cfg.seed, probe_preds)
    header = run_header(
        command="diff", model=models["a"].identity,
        task=TaskInfo(cfg.task, cfg.split, len(ref_ids), cfg.data_dir, fingerprint(pl.records)), seed=cfg.seed,
        config=cfg,
        config_hash=chash, execution=execution.execution_record(cfg, placement=placement),
        timing={"total": time.perf_counter() - t0}, inputs=inputs)
    doc = from_data(DiffResult, {
        "header": header, "checkpoints": models,
        "password_fingerprint": pwd.fingerprint() if cfg.password else None,
        "conditions": list(conds), "questions": pl.questions, "variant": pl.variant,
        "password_placement": pl.placement if cfg.password else None,
        "n_questions": len(ref_ids), "layers": list(range(acts["a", "nopw"].resid.shape[1])),
        "weights": weight_report(states, labs, cfg.top_k),
        "activations": activation_report(acts, "a"),
        "probe": probe,
    })
    diff_figures.write_plots(out, to_data(doc))
    subjects = {r.id: r.subject for r in pl.records}
    write_samples(out / SAMPLES_NAME, _samples(doc, acts, probe_preds, subjects))
    doc.write(results)
    return out


def _samples(doc: DiffResult, acts: dict[tuple[str, str], Acts],
             probe_preds: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]],
             subjects: dict[str, str]) -> SampleTable:
    """samples.parquet: per checkpoint (model column) and condition, every question's answer and lens answer per
    layer, and the transferred probe's answer per layer on the test questions."""
    h = doc.header
    table = SampleTable(task=h.task.name, seed=h.seed, command="diff", variant=doc.variant)

    def add(lab: str, cond: str, x: Acts, rows: np.ndarray, pos: np.ndarray, **cols: Any) -> None:
        ident = doc.checkpoints[lab].identity
        ids = x.qids[rows].tolist()
        table.add(question_id=ids, subject=[subjects.get(q) or None for q in ids],
                  condition=SAMPLE_CONDITIONS[cond], model=ident.name, weight_hash=ident.weight_hash,
                  prediction=x.order[np.flatnonzero(rows), pos],
                  gold=x.gold[rows], correct=pos == x.labels[rows], n_choices=x.n_choices[rows], **cols)

    for (lab, cond), x in acts.items():
        every = np.ones(len(x.qids), dtype=bool)
        pos = answer_positions(x)
        add(lab, cond, x, every, pos, split="all", method="prompted:letter", layer=None,
            score=x.answer[np.arange(len(pos)), pos])
        lens = lens_positions(x)
        for i, layer in enumerate(doc.layers):
            add(lab, cond, x, every, lens[:, i], split="all", method="lens", layer=layer,
                score=x.lens[np.arange(len(pos)), i, lens[:, i]])
    for (lab, cond, i), (rows, pred) in probe_preds.items():
        add(lab, cond, acts[lab, cond], rows, np.asarray(pred), split="test", method="probe:transfer",
            layer=doc.layers[i], score=None)
    return table


# --------------------------------------------------------------------------- summary


def _f(x: float | None, spec: str = ".2f") -> str:
    return "  -" if x is None or math.isnan(x) else format(x, spec)


def _where(p: schema.ParamRecord) -> str:
    return p.component if p.layer is None else f"L{p.layer}.{p.component}"


def _effective_rank(u: schema.ParamUpdate) -> float | None:
    return u.spectrum.effective_rank if u.spectrum is not None else None


def summarize(out_dir: str | Path) -> str:
    """Compact tables from DIR/results.json: checkpoints, weight updates, per-layer activations and probes."""
    doc = DiffResult.read(Path(out_dir) / RESULTS_NAME)
    act, w, pr = doc.activations, doc.weights, doc.probe
    lines = [f"diff of {len(doc.checkpoints)} checkpoints on {doc.header.task.name} ({doc.n_questions} "
             f"questions from {doc.questions}, variant {doc.variant}), conditions {'/'.join(doc.conditions)}"
             + (f" (password placement {doc.password_placement})" if doc.password_placement else "")
             + f" -> {Path(out_dir)}",
             f"{'label':<6} {'weight hash':<17} {'acc nopw':<20} {'acc pw':<20} checkpoint"]
    for lab, m in doc.checkpoints.items():
        beh = act.behaviour[lab]
        acc = [format_estimate(e, digits=2, missing="-") for e in (beh.get("nopw"), beh.get("pw"))]
        lines.append(f"{lab:<6} {m.identity.weight_hash:<17} {acc[0]:<20} {acc[1]:<20} {m.checkpoint}")
    lines.append("weights: update, relative change (whole model), top components [rel change, effective rank]")
    for u in w.updates:
        ranked = sorted((p for p in w.params if (p.updates[u].relative_change or 0) > 0),
                        key=lambda p: -(p.updates[u].relative_change or 0))[:3]
        tops = ", ".join(f"{_where(p)} [{p.updates[u].relative_change:.2g}, "
                         f"{_f(_effective_rank(p.updates[u]), '.1f')}]" for p in ranked)
        lines.append(f"  {u:<10} {_f(w.totals.relative_change[u], '.3g'):>8}   {tops}")
    for u, v in w.totals.relative_change_by_layer.items():
        lines.append(f"  {u:<10} per block: " + " ".join(_f(x, ".2g") for x in v))
    for pair, c in w.totals.cosine.items():
        lines.append(f"  cos {pair:<22} {_f(c, '+.3f')}")
    labs = [lab for lab in doc.checkpoints if lab != "a"]
    head = ["layer"] + [f"cka:{lab}" for lab in labs] + [f"pwd:{lab}" for lab in act.password_effect] + \
        [f"lens:{lab}" for lab in doc.checkpoints] + [f"prb:{lab}" for lab in doc.checkpoints]
    lines.append("per layer, no password: cka = linear CKA with a; pwd = relative distance to its own with-password "
                 "activations; lens = logit-lens accuracy; prb = probe-transfer accuracy (test questions)")
    width = max(6, *(len(h) for h in head))
    lines.append(" ".join(f"{h:>{width}}" for h in head))
    for i in doc.layers:
        row = [str(i)] + [_f(act.vs_reference[lab]["nopw"].cka[i]) for lab in labs]
        row += [_f(v.distance[i]) for v in act.password_effect.values()]
        row += [_f(act.lens[lab]["nopw"].accuracy[i]) for lab in doc.checkpoints]
        row += [_f(pr.transfer[lab]["nopw"].accuracy[i]) for lab in doc.checkpoints]
        lines.append(" ".join(f"{x:>{width}}" for x in row))
    lines.append(f"probe trained on {pr.trained_on} ({pr.n_train_questions} train / {pr.n_test_questions} "
                 f"test questions); layer {pr.chosen_layer} chosen by cross-validation on train questions:")
    for lab, d in pr.transfer.items():
        txt = "; ".join(f"{c} {format_estimate(e.at_chosen_layer, digits=2)}" for c, e in d.items()
                        if e.at_chosen_layer)
        lines.append(f"  {lab:<6} {txt or '-'}")
    return "\n".join(lines)
