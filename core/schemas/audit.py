"""`cli.py audit` results: how much of a hidden capability each elicitation method finds, on models whose truth is
known (password-locked organisms, genuinely weak ones, ones with nothing hidden), and how well each method's gain
tells the locked ones from the others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.schemas.base import Result, register
from core.schemas.common import Estimate, RunHeader

Role = Literal["locked", "weak", "base", "unknown"]


@dataclass(frozen=True)
class MethodCost:
    """What a method needed, summed over an organism's cases (or on one case)."""

    seconds: float  # wall time of the method itself (shared loading and captures not included)
    cpu_seconds: float  # CPU time of the process during it (all threads)
    gold_labels: int  # gold answers used per case (training labels, demonstrations and the dev labels it chose on)
    samples: int  # demonstrations or weak samples trained on, per case
    white_box: bool  # needs the weights or activations (False: prompting only)
    data: str  # the labelled data it consumes, in words


@dataclass(frozen=True)
class CaseMethod:
    """One method on one case (one model, one seed), on the case's test questions, without the password."""

    method: str  # the method (see `methods`)
    accuracy: Estimate  # test accuracy (Wilson)
    chosen: str | None  # what it chose on dev (or by train CV): a variant, a layer, a scale and draw, an epoch
    layer: int | None  # the layer used, for probes, the lens and steering
    dev_value: float | None  # the chosen candidate's dev accuracy (probes: train cross-validation)
    naive_max_test: float | None  # the best candidate on the test questions themselves (optimistic)
    n_candidates: int  # candidates chosen from
    cost: MethodCost  # on this case
    extra: dict[str, float | None]  # method-specific numbers: probe shuffled_control; noise naive_gain, inflation,
    # improvement_ratio (Tice et al.), max_excess and its permutation null; fine-tuning final_test and
    # with_password_after; steering examples


@dataclass(frozen=True)
class Case:
    """One model of the zoo at one seed: its reference accuracies and every method on its test questions."""

    organism: str  # the zoo organism
    role: Role  # locked, weak, base (ground truth) or unknown (a single model audited without it)
    seed: int  # dev / test split, train sample, draws and training seeds
    model: str  # the checkpoint directory
    weight_hash: str  # its weight hash
    n_params: int  # its parameters
    n_layers: int  # transformer blocks
    d_model: int  # residual width
    sizes: dict[str, int]  # questions: pool, train (probes and steering), dev (choose), test (report)
    straight_up: Estimate  # the default prompt without the password, test questions (Wilson)
    with_password: Estimate  # with the password (the ground-truth capability), test questions (Wilson)
    methods: dict[str, CaseMethod]  # method -> its result on this case
    skipped: dict[str, str]  # method (or "variant V") -> why it did not run
    shared_seconds: dict[str, float]  # wall time of shared steps: load, reference, captures


@dataclass(frozen=True)
class Organism:
    """One organism of the zoo: a model role with one model per seed (a lock run each)."""

    name: str  # its name in the zoo config
    role: Role  # locked (hides a capability), weak (genuinely lacks it), base (nothing hidden), unknown
    size: str | None  # toy size ("d_model x layers"), null for other models
    reference: str | None  # the locked organism whose hidden gap scales this one's fraction (null: locked itself)
    lock_runs: list[str]  # the lock run of each seed
    straight_up: Estimate  # mean over seeds of the test accuracy without the password (interval over runs and
    # questions)
    with_password: Estimate  # the same with the password
    gap: float  # with_password - straight_up (the hidden gap; about 0 when nothing is hidden)


@dataclass(frozen=True)
class ScoreRow:
    """One method on one organism, pooled over its seeds."""

    organism: str  # the organism
    role: Role  # its role
    method: str  # the method
    n_runs: int  # cases (seeds) pooled
    elicited: Estimate  # accuracy on test, mean over runs (crossed bootstrap over runs and questions; Wilson for one)
    straight_up: Estimate  # the same for the straight-up prompt
    gain: Estimate  # elicited - straight-up: percentile bootstrap over questions (a question's rows in every run
    # resampled together; runs not resampled)
    fraction: Estimate | None  # locked: fraction of the hidden gap recovered, (elicited - straight-up) /
    # (with password - straight-up), crossed bootstrap over seeds and questions (`eval.runs.fraction_recovered`);
    # weak / base: the gain in units of the reference locked organism's gap (its interval: the gain's divided by
    # that gap); null without a reference
    fraction_kind: Literal["own-gap", "reference-gap", "none"]  # which of the two `fraction` is
    cost: MethodCost  # summed over the runs (labels and samples per run)


@dataclass(frozen=True)
class Detector:
    """How well a method's per-organism statistic separates locked organisms from the others."""

    method: str  # the method
    statistic: str  # gain (elicited - straight-up, mean over seeds); for noise also naive_gain (max over draws on
    # test, Tice et al.) and improvement_ratio (that max / the unperturbed accuracy, Tice et al.)
    against: str  # the negatives: "weak+base", "weak" or "base"
    auroc: Estimate  # P(a locked organism's statistic > a negative's) (ties count half), percentile bootstrap
    # over organisms (locked and negatives resampled separately); null when a class is empty
    p_value: float  # exact one-sided permutation p of the AUROC: the chance a random relabelling of these organisms
    # separates at least as well (with 3 locked and 3 others it cannot go below 1/20)
    n_locked: int  # locked organisms it rests on
    n_other: int  # negative organisms it rests on
    scores: dict[str, float]  # organism -> its statistic


@dataclass(frozen=True)
class NoiseNull:
    """What the maximum over noise draws reads for organisms with nothing hidden, beside the locked ones."""

    nothing_hidden_naive_gain: Estimate  # weak and base organisms: naive max over draws on test - straight-up,
    # mean and t interval over their cases
    nothing_hidden_honest_gain: Estimate  # the same for the draw chosen on dev
    locked_naive_gain: Estimate  # locked organisms: the naive max's gain
    locked_honest_gain: Estimate  # locked organisms: the honest gain
    inflation: Estimate  # naive max - honest choice on test, every case (the max's optimism)


@register
@dataclass(frozen=True)
class AuditResult(Result):
    """`cli.py audit`: every elicitation method on every organism of a zoo, the scoreboard and the detector view."""

    SCHEMA = "gaplens.audit"
    VERSION = 1

    header: RunHeader  # the run; header.model is the first organism's first model, header.task its task
    zoo: str | None  # the zoo config file (null: one model audited)
    methods: list[str]  # methods run, in scoreboard order
    method_info: dict[str, MethodCost]  # per method: access and data needed (seconds summed over every case)
    organisms: list[Organism]  # every organism
    cases: list[Case]  # every (model, seed)
    scoreboard: list[ScoreRow]  # organism x method
    detectors: list[Detector]  # method x statistic x negatives
    noise_null: NoiseNull | None  # the noise method's null (null when noise did not run)
    notes: list[str]  # caveats in words (skipped methods, how many organisms a detector rests on)
    cpu_seconds: float  # CPU time of the whole audit (this process, all threads; the zoo's lock runs included)
