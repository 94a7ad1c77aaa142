"""Tests of the sweep without Ray: planning cells from a config and the command registry, flag and value checks,
references between methods, the serial executor (real subprocesses of a stand-in cli.py), skip/resume, failures,
progress. The Ray executor is tested in test_sweep_ray.py."""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import commands
from commands import report, sweep
from grid import Cell, Method, Resources, Tracker, cellrun, load_spec, plan
from grid.executors import Launch, SerialExecutor

FAKE_CLI = textwrap.dedent("""
    # A stand-in for cli.py: records its arguments, then writes a results.json, fails, or interrupts its parent.
    import json, os, signal, sys, time
    argv = sys.argv[1:]
    with open(os.environ["FAKE_CLI_CALLS"], "a") as fh:
        fh.write(json.dumps(argv) + "\\n")
    out = argv[argv.index("--out") + 1]
    model = argv[argv.index("--model") + 1] if "--model" in argv else "none"
    print("working\\r50%\\r100%")
    if model == "fail":
        print("error: this model always fails")
        sys.exit(1)
    if model == "sigint" and not os.path.exists(os.environ["FAKE_CLI_CALLS"] + ".interrupted"):
        open(os.environ["FAKE_CLI_CALLS"] + ".interrupted", "w").close()
        os.kill(os.getppid(), signal.SIGINT)  # as if Ctrl-C were pressed while this cell runs
        time.sleep(60)
    finished = json.loads(os.environ.get("FAKE_CLI_RESULTS", "{}"))
    if argv[0] in finished:  # a real run's files of the same command (what the report reads)
        import shutil
        for name in ("results.json", "samples.parquet"):
            shutil.copy(os.path.join(finished[argv[0]], name), os.path.join(out, name))
        sys.exit(0)
    doc = {"kind": argv[0], "model": model}
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(doc, fh)
""")


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cli.py replaced by FAKE_CLI for the cells (the sweep itself still reads the real registry); returns the
    file its calls are recorded in."""
    script = tmp_path / "fake_cli.py"
    script.write_text(FAKE_CLI)
    monkeypatch.setattr(sweep, "CLI", script)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_CLI_CALLS", str(calls))
    return calls


def calls_of(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def write_config(tmp_path: Path, **over) -> Path:
    spec = {"out": str(tmp_path / "sweep"), "models": ["tiny-llama", "tiny-llama-4l"], "tasks": ["capitals"],
            "variants": "default,option", "methods": ["eval", "probe"], "n": 8, "seed": 0,
            "probe": {"control": "shuffled"}, **over}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    return path


def cells_of(path: Path) -> list[Cell]:
    spec = load_spec(path, sweep.method_names())
    return plan(spec, sweep.methods(spec["methods"]), path)


def run(path: Path, **kw) -> Path:
    return sweep.run(sweep.Config(config=str(path), executor="serial", cpus=1, **kw))


def test_plan_cells_axes_and_flags(tmp_path: Path) -> None:
    path = write_config(tmp_path, variants=["default,option", "numbers"])
    cells = cells_of(path)
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
    assert [c.dir for c in cells_of(path)] == [c.dir for c in cells]  # stable names
    changed = cells_of(write_config(tmp_path, n=16))
    assert not {c.dir for c in changed} & {c.dir for c in cells}


def test_cell_names_are_those_of_earlier_sweeps(tmp_path: Path) -> None:
    """The cell hash is unchanged from the sweep before Ray, so finished cells of an old sweep are reused."""
    spec = json.loads((Path(__file__).parent.parent / "sweeps" / "tiny.json").read_text())
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({**spec, "out": str(tmp_path / "s")}))
    names = [c.name for c in cells_of(path)]
    assert names[0] == "eval-tiny-llama-capitals-2d56d24530" and names[-1] == "probe-tiny-llama-4l-arithmetic-5fb6f1b190"


def test_per_method_variants_and_booleans(tmp_path: Path) -> None:
    path = write_config(tmp_path, eval={"variants": "all", "resid": True, "cot": "off"}, models=["tiny-llama"])
    ev = next(c for c in cells_of(path) if c.method == "eval")
    assert "all" in ev.args and "--resid" in ev.args and ev.args[ev.args.index("--cot") + 1] == "off"


def test_methods_come_from_the_registry_and_config_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    names = sweep.method_names()
    assert "transfer" in names and "sweep" not in names and set(names) == set(commands.COMMANDS) - {"sweep"}
    tr = sweep.method("transfer")
    assert {"store", "train_variant", "test_variants", "seed"} <= tr.fields and "out" not in tr.fields
    assert sweep.method("eval").threads_auto and not sweep.method("lock").threads_auto
    assert sweep.method("report").positional == {"runs"}
    monkeypatch.setitem(commands.COMMANDS, "toy-new", commands.Command("toy-new", __name__, "a command added later"))
    new = sweep.method("toy-new")  # this module's Config below
    assert new.fields == {"model", "task", "depth", "fast"} and new.resources == sweep.FALLBACK


@dataclass(frozen=True)
class Config:
    """A command registered by a test (see above)."""

    model: str = field(default="m", metadata={"help": "model"})
    task: str = field(default="t", metadata={"help": "task"})
    depth: int = field(default=1, metadata={"help": "depth"})
    fast: bool = field(default=False, metadata={"help": "fast"})
    out: str | None = field(default=None, metadata={"help": "out"})


@pytest.mark.parametrize(("over", "match"), [
    ({"methods": ["eval", "bogus"]}, "unknown method 'bogus'"),
    ({"methods": ["eval", "sweep"]}, "unknown method 'sweep'"),
    ({"models": []}, "'models' must be a non-empty list"),
    ({"model": "x"}, "use 'models'"),
    ({"eval": {"nonsense": 1}}, r"cell eval-tiny-llama-capitals-\w+: the eval command has no flag --nonsense"),
    ({"eval": {"variant": "default"}}, "did you mean --variants"),
    ({"probe": {"variants": "default"}}, "the probe command has no flag --variants"),
    ({"frobnicate": 3}, "--frobnicate is accepted by none"),
    ({"eval": {"out": "x"}}, "cannot be set per method"),
    ({"n": {"a": 1}}, "must be a string, number"),
    ({"probe": {"control": "bogus"}}, r"cell probe-tiny-llama-capitals-\w+: --control must be one of"),
    ({"n": "many"}, r"cell eval-.*invalid int value: 'many'"),
    ({"resources": {"cpu": 1}}, "'resources.cpu' is not a resource"),
    ({"eval": {"resources": {"gpus": "some"}}}, r"'eval.resources.gpus' must be a number >= 0 or \"auto\""),
    ({"methods": ["transfer", "eval"], "transfer": {"store": "@eval"}}, "must name a method listed before transfer"),
])
def test_bad_configs_fail_before_anything_is_written(tmp_path: Path, fake_cli: Path, over: dict, match: str) -> None:
    path = write_config(tmp_path, **over)
    with pytest.raises(ValueError, match=match):
        run(path)
    assert not calls_of(fake_cli) and not (tmp_path / "sweep").exists()


def test_environment_variables_in_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAPLENS_DATA_DIR", str(tmp_path / "data"))
    path = write_config(tmp_path, data_dir="$GAPLENS_DATA_DIR", probe={"control": "shuffled", "data_dir": "${HOME_X}"})
    with pytest.raises(ValueError, match=r"'probe.data_dir' names the environment variable \$HOME_X"):
        load_spec(path, sweep.method_names())
    path = write_config(tmp_path, data_dir="$GAPLENS_DATA_DIR", out="$GAPLENS_DATA_DIR/sweep")
    cells = cells_of(path)
    assert all(c.args[c.args.index("--data-dir") + 1] == str(tmp_path / "data") for c in cells)
    assert cells[0].dir.parent == tmp_path / "data" / "sweep"


def test_unreadable_config(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_spec(tmp_path / "bad.json", ["eval"])
    with pytest.raises(FileNotFoundError):
        load_spec(tmp_path / "missing.json", ["eval"])


def test_references_make_one_dependent_cell_per_referenced_cell(tmp_path: Path) -> None:
    path = write_config(tmp_path, methods=["eval", "transfer"], variants=["default,option", "numbers,option"],
                        eval={"resid": True}, transfer={"store": "@eval", "train_variant": "option"})
    cells = cells_of(path)
    evals = [c for c in cells if c.method == "eval"]
    transfers = [c for c in cells if c.method == "transfer"]
    assert len(evals) == len(transfers) == 4
    for ev, tr in zip(evals, transfers, strict=True):
        assert tr.after == (ev.name,) and (tr.model, tr.task, tr.variants) == (ev.model, ev.task, ev.variants)
        assert tr.args[tr.args.index("--store") + 1] == "@" + ev.name  # the identity does not hold the path
        assert tr.argv[tr.argv.index("--store") + 1] == str(ev.dir)
        assert tr.name.startswith(f"transfer-{ev.model}-capitals-")
    locked = write_config(tmp_path, methods=["lock", "unlock"], unlock={"model": "@lock/model"})
    lock, unlock = cells_of(locked)[0], cells_of(locked)[2]
    assert unlock.argv[unlock.argv.index("--model") + 1] == f"{lock.dir}/model" and unlock.after == (lock.name,)


def test_resources_per_method_and_overrides(tmp_path: Path) -> None:
    path = write_config(tmp_path, resources={"cpus": 2}, probe={"resources": {"gpus": 0, "memory_gb": 8}})
    cells = cells_of(path)
    ev = next(c for c in cells if c.method == "eval")
    pr = next(c for c in cells if c.method == "probe")
    assert ev.resources == Resources(cpus=2, gpus="auto", memory_gb=3)
    assert pr.resources == Resources(cpus=2, gpus=0, memory_gb=8)
    assert ev.resources.resolved(4).gpus == 1 and ev.resources.resolved(0).gpus == 0


def test_skip_finished_cells_and_retry_failed(tmp_path: Path, fake_cli: Path) -> None:
    path = write_config(tmp_path, models=["tiny-llama", "fail"])
    with pytest.raises(sweep.SweepFailed, match="2 of 4 cells failed") as err:
        run(path)
    assert len(calls_of(fake_cli)) == 4 and "cell.log" in str(err.value) and "exit code 1" in str(err.value)
    rec = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert sorted(c["status"] for c in rec["cells"].values()) == ["done", "done", "failed", "failed"]
    failed_dir = tmp_path / "sweep" / next(k for k, c in rec["cells"].items() if c["status"] == "failed")
    meta = json.loads((failed_dir / "cell.json").read_text())
    assert meta["status"] == "failed" and meta["returncode"] == 1 and meta["args"][1] == "fail"
    log = (failed_dir / "cell.log").read_text()
    assert log.lstrip().startswith("$ ") and "this model always fails" in log

    fake_cli.unlink()
    path = write_config(tmp_path, models=["tiny-llama", "fail"], env={"X": "1"})
    with pytest.raises(sweep.SweepFailed):
        run(path)  # only the two failed cells run again
    assert [c[c.index("--model") + 1] for c in calls_of(fake_cli)] == ["fail", "fail"]
    fake_cli.unlink()
    out = run(write_config(tmp_path, models=["tiny-llama"]))
    assert calls_of(fake_cli) == []
    text = sweep.summarize(out)
    assert "2 cells (2 skipped (done))" in text and f"python cli.py report {out}" in text


def test_cells_run_with_the_threads_of_their_cpus(tmp_path: Path, fake_cli: Path) -> None:
    run(write_config(tmp_path, models=["tiny-llama"]))
    ev, pr = calls_of(fake_cli)
    assert ev[-2:] == ["--threads", "1"] and pr[-2:] == ["--threads", "1"]  # both default to every core
    doc = json.loads((tmp_path / "sweep" / next(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
                      / "cell.json").read_text())
    assert "--threads 1" in doc["command"]
    assert "--threads" not in doc["args"]  # not part of the cell's identity


def test_dependents_of_a_failed_cell_are_blocked(tmp_path: Path, fake_cli: Path) -> None:
    path = write_config(tmp_path, models=["fail", "tiny-llama"], methods=["eval", "transfer"],
                        transfer={"store": "@eval"})
    with pytest.raises(sweep.SweepFailed, match="2 of 4 cells failed"):
        run(path)
    rec = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    states = {name.split("-")[0] + ":" + c["model"]: c["status"] for name, c in rec["cells"].items()}
    assert states == {"eval:fail": "failed", "eval:tiny-llama": "done", "transfer:fail": "blocked",
                      "transfer:tiny-llama": "done"}
    assert len(calls_of(fake_cli)) == 3  # the blocked cell never started


def test_resume_after_interruption(tmp_path: Path, fake_cli: Path) -> None:
    path = write_config(tmp_path, models=["tiny-llama", "sigint"])
    # Ctrl-C as a command line gets it: Python's own handler (a library imported by an earlier test may have
    # replaced it in this process, e.g. wandb's or Ray's)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(path)
    finally:
        signal.signal(signal.SIGINT, previous)
    rec = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [c["status"] for c in rec["cells"].values()] == ["done", "interrupted", "pending", "pending"]
    first = calls_of(fake_cli)
    assert [c[:3] for c in first] == [["eval", "--model", "tiny-llama"], ["eval", "--model", "sigint"]]
    fake_cli.unlink()
    run(path)
    assert [c[:3] for c in calls_of(fake_cli)] == [["eval", "--model", "sigint"], ["probe", "--model", "tiny-llama"],
                                                  ["probe", "--model", "sigint"]]


@pytest.mark.parametrize("stale", ["running", "interrupted", "failed"])
def test_a_cell_with_results_but_not_recorded_done_runs_again(tmp_path: Path, fake_cli: Path, stale: str) -> None:
    """results.json written, but cell.json never recorded the command's exit 0: a driver killed between the two
    (running / interrupted), or a command that failed after writing it. Not done: it runs again (a real command
    then reuses its finished results) and ends recorded done, never skipped while cell.json says otherwise."""
    path = write_config(tmp_path, models=["tiny-llama"], methods=["eval"])
    run(path)
    cell = cells_of(path)[0]
    meta = json.loads((cell.dir / "cell.json").read_text())
    (cell.dir / "cell.json").write_text(json.dumps({**meta, "status": stale}))
    fake_cli.unlink()
    run(path)
    assert len(calls_of(fake_cli)) == 1
    doc = json.loads((cell.dir / "cell.json").read_text())
    assert doc["status"] == "done" and doc["returncode"] == 0 and doc["attempt"] != meta["attempt"]
    rec = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [c["status"] for c in rec["cells"].values()] == ["done"]


def test_changed_args_are_not_skipped(tmp_path: Path, fake_cli: Path) -> None:
    path = write_config(tmp_path, models=["tiny-llama"], methods=["eval"])
    run(path)
    cell = cells_of(path)[0]
    meta = json.loads((cell.dir / "cell.json").read_text())
    meta["args"] = meta["args"][:-2]  # as if written by another config
    (cell.dir / "cell.json").write_text(json.dumps(meta))
    fake_cli.unlink()
    run(path)
    assert len(calls_of(fake_cli)) == 1


def test_dry_run_plans_without_running(tmp_path: Path, fake_cli: Path) -> None:
    out = run(write_config(tmp_path), dry_run=True)
    assert calls_of(fake_cli) == [] and "[dry run]" in sweep.summarize(out)
    assert all(c["status"] == "pending" for c in json.loads((out / "sweep.json").read_text())["cells"].values())


def test_report_reads_a_sweep_directory(tmp_path: Path, fake_cli: Path, contract_runs,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CLI_RESULTS", json.dumps({"eval": str(contract_runs["eval"]),
                                                       "probe": str(contract_runs["probe"])}))
    out = run(write_config(tmp_path))
    rep = report.run(report.Config(runs=(str(out),), out=str(tmp_path / "rep")))
    manifest = json.loads((rep / "report.json").read_text())
    assert manifest["n_runs"] == 4
    assert f"python cli.py sweep {tmp_path / 'sweep.json'}" in (rep / "index.html").read_text()


def test_cli_flags_of_the_sweep(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--executor must be one of"):
        sweep.Config(config="x", executor="dask")
    with pytest.raises(ValueError, match="--address needs --executor ray"):
        sweep.Config(config="x", executor="serial", address="auto")


def test_run_cell_logs_output_and_records_the_attempt(tmp_path: Path) -> None:
    script = tmp_path / "echo.py"
    script.write_text("import sys; print('hello from', sys.argv[1]); sys.exit(int(sys.argv[2]))\n")
    cell = {"name": "c", "dir": str(tmp_path / "c"), "argv": ["x", "3"], "cli": str(script), "cwd": str(tmp_path),
            "env": {}, "attempt": "a1", "doc": {"args": ["x"]}, "resources": {"cpus": 1}}
    res = cellrun.run_cell(cell)
    assert res["status"] == "failed" and res["returncode"] == 3 and res["error"] == "exit code 3"
    assert "hello from x" in (tmp_path / "c" / "cell.log").read_text()
    assert cellrun.started(tmp_path / "c", "a1") is not None and cellrun.started(tmp_path / "c", "a2") is None
    blocked = cellrun.run_cell({**cell, "attempt": "a2"}, res)
    assert blocked["status"] == "blocked" and "c did not finish" in blocked["error"]
    missing = cellrun.run_cell({**cell, "cli": str(tmp_path / "nope.py"), "attempt": "a3"})
    assert missing["status"] == "failed" and missing["returncode"] == 2  # python: can't open file


def test_check_node_reports_what_it_cannot_see(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.write_text("tok\n")
    assert cellrun.check_node({"cli.py": sys.executable}, str(marker), "tok")["problems"] == []
    got = cellrun.check_node({"the sweep directory": str(tmp_path / "no")}, str(marker), "other")["problems"]
    assert len(got) == 2 and "another sweep's token" in got[0] and "does not exist here" in got[1]


def test_progress_counts_and_estimate() -> None:
    now = [0.0]
    t = Tracker({"e1": "eval", "e2": "eval", "p1": "probe", "p2": "probe"}, skipped=1, slots=2, clock=lambda: now[0])
    assert t.eta() is None
    t.start("e1")
    t.start("e2")
    now[0] = 10.0
    t.finish("e1", "done", 10.0)
    snap = t.snapshot()
    assert (snap.total, snap.done, snap.running, snap.failed, snap.left) == (5, 1, 1, 0, 2)
    # e2 has spent 10 s of an expected 10; p1, p2 are expected to take the overall mean (10 s) each, on 2 slots
    assert snap.eta == pytest.approx(10.0)
    t.finish("e2", "failed", 4.0)
    t.start("p1")
    now[0] = 30.0
    t.finish("p1", "done", 20.0)
    assert t.eta() == pytest.approx(20.0 / 2)  # p2 expected to take the probe mean
    assert t.snapshot().line() == "2/4 done, 0 running, 1 failed, 1 left, 1 already done; 30s elapsed, about 10s left"


def test_serial_executor_needs_no_resources(tmp_path: Path) -> None:
    cell = Cell("eval", "m", "t", "", ("--model", "m"), tmp_path / "c", resources=Resources(cpus=64, gpus="auto"))
    assert SerialExecutor(2).prepare([cell], tmp_path, Launch("cli.py", "."))[0].resources.gpus == 0
    assert Method("x", frozenset()).resources == Resources()
