"""Logs that other tools read, written from a finished run's typed results and per-question table.

Why a package of its own: the writers read `core.schemas` results and `core.samples` tables like `report/`, but they
also render every prompt again (`eval.variants`, `eval.tasks`) and read per-option scores from the capture store
(`hooks.store`), which `report/` must not import; and they are foreign formats, each with its own optional
dependency, that the commands call (`eval --log`, `export`) and nothing in the library depends on.

- `logs.run`: `read_run(dir) -> RunLog`, the run as items (question x variant) with prompt, answers and scores;
- `logs.inspect_log`: an inspect_ai eval log (`inspect view`), `write_inspect`;
- `logs.lmeval_log`: lm-eval's samples_<task>.jsonl and results json, `write_lmeval`;
- `logs.wandb_log`: a W&B run (offline works), `log_wandb`.

`write_logs(run_dir, formats)` writes the asked ones into RUN/logs/<format>/.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.config import LOG_FORMATS
from logs.run import Answer, Item, RunLog, read_run

__all__ = ["LOG_FORMATS", "Answer", "Item", "RunLog", "read_run", "write_logs"]

LOGS_DIR = "logs"


def write_logs(run_dir: str | Path, formats: Sequence[str] = (), *, wandb: str | None = None,
               out: str | Path | None = None, data_dir: str | None = None) -> list[Path | str]:
    """Write the logs `formats` (of `LOG_FORMATS`) of the eval run in `run_dir` into `out` (default RUN/logs),
    one folder per format, and log it to W&B project `wandb` if given; what was written (paths, the W&B run)."""
    bad = [f for f in formats if f not in LOG_FORMATS]
    if bad:
        raise ValueError(f"unknown log format {bad[0]!r}; formats: {', '.join(LOG_FORMATS)}")
    if not formats and not wandb:
        return []
    run = read_run(run_dir, data_dir=data_dir)
    out = Path(out) if out is not None else Path(run_dir) / LOGS_DIR
    written: list[Path | str] = []
    if "inspect" in formats:
        from logs.inspect_log import write_inspect

        written.append(write_inspect(run, out / "inspect"))
    if "lmeval" in formats:
        from logs.lmeval_log import write_lmeval

        written += write_lmeval(run, out / "lmeval")
    if wandb:
        from logs.wandb_log import log_wandb

        written.append(log_wandb(run, wandb, out))
    return written
