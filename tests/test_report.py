"""Tests of the report on every command's real output (`contract_runs` in conftest): runs read as typed results,
tables, CSVs, figures, errors naming malformed files, notes for absent values, and a page that opens in a browser."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from commands import report
from core.schemas import EvalResult, LockResult, ProbeResult, ReportManifest, SchemaError
from report.load import find_results, load_run, load_runs
from report.rows import TIDY_COLUMNS
from report.tables import gap_items, model_summaries


def copy_run(src: Path, dst: Path, edit=None) -> Path:
    """A copy of a run's results.json under `dst`, changed by `edit(doc)` when given."""
    doc = json.loads((src / "results.json").read_text())
    if edit is not None:
        edit(doc)
    dst.mkdir(parents=True)
    (dst / "results.json").write_text(json.dumps(doc))
    return dst


@pytest.fixture(scope="module")
def built_report(contract_runs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of every command's real output, built once for the tests that only read it."""
    out = tmp_path_factory.mktemp("report") / "rep"
    return report.run(report.Config(runs=(str(contract_runs["root"]),), out=str(out)))


def test_find_results_recurses_and_rejects_missing(contract_runs) -> None:
    root = contract_runs["root"]
    assert len(find_results([root])) == 6
    assert len(find_results([root / "lock", root / "lock" / "results.json"])) == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_results([root / "nope"])


def test_every_command_is_read_and_grouped(contract_runs) -> None:
    runs = load_runs([contract_runs["root"]])
    assert sorted(r.kind for r in runs) == ["diff", "eval", "lock", "probe", "transfer", "unlock"]
    assert all(r.rows for r in runs)
    labels = {r.kind: r.model for r in runs}
    assert labels["probe"] == labels["eval"] == labels["transfer"] == "tiny-llama"
    # the lock, the unlock run of its checkpoint and the diff whose reference it is: one group, by identity
    assert labels["lock"] == labels["unlock"] == labels["diff"] == "toy [locked]"


def test_probe_rows_come_from_the_typed_results(contract_runs) -> None:
    run = load_run(contract_runs["probe"] / "results.json")
    res = ProbeResult.read(contract_runs["probe"] / "results.json")
    assert run.kind == "probe" and run.model == "tiny-llama" and run.task == "capitals"
    probe = {r.layer: r.value for r in run.rows if r.method == "probe" and r.variant == "option"
             and r.metric == "accuracy"}
    assert probe == pytest.approx({layer: e.value for layer, e in zip(res.layers, res.probe_by_layer["option"],
                                                                        strict=True)})
    assert len([r for r in run.rows if r.method == "control:shuffled"]) == 2 * len(res.layers)
    items = {i.key: i for i in gap_items(run.rows)}
    c = res.ceiling
    assert items["probe_ceiling"].value == c.test_accuracy.value and f"layer {c.layer}" in items["probe_ceiling"].label
    assert items["probe_ceiling"].selection == "held-out"
    assert items["lens_best"].honest and f"layer {res.lens_best.layer}" in items["lens_best"].label
    assert items["probe_control"].label.startswith("control: shuffled, mean of 2")
    assert items["straight_up"].value == res.prompted["letter"].test.value and items["straight_up"].selection == ""


def test_eval_gap_items_use_held_out_best(contract_runs) -> None:
    run = load_run(contract_runs["eval"] / "results.json")
    res = EvalResult.read(contract_runs["eval"] / "results.json")
    items = {i.key: i for i in gap_items(run.rows)}
    assert items["straight_up"].value == res.metric("default").accuracy.value
    assert items["straight_up"].lo == res.metric("default").accuracy.lo
    assert items["best_variant"].value == res.honest_best.test_accuracy.value and items["best_variant"].honest
    assert res.honest_best.chosen in items["best_variant"].label
    assert items["majority_vote"].value == res.majority_vote.accuracy.value
    assert len([r for r in run.rows if r.method == "prompted" and r.metric == "accuracy"]) == len(res.metrics)


def test_model_size_and_family_come_from_the_model_identity(contract_runs) -> None:
    runs = load_runs([contract_runs["root"]])
    sums = {(s.model, s.task): s for s in model_summaries(runs)}
    tiny = sums[("tiny-llama", "capitals")]
    probe = ProbeResult.read(contract_runs["probe"] / "results.json")
    assert tiny.n_params == probe.header.model.n_params and tiny.family == "instruct"
    toy = sums[("toy [locked]", "toy-max")]
    lock = LockResult.read(contract_runs["lock"] / "results.json")
    assert toy.locked and toy.family == "base locked" and toy.n_params == lock.base_model.n_params != tiny.n_params


def test_report_writes_every_figure_and_csv(built_report: Path) -> None:
    out = built_report
    manifest = ReportManifest.read(out / "report.json")
    assert manifest.n_runs == 6 and manifest.kinds == ["diff", "eval", "lock", "probe", "transfer", "unlock"]
    figures = set(manifest.figures)
    for kind in ("gap", "layers", "variants"):
        assert f"figures/{kind}_tiny-llama_capitals.png" in figures
    for kind in ("gap", "unlock", "diff"):
        assert f"figures/{kind}_toy-locked_toy-max.png" in figures
    assert "figures/across_models.png" in figures
    for f in figures:
        data = (out / f).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(Path(f).name for f in figures)
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == TIDY_COLUMNS and len(rows) == manifest.n_rows
    probe = [r for r in rows if r["model"] == "tiny-llama" and r["method"] == "probe" and r["metric"] == "accuracy"
             and r["variant"] == "option"]
    assert [int(r["layer"]) for r in probe] == [0, 1, 2]
    assert all(r["n"] == "8" and float(r["lo"]) <= float(r["value"]) <= float(r["hi"]) for r in probe)
    curve = [r for r in rows if r["method"] == "unlock_curve" and r["metric"] == "accuracy"]
    assert len(curve) == 6 and {r["step"] for r in curve} == {"0.0", "2.0", "4.0"}
    assert len([r for r in rows if r["method"] == "unlock_sweep" and r["metric"] == "accuracy"]) == 12
    assert any(r["method"] == "transfer_from:default" for r in rows)
    with (out / "summary.csv").open() as fh:
        summary = list(csv.DictReader(fh))
    assert {s["model"] for s in summary} == {"tiny-llama", "toy [locked]"}
    page = (out / "index.html").read_text()
    assert page.count("<img src=\"data:image/png;base64,") == len(figures)
    assert "instruct (chat-template)" in page and "fine-tuned (lock-record)" in page
    assert "report:" in report.summarize(out)


def test_malformed_results_are_errors_naming_the_file(contract_runs, tmp_path: Path) -> None:
    def drop_ceiling(doc: dict) -> None:
        del doc["ceiling"]["test_accuracy"]["lo"]

    bad = copy_run(contract_runs["probe"], tmp_path / "runs" / "bad", drop_ceiling)
    with pytest.raises(SchemaError, match=rf"{bad / 'results.json'}: ceiling.test_accuracy.lo: missing field"):
        report.run(report.Config(runs=(str(tmp_path / "runs"),), out=str(tmp_path / "rep")))
    (bad / "results.json").write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        report.run(report.Config(runs=(str(bad),), out=str(tmp_path / "rep")))
    (bad / "results.json").write_text(json.dumps({"something": 1}))
    with pytest.raises(SchemaError, match="no 'schema' field"):
        report.run(report.Config(runs=(str(bad),), out=str(tmp_path / "rep")))
    (bad / "results.json").write_text(json.dumps({"schema": "gaplens.bogus/1"}))
    with pytest.raises(SchemaError, match="unknown schema 'gaplens.bogus'"):
        report.run(report.Config(runs=(str(bad),), out=str(tmp_path / "rep")))
    assert not (tmp_path / "rep" / "index.html").exists()


def test_absent_optional_values_are_noted_with_a_reason(contract_runs, tmp_path: Path) -> None:
    def single_metric(doc: dict) -> None:  # what a run with one metric writes: no max to test against chance
        doc["honest_best"]["max_excess_null"] = None

    run = load_run(copy_run(contract_runs["eval"], tmp_path / "e", single_metric) / "results.json")
    assert not [r for r in run.rows if r.metric.startswith("excess_over_mean")]
    assert any("excess_over_mean_observed" in n and "a single metric" in n for n in run.notes)
    unlock = load_run(contract_runs["unlock"] / "results.json")
    pgr = [r for r in unlock.rows if r.method == "pgr" and r.metric == "pgr"]
    assert pgr or any("no pgr for pgr (weak)" in n for n in unlock.notes)  # a PGR, or the reason there is none


def test_report_errors_without_results(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results.json under"):
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
