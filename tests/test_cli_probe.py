"""`cli.py probe` end to end on a tiny model: files, typed results, the per-question table, reuse of the capture."""

from __future__ import annotations

import numpy as np
import pytest

import cli
from commands.probe import Config, output_dir, summarize
from core.samples import read_samples
from core.schemas import ProbeResult


def test_probe_cli_smoke_and_reuse(tmp_path, capsys):
    args = ["probe", "--model", "tiny-llama", "--task", "capitals", "--n", "24", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    res = ProbeResult.read(tmp_path / "results.json")
    assert (tmp_path / "probe_by_layer.png").stat().st_size > 0 and (tmp_path / "activations.h5").exists()
    n_layers = len(res.layers)
    assert res.layers == [0, 1, 2]  # tiny-llama: 2 blocks + final resid_post
    for t in ("option", "letter"):
        assert len(res.probe_by_layer[t]) == n_layers
        assert len(res.controls["shuffled"].by_layer[t]) == n_layers
        assert res.probe_by_layer[t][0].n == res.split.n_test
    assert len(res.lens_by_layer) == n_layers
    assert res.split.n_train + res.split.n_test == 24
    c = res.ceiling
    assert c.selected_on == "train-cv" and c.target in ("option", "letter") and c.layer in res.layers
    assert {"letter", "option", "option_norm"} <= set(res.prompted)
    assert res.prompted["letter"].all.n == 24
    m = res.header.model
    assert (m.name, m.source, m.kind, m.kind_source) == ("tiny-llama", "tiny", "instruct", "chat-template")
    assert m.n_params > 0 and m.weight_hash and res.header.task.n_questions == 24
    assert np.isfinite(res.probe_by_layer["option"][-1].value)

    h5, results = tmp_path / "activations.h5", tmp_path / "results.json"
    stamp, before = h5.stat().st_mtime_ns, results.read_bytes()
    # same capture, another analysis: refused, naming what differs, nothing changed...
    assert cli.main([*args, "--control", "random-init"]) == 2
    assert "control: 'shuffled' -> 'random-init'" in capsys.readouterr().err and results.read_bytes() == before
    # ...unless asked: the capture is reused, a control capture added, the results recomputed
    assert cli.main([*args, "--control", "random-init", "--model-kind", "base", "--overwrite"]) == 0
    assert h5.stat().st_mtime_ns == stamp and (tmp_path / "activations_control.h5").exists()
    res2 = ProbeResult.read(results)
    assert set(res2.controls) == {"random-init"} and res2.header.config["control"] == "random-init"
    assert res2.probe_by_layer == res.probe_by_layer
    assert [c.random_init for c in res2.captures] == [False, True]
    assert (res2.header.model.kind, res2.header.model.kind_source) == ("base", "flag")
    # the same config again: nothing is recomputed
    stamp2 = results.stat().st_mtime_ns
    assert cli.main([*args, "--control", "random-init", "--model-kind", "base"]) == 0
    assert results.stat().st_mtime_ns == stamp2


def test_default_out_dir_and_bad_flags():
    assert str(output_dir(Config(model="org/some-model", task="jsonl:/a/b.jsonl"))) == \
        "runs/probe-org-some-model-jsonl-a-b.jsonl"
    assert cli.main(["probe", "--model", "tiny-llama", "--control", "bogus"]) == 2
    assert cli.main(["probe", "--model", "tiny-llama", "--test-fraction", "1.5"]) == 2
    assert cli.main(["probe", "--model", "tiny-llama", "--dtype", "float64"]) == 2
    assert cli.main(["probe", "--model", "tiny-llama", "--model-kind", "chat"]) == 2


def test_data_dir_flag_is_recorded_as_an_absolute_path(tmp_path, monkeypatch) -> None:
    import argparse

    from commands import evaluate

    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    cli.add_config_args(parser, evaluate.Config)
    cfg = cli.build_config(evaluate.Config, parser.parse_args(["--data-dir", "sub/../data"]))
    assert cfg.data_dir == str(tmp_path.resolve() / "data")
    assert cli.build_config(evaluate.Config, parser.parse_args([])).data_dir is None


def test_shuffled_control_is_the_mean_over_label_shuffles(tmp_path):
    from commands.probe import Config as ProbeConfig
    from commands.probe import run as probe_run
    from hooks.store import Store
    from probes.fit import FeatureReader, sweep_layers
    from probes.targets import TARGETS, load_target

    out = probe_run(ProbeConfig(model="tiny-llama", task="capitals", n=24, out=str(tmp_path), n_shuffles=3, seed=2))
    res = ProbeResult.read(out / "results.json")
    with Store(out / "activations.h5") as store:
        targets = [load_target(store, t) for t in TARGETS]
        from eval.stats import split_ids

        train_ids, _ = split_ids(store.rows["question_id"], 0.5, 2)
        reader = FeatureReader(store, np.concatenate([t.rows for t in targets]))
        each = [sweep_layers(reader, targets, train_ids, range(len(store.layers)), kinds=("shuffled",),
                             seed=2 + i)["shuffled"] for i in range(3)]
    shuffled = res.controls["shuffled"]
    assert shuffled.n_shuffles == 3
    for t in TARGETS:
        for i, est in enumerate(shuffled.by_layer[t]):
            expected = np.mean([np.mean(sw.fits[t][i].test_correct) for sw in each])
            assert est.value == pytest.approx(expected)
            assert est.lo <= est.value <= est.hi
    cc = shuffled.ceiling
    assert len(cc.per_shuffle) == 3
    assert cc.test_accuracy.value == pytest.approx(np.mean([x.test_accuracy for x in cc.per_shuffle]))
    # its interval is over shuffles and questions (eval.runs), within [0, 1], never a t interval over 3 values
    from eval.runs import accuracy_over_runs

    chosen = [sw.fits[c.target][res.layers.index(c.layer)] for sw, c in zip(each, cc.per_shuffle, strict=True)]
    want = accuracy_over_runs([f.test_correct for f in chosen], ids_by_run=[f.test_ids for f in chosen], seed=2)
    assert cc.test_accuracy == want and cc.test_accuracy.method == "bootstrap_crossed"
    assert 0 <= cc.test_accuracy.lo <= cc.test_accuracy.hi <= 1
    # the per-question table holds every shuffle's answers; their mean per layer is the control's accuracy
    df = read_samples(out / "samples.parquet").to_pandas()
    for t, variant in (("option", "option"), ("letter", "default")):
        for i, layer in enumerate(res.layers):
            rows = df[df.method.str.startswith("control:shuffled-s") & (df.variant == variant) & (df.layer == layer)]
            assert rows.method.nunique() == 3
            assert rows.correct.mean() == pytest.approx(shuffled.by_layer[t][i].value)
    with pytest.raises(ValueError, match="--n-shuffles"):
        ProbeConfig(n_shuffles=0)


def test_a_store_without_a_recorded_identity_is_described_from_the_model(tmp_path, monkeypatch):
    """Stores captured before identities were recorded: the model is loaded to describe it (same identity)."""
    from commands.probe import Config as ProbeConfig
    from commands.probe import run as probe_run
    from hooks.store import Store

    cfg = dict(model="tiny-llama", task="capitals", n=8, out=str(tmp_path), n_shuffles=1, control="none")
    first = ProbeResult.read(probe_run(ProbeConfig(**cfg)) / "results.json").header.model
    monkeypatch.setattr(Store, "identity", lambda self: None)
    again = ProbeResult.read(probe_run(ProbeConfig(**cfg, model_kind="base")) / "results.json").header.model
    assert again == first.with_kind("base") and first.kind == "instruct"


def test_surface_control_is_fit_like_the_option_probe(tmp_path):
    """The surface-cue control: `probes.fit.fit_layer` on `probes.surface` features of the option rows, and the
    option probe's paired margin over it on the same test questions."""
    from commands.probe import Config as ProbeConfig
    from commands.probe import run as probe_run
    from eval.paired import mcnemar_exact, paired_difference
    from eval.stats import split_ids
    from hooks.capture import select_records
    from hooks.store import Store
    from probes.fit import fit_layer
    from probes.surface import option_texts, surface_features
    from probes.targets import load_target

    cfg = ProbeConfig(model="tiny-llama", task="capitals", n=24, out=str(tmp_path), n_shuffles=1, seed=1)
    out = probe_run(cfg)
    res = ProbeResult.read(out / "results.json")
    sc = res.surface
    with Store(out / "activations.h5") as store:
        option = load_target(store, "option")
        train_ids, _ = split_ids(store.rows["question_id"], 0.5, 1)
        train = np.isin(option.groups, train_ids)
        from commands.probe import capture_config

        texts = option_texts(select_records(capture_config(cfg)), option.groups, option.order, option.option_index)
        feats = surface_features(texts, store.array("option_ntokens", option.rows),
                                 store.array("option_nchars", option.rows), train)
    fit = fit_layer(option, feats.X, train)
    assert sc.n_features == len(feats.names) and sc.features == feats.describe()
    assert sc.test_accuracy.value == pytest.approx(fit.test_correct.mean()) and sc.C == fit.C
    assert sc.cv_accuracy == pytest.approx(fit.cv)
    assert sc.probe_layer == res.ceiling_by_target["option"].layer
    df = read_samples(out / "samples.parquet").to_pandas()
    probe = df[(df.method == "probe:option") & (df.layer == sc.probe_layer)].sort_values("question_id")
    surf = df[df.method == "control:surface"].sort_values("question_id")
    assert probe.question_id.tolist() == surf.question_id.tolist() == sorted(fit.test_ids.tolist())
    kw = {"elicited_ids": probe.question_id.to_numpy(), "straight_ids": surf.question_id.to_numpy()}
    assert sc.margin == paired_difference(probe.correct.to_numpy(), surf.correct.to_numpy(), seed=1, **kw)
    mc = mcnemar_exact(probe.correct.to_numpy(), surf.correct.to_numpy(), **kw)
    assert (sc.mcnemar.b, sc.mcnemar.c, sc.mcnemar.p_value) == (mc.b, mc.c, mc.p_value)
    from commands.probe import below_chance
    from probes.fit import Sweep

    for target, flagged in res.below_chance.items():  # flagged layers: the whole Wilson interval below chance
        for layer in flagged:
            assert res.probe_by_layer[target][res.layers.index(layer)].hi < res.chance
    wrong = type("Fit", (), {"test_correct": np.zeros(40, dtype=bool)})()  # 0 of 40: below 0.25 at any level
    right = type("Fit", (), {"test_correct": np.arange(40) % 4 == 0})()  # 10 of 40: chance
    fake = Sweep("probe", {"option": [wrong, right, right], "letter": [right, right, wrong]})
    assert below_chance(fake, [0, 1, 2], 0.25) == {"option": [0], "letter": [2]}
    few = type("Fit", (), {"test_correct": np.r_[np.ones(3), np.zeros(37)].astype(bool)})()  # 3/40: Wilson hi 0.20
    assert below_chance(Sweep("probe", {"option": [few]}), [0], 0.25) == {"option": [0]}
    assert below_chance(Sweep("probe", {"option": [few] * 31, "letter": [few] * 31}), list(range(31)), 0.25) == {
        "option": [], "letter": []}  # 62 probes scanned: 3/40 is no longer below chance by the corrected interval
    assert "surface-cue control" in summarize(out)
    off = probe_run(ProbeConfig(model="tiny-llama", task="capitals", n=24, out=str(tmp_path / "off"), n_shuffles=1,
                                seed=1, surface=False))
    assert ProbeResult.read(off / "results.json").surface is None
