"""The findings section: the seeds' questions answered from the runs the report read, each with what the data can
and cannot answer. Pure functions over `report.gap.GroupAnalysis`; every number comes with its interval and what the
interval is over.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.schemas import format_estimate
from eval.paired import PairedGap
from eval.stats import Estimate, bootstrap_mean
from report.gap import GroupAnalysis, Settings
from report.outcomes import VOTE

MIN_MODELS_FOR_TREND = 4


@dataclass
class Finding:
    """One question, the answer per model and task, and the limits of that answer."""

    question: str
    answer: str
    details: list[str] = field(default_factory=list)
    can: str = ""
    cannot: str = ""


def ci(e: Estimate, signed: bool = False) -> str:
    """'0.123 [0.100, 0.150]' (signed: '+0.023 [-0.010, +0.050]'); `core.schemas.format_estimate`."""
    return format_estimate(e, signed=signed)


def verdict(gap: PairedGap, alpha: float = 0.05) -> str:
    """'higher', 'lower' or 'no detectable difference', by the exact McNemar / sign test at `alpha`."""
    if gap.mcnemar.p_value >= alpha:
        return "no detectable difference"
    return "higher" if gap.difference.value > 0 else "lower"


def describe(gap: PairedGap, what: str) -> str:
    """One comparison in words: both accuracies, the paired difference and the test."""
    m = gap.mcnemar
    return (f"{what} {ci(gap.elicited)} vs straight-up {ci(gap.straight)} on the same {gap.n} questions: "
            f"difference {ci(gap.difference, True)} (paired bootstrap over questions), {m.test.replace('_', ' ')} "
            f"{m.b} vs {m.c} discordant, p = {m.p_value:.2g}")


def _name(g: GroupAnalysis) -> str:
    return f"{g.model} on {g.task}"


def majority_vote(groups: Sequence[GroupAnalysis]) -> Finding:
    """Does majority vote over variants beat straight-up?"""
    f = Finding("Does a majority vote over prompt variants beat the straight-up prompt?", "")
    counts = {"higher": 0, "lower": 0, "no detectable difference": 0}
    widths = []
    for g in groups:
        vote = next((x for x in g.fixed if x.outcome.family == VOTE), None)
        if vote is None:
            continue
        v = verdict(vote.gap)
        counts[v] += 1
        widths.append((vote.gap.difference.hi - vote.gap.difference.lo) / 2)
        f.details.append(f"{_name(g)}: {v}. {describe(vote.gap, 'majority vote')}.")
    n = sum(counts.values())
    if not n:
        f.answer = "Not answerable from these runs: no eval run with several prompt variants."
        f.can = "Nothing."
        f.cannot = "Needs `eval` runs with two or more variants (and the default prompt)."
        return f
    f.answer = (f"In {counts['higher']} of {n} model/task pairs the vote is higher, in {counts['lower']} lower, in "
                f"{counts['no detectable difference']} not detectably different (exact McNemar test, 5%).")
    f.can = ("Each pair's answer on every question both were scored on (the vote is a fixed procedure, nothing is "
             "chosen): a difference outside a pair's interval is ruled out at 95%; the widest interval has a "
             f"half-width of {max(widths):.2f}.")
    f.cannot = ("Smaller differences, and whether the answer holds for other models, tasks or variant sets; the vote "
                "depends on which variants voted.")
    return f


def _gap_diff(a: GroupAnalysis, b: GroupAnalysis, st: Settings) -> tuple[Estimate, int] | None:
    """Gap of a minus gap of b on their shared test questions, each its own chosen method (bootstrap over
    questions of the per-question difference of differences)."""
    ca, cb = a.best, b.best
    if ca is None or cb is None or a.straight is None or b.straight is None:
        return None
    ids = np.intersect1d(ca.test_ids, cb.test_ids, assume_unique=True)
    if len(ids) < 2:
        return None
    d = (ca.chosen.on(ids) - a.straight.on(ids)) - (cb.chosen.on(ids) - b.straight.on(ids))
    return bootstrap_mean(d, n_boot=st.n_boot, seed=st.seed, confidence=st.confidence), len(ids)


def consistency(groups: Sequence[GroupAnalysis], st: Settings) -> Finding:
    """Is best-elicited / straight-up consistent across models?"""
    f = Finding("Is the best elicited score over straight-up consistent across models?", "")
    by_task: dict[str, list[GroupAnalysis]] = {}
    for g in groups:
        if g.best is not None:
            by_task.setdefault(g.task, []).append(g)
    differs, pairs = 0, 0
    for task, gs in sorted(by_task.items()):
        for g in gs:
            gap = g.best.gap
            ratio = (f"ratio {ci(gap.ratio)} (paired bootstrap over questions)" if gap.ratio is not None
                     else gap.ratio_reason)
            f.details.append(f"{_name(g)}: best method chosen on dev: {g.best.chosen.label}; gap "
                             f"{ci(gap.difference, True)} on {gap.n} test questions; {ratio}.")
        for a, b in itertools.combinations(gs, 2):
            res = _gap_diff(a, b, st)
            if res is None:
                f.details.append(f"{task}: {a.model} vs {b.model}: no shared test questions to compare the gaps on.")
                continue
            est, n = res
            pairs += 1
            same = est.lo <= 0 <= est.hi
            differs += not same
            f.details.append(f"{task}: gap of {a.model} minus gap of {b.model} (each its own chosen method, the same "
                             f"{n} test questions): {ci(est, True)} (bootstrap over questions): "
                             f"{'no detectable difference' if same else 'different'}.")
    if not pairs:
        f.answer = "Not answerable from these runs: it needs two or more models on the same task and questions."
        f.can = "Each model's own gap and ratio, listed below."
        f.cannot = "Any comparison between models: it needs runs of several models on one task with one split."
        return f
    f.answer = (f"{pairs - differs} of {pairs} model pairs have gaps not detectably different; {differs} differ "
                "(95% bootstrap interval of the difference of gaps excludes 0). Ratios are shown only where "
                "straight-up is above chance by its whole interval; below chance a ratio divides by noise.")
    f.can = "Whether these particular models' gaps differ on these questions."
    f.cannot = (f"Whether the gap changes with model size or family: a trend needs at least {MIN_MODELS_FOR_TREND} "
                "models per task (see the across-model figure); two models give one comparison, confounded with "
                "everything else that differs between them.")
    return f


def variants(groups: Sequence[GroupAnalysis]) -> Finding:
    """Which variants move which models?"""
    f = Finding("Which prompt variants move which models?", "")
    moved = 0
    for g in groups:
        fixed = [x for x in g.fixed if x.outcome.family != VOTE and x.outcome.key != "prompt:default"]
        if not fixed:
            continue
        sig = [x for x in fixed if x.p_holm < 0.05]
        moved += bool(sig)
        if sig:
            parts = [f"{x.outcome.label} {ci(x.gap.difference, True)} (Holm p = {x.p_holm:.2g})" for x in
                     sorted(sig, key=lambda x: -x.gap.difference.value)]
            f.details.append(f"{_name(g)}: {len(sig)} of {len(fixed)} variants move it: " + "; ".join(parts) + ".")
        else:
            best = max(fixed, key=lambda x: abs(x.gap.difference.value))
            f.details.append(f"{_name(g)}: none of {len(fixed)} variants detectably (Holm-adjusted McNemar, 5%); "
                             f"largest: {best.outcome.label} {ci(best.gap.difference, True)}.")
    if not f.details:
        f.answer = "Not answerable from these runs: no eval run with prompt variants."
        f.can, f.cannot = "Nothing.", "Needs `eval` runs with prompt variants besides the default."
        return f
    f.answer = (f"{moved} of {len(f.details)} model/task pairs have at least one variant that moves accuracy "
                "(each variant against straight-up on every question, McNemar p-values Holm-adjusted over the "
                "pair's variants).")
    f.can = "Which of the variants tried move each model on these questions, in which direction."
    f.cannot = ("Why they move it, or whether a variant that moves one model moves another (each model is tested "
                "separately); variants never run are not covered.")
    return f


def probe_controls(groups: Sequence[GroupAnalysis]) -> Finding:
    """Does the probe ceiling read more than the controls?"""
    f = Finding("Does the probe ceiling read more than its controls (shuffled labels, surface cues)?", "")
    for g in groups:
        p = g.probe
        if p is None:
            continue
        parts = [f"vs {c.control.label}: {ci(c.gap.difference, True)}, p = {c.gap.mcnemar.p_value:.2g}"
                 for c in g.controls]
        f.details.append(f"{_name(g)}: probe ceiling ({p.chosen.label}, chosen on train cross-validation) "
                         f"{ci(p.gap.elicited)}; " + ("; ".join(parts) if parts else "no control was run") + ".")
    if not f.details:
        f.answer = "Not answerable from these runs: no probe run."
        f.can, f.cannot = "Nothing.", "Needs `probe` runs (with their controls)."
        return f
    f.answer = ("Margins of the probe ceiling over each control on the same test questions (paired bootstrap over "
                "questions; exact McNemar or sign test). A margin whose interval includes 0 means the probe is not "
                "shown to read more than the control does.")
    f.can = "Whether the chosen probe beats label noise and the options' surface on these questions."
    f.cannot = "What the probe reads when it does beat them (a probe can find a direction the model never uses)."
    return f


def locking(groups: Sequence[GroupAnalysis]) -> Finding | None:
    """With-password, locked and each unlocking method's fraction of the gap recovered."""
    gs = [g for g in groups if g.locking is not None]
    if not gs:
        return None
    f = Finding("How much of a password-locked model's gap does each unlocking method recover?", "")
    for g in gs:
        lk = g.locking
        f.details.append(f"{_name(g)}: with the password {ci(lk.with_password)}, locked {ci(lk.locked)} "
                         f"(Wilson over {lk.n_questions} questions).")
        for o, rec in lk.recovered.values():
            fr = rec.fraction
            val = ("undefined (no gap between with and without the password)" if fr.value != fr.value
                   else f"{ci(fr)} (crossed bootstrap over {o.n_runs} run(s) and {rec.n_questions} questions)")
            f.details.append(f"  {o.label}: fraction of the gap recovered {val}.")
    f.answer = ("The fraction of the gap recovered = (unlocked - locked) / (with password - locked), per method on "
                "every eval question (the final model of each run; nothing chosen).")
    f.can = "How far each method closes this lock's gap on these questions."
    f.cannot = "Whether a stronger lock, another model or more runs would behave the same."
    return f


def findings(groups: Sequence[GroupAnalysis], settings: Settings) -> list[Finding]:
    """Every finding the runs can speak to, in the order of the seeds' questions."""
    out = [majority_vote(groups), consistency(groups, settings), variants(groups), probe_controls(groups)]
    lk = locking(groups)
    return out + ([lk] if lk is not None else [])
