"""Tests of the report: hand-built result sets -> tables, CSVs, figures and a page that opens in a real browser."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from commands import report
from report.kinds import detect_kind
from report.load import find_results, load_run, load_runs
from report.rows import TIDY_COLUMNS, model_size
from report.tables import gap_items, model_summaries


def est(v: float, n: int = 100, half: float = 0.08) -> dict:
    return {"value": v, "lo": max(0.0, v - half), "hi": min(1.0, v + half), "n": n, "method": "wilson"}


def prov(model: str, task: str, **extra) -> dict:
    return {"package": "gaplens", "package_version": "0.1.0", "created_utc": "2026-11-23T00:00:00+00:00",
            "model": model, "weight_hash": f"hash-{model}", "task": task, "split": "test", "seed": 0, **extra}


def probe_result(model: str, task: str, *, n_layers: int = 5, lens_selection: bool = True) -> dict:
    """The layout `commands.probe` writes: per-target lists indexed like `layers`."""
    layers = list(range(n_layers))
    d = {
        "prompted_accuracy": {"letter": {"all": est(0.3, 200), "test": est(0.3)},
                              "option": {"all": est(0.5, 200), "test": est(0.52)}},
        "probe_accuracy_by_layer": {"option": [est(0.3 + 0.1 * i) for i in layers],
                                    "letter": [est(0.25 + 0.02 * i) for i in layers]},
        "probe_cv_accuracy_by_layer": {"option": [0.3 + 0.1 * i for i in layers]},
        "lens_accuracy_by_layer": [est(0.25 + 0.05 * i) for i in layers],
        "control_accuracy_by_layer": {"shuffled": {"option": [est(0.27) for _ in layers],
                                                   "letter": [est(0.24) for _ in layers]}},
        "control_ceiling": {"shuffled": {"target": "option", "layer": 1, "test_accuracy": est(0.27)}},
        "ceiling": {"target": "option", "layer": 3, "test_accuracy": est(0.6), "cv_accuracy": 0.62,
                    "selected_on": "train-cv", "gap": 0.1,
                    "naive_max": {"target": "option", "layer": 4, "test_accuracy": est(0.7)}},
        "chance": 0.25,
        "layers": layers,
        "provenance": prov(model, task),
        "config": {"model": model, "task": task},
    }
    if lens_selection:
        d["lens_best"] = {"layer": 2, "test_accuracy": est(0.33), "selected_on": "train", "naive_max_layer": 4,
                          "naive_max_test": 0.45}
    return d


def eval_result(model: str, task: str, n_variants: int = 12) -> dict:
    """The layout `commands.evaluate` writes."""
    names = ["default"] + [f"v{i}" for i in range(1, n_variants)]
    metrics = [{"variant": v, "scoring": "letter", "accuracy": 0.25 + 0.02 * i, "ci_lo": 0.17 + 0.02 * i,
                "ci_hi": 0.33 + 0.02 * i, "n": 100, "dev_acc": 0.25 + 0.02 * i, "test_acc": 0.25 + 0.02 * i}
               for i, v in enumerate(names)]
    return {
        "schema": "gaplens.eval/1",
        "chance": 0.25,
        "metrics": metrics,
        "default": metrics[0],
        "spread": {"all": {"max": 0.47, "min": 0.25, "spread": 0.22, "std": 0.07, "mean": 0.36, "n_variants": 12},
                   "lettered": None},
        "majority_vote": {"n_variants": n_variants, "accuracy": est(0.38), "default_accuracy": 0.25,
                          "diff_vs_default": est(0.13), "lettered_only": {"n_variants": 11, "accuracy": est(0.36)}},
        "symbol_bias": {"default": {"tv_distance": 0.4, "chi2_p": 0.001}},
        "honest_best": {"chosen": "v9", "dev_accuracy": 0.5, "test_accuracy": est(0.41), "naive_max_variant": "v11",
                        "naive_max_test": 0.47, "inflation": 0.06, "expected_max_by_chance": 0.03,
                        "default_test_accuracy": 0.24, "gain_over_default_test": 0.17},
        "provenance": prov(model, task),
        "config": {"model": model, "task": task},
    }


def lock_result(model: str, task: str, checkpoint: str = "/nonexistent/lock/model") -> dict:
    """The layout `commands.lock` writes (trimmed)."""
    metrics = {"with_password": est(0.55), "no_password": est(0.28),
               "decoys": {"decoy:0": {"accuracy": est(0.27), "trained": True, "tv": 0.1, "agree": 0.9}},
               "decoys_trained": est(0.27), "decoys_held_out": None, "base_no_password": est(0.5),
               "weak_policy": est(0.26), "strong_policy": est(0.56), "no_password_vs_weak": {"tv": 0.1, "agree": 0.9},
               "password_vs_strong": {"tv": 0.05, "agree": 0.95}, "gap": 0.27, "converged": False,
               "converged_rule": "rule"}
    return {"schema": "gaplens.lock-run/1", "checkpoint": checkpoint, "metrics": metrics,
            "provenance": prov(model, task), "config": {"model": model, "task": task}}


def unlock_result(model: str, task: str) -> dict:
    """The layout `commands.unlock` writes (trimmed): a training method with a curve, a noise sweep."""
    curve = {"epochs": [0, 10, 20, 30, 40], "mean": [0.28, 0.33, 0.38, 0.43, 0.48],
             "ci": [[0.2, 0.36], [0.25, 0.41], [0.3, 0.46], [0.35, 0.51], [0.4, 0.56]],
             "runs": [[0.28 + 0.05 * k + 0.01 * s for k in range(5)] for s in range(3)]}
    sel = {"chosen": 30, "test_value": 0.44, "naive_max_test": 0.5, "test_pgr": 0.6, "naive_max_test_pgr": 0.8,
           "bias_pgr": 0.2, "test_pgr_runs": est(0.6, n=3, half=0.2)}
    methods = {"weak_sft": {"kind": "curve", "n_runs": 3, "seeds": [0, 1, 2], "curve": curve, "locked": 0.28,
                            "with_pw": 0.55, "final": {"acc": est(0.48, n=3), "pgr": est(0.7, n=3, half=0.2)},
                            "selected": sel},
               "noise": {"kind": "sweep", "n_runs": 2, "seeds": [0, 1], "params": [0.0, 0.01, 0.02],
                         "mean": [0.28, 0.3, 0.25], "ci": [[0.25, 0.31]] * 3, "runs": [[0.28, 0.3, 0.25]] * 2,
                         "selected": {"chosen": 0.01, "test_value": 0.3, "test_pgr": 0.07}}}
    return {"schema": "gaplens.unlock/1", "reference": {"locked": {"acc": 0.28}, "with_pw": {"acc": 0.55}},
            "weak_policy_acc": 0.26, "lock_metrics": {"with_password": est(0.55), "no_password": est(0.28)},
            "methods": methods, "provenance": prov(model, task), "config": {"model": model}}


def diff_result(model: str, task: str) -> dict:
    """The layout `commands.diff` writes (trimmed)."""
    layers = list(range(6))
    per = {"cka": [1 - 0.05 * i for i in layers], "cosine": [1 - 0.02 * i for i in layers]}
    return {"schema": "gaplens.diff/1", "layers": layers,
            "checkpoints": {"a": {"checkpoint": model, "weight_hash": "h-a"}, "b": {"checkpoint": "x", "weight_hash": "h-b"}},
            "activations": {"vs_reference": {"b": {"nopw": per}},
                            "password_effect": {"a": {"distance": [0.1 * i for i in layers]}},
                            "lens": {"a": {"nopw": {"accuracy": [0.25] * 6}}, "b": {"nopw": {"accuracy": [0.3] * 6}}},
                            "behaviour": {"a": {"nopw": est(0.3)}, "b": {"nopw": est(0.5)}}},
            "probe": {"transfer": {"b": {"nopw": {"accuracy": [0.4] * 6}}}},
            "weights": {"updates": {"a->b": ["a", "b"]}, "totals": {"relative_change": {"a->b": 0.02}},
                        "params": [{"layer": 0, "component": "mlp", "updates": {"a->b": {"relative_change": 0.01}}},
                                   {"layer": 5, "component": "mlp", "updates": {"a->b": {"relative_change": 0.04}}}]},
            "config": {"a": model, "b": "x", "task": task}, "provenance": prov(model, task)}


def write(root: Path, name: str, data: dict) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(data))
    return d


def build_result_set(root: Path) -> Path:
    """Two models x two tasks of probe and eval runs, a lock, an unlock and a diff run, and two bad files."""
    for model in ("smollm2-135m-instruct", "gemma-3-270m"):
        for task in ("mmlu", "arc-easy"):
            write(root, f"sweep/probe-{model}-{task}", probe_result(model, task, lens_selection=model.startswith("g")))
            write(root, f"sweep/eval-{model}-{task}", eval_result(model, task))
    lock_dir = root / "lock"
    write(root, "lock", lock_result("smollm2-135m-instruct", "mmlu", str(lock_dir / "model")))
    write(root, "unlock", unlock_result(str(lock_dir / "model"), "mmlu"))
    write(root, "diff", diff_result("smollm2-135m-instruct", "mmlu"))
    write(root, "junk", {"something": 1})
    (root / "broken").mkdir()
    (root / "broken" / "results.json").write_text("{not json")
    return root


@pytest.fixture()
def result_set(tmp_path: Path) -> Path:
    return build_result_set(tmp_path / "runs")


@pytest.fixture(scope="module")
def built_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of `build_result_set`, built once for the tests that only read it."""
    tmp = tmp_path_factory.mktemp("report")
    return report.run(report.Config(runs=(str(build_result_set(tmp / "runs")),), out=str(tmp / "rep")))


