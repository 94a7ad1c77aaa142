"""`cli.py diff` results: checkpoints compared by their weights and by their activations on the same questions.

Labels: ``a`` is the reference, ``b``/``c``/``c1``... are compared with it, ``base`` (optional) is what ``a`` was
made from. An update "X->Y" is Y - X. Conditions: ``nopw`` (no password) and ``pw`` (with the password). Per-layer
lists run over the resid layers in `layers`; a value that is undefined there (e.g. CKA of constant activations) is
null.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.schemas.base import Result, register
from core.schemas.common import Estimate, ModelIdentity, RunHeader


@dataclass(frozen=True)
class Checkpoint:
    """One compared checkpoint."""

    checkpoint: str  # the checkpoint as given (a lock run directory resolved to its model/)
    identity: ModelIdentity  # its identity


@dataclass(frozen=True)
class Spectrum:
    """The spectrum of one update matrix."""

    top: list[float]  # the largest singular values
    effective_rank: float  # exp of the entropy of the normalised singular values
    stable_rank: float  # ||delta||_F^2 / ||delta||_2^2
    numerical_rank: int  # singular values above 1e-4 of the largest
    energy_rank: int  # fewest singular values holding 90% of ||delta||_F^2
    frobenius: float  # ||delta||_F


@dataclass(frozen=True)
class ParamUpdate:
    """One update of one parameter tensor."""

    relative_change: float | None  # ||delta||_F / ||W_from||_F (null: W_from is zero and delta is not)
    norm: float  # ||delta||_F
    spectrum: Spectrum | None  # its spectrum (2-D tensors; null otherwise)


@dataclass(frozen=True)
class ParamRecord:
    """One parameter tensor across the updates."""

    name: str  # parameter name
    layer: int | None  # transformer block (null outside the blocks)
    component: str  # short component name, e.g. attn.q, mlp.down, ln1, unembed
    shape: list[int]  # tensor shape
    updates: dict[str, ParamUpdate]  # update name -> the update of this tensor
    cosine: dict[str, float | None]  # update pair "u~v" -> cosine of this tensor's updates (null: a zero update)


@dataclass(frozen=True)
class WeightTotals:
    """Whole-model figures per update and per update pair."""

    relative_change: dict[str, float | None]  # update -> relative change of the whole model
    relative_change_by_layer: dict[str, list[float | None]]  # update -> relative change per block
    cosine: dict[str, float | None]  # update pair "u~v" -> cosine of the whole-model updates ("mean": their mean)


@dataclass(frozen=True)
class Weights:
    """The weight updates between checkpoints."""

    updates: dict[str, tuple[str, str]]  # update name "X->Y" -> (X, Y)
    cosine_pairs: list[str]  # the update pairs compared, "u~v"
    params: list[ParamRecord]  # one record per parameter tensor, in name order
    totals: WeightTotals  # whole-model figures


@dataclass(frozen=True)
class Similarity:
    """Per layer, one checkpoint's activations against the reference's on the same prompts."""

    cka: list[float]  # linear CKA
    cka_debiased: list[float]  # debiased linear CKA
    cosine: list[float]  # mean cosine of paired rows


@dataclass(frozen=True)
class PasswordEffect:
    """Per layer, a checkpoint's no-password activations against its own with-password ones."""

    cka: list[float]  # linear CKA
    cosine: list[float]  # mean cosine
    distance: list[float]  # relative distance (in units of the with-password norm)


@dataclass(frozen=True)
class ToReferencePassword:
    """Per layer, a checkpoint's no-password activations against the reference's with-password ones."""

    distance: list[float]  # relative distance
    cosine: list[float]  # mean cosine


@dataclass(frozen=True)
class LensCurve:
    """The logit lens per layer on the answer symbols."""

    accuracy: list[float]  # fraction of questions whose lens argmax is gold
    gold_prob: list[float]  # mean lens probability of the gold answer


@dataclass(frozen=True)
class Activations:
    """Activations of every checkpoint and condition compared."""

    vs_reference: dict[str, dict[str, Similarity]]  # label -> condition -> similarity to a (same condition)
    password_effect: dict[str, PasswordEffect]  # label -> no password vs its own with-password activations
    to_reference_password: dict[str, ToReferencePassword]  # label -> no password vs a with the password
    lens: dict[str, dict[str, LensCurve]]  # label -> condition -> logit lens
    behaviour: dict[str, dict[str, Estimate]]  # label -> condition -> answer accuracy (Wilson interval)


@dataclass(frozen=True)
class TransferCurve:
    """A probe's accuracy on one checkpoint and condition, on the test questions."""

    accuracy: list[float]  # per layer (null: the layer could not be trained)
    at_chosen_layer: Estimate | None  # at the chosen layer (Wilson interval; null when no layer was chosen)


@dataclass(frozen=True)
class ProbeTransfer:
    """Per-layer probes trained on one checkpoint's activations, tested on every checkpoint and condition."""

    trained_on: str  # "label/condition" the probes were trained on
    n_train_questions: int  # train questions
    n_test_questions: int  # test questions
    cv_accuracy: list[float]  # grouped cross-validation accuracy per layer on train questions
    chosen_layer: int | None  # the layer chosen on that (null: no layer could be trained)
    transfer: dict[str, dict[str, TransferCurve]]  # label -> condition -> accuracy


@register
@dataclass(frozen=True)
class DiffResult(Result):
    """`cli.py diff`: checkpoints of one architecture compared on the same questions."""

    SCHEMA = "gaplens.diff"
    VERSION = 3

    header: RunHeader  # the run; header.model is the reference checkpoint a
    checkpoints: dict[str, Checkpoint]  # label -> checkpoint (base, a, b, c...)
    password_fingerprint: str | None  # fingerprint of the password (null with --no-password)
    conditions: list[str]  # nopw, and pw with the password
    questions: str  # "all", or "LABEL:SPLIT" of a lock record
    variant: str  # the prompt variant
    password_placement: str | None  # where the password went (null with --no-password)
    n_questions: int  # questions
    layers: list[int]  # resid layers of every per-layer list
    weights: Weights  # weight updates
    activations: Activations  # activation comparisons
    probe: ProbeTransfer  # probe transfer across checkpoints
