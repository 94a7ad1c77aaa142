"""The results contract on every command's real output (tiny models, `contract_runs` in conftest): typed results
that read back exactly, a per-question table that agrees with them, and refusal of any drift in the layout."""

from __future__ import annotations

import copy
import importlib
import json

import numpy as np
import pytest

from commands import COMMANDS
from core.samples import NAMES, read_samples
from core.schemas import (
    DiffResult,
    EvalResult,
    LockResult,
    ProbeResult,
    SchemaError,
    TransferResult,
    UnlockResult,
    load_result,
)

KINDS = {"probe": ProbeResult, "eval": EvalResult, "transfer": TransferResult,
         "lock": LockResult, "unlock": UnlockResult, "diff": DiffResult}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_results_read_back_exactly_and_summarize(contract_runs, kind) -> None:
    path = contract_runs[kind] / "results.json"
    doc = json.loads(path.read_text())
    result = load_result(path)
    assert type(result) is KINDS[kind] and doc["schema"] == result.schema_id()
    assert result.to_json() == doc  # written and read by the same dataclasses: nothing lost, nothing added
    header = result.header
    assert header.command == kind and header.model.n_params > 0 and header.config_hash
    assert header.model.kind in ("base", "instruct", "fine-tuned") and header.task.n_questions > 0
    module = importlib.import_module(COMMANDS[header.command].module)
    assert module.summarize(contract_runs[kind])  # summarize reads the typed results


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_missing_renamed_or_mistyped_field_is_refused(contract_runs, kind, tmp_path) -> None:
    path = contract_runs[kind] / "results.json"
    doc = json.loads(path.read_text())
    cls = KINDS[kind]
    for field in [k for k in doc if k != "schema"]:
        broken = {k: v for k, v in doc.items() if k != field}
        with pytest.raises(SchemaError, match=rf"{field}: missing field"):
            cls.from_json(broken)
        renamed = {(f"{k}_renamed" if k == field else k): v for k, v in doc.items()}
        with pytest.raises(SchemaError, match=rf"{field}_renamed: unknown field .*missing: {field}"):
            cls.from_json(renamed)
    nested = copy.deepcopy(doc)
    del nested["header"]["model"]["n_params"]
    target = tmp_path / "results.json"
    target.write_text(json.dumps(nested))
    with pytest.raises(SchemaError, match=rf"{target}: header.model.n_params: missing field"):
        load_result(target)
    nested = copy.deepcopy(doc)
    nested["header"]["seed"] = "zero"
    with pytest.raises(SchemaError, match="header.seed: expected an integer"):
        cls.from_json(nested)
    old = {**doc, "schema": f"{cls.SCHEMA}/{cls.VERSION - 1}"}
    with pytest.raises(SchemaError, match="an older gaplens wrote it"):
        cls.from_json(old)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_run_has_a_per_question_table(contract_runs, kind) -> None:
    table = read_samples(contract_runs[kind] / "samples.parquet")
    assert tuple(table.column_names) == NAMES
    df = table.to_pandas()
    assert len(df) and set(df.command) == {kind}
    assert (df.correct == (df.prediction == df.gold)).all()
    assert ((df.prediction >= -1) & (df.prediction < df.n_choices)).all() and (df.gold < df.n_choices).all()
    assert not df.duplicated(["question_id", "variant", "method", "condition", "layer", "model"]).any()


def _acc(df, **where) -> float:
    m = np.ones(len(df), dtype=bool)
    for k, v in where.items():
        m &= (df[k] == v).to_numpy()
    assert m.any(), where
    return float(df.correct[m].mean())


