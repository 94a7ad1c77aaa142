"""Logs for other tools (`logs`): an eval run on a tiny model written as an inspect_ai eval log, lm-eval samples and
results files, and an offline W&B run; `eval --log` and `export` write the same files; checked against the run's
own results, samples table and store, and (when installed) against inspect_ai's and lm-eval's own code."""

from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import cli
from core.io import clean
from core.samples import read_samples
from core.schemas import EvalResult
from eval import variants as V
from logs import read_run, write_logs
from logs.inspect_log import to_inspect, validate
from logs.lmeval_log import task_names

VARIANTS = "default,rotate:1,option,sys:Be%20brief.+chat,praise:You%20know%20{subject}.+shots:1"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("logs") / "eval"
    argv = ["eval", "--model", "tiny-llama", "--task", "capitals", "--n", "8", "--n-boot", "20", "--variants",
            VARIANTS, "--out", str(out), "--log", "inspect,lmeval"]
    assert cli.main(argv) == 0
    return out


def _samples(run_dir: Path) -> list[dict]:
    return read_samples(run_dir / "samples.parquet").to_pylist()


def test_read_run_items_match_the_run(run_dir) -> None:
    run = read_run(run_dir)
    res = EvalResult.read(run_dir / "results.json")
    assert len(run.items) == res.n_questions * len(res.variants_run) == 40
    rows = {(r["question_id"], r["variant"], r["method"]): r for r in _samples(run_dir)}
    for item in run.items:
        for a in item.answers:
            row = rows[(item.record.id, item.variant, "prompted:" + a.scoring)]
            assert a.prediction == row["prediction"] and a.correct == row["correct"]
        assert item.scores is not None and len(item.scores) == len(item.record.choices)
        # the stored scores pick the recorded answer (ties aside): one source of truth
        first = item.answers[0]
        if first.scoring in ("letter", "option"):
            assert item.displayed(first.prediction) == int(np.argmax(item.scores))
    item = next(i for i in run.items if i.variant == "shots:1+praise:You%20know%20{subject}.")
    assert item.text.startswith("You know capitals.\n\nWhat is the capital of") and item.text.count("Answer:") == 2
    chat = next(i for i in run.items if i.prompt.chat)
    assert "Be brief." in chat.text and chat.prompt.system == "Be brief."


def test_inspect_log(run_dir) -> None:
    files = glob.glob(str(run_dir / "logs" / "inspect" / "*.json"))
    assert len(files) == 1 and Path(files[0]).name.endswith(".json")
    doc = json.loads(Path(files[0]).read_text())
    res = EvalResult.read(run_dir / "results.json")
    assert doc["version"] == 2 and doc["status"] == "success" and doc["eval"]["task"] == "gaplens/capitals"
    samples = doc["samples"]
    assert len(samples) == 40 and len({s["id"] for s in samples}) == 40
    assert doc["eval"]["dataset"]["sample_ids"] == [s["id"] for s in samples]
    scores = {s["name"]: s for s in doc["results"]["scores"]}
    assert set(scores) == {m.variant for m in res.metrics}
    for m in res.metrics:  # the accuracy each metric's sample scores give is the run's
        vals = [s["scores"][m.variant]["value"] for s in samples if m.variant in s["scores"]]
        assert len(vals) == res.n_questions
        assert np.mean([v == "C" for v in vals]) == pytest.approx(m.accuracy.value)
        assert scores[m.variant]["metrics"]["accuracy"]["value"] == m.accuracy.value
    raw = next(s for s in samples if s["metadata"]["variant"] == "rotate:1")
    item = next(i for i in read_run(run_dir).items if i.variant == "rotate:1"
                and i.record.id == raw["metadata"]["question_id"])
    assert raw["input"] == V.to_text(V.render(V.parse("rotate:1"), item.record)) and raw["input"].endswith("Answer:")
    assert raw["choices"] == [item.record.choices[i] for i in V.display_order("rotate:1", item.record.id, 4)]
    assert raw["target"] == "ABCD"[raw["choices"].index(item.record.choices[item.record.answer])]
    chat = next(s for s in samples if s["metadata"]["variant"] == "chat+sys:Be%20brief.")
    assert [m["role"] for m in chat["input"]] == ["system", "user", "assistant"]
    assert chat["input"][0]["content"] == "Be brief." and chat["input"][-1]["content"] == "Answer:"
    assert clean(to_inspect(read_run(run_dir))) == doc  # deterministic


def test_inspect_log_reads_in_inspect_ai(run_dir) -> None:
    pytest.importorskip("inspect_ai")
    from inspect_ai.log import read_eval_log

    path = glob.glob(str(run_dir / "logs" / "inspect" / "*.json"))[0]
    log = read_eval_log(path)
    assert log.status == "success" and len(log.samples) == 40
    s = next(x for x in log.samples if x.metadata["variant"] == "option")
    assert s.target in ("A", "B", "C", "D") and s.scores["option[norm]"].value in ("C", "I")
    assert s.output.completion == s.scores["option"].answer
    assert validate(to_inspect(read_run(run_dir)))
    with pytest.raises(ValueError, match="EvalLog"):
        validate({"version": 2, "eval": {}})


def _lmeval_lines(run_dir: Path, variant: str) -> list[dict]:
    name = task_names(read_run(run_dir))[variant]
    return [json.loads(x) for x in (run_dir / "logs" / "lmeval" / f"samples_{name}.jsonl").read_text().splitlines()]


