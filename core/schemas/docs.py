"""`docs/results.md` generated from the schema dataclasses: `python -m core.schemas.docs` rewrites it.

Each field's documentation is its trailing comment in the class body (a comment line right below a field continues
it). `field_docs(cls)` reads them; `render()` returns the page; a test checks the committed page is `render()`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from core import samples
from core.schemas.base import REGISTRY, Result
from core.schemas.convert import hints

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "results.md"
_FIELD = re.compile(r"^    (\w+): [^#=]+?(?:\s+#\s?(.*))?$")
_MORE = re.compile(r"^    #\s?(.*)$")


def field_docs(cls: type) -> dict[str, str]:
    """field name -> its comment in the class body ("" when it has none)."""
    docs: dict[str, str] = {}
    last = None
    for line in inspect.getsource(cls).splitlines():
        if m := _FIELD.match(line):
            last = m.group(1)
            docs[last] = (m.group(2) or "").strip()
        elif (m := _MORE.match(line)) and last is not None:
            docs[last] = f"{docs[last]} {m.group(1).strip()}".strip()
        else:
            last = None
    names = [f.name for f in dataclasses.fields(cls)]
    return {n: docs.get(n, "") for n in names}


def _dataclasses_in(tp: Any) -> list[type]:
    if dataclasses.is_dataclass(tp):
        return [tp]
    return [c for a in typing.get_args(tp) for c in _dataclasses_in(a)]


def reachable(roots: list[type]) -> list[type]:
    """The dataclasses reachable from `roots` through field types, roots first, each once."""
    out: list[type] = []
    todo = list(roots)
    while todo:
        cls = todo.pop(0)
        if cls in out:
            continue
        out.append(cls)
        for tp in hints(cls).values():
            todo += [c for c in _dataclasses_in(tp) if c not in out]
    return out


def type_name(tp: Any) -> str:
    """A readable type: dataclasses as links, `X | None`, lists, dicts, literals."""
    if tp is Any:
        return "any JSON"
    if dataclasses.is_dataclass(tp):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin is Literal:
        return " \\| ".join(f'"{a}"' for a in args)
    if origin is list:
        return f"list[{type_name(args[0])}]"
    if origin is tuple:
        inner = f"{type_name(args[0])}, ..." if len(args) == 2 and args[1] is Ellipsis else ", ".join(
            type_name(a) for a in args)
        return f"[{inner}]"
    if origin is dict:
        return f"{{str: {type_name(args[1])}}}"
    return {float: "number", int: "integer", bool: "bool", str: "string"}.get(tp, str(tp))


def _table(cls: type) -> list[str]:
    docs = field_docs(cls)
    rows = ["| field | type | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | {type_name(tp)} | {docs[name].replace('|', chr(92) + '|')} |" for name, tp in hints(cls).items()]
    return rows


def _doc(cls: type) -> str:
    return " ".join(inspect.cleandoc(cls.__doc__ or "").split())


def render() -> str:
    """The whole of docs/results.md."""
    roots = sorted(REGISTRY.values(), key=lambda c: c.SCHEMA)
    lines = [
        "# Results files",
        "",
        "Generated from the schema dataclasses in `core/schemas/` by `python -m core.schemas.docs`; do not edit by "
        "hand (a test checks this page is up to date).",
        "",
        "Every command writes its run directory's `results.json` as one typed, versioned dataclass, and reads it back "
        "the same way (`summarize`, the report). The file's first field names its schema and version, e.g. "
        '`"schema": "gaplens.probe/2"`; a reader refuses a file of another version, and a missing or unknown field, '
        "naming the file and the field. In Python:",
        "",
        "```python",
        "from core.schemas import load_result, ProbeResult",
        'r = load_result("runs/demo/results.json")      # the class its schema names',
        'r = ProbeResult.read("runs/demo/results.json")  # or exactly this class',
        "r.header.model.n_params, r.ceiling.test_accuracy.value",
        "```",
        "",
        "JSON is strict: NaN and infinities are written as `null`; a `number` field reads `null` back as NaN, a field "
        "typed `... | null` reads it as null (absent). Beside `results.json` every run writes `samples.parquet`, the "
        "per-question table (below).",
        "",
        "| schema | class | written by |",
        "|---|---|---|",
    ]
    lines += [f"| `{c.schema_id()}` | [{c.__name__}](#{c.__name__.lower()}) | {_doc(c).split(':')[0]} |"
              for c in roots]
    for cls in reachable(roots):
        lines += ["", f"## {cls.__name__}", ""]
        if isinstance(cls, type) and issubclass(cls, Result):
            lines += [f"Schema `{cls.schema_id()}`. {_doc(cls)}", ""]
        else:
            lines += [_doc(cls), ""]
        lines += _table(cls)
    lines += ["", "## samples.parquet", "", f"Schema `{samples.SCHEMA}` (in the Parquet metadata). "
              + inspect.cleandoc(samples.__doc__ or "").split("\n", 1)[1].strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write docs/results.md (or the path given)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DOC_PATH
    path.write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
