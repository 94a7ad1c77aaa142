"""The capture runner: task -> prompt variants -> hooked runs -> one HDF5 store.

`capture(cfg, path)` plans every row first (rendering and tokenizing is cheap), sorts rows by length so batches
waste little padding, then runs blocks of rows and writes each block as it finishes. Rerunning with the same
config resumes an interrupted file; a finished file with the same config hash is reused as is.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from eval import tasks, variants
from eval.provenance import config_hash, stamp, to_jsonable
from eval.records import MCRecord
from hooks import capture as cap
from hooks.models import LoadedModel, load_model
from hooks.store import StoreWriter

log = logging.getLogger(__name__)

# Option rows of one question share a cached prefix pass when that saves at least this many prefix tokens;
# shorter prefixes are cheaper as plain rows batched across questions (one unbatched pass has fixed overhead).
SHARED_PREFIX_MIN_SAVED = 96


@dataclass(frozen=True)
class CaptureConfig:
    """One capture run: which model, task, split and prompt variants, and what to keep."""

    model: str = field(default="smollm2-135m-instruct", metadata={"help": "embedded name, HF id or local dir"})
    task: str = field(default="capitals", metadata={"help": "task name (see `cli.py tasks`)"})
    split: str = field(default="test", metadata={"help": "task split to run on"})
    data_dir: str | None = field(default=None, metadata={"help": "local benchmark data ($GAPLENS_DATA_DIR)"})
    n: int | None = field(default=None, metadata={"help": "number of questions (seeded subsample); all if unset"})
    variants: tuple[str, ...] = field(default=("default", "option"), metadata={"help": "prompt variants"})
    layers: tuple[int, ...] | None = field(default=None, metadata={"help": "resid layers to keep (default all)"})
    seed: int = field(default=0, metadata={"help": "seed for subsampling, few-shot draws and random-init"})
    random_init: bool = field(default=False, metadata={"help": "re-initialise the weights (control model)"})
    batch_size: int = field(default=16, metadata={"help": "rows per forward pass (upper bound)"})
    max_batch_tokens: int = field(default=4096, metadata={"help": "padded tokens per forward pass (upper bound)"})
    resid: bool = field(default=True, metadata={"help": "store residual streams (False: scores only)"})
    dtype: str = field(default="float32", metadata={"help": "model dtype: float32 or bfloat16"})
    resid_dtype: str = field(
        default="auto",
        metadata={"help": "stored residual dtype: float16, float32, or auto (float32 for models whose residual "
                  "norms overflow float16, e.g. Gemma, else float16)"},
    )


@dataclass(frozen=True)
class Row:
    """One planned row: a tokenized sequence and what it is."""

    question_id: str
    variant: str
    option_index: int  # -1 lettered; else displayed option position
    label: int
    answer_original: int
    order: tuple[int, ...]
    ids: tuple[int, ...]
    choice_ids: tuple[int, ...]  # lettered rows: first token of each choice symbol
    n_cont: int  # option rows: continuation token count
    n_chars: int


def _shots(pool: Sequence[MCRecord], record: MCRecord, k: int, seed: int) -> list[MCRecord]:
    if k == 0:
        return []
    cands = [r for r in pool if r.id != record.id and len(r.choices) == len(record.choices)] or [
        r for r in pool if r.id != record.id
    ]
    if len(cands) < k:
        raise ValueError(f"few-shot needs {k} examples but the few-shot pool has {len(cands)}")
    h = int(hashlib.sha256(f"{seed}:{record.id}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(h)
    return [cands[i] for i in rng.choice(len(cands), size=k, replace=False)]


def plan_rows(
    model: LoadedModel, records: Sequence[MCRecord], variant_names: Sequence[str], pool: Sequence[MCRecord], seed: int
) -> list[Row]:
    """Render and tokenize every (question, variant[, option]) row."""
    tok = model.tokenizer
    template = model.chat_template()
    rows: list[Row] = []
    for vname in variant_names:
        spec = variants.parse(vname)
        if spec.chat and template is None:
            raise ValueError(f"variant '{vname}' needs a chat template and model '{model.name}' has none")
        for rec in records:
            prompt = variants.render(spec, rec, _shots(pool, rec, spec.shots, seed))
            text = variants.to_text(prompt, template)
            prefix = tok(text, add_special_tokens=not spec.chat).input_ids
            gold_orig = prompt.order[prompt.answer]
            if prompt.scoring == "letter":
                conts = [cap.continuation_ids(model, prefix, text, c) for c in prompt.continuations]
                # Tokens that every symbol starts with (SmolLM2 writes " 1" as " " + "1") join the prompt: they
                # scale every choice's probability alike, so the argmax over the next token is the same.
                shared = _shared_head(conts)
                ids = [c[len(shared)] if len(c) > len(shared) else -1 for c in conts]
                if len(set(ids)) != len(ids) or -1 in ids:
                    raise ValueError(
                        f"variant '{vname}': the answer symbols {prompt.continuations} do not start with distinct "
                        f"tokens for this tokenizer (question {rec.id}); choose another symbol set"
                    )
                rows.append(Row(rec.id, vname, -1, prompt.answer, gold_orig, prompt.order,
                                tuple(prefix) + tuple(shared), tuple(ids), 0, 0))
            else:
                for j, cont in enumerate(prompt.continuations):
                    cids = cap.continuation_ids(model, prefix, text, cont)
                    rows.append(Row(rec.id, vname, j, int(j == prompt.answer), gold_orig, prompt.order,
                                    tuple(prefix) + tuple(cids), (), len(cids), len(cont.strip())))
    return rows


def _shared_head(seqs: Sequence[Sequence[int]]) -> list[int]:
    """The leading tokens all of `seqs` share (none if they differ at the first token)."""
    n = 0
    while all(len(t) > n for t in seqs) and len({t[n] for t in seqs}) == 1:
        n += 1
    return list(seqs[0][:n])


def _row_order(r: Row) -> tuple[int, int, str, str, int]:
    """Lettered rows by length (little padding); option rows by prefix length with each question's options
    kept together (they share one prefix pass)."""
    if r.option_index < 0:
        return (0, len(r.ids), "", "", 0)
    return (1, len(r.ids) - r.n_cont, r.question_id, r.variant, r.option_index)


def _option_groups(rows: Sequence[Row]) -> list[tuple[int, int]]:
    """(start, stop) runs of consecutive option rows of one (question, variant)."""
    out: list[tuple[int, int]] = []
    for i, r in enumerate(rows):
        key = (r.question_id, r.variant)
        if out and (rows[out[-1][0]].question_id, rows[out[-1][0]].variant) == key:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def _blocks(rows: Sequence[Row], batch_size: int, max_batch_tokens: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) batches of length-sorted rows within the row and token budgets."""
    out, start = [], 0
    while start < len(rows):
        stop = start + 1
        while stop < len(rows) and stop - start < batch_size and (stop + 1 - start) * len(rows[stop].ids) <= max_batch_tokens:
            stop += 1
        out.append((start, stop))
        start = stop
    return out


