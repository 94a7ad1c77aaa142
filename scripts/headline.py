"""Print a report's headline as Markdown: per model and task, straight-up and each method family's choice (made on
dev, reported on the same test questions) with the paired gap, from the report's `results.csv`.

    python scripts/headline.py docs/report

Every number is a row of `results.csv` (`paired:FAMILY` rows and `control_margin` rows), which `cli.py report`
wrote; this script only formats them, so the README's table can be regenerated from the report it quotes.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

FAMILIES = ("prompt variants", "majority vote", "logit lens", "probe", "any method")


def _ci(v: dict[str, str]) -> str:
    return f"{float(v['value']):.3f} [{float(v['lo']):.3f}, {float(v['hi']):.3f}]"


def _diff(v: dict[str, str]) -> str:
    return f"{float(v['value']):+.3f} [{float(v['lo']):+.3f}, {float(v['hi']):+.3f}]"


Group = dict[tuple[str, str, str], dict[str, str]]  # (method, variant, metric) -> its results.csv row


def _groups(report_dir: Path) -> dict[tuple[str, str], Group]:
    """results.csv rows by (model, task)."""
    groups: dict[tuple[str, str], Group] = defaultdict(dict)
    for r in csv.DictReader((report_dir / "results.csv").open()):
        groups[(r["model"], r["task"])][(r["method"], r["variant"], r["metric"])] = r
    return groups


def _surface_margin(g: Group) -> dict[str, str] | None:
    """The probe ceiling minus the surface-cue control (its `control_margin` difference row), if the run had one."""
    return next((v for k, v in g.items() if k[0] == "control_margin" and k[1].startswith("surface")
                 and k[2] == "difference"), None)


def _chosen(g: Group, family: str) -> tuple[str, str] | None:
    """The (method, variant) key of the family's candidate chosen on dev (its `paired:FAMILY` rows), if any."""
    label = next((k[1] for k in g if k[0] == f"paired:{family}" and k[2] == "difference"), None)
    return None if label is None else (f"paired:{family}", label)


def compact(report_dir: Path) -> str:
    """The README's shorter table: straight-up, the best prompt variant, the probe ceiling, the best of every method
    (each with its paired gap) and the probe's margin over the surface-cue control."""
    groups = _groups(report_dir)
    out = ["| model, task (test questions) | straight-up | best prompt variant | probe ceiling | best of every method "
           "| probe minus surface-cue control |", "|---|---|---|---|---|---|"]
    for (model, task), g in sorted(groups.items()):
        cells, straight, n = [], "-", "?"
        for fam in ("prompt variants", "probe", "any method"):
            key = _chosen(g, fam)
            if key is None:
                cells.append("-")
                continue
            s = g[(*key, "straight_up_test")]
            straight, n = _ci(s), s["n"] or n
            cells.append(f"{key[1]}: {float(g[(*key, 'accuracy_test')]['value']):.3f}, {_diff(g[(*key, 'difference')])}")
        margin = _surface_margin(g)
        out.append(f"| {model}, {task} ({n}) | {straight} | " + " | ".join(cells) +
                   f" | {_diff(margin) if margin else '-'} |")
    return "\n".join(out)


def headline(report_dir: Path) -> str:
    groups = _groups(report_dir)
    out = ["| model | task | test questions | straight-up | " + " | ".join(FAMILIES) + " | probe minus surface-cue "
           "control |", "|---" * (5 + len(FAMILIES)) + "|"]
    for (model, task), g in sorted(groups.items()):
        cells, straight, n = [], "", ""
        for fam in FAMILIES:
            key = _chosen(g, fam)
            if key is None:
                cells.append("-")
                continue
            label = key[1]
            acc, diff = g[(*key, "accuracy_test")], g[(*key, "difference")]
            p = float(g[(*key, "mcnemar_p")]["value"])
            straight = straight or _ci(g[(*key, "straight_up_test")])
            n = n or g[(*key, "straight_up_test")]["n"]
            cells.append(f"{label}: {_ci(acc)}, gap {_diff(diff)}, p = {p:.2g}")
        margin = _surface_margin(g)
        out.append(f"| {model} | {task} | {n or '-'} | {straight or '-'} | " + " | ".join(cells) +
                   f" | {_diff(margin) if margin else '-'} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report_dir", type=Path)
    p.add_argument("--compact", action="store_true", help="the README's shorter table")
    a = p.parse_args()
    print(compact(a.report_dir) if a.compact else headline(a.report_dir))


if __name__ == "__main__":
    main()
