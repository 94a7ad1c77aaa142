"""Per-question outcomes of every way of answering, read from each run's `samples.parquet` (`core.samples`).

An `Outcome` is one way of answering (the straight-up prompt, a prompt variant, majority vote, the logit lens at one
layer, a probe at one layer, an unlocking method over its seeds, a control) as per-question correctness on the
questions it answered, each question with its role in the run that scored it: ``dev`` (choose on it; a probe run's
``train`` questions) or ``test`` (report on it). Comparisons are then paired by question id (`report.gap`).

Families (`FAMILIES`, display order): ``straight-up`` (the default prompt's letter answer: ``prompted:letter`` of the
``default`` variant in eval and probe runs; the locked model without the password, ``locked``/``no_password``, in
unlock runs), ``prompt variants`` (every eval metric but chain of thought; the option-text scores of probe runs),
``chain of thought`` (``cot``, ``cot_forced``), ``majority vote`` (eval runs: each question's majority answer over
the metrics, from results.json), ``logit lens`` (per layer), ``probe`` (option and letter targets per layer: test
questions only, the dev score is the layer's train cross-validation accuracy from results.json), ``unlocking`` (each
unlocking method, and each parameter of a weight-space sweep, per question the mean over its seeds; the strong-sample
positive control is a control). ``control`` outcomes (shuffled labels, surface cues, random-init model, strong
samples) and the ``reference`` (the locked model with the password) are never candidates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.samples import FILE as SAMPLES_FILE
from core.samples import read_samples
from core.schemas import EvalResult, ProbeResult
from report.rows import Run

STRAIGHT, VARIANTS, COT, VOTE, LENS, PROBE, UNLOCK = (
    "straight-up", "prompt variants", "chain of thought", "majority vote", "logit lens", "probe", "unlocking")
CONTROL, REFERENCE = "control", "reference"
FAMILIES: tuple[str, ...] = (STRAIGHT, VARIANTS, COT, VOTE, LENS, PROBE, UNLOCK)
CANDIDATE_FAMILIES: tuple[str, ...] = FAMILIES[1:]
ROLE = {"dev": "dev", "train": "dev", "test": "test"}  # a probe run's train questions play dev
SUFFIX = {"letter": "", "option": "", "cot": "", "option_norm": "[norm]", "cot_forced": "[forced]"}
_UNLOCK = re.compile(r"^unlock:(?P<key>.+)-s(?P<seed>-?\d+)$")


@dataclass(frozen=True)
class Outcome:
    """One way of answering on the questions it answered (`ids` sorted, without duplicates).

    `values`: per-question correctness in [0, 1] (0/1, or the mean over `n_runs` runs); `by_run`: the 0/1 outcomes of
    each run when there are several (unlocking seeds, label shuffles); `roles`: "dev", "test" or "" (no role, e.g.
    a lock run's eval questions); `dev_score`: the dev accuracy when it was measured without per-question outcomes
    (a probe's train cross-validation accuracy); `n_choices`: each question's number of choices.
    """

    key: str
    label: str
    family: str
    ids: np.ndarray
    values: np.ndarray
    roles: np.ndarray
    n_choices: np.ndarray
    run: str
    dev_score: float | None = None
    n_runs: int = 1
    by_run: tuple[np.ndarray, ...] = ()
    layer: int | None = None

    def on(self, ids: np.ndarray) -> np.ndarray:
        """Values on `ids` (each must be among this outcome's questions), in that order."""
        pos = np.searchsorted(self.ids, ids)
        if len(ids) and (np.any(pos >= len(self.ids)) or np.any(self.ids[np.minimum(pos, len(self.ids) - 1)] != ids)):
            raise ValueError(f"{self.label}: not every requested question was answered")
        return self.values[pos]

    def runs_on(self, ids: np.ndarray) -> list[np.ndarray]:
        """Each run's 0/1 outcomes on `ids` (one run: `values`)."""
        pos = np.searchsorted(self.ids, ids)
        return [r[pos] for r in self.by_run] if self.by_run else [self.values[pos]]

    def with_role(self, role: str) -> np.ndarray:
        """The ids whose role here is `role`."""
        return self.ids[self.roles == role]


def _outcome(key: str, label: str, family: str, frame, run: str, **kw) -> Outcome:
    """An outcome from rows of one method (one row per question; `correct` may be a mean)."""
    f = frame.sort_values("question_id")
    ids = f["question_id"].to_numpy(dtype=str)
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{run}: {label} has more than one row for a question")
    roles = np.array([ROLE.get(s, "") for s in f["split"].tolist()], dtype=object).astype(str)
    return Outcome(key, label, family, ids, f["correct"].to_numpy(dtype=float), roles,
                   f["n_choices"].to_numpy(dtype=int), run, **kw)


def read_outcomes(run: Run) -> list[Outcome]:
    """Every outcome of one run (eval, probe and unlock runs; [] for other kinds). A run directory without
    samples.parquet gives [] and a note on the run (the paired analysis needs per-question answers)."""
    path = Path(run.path) / SAMPLES_FILE
    if run.kind not in ("eval", "probe", "unlock"):
        return []
    if not path.is_file():
        run.notes.append(f"no {SAMPLES_FILE}: its methods are left out of the paired comparisons (rerun the "
                         "command to write it)")
        return []
    frame = read_samples(path).to_pandas()
    reader = {"eval": _eval, "probe": _probe, "unlock": _unlock}[run.kind]
    return reader(frame, run)


def _metric(variant: str, scoring: str) -> str:
    return variant + SUFFIX.get(scoring, f"[{scoring}]")


def _prompted(frame, run: Run) -> list[Outcome]:
    out = []
    rows = frame[frame["method"].str.startswith("prompted:")]
    for (variant, method), f in rows.groupby(["variant", "method"], sort=True):
        scoring = method.partition(":")[2]
        name = _metric(variant, scoring)
        family = COT if scoring.startswith("cot") else VARIANTS
        out.append(_outcome(f"prompt:{name}", name, family, f, str(run.path)))
        if variant == "default" and scoring == "letter":
            out.append(_outcome("straight-up", "straight-up (default prompt, letter answer)", STRAIGHT, f,
                                str(run.path)))
    return out


def _eval(frame, run: Run) -> list[Outcome]:
    res: EvalResult = run.result  # type: ignore[assignment]
    out = _prompted(frame, run)
    q = res.questions
    if q:
        import pandas as pd

        vote = pd.DataFrame({"question_id": [x.id for x in q], "split": [x.split for x in q],
                             "correct": [float(x.majority == x.gold and x.majority >= 0) for x in q],
                             "n_choices": [x.n_choices for x in q]})
        out.append(_outcome("majority vote", f"majority vote over {res.majority_vote.n_variants} metrics", VOTE,
                            vote, str(run.path)))
    return out


def _probe(frame, run: Run) -> list[Outcome]:
    res: ProbeResult = run.result  # type: ignore[assignment]
    out = _prompted(frame, run)
    where = str(run.path)
    layers = frame[frame["method"] == "lens"]
    for layer, f in layers.groupby("layer", sort=True):
        out.append(_outcome(f"lens:L{int(layer)}", f"logit lens, layer {int(layer)}", LENS, f, where,
                            layer=int(layer)))
    for target, cvs in res.probe_cv_by_layer.items():
        rows = frame[frame["method"] == f"probe:{target}"]
        for layer, cv in zip(res.layers, cvs, strict=True):
            f = rows[rows["layer"] == layer]
            if len(f):
                out.append(_outcome(f"probe:{target}:L{layer}", f"{target} probe, layer {layer}", PROBE, f, where,
                                    dev_score=float(cv) if np.isfinite(cv) else None, layer=layer))
    shuffled = res.controls.get("shuffled")
    if shuffled is not None and shuffled.ceiling.per_shuffle:
        parts = []
        for k, choice in enumerate(shuffled.ceiling.per_shuffle):
            f = frame[(frame["method"] == f"control:shuffled-s{k}") & (frame["layer"] == choice.layer)
                      & (frame["variant"] == ("option" if choice.target == "option" else "default"))]
            parts.append(f)
        if all(len(p) for p in parts):
            out.append(_mean_over_runs("control:shuffled", f"shuffled-label probe (mean of {len(parts)} shuffles)",
                                       CONTROL, parts, where))
    rand = res.controls.get("random-init")
    if rand is not None:
        c = rand.ceiling
        f = frame[(frame["method"] == "control:random-init") & (frame["layer"] == c.layer)
                  & (frame["variant"] == ("option" if c.target == "option" else "default"))]
        if len(f):
            out.append(_outcome("control:random-init", f"random-init model probe ({c.target}, layer {c.layer})",
                                CONTROL, f, where, layer=c.layer))
    f = frame[frame["method"] == "control:surface"]
    if len(f):
        out.append(_outcome("control:surface", "surface-cue probe (option length and words alone)", CONTROL, f,
                            where))
    return out


def _mean_over_runs(key: str, label: str, family: str, parts: Sequence, where: str) -> Outcome:
    """One outcome from several runs' rows on the same questions: per question the mean, each run kept."""
    each = [_outcome(key, label, family, p, where) for p in parts]
    ids = each[0].ids
    for e in each[1:]:
        if not np.array_equal(e.ids, ids):
            raise ValueError(f"{where}: the runs of {label} answered different questions")
    stack = np.stack([e.values for e in each])
    return Outcome(key, label, family, ids, stack.mean(axis=0), each[0].roles, each[0].n_choices, where,
                   n_runs=len(each), by_run=tuple(stack) if len(each) > 1 else ())


def _unlock(frame, run: Run) -> list[Outcome]:
    where = str(run.path)
    out = []
    locked = frame[frame["method"] == "locked"]
    for cond, key, label, family in (("no_password", "straight-up", "locked model, no password", STRAIGHT),
                                     ("with_password", "with-password", "locked model, with the password",
                                      REFERENCE)):
        f = locked[locked["condition"] == cond]
        if len(f):
            out.append(_outcome(key, label, family, f, where))
    parts: dict[str, list] = {}
    for method, f in frame[frame["method"].str.startswith("unlock:")].groupby("method", sort=True):
        m = _UNLOCK.match(method)
        if m is None:
            raise ValueError(f"{where}/{SAMPLES_FILE}: method {method!r} is not unlock:<method>-s<seed>")
        parts.setdefault(m["key"], []).append(f)
    for key, fs in parts.items():
        base = key.partition("=")[0]
        n = len(fs)
        family = CONTROL if base == "strong" else UNLOCK
        what = "positive control: strong samples" if base == "strong" else "no password"
        label = f"unlocked: {key} ({what}; mean of {n} run{'s' if n > 1 else ''})"
        out.append(_mean_over_runs(f"unlock:{key}", label, family, fs, where))
    return out
