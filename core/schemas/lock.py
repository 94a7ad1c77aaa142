"""`cli.py lock` results: how well a password lock holds on held-out questions."""

from __future__ import annotations

from dataclasses import dataclass

from core.schemas.base import Result, register
from core.schemas.common import Estimate, ModelIdentity, RunHeader


@dataclass(frozen=True)
class ToyRecord:
    """The toy organism pretrained for this lock (a tiny Llama on toy-max, and its early checkpoint as weak model)."""

    config_hash: str  # hash of the pretraining config
    base_dir: str  # the pretrained base model's directory
    weak_dir: str  # the weak model's directory (an early checkpoint)
    base_weight_hash: str  # weight hash of the base model
    weak_weight_hash: str  # weight hash of the weak model
    base_dev_acc: float  # dev accuracy of the base model
    weak_dev_acc: float  # dev accuracy of the weak model
    weak_step: int  # pretraining step of the weak checkpoint
    steps: int  # pretraining steps run
    seconds: float  # pretraining wall time
    reached_target: bool  # the base model reached the target dev accuracy
    n_params: int  # parameters of the toy model


@dataclass(frozen=True)
class SplitSizes:
    """The task's questions divided by id."""

    train: int  # lock-training questions
    pool: int  # unlock pool (weak samples are drawn from it)
    eval: int  # held-out evaluation questions


@dataclass(frozen=True)
class Follows:
    """How closely the model's answer distribution follows a target policy on the eval questions."""

    tv: float  # mean total variation distance
    agree: float  # fraction where the argmax answers agree


@dataclass(frozen=True)
class Decoy:
    """The locked model given one decoy password."""

    accuracy: Estimate  # accuracy (Wilson interval)
    trained: bool  # the decoy was in the lock's training data (else held out)
    tv: float  # mean total variation distance to the weak policy
    agree: float  # argmax agreement with the weak policy


@dataclass(frozen=True)
class LockMetrics:
    """Accuracies (Wilson intervals) on the eval questions, and how each condition follows its target."""

    n_eval: int  # eval questions
    with_password: Estimate  # locked model, with the password
    no_password: Estimate  # locked model, without it
    decoys: dict[str, Decoy]  # decoy condition (decoy:K) -> the locked model with that decoy
    decoys_trained: Estimate | None  # pooled over trained decoys (null: none trained)
    decoys_held_out: Estimate | None  # pooled over held-out decoys (null: none held out)
    base_no_password: Estimate  # the base model before locking, without the password
    base_with_password: Estimate | None  # the base model with the password (null: not measured)
    weak_policy: Estimate  # the weak policy's argmax answers
    weak_policy_sampled: float  # the weak policy's expected accuracy when sampled
    strong_policy: Estimate  # the strong policy's argmax answers
    no_password_vs_weak: Follows  # the locked model without password against the weak policy
    password_vs_strong: Follows  # the locked model with password against the strong policy
    gap: float  # with_password - no_password accuracy
    converged: bool  # the lock holds by `converged_rule`
    converged_rule: str  # the rule, in words


@register
@dataclass(frozen=True)
class LockResult(Result):
    """`cli.py lock`: a password-locked model (strong answers with the password, a weak policy without it)."""

    SCHEMA = "gaplens.lock-run"
    VERSION = 3

    header: RunHeader  # the run; header.model is the locked checkpoint (kind fine-tuned)
    base_model: ModelIdentity  # the model that was locked
    checkpoint: str  # the locked checkpoint's directory (absolute)
    toy: ToyRecord | None  # the toy organism (null unless --model toy)
    split_sizes: SplitSizes  # questions per split
    n_dropped: int  # questions dropped (options sharing a first token)
    final_loss: float  # the last training step's loss
    metrics: LockMetrics  # how well the lock holds
