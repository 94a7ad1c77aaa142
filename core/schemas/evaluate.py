"""`cli.py eval` results: per-metric accuracy over prompt variants, spread, agreement, majority vote, answer-symbol
bias and the best metric chosen on dev questions and scored on test questions."""

from __future__ import annotations

from dataclasses import dataclass

from core.schemas.base import Result, register
from core.schemas.common import Estimate, RunHeader


@dataclass(frozen=True)
class CotStats:
    """How one chain-of-thought variant's generations went."""

    n: int  # generations
    answer_found: float  # fraction whose text gave an answer
    by_method: dict[str, int]  # how the answer was found (symbol, option_text, none) -> count
    stops: dict[str, int]  # why generation stopped (answer, eos, length) -> count
    mean_new_tokens: float  # mean generated tokens


@dataclass(frozen=True)
class ChainOfThought:
    """Whether chain of thought ran, and how its generations went."""

    run: bool  # chain-of-thought variants were generated and scored
    why: str | None  # why it did not run (null when it ran)
    max_new_tokens: int | None  # generation budget per answer (null when it did not run)
    file: str | None  # the generations file in the run directory (null when it did not run)
    variants: dict[str, CotStats]  # chain-of-thought variant -> its generation statistics (empty when not run)


@dataclass(frozen=True)
class Metric:
    """One metric: a prompt variant scored one way (letter, option text, per-character option text, chain of
    thought), on every question."""

    variant: str  # metric name: the variant, "<variant>[norm]" for acc_norm, "<variant>[forced]" for a forced answer
    base_variant: str  # the prompt variant it comes from
    scoring: str  # letter, option, option_norm, cot or cot_forced
    accuracy: Estimate  # accuracy on every question (bootstrap interval over questions)
    n_missing: int  # questions with no answer (counted wrong)
    dev_acc: float | None  # accuracy on the dev questions (null when it has none)
    test_acc: float | None  # accuracy on the test questions (null when it has none)


@dataclass(frozen=True)
class Spread:
    """Spread of per-metric accuracies."""

    max: float  # highest accuracy
    min: float  # lowest accuracy
    spread: float  # max - min
    std: float  # standard deviation (ddof 0)
    mean: float  # mean
    n_variants: int  # metrics counted


@dataclass(frozen=True)
class Spreads:
    """Spread over every metric and over the lettered ones."""

    all: Spread  # every metric
    lettered: Spread | None  # lettered metrics only (null when there are none)


@dataclass(frozen=True)
class Agreement:
    """Per question, the fraction of metrics giving the modal answer, summarised."""

    mean: float  # mean over questions
    median: float  # median over questions
    unanimous_fraction: float  # questions where every metric agrees
    oracle_any_correct: float  # questions some metric answers correctly (an upper bound no honest method reaches)


@dataclass(frozen=True)
class LetteredVote:
    """The majority vote over lettered metrics only."""

    n_variants: int  # lettered metrics voting
    accuracy: Estimate  # accuracy of the vote (bootstrap interval)


@dataclass(frozen=True)
class MajorityVote:
    """The majority vote over metrics (ties to the highest summed probability), against the straight-up prompt."""

    n_variants: int  # metrics voting
    accuracy: Estimate  # accuracy of the vote (bootstrap interval)
    default_accuracy: float | None  # the straight-up prompt's accuracy (null when "default" did not run)
    diff_vs_default: Estimate | None  # vote minus straight-up, paired bootstrap (null when "default" did not run)
    lettered_only: LetteredVote | None  # the vote over lettered metrics (null when there are none)


@dataclass(frozen=True)
class SymbolBias:
    """Predicted vs gold displayed answer positions of one lettered metric."""

    pred_dist: list[float]  # fraction of answers at each displayed position
    gold_dist: list[float]  # fraction of gold answers at each position
    tv_distance: float  # total variation distance between the two
    chi2: float  # chi-square statistic of predicted counts against gold proportions (null: infinite)
    chi2_p: float  # its p-value
    n: int  # answered questions
    n_missing: int  # unanswered questions


@dataclass(frozen=True)
class ExcessNull:
    """How far the naive max beats the average metric on test, against chance (metrics interchangeable)."""

    observed: float  # max over metrics - mean over metrics, on test
    null_mean: float  # the same expected by chance alone (outcomes shuffled across metrics per question)
    null_q95: float  # 95th percentile of the null
    p_value: float  # (1 + #{null >= observed}) / (1 + n_perm)
    n_perm: int  # permutations


@dataclass(frozen=True)
class HonestBest:
    """The best metric chosen on dev questions and reported on test questions, beside the naive max."""

    chosen: str  # the metric best on dev
    dev_accuracy: float  # its dev accuracy
    test_accuracy: Estimate  # its test accuracy (bootstrap interval)
    naive_max_variant: str  # the metric best on test (optimistic)
    naive_max_test: float  # its test accuracy
    inflation: float  # naive max minus the chosen metric's test accuracy
    expected_max_by_chance: float  # optimism of the max if the observed accuracies were the true ones
    max_excess_null: ExcessNull | None  # the naive max against chance (null with a single metric)
    n_dev: int  # dev questions
    n_test: int  # test questions
    dev_by_variant: dict[str, float]  # metric -> dev accuracy
    test_by_variant: dict[str, float]  # metric -> test accuracy
    default_test_accuracy: float | None  # the straight-up prompt on test (null when it did not run)
    gain_over_default_test: float | None  # chosen minus straight-up on test (null when it did not run)
    dev_ids: list[str]  # dev question ids
    test_ids: list[str]  # test question ids


@dataclass(frozen=True)
class QuestionSummary:
    """One question across metrics (each metric's own answer is in samples.parquet)."""

    id: str  # question id
    gold: int  # gold answer (original choice index)
    n_choices: int  # number of choices
    agreement: float | None  # fraction of metrics giving the modal answer (null: no metric answered)
    majority: int  # the majority-vote answer (original index; -1: none)
    n_correct: int  # metrics answering correctly
    default_pred: int | None  # the straight-up prompt's answer (null when it did not run; -1: no answer)
    split: str  # dev or test


@register
@dataclass(frozen=True)
class EvalResult(Result):
    """`cli.py eval`: a model on a task under a set of prompt variants."""

    SCHEMA = "gaplens.eval"
    VERSION = 3

    header: RunHeader  # the run
    store: str  # the capture store in the run directory
    variants_requested: list[str]  # variants asked for (chain of thought resolved for the machine)
    variants_run: list[str]  # variants that ran
    dropped: dict[str, str]  # variant -> why it did not run
    chain_of_thought: ChainOfThought  # chain-of-thought generation
    n_questions: int  # questions
    chance: float  # expected accuracy of a uniform guess
    straight_up: str | None  # the straight-up metric ("default"; null when it did not run)
    metrics: list[Metric]  # every metric, sorted by accuracy (best first)
    spread: Spreads  # spread of the metrics' accuracies
    agreement: Agreement  # agreement across metrics per question
    majority_vote: MajorityVote  # majority vote over metrics
    symbol_bias: dict[str, SymbolBias]  # lettered metric -> its answer-position bias
    honest_best: HonestBest  # best metric chosen on dev, reported on test
    questions: list[QuestionSummary]  # per question, across metrics

    def metric(self, name: str) -> Metric | None:
        """The metric called `name`, or None."""
        return next((m for m in self.metrics if m.variant == name), None)
