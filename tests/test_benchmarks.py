"""The benchmark scripts still run against the library (they import it lazily, so only running them shows a moved
function): bench_reference on the tiny model, whose equality check against plain HF must hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_reference_runs_and_checks_equality() -> None:
    res = subprocess.run([sys.executable, "benchmarks/bench_reference.py", "--model", "tiny-llama", "--task", "capitals",
                          "--n", "6", "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "equal to the reference" in res.stdout
    assert res.stdout.strip().splitlines()[-1].startswith("gaplens capture time / reference time = ")
