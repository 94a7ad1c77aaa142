"""The elicitation gap of one model on one task, paired by question: what the report's summary and findings show.

From the `report.outcomes.Outcome`s of every run of a (model, task) group:

- **roles**: each question's role (dev or test) in the runs that scored it; a question with different roles in two
  runs (runs split with different seeds or question sets) is left out of every selection, with a note.
- **families** (`Choice`): within each method family (prompt variants, chain of thought, majority vote, logit lens,
  probe, unlocking), the candidate best on the dev questions is reported on the test questions against straight-up
  on the same test questions (`eval.paired.select_best_of_k`: paired bootstrap interval of the difference over
  questions, exact McNemar / sign test on the discordant questions, the ratio only when straight-up is above chance,
  the naive max over test and its permutation null beside it). The probe family chooses target and layer by their
  train cross-validation accuracy (a probe's train questions play dev), so the probe ceiling is chosen the same way.
- **best**: the same selection over every candidate of every family (the best elicitation method).
- **fixed** (`Fixed`): each prompt variant, chain-of-thought metric and the majority vote, none chosen, against
  straight-up on every question both answered (`eval.paired.paired_gap`), with Holm-adjusted McNemar p-values over
  the variants of the group.
- **controls** (`ControlMargin`): the chosen probe against each control (shuffled labels, surface cues, random-init
  model) on the same test questions.
- **locking** (`Locking`): the locked model with and without the password (Wilson intervals over questions) and
  each unlocking method's fraction of the gap recovered (`eval.runs.fraction_recovered`: a crossed bootstrap over
  runs and questions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from eval.paired import PairedGap, SelectedGap, paired_gap, select_best_of_k
from eval.runs import Recovered, fraction_recovered
from eval.stats import Estimate, accuracy
from report.outcomes import (
    CANDIDATE_FAMILIES,
    CONTROL,
    COT,
    PROBE,
    REFERENCE,
    STRAIGHT,
    UNLOCK,
    VARIANTS,
    VOTE,
    Outcome,
)

STRAIGHT_PRIORITY = ("eval", "probe", "unlock")  # whose straight-up a group uses when several runs have one


@dataclass(frozen=True)
class Settings:
    """Resampling settings of every interval and test in the analysis."""

    n_boot: int = 2000
    n_perm: int = 1000
    confidence: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class Choice:
    """A best-of-k chosen on dev and reported on test against straight-up on the same test questions."""

    family: str  # the family, or "any method" for the choice over every family
    chosen: Outcome
    selected: SelectedGap
    n_candidates: int
    dev_kind: str  # what chose it: "dev accuracy", "train cross-validation", or both
    test_ids: np.ndarray  # the test questions it is reported on (sorted)
    labels: dict[str, str]  # candidate key -> label (the selection's names are keys)

    def label(self, key: str) -> str:
        """A candidate's label."""
        return self.labels.get(key, key)

    @property
    def gap(self) -> PairedGap:
        """The chosen candidate against straight-up on the test questions."""
        return self.selected.gap


@dataclass(frozen=True)
class Fixed:
    """A method with nothing chosen, against straight-up on every question both answered."""

    outcome: Outcome
    gap: PairedGap
    p_holm: float  # McNemar p adjusted (Holm) over the group's fixed comparisons of the same kind


@dataclass(frozen=True)
class ControlMargin:
    """The chosen probe (first) against a control (second) on the same test questions."""

    control: Outcome
    gap: PairedGap


@dataclass(frozen=True)
class Locking:
    """The ends of the gap of a locked model and each unlocking method's fraction of it recovered."""

    with_password: Estimate  # every question both answered (Wilson)
    locked: Estimate
    n_questions: int
    with_password_test: Estimate | None  # with the password on the test questions (None: no test questions)
    recovered: dict[str, tuple[Outcome, Recovered]]  # unlocking key -> (its outcome, fraction recovered)


@dataclass
class GroupAnalysis:
    """The paired analysis of one (model, task) group; absent parts are None or empty, with notes saying why."""

    model: str
    task: str
    n_params: int | None
    kind: str
    straight: Outcome | None = None
    chance: float = float("nan")  # mean 1 / n_choices over the test questions
    n_dev: int = 0
    n_test: int = 0
    families: dict[str, Choice] = field(default_factory=dict)
    best: Choice | None = None
    fixed: list[Fixed] = field(default_factory=list)
    controls: list[ControlMargin] = field(default_factory=list)
    locking: Locking | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def probe(self) -> Choice | None:
        """The probe ceiling: target and layer chosen on train cross-validation, reported on test."""
        return self.families.get(PROBE)

    @property
    def straight_test(self) -> Estimate | None:
        """Straight-up accuracy on the test questions (from any family's paired comparison)."""
        c = self.best or next(iter(self.families.values()), None)
        return None if c is None else c.gap.straight


def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order])) if m else p
    out = np.empty(m)
    out[order] = adj
    return out.tolist()


