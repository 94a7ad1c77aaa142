"""The generation stage: chain-of-thought variants answered by greedy decoding, written to a JSONL file.

`generate(cfg, path)` renders every (question, generation variant), decodes greedily in left-padded batches with
a bounded number of new tokens, and stops a row early once `eval.extract` finds a committed answer in its text
(or at the end-of-sequence token). Each finished batch is appended to ``path`` and flushed, so an interrupted run
resumes where it stopped; a finished file with the same config hash is reused as is.

File layout (``generations.jsonl``): the first line is a header ``{"schema", "config", "config_hash",
"provenance", "n_rows"}``; every other line is one row::

    {"question_id", "variant", "text", "n_new_tokens", "stop": "answer" | "eos" | "length",
     "symbols": [displayed symbols], "options": [displayed option texts], "order": [displayed -> original],
     "answer": gold displayed position, "answer_original": gold original index}

The answer is not stored: `eval.extract` reads it from "text" at scoring time, so a better extractor needs no
new generations. Residual streams of generated text are not captured.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from tqdm.auto import tqdm

from core.config import ExecutionOptions, ModelOptions, TaskOptions, opt
from core.io import write_text
from core.provenance import config_hash, stamp, to_jsonable
from eval import extract, tasks, variants
from hooks.execution import find_batch_size, start_batch_size
from hooks.forward import pad_left
from hooks.models import LoadedModel, load_model

log = logging.getLogger(__name__)

SCHEMA = "gaplens.generations/1"
AUTO_START = 64  # prompts decoded together first with --batch-size auto
STOPS = extract.STOPS


@dataclass(frozen=True)
class GenerateConfig(ModelOptions, TaskOptions, ExecutionOptions):
    """Greedy chain-of-thought generations of one model on one task."""

    variants: tuple[str, ...] = opt(("cot",), "generation variants")
    max_new_tokens: int = opt(256, "generated tokens per answer (upper bound)")
    batch_size: str | int = opt(8, 'prompts decoded together, or "auto" (start at 64, halve on out-of-memory '
                                "errors)")

    def _check(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class GenRow:
    """One planned generation: a tokenized prompt and what scoring needs to read its answer."""

    question_id: str
    variant: str
    ids: tuple[int, ...]
    symbols: tuple[str, ...]
    options: tuple[str, ...]
    order: tuple[int, ...]
    answer: int
    answer_original: int

    def key(self) -> tuple[str, str]:
        return self.variant, self.question_id


def plan_generations(model: LoadedModel, records: Sequence[Any], variant_names: Sequence[str]) -> list[GenRow]:
    """Render and tokenize every (variant, question) generation row."""
    template = model.chat_template()
    rows = []
    for vname in variant_names:
        spec = variants.parse(vname)
        if not spec.generates:
            raise ValueError(f"variant '{vname}' is not a generation variant (add '+cot')")
        if spec.chat and template is None:
            raise ValueError(f"variant '{vname}' needs a chat template and model '{model.name}' has none")
        for rec in records:
            prompt = variants.render(spec, rec)
            ids = model.tokenizer(variants.to_text(prompt, template), add_special_tokens=not spec.chat).input_ids
            rows.append(GenRow(rec.id, prompt.variant, tuple(ids), prompt.continuations,
                               tuple(rec.choices[i] for i in prompt.order), prompt.order, prompt.answer,
                               rec.answer))
    return rows


@torch.no_grad()
def greedy_generate(
    model: LoadedModel,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    done: Callable[[int, str], bool] | None = None,
) -> list[tuple[list[int], str]]:
    """Greedy decoding of left-padded prompts with the KV cache (Hugging Face `generate`).

    `done(i, text)` is asked after every step with row i's decoded new text; True stops that row ("answer").
    Returns per prompt (new token ids without padding or the end token, stop reason in STOPS).
    """
    from transformers import StoppingCriteria, StoppingCriteriaList

    hf, tok = model.hf_model, model.tokenizer
    eos = hf.generation_config.eos_token_id if hf.generation_config.eos_token_id is not None else tok.eos_token_id
    eos_ids = {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None}
    input_ids, mask = pad_left(prompts, tok.pad_token_id)
    width = input_ids.shape[1]
    answered = [False] * len(prompts)
    n_new = [0] * len(prompts)  # tokens generated when a row was answered (later positions are padding)

    class _Answered(StoppingCriteria):
        def __call__(self, ids: Int[torch.Tensor, "b t"], scores: Any, **kwargs: Any) -> torch.Tensor:
            out = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
            for i in range(ids.shape[0]):
                if not answered[i] and done is not None:
                    answered[i] = done(i, tok.decode(_trim(ids[i, width:].tolist(), eos_ids),
                                                     skip_special_tokens=True))
                    n_new[i] = ids.shape[1] - width
                out[i] = answered[i]
            return out

    device = model.device  # the input embedding's (a model spread by a device map starts there)
    gen = hf.generate(
        input_ids=input_ids.to(device), attention_mask=mask.to(device), do_sample=False, num_beams=1,
        max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=sorted(eos_ids) or None,
        stopping_criteria=StoppingCriteriaList([_Answered()]), temperature=None, top_p=None, top_k=None,
    )
    out = []
    for i in range(len(prompts)):
        new = gen[i, width:].tolist()
        kept = _trim(new[: n_new[i]] if answered[i] else new, eos_ids)
        if answered[i]:
            stop = "answer"
        elif len(kept) < len(new) and new[len(kept)] in eos_ids:
            stop = "eos"
        else:
            stop = "length"
        out.append((kept, stop))
    return out


def _trim(ids: list[int], eos_ids: set[int]) -> list[int]:
    """Token ids up to (not including) the first end token."""
    for k, t in enumerate(ids):
        if t in eos_ids:
            return ids[:k]
    return ids


# --------------------------------------------------------------------------- the file


def read_generations(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, rows) of a generations file; a torn last line (interrupted write) is ignored."""
    lines = Path(path).read_text().splitlines()
    if not lines:
        raise ValueError(f"{path}: empty generations file")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line 1 is not a JSON header: {exc}") from None
    if header.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {header.get('schema')!r}, expected {SCHEMA!r}")
    rows = []
    for k, line in enumerate(lines[1:], start=2):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if k != len(lines):
                raise ValueError(f"{path}: line {k} is not valid JSON") from None
    return header, rows


