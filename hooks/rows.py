"""Planning the rows of a capture: every (question, variant[, option]) rendered and tokenized, fitted to the
model's context, ordered by length, and cut into batches within a row and token budget. Pure: a tokenizer, no
weights.

A lettered row is one prompt whose answer is read from the first distinct token of each answer symbol at its last
position; an option row is a prompt followed by one option's text, scored by the summed log-probability of those
tokens. Option rows of one question share their prefix, which the capture runs once (`hooks.forward`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eval import extract, scoring, tasks, variants
from eval.records import MCRecord
from hooks import forward as cap
from hooks.models import LoadedModel, ModelInfo


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




def plan_rows(
    model: LoadedModel | ModelInfo, records: Sequence[MCRecord], variant_names: Sequence[str], pool: Sequence[MCRecord], seed: int,
    generations: Mapping[tuple[str, str], Mapping[str, Any]] | None = None, *,
    transform: Callable[[variants.Prompt], variants.Prompt] | None = None, first_token: bool = False,
) -> list[Row]:
    """Render and tokenize every (question, variant[, option]) row.

    `generations[(variant, question_id)]` is a row of `hooks.generate` (with "text"); chain-of-thought variants
    need it and become one forced-answer lettered row each. `transform` rewrites every rendered prompt (e.g. a
    password placement). `first_token`: option variants become lettered rows scored on each option's first token.
    """
    tok = model.tokenizer
    template = model.chat_template()
    rows: list[Row] = []
    for vname in variant_names:
        spec = variants.parse(vname)
        if spec.chat and template is None:
            raise ValueError(f"variant '{vname}' needs a chat template and model '{model.name}' has none")
        for rec in records:
            prompt = variants.render(spec, rec, tasks.few_shot_examples(pool, rec, spec.shots, seed))
            if transform is not None:
                prompt = transform(prompt)
            text = variants.to_text(prompt, template)
            gold_orig = prompt.order[prompt.answer]
            if spec.generates:
                done = (generations or {}).get((vname, rec.id))
                if done is None:
                    raise ValueError(f"variant '{vname}': no generation for question {rec.id} (run hooks.generate)")
                opts = [rec.choices[i] for i in prompt.order]
                text += variants.forced_answer_tail(
                    extract.reasoning_before_answer(done["text"], prompt.continuations, opts))
                prefix = tok(text, add_special_tokens=not spec.chat).input_ids
                rows.append(_letter_row(model, rec.id, vname + scoring.FORCED_SUFFIX, prompt, prefix, text,
                                        tuple(" " + c for c in prompt.continuations)))
                continue
            prefix = tok(text, add_special_tokens=not spec.chat).input_ids
            if prompt.scoring == "letter" or first_token:
                rows.append(_letter_row(model, rec.id, vname, prompt, prefix, text, prompt.continuations))
            else:
                conts = cap.continuation_ids(tok, text, prompt.continuations)
                for j, (cont, cids) in enumerate(zip(prompt.continuations, conts, strict=True)):
                    rows.append(Row(rec.id, vname, j, int(j == prompt.answer), gold_orig, prompt.order,
                                    tuple(prefix) + tuple(cids), (), len(cids), len(cont.strip())))
    return rows


def _letter_row(model: LoadedModel | ModelInfo, qid: str, vid: str, prompt: variants.Prompt, prefix: list[int], text: str,
                continuations: Sequence[str]) -> Row:
    """One lettered row: the answer is read from the first distinct token of each continuation."""
    conts = cap.continuation_ids(model.tokenizer, text, continuations)
    # Tokens that every symbol starts with (SmolLM2 writes " 1" as " " + "1") join the prompt: they
    # scale every choice's probability alike, so the argmax over the next token is the same.
    shared = _shared_head(conts)
    ids = [c[len(shared)] if len(c) > len(shared) else -1 for c in conts]
    if len(set(ids)) != len(ids) or -1 in ids:
        raise ValueError(
            f"variant '{vid}': the answer symbols {tuple(continuations)} do not start with distinct "
            f"tokens for this tokenizer (question {qid}); choose another symbol set"
        )
    return Row(qid, vid, -1, prompt.answer, prompt.order[prompt.answer], prompt.order,
               tuple(prefix) + tuple(shared), tuple(ids), 0, 0)


def _shared_head(seqs: Sequence[Sequence[int]]) -> list[int]:
    """The leading tokens all of `seqs` share (none if they differ at the first token)."""
    n = 0
    while all(len(t) > n for t in seqs) and len({t[n] for t in seqs}) == 1:
        n += 1
    return list(seqs[0][:n])


def fit_context(rows: Sequence[Row], context: int | None, truncate: str) -> tuple[list[Row], dict[str, Any]]:
    """Rows that fit the model's context. A longer row is an error naming its question, variant and token count;
    with `truncate="left"` every row of its (question, variant) loses the same first tokens (so options keep one
    shared prefix), and the counts are returned for the provenance."""
    if context is None:
        return list(rows), {"rows": 0, "context": None}
    longest: dict[tuple[str, str], int] = {}
    for r in rows:
        longest[r.question_id, r.variant] = max(longest.get((r.question_id, r.variant), 0), len(r.ids))
    over = {k: n - context for k, n in longest.items() if n > context}
    if not over:
        return list(rows), {"rows": 0, "context": context}
    if truncate != "left":
        (qid, variant), extra = max(over.items(), key=lambda kv: kv[1])
        raise ValueError(f"{len(over)} prompt(s) do not fit the model's context of {context} tokens; the longest: "
                         f"question {qid}, variant {variant}, {context + extra} tokens. Shorten the task, or pass "
                         "--truncate left to drop their first tokens (the count is recorded)")
    out = []
    for r in rows:
        k = over.get((r.question_id, r.variant), 0)
        if k and len(r.ids) - k <= r.n_cont:
            raise ValueError(f"question {r.question_id}, variant {r.variant}: its answer alone ({r.n_cont} tokens) "
                             f"does not fit the context of {context} tokens")
        out.append(replace(r, ids=r.ids[k:]) if k else r)
    return out, {"rows": sum(1 for r in rows if over.get((r.question_id, r.variant))), "context": context,
                 "prompts": len(over), "questions": len({q for q, _ in over}), "max_tokens_dropped": max(over.values()),
                 "side": "left"}


def row_order(r: Row) -> tuple[int, int, str, str, int]:
    """Lettered rows by length (little padding); option rows by prefix length with each question's options
    kept together (they share one prefix pass)."""
    if r.option_index < 0:
        return (0, len(r.ids), "", "", 0)
    return (1, len(r.ids) - r.n_cont, r.question_id, r.variant, r.option_index)


def option_groups(rows: Sequence[Row]) -> list[tuple[int, int]]:
    """(start, stop) runs of consecutive option rows of one (question, variant)."""
    out: list[tuple[int, int]] = []
    for i, r in enumerate(rows):
        key = (r.question_id, r.variant)
        if out and (rows[out[-1][0]].question_id, rows[out[-1][0]].variant) == key:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def next_batch(rows: Sequence[Row], start: int, batch_size: int, max_batch_tokens: int) -> int:
    """The end of the batch of length-sorted rows that starts at `start`, within the row and token budgets (at least
    one row)."""
    stop = start + 1
    while stop < len(rows) and stop - start < batch_size and (stop + 1 - start) * len(rows[stop].ids) <= max_batch_tokens:
        stop += 1
    return stop


def batches(rows: Sequence[Row], batch_size: int, max_batch_tokens: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) batches of length-sorted rows within the row and token budgets."""
    out, start = [], 0
    while start < len(rows):
        stop = next_batch(rows, start, batch_size, max_batch_tokens)
        out.append((start, stop))
        start = stop
    return out


