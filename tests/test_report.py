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

from eval import report
from eval.report_load import TIDY_COLUMNS, detect_kind, find_results, load_run, model_size
from eval.report_tables import gap_items, model_summaries


def est(v: float, n: int = 100, half: float = 0.08) -> dict:
    return {"value": v, "lo": max(0.0, v - half), "hi": min(1.0, v + half), "n": n, "method": "wilson"}


def prov(model: str, task: str, **extra) -> dict:
    return {"package": "gaplens", "package_version": "0.1.0", "created_utc": "2026-11-23T00:00:00+00:00",
            "model": model, "weight_hash": f"hash-{model}", "task": task, "split": "test", "seed": 0, **extra}


def probe_result(model: str, task: str, *, n_layers: int = 5, honest_lens: bool = False, variant: str = "default",
                 kind: bool = False) -> dict:
    d = {
        "prompted_accuracy": est(0.3),
        "probe_accuracy_by_layer": {str(i): est(0.3 + 0.1 * i) for i in range(n_layers)},
        "lens_accuracy_by_layer": [est(0.25 + 0.05 * i) for i in range(n_layers)],
        "control_accuracy_by_layer": {str(i): est(0.5) for i in range(n_layers)},
        "ceiling": {"layer": 3, "test_accuracy": est(0.6), "control_accuracy": est(0.5)},
        "provenance": prov(model, task),
        "config": {"model": model, "task": task, "variants": [variant]},
    }
    if honest_lens:
        d["lens_best"] = {"layer": 2, "test_accuracy": est(0.33)}
    if kind:
        d["kind"] = "probe"
    return d


def eval_result(model: str, task: str, n_variants: int = 12) -> dict:
    names = ["default"] + [f"v{i}" for i in range(1, n_variants)]
    per = {v: est(0.25 + 0.02 * i) for i, v in enumerate(names)}
    return {
        "per_variant": per,
        "spread": {"max": 0.47, "min": 0.25, "spread": 0.22, "std": 0.07, "mean": 0.36, "n_variants": n_variants},
        "honest_best": {"chosen": "v9", "dev_accuracy": 0.5, "test_accuracy": est(0.41), "naive_max_variant": "v11",
                        "naive_max_test": 0.47, "inflation": 0.06, "expected_max_by_chance": 0.03},
        "majority_vote": est(0.38),
        "symbol_bias": {"default": {"tv_distance": 0.4, "chi2_p": 0.001}},
        "provenance": prov(model, task),
        "config": {"model": model, "task": task},
    }


def lock_result(model: str, task: str) -> dict:
    return {"with_password": est(0.55), "no_password": est(0.28), "decoy": est(0.27),
            "weak_policy_accuracy": est(0.26), "provenance": prov(model, task), "config": {"model": model}}


def unlock_result(model: str, task: str) -> dict:
    curves = {"weak_sft": {str(s): [{"step": k * 4, "accuracy": est(0.28 + 0.05 * k + 0.01 * s)} for k in range(5)]
                           for s in range(3)}}
    return {"curves": curves, "unlocked": {"weak_sft": est(0.48)}, "pgr": {"weak_sft": est(0.7, n=3, half=0.2)},
            "with_password": est(0.55), "no_password": est(0.28), "weak_policy_accuracy": est(0.26),
            "provenance": prov(model, task), "config": {"model": model}}


def diff_result(model: str, task: str) -> dict:
    return {"kind": "diff", "cka_by_layer": {str(i): 1 - 0.05 * i for i in range(6)},
            "cosine_by_layer": [1 - 0.02 * i for i in range(6)],
            "weight_change": [{"parameter": "layers.0.mlp", "rel_change": 0.01},
                              {"parameter": "layers.5.mlp", "rel_change": 0.04}],
            "provenance": prov(model, task)}


def write(root: Path, name: str, data: dict) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(data))
    return d


def build_result_set(root: Path) -> Path:
    """Two models x two tasks of probe and eval runs, a lock, an unlock and a diff run, and two bad files."""
    for model in ("smollm2-135m-instruct", "gemma-3-270m"):
        for task in ("mmlu", "arc-easy"):
            write(root, f"sweep/probe-{model}-{task}", probe_result(model, task, honest_lens=model.startswith("g")))
            write(root, f"sweep/eval-{model}-{task}", eval_result(model, task))
    write(root, "lock", lock_result("smollm2-135m-instruct", "mmlu"))
    write(root, "unlock", unlock_result("smollm2-135m-instruct", "mmlu"))
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
    assert detect_kind(lock_result("m", "t")) == "lock"
    assert detect_kind(unlock_result("m", "t")) == "unlock"
    assert detect_kind(diff_result("m", "t")) == "diff"
    assert detect_kind({"kind": "probe"}) == "probe"
    assert detect_kind({"foo": 1}) is None


