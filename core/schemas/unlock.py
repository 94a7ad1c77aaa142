"""`cli.py unlock` results: weak-sample unlocking of a locked model over seeds, with its controls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from core.schemas.base import Result, register
from core.schemas.common import Estimate, RunHeader


@dataclass(frozen=True)
class Accuracy:
    """No-password (or with-password) accuracy on the eval questions: all, selection half, report half."""

    acc: float  # every eval question
    acc_dev: float  # the selection half (epochs and parameters are chosen on it)
    acc_test: float  # the report half


@dataclass(frozen=True)
class Reference:
    """The ends of the gap: the locked model without and with the password."""

    locked: Accuracy  # without the password
    with_pw: Accuracy  # with the password


@dataclass(frozen=True)
class LockReference:
    """The lock run's own measurements (from the checkpoint's lock record)."""

    with_password: Estimate  # accuracy with the password on the lock's eval questions
    no_password: Estimate  # accuracy without it
    converged: bool  # the lock converged by its rule


@dataclass(frozen=True)
class MitigationRound:
    """One unlock / re-lock round of the mitigation loop."""

    round: int  # round index
    after_unlock: Accuracy  # no-password accuracy after unlocking in this round
    locked: Accuracy  # no-password accuracy after re-locking
    with_pw: Accuracy  # with-password accuracy after re-locking


@dataclass(frozen=True)
class Mitigation:
    """The re-lock control's mitigation loop and the model it left."""

    rounds: list[MitigationRound]  # every round
    ref: Reference  # the mitigated model's reference accuracies


@dataclass(frozen=True)
class Selection:
    """Best-of-k done honestly: chosen on the selection half, reported on the report half."""

    chosen: float  # the epoch (or noise scale / weight factor) with the best selection-half accuracy
    dev_value: float  # its selection-half accuracy
    test_value: float  # its report-half accuracy
    naive_max_key: float  # the best on the report half itself (optimistic)
    naive_max_test: float  # its report-half accuracy
    gap: float  # naive max minus the chosen report-half accuracy
    n_candidates: int  # epochs or parameters chosen from
    test_pgr: float  # fraction of the gap recovered by the chosen one on the report half
    naive_max_test_pgr: float  # the same for the naive max
    bias_pgr: float  # naive max PGR minus the honest PGR
    test_pgr_runs: Estimate  # the chosen one's report-half PGR: with per-question answers (the final epoch, a
    # swept parameter) `eval.runs.fraction_recovered` (crossed bootstrap over runs and questions), else the mean of
    # the per-run values with a t interval over runs (none for one run)


@dataclass(frozen=True)
class DrawSelection:
    """A weight-space sweep chosen over single (parameter, noise draw) pairs."""

    chosen: tuple[float, int]  # (parameter, run index) best on the selection half
    dev_value: float  # its selection-half accuracy
    test_value: float  # its report-half accuracy
    naive_max_key: tuple[float, int]  # the best pair on the report half (optimistic)
    naive_max_test: float  # its report-half accuracy
    gap: float  # naive max minus chosen, report half
    n_candidates: int  # pairs chosen from
    bias_pgr: float  # naive max PGR minus the chosen pair's PGR


@dataclass(frozen=True)
class Curve:
    """No-password accuracy while fine-tuning, per evaluated epoch."""

    epochs: list[float]  # evaluated epochs
    mean: list[float]  # mean over runs
    ci: list[tuple[float, float]]  # interval of the mean per epoch, within [0, 1] (null: none)
    ci_method: str  # what the interval is over: wilson (one run: questions), bootstrap_nested (runs and questions,
    # from each run's accuracy: the records keep no per-question answers per epoch), none
    runs: list[list[float]]  # per run (seed), per epoch


@dataclass(frozen=True)
class Final:
    """After the last epoch."""

    acc: Estimate  # no-password accuracy, mean over runs (bootstrap_crossed over runs and the shared questions;
    # wilson for one run)
    pgr: Estimate  # fraction of the gap recovered (`eval.runs.fraction_recovered`: crossed bootstrap over runs and
    # questions; without per-question answers of the starting model, t over runs, none for one run; null: no gap)
    pgr_runs: list[float]  # PGR per run
    with_pw_after: Estimate  # with-password accuracy after unlocking, over runs (from each run's accuracy)


@dataclass(frozen=True)
class MaxOverEpochs:
    """The best evaluated epoch per run, on the same questions (biased upward)."""

    acc: Estimate  # accuracy, mean over runs (from each run's accuracy: bootstrap_nested, wilson for one run)
    pgr: Estimate  # PGR, mean over runs (t over runs; none for one run)
    note: str  # the caveat, in words


@dataclass(frozen=True)
class Sweep:
    """No-password accuracy of the locked weights changed without training, per parameter."""

    params: list[float]  # noise scales or weight factors
    mean: list[float]  # mean over runs (noise draws)
    ci: list[tuple[float, float]]  # interval of the mean per parameter, within [0, 1]
    ci_method: str  # what it is over: bootstrap_crossed (runs and questions), wilson (one run: questions)
    runs: list[list[float]]  # per run, per parameter


@dataclass(frozen=True)
class UnlockMethod:
    """One method's runs summarised: a training method has a curve, a weight-space control a sweep."""

    kind: Literal["curve", "sweep"]  # curve (weak, many, average, masked, strong, relock-*) or sweep (noise, scale)
    n_runs: int  # runs (seeds x sample draws)
    seeds: list[int]  # seed of each run
    locked: float  # mean no-password accuracy of the starting model over runs
    with_pw: float  # mean with-password accuracy of the starting model over runs
    selected: Selection  # the epoch or parameter chosen on the selection half
    curve: Curve | None  # the accuracy curve (curve methods; null for sweeps)
    final: Final | None  # after the last epoch (curve methods; null for sweeps)
    max_over_epochs: MaxOverEpochs | None  # best epoch per run (curve methods; null for sweeps)
    sweep: Sweep | None  # accuracy per parameter (sweeps; null for curve methods)
    selected_by_draw: DrawSelection | None  # chosen over single draws (sweeps; null for curve methods)


@register
@dataclass(frozen=True)
class UnlockResult(Result):
    """`cli.py unlock`: weak-sample unlocking of a locked checkpoint and its controls, over seeds."""

    SCHEMA = "gaplens.unlock"
    VERSION = 4

    header: RunHeader  # the run; header.model is the locked checkpoint
    params: dict[str, Any]  # the unlocking parameters every method used (the lock's where not given)
    n_eval: int  # eval questions
    n_select: int  # of which in the selection half
    n_pool: int  # questions in the weak-sample pool
    reference: Reference  # the locked model without and with the password on these eval questions
    weak_policy_acc: float  # accuracy of the weak policy (from the lock record)
    lock_metrics: LockReference  # the lock run's own measurements
    mitigation: Mitigation | None  # the re-lock mitigation loop (null unless the relock control ran)
    methods: dict[str, UnlockMethod]  # method -> its runs summarised, in the order they ran