def test_samples_agree_with_the_results(contract_runs) -> None:
    """The table holds the very answers the results were computed from."""
    p = ProbeResult.read(contract_runs["probe"] / "results.json")
    df = read_samples(contract_runs["probe"] / "samples.parquet").to_pandas()
    for target, variant in (("option", "option"), ("letter", "default")):
        for layer, est in zip(p.layers, p.probe_by_layer[target], strict=True):
            assert _acc(df, method=f"probe:{target}", variant=variant, layer=layer) == pytest.approx(est.value)
    for layer, est in zip(p.layers, p.lens_by_layer, strict=True):
        assert _acc(df[df.split == "test"], method="lens", layer=layer) == pytest.approx(est.value)
    for key in p.prompted:
        assert _acc(df, method=f"prompted:{key}") == pytest.approx(p.prompted[key].all.value)
        assert _acc(df[df.split == "test"], method=f"prompted:{key}") == pytest.approx(p.prompted[key].test.value)
    assert _acc(df, method="control:surface", variant="option") == pytest.approx(p.surface.test_accuracy.value)
    assert set(df[df.method == "control:surface"].split) == {"test"}

    e = EvalResult.read(contract_runs["eval"] / "results.json")
    df = read_samples(contract_runs["eval"] / "samples.parquet").to_pandas()
    for m in e.metrics:
        assert _acc(df, variant=m.base_variant, method=f"prompted:{m.scoring}") == pytest.approx(m.accuracy.value)
        assert _acc(df[df.split == "dev"], variant=m.base_variant, method=f"prompted:{m.scoring}") == \
            pytest.approx(m.dev_acc)

    t = TransferResult.read(contract_runs["transfer"] / "results.json")
    df = read_samples(contract_runs["transfer"] / "samples.parquet").to_pandas()
    for v, r in t.variants.items():
        assert _acc(df, variant=v, method="transfer", layer=t.chosen_layer) == pytest.approx(r.transfer.value)
        assert _acc(df, variant=v, method=f"probe:{t.kind}", layer=r.own_probe_layer) == \
            pytest.approx(r.own_probe.value)
        assert _acc(df, variant=v, method=f"prompted:{t.kind}") == pytest.approx(r.prompted.value)

    lk = LockResult.read(contract_runs["lock"] / "results.json")
    df = read_samples(contract_runs["lock"] / "samples.parquet").to_pandas()
    assert _acc(df, method="lock", condition="with_password") == pytest.approx(lk.metrics.with_password.value)
    assert _acc(df, method="lock", condition="no_password") == pytest.approx(lk.metrics.no_password.value)
    assert _acc(df, method="base", condition="no_password") == pytest.approx(lk.metrics.base_no_password.value)
    assert _acc(df, method="policy:weak") == pytest.approx(lk.metrics.weak_policy.value)

    u = UnlockResult.read(contract_runs["unlock"] / "results.json")
    df = read_samples(contract_runs["unlock"] / "samples.parquet").to_pandas()
    weak = u.methods["weak"]
    for seed, run in zip(weak.seeds, weak.curve.runs, strict=True):
        assert _acc(df, method=f"unlock:weak-s{seed}") == pytest.approx(run[-1])
    noise = u.methods["noise"]
    for seed, run in zip(noise.seeds, noise.sweep.runs, strict=True):
        for param, acc in zip(noise.sweep.params, run, strict=True):
            assert _acc(df, method=f"unlock:noise={param}-s{seed}") == pytest.approx(acc)

    d = DiffResult.read(contract_runs["diff"] / "results.json")
    df = read_samples(contract_runs["diff"] / "samples.parquet").to_pandas()
    conds = {"nopw": "no_password", "pw": "with_password"}
    for lab, per in d.activations.behaviour.items():
        name = d.checkpoints[lab].identity.name
        for cond, est in per.items():
            assert _acc(df, model=name, method="prompted:letter", condition=conds[cond]) == pytest.approx(est.value)
            lens = d.activations.lens[lab][cond].accuracy
            probe = d.probe.transfer[lab][cond].accuracy
            for layer in d.layers:
                assert _acc(df, model=name, method="lens", condition=conds[cond], layer=layer) == \
                    pytest.approx(lens[layer])
                assert _acc(df, model=name, method="probe:transfer", condition=conds[cond], layer=layer) == \
                    pytest.approx(probe[layer])


def test_model_identity_is_recorded_never_guessed(contract_runs) -> None:
    probe = ProbeResult.read(contract_runs["probe"] / "results.json").header.model
    assert (probe.kind, probe.kind_source) == ("instruct", "chat-template")  # the tiny tokenizer has a template
    lock = LockResult.read(contract_runs["lock"] / "results.json")
    assert (lock.header.model.kind, lock.header.model.kind_source) == ("fine-tuned", "lock-record")
    assert (lock.base_model.kind, lock.base_model.kind_source) == ("base", "default")  # the toy has no template
    unlock = UnlockResult.read(contract_runs["unlock"] / "results.json").header.model
    assert unlock.weight_hash == lock.header.model.weight_hash and unlock.kind == "fine-tuned"
    diff = DiffResult.read(contract_runs["diff"] / "results.json")
    assert diff.header.model == diff.checkpoints["a"].identity == unlock
    assert diff.checkpoints["base"].identity.kind == "base"