def next_prefix_batch(rows: Sequence[Row], groups: Sequence[tuple[int, int]], start: int, batch_size: int,
                       max_batch_tokens: int) -> int:
    """The end of the run of option groups (questions) starting at group `start` that share one batched prefix pass:
    at most `batch_size` option rows, and padded prefix tokens plus padded continuation tokens within
    `max_batch_tokens` (at least one question)."""
    stop, n_rows, p_max, c_max = start, 0, 0, 0
    while stop < len(groups):
        g0, g1 = groups[stop]
        part = rows[g0:g1]
        p = max(p_max, len(part[0].ids) - part[0].n_cont)
        c = max(c_max, *(r.n_cont for r in part))
        r = n_rows + len(part)
        if stop > start and (r > batch_size or (stop + 1 - start) * p + r * c > max_batch_tokens):
            break
        stop, n_rows, p_max, c_max = stop + 1, r, p, c
    return stop


def prefix_batches(rows: Sequence[Row], groups: Sequence[tuple[int, int]], batch_size: int,
                    max_batch_tokens: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) runs of option groups that share one batched prefix pass (`next_prefix_batch`)."""
    out, start = [], 0
    while start < len(groups):
        stop = next_prefix_batch(rows, groups, start, batch_size, max_batch_tokens)
        out.append((start, stop))
        start = stop
    return out
