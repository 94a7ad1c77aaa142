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
import typing
from pathlib import Path
from typing import Any

from commands import COMMANDS


def _field_type(f: dataclasses.Field, hints: dict[str, Any]) -> tuple[Any, bool, bool]:
    """(element type, is_sequence, is_optional) of a config field."""
    tp = hints[f.name]
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0]
        origin = typing.get_origin(tp)
    if origin in (tuple, list):
        return typing.get_args(tp)[0], True, optional
    return tp, False, optional


def add_config_args(parser: argparse.ArgumentParser, cfg_cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per config field: `--field-name`, help from the field metadata, booleans as --x/--no-x."""
    hints = typing.get_type_hints(cfg_cls)
    for f in dataclasses.fields(cfg_cls):
        if f.name in skip:
            continue
        tp, seq, _ = _field_type(f, hints)
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        help_ = f.metadata.get("help", "") + (f" (default: {default})" if default not in (None, ()) else "")
        positional = f.metadata.get("positional", False)
        if tp is bool and not seq:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_)
        elif positional:
            parser.add_argument(f.name, nargs="+" if seq else None, type=tp, help=help_)
        elif seq:
            parser.add_argument(flag, type=_csv(tp), default=default, help=help_ + " (comma-separated)")
        else:
            parser.add_argument(flag, type=tp, default=default, help=help_)


def _csv(tp: Any):  # noqa: ANN202 - argparse type factory
    def parse(text: str) -> tuple:
        try:
            return tuple(tp(x.strip()) for x in text.split(",") if x.strip())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {tp.__name__}: {exc}") from exc

    return parse


def build_config(cfg_cls: type, args: argparse.Namespace) -> Any:
    """The config from parsed flags (validated and normalised by the config itself, see `core.config`)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cfg_cls) if hasattr(args, f.name)}
    return cfg_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cli.py", description="gaplens: measure the elicitation gap.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else argv
    wanted = next((a for a in argv if a in COMMANDS), None)
    modules: dict[str, types.ModuleType] = {}
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if name == wanted:  # import only the module of the command being run
            modules[name] = command.load()
            add_config_args(p, modules[name].Config)
    sub.add_parser("models", help="list the models that can be named")
    sub.add_parser("tasks", help="list the tasks that can be named")
    sub.add_parser("variants", help="list the built-in prompt variants")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.command == "models":
        from hooks.models import available_models

        print("\n".join(available_models()) + "\n(or a Hugging Face id, or a local HF model directory)")
        return 0
    if args.command == "tasks":
        from eval.tasks import available_tasks

        print("\n".join(available_tasks()))
        return 0
    if args.command == "variants":
        from eval.variants import builtin_variants, generation_variants

        print("\n".join(builtin_variants()))
        print("# chain of thought (generation; not in 'all', see `eval --cot`):")
        print("\n".join(generation_variants()))
        return 0
    mod = modules[args.command]
    try:
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
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
