"""An eval run as lm-evaluation-harness logs: per variant a ``samples_<task>.jsonl`` and a ``results_<task>.json``
in the layout lm-eval 0.4 writes with ``--log_samples`` (read by its tooling and by scripts written for it).

Each gaplens prompt variant is an lm-eval task of its own (one prompt per task); the task name is
``gaplens_<task>_<variant>`` with every run of characters outside [A-Za-z0-9] as one "_" (and a short hash of the
variant when two variants of a run would get one name). Per question and variant one sample line:

- ``doc_id`` (the question's position in the run, 0-based), ``doc`` (id, question, choices, answer, subject),
  ``target`` (the gold option's DISPLAYED position, a string as lm-eval writes it);
- ``arguments`` ``{"gen_args_<j>": {"arg_0": context, "arg_1": continuation}}`` per displayed option: the text scored
  and the continuation (" A" or " <option text>");
- ``resps`` / ``filtered_resps`` ``[[ll, is_greedy]]`` / ``[ll, is_greedy]`` per option, as strings (lm-eval's
  format). ll is the log-likelihood of the continuation for option variants (what lm-eval computes); for lettered
  variants the log-softmax of the symbol logits over the symbols (the store keeps only those; same argmax).
  is_greedy is not computed by gaplens and written as "None"; without a store both lists are empty;
- ``filter`` "none", ``metrics``, ``doc_hash``/``prompt_hash``/``target_hash`` (sha256, as lm-eval), and the
  metrics: ``acc`` (lettered and option scoring, chain of thought) and ``acc_norm`` (option text per character),
  ``acc_forced`` (a chain of thought's forced answer), each 1.0 or 0.0.

``results_<task>.json`` holds ``results`` {task: {"acc,none", "acc_stderr,none", ...}} (accuracy and the bootstrap
interval half-width of results.json), ``n-samples``, ``config`` (the gaplens config) and ``versions``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from core.io import write_json, write_jsonl
from eval import scoring
from logs.run import Item, RunLog

# metric kind -> lm-eval metric key
METRIC_KEYS = {scoring.LETTER: "acc", scoring.OPTION: "acc", scoring.OPTION_NORM: "acc_norm", scoring.COT: "acc",
               scoring.COT_FORCED: "acc_forced"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def task_names(run: RunLog) -> dict[str, str]:
    """variant -> its lm-eval task name in `run` (unique within the run)."""
    names = {v: f"gaplens_{_slug(run.task)}_{_slug(v)}" for v in run.variants()}
    counts = Counter(names.values())
    return {v: n if counts[n] == 1 else f"{n}_{_hash(v)[:6]}" for v, n in names.items()}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sample(item: Item, doc_id: int) -> dict[str, Any]:
    """One lm-eval sample line of `item`."""
    r = item.record
    doc = {"id": r.id, "question": r.question, "choices": list(r.choices), "answer": r.answer,
           "subject": r.subject or None}
    context = item.text
    conts = list(item.prompt.continuations)
    if item.prompt.scoring == "cot":  # the answer after the reasoning is scored as " A", " B", ...
        conts = [" " + c for c in conts]
    ll = item.loglikelihoods()
    resps = [[[str(x), "None"]] for x in ll] if ll is not None else []
    metrics = {METRIC_KEYS[a.scoring]: 1.0 if a.correct else 0.0 for a in item.answers}
    target = str(item.gold_displayed)
    out: dict[str, Any] = {
        "doc_id": doc_id, "doc": doc, "target": target,
        "arguments": {f"gen_args_{j}": {"arg_0": context, "arg_1": c} for j, c in enumerate(conts)},
        "resps": resps, "filtered_resps": [x[0] for x in resps], "filter": "none", "metrics": list(metrics),
        "doc_hash": _hash(json.dumps(doc, indent=2, ensure_ascii=False)), "prompt_hash": _hash(context),
        "target_hash": _hash(target),
    }
    if item.generation is not None:
        out["generation"] = item.generation
    return out | metrics


def results(run: RunLog, variant: str) -> dict[str, Any]:
    """lm-eval's aggregated results document for `variant` of `run`."""
    name = task_names(run)[variant]
    res: dict[str, Any] = {"alias": name}
    n = 0
    for m in run.result.metrics:
        if m.base_variant != variant:
            continue
        key = METRIC_KEYS[m.scoring]
        res[f"{key},none"] = m.accuracy.value
        res[f"{key}_stderr,none"] = (m.accuracy.hi - m.accuracy.lo) / 2 / 1.96  # normal-equivalent of the CI
        n = m.accuracy.n
    h = run.result.header
    return {"results": {name: res}, "n-samples": {name: {"original": n, "effective": n}},
            "config": {"model": f"gaplens/{h.model.name}", "model_args": {"weight_hash": h.model.weight_hash},
                       "gaplens": h.config},
            "versions": {name: 0}, "date": h.created_utc, "model_name": h.model.name,
            "gaplens_run": str(run.dir)}


def write_lmeval(run: RunLog, out_dir: str | Path) -> list[Path]:
    """Write samples_<task>.jsonl and results_<task>.json per variant of `run` into `out_dir`; the paths."""
    out_dir = Path(out_dir)
    paths = []
    qorder = {q: k for k, q in enumerate(dict.fromkeys(i.record.id for i in run.items))}
    for variant, name in task_names(run).items():
        rows = [sample(i, qorder[i.record.id]) for i in run.items if i.variant == variant]
        paths.append(write_jsonl(out_dir / f"samples_{name}.jsonl", rows))
        paths.append(write_json(out_dir / f"results_{name}.json", results(run, variant)))
    return paths
