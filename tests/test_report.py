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
from core.schemas import EvalResult, ProbeResult, ReportManifest, SchemaError, UnlockResult
from report.gap import Settings
from report.load import find_results, load_run, load_runs
from report.outcomes import read_outcomes
from report.rows import TIDY_COLUMNS
from report.tables import SUMMARY_COLUMNS


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
    return report.run(report.Config(runs=(str(contract_runs["root"]),), out=str(out), n_boot=200, n_perm=50))


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
    surface = [r for r in run.rows if r.method == "control:surface"]
    assert res.surface is not None and [r.value for r in surface] == [res.surface.test_accuracy.value]
    margin = next(r for r in run.rows if r.method == "surface_margin" and r.metric == "difference")
    assert (margin.value, margin.lo, margin.hi) == (res.surface.margin.value, res.surface.margin.lo,
                                                    res.surface.margin.hi)
    flagged = {(r.variant, r.layer) for r in run.rows if r.method == "probe_below_chance"}
    assert flagged == {("option" if t == "option" else "default", layer) for t, ls in res.below_chance.items()
                       for layer in ls}


def test_outcomes_come_from_the_samples(contract_runs) -> None:
    """Every way of answering, per question, from samples.parquet, agrees with the typed results."""
    ev = load_run(contract_runs["eval"] / "results.json")
    res = EvalResult.read(contract_runs["eval"] / "results.json")
    outs = {o.key: o for o in read_outcomes(ev)}
    assert outs["straight-up"].values.mean() == pytest.approx(res.metric("default").accuracy.value)
    assert outs["majority vote"].values.mean() == pytest.approx(res.majority_vote.accuracy.value)
    assert {k for k in outs if k.startswith("prompt:")} == {f"prompt:{m.variant}" for m in res.metrics}
    assert set(outs["straight-up"].with_role("dev")) == set(res.honest_best.dev_ids)
    pr = load_run(contract_runs["probe"] / "results.json")
    p = ProbeResult.read(contract_runs["probe"] / "results.json")
    outs = {o.key: o for o in read_outcomes(pr)}
    for target, cvs in p.probe_cv_by_layer.items():
        for layer, cv, est in zip(p.layers, cvs, p.probe_by_layer[target], strict=True):
            o = outs[f"probe:{target}:L{layer}"]
            assert o.dev_score == pytest.approx(cv) and o.values.mean() == pytest.approx(est.value)
            assert set(o.roles) == {"test"}  # probes are only scored on test questions
    assert outs["lens:L0"].on(outs["lens:L0"].with_role("test")).mean() == pytest.approx(p.lens_by_layer[0].value)
    shuffled = outs["control:shuffled"]
    assert shuffled.n_runs == 2 and shuffled.values.mean() == pytest.approx(
        p.controls["shuffled"].ceiling.test_accuracy.value)
    assert outs["control:surface"].values.mean() == pytest.approx(p.surface.test_accuracy.value)


def test_paired_analysis_of_real_runs(contract_runs) -> None:
    runs = load_runs([contract_runs["root"]])
    found = report.analyses(runs, Settings(n_boot=200, n_perm=50))
    tiny = found[("tiny-llama", "capitals")]
    p = ProbeResult.read(contract_runs["probe"] / "results.json")
    assert set(tiny.families) == {"prompt variants", "majority vote", "logit lens", "probe"}
    assert tiny.straight.run.endswith("eval") and tiny.chance == p.chance
    assert tiny.n_test == p.split.n_test and tiny.n_dev == p.split.n_train  # eval dev = probe train here
    assert tiny.straight_test.value == pytest.approx(p.prompted["letter"].test.value)
    probe = tiny.probe
    target, layer = probe.chosen.key.split(":")[1], probe.chosen.layer
    assert probe.gap.elicited.value == pytest.approx(p.probe_by_layer[target][p.layers.index(layer)].value)
    assert probe.selected.dev_accuracy[probe.chosen.key] == max(
        cv for cvs in p.probe_cv_by_layer.values() for cv in cvs)
    assert {c.control.key for c in tiny.controls} == {"control:shuffled", "control:surface"}
    assert not tiny.notes
    toy = found[("toy [locked]", "toy-max")]
    u = UnlockResult.read(contract_runs["unlock"] / "results.json")
    assert toy.locking is not None and set(toy.locking.recovered) == {
        "unlock:weak", *(f"unlock:noise={x}" for x in u.methods["noise"].sweep.params)}
    assert toy.locking.with_password.value == pytest.approx(u.reference.with_pw.acc)
    assert toy.kind == "base locked" and toy.n_params != tiny.n_params