def test_lmeval_samples_match_lm_eval_definitions(run_dir) -> None:
    res = EvalResult.read(run_dir / "results.json")
    option = _lmeval_lines(run_dir, "option")
    assert len(option) == res.n_questions and [s["doc_id"] for s in option] == list(range(res.n_questions))
    for s in option:
        assert set(s) >= {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics",
                          "doc_hash", "prompt_hash", "target_hash", "acc", "acc_norm"}
        ll = np.array([float(r[0]) for r in s["filtered_resps"]])
        conts = [a["arg_1"] for a in s["arguments"].values()]
        choices = [c[1:] for c in conts]  # lm-eval's acc_norm: per character of doc_to_choice (no delimiter)
        gold = int(s["target"])
        assert s["acc"] == float(np.argmax(ll) == gold)
        assert s["acc_norm"] == float(np.argmax(ll / np.array([len(c) for c in choices])) == gold)
        assert s["doc_hash"] == hashlib.sha256(json.dumps(s["doc"], indent=2, ensure_ascii=False).encode()).hexdigest()
        assert s["prompt_hash"] == hashlib.sha256(s["arguments"]["gen_args_0"]["arg_0"].encode()).hexdigest()
    acc = np.mean([s["acc"] for s in option])
    assert acc == pytest.approx(res.metric("option").accuracy.value)
    assert np.mean([s["acc_norm"] for s in option]) == pytest.approx(res.metric("option[norm]").accuracy.value)
    rotated = _lmeval_lines(run_dir, "rotate:1")
    assert all(set(s["metrics"]) == {"acc"} for s in rotated)
    assert np.mean([s["acc"] for s in rotated]) == pytest.approx(res.metric("rotate:1").accuracy.value)
    for s in rotated:  # lettered: argmax over the symbols' log-softmax is the answer; target is displayed
        ll = np.array([float(r[0]) for r in s["filtered_resps"]])
        assert np.logaddexp.reduce(ll) == pytest.approx(0.0, abs=1e-6)
        assert s["acc"] == float(np.argmax(ll) == int(s["target"]))
    doc = json.loads((run_dir / "logs" / "lmeval" / f"results_{task_names(read_run(run_dir))['option']}.json")
                     .read_text())
    (res_task,) = doc["results"].values()
    assert res_task["acc,none"] == res.metric("option").accuracy.value


def test_lmeval_hashes_are_lm_evals(run_dir) -> None:
    utils = pytest.importorskip("lm_eval.utils")
    s = _lmeval_lines(run_dir, "default")[0]
    assert s["doc_hash"] == utils.hash_string(json.dumps(s["doc"], indent=2, default=utils.handle_non_serializable,
                                                         ensure_ascii=False))
    assert s["target_hash"] == utils.hash_string(s["target"])


def test_export_writes_what_eval_log_wrote(run_dir, tmp_path) -> None:
    assert cli.main(["export", str(run_dir), "--out", str(tmp_path)]) == 0
    for sub in ("inspect", "lmeval"):
        ours = sorted(p.name for p in (run_dir / "logs" / sub).iterdir())
        assert ours == sorted(p.name for p in (tmp_path / sub).iterdir())
        for name in ours:
            assert (run_dir / "logs" / sub / name).read_bytes() == (tmp_path / sub / name).read_bytes()
    assert cli.main(["export", str(tmp_path)]) == 2  # not a run directory
    assert cli.main(["export", str(run_dir), "--format", "html"]) == 2


def test_export_refuses_other_commands(tmp_path) -> None:
    with pytest.raises(ValueError, match="a probe run"):
        res = tmp_path / "results.json"
        res.write_text(json.dumps({"schema": "gaplens.probe/1", "header": {"command": "probe"}}))
        write_logs(tmp_path, ["inspect"])


def test_wandb_offline(run_dir, tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    written = write_logs(run_dir, [], wandb="gaplens-test", out=tmp_path)
    (path,) = written
    offline = list(tmp_path.glob("wandb/offline-run-*"))
    assert len(offline) == 1 and str(offline[0]) == path
    assert list(offline[0].glob("run-*.wandb"))[0].stat().st_size > 0
    table = json.loads(next(offline[0].glob("files/media/table/samples_*.table.json")).read_text())
    assert len(table["data"]) == sum(len(i.answers) for i in read_run(run_dir).items)


def test_prompts_render_as_the_capture_rendered(run_dir) -> None:
    """The re-rendered text of raw variants is what the capture tokenized (checked on the store's token counts)."""
    from hooks.models import load_tokenizer
    from hooks.store import Store

    tok = load_tokenizer("tiny-llama").tokenizer
    run = read_run(run_dir)
    with Store(run_dir / "activations.h5") as s:
        rows = s.rows
        n_tokens = {(q, v): int(n) for q, v, n, o in zip(rows["question_id"].tolist(), rows["variant_id"].tolist(),
                                                       rows["n_tokens"], rows["option_index"], strict=True) if o < 0}
    for item in run.items:
        if item.prompt.scoring == "letter" and not item.prompt.chat:
            assert len(tok(item.text).input_ids) == n_tokens[(item.record.id, item.variant)]
    assert V.parse("rotate:1").order == "rotate:1"
