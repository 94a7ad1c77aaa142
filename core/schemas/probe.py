"""`cli.py probe` results: prompted accuracy, per-layer probes, logit lens and controls, the honest ceiling."""

from __future__ import annotations

from dataclasses import dataclass

from core.schemas.base import Result, register
from core.schemas.common import Estimate, RunHeader


@dataclass(frozen=True)
class ProbeSplit:
    """The train/test split of the questions (by question id)."""

    by: str  # what is split: question_id
    seed: int  # seed of the split
    test_fraction: float  # fraction of questions held out for testing
    n_train: int  # train questions (probes are fit and layers chosen on these)
    n_test: int  # test questions (every reported probe accuracy)
    test_ids_sha256: str  # hash of the sorted test question ids (first 16 hex digits)


@dataclass(frozen=True)
class Prompted:
    """The model's own answer to one prompt, scored on all questions and on the test questions."""

    all: Estimate  # accuracy on every question (Wilson interval)
    test: Estimate  # accuracy on the test questions (Wilson interval)


@dataclass(frozen=True)
class ProbeChoice:
    """A (target, layer) pair and its test accuracy."""

    target: str  # option or letter
    layer: int  # resid layer index
    test_accuracy: Estimate  # accuracy on the test questions (Wilson interval)


@dataclass(frozen=True)
class Ceiling:
    """The honest probe ceiling: target and layer chosen on train cross-validation, reported on test."""

    target: str  # the chosen target: option or letter
    layer: int  # the chosen resid layer
    test_accuracy: Estimate  # its accuracy on the test questions (Wilson interval)
    cv_accuracy: float  # its train cross-validation accuracy (what chose it)
    C: float  # its regularisation strength, chosen by cross-validation on train questions
    selected_on: str  # the data that chose it: train-cv
    naive_max: ProbeChoice  # the best (target, layer) on the test questions themselves (optimistic)
    gap: float  # naive max minus the honest ceiling, on test
    n_candidates: int  # (target, layer) pairs it was chosen from


@dataclass(frozen=True)
class LensSelection:
    """The logit-lens layer chosen on train questions, reported on test."""

    layer: int  # the chosen resid layer
    test_accuracy: Estimate  # lens accuracy at that layer on the test questions (Wilson interval)
    train_accuracy: float  # lens accuracy at that layer on the train questions (what chose it)
    selected_on: str  # train
    naive_max_layer: int  # the best layer on test (optimistic)
    naive_max_test: float  # its test accuracy
    gap: float  # naive max minus the chosen layer's test accuracy


@dataclass(frozen=True)
class ShuffleChoice:
    """What one label shuffle of the shuffled control chose and scored."""

    target: str  # the target chosen on train CV
    layer: int  # the layer chosen on train CV
    test_accuracy: float  # its test accuracy


@dataclass(frozen=True)
class ControlCeiling:
    """A control chosen the way the probe ceiling is (on train CV), scored on test."""

    target: str  # the chosen target (shuffled: the one chosen most often over shuffles)
    layer: int | None  # the chosen layer (null when the shuffles chose different layers)
    test_accuracy: Estimate  # test accuracy (shuffled: mean over shuffles of each shuffle's choice, interval by
    # `eval.runs.accuracy_over_runs`: a crossed bootstrap over shuffles and test questions; random-init: Wilson)
    selected_on: str  # train-cv
    per_shuffle: list[ShuffleChoice]  # each shuffle's choice (empty for the random-init control)


@dataclass(frozen=True)
class Control:
    """One control: probes fit the same way on shuffled labels or on a random-init model."""

    by_layer: dict[str, list[Estimate]]  # target -> test accuracy per layer (shuffled: mean over shuffles, with a
    # bootstrap interval over test questions of each question's mean correctness)
    n_shuffles: int | None  # label shuffles averaged (null for the random-init control)
    ceiling: ControlCeiling  # chosen like the probe ceiling


@dataclass(frozen=True)
class MajorityBaseline:
    """Always answering the train questions' most common gold position."""

    position: int  # the displayed position always answered
    test_accuracy: Estimate  # accuracy on the test questions (Wilson interval)


@dataclass(frozen=True)
class PairedTest:
    """The exact McNemar test on the questions where two methods differ (one right, the other wrong)."""

    b: int  # questions the first method gets right and the second wrong
    c: int  # questions the second gets right and the first wrong
    p_value: float  # two-sided exact binomial p of b against b + c at 1/2 (1 when b + c = 0)


@dataclass(frozen=True)
class SurfaceControl:
    """A probe on surface features of each option alone (no question), fit and selected like the option probe
    (`probes.surface`), and the option probe's margin over it on the same test questions."""

    features: str  # what the features are, in words
    n_features: int  # feature columns (two lengths plus the bag-of-words vocabulary)
    test_accuracy: Estimate  # its accuracy on the test questions (Wilson interval over questions)
    cv_accuracy: float  # its train cross-validation accuracy
    C: float  # its regularisation strength, chosen by cross-validation on train questions
    probe_layer: int  # the option probe it is compared with: the layer chosen on train CV
    probe_test_accuracy: Estimate  # that option probe's test accuracy (Wilson interval over questions)
    margin: Estimate  # option probe minus surface control on the same test questions (paired bootstrap interval
    # over questions)
    mcnemar: PairedTest  # option probe (first) against surface control (second) on the discordant test questions


@dataclass(frozen=True)
class Capture:
    """A capture store the results were computed from."""

    file: str  # store file name in the run directory
    config_hash: str  # the capture config's hash
    created_utc: str  # when the capture was made
    package_version: str  # gaplens version that made it
    random_init: bool  # captured from a re-initialised model (the random-init control)


@register
@dataclass(frozen=True)
class ProbeResult(Result):
    """`cli.py probe`: per-layer linear probes (option and letter targets), logit lens and controls beside the
    prompted accuracy; every best-of-k chosen on train questions and reported on held-out test questions."""

    SCHEMA = "gaplens.probe"
    VERSION = 4

    header: RunHeader  # the run
    captures: list[Capture]  # the stores read (the model's, then the random-init control's)
    split: ProbeSplit  # train/test split by question
    layers: list[int]  # the resid layers probed (index L < n_layers: block L's input; n_layers: final resid)
    chance: float  # expected accuracy of a uniform guess over the test questions
    prompted: dict[str, Prompted]  # prompt scoring -> accuracy: letter (argmax answer logits), option (option text,
    # summed log-prob), option_norm (option text, log-prob per character)
    probe_by_layer: dict[str, list[Estimate]]  # target (option, letter) -> test accuracy per layer
    probe_cv_by_layer: dict[str, list[float]]  # target -> train cross-validation accuracy per layer
    probe_C_by_layer: dict[str, list[float]]  # target -> chosen regularisation strength per layer
    lens_by_layer: list[Estimate]  # logit-lens accuracy per layer on the test questions (letter prompt)
    lens_best: LensSelection  # the lens layer chosen on train questions
    controls: dict[str, Control]  # control kind (shuffled, random-init) -> its results
    ceiling: Ceiling  # the honest probe ceiling over targets and layers
    ceiling_by_target: dict[str, Ceiling]  # the same, per target
    majority_baseline: MajorityBaseline  # always the most common train gold position
    surface: SurfaceControl | None  # the surface-cue control beside the option probe (null: --no-surface, or no
    # option rows)
    below_chance: dict[str, list[int]]  # target -> layers whose probe scores below chance by its whole interval
    # (Wilson upper bound < chance at confidence 1 - 0.05 / probes scanned, Bonferroni over layers and targets):
    # systematic anti-prediction, a label-position artefact, not knowledge
