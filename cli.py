"""gaplens command line: flags -> a frozen config -> a runner -> printed summary.

Every command is a stage with one config dataclass whose field metadata is its `--help`. A stage module exposes
`Config`, `run(cfg) -> Path` (writes one directory and returns it) and `summarize(out_dir) -> str`.
This is the only module that prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

from commands import COMMANDS
from commands.flags import TYPES, Flag, from_config, table
from core.plugins import include_all, load_all
from core.suggest import did_you_mean

LISTINGS = {"models": "list the models that can be named", "tasks": "list the tasks that can be named",
            "variants": "list the built-in prompt variants and templates"}
HELP = ("-h", "--help")


def add_flags(parser: argparse.ArgumentParser, flags: list[Flag]) -> None:
    """Add `flags` (`commands.flags.Flag`) to `parser`: `--field-name` with its help, booleans as --x/--no-x,
    sequences comma-separated, positional fields as arguments."""
    for f in flags:
        tp = TYPES[f.type]
        default = tuple(f.default) if isinstance(f.default, list) else f.default
        help_ = f.help + (f" (default: {default})" if default not in (None, ()) else "")
        if f.type == "bool" and not f.seq:
            parser.add_argument(f.flag, action=argparse.BooleanOptionalAction, default=default, help=help_)
        elif f.positional:
            parser.add_argument(f.name, nargs="+" if f.seq else None, type=tp, help=help_)
        elif f.seq:
            parser.add_argument(f.flag, type=_csv(tp), default=default, help=help_ + " (comma-separated)")
        else:
            parser.add_argument(f.flag, type=tp, default=default, help=help_)


def add_config_args(parser: argparse.ArgumentParser, cfg_cls: type) -> None:
    """One flag per config field (see `commands.flags.from_config`)."""
    add_flags(parser, from_config(cfg_cls))


def _csv(tp: Any):  # noqa: ANN202 - argparse type factory
    def parse(text: str) -> tuple:
        try:
            return tuple(tp(x.strip()) for x in text.split(",") if x.strip())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {tp.__name__}: {exc}") from exc

    return parse


def build_config(cfg_cls: type, args: argparse.Namespace) -> Any:
    """The config from parsed flags (validated and normalised by the config itself, see `core.config`), after
    importing the plug-ins of `--include` (a plug-in's task or variant can then be named by the other flags)."""
    include_all(getattr(args, "include", None) or ())
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cfg_cls) if hasattr(args, f.name)}
    return cfg_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _unknown_command(argv: list[str]) -> str | None:
    """An error naming the first word of `argv` when it is no command (with the closest one), else None."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None or first in COMMANDS or first in LISTINGS:
        return None
    return f"unknown command {first!r}{did_you_mean(first, [*COMMANDS, *LISTINGS])}; commands: " + \
        ", ".join([*COMMANDS, *LISTINGS])


def _list(what: str) -> str:
    if what == "models":
        from hooks.models import available_models

        return "\n".join(available_models()) + "\n(or a Hugging Face id, or a local HF model directory)"
    if what == "tasks":
        from eval.tasks import available_tasks

        return "\n".join(available_tasks())
    from eval.variants import TEMPLATES, builtin_variants, generation_variants, known_modifiers

    return "\n".join([*builtin_variants(), "# chain of thought (generation; not in 'all', see `eval --cot`):",
                      *generation_variants(), "# templates (each stands for its modifiers):",
                      *(f"{k} = {v}" for k, v in TEMPLATES.items()),
                      "# every modifier (join with '+'; TEXT percent-encoded, see eval/variants.py):",
                      " ".join(known_modifiers())])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = argparse.ArgumentParser(prog=Path(sys.argv[0]).name, description="gaplens: measure the elicitation gap.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    error = _unknown_command(argv)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 2
    wanted = next((a for a in argv if a in COMMANDS), None)
    help_only = wanted is not None and any(a in HELP for a in argv[argv.index(wanted):])
    modules: dict[str, types.ModuleType] = {}
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if name == wanted and help_only:  # the recorded flags: no command module (and no torch) is imported
            add_flags(p, table()[name])
        elif name == wanted:  # import only the module of the command being run
            modules[name] = command.load()
            add_config_args(p, modules[name].Config)
    for name, help_ in LISTINGS.items():
        sub.add_parser(name, help=help_).add_argument(
            "--include", type=_csv(str), default=(), help="plug-ins to import first (comma-separated)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        load_all()  # installed plug-ins (entry points)
        if args.command in LISTINGS:
            include_all(args.include)
            print(_list(args.command))
            return 0
        mod = modules[args.command]
        cfg = build_config(mod.Config, args)
        out = mod.run(cfg)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume from what is finished", file=sys.stderr)
        return 130
    print(mod.summarize(Path(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
