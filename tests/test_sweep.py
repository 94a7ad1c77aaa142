"""Tests of the sweep: planning cells from a config, skip/resume with a stub runner, failures, the subprocess runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from commands import report, sweep
from core.schemas import ReportManifest, SweepRecord

FLAGS = {
    "eval": {"--model", "--task", "--variants", "--n", "--data-dir", "--seed", "--batch-size", "--resid", "--out"},
    "probe": {"--model", "--task", "--n", "--data-dir", "--seed", "--batch-size", "--control", "--layers", "--out"},
}


def flags_of(method: str) -> set[str]:
    return FLAGS[method]


def write_config(tmp_path: Path, **over) -> Path:
    spec = {"out": str(tmp_path / "sweep"), "models": ["tiny-llama", "tiny-llama-4l"], "tasks": ["capitals"],
            "variants": "default,option", "methods": ["eval", "probe"], "n": 8, "seed": 0,
            "probe": {"control": "shuffled"}, **over}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    return path


class StubRunner:
    """Records calls; copies a real run's results.json (and samples.parquet) of the cell's command into the cell,
    like a finished stage, or fails / interrupts on chosen cells."""

    def __init__(self, fail: set[str] = frozenset(), interrupt_at: int | None = None,
                 finished: dict[str, Path] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail, self.interrupt_at, self.finished = fail, interrupt_at, finished or {}

    def __call__(self, argv: list[str], log_path: Path, env: dict[str, str], on_output) -> int:
        self.calls.append(argv)
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        log_path.write_text("working\r50%\r100%\n")
        on_output("capture 100%|####| 8/8\n")
        out = Path(argv[argv.index("--out") + 1])
        model = argv[argv.index("--model") + 1]
        if model in self.fail:
            return 1
        if argv[0] in self.finished:
            for name in ("results.json", "samples.parquet"):
                shutil.copy(self.finished[argv[0]] / name, out / name)
        else:
            (out / "results.json").write_text("{}")
        return 0


def run(path: Path, runner: StubRunner, **kw) -> Path:
    return sweep.run(sweep.Config(config=str(path), **kw), runner=runner, flags_of=flags_of)


def test_plan_cells_axes_and_flags(tmp_path: Path) -> None:
    path = write_config(tmp_path, variants=["default,option", "numbers"])
    cells = sweep.plan(sweep.load_spec(path), flags_of, path)
    evals = [c for c in cells if c.method == "eval"]
    probes = [c for c in cells if c.method == "probe"]
    assert len(evals) == 4 and len(probes) == 2  # probe has no --variants: one cell per model and task
    first = evals[0]
    assert first.args == ("--model", "tiny-llama", "--task", "capitals", "--variants", "default,option",
                          "--n", "8", "--seed", "0")
    assert probes[0].args[-6:] == ("--control", "shuffled", "--n", "8", "--seed", "0")
    assert first.argv[-2:] == ["--out", str(first.dir)]
    assert first.dir.parent == tmp_path / "sweep" and first.dir.name.startswith("eval-tiny-llama-capitals-default")
    assert len({c.dir for c in cells}) == len(cells)
    again = sweep.plan(sweep.load_spec(path), flags_of, path)
    assert [c.dir for c in again] == [c.dir for c in cells]  # stable names
    changed = sweep.plan(sweep.load_spec(write_config(tmp_path, n=16)), flags_of, path)
    assert not {c.dir for c in changed} & {c.dir for c in cells}


def test_per_method_variants_and_booleans(tmp_path: Path) -> None:
    path = write_config(tmp_path, eval={"variants": "all", "resid": True}, models=["tiny-llama"])
    cells = sweep.plan(sweep.load_spec(path), flags_of, path)
    ev = next(c for c in cells if c.method == "eval")
    assert "all" in ev.args and "--resid" in ev.args


@pytest.mark.parametrize(("over", "match"), [
    ({"methods": ["eval", "bogus"]}, "unknown method 'bogus'"),
    ({"models": []}, "'models' must be a non-empty list"),
    ({"model": "x"}, "use 'models'"),
    ({"eval": {"nonsense": 1}}, "eval command has no flag --nonsense"),
    ({"probe": {"variants": "default"}}, "probe command has no flag --variants"),
    ({"frobnicate": 3}, "--frobnicate is accepted by none"),
    ({"eval": {"out": "x"}}, "cannot be set per method"),
    ({"n": {"a": 1}}, "must be a string, number"),
])
def test_bad_configs_fail_before_anything_is_written(tmp_path: Path, over: dict, match: str) -> None:
    path = write_config(tmp_path, **over)
    runner = StubRunner()
    with pytest.raises(ValueError, match=match):
        run(path, runner)
    assert not runner.calls and not (tmp_path / "sweep").exists()


def test_environment_variables_in_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAPLENS_DATA_DIR", str(tmp_path / "data"))
    path = write_config(tmp_path, data_dir="$GAPLENS_DATA_DIR", probe={"control": "shuffled", "data_dir": "${HOME_X}"})
    with pytest.raises(ValueError, match=r"'probe.data_dir' names the environment variable \$HOME_X"):
        sweep.load_spec(path)
    path = write_config(tmp_path, data_dir="$GAPLENS_DATA_DIR")
    cells = sweep.plan(sweep.load_spec(path), flags_of, path)
    assert all(c.args[c.args.index("--data-dir") + 1] == str(tmp_path / "data") for c in cells)


def test_unreadable_config(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        sweep.load_spec(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        sweep.load_spec(tmp_path / "missing.json")


def test_skip_finished_cells_and_retry_failed(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    first = StubRunner(fail={"tiny-llama-4l"})
    with pytest.raises(sweep.SweepFailed, match="2 of 4 cells failed") as err:
        run(path, first)
    assert len(first.calls) == 4 and "cell.log" in str(err.value)
    rec = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert sorted(c["status"] for c in rec["cells"].values()) == ["done", "done", "failed", "failed"]
    failed_dir = tmp_path / "sweep" / next(k for k, c in rec["cells"].items() if c["status"] == "failed")
    meta = json.loads((failed_dir / "cell.json").read_text())
    assert meta["status"] == "failed" and meta["returncode"] == 1 and meta["args"][1] == "tiny-llama-4l"
    assert (failed_dir / "cell.log").read_text().startswith("working")

    second = StubRunner()
    out = run(path, second)
    assert [c[c.index("--model") + 1] for c in second.calls] == ["tiny-llama-4l", "tiny-llama-4l"]
    third = StubRunner()
    run(path, third)
    assert third.calls == []
    text = sweep.summarize(out)
    assert "4 cells (4 skipped (done))" in text and f"python cli.py report {out}" in text


def test_resume_after_interruption(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    first = StubRunner(interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        run(path, first)
    rec = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [c["status"] for c in rec["cells"].values()] == ["done", "done", "interrupted", "pending"]
    second = StubRunner()
    run(path, second)
    assert second.calls == first.calls[2:] + [second.calls[-1]] and len(second.calls) == 2


def test_changed_args_are_not_skipped(tmp_path: Path) -> None:
    path = write_config(tmp_path, models=["tiny-llama"], methods=["eval"])
    run(path, StubRunner())
    cell = sweep.plan(sweep.load_spec(path), flags_of, path)[0]
    meta = json.loads((cell.dir / "cell.json").read_text())
    meta["args"] = meta["args"][:-2]  # as if written by another config
    (cell.dir / "cell.json").write_text(json.dumps(meta))
    again = StubRunner()
    run(path, again)
    assert len(again.calls) == 1


def test_dry_run_plans_without_running(tmp_path: Path) -> None:
    runner = StubRunner()
    out = run(write_config(tmp_path), runner, dry_run=True)
    assert runner.calls == [] and "[dry run]" in sweep.summarize(out)
    assert all(c["status"] == "pending" for c in json.loads((out / "sweep.json").read_text())["cells"].values())


def test_report_reads_a_sweep_directory(tmp_path: Path, contract_runs) -> None:
    finished = {"eval": contract_runs["eval"], "probe": contract_runs["probe"]}
    out = run(write_config(tmp_path), StubRunner(finished=finished))
    assert {c.status for c in SweepRecord.read(out / "sweep.json").cells.values()} == {"done"}
    rep = report.run(report.Config(runs=(str(out),), out=str(tmp_path / "rep")))
    manifest = ReportManifest.read(rep / "report.json")
    assert manifest.n_runs == 4 and manifest.kinds == ["eval", "probe"]
    assert f"python cli.py sweep {tmp_path / 'sweep.json'}" in (rep / "index.html").read_text()


def test_subprocess_runner_streams_output_to_the_log(tmp_path: Path) -> None:
    seen: list[str] = []
    log = tmp_path / "cell.log"
    rc = sweep.subprocess_runner(["variants"], log, {"PATH": "/usr/bin:/bin"}, seen.append)
    assert rc == 0 and "shuffle:0" in log.read_text() and "shuffle:0" in "".join(seen)
    assert log.read_text().lstrip().startswith("$ ")
    rc = sweep.subprocess_runner(["no-such-command"], log, {"PATH": "/usr/bin:/bin"}, seen.append)
    assert rc == 2 and "invalid choice" in log.read_text()


@pytest.mark.slow
def test_real_sweep_with_a_tiny_model(tmp_path: Path) -> None:
    """Two real cells in subprocesses (tiny random-init model), one failing cell, then the report."""
    path = write_config(tmp_path, models=["tiny-llama"], tasks=["capitals", "no-such-task"], n=8)
    with pytest.raises(sweep.SweepFailed, match="2 of 4 cells failed"):
        sweep.run(sweep.Config(config=str(path)))
    out = tmp_path / "sweep"
    rep = report.run(report.Config(runs=(str(out),), out=str(tmp_path / "rep")))
    manifest = ReportManifest.read(rep / "report.json")
    assert manifest.kinds == ["eval", "probe"] and len(manifest.figures) >= 3
