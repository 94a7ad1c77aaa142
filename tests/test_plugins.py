"""Plug-ins (`core.plugins`): a user's task and variant from `--include FILE.py` or an installed package's entry
points, used from the command line, in a fresh process and inside a sweep (serial executor, a real eval cell)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cli
from core import plugins
from core.config import PluginOptions
from core.schemas import EvalResult
from eval import tasks
from eval import variants as V

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = textwrap.dedent('''
    """A user's plug-in: one task, one variant modifier."""
    import dataclasses

    from eval.records import MCRecord
    from eval.tasks import register_task
    from eval.variants import register_modifier

    SUMS = [(a, b) for a in range(2, 7) for b in range(3, 6)]


    def load(arg, split, data_dir):
        rows = SUMS[:8] if split == "dev" else SUMS[8:]
        return [MCRecord(id=f"{NAME}/{split}/{a}+{b}", question=f"What is {a} + {b}?",
                         choices=tuple(str(a + b + d) for d in (-1, 0, 1, 2)), answer=1, split=split)
                for a, b in rows]


    register_task(NAME, load, few_shot_split="dev", description="sums (a plug-in)")
    register_modifier(NAME + "_shout", lambda spec: dataclasses.replace(spec, cue_text="ANSWER:"))
''')


def write_plugin(path: Path, name: str) -> Path:
    path.write_text(f"NAME = {name!r}\n" + PLUGIN)
    return path


@pytest.fixture
def registries(monkeypatch):
    """Fresh copies of the registries a plug-in writes into, restored after the test."""
    tasks.available_tasks()
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    monkeypatch.setattr(V, "MODIFIERS", dict(V.MODIFIERS))
    monkeypatch.setattr(V, "PARAM_MODIFIERS", dict(V.PARAM_MODIFIERS))
    monkeypatch.setattr(plugins, "_included", {})
    monkeypatch.setattr(plugins, "_loaded_groups", set())


def test_include_file_registers_once(tmp_path, registries) -> None:
    path = write_plugin(tmp_path / "my_plugin.py", "zz_inc")
    mod = plugins.include(str(path))
    assert plugins.include(str(path)) is mod  # a second include of the same file is a no-op (no double register)
    assert "zz_inc" in tasks.available_tasks()
    recs = tasks.load_task(tasks.TaskSpec("zz_inc"))
    assert len(recs) == 7 and recs[0].question == "What is 4 + 5?"
    assert V.render(V.parse("zz_inc_shout"), recs[0]).cue == "ANSWER:"
    with pytest.raises(plugins.PluginError, match="no such file"):
        plugins.include(str(tmp_path / "missing.py"))
    with pytest.raises(plugins.PluginError, match="cannot import module"):
        plugins.include("no_such_module_zz")


def test_plugin_options_record_absolute_paths(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.py").write_text("")
    assert PluginOptions(include=("p.py", "json")).include == (str(tmp_path / "p.py"), "json")
    with pytest.raises(ValueError, match="empty entry"):
        PluginOptions(include=(" ",))


def test_include_on_the_command_line_runs_a_plugin_task_and_variant(tmp_path, registries, capsys) -> None:
    path = write_plugin(tmp_path / "sums.py", "zz_cli")
    out = tmp_path / "run"
    argv = ["eval", "--include", str(path), "--model", "tiny-llama", "--task", "zz_cli", "--n", "4", "--n-boot",
            "10", "--variants", "default,zz_cli_shout", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    res = EvalResult.read(out / "results.json")
    assert res.header.task.name == "zz_cli" and res.variants_run == ["default", "cue:ANSWER:"]
    assert res.header.config["include"] == [str(path)]
    assert cli.main(["tasks", "--include", str(path)]) == 0
    assert "zz_cli" in capsys.readouterr().out


def _fake_distribution(site: Path, name: str) -> None:
    """An installed package `name` with gaplens entry points, as pip would leave it (a dist-info on sys.path)."""
    write_plugin(site / f"{name}_tasks.py", name)
    (site / f"{name}_variants.py").write_text(
        "import dataclasses\nfrom eval.variants import register_modifier\n\n"
        f"def setup():\n    register_modifier({name + '_loud'!r}, "
        "lambda spec: dataclasses.replace(spec, cue_text='LOUD:'))\n")
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[gaplens.tasks]\n{name} = {name}_tasks\n\n[gaplens.variants]\n{name} = {name}_variants:setup\n")


def test_entry_points_load_at_registry_lookup(tmp_path, registries, monkeypatch) -> None:
    _fake_distribution(tmp_path, "zz_ep")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(tasks, "_REGISTRY", {})
    monkeypatch.setattr(tasks, "_DEFAULTS_REGISTERED", False)
    assert "zz_ep" in tasks.available_tasks() and "mmlu" in tasks.available_tasks()
    assert V.parse("zz_ep_loud").cue_text == "LOUD:"  # the unknown name loads gaplens.variants, then parses
    assert plugins.load_group("gaplens.tasks") == []  # once per process


def test_installed_plugin_works_in_a_fresh_process(tmp_path) -> None:
    _fake_distribution(tmp_path, "zz_fresh")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    res = subprocess.run([sys.executable, "cli.py", "tasks"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and "zz_fresh" in res.stdout.split(), res.stderr
    res = subprocess.run([sys.executable, "cli.py", "variants"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert "zz_fresh_loud" in res.stdout


def test_broken_entry_point_is_named(tmp_path, registries, monkeypatch) -> None:
    dist = tmp_path / "zz_bad-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zz_bad\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[gaplens.probes]\nzz_bad = zz_bad_missing_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(plugins.PluginError, match="plug-in 'zz_bad' .*gaplens.probes"):
        plugins.load_group("gaplens.probes")


def test_sweep_passes_include_to_a_plugin_task_cell(tmp_path, registries) -> None:
    from commands import sweep
    from grid.cellrun import read_cell_json

    path = write_plugin(tmp_path / "sums.py", "zz_sweep")
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({
        "out": str(tmp_path / "sweep"), "methods": ["eval"], "models": ["tiny-llama"], "tasks": ["zz_sweep"],
        "variants": "default,zz_sweep_shout", "n": 4, "eval": {"n_boot": 10}}))
    # `sweep --include FILE` hands the flag to every cell (and loads it for the cells' checks)
    out = sweep.run(sweep.Config(config=str(config), executor="serial", include=(str(path),)))
    rec = json.loads((out / "sweep.json").read_text())
    (cell_name, cell), = rec["cells"].items()
    assert cell["status"] == "done", cell
    args = read_cell_json(out / cell_name)["args"]
    assert args[args.index("--include") + 1] == str(path)
    res = EvalResult.read(out / cell_name / "results.json")
    assert res.header.task.name == "zz_sweep" and "cue:ANSWER:" in res.variants_run
