#!/usr/bin/env bash
# The benchmark-scale runs behind docs/report: both embedded models on the full ARC-Easy test set, 2,000 MMLU test
# questions stratified by subject, and the full ARC-Challenge test set; eval (5 prompt variants) and probe (shuffled
# control) per model and task, bf16. Resumable: rerun the same command after an interruption. Then the report.
#   scripts/benchmark.sh DATA_DIR            (DATA_DIR holds mmlu/ and arc/; see README "Data")
set -euo pipefail
cd "$(dirname "$0")/.."
export GAPLENS_DATA_DIR="${1:?usage: scripts/benchmark.sh DATA_DIR}"
PY=${PY:-.venv/bin/python}
start=$(date +%s)
for task in arc-easy mmlu arc-challenge; do
  $PY cli.py -v sweep "sweeps/benchmark/$task.json"
done
echo "benchmark sweeps: $(( $(date +%s) - start )) s wall"
$PY cli.py report runs/benchmark/arc-easy runs/benchmark/mmlu runs/benchmark/arc-challenge --out docs/report