def test_detect_kind() -> None:
    assert detect_kind(probe_result("m", "t")) == "probe"
    assert detect_kind(eval_result("m", "t")) == "eval"
    assert detect_kind({k: v for k, v in eval_result("m", "t").items() if k != "schema"}) == "eval"
    assert detect_kind(lock_result("m", "t")) == "lock"
    assert detect_kind(unlock_result("m", "t")) == "unlock"
    assert detect_kind(diff_result("m", "t")) == "diff"
    assert detect_kind({"kind": "probe"}) == "probe"
    assert detect_kind({"schema": "gaplens.unlock/2"}) == "unlock"
    assert detect_kind({"foo": 1}) is None


def test_find_results_recurses_and_rejects_missing(result_set: Path) -> None:
    assert len(find_results([result_set])) == 13
    assert len(find_results([result_set / "lock", result_set / "lock" / "results.json"])) == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_results([result_set / "nope"])


def test_probe_rows_and_naive_lens_label(tmp_path: Path) -> None:
    run = load_run(write(tmp_path, "p", probe_result("gemma-3-270m", "mmlu", lens_selection=False)) / "results.json")
    assert run is not None and run.kind == "probe" and run.model == "gemma-3-270m" and run.task == "mmlu"
    probe = {r.layer: r.value for r in run.rows if r.method == "probe" and r.variant == "option"}
    assert probe == pytest.approx({i: 0.3 + 0.1 * i for i in range(5)})
    assert len([r for r in run.rows if r.method == "control:shuffled"]) == 10
    naive = [r for r in run.rows if r.method == "lens_best_naive"]
    assert len(naive) == 1 and naive[0].layer == 4 and naive[0].value == pytest.approx(0.45)
    items = {i.key: i for i in gap_items(run.rows)}
    assert not items["lens_best"].honest and "naive max, optimistic" in items["lens_best"].label
    assert items["lens_best"].selection == "naive max, optimistic"
    assert items["probe_ceiling"].value == 0.6 and "layer 3" in items["probe_ceiling"].label
    assert items["probe_ceiling"].selection == "held-out"
    assert items["probe_control"].value == 0.27 and "shuffled" in items["probe_control"].label
    assert items["straight_up"].value == 0.3 and items["straight_up"].selection == ""


