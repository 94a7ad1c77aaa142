"""`cli.py transfer` results: probes trained on one prompt variant of an eval store, tested on the others."""

from __future__ import annotations

from dataclasses import dataclass

from core.schemas.base import Result, register
from core.schemas.common import Estimate, RunHeader


@dataclass(frozen=True)
class TransferVariant:
    """One tested variant: its prompted accuracy, the transferred probe, its own probe and the control."""

    prompted: Estimate  # the variant's prompted accuracy on the test questions (Wilson interval)
    transfer: Estimate  # the train variant's probe at the chosen layer, on this variant's test questions
    transfer_by_layer: list[Estimate]  # the same per layer
    own_probe: Estimate  # a probe trained on this variant itself, at its own layer chosen on train CV
    own_probe_layer: int  # that layer
    own_probe_by_layer: list[Estimate]  # the own probe per layer
    control: Estimate | None  # the shuffled-label control at its chosen layer (null without --control)


@register
@dataclass(frozen=True)
class TransferResult(Result):
    """`cli.py transfer`: per layer, a probe fit on one variant's train questions, scored on every variant's test
    questions; layers chosen on train cross-validation only."""

    SCHEMA = "gaplens.transfer"
    VERSION = 3

    header: RunHeader  # the run (model and task from the eval store)
    store: str  # the eval store read
    store_config_hash: str  # its capture config hash
    kind: str  # letter (lettered rows) or option (option-text rows)
    train_variant: str  # the variant the probes are trained on
    layers: list[int]  # resid layers used
    chosen_layer: int  # the layer chosen on the transfer probe's train CV
    cv_by_layer: list[float]  # the transfer probe's train CV accuracy per layer
    control_layer: int | None  # the control's layer chosen on its own train CV (null without --control)
    n_train_questions: int  # train questions
    n_test_questions: int  # test questions
    chance: float  # expected accuracy of a uniform guess
    variants: dict[str, TransferVariant]  # tested variant -> results (train variant first)
