#!/usr/bin/env bash
# Rerun the commands behind the README's figures, section by section (finished runs are reused, not recomputed;
# delete runs/ for a cold rerun). Usage: scripts/reproduce.sh SECTION [DATA_DIR]
#   demo       make demo's probe (capitals)
#   variants   the prompt-variant tables and the chain-of-thought table (scripts/eval_tables.sh)
#   transfer   probes across prompt variants
#   lock       the toy organism's lock and unlock
#   report     the benchmark-scale sweeps and the published report (scripts/benchmark.sh; hours on a 2-core CPU)
#   audit      the toy zoo's audit scoreboard (docs/audit.md)
#   agree      agreement with lm-evaluation-harness (docs/interop.md; needs the lmeval extra, in the lock)
#   bench      the speed benchmarks (run them on a quiet machine: they compare against a reference in the same run)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=$(realpath "${2:-${GAPLENS_DATA_DIR:-../shared/data}}")
export GAPLENS_DATA_DIR=$DATA
case "${1:-}" in
  demo) "$PY" cli.py probe --model smollm2-135m-instruct --task capitals --out runs/demo ;;
  variants) scripts/eval_tables.sh "$DATA" ;;
  transfer)
    "$PY" cli.py eval --model smollm2-135m-instruct --task arc-easy --data-dir "$DATA" --n 100 --resid \
      --variants default,rotate:1,numbers,lower,paren,chat,option,option_listed --out runs/eval-smollm2-arc-easy-resid
    "$PY" cli.py transfer --store runs/eval-smollm2-arc-easy-resid --train-variant option
    "$PY" cli.py transfer --store runs/eval-smollm2-arc-easy-resid --train-variant default ;;
  lock)
    "$PY" cli.py lock --out runs/lock
    "$PY" cli.py unlock --model runs/lock --out runs/unlock ;;
  report) PY=$PY scripts/benchmark.sh "$DATA" ;;
  audit) "$PY" cli.py audit sweeps/zoo-toy.json ;;
  agree) "$PY" scripts/agree_lmeval.py --data-dir "$DATA" ;;
  bench)
    for task in arc-easy mmlu; do for dtype in float32 bfloat16; do
      "$PY" benchmarks/bench_reference.py --model smollm2-135m-instruct --task "$task" --n 400 --dtype "$dtype" --threads 1 \
        --data-dir "$DATA"
    done; done
    "$PY" benchmarks/bench_probes.py --rows 10000 --layers 31 --d-model 576 ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