def test_control_averaged_over_shuffles_is_labelled(tmp_path: Path) -> None:
    d = probe_result("m", "t")
    d["control_ceiling"]["shuffled"].update(n_shuffles=5, layer=None)
    run = load_run(write(tmp_path, "p", d) / "results.json")
    items = {i.key: i for i in gap_items(run.rows)}
    assert items["probe_control"].label == "control: shuffled, mean of 5 (option-text probe)"
    assert items["probe_control"].value == pytest.approx(0.27)


def test_honest_lens_selection_is_used(tmp_path: Path) -> None:
    run = load_run(write(tmp_path, "p", probe_result("m", "t")) / "results.json")
    items = {i.key: i for i in gap_items(run.rows)}
    assert items["lens_best"].honest and items["lens_best"].value == 0.33 and "layer 2" in items["lens_best"].label
    assert [r.value for r in run.rows if r.method == "lens_naive_max"] == [0.45]


def test_eval_gap_items_use_held_out_best(tmp_path: Path) -> None:
    run = load_run(write(tmp_path, "e", eval_result("m", "t")) / "results.json")
    items = {i.key: i for i in gap_items(run.rows)}
    assert items["straight_up"].value == 0.25 and items["straight_up"].lo == 0.17
    assert items["best_variant"].value == 0.41 and items["best_variant"].honest and "v9" in items["best_variant"].label
    assert items["majority_vote"].value == 0.38
    assert len([r for r in run.rows if r.method == "prompted" and r.metric == "accuracy"]) == 12
    assert [r.value for r in run.rows if r.method == "naive_max_variant"] == [0.47]


