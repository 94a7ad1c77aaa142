"""The embedded sweep, serial vs Ray: wall time of the same cells run one after another and on an embedded Ray.

Both sides run `python cli.py sweep CONFIG` end to end (driver start, Ray start and shutdown included) on the
same config, derived from `sweeps/embedded.json` with the flags below, each into its own fresh directory, back
to back in one run: first `--executor serial --cpus C` (each cell gets C torch threads), then `--cpus C` on an
embedded Ray (C cells at once, one thread each). Before timing, each model is loaded once so that neither side
pays for dequantizing the GGUF weights into the model cache. The two sides' results must agree; the script
checks the prompted accuracies of every eval cell.

    GAPLENS_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/bench_sweep.py \\
        --models smollm2-135m-instruct --tasks arc-easy,mmlu --n 20 --variants default,option

On a shared machine the ratio is indicative: other jobs take cores from either side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def config(args: argparse.Namespace, out: Path) -> dict:
    """sweeps/embedded.json with the benchmark's overrides, writing into `out`."""
    spec = json.loads((ROOT / "sweeps" / "embedded.json").read_text())
    spec["out"] = str(out)
    for key in ("models", "tasks", "methods"):
        if getattr(args, key):
            spec[key] = csv(getattr(args, key))
    if args.n:
        spec["n"] = args.n
    if args.variants:
        spec["variants"] = args.variants
    return spec


def sweep(spec: dict, where: Path, extra: list[str]) -> tuple[float, dict]:
    """(wall seconds, sweep.json) of `cli.py sweep` on `spec`; exits with the sweep's output when it fails."""
    path = where / "config.json"
    path.write_text(json.dumps(spec))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "sweep", str(path), *extra], cwd=ROOT,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"sweep {' '.join(extra)} failed:\n{res.stdout}\n{res.stderr[-4000:]}")
    return wall, json.loads((Path(spec["out"]) / "sweep.json").read_text())


def accuracies(out: Path) -> dict[str, object]:
    """Each eval cell's per-variant prompted accuracies (what both sides must agree on)."""
    found: dict[str, object] = {}
    for p in sorted(out.glob("eval-*/results.json")):
        found[p.parent.name] = {m["variant"]: m["accuracy"] for m in json.loads(p.read_text())["metrics"]}
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", help="comma-separated models (default: those of sweeps/embedded.json)")
    p.add_argument("--tasks", help="comma-separated tasks (default: those of sweeps/embedded.json)")
    p.add_argument("--methods", help="comma-separated methods (default: eval,probe)")
    p.add_argument("--variants", help="the variant set (default: that of sweeps/embedded.json)")
    p.add_argument("--n", type=int, help="questions per cell (default: 100, as in sweeps/embedded.json)")
    p.add_argument("--cpus", type=int, default=2, help="Ray: cells at once; serial: threads per cell")
    p.add_argument("--data-dir", default=os.environ.get("GAPLENS_DATA_DIR"), help="benchmark data directory")
    p.add_argument("--keep", help="keep both sweep directories under this folder (default: a temporary one)")
    args = p.parse_args()
    if not args.data_dir:
        sys.exit("set GAPLENS_DATA_DIR or --data-dir (the MMLU / ARC files)")
    os.environ["GAPLENS_DATA_DIR"] = str(Path(args.data_dir).resolve())
    base = Path(args.keep or tempfile.mkdtemp(prefix="bench-sweep-"))
    sides = {"serial": ["--executor", "serial", "--cpus", str(args.cpus)], "ray": ["--cpus", str(args.cpus)]}
    specs = {name: config(args, base / name / "sweep") for name in sides}
    for name in sides:
        (base / name).mkdir(parents=True, exist_ok=True)
    spec = specs["serial"]
    print(f"cells: {spec['methods']} x {spec['models']} x {spec['tasks']}, n={spec['n']}, "
          f"variants={spec.get('variants')}; {args.cpus} CPUs; dirs under {base}")
    t0 = time.perf_counter()
    for model in spec["models"]:  # fill the model cache before timing
        subprocess.run([sys.executable, "-c", f"from hooks.models import load_model; load_model({model!r})"],
                       cwd=ROOT, check=True, capture_output=True)
    print(f"warm-up (load each model once): {time.perf_counter() - t0:.1f} s")
    walls: dict[str, float] = {}
    for name, extra in sides.items():
        walls[name], rec = sweep(specs[name], base / name, extra)
        cells = rec["cells"].values()
        busy = sum(c.get("seconds") or 0 for c in cells)
        print(f"{name:>6}: wall {walls[name]:7.1f} s for {len(rec['cells'])} cells; cell time summed {busy:7.1f} s "
              f"(mean {busy / max(1, len(rec['cells'])):.1f} s); cells busy / wall = {busy / walls[name]:.2f}")
    same = accuracies(Path(specs["serial"]["out"])) == accuracies(Path(specs["ray"]["out"]))
    print(f"serial / ray wall time = {walls['serial'] / walls['ray']:.2f} (>1: Ray faster); "
          f"eval accuracies identical on both sides: {same}")


if __name__ == "__main__":
    main()
