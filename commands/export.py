"""Logs of a finished eval run for other tools (`python cli.py export RUN`), written after the fact from its typed
results, per-question table and store (`logs`): an inspect_ai eval log, lm-eval's samples/results files, a W&B run.

    python cli.py export runs/eval-smollm2-mmlu                          # RUN/logs/inspect, RUN/logs/lmeval
    python cli.py export runs/eval-smollm2-mmlu --format lmeval --out /tmp/x
    WANDB_MODE=offline python cli.py export runs/eval-smollm2-mmlu --format "" --wandb gaplens
    inspect view --log-dir runs/eval-smollm2-mmlu/logs/inspect

`eval --log inspect,lmeval` (and `--wandb`) writes the same files when the run finishes. The plug-ins the run was
made with (its recorded --include) are loaded first, so a plug-in task's prompts can be rendered again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config import LOG_FORMATS, DataOptions, PluginOptions, opt
from core.io import read_json
from core.plugins import include_all
from logs import LOGS_DIR, write_logs


@dataclass(frozen=True)
class Config(PluginOptions, DataOptions):
    """Which run to export, in which formats, and where."""

    run: str | None = opt(None, "an eval run directory", positional=True)
    format: tuple[str, ...] = opt(LOG_FORMATS, f"log formats: {', '.join(LOG_FORMATS)} (empty: none, e.g. with "
                                  "--wandb only)")
    wandb: str | None = opt(None, "also log the run to this W&B project (WANDB_MODE=offline works without a "
                            "network)", ui=True)
    data_dir: str | None = opt(None, "benchmark data directory, when the run's data moved (default: the recorded one)")
    out: str | None = opt(None, "output directory (default RUN/logs; one folder per format)", ui=True)

    def _check(self) -> None:
        if not self.run:
            raise ValueError("give the eval run directory: cli.py export RUN")
        bad = [f for f in self.format if f not in LOG_FORMATS]
        if bad:
            raise ValueError(f"--format: unknown format {bad[0]!r}; formats: {', '.join(LOG_FORMATS)}")
        if not self.format and not self.wandb:
            raise ValueError("nothing to write: give --format and/or --wandb")


def out_dir(cfg: Config) -> Path:
    return Path(cfg.out) if cfg.out else Path(cfg.run) / LOGS_DIR


def run(cfg: Config) -> Path:
    """Write the logs; the directory they are in."""
    results = Path(cfg.run) / "results.json"
    if not results.is_file():
        raise FileNotFoundError(f"{cfg.run}: no results.json; give an eval run directory")
    recorded = read_json(results).get("header", {}).get("config", {}).get("include") or ()
    include_all([*recorded, *cfg.include])
    written = write_logs(cfg.run, cfg.format, wandb=cfg.wandb, out=out_dir(cfg), data_dir=cfg.data_dir)
    if not written:
        raise ValueError("nothing was written")
    return out_dir(cfg)


def summarize(out: str | Path) -> str:
    """The files under the logs directory."""
    out = Path(out)
    files = sorted(p for p in out.rglob("*") if p.is_file() and "wandb" not in p.relative_to(out).parts)
    lines = [f"logs in {out}:"] + [f"  {p.relative_to(out)}" for p in files]
    if (out / "inspect").is_dir():
        lines.append(f"view: inspect view --log-dir {out / 'inspect'}")
    if (out / "wandb").is_dir():
        lines.append(f"W&B files in {out / 'wandb'} (offline runs: wandb sync {out / 'wandb'}/offline-run-*)")
    return "\n".join(lines)