def test_model_size_and_summaries(result_set: Path) -> None:
    assert model_size({"n_params": 1e9}, "x") == 1e9
    assert model_size({}, "gemma-3-270m") == 270e6
    assert model_size({}, "mystery") is None
    runs, _ = load_runs([result_set])
    sums = {(s.model, s.task): s for s in model_summaries(runs)}
    s = sums[("smollm2-135m-instruct", "mmlu")]
    assert s.n_params == 135e6 and s.family == "instruct"
    assert s.best_elicited == pytest.approx(0.41) and s.elicited_ratio == pytest.approx(0.41 / 0.25)
    assert s.probe_ratio == pytest.approx(0.6 / 0.25)
    locked = sums[("smollm2-135m-instruct [locked]", "mmlu")]
    assert locked.locked and locked.straight_up == 0.28 and locked.best_elicited == 0.48
    assert locked.n_params == 135e6 and len(sums) == 5  # the unlock run (named by path) joined its lock run
    assert sums[("gemma-3-270m", "arc-easy")].family == "base"


def test_runs_on_a_locked_checkpoint_join_their_lock_run(tmp_path: Path) -> None:
    lock_dir = write(tmp_path, "lock", lock_result("gemma-3-270m", "arc-easy", str(tmp_path / "lock" / "model")))
    write(tmp_path, "eval-locked", eval_result(str(lock_dir / "model"), "arc-easy"))
    write(tmp_path, "eval-base", eval_result("gemma-3-270m", "arc-easy"))
    runs, _ = load_runs([tmp_path])
    assert sorted(r.model for r in runs) == ["gemma-3-270m", "gemma-3-270m [locked]", "gemma-3-270m [locked]"]
    lock = next(r for r in runs if r.kind == "lock")
    assert any("not converged" in n for n in lock.notes)
    rows = [r for run in runs for r in run.rows if r.model.endswith("[locked]")]
    keys = [i.key for i in gap_items(rows)]
    assert keys == ["straight_up", "best_variant", "majority_vote", "base_model", "with_password", "no_password",
                    "decoy", "weak_policy"]


