"""`cli.py transfer`: probes trained on one prompt variant of an eval store and tested on the others."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import cli
from commands import evaluate, transfer
from core.schemas import TransferResult, to_data
from eval.stats import split_ids
from hooks.store import Store
from probes import transfer as transfer_lib

VARIANTS = "default,rotate:1,numbers,option,option_listed"


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory, tiny_model) -> Path:
    out = tmp_path_factory.mktemp("eval")
    cfg = evaluate.Config(model="tiny-llama", task="capitals", n=24, variants=VARIANTS, resid=True, out=str(out),
                          n_boot=20, seed=1)
    return evaluate.run(cfg, model=tiny_model)


def test_transfer_matches_a_plain_sklearn_probe(eval_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(transfer_lib, "fit_layer", functools.partial(transfer_lib.fit_layer, probe_kwargs={"Cs": (0.5,)}))
    out = transfer.run(transfer.Config(store=str(eval_run), test_variants="default,rotate:1", out=str(tmp_path)))
    doc = to_data(TransferResult.read(out / "results.json"))
    assert doc["kind"] == "letter" and list(doc["variants"]) == ["default", "rotate:1"]
    with Store(eval_run / "activations.h5") as s:
        vid, qid = s.rows["variant_id"], s.rows["question_id"]
        label, resid = s.rows["label"], s.resid_rows().astype(np.float32)
    train_ids, test_ids = split_ids(sorted(set(qid)), 0.5, 0)
    tr = (vid == "default") & np.isin(qid, train_ids)
    for pos in range(resid.shape[1]):
        scaler = StandardScaler().fit(resid[tr, pos])
        lr = LogisticRegression(C=0.5, max_iter=300, tol=1e-4).fit(scaler.transform(resid[tr, pos]), label[tr])
        for v in ("default", "rotate:1"):
            te = (vid == v) & np.isin(qid, test_ids)
            pred = lr.classes_[lr.decision_function(scaler.transform(resid[te, pos])).argmax(axis=1)]
            got = doc["variants"][v]["transfer_by_layer"][pos]
            assert got["value"] == pytest.approx(np.mean(pred == label[te]), abs=1e-9) and got["n"] == te.sum()
    # prompted accuracy on the same test questions, from the answer logits
    with Store(eval_run / "activations.h5") as s:
        logits = s.array("answer_logits")
    te = (vid == "rotate:1") & np.isin(qid, test_ids)
    assert doc["variants"]["rotate:1"]["prompted"]["value"] == pytest.approx(
        np.mean(np.nanargmax(logits[te, :4], axis=1) == label[te]))
    assert doc["header"]["config"]["train_variant"] == "default" and doc["header"]["model"]["weight_hash"]
    assert (out / "transfer.csv").read_text().count("\n") == 3 and (out / "transfer_by_layer.png").stat().st_size


def test_option_probes_transfer_between_option_variants_and_cli(eval_run: Path, tmp_path: Path, capsys) -> None:
    assert cli.main(["transfer", "--store", str(eval_run / "activations.h5"), "--train-variant", "option",
                     "--out", str(tmp_path), "--no-control"]) == 0
    printed = capsys.readouterr().out
    assert "option probe trained on 'option'" in printed and "option_listed" in printed
    doc = TransferResult.read(tmp_path / "results.json")
    assert list(doc.variants) == ["option", "option_listed"] and doc.control_layer is None


@pytest.mark.parametrize(("flags", "match"), [
    (["--train-variant", "bogus"], "--train-variant 'bogus' is not in"),
    (["--test-variants", "default,option"], "--test-variants"),
    (["--layers", "0,99"], "--layers"),
    (["--test-fraction", "1.5"], "--test-fraction"),
])
def test_bad_flags_name_the_problem_and_write_nothing(eval_run: Path, tmp_path: Path, capsys, flags, match) -> None:
    out = tmp_path / "out"
    assert cli.main(["transfer", "--store", str(eval_run), "--out", str(out), *flags]) == 2
    assert match in capsys.readouterr().err and not out.exists()


def test_store_without_residuals_is_refused(tmp_path: Path, tiny_model) -> None:
    run = evaluate.run(evaluate.Config(model="tiny-llama", task="capitals", n=8, variants="default",
                                       out=str(tmp_path / "eval"), n_boot=10), model=tiny_model)
    with pytest.raises(ValueError, match="rerun `cli.py eval` with --resid"):
        transfer.run(transfer.Config(store=str(run), out=str(tmp_path / "t")))
    with pytest.raises(ValueError, match="--store"):
        transfer.run(transfer.Config(store=str(tmp_path / "missing.h5")))
    assert not (tmp_path / "t").exists()


def test_finished_run_is_reused(eval_run: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = transfer.Config(store=str(eval_run), test_variants="numbers", out=str(tmp_path), control=False)
    transfer.run(cfg)
    monkeypatch.setattr(transfer_lib, "fit_layer", lambda *a, **k: pytest.fail("refit"))
    assert transfer.run(cfg) == tmp_path
    assert "numbers" in transfer.summarize(tmp_path)


def test_report_reads_transfer_runs(eval_run: Path, tmp_path: Path) -> None:
    from report.load import load_run

    out = transfer.run(transfer.Config(store=str(eval_run), test_variants="default,numbers", out=str(tmp_path)))
    doc = TransferResult.read(out / "results.json")
    run = load_run(out / "results.json")
    assert run.kind == "transfer" and run.model == "tiny-llama" and run.task == "capitals"
    at = {r.variant: r.value for r in run.rows if r.method == "transfer_from:default" and r.metric == "accuracy"}
    assert at == pytest.approx({v: doc.variants[v].transfer.value for v in ("default", "numbers")})
    per_layer = [r for r in run.rows if r.metric == "accuracy_by_layer" and r.variant == "numbers"]
    assert [r.layer for r in per_layer] == doc.layers


def test_report_page_has_a_transfer_table(eval_run: Path, tmp_path: Path) -> None:
    from commands import report

    out = transfer.run(transfer.Config(store=str(eval_run), test_variants="default,numbers", out=str(tmp_path / "t")))
    page = report.run(report.Config(runs=(str(out),), out=str(tmp_path / "report")))
    html = (page / "index.html").read_text()
    assert "Probe trained on &#x27;default&#x27;, tested on each variant" in html
    doc = TransferResult.read(out / "results.json")
    assert f"{doc.variants['numbers'].transfer.value:.3f}" in html