def test_report_writes_every_figure_and_csv(built_report: Path) -> None:
    out = built_report
    manifest = ReportManifest.read(out / "report.json")
    assert manifest.n_runs == 6 and manifest.kinds == ["diff", "eval", "lock", "probe", "transfer", "unlock"]
    figures = set(manifest.figures)
    for stem in ("summary_forest", "gap_vs_size", "variant_effects", "layers_tiny-llama_capitals",
                 "variants_tiny-llama_capitals", "unlock_toy-locked_toy-max", "recovered_toy-locked_toy-max",
                 "diff_toy-locked_toy-max"):
        assert {f"figures/{stem}.png", f"figures/{stem}.svg"} <= figures, stem
    for f in figures:
        data = (out / f).read_bytes()
        if f.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        else:
            assert b"<svg" in data[:2000]
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
    means = [r for r in rows if r["metric"] == "accuracy_mean"]
    assert means and all(0 <= float(r["lo"]) <= float(r["hi"]) <= 1 for r in means if r["lo"])
    assert any(r["method"] == "transfer_from:default" for r in rows)
    assert any(r["method"] == "paired:probe" and r["metric"] == "difference" for r in rows)
    with (out / "summary.csv").open() as fh:
        summary = list(csv.DictReader(fh))
    assert tuple(summary[0]) == SUMMARY_COLUMNS
    assert {s["model"] for s in summary} == {"tiny-llama", "toy [locked]"}
    tiny = next(s for s in manifest.summary if s.model == "tiny-llama")
    assert tiny.gap is not None and tiny.gap.lo <= tiny.gap.value <= tiny.gap.hi and tiny.probe is not None
    assert tiny.ratio is None and "chance" in tiny.ratio_reason  # straight-up is not above chance here
    page = (out / "index.html").read_text()
    assert page.count("<img src=\"data:image/png;base64,") == len([f for f in figures if f.endswith(".png")])
    assert page.index("at a glance") < page.index("Findings") < page.index("<details")
    assert "instruct (chat-template)" in page and "fine-tuned (lock-record)" in page
    assert "What each interval is over" in page and "crossed bootstrap over runs" in page
    text = report.summarize(out)
    assert "tiny-llama" in text and "gap" in text and "paired bootstrap" in text


def test_a_run_without_samples_is_noted(contract_runs, tmp_path: Path) -> None:
    copy_run(contract_runs["eval"], tmp_path / "runs" / "eval")  # results.json only
    out = report.run(report.Config(runs=(str(tmp_path / "runs"),), out=str(tmp_path / "rep"), n_boot=100,
                                   n_perm=10))
    page = (out / "index.html").read_text()
    assert "no samples.parquet" in page
    assert ReportManifest.read(out / "report.json").summary == []


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
    figures = json.loads((out / "report.json").read_text())["figures"]
    n_figures = sum(f.endswith(".png") for f in figures)  # the page shows the PNGs; each also has its SVG
    assert n_figures and sorted(f[:-4] for f in figures if f.endswith(".svg")) == sorted(
        f[:-4] for f in figures if f.endswith(".png"))
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
    assert "elicitation gap at a glance" in dom and "Provenance" in dom
    with tempfile.TemporaryDirectory() as user_dir:
        shot = tmp_path / "shot.png"
        res = chromium("--window-size=1200,2400", f"--screenshot={shot}", (out / "index.html").as_uri(),
                       user_dir=user_dir)
    assert shot.exists() and shot.stat().st_size > 10000, res.stderr[-2000:]


def test_figures_are_written_as_png_and_svg_whatever_the_name(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from report.figures import save, slug

    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    stem = tmp_path / f"layers_{slug('Qwen2.5-7B', 'mmlu')}"
    png, svg = save(fig, stem)
    assert (png.name, svg.name) == ("layers_Qwen2.5-7B_mmlu.png", "layers_Qwen2.5-7B_mmlu.svg")
    assert png.read_bytes()[:4] == b"\x89PNG" and b"<svg" in svg.read_bytes()[:2000]