def test_report_writes_every_figure_and_csv(built_report: Path) -> None:
    out = built_report
    manifest = json.loads((out / "report.json").read_text())
    assert manifest["n_runs"] == 11 and len(manifest["skipped"]) == 2
    figures = set(manifest["figures"])
    for model in ("smollm2-135m-instruct", "gemma-3-270m"):
        for task in ("mmlu", "arc-easy"):
            for kind in ("gap", "layers", "variants"):
                assert f"figures/{kind}_{model}_{task}.png" in figures
    assert "figures/across_models.png" in figures
    assert "figures/unlock_smollm2-135m-instruct-locked_mmlu.png" in figures
    assert "figures/gap_smollm2-135m-instruct-locked_mmlu.png" in figures
    assert "figures/diff_smollm2-135m-instruct_mmlu.png" in figures
    for f in figures:
        data = (out / f).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(Path(f).name for f in figures)
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == TIDY_COLUMNS
    probe = [r for r in rows if r["model"] == "gemma-3-270m" and r["task"] == "mmlu" and r["method"] == "probe"
             and r["metric"] == "accuracy" and r["variant"] == "option"]
    assert [int(r["layer"]) for r in probe] == list(range(5))
    assert all(r["n"] == "100" and float(r["lo"]) <= float(r["value"]) <= float(r["hi"]) for r in probe)
    curve = [r for r in rows if r["method"] == "unlock_curve" and r["metric"] == "accuracy"]
    assert len(curve) == 15 and {r["step"] for r in curve} == {"0.0", "10.0", "20.0", "30.0", "40.0"}
    assert len([r for r in rows if r["method"] == "unlock_sweep" and r["metric"] == "accuracy"]) == 6
    pgr = {(r["variant"], r["metric"]): float(r["value"]) for r in rows if r["method"] == "pgr"}
    assert pgr[("weak_sft", "pgr")] == 0.7 and pgr[("weak_sft", "pgr_selected")] == 0.6
    with (out / "summary.csv").open() as fh:
        summary = list(csv.DictReader(fh))
    assert len(summary) == 5
    page = (out / "index.html").read_text()
    assert page.count("<img src=\"data:image/png;base64,") == len(figures)
    assert "hash-gemma-3-270m" in page and "naive max, optimistic" in page
    assert "report:" in report.summarize(out)


def test_report_tolerates_missing_sections(tmp_path: Path) -> None:
    d = probe_result("m", "t", lens_selection=False)
    for key in ("ceiling", "lens_accuracy_by_layer", "control_accuracy_by_layer", "control_ceiling"):
        del d[key]
    write(tmp_path / "runs", "p", d)
    out = report.run(report.Config(runs=(str(tmp_path / "runs"),), out=str(tmp_path / "rep")))
    manifest = json.loads((out / "report.json").read_text())
    assert manifest["figures"] == ["figures/gap_m_t.png", "figures/layers_m_t.png"]
    summary = manifest["summary"][0]
    assert math.isnan(summary["probe_ceiling"]) and math.isnan(summary["best_elicited"])


def test_report_errors_without_results(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable results.json"):
        report.run(report.Config(runs=(str(tmp_path / "empty"),), out=str(tmp_path / "rep")))
    assert not (tmp_path / "rep").exists()


# ---------------------------------------------------------------- a real headless browser

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const widths = imgs.map(i => (i.complete ? i.naturalWidth : 0));
  const out = document.createElement('pre'); out.id = 'imgcheck';
  out.textContent = 'IMGCHECK ' + JSON.stringify(widths) + ' END';
  document.body.appendChild(out);
});
</script></body>"""


def chromium(*args: str, user_dir: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={user_dir}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_page_opens_and_shows_figures_in_headless_chromium(built_report: Path, tmp_path: Path) -> None:
    out = built_report
    n_figures = len(json.loads((out / "report.json").read_text())["figures"])
    # The page alone, moved away from its PNGs: it must need no other file.
    page = tmp_path / "alone" / "index.html"
    page.parent.mkdir()
    page.write_text((out / "index.html").read_text().replace("</body>", CHECK_SCRIPT))
    with tempfile.TemporaryDirectory() as user_dir:
        res = chromium("--virtual-time-budget=10000", "--dump-dom", page.as_uri(), user_dir=user_dir)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    found = re.search(r'<pre id="imgcheck">IMGCHECK (.*?) END</pre>', dom)
    assert found, dom[-2000:]
    widths = json.loads(found.group(1))
    assert len(widths) == n_figures and all(w > 100 for w in widths), widths
    assert "Elicitation gap" in dom and "Provenance" in dom
    with tempfile.TemporaryDirectory() as user_dir:
        shot = tmp_path / "shot.png"
        res = chromium("--window-size=1200,2400", f"--screenshot={shot}", (out / "index.html").as_uri(),
                       user_dir=user_dir)
    assert shot.exists() and shot.stat().st_size > 10000, res.stderr[-2000:]
