"""One eval run as the log writers see it: every (question, prompt variant) with its rendered prompt, the answer
each metric of the variant gave and the scores behind it.

`read_run(run_dir)` reads what the run wrote (nothing is recomputed but the prompts):

- ``results.json`` (`core.schemas.EvalResult`): the header (model, task, config) and the per-metric accuracies;
- ``samples.parquet`` (`core.samples`): per question and metric the answer, gold, correctness, split;
- ``activations.h5`` (`hooks.store`), when present: per displayed option the summed log-probability of its text
  (option variants: lm-eval's log-likelihood) or the answer symbol's logit (lettered variants; the writers report
  them log-softmaxed over the symbols, since the store keeps only the symbols' logits);
- ``generations.jsonl`` (`hooks.generate`), when present: the chain-of-thought texts.

The prompts are rendered again from the task and the variant names in the recorded config (`eval.variants`), with
the few-shot examples drawn as the capture draws them; chat variants are also rendered as text through the model's
chat template (its tokenizer only). So the task data must be where the run read it, or given as `data_dir`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from core.io import read_json
from core.samples import read_samples
from core.schemas import EvalResult
from eval import scoring, tasks, variants
from eval.records import MCRecord

log = logging.getLogger(__name__)

RESULTS, SAMPLES, STORE, GENERATIONS = "results.json", "samples.parquet", "activations.h5", "generations.jsonl"
# samples.parquet method "prompted:<scoring>" -> the suffix of its metric name (eval.scoring)
_SUFFIX = {scoring.LETTER: "", scoring.OPTION: "", scoring.COT: "", scoring.OPTION_NORM: scoring.NORM_SUFFIX,
           scoring.COT_FORCED: scoring.FORCED_SUFFIX}


@dataclass(frozen=True)
class Answer:
    """What one metric answered for one question."""

    metric: str  # metric name, e.g. "option", "option[norm]", "cot[forced]"
    scoring: str  # letter, option, option_norm, cot or cot_forced
    prediction: int  # ORIGINAL choice index (-1: no answer)
    correct: bool
    probability: float | None  # softmax probability of the answer over the choices


@dataclass(frozen=True)
class Item:
    """One question under one prompt variant."""

    record: MCRecord
    variant: str  # canonical variant name
    split: str  # dev or test: the honest-best selection's split of the question
    prompt: variants.Prompt  # as rendered for the capture
    text: str  # the full text scored before each continuation (chat variants through the chat template)
    answers: tuple[Answer, ...]  # one per metric of the variant
    scores: tuple[float, ...] | None  # per DISPLAYED option: log-likelihood (option rows) or logit (lettered)
    score_kind: str | None  # "loglikelihood", "symbol_logit" or None without a store
    generation: str | None  # chain-of-thought text (generation variants)

    @property
    def gold_displayed(self) -> int:
        return self.prompt.answer

    def displayed(self, original: int) -> int:
        """The displayed position of ORIGINAL choice `original` (-1 stays -1)."""
        return self.prompt.order.index(original) if original >= 0 else -1

    def loglikelihoods(self) -> tuple[float, ...] | None:
        """Per displayed option: the log-likelihood of its continuation (option variants), or the log-softmax of the
        symbol logits over the symbols (lettered variants: the same argmax as lm-eval's log-likelihood)."""
        if self.scores is None:
            return None
        s = np.asarray(self.scores, dtype=float)
        if self.score_kind == "symbol_logit":
            s = s - np.logaddexp.reduce(s)
        return tuple(float(x) for x in s)


@dataclass(frozen=True)
class RunLog:
    """A finished eval run: its typed results and one `Item` per (question, variant), questions in task order."""

    dir: Path
    result: EvalResult
    items: tuple[Item, ...]

    @property
    def task(self) -> str:
        return self.result.header.task.name

    @property
    def model(self) -> str:
        return self.result.header.model.name

    def variants(self) -> list[str]:
        return list(dict.fromkeys(i.variant for i in self.items))


def read_run(run_dir: str | Path, *, data_dir: str | None = None) -> RunLog:
    """The `RunLog` of an eval run directory; ValueError naming the file or field when it is not one.

    `data_dir` replaces the recorded data directory (the run's data moved)."""
    run_dir = Path(run_dir)
    if not (run_dir / RESULTS).is_file():
        raise FileNotFoundError(f"{run_dir}: no {RESULTS}; give an eval run directory")
    command = (read_json(run_dir / RESULTS).get("header") or {}).get("command")
    if command != "eval":
        raise ValueError(f"{run_dir}: a {command} run; logs are written for eval runs")
    result = EvalResult.read(run_dir / RESULTS)
    if not (run_dir / SAMPLES).is_file():
        raise FileNotFoundError(f"{run_dir}: no {SAMPLES} (runs before samples.parquet cannot be exported)")
    cfg = dict(result.header.config)
    if data_dir is not None:
        cfg["data_dir"] = data_dir
    table = read_samples(run_dir / SAMPLES).to_pylist()
    qids = list(dict.fromkeys(r["question_id"] for r in table))
    records = _records(cfg, qids)
    scores = _store_scores(run_dir / STORE)
    gens = _generations(run_dir / GENERATIONS)
    by_key: dict[tuple[str, str], list[Answer]] = {}
    split: dict[str, str] = {}
    for row in table:
        kind = str(row["method"]).split(":", 1)[1]
        metric = row["variant"] + _SUFFIX.get(kind, "")
        score = row["score"]
        prob = None if score is None or not np.isfinite(score) else float(score)
        by_key.setdefault((row["question_id"], row["variant"]), []).append(
            Answer(metric, kind, int(row["prediction"]), bool(row["correct"]), prob))
        split[row["question_id"]] = row["split"]
    pool = _few_shot_pool(cfg, result.variants_run)
    chat = _chat_template(result.header.model.name, result.variants_run)
    items = []
    for name in result.variants_run:
        spec = variants.parse(name)
        for qid in qids:
            answers = by_key.get((qid, name))
            if not answers:
                continue
            rec = records[qid]
            prompt = variants.render(spec, rec, tasks.few_shot_examples(pool, rec, spec.shots, int(cfg.get("seed", 0))))
            text = variants.to_text(prompt, chat if spec.chat else None)
            vid = name + scoring.FORCED_SUFFIX if spec.generates else name
            s = scores.get((qid, vid))
            items.append(Item(rec, name, split[qid], prompt, text, tuple(answers),
                              None if s is None else s[0], None if s is None else s[1], gens.get((name, qid))))
    return RunLog(run_dir, result, tuple(items))


def _task_spec(cfg: Mapping[str, Any]) -> tasks.TaskSpec:
    """The task, split and selection the run's recorded config read."""
    return tasks.TaskSpec.of(SimpleNamespace(**{k: cfg.get(k) for k in ("task", "split", "data_dir", "fields")},
                                             select=cfg.get("select") or "hash"))


def _records(cfg: Mapping[str, Any], qids: Sequence[str]) -> dict[str, MCRecord]:
    """The records of `qids` from the task the run read (all of its split, then these ids)."""
    spec = _task_spec(cfg)
    by_id = {r.id: r for r in tasks.load_task(spec)}
    missing = [q for q in qids if q not in by_id]
    if missing:
        raise ValueError(f"task {spec.name!r} split {spec.split!r} has no question {missing[0]!r} of the run "
                         f"({len(missing)} missing): the task data changed since the run")
    return {q: by_id[q] for q in qids}


def _few_shot_pool(cfg: Mapping[str, Any], names: Sequence[str]) -> list[MCRecord]:
    if not any(variants.parse(v).shots for v in names):
        return []
    spec = _task_spec(cfg)
    return tasks.few_shot_pool(spec)




def _chat_template(model: str, names: Sequence[str]) -> Callable[[list[dict[str, str]]], str] | None:
    """The model's chat template (its tokenizer only) when a variant needs it."""
    if not any(variants.parse(v).chat for v in names):
        return None
    from hooks.models import load_tokenizer

    return load_tokenizer(model).chat_template()


def _store_scores(path: Path) -> dict[tuple[str, str], tuple[tuple[float, ...], str]]:
    """(question id, store variant id) -> (per displayed option score, kind) from a capture store, if there is one."""
    if not path.is_file():
        return {}
    from hooks.store import Store

    out: dict[tuple[str, str], tuple[tuple[float, ...], str]] = {}
    with Store(path) as s:
        rows = s.rows
        opt = np.asarray(rows["option_index"])
        nch = np.asarray(rows["n_choices"])
        logits = s.array("answer_logits")
        logprob = s.array("option_logprob")
        option: dict[tuple[str, str], dict[int, float]] = {}
        for i, (q, v) in enumerate(zip(rows["question_id"].tolist(), rows["variant_id"].tolist(), strict=True)):
            if opt[i] < 0:
                out[(q, v)] = (tuple(float(x) for x in logits[i, : nch[i]]), "symbol_logit")
            else:
                option.setdefault((q, v), {})[int(opt[i])] = float(logprob[i])
        for key, per in option.items():
            out[key] = (tuple(per[j] for j in sorted(per)), "loglikelihood")
    return out


def _generations(path: Path) -> dict[tuple[str, str], str]:
    """(variant, question id) -> generated text, from a generations file if there is one."""
    if not path.is_file():
        return {}
    from hooks.generate import read_generations

    _, rows = read_generations(path)
    return {(r["variant"], r["question_id"]): r["text"] for r in rows}
