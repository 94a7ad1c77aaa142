"""An eval run logged to Weights & Biases: the config, one summary value per metric (accuracy and its interval),
the honest best, and a table with every (question, variant): prompt, answer, gold and whether it is right.

`wandb` comes with transformer-lens. Without a network set ``WANDB_MODE=offline``: the run is written under
``<dir>/wandb/offline-run-*`` and `wandb sync` uploads it later. The W&B run is named after the run directory and
grouped by task; its id is derived from the run's config hash and directory, so logging a run again resumes the
same W&B run instead of making another.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from logs.run import RunLog

COLUMNS = ("question_id", "variant", "split", "subject", "prompt", "prediction", "gold", "correct", "metric")


def log_wandb(run: RunLog, project: str, out_dir: str | Path) -> str:
    """Log `run` to W&B project `project`, files under `out_dir`; the W&B run's path (entity/project/id or the
    offline directory)."""
    import wandb

    h = run.result.header
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = hashlib.sha256(f"{h.config_hash}:{run.dir.resolve()}".encode()).hexdigest()[:16]
    with wandb.init(project=project, name=run.dir.name, id=run_id, resume="allow", group=h.task.name,
                    job_type="gaplens-eval", dir=str(out_dir), config=h.config,
                    tags=[h.model.name, h.task.name], settings=wandb.Settings(silent=True)) as wb:
        summary = {f"acc/{m.variant}": m.accuracy.value for m in run.result.metrics}
        summary |= {f"acc_lo/{m.variant}": m.accuracy.lo for m in run.result.metrics}
        summary |= {f"acc_hi/{m.variant}": m.accuracy.hi for m in run.result.metrics}
        hb = run.result.honest_best
        summary |= {"honest_best/chosen": hb.chosen, "honest_best/test_accuracy": hb.test_accuracy.value,
                    "chance": run.result.chance, "n_questions": run.result.n_questions,
                    "weight_hash": h.model.weight_hash}
        wb.summary.update(summary)
        table = wandb.Table(columns=list(COLUMNS))
        for item in run.items:
            for a in item.answers:
                table.add_data(item.record.id, item.variant, item.split, item.record.subject or None, item.text,
                               a.prediction, item.record.answer, a.correct, a.metric)
        wb.log({"samples": table})
        path = str(Path(wb.dir).parent) if wb.offline else wb.path
    return path
