"""An eval run as an inspect_ai eval log (JSON), so `inspect view` shows every question under every variant.

The log follows inspect_ai's `EvalLog` schema (version 2; https://inspect.aisi.org.uk/eval-logs.html):

- ``eval``: task "gaplens/<task>", model "gaplens/<model>", the dataset (one sample id per question and variant),
  ``task_args`` (split, n, seed, select, variants) and in ``metadata`` the run's config, config hash, weight hash
  and data fingerprint;
- ``samples``: one per (question, variant), id "<question id> | <variant>", with ``input`` the rendered prompt (the
  text scored, or for chat variants the messages with the answer cue as the assistant's prefill), ``choices`` the
  options in the order shown, ``target`` the gold option's letter in that order, ``output`` the predicted option
  (its symbol or text; a chain of thought's text), ``scores`` one per metric of the variant (value "C" / "I", the
  answer, the per-option log-likelihoods in the explanation) and ``metadata`` (variant, question id, subject, split,
  original choice indices);
- ``results``: one score per metric with the run's accuracy and its bootstrap interval (from results.json).

Written as plain JSON by `core.io` (deterministic: ids come from the run, times from its header); with inspect_ai
installed (`pip install "gaplens[inspect]"`) the document is validated against its `EvalLog` model first.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

from core.io import write_json
from core.provenance import package_version
from logs.run import Item, RunLog

LOG_VERSION = 2
CORRECT, INCORRECT = "C", "I"


def sample_id(item: Item) -> str:
    return f"{item.record.id} | {item.variant}"


def _letter(k: int) -> str:
    return chr(ord("A") + k) if 0 <= k < 26 else str(k + 1)


def _input(item: Item, sid: str) -> str | list[dict[str, Any]]:
    if not item.prompt.chat:
        return item.text
    from eval.variants import to_messages

    msgs = [*to_messages(item.prompt), {"role": "assistant", "content": item.prompt.cue}]
    return [{"id": f"{sid}/{k}", "source": "input", **m} for k, m in enumerate(msgs)]


def _answer_text(item: Item, displayed: int) -> str:
    if displayed < 0:
        return ""
    return item.prompt.continuations[displayed].strip()


def _explanation(item: Item) -> str:
    ll = item.loglikelihoods()
    if ll is None:
        return ""
    what = ("log-likelihood of each continuation" if item.score_kind == "loglikelihood"
            else "log-softmax of the answer symbols' logits")
    return what + ": " + ", ".join(f"{_letter(j)} {x:.3f}" for j, x in enumerate(ll))


def _sample(item: Item, model: str) -> dict[str, Any]:
    sid = sample_id(item)
    first = item.answers[0]
    shown = item.displayed(first.prediction)
    completion = item.generation if item.generation is not None else _answer_text(item, shown)
    scores = {a.metric: {"value": CORRECT if a.correct else INCORRECT,
                         "answer": _answer_text(item, item.displayed(a.prediction)),
                         "explanation": _explanation(item),
                         "metadata": {"scoring": a.scoring, "prediction": a.prediction,
                                      "prediction_displayed": item.displayed(a.prediction),
                                      "probability": a.probability}}
              for a in item.answers}
    inp = _input(item, sid)
    answer_msg = {"id": f"{sid}/answer", "role": "assistant", "content": completion, "source": "generate",
                  "model": model}
    messages = ([{"id": f"{sid}/input", "role": "user", "content": inp, "source": "input"}]
                if isinstance(inp, str) else list(inp)) + [answer_msg]
    order = list(item.prompt.order)
    return {
        "id": sid, "epoch": 1, "input": inp,
        "choices": [item.record.choices[i] for i in order],
        "target": _letter(item.gold_displayed),
        "messages": messages,
        "output": {"model": model, "choices": [{"message": answer_msg, "stop_reason": "stop"}],
                   "completion": completion},
        "scores": scores,
        "metadata": {"question_id": item.record.id, "variant": item.variant, "subject": item.record.subject or None,
                     "split": item.split, "order": order, "gold": item.record.answer,
                     "continuations": list(item.prompt.continuations)},
    }


def _time(iso: str, plus: float = 0.0) -> str:
    return (dt.datetime.fromisoformat(iso) + dt.timedelta(seconds=plus)).isoformat(timespec="seconds")


def to_inspect(run: RunLog) -> dict[str, Any]:
    """The inspect_ai `EvalLog` JSON document of `run`."""
    h = run.result.header
    model = f"gaplens/{h.model.name}"
    eval_id = hashlib.sha256(f"{h.config_hash}:{h.created_utc}:{run.dir.name}".encode()).hexdigest()[:22]
    samples = [_sample(i, model) for i in run.items]
    scores = [{"name": m.variant, "scorer": m.variant, "params": {"scoring": m.scoring, "variant": m.base_variant},
               "metrics": {"accuracy": {"name": "accuracy", "value": m.accuracy.value, "params": {}},
                           "ci_lo": {"name": "ci_lo", "value": m.accuracy.lo, "params": {}},
                           "ci_hi": {"name": "ci_hi", "value": m.accuracy.hi, "params": {}}},
               "scored_samples": m.accuracy.n}
              for m in run.result.metrics]
    cfg = h.config
    return {
        "version": LOG_VERSION, "status": "success",
        "eval": {
            "eval_id": eval_id, "run_id": eval_id, "created": h.created_utc, "task": f"gaplens/{h.task.name}",
            "task_id": h.config_hash, "task_version": 0,
            "task_args": {k: cfg.get(k) for k in ("split", "n", "seed", "select", "variants")},
            "solver": "gaplens/loglikelihood",
            "dataset": {"name": h.task.name, "location": h.task.data_dir, "samples": len(samples),
                        "sample_ids": [s["id"] for s in samples], "shuffled": False},
            "model": model, "model_args": {"weight_hash": h.model.weight_hash, "dtype": h.execution.dtype},
            "config": {}, "packages": {"gaplens": package_version()},
            "metadata": {"gaplens_run": str(run.dir), "config": cfg, "config_hash": h.config_hash,
                         "data_fingerprint": h.task.data_fingerprint, "straight_up": run.result.straight_up,
                         "chance": run.result.chance},
        },
        "plan": {"name": "plan", "steps": [{"solver": "gaplens/loglikelihood",
                                            "params": {"variants": run.variants()}}], "config": {}},
        "results": {"total_samples": len(samples), "completed_samples": len(samples), "scores": scores},
        "stats": {"started_at": _time(h.created_utc, -float(h.timing.get("total", 0.0))),
                  "completed_at": h.created_utc, "model_usage": {}},
        "samples": samples,
    }


def validate(doc: dict[str, Any]) -> bool:
    """Check `doc` against inspect_ai's `EvalLog` model when inspect_ai is installed (ValueError if it does not
    fit); False when it is not installed."""
    try:
        from inspect_ai.log import EvalLog
    except ImportError:
        return False
    try:
        EvalLog.model_validate(copy.deepcopy(doc))  # its validators add keys to the dict they are given
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, named in the message
        raise ValueError(f"the inspect log does not fit inspect_ai's EvalLog: {exc}") from exc
    return True


def file_name(run: RunLog) -> str:
    """inspect's log file naming: <created>_<task>_<id>.json."""
    h = run.result.header
    created = re.sub(r"[:]", "-", h.created_utc)
    task = re.sub(r"[^A-Za-z0-9-]+", "-", h.task.name).strip("-")
    return f"{created}_gaplens-{task}_{to_inspect_id(run)}.json"


def to_inspect_id(run: RunLog) -> str:
    return hashlib.sha256(f"{run.result.header.config_hash}:{run.dir.name}".encode()).hexdigest()[:12]


def write_inspect(run: RunLog, out_dir: str | Path) -> Path:
    """Write `run`'s inspect log into `out_dir` (validated when inspect_ai is installed); its path."""
    doc = to_inspect(run)
    validate(doc)
    return write_json(Path(out_dir) / file_name(run), doc)