def _intersect(arrays: Sequence[np.ndarray]) -> np.ndarray:
    out = arrays[0]
    for a in arrays[1:]:
        out = np.intersect1d(out, a, assume_unique=True)
    return out


def _roles(outcomes: Sequence[Outcome]) -> tuple[np.ndarray, np.ndarray, int]:
    """(dev ids, test ids, number of questions with conflicting roles) over every outcome with roles."""
    seen: dict[str, set[str]] = {}
    for o in outcomes:
        for q, r in zip(o.ids.tolist(), o.roles.tolist(), strict=True):
            if r:
                seen.setdefault(q, set()).add(r)
    dev = np.array(sorted(q for q, r in seen.items() if r == {"dev"}), dtype=str)
    test = np.array(sorted(q for q, r in seen.items() if r == {"test"}), dtype=str)
    return dev, test, sum(len(r) > 1 for r in seen.values())


def _chance(straight: Outcome, ids: np.ndarray) -> float:
    pos = np.searchsorted(straight.ids, ids)
    return float(np.mean(1.0 / straight.n_choices[pos])) if len(ids) else float("nan")


def _pick_straight(outcomes: Sequence[Outcome], kinds: dict[str, str]) -> Outcome | None:
    cands = [o for o in outcomes if o.family == STRAIGHT]
    cands.sort(key=lambda o: STRAIGHT_PRIORITY.index(kinds.get(o.run, "unlock"))
               if kinds.get(o.run) in STRAIGHT_PRIORITY else len(STRAIGHT_PRIORITY))
    return cands[0] if cands else None


def _dedupe(outcomes: Sequence[Outcome], kinds: dict[str, str]) -> list[Outcome]:
    """One outcome per key: a metric scored by both an eval and a probe run is taken from the eval run. Straight-up
    and with-password answers are kept per run: each run's own (a locked model's unlocking runs are compared with
    their own straight-up, and runs that disagree are noted)."""
    out: dict[tuple[str, str], Outcome] = {}
    for o in sorted(outcomes, key=lambda o: STRAIGHT_PRIORITY.index(kinds[o.run])
                    if kinds.get(o.run) in STRAIGHT_PRIORITY else 9):
        out.setdefault((o.key, o.run if o.family in (STRAIGHT, REFERENCE) else ""), o)
    return list(out.values())


def choose(family: str, cands: Sequence[Outcome], straight: Outcome, dev_all: np.ndarray, test_all: np.ndarray,
           st: Settings) -> tuple[Choice | None, str]:
    """The candidate best on dev, reported on test against straight-up (`eval.paired.select_best_of_k`); every
    candidate on the same questions: the test questions all of them and straight-up answered, the dev questions
    all per-question candidates answered. Returns (None, why) when that leaves nothing to choose from."""
    arrays = [c for c in cands if c.dev_score is None]
    # a per-question candidate that answered no dev question (e.g. a probe whose cross-validation score is not
    # finite: it has test rows only) cannot be chosen on dev; it is left out, with a note, instead of emptying the
    # dev questions every other candidate shares
    blind = [c for c in arrays if not np.isin(c.ids, dev_all).any()]
    arrays = [c for c in arrays if c not in blind]
    dev = _intersect([dev_all, *(c.ids for c in arrays)]) if arrays else dev_all[:0]
    usable = [c for c in cands if c.dev_score is not None] + (arrays if len(dev) else [])
    note = (f"left out of the choice, no dev answers: {', '.join(c.label for c in blind)}" if blind else "")
    if arrays and not len(dev):
        note = "; ".join(filter(None, [note, "per-question candidates left out: they share no dev question"]))
    if not usable:
        return None, "no dev questions shared by its candidates"
    test = _intersect([test_all, straight.ids, *(c.ids for c in usable)])
    if not len(test):
        return None, "no test questions shared by its candidates and straight-up"
    dev_map = {c.key: (c.dev_score if c.dev_score is not None else c.on(dev)) for c in usable}
    sel = select_best_of_k(dev_map, {c.key: c.on(test) for c in usable}, straight.on(test),
                           chance=_chance(straight, test), dev_ids=dev if len(dev) else None, test_ids=test,
                           straight_ids=test, n_boot=st.n_boot, n_perm=st.n_perm, confidence=st.confidence,
                           seed=st.seed)
    kinds = sorted({"train cross-validation" if c.dev_score is not None else "dev accuracy" for c in usable})
    chosen = next(c for c in usable if c.key == sel.chosen)
    return Choice(family, chosen, sel, len(usable), " and ".join(kinds), test,
                  {c.key: c.label for c in usable}), note


def _fixed(cands: Sequence[Outcome], straight: Outcome, st: Settings) -> list[Fixed]:
    gaps = []
    for c in cands:
        ids = np.intersect1d(c.ids, straight.ids, assume_unique=True)
        if len(ids):
            gaps.append((c, paired_gap(c.on(ids), straight.on(ids), chance=_chance(straight, ids),
                                       n_boot=st.n_boot, confidence=st.confidence, seed=st.seed)))
    adj = holm([g.mcnemar.p_value for _, g in gaps])
    return [Fixed(c, g, p) for (c, g), p in zip(gaps, adj, strict=True)]


