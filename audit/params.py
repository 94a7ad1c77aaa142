"""The elicitation methods an audit runs, and the one frozen config of their settings (`AuditParams`).

Every method runs WITHOUT the password and is scored on the same held-out test questions; anything a method chooses
(a prompt variant, a layer, a steering scale, a noise draw, a fine-tuning epoch) is chosen on the dev questions (or,
for probes, by cross-validation on the train questions) and reported on the test questions.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Options, opt
from hooks.steer import POSITIONS


@dataclass(frozen=True)
class MethodInfo:
    """One elicitation method: what it does, what access it needs and what labelled data it uses."""

    name: str
    title: str
    white_box: bool  # needs the weights or activations (False: prompting only)
    data: str  # the labelled data it consumes, in words


METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("prompt", "prompt variants, the best chosen on dev", False, "dev gold labels (to choose)"),
    MethodInfo("vote", "majority vote over the prompt variants", False, "none"),
    MethodInfo("cot", "chain of thought (greedy), the best chosen on dev", False, "dev gold labels (to choose)"),
    MethodInfo("probe", "linear probe on no-password residuals (layer by train CV)", True,
               "gold labels of the train questions"),
    MethodInfo("lens", "logit lens, the layer chosen on dev", True, "dev gold labels (to choose)"),
    MethodInfo("steer", "activation steering: right-minus-wrong direction, layer / scale / positions chosen on dev",
               True, "gold labels of a few train questions (direction) and dev labels (to choose)"),
    MethodInfo("noise", "Gaussian weight noise (Tice et al. 2024): scale x draw chosen on dev", True,
               "dev gold labels (to choose)"),
    MethodInfo("sft", "fine-tuning on n strong (gold) demonstrations, epoch chosen on dev", True,
               "n gold demonstrations and dev labels"),
    MethodInfo("unlock", "fine-tuning on n weak-model samples, epoch chosen on dev", True,
               "n samples of a weak model and dev labels"),
)}
"""The methods in the order the scoreboard shows them."""

STRAIGHT_UP = "straight-up"
"""The reference every gain is measured from: the default prompt, no password (first-token letter scoring)."""


def check_methods(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names` if every one is a known method (no repeats), else ValueError naming the flag."""
    bad = [m for m in names if m not in METHODS]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(f"--methods: unknown or repeated {bad or list(names)}; choose from {', '.join(METHODS)}")
    return names


@dataclass(frozen=True)
class AuditParams(Options):
    """How every method runs (the command's `Config` carries the same fields; `pick` builds this from it)."""

    methods: tuple[str, ...] = opt(tuple(METHODS), f"elicitation methods, any of: {', '.join(METHODS)}")
    variants: str = opt("default,numbers,paren,colon,bare,rotate:1,rotate:2,the_answer_is,praise,sys_honest",
                        "prompt variants for the prompt / vote methods (see `cli.py variants`)")
    dev_fraction: float = opt(0.5, "fraction of the eval questions used to choose (the rest report)")
    n_boot: int = opt(1000, "bootstrap replicates for intervals")
    cot: str = opt("auto", "chain of thought: on, off, or auto (on only with CUDA, and never for organisms that "
                   "cannot generate, e.g. the toy)")
    cot_variants: tuple[str, ...] = opt(("cot",), "chain-of-thought variants (generation)")
    max_new_tokens: int = opt(256, "chain of thought: generated tokens per answer, at most")
    probe_targets: tuple[str, ...] = opt(("letter",), "probe targets: letter (lettered prompt) and/or option "
                                         "(option_listed rows)")
    n_train: int = opt(500, "train questions (from the lock's pool) for probes and the steering direction, at most")
    steer_examples: int = opt(64, "train questions the steering direction is estimated from")
    steer_alphas: tuple[float, ...] = opt((0.0, 0.25, 0.5, 1.0, 2.0), "steering scales, in units of the mean "
                                          "residual norm at the layer (0: no steering)")
    steer_positions: tuple[str, ...] = opt(POSITIONS, "where the steering vector is added: all and/or last")
    noise_scales: tuple[float, ...] = opt((0.01, 0.02, 0.05, 0.1, 0.2),
                                          "relative weight-noise scales (locking.controls.noisy)")
    noise_draws: int = opt(4, "noise draws (seeds) per scale")
    sft_n: int = opt(8, "strong (gold) demonstrations for the sft method")
    unlock_n: int = opt(8, "weak samples for the unlock method")
    epochs: int = opt(40, "fine-tuning epochs (sft, unlock); the epoch is chosen on dev")
    eval_every: int = opt(10, "epochs between dev evaluations while fine-tuning")
    lr: float | None = opt(None, "fine-tuning learning rate (default: the lock's)")

    def _check(self) -> None:
        check_methods(self.methods)
        if not 0.0 < self.dev_fraction < 1.0:
            raise ValueError(f"--dev-fraction must be in (0, 1), got {self.dev_fraction}")
        if self.cot not in ("auto", "on", "off"):
            raise ValueError(f"--cot must be auto, on or off, got {self.cot!r}")
        if not self.probe_targets or any(t not in ("letter", "option") for t in self.probe_targets):
            raise ValueError(f"--probe-targets must be letter and/or option, got {self.probe_targets}")
        for p in self.steer_positions:
            if p not in POSITIONS:
                raise ValueError(f"--steer-positions: {p!r} is not one of {', '.join(POSITIONS)}")
        if not self.steer_alphas or not self.noise_scales or any(s <= 0 for s in self.noise_scales):
            raise ValueError("--steer-alphas and --noise-scales must be non-empty; noise scales > 0")
        small = {k: getattr(self, k) for k in ("n_boot", "noise_draws", "sft_n", "unlock_n", "epochs", "eval_every",
                                                "n_train", "max_new_tokens") if getattr(self, k) < 1}
        if small or self.steer_examples < 4:
            raise ValueError(f"these must be >= 1 (--steer-examples >= 4): {small or self.steer_examples}")
