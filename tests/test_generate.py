"""Tests for hooks.generate and the chain-of-thought path of `eval`: greedy decoding against a plain argmax
loop, early stopping, the resumable JSONL file, and scoring from extracted answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from commands import evaluate
from core.schemas import EvalResult
from eval import extract, tasks, variants
from hooks import generate as gen
from hooks.models import load_hf
from hooks.store import Store

CFG = gen.GenerateConfig(model="tiny-llama", task="capitals", n=5, variants=("cot", "numbers+cot"),
                         max_new_tokens=6, batch_size=3)


def prompts(model, n: int = 4) -> list[list[int]]:
    spec = variants.parse("cot")
    recs = tasks.load_task(tasks.TaskSpec("capitals", "test"), n=n, seed=0)
    return [model.tokenizer(variants.to_text(variants.render(spec, r))).input_ids for r in recs]


@torch.no_grad()
def argmax_loop(model, ids: list[int], steps: int) -> list[int]:
    """Reference: full forward passes through the bridge, no cache, no padding, argmax each step."""
    seq, out = list(ids), []
    for _ in range(steps):
        t = int(model.bridge(torch.tensor([seq], device=model.device))[0, -1].argmax())
        out.append(t)
        seq.append(t)
    return out


@pytest.mark.numerics
def test_batched_greedy_equals_unbatched_and_a_plain_argmax_loop(tiny_model) -> None:
    ps = prompts(tiny_model)
    assert len({len(p) for p in ps}) > 1  # rows really are padded
    batched = gen.greedy_generate(tiny_model, ps, max_new_tokens=8)
    for p, (new, stop) in zip(ps, batched, strict=True):
        assert (new, stop) == gen.greedy_generate(tiny_model, [p], max_new_tokens=8)[0]
        ref = argmax_loop(tiny_model, p, 8)
        assert new == ref[: len(new)] and (stop == "length") == (len(new) == 8)


def test_done_stops_each_row_early(tiny_model) -> None:
    ps = prompts(tiny_model)
    free = gen.greedy_generate(tiny_model, ps, max_new_tokens=8)
    stop_rows = [i for i, (new, _) in enumerate(free) if len(new) >= 3][:2]
    assert len(stop_rows) == 2
    seen: dict[int, list[str]] = {}

    def done(i: int, text: str) -> bool:
        seen.setdefault(i, []).append(text)
        return i in stop_rows and len(seen[i]) >= 2  # stop after the second token

    out = gen.greedy_generate(tiny_model, ps, max_new_tokens=8, done=done)
    for i, (new, stop) in enumerate(out):
        if i in stop_rows:
            assert (new, stop) == (free[i][0][:2], "answer")
            assert seen[i][-1] == tiny_model.tokenizer.decode(new, skip_special_tokens=True)
        else:
            assert (new, stop) == free[i]  # the other rows run on unchanged


def test_generation_file_resumes_without_redoing_rows(tiny_model, tmp_path: Path, monkeypatch) -> None:
    full = gen.generate(CFG, tmp_path / "full.jsonl", model=tiny_model)
    header, rows = gen.read_generations(full)
    assert header["n_rows"] == len(rows) == 10 and header["provenance"]["weight_hash"] == tiny_model.weight_hash
    assert {r["stop"] for r in rows} <= set(gen.STOPS) and all(r["n_new_tokens"] <= 6 for r in rows)
    # an interrupted run: the first batch written, the second torn mid-line
    lines = full.read_text().splitlines(keepends=True)
    target = tmp_path / "resumed.jsonl"
    target.write_text("".join(lines[:4]) + lines[4][:20])
    calls: list[int] = []
    real = gen.greedy_generate
    monkeypatch.setattr(gen, "greedy_generate", lambda m, p, **k: (calls.append(len(p)), real(m, p, **k))[1])
    gen.generate(CFG, target, model=tiny_model)
    assert sum(calls) == 7  # 10 rows, 3 were finished
    key = lambda r: (r["variant"], r["question_id"])  # noqa: E731
    assert sorted(gen.read_generations(target)[1], key=key) == sorted(rows, key=key)
    calls.clear()
    assert gen.is_complete(target, CFG) and gen.generate(CFG, target, model=tiny_model) == target and not calls
    with pytest.raises(FileExistsError, match="different generation config"):
        gen.generate(CFG.__class__(**{**CFG.__dict__, "max_new_tokens": 7}), target, model=tiny_model)


def test_eval_scores_cot_from_the_generated_text(tiny_model, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = evaluate.Config(model="tiny-llama", task="capitals", n=6, variants="default,cot,chat+cot", out=str(tmp_path),
                          n_boot=50, max_new_tokens=5, seed=1)
    # the random tiny model never writes "The answer is": give it an answer for some rows, through the text
    real = gen.greedy_generate

    def answering(model, ps, **kw):
        out = real(model, ps, **kw)
        return [(model.tokenizer(" The answer is B.").input_ids if i % 2 == 0 else new, stop)
                for i, (new, stop) in enumerate(out)]

    monkeypatch.setattr(gen, "greedy_generate", answering)
    doc = EvalResult.read(evaluate.run(cfg, model=tiny_model) / "results.json")
    _, rows = gen.read_generations(tmp_path / "generations.jsonl")
    rows = [r for r in rows if r["variant"] == "cot"] + [r for r in rows if r["variant"] == "chat+cot"]
    found = [extract.extract_choice(r["text"], r["symbols"], r["options"]).index for r in rows[:6]]
    expected = np.mean([f >= 0 and r["order"][f] == r["answer_original"] for f, r in zip(found, rows[:6], strict=True)])
    cot = doc.metric("cot")
    assert cot.scoring == "cot" and cot.accuracy.value == pytest.approx(expected)
    assert doc.chain_of_thought.variants["cot"].answer_found == pytest.approx(np.mean([f >= 0 for f in found]))
    assert 0 < np.mean([f >= 0 for f in found]) < 1
    assert {m.variant: m.scoring for m in doc.metrics} == {
        "default": "letter", "cot": "cot", "cot[forced]": "cot_forced", "chat+cot": "cot",
        "chat+cot[forced]": "cot_forced"}
    # the forced answer against a plain HF forward over prompt + reasoning + "The answer is"
    hf, tok = load_hf("tiny-llama").model, tiny_model.tokenizer
    letter_ids = [tok(" " + c, add_special_tokens=False).input_ids[0] for c in "ABCD"]
    recs = {r.id: r for r in tasks.load_task(tasks.TaskSpec("capitals", "test"), n=6, seed=1)}
    ref_correct: dict[str, list[bool]] = {"cot": [], "chat+cot": []}
    with Store(tmp_path / "activations.h5") as s:
        vid, qid = s.rows["variant_id"], s.rows["question_id"]
        logits = s.array("answer_logits")
    for r in rows:
        chat = r["variant"] == "chat+cot"
        prompt = variants.render(variants.parse(r["variant"]), recs[r["question_id"]])
        reasoning = extract.reasoning_before_answer(r["text"], r["symbols"], r["options"])
        text = variants.to_text(prompt, tiny_model.chat_template()) + variants.forced_answer_tail(reasoning)
        ids = tok(text, return_tensors="pt", add_special_tokens=not chat).input_ids
        with torch.no_grad():
            ref = hf(input_ids=ids).logits[0, -1, letter_ids].numpy()
        row = np.flatnonzero((vid == r["variant"] + "[forced]") & (qid == r["question_id"]))
        np.testing.assert_allclose(logits[row[0], :4], ref, rtol=1e-4, atol=1e-4)
        ref_correct[r["variant"]].append(prompt.order[int(np.argmax(ref))] == r["answer_original"])
    for v, ok in ref_correct.items():
        forced = doc.metric(v + "[forced]")
        assert forced.accuracy.value == pytest.approx(np.mean(ok)) and forced.n_missing == 0 and len(ok) == 6
    # a finished run is reused without the model
    monkeypatch.setattr(evaluate, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    (tmp_path / "results.json").unlink()
    doc2 = EvalResult.read(evaluate.run(cfg) / "results.json")
    assert doc2.metrics == doc.metrics
    assert "chain of thought 'cot': answer found" in evaluate.summarize(tmp_path)


def test_cot_flag_adds_builtin_generation_variants_only_when_asked(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    names = lambda **kw: evaluate._validate(evaluate.Config(variants="default", **kw))  # noqa: E731
    assert names() == ["default"] == names(cot="off")
    assert names(cot="on") == ["default", *variants.generation_variants()]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert names() == ["default", *variants.generation_variants()] and names(cot="off") == ["default"]
    with pytest.raises(ValueError, match="--cot"):
        names(cot="maybe")
    with pytest.raises(ValueError, match="--max-new-tokens"):
        names(max_new_tokens=0)


def test_generations_of_other_variants_are_kept(tiny_model, tmp_path: Path, monkeypatch) -> None:
    import dataclasses

    path = tmp_path / "g.jsonl"
    gen.generate(CFG, path, model=tiny_model)
    first = {(r["variant"], r["question_id"]): r for r in gen.read_generations(path)[1]}
    calls: list[int] = []
    real = gen.greedy_generate
    monkeypatch.setattr(gen, "greedy_generate", lambda m, p, **k: (calls.append(len(p)), real(m, p, **k))[1])
    other = dataclasses.replace(CFG, variants=("cot", "chat+cot"))
    gen.generate(other, path, model=tiny_model)
    assert sum(calls) == 5  # only chat+cot; cot kept, numbers+cot dropped
    header, rows = gen.read_generations(path)
    assert header["n_rows"] == 10 and gen.is_complete(path, other)
    assert {r["variant"] for r in rows} == {"cot", "chat+cot"}
    assert all(r == first[("cot", r["question_id"])] for r in rows if r["variant"] == "cot")
    with pytest.raises(FileExistsError, match="different generation config"):
        gen.generate(dataclasses.replace(other, max_new_tokens=3), path, model=tiny_model)


def test_eval_adds_variants_to_a_finished_run(tiny_model, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    base = dict(model="tiny-llama", task="capitals", n=6, out=str(tmp_path), n_boot=20, max_new_tokens=4)
    evaluate.run(evaluate.Config(variants="default,cot", **base), model=tiny_model)
    _, before = gen.read_generations(tmp_path / "generations.jsonl")
    doc = EvalResult.read(evaluate.run(evaluate.Config(variants="default,rotate:1,cot,chat+cot", **base),
                                      model=tiny_model) / "results.json")
    assert {m.variant for m in doc.metrics} == {"default", "rotate:1", "cot", "cot[forced]", "chat+cot",
                                                     "chat+cot[forced]"}
    _, after = gen.read_generations(tmp_path / "generations.jsonl")
    assert [r for r in after if r["variant"] == "cot"] == before