def _complete(header: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    n = header.get("n_rows")
    return isinstance(n, int) and len({(r["variant"], r["question_id"]) for r in rows}) >= n


def is_complete(path: Path, cfg: GenerateConfig) -> bool:
    """Whether `path` holds every row of a finished run of `cfg`."""
    if not Path(path).exists():
        return False
    header, rows = read_generations(path)
    return header.get("config_hash") == config_hash(cfg) and _complete(header, rows)


def generate(cfg: GenerateConfig, path: Path, *, model: LoadedModel | None = None) -> Path:
    """Generate every planned row into `path` (JSONL), resuming an interrupted file of the same config.

    A file from the same settings but another set of variants keeps the answers of the variants still asked for;
    a file from other settings, or other weights, is refused before anything is written.
    """
    if cfg.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {cfg.max_new_tokens}")
    path = Path(path)
    chash = config_hash(cfg)
    names = variants.variant_set(",".join(cfg.variants))
    old_header: dict[str, Any] | None = None
    kept: list[dict[str, Any]] = []
    if path.exists():
        old_header, rows = read_generations(path)
        if old_header.get("config_hash") == chash:
            kept = rows
            if _complete(old_header, rows):
                log.info("reusing finished generations %s", path)
                return path
        else:
            old, new = dict(old_header.get("config") or {}), to_jsonable(cfg)
            if any(old.get(k) != new.get(k) for k in (set(old) | set(new)) - {"variants", "batch_size"}):
                raise FileExistsError(f"{path} exists from a different generation config; choose another --out")
            kept = [r for r in rows if r["variant"] in names]  # same settings: keep the variants still asked for
    spec = tasks.TaskSpec.of(cfg)
    records = tasks.load_task(spec, n=cfg.n, seed=cfg.seed)
    if model is None:
        model = load_model(cfg.model, seed=cfg.seed, dtype=cfg.dtype, device=cfg.device, device_map=cfg.device_map,
                           load_in=cfg.load_in)
    if old_header is not None and old_header.get("provenance", {}).get("weight_hash") != model.weight_hash:
        raise FileExistsError(f"{path} was generated by other weights; choose another --out")
    planned = plan_generations(model, records, names)
    header = old_header if old_header is not None and old_header.get("config_hash") == chash else {
        "schema": SCHEMA, "config": to_jsonable(cfg), "config_hash": chash,
        "provenance": stamp(**model.provenance(), task=cfg.task, split=cfg.split, seed=cfg.seed, variants=names,
                            n_questions=len(records)),
        "n_rows": len(planned)}
    _rewrite_valid(path, header, kept)  # atomically: the header and every whole row kept
    done_keys = {(r["variant"], r["question_id"]) for r in kept}
    todo = sorted((r for r in planned if r.key() not in done_keys), key=lambda r: len(r.ids))
    bar = tqdm(total=len(planned), initial=len(planned) - len(todo), desc=f"generate {model.name}", unit="answer")
    size = start_batch_size(cfg.batch_size, 8, auto_start=AUTO_START)
    start = 0
    with path.open("a") as fh:
        while start < len(todo):

            def decode(n: int, start: int = start) -> tuple[list[GenRow], list[tuple[list[int], str]]]:
                part = todo[start : start + n]

                def answered(i: int, text: str) -> bool:
                    return extract.answer_complete(text, part[i].symbols, part[i].options)

                return part, greedy_generate(model, [r.ids for r in part], max_new_tokens=cfg.max_new_tokens,
                                             done=answered)

            (part, outs), size = find_batch_size(decode, min(size, len(todo) - start), what="generation batch size")
            start += len(part)
            for r, (new, stop) in zip(part, outs, strict=True):
                fh.write(json.dumps({
                    "question_id": r.question_id, "variant": r.variant,
                    "text": model.tokenizer.decode(new, skip_special_tokens=True), "n_new_tokens": len(new),
                    "stop": stop, "symbols": list(r.symbols), "options": list(r.options), "order": list(r.order),
                    "answer": r.answer, "answer_original": r.answer_original,
                }) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(len(part))
    bar.close()
    return path


def _rewrite_valid(path: Path, header: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write the header and whole rows (dropping a torn last line) atomically, before appending."""
    write_text(path, "".join(json.dumps(x) + "\n" for x in [header, *rows]), fsync=True)