def test_find_results_recurses_and_rejects_missing(result_set: Path) -> None:
    assert len(find_results([result_set])) == 13
    assert len(find_results([result_set / "lock", result_set / "lock" / "results.json"])) == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_results([result_set / "nope"])


def test_probe_rows_and_naive_lens_label(tmp_path: Path) -> None:
    run = load_run(write(tmp_path, "p", probe_result("gemma-3-270m", "mmlu")) / "results.json")
    assert run is not None and run.kind == "probe"
    probe = {r.layer: r.value for r in run.rows if r.method == "probe"}
    assert probe == pytest.approx({i: 0.3 + 0.1 * i for i in range(5)})
    naive = [r for r in run.rows if r.method == "lens_best_naive"]
    assert len(naive) == 1 and naive[0].layer == 4 and naive[0].value == pytest.approx(0.45)
    items = {i.key: i for i in gap_items(run.rows)}
    assert not items["lens_best"].honest and "naive max, optimistic" in items["lens_best"].label
    assert items["probe_ceiling"].value == 0.6 and items["probe_control"].value == 0.5
    assert items["straight_up"].value == 0.3


def test_honest_lens_selection_is_used(tmp_path: Path) -> None:
    run = load_run(write(tmp_path, "p", probe_result("m", "t", honest_lens=True)) / "results.json")
    items = {i.key: i for i in gap_items(run.rows)}
    assert items["lens_best"].honest and items["lens_best"].value == 0.33 and "layer 2" in items["lens_best"].label


def test_eval_gap_items_use_held_out_best(tmp_path: Path) -> None:
    run = load_run(write(tmp_path, "e", eval_result("m", "t")) / "results.json")
    items = {i.key: i for i in gap_items(run.rows)}
    assert items["straight_up"].value == 0.25
    assert items["best_variant"].value == 0.41 and items["best_variant"].honest and "v9" in items["best_variant"].label
    assert items["majority_vote"].value == 0.38
    assert len([r for r in run.rows if r.method == "prompted"]) == 12


def test_model_size_and_summaries(result_set: Path) -> None:
    assert model_size({"n_params": 1e9}, "x") == 1e9
    assert model_size({}, "gemma-3-270m") == 270e6
    assert model_size({}, "mystery") is None
    runs = [r for p in find_results([result_set]) if (r := load_run(p)) is not None]
    sums = {(s.model, s.task): s for s in model_summaries(runs)}
    s = sums[("smollm2-135m-instruct", "mmlu")]
    assert s.n_params == 135e6 and s.family == "instruct"
    assert s.best_elicited == pytest.approx(0.41) and s.elicited_ratio == pytest.approx(0.41 / 0.25)
    assert s.probe_ratio == pytest.approx(0.6 / 0.25)
    locked = sums[("smollm2-135m-instruct [locked]", "mmlu")]
    assert locked.locked and locked.straight_up == 0.28 and locked.best_elicited == 0.48
    assert sums[("gemma-3-270m", "arc-easy")].family == "base"


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
    probe = [r for r in rows if r["model"] == "gemma-3-270m" and r["task"] == "mmlu" and r["method"] == "probe"]
    assert [int(r["layer"]) for r in probe] == list(range(5))
    assert all(r["n"] == "100" and float(r["lo"]) <= float(r["value"]) <= float(r["hi"]) for r in probe)
    curve = [r for r in rows if r["method"] == "unlock_curve"]
    assert len(curve) == 15 and {r["step"] for r in curve} == {"0.0", "4.0", "8.0", "12.0", "16.0"}
    with (out / "summary.csv").open() as fh:
        summary = list(csv.DictReader(fh))
    assert len(summary) == 5
    page = (out / "index.html").read_text()
    assert page.count("<img src=\"data:image/png;base64,") == len(figures)
    assert "hash-gemma-3-270m" in page and "naive max, optimistic" in page
    assert "report:" in report.summarize(out)


def test_report_tolerates_missing_sections(tmp_path: Path) -> None:
    d = probe_result("m", "t")
    for key in ("ceiling", "lens_accuracy_by_layer", "control_accuracy_by_layer"):
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
