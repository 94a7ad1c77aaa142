"""The command line as a tool: `--help` without importing torch (flags from commands/flags.json, which must match
every command's Config), the `gaplens` console script, and 'did you mean' for commands, models, tasks, variants."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import cli
from commands import COMMANDS, flags

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "transformer_lens", "h5py", "sklearn", "matplotlib", "ray", "datasets")


def test_flags_table_is_current() -> None:
    """commands/flags.json is what `python -m commands.flags` writes from today's Configs."""
    assert flags.TABLE.read_text() == flags.render(flags.current()), \
        "commands/flags.json is stale: run `python -m commands.flags`"
    assert set(flags.table()) == set(COMMANDS)


def test_flags_from_config_parse_like_the_config() -> None:
    from commands import evaluate

    table = {f.name: f for f in flags.from_config(evaluate.Config)}
    assert table["variants"].type == "str" and not table["variants"].seq
    assert table["include"].seq and table["include"].default == []
    assert table["resid"].type == "bool" and table["n"].type == "int" and table["dev_fraction"].type == "float"
    # a parser from the recorded flags and one from the Config accept the same command line alike
    argv = ["--n", "3", "--variants", "default,option", "--no-resid", "--log", "inspect,lmeval", "--include", "a,b"]
    p1, p2 = argparse.ArgumentParser(), argparse.ArgumentParser()
    cli.add_flags(p1, flags.table()["eval"])
    cli.add_config_args(p2, evaluate.Config)
    assert vars(p1.parse_args(argv)) == vars(p2.parse_args(argv))


def _imported_after(argv: list[str]) -> set[str]:
    """Top-level modules imported by `cli.main(argv)` in a fresh interpreter."""
    code = ("import sys, cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "usage:" in res.stdout, res.stdout + res.stderr
    return set(res.stderr.split())


@pytest.mark.parametrize("argv", [["--help"], ["probe", "--help"], ["eval", "-h"], ["sweep", "--help"]])
def test_help_imports_no_heavy_module(argv: list[str]) -> None:
    loaded = _imported_after(argv)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert not any(m.startswith("commands.") for m in loaded if m != "commands.flags")


def test_help_lists_every_flag_of_the_command(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["eval", "--help"])
    out = capsys.readouterr().out
    for f in flags.table()["eval"]:
        assert f.flag in out
    assert "--log" in out and "--include" in out and "--wandb" in out


def test_console_script_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["gaplens"] == "cli:main"
    extras = project["optional-dependencies"]
    assert any(x.startswith("inspect_ai") for x in extras["inspect"])
    assert any(x.startswith("lm-eval") for x in extras["lmeval"])


def test_unknown_command_suggests(capsys) -> None:
    assert cli.main(["prob", "--model", "x"]) == 2
    assert "unknown command 'prob' (did you mean 'probe'?)" in capsys.readouterr().err
    assert cli.main(["varients"]) == 2
    assert "did you mean 'variants'?" in capsys.readouterr().err


def test_unknown_names_suggest(capsys) -> None:
    from eval.tasks import TaskSpec, load_task
    from hooks.models import ModelError, load_tokenizer

    with pytest.raises(ModelError, match=r"unknown model 'smollm2' \(did you mean 'smollm2-135m-instruct'\?\)"):
        load_tokenizer("smollm2")
    with pytest.raises(ValueError, match=r"did you mean 'capitals'"):
        load_task(TaskSpec("capitols"))
    assert cli.main(["eval", "--model", "tiny-llama", "--variants", "defualt"]) == 2
    assert "did you mean 'default'?" in capsys.readouterr().err


def test_listings_take_plugins(tmp_path, capsys) -> None:
    assert cli.main(["variants"]) == 0
    out = capsys.readouterr().out
    assert "lmeval-arc = option+label:Question:%20" in out and "sys:TEXT" in out and "praise:TEXT" in out
    with open(tmp_path / "bad.py", "w") as fh:
        fh.write("raise RuntimeError('broken plug-in')\n")
    assert cli.main(["tasks", "--include", str(tmp_path / "bad.py")]) == 2
    assert "broken plug-in" in capsys.readouterr().err


def test_flags_json_is_valid_json() -> None:
    doc = json.loads(flags.TABLE.read_text())
    assert all(isinstance(v, list) and v for v in doc.values())
