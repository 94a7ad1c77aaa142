"""`cli.py audit` end to end on a minimal toy zoo (one tiny size, one seed, a few steps): typed results that read
back, a per-question table, the scoreboard and detectors, reuse on a rerun, and one straight-up score whichever path
(bridge capture or first-token scoring) reads it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from commands import audit as audit_cmd
from core.samples import NAMES, read_samples
from core.schemas import AuditResult, load_result
from eval.scoring import masked_argmax
from hooks.store import Store

ZOO = {"seeds": [0], "lock": {"n": 120, "steps": 10, "batch_size": 8},
       "toy": {"sizes": ["32x1"], "pretrain_steps": 30, "steps": {"weak": 2, "base": 2}},
       "params": {"epochs": 2, "eval_every": 1, "noise_draws": 1, "noise_scales": [0.1], "n_boot": 50,
                  "steer_alphas": [0, 1.0], "steer_positions": ["last"], "steer_examples": 8, "n_train": 30,
                  "variants": "default,rotate:1", "sft_n": 2, "unlock_n": 2}}


@pytest.fixture(scope="module")
def audit_run(tmp_path_factory) -> Path:  # noqa: ANN001
    root = tmp_path_factory.mktemp("audit")
    path = root / "zoo.json"
    path.write_text(json.dumps({**ZOO, "out": str(root / "run")}))
    return audit_cmd.run(audit_cmd.Config(target=str(path)))


def test_results_read_back_and_summarize(audit_run: Path) -> None:
    doc = json.loads((audit_run / "results.json").read_text())
    res = load_result(audit_run / "results.json")
    assert isinstance(res, AuditResult) and res.to_json() == doc and res.header.command == "audit"
    assert [o.role for o in res.organisms] == ["locked", "weak", "base"] and len(res.cases) == 3
    methods = [m for m in res.methods if m != "cot"]
    assert {(r.organism, r.method) for r in res.scoreboard} == {(o.name, m) for o in res.organisms for m in methods}
    assert any("cot" in n and "cannot write a chain of thought" in n for n in res.notes)
    for r in res.scoreboard:
        assert r.fraction_kind == ("own-gap" if r.role == "locked" else
                                   ("reference-gap" if res.organisms[0].gap > 0 else "none"))
        assert r.elicited.lo <= r.elicited.value <= r.elicited.hi
    assert {(d.method, d.against) for d in res.detectors} >= {(m, a) for m in methods for a in ("weak+base", "weak")}
    assert all(d.n_locked == 1 and d.n_other in (1, 2) for d in res.detectors)
    text = audit_cmd.summarize(audit_run)
    assert "toy-32x1-locked" in text and "detector AUROC" in text
    assert (audit_run / "audit.html").read_text().count("<table>") >= 3 and (audit_run / "audit_heatmap.png").exists()
    assert (audit_run / "scoreboard.csv").read_text().count("\n") == len(res.scoreboard) + 1


def test_samples_hold_every_answer(audit_run: Path) -> None:
    df = read_samples(audit_run / "samples.parquet").to_pandas()
    assert tuple(df.columns) == NAMES and set(df.command) == {"audit"}
    assert (df.correct == (df.prediction == df.gold)).all()
    assert not df.duplicated(["question_id", "variant", "method", "condition", "layer", "model"]).any()
    res = AuditResult.read(audit_run / "results.json")
    for c in res.cases:
        mine = df[df.model == c.model]
        for m, cm in c.methods.items():
            rows = mine[mine.method == f"audit:{m}"]
            assert len(rows) == c.sizes["test"] and rows.correct.mean() == pytest.approx(cm.accuracy.value)
        ref = mine[(mine.method == "audit:reference") & (mine.condition == "with_password")]
        assert ref.correct.mean() == pytest.approx(c.with_password.value)


def test_one_straight_up_score(audit_run: Path) -> None:
    """The bridge capture's default-prompt answers are the first-token scorer's no-password answers."""
    res = AuditResult.read(audit_run / "results.json")
    df = read_samples(audit_run / "samples.parquet").to_pandas()
    for c in res.cases:
        ref = df[(df.model == c.model) & (df.method == "audit:reference") & (df.condition == "no_password")]
        want = dict(zip(ref.question_id, ref.prediction, strict=True))
        with Store(audit_run / "cases" / f"{c.organism}-s{c.seed}" / "resid.h5") as s:
            m = s.mask(variant="default", lettered=True)
            pos = masked_argmax(s.array("answer_logits", m), s.rows["n_choices"][m])
            pred = s.rows["order"][m][np.arange(len(pos)), pos]
            got = dict(zip(s.rows["question_id"][m].astype(str), pred.tolist(), strict=True))
        assert {q: got[q] for q in want} == want


def test_rerun_reuses_every_case(audit_run: Path) -> None:
    cases = sorted((audit_run / "cases").glob("*.json"))
    before = {p: os.stat(p).st_mtime_ns for p in cases}
    first = json.loads((audit_run / "results.json").read_text())
    cfg = json.loads((audit_run / "config.json").read_text())["zoo"]
    audit_cmd.run(audit_cmd.Config(target=cfg))
    assert {p: os.stat(p).st_mtime_ns for p in cases} == before
    again = json.loads((audit_run / "results.json").read_text())
    assert again["scoreboard"] == first["scoreboard"] and again["detectors"] == first["detectors"]
