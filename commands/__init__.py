"""The commands of gaplens: one module per command, and the one registry that `cli.py`, the sweep and the docs read.

Every command module exposes `Config` (a frozen dataclass whose field metadata is its `--help`),
`run(cfg) -> Path` (writes one run directory and returns it) and `summarize(run_dir) -> str`. Modules are
imported only when their command runs, so listing commands costs nothing; their flags are recorded in
`commands/flags.json` (`commands.flags`), so `--help` imports none of them (nor torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from core.suggest import did_you_mean


@dataclass(frozen=True)
class Command:
    """A command's name, the module that implements it, and its one-line help."""

    name: str
    module: str
    help: str

    def load(self) -> ModuleType:
        """The command's module (imported now)."""
        return importlib.import_module(self.module)


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("probe", "commands.probe", "per-layer linear probes and logit lens vs the prompted accuracy"),
    Command("eval", "commands.evaluate", "prompt-variant evaluation and the honest best elicited score"),
    Command("transfer", "commands.transfer",
            "probes trained on one prompt variant, tested on the others (eval --resid)"),
    Command("lock", "commands.lock", "fine-tune a password-locked model"),
    Command("unlock", "commands.unlock", "weak-sample unlocking of a locked model, with controls"),
    Command("diff", "commands.diff", "weights and activations compared across checkpoints"),
    Command("audit", "commands.audit",
            "every elicitation method on model organisms whose truth is known: scoreboard and detector view"),
    Command("report", "commands.report", "the elicitation-gap report from run directories"),
    Command("sweep", "commands.sweep", "run a grid of cells from a config file, resumably"),
    Command("export", "commands.export", "write an eval run's logs for other tools: inspect_ai, lm-eval, W&B"),
)}


def get(name: str) -> Command:
    """The registered command `name`; ValueError listing the commands otherwise."""
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}{did_you_mean(name, COMMANDS)}; commands: {', '.join(COMMANDS)}")
    return COMMANDS[name]