def capture(cfg: CaptureConfig, path: Path, *, model: LoadedModel | None = None) -> Path:
    """Run the capture described by `cfg` into the HDF5 file `path` (resuming or reusing what exists)."""
    path = Path(path)
    chash = config_hash(cfg)
    if path.exists():
        from hooks.store import Store

        with Store(path) as existing:
            if existing.file.attrs.get("config_hash") == chash:
                log.info("reusing finished capture %s", path)
                return path
        raise FileExistsError(f"{path} exists from a different capture config; choose another --out")
    spec = tasks.TaskSpec(cfg.task, cfg.split, cfg.data_dir)
    records = tasks.load_task(spec, n=cfg.n, seed=cfg.seed)
    names = variants.variant_set(",".join(cfg.variants))
    needs_shots = any(variants.parse(v).shots for v in names)
    pool = tasks.few_shot_pool(spec) if needs_shots else []
    if model is None:
        model = load_model(cfg.model, random_init=cfg.random_init, seed=cfg.seed,
                           dtype=getattr(torch, cfg.dtype))
    layers = list(cfg.layers) if cfg.layers is not None else list(range(model.n_layers + 1))
    cap.resid_hook_names(model.n_layers, layers)  # validates --layers before anything is written
    rows = sorted(plan_rows(model, records, names, pool, cfg.seed), key=_row_order)
    max_c = max(len(r.order) for r in rows)
    order = np.full((len(rows), max_c), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        order[i, : len(r.order)] = r.order
    subjects = {r.id: r.subject for r in records}
    table = {
        "question_id": np.array([r.question_id for r in rows], dtype=object),
        "variant_id": np.array([r.variant for r in rows], dtype=object),
        "option_index": np.array([r.option_index for r in rows], dtype=np.int64),
        "label": np.array([r.label for r in rows], dtype=np.int64),
        "answer_original": np.array([r.answer_original for r in rows], dtype=np.int64),
        "n_choices": np.array([len(r.order) for r in rows], dtype=np.int64),
        "n_tokens": np.array([len(r.ids) for r in rows], dtype=np.int64),
        "subject": np.array([subjects[r.question_id] for r in rows], dtype=object),
    }
    prov = stamp(**model.provenance(), task=cfg.task, split=cfg.split, seed=cfg.seed, variants=names,
                 n_questions=len(records))
    # One block per batch keeps resume granular; block_rows must be fixed, so use uniform blocks of rows.
    block_rows = max(1, cfg.batch_size)
    resid_dtype = _resid_dtype(cfg.resid_dtype, model)
    writer = StoreWriter.open(
        path, rows=table, order=order, n_layers_stored=len(layers), d_model=model.d_model, layers=layers,
        config=to_jsonable(cfg), config_hash=chash, provenance=prov, block_rows=block_rows, resid=cfg.resid,
        resid_dtype=resid_dtype,
    )
    try:
        todo = [b for b in range(writer.n_blocks) if not writer.done(b)]
        bar = tqdm(total=len(rows), desc=f"capture {model.name}", unit="row", initial=len(rows) - sum(
            writer.block_slice(b).stop - writer.block_slice(b).start for b in todo))
        for b in todo:
            sl = writer.block_slice(b)
            writer.write_block(b, _run_block(model, rows[sl], layers, max_c, cfg, resid_dtype))
            bar.update(sl.stop - sl.start)
        bar.close()
        return writer.finish()
    finally:
        writer.close()


def _resid_dtype(choice: str, model: LoadedModel) -> str:
    """float16 halves the store, but Gemma's residual norms reach ~3e4 (float16 overflows at 65504)."""
    if choice != "auto":
        if choice not in ("float16", "float32"):
            raise ValueError(f"--resid-dtype must be float16, float32 or auto, got {choice!r}")
        return choice
    return "float32" if "gemma" in type(model.hf_model).__name__.lower() else "float16"


def _run_block(model: LoadedModel, rows: Sequence[Row], layers: list[int], max_c: int, cfg: CaptureConfig,
               resid_dtype: str = "float16") -> dict[str, Any]:
    n, n_l = len(rows), len(layers)
    out = {
        "resid": np.zeros((n, n_l, model.d_model), dtype=resid_dtype),
        "answer_logits": np.full((n, max_c), np.nan, dtype=np.float32),
        "lens_logits": np.full((n, n_l, max_c), np.nan, dtype=np.float32),
        "option_logprob": np.full((n,), np.nan, dtype=np.float32),
        "option_ntokens": np.array([r.n_cont for r in rows], dtype=np.int32),
        "option_nchars": np.array([r.n_chars for r in rows], dtype=np.int32),
    }
    lettered_rows = [r for r in rows if r.option_index < 0]  # lettered rows sort before option rows
    for start, stop in _blocks(lettered_rows, cfg.batch_size, cfg.max_batch_tokens):
        part = lettered_rows[start:stop]
        choice = torch.full((len(part), max_c), -1, dtype=torch.long)
        for i, r in enumerate(part):
            choice[i, : len(r.choice_ids)] = torch.tensor(r.choice_ids)
        res = cap.hooked_forward(model, [r.ids for r in part], layers=layers, choice_ids=choice)
        out["resid"][start:stop] = cap.to_numpy(res.resid).astype(resid_dtype)
        out["answer_logits"][start:stop] = cap.to_numpy(res.last_logits[:, 0])
        out["lens_logits"][start:stop] = cap.to_numpy(cap.logit_lens(model, res.resid, choice))
    offset = len(lettered_rows)
    short: list[int] = []  # option rows whose prefix is too short for a separate cached pass to pay off
    for start, stop in _option_groups(rows[offset:]):
        part = rows[offset + start : offset + stop]
        prefix = part[0].ids[: len(part[0].ids) - part[0].n_cont]
        if len(prefix) * (len(part) - 1) < SHARED_PREFIX_MIN_SAVED:
            short.extend(range(offset + start, offset + stop))
            continue
        conts = [r.ids[len(r.ids) - r.n_cont :] for r in part]
        res = cap.hooked_forward_shared_prefix(model, prefix, conts, layers=layers)
        sl = slice(offset + start, offset + stop)
        out["resid"][sl] = cap.to_numpy(res.resid).astype(resid_dtype)
        out["option_logprob"][sl] = cap.to_numpy(res.logprob_sum)
    short_rows = [rows[i] for i in short]
    for start, stop in _blocks(short_rows, cfg.batch_size, cfg.max_batch_tokens):
        part = short_rows[start:stop]
        res = cap.hooked_forward(model, [r.ids for r in part], layers=layers, n_cont=[r.n_cont for r in part])
        idx = np.array(short[start:stop])
        out["resid"][idx] = cap.to_numpy(res.resid).astype(resid_dtype)
        out["option_logprob"][idx] = cap.to_numpy(res.logprob_sum)
    if not cfg.resid:
        del out["resid"]
    return out