def _locking(outcomes: Sequence[Outcome], straight: Outcome, st: Settings) -> Locking | None:
    ref = next((o for o in outcomes if o.family == REFERENCE and o.run == straight.run), None)
    if ref is None:
        return None
    ids = np.intersect1d(ref.ids, straight.ids, assume_unique=True)
    rec = {}
    for o in outcomes:
        if o.run == straight.run and (o.family == UNLOCK or o.key == "unlock:strong"):
            q = np.intersect1d(ids, o.ids, assume_unique=True)
            runs = o.runs_on(q)
            rec[o.key] = (o, fraction_recovered(runs, straight.on(q), ref.on(q), elicited_ids=[q] * len(runs),
                                                locked_ids=q, with_password_ids=q, n_boot=st.n_boot,
                                                confidence=st.confidence, seed=st.seed))
    test = ids[np.isin(ids, ref.with_role("test"))]
    return Locking(accuracy(ref.on(ids), st.confidence), accuracy(straight.on(ids), st.confidence), len(ids),
                   accuracy(ref.on(test), st.confidence) if len(test) else None, rec)


def analyse(model: str, task: str, outcomes: Sequence[Outcome], kinds: dict[str, str], *, n_params: int | None,
            kind: str, settings: Settings = Settings()) -> GroupAnalysis:
    """The paired analysis of one group from its outcomes (`kinds`: run directory -> command)."""
    g = GroupAnalysis(model, task, n_params, kind)
    outcomes = _dedupe(outcomes, kinds)
    g.straight = straight = _pick_straight(outcomes, kinds)
    if straight is None:
        if outcomes:
            g.notes.append("no straight-up answers (the default prompt's letter answer, or a locked model without "
                           "the password) in this group's samples: nothing to compare against")
        return g
    others = [o for o in outcomes if o.family == STRAIGHT and o is not straight]
    for o in others:
        ids = np.intersect1d(o.ids, straight.ids, assume_unique=True)
        if len(ids) and not np.array_equal(o.on(ids), straight.on(ids)):
            g.notes.append(f"straight-up of {o.run} differs from {straight.run} on "
                           f"{int(np.sum(o.on(ids) != straight.on(ids)))} of {len(ids)} shared questions; "
                           f"{straight.run} is used")
    dev_all, test_all, conflicts = _roles([o for o in outcomes if o.family != REFERENCE])
    if conflicts:
        g.notes.append(f"{conflicts} questions have different roles (dev / test) in different runs (runs split "
                       "with other seeds or question sets): they are left out of every selection")
    test_ids = np.intersect1d(test_all, straight.ids, assume_unique=True)
    g.chance, g.n_test = _chance(straight, test_ids), len(test_ids)
    g.n_dev = len(np.intersect1d(dev_all, straight.ids, assume_unique=True))
    cands = [o for o in outcomes if o.family in CANDIDATE_FAMILIES]
    own = {o.run: o for o in outcomes if o.family == STRAIGHT}
    for fam in CANDIDATE_FAMILIES:
        members = [o for o in cands if o.family == fam]
        if members:
            runs = {o.run for o in members}
            # a locked model's unlocking family is compared with its unlock run's own straight-up (the same
            # first-token scoring); every other family with the group's straight-up (the eval run's letter answer)
            run = next(iter(runs))
            ref = own.get(run, straight) if len(runs) == 1 and kinds.get(run) == "unlock" else straight
            choice, why = choose(fam, members, ref, dev_all, test_all, settings)
            if choice is None:
                g.notes.append(f"{fam}: not compared ({why})")
            else:
                g.families[fam] = choice
                if why:
                    g.notes.append(f"{fam}: {why}")
    if cands:
        g.best, why = choose("any method", cands, straight, dev_all, test_all, settings)
        if g.best is None:
            g.notes.append(f"best over every method: not chosen ({why})")
        elif why:
            g.notes.append(f"best over every method: {why}")
    g.fixed = _fixed([o for o in cands if o.family in (VARIANTS, COT) and o.key != "prompt:default"], straight,
                     settings)
    g.fixed += _fixed([o for o in cands if o.family == VOTE], straight, settings)
    probe = g.probe
    if probe is not None:
        for c in (o for o in outcomes if o.family == CONTROL and o.key != "unlock:strong"):
            ids = _intersect([probe.chosen.ids, c.ids, test_all, straight.ids])
            if len(ids):
                g.controls.append(ControlMargin(c, paired_gap(
                    probe.chosen.on(ids), c.on(ids), chance=_chance(straight, ids), n_boot=settings.n_boot,
                    confidence=settings.confidence, seed=settings.seed)))
    unlocked = [o for o in outcomes if o.family == STRAIGHT and kinds.get(o.run) == "unlock"]
    g.locking = _locking(outcomes, unlocked[0] if unlocked else straight, settings)
    return g
