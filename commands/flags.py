"""Every command's flags, made from its `Config` and kept in `commands/flags.json`, so `--help` imports no command.

A command module imports torch and the rest of the library; its flags do not need them. `from_config(Config)` is the
one place where a config field becomes a flag (`cli.py` adds `Flag`s to argparse): `--field-name`, the help from the
field metadata, booleans as --x/--no-x, tuples as comma-separated lists, `positional` fields as arguments.

`commands/flags.json` holds the flags of every registered command: `cli.py COMMAND --help` builds its parser from it
(fast), running a command builds the parser from the command's real `Config`. Regenerate the file after changing a
Config with `python -m commands.flags`; `tests/test_cli_fast.py` fails while it is stale.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("flags.json")
TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


@dataclass(frozen=True)
class Flag:
    """One command-line flag, as `from_config` derives it from a config field."""

    name: str  # the field name; the flag is "--" + name with "_" as "-"
    type: str  # element type: str, int, float or bool
    seq: bool  # a tuple field: a comma-separated list
    positional: bool  # an argument, not a flag
    default: Any  # JSON form of the default (a list for a tuple)
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _field_type(tp: Any) -> tuple[Any, bool]:
    """(element type, is_sequence) of a field's annotation."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) in (tuple, list):
        return typing.get_args(tp)[0], True
    return tp, False


def from_config(cfg_cls: type) -> list[Flag]:
    """The flags of config dataclass `cfg_cls`, one per field, in field order."""
    hints = typing.get_type_hints(cfg_cls)
    out = []
    for f in dataclasses.fields(cfg_cls):
        tp, seq = _field_type(hints[f.name])
        name = next((k for k, v in TYPES.items() if v is tp), None)
        if name is None:
            raise TypeError(f"{cfg_cls.__qualname__}.{f.name}: type {tp!r} has no flag form (use str, int, float, "
                            "bool or a tuple of them)")
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        out.append(Flag(f.name, name, seq, bool(f.metadata.get("positional", False)),
                        list(default) if isinstance(default, tuple) else default, f.metadata.get("help", "")))
    return out


@functools.cache
def table() -> dict[str, list[Flag]]:
    """The flags of every command as recorded in `commands/flags.json`."""
    doc = json.loads(TABLE.read_text())
    return {name: [Flag(**f) for f in flags] for name, flags in doc.items()}


def current() -> dict[str, list[Flag]]:
    """The flags of every registered command, from their Configs (imports every command module)."""
    from commands import COMMANDS

    return {name: from_config(command.load().Config) for name, command in COMMANDS.items()}


def render(flags: dict[str, list[Flag]]) -> str:
    """The text of `commands/flags.json` for `flags`."""
    lines = []
    for k, (name, fs) in enumerate(flags.items()):
        rows = [json.dumps(dataclasses.asdict(f), ensure_ascii=False) for f in fs]
        lines.append(f" {json.dumps(name)}: [\n  " + ",\n  ".join(rows) + "\n ]" + ("," if k < len(flags) - 1 else ""))
    return "{\n" + "\n".join(lines) + "\n}\n"


if __name__ == "__main__":  # python -m commands.flags: regenerate commands/flags.json
    from core.io import write_text

    write_text(TABLE, render(current()))
