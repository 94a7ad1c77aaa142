#!/usr/bin/env bash
# Rebuild docs/eval-tables.md: the README's prompt-variant runs (finished runs are reused, not recomputed).
# Usage: scripts/eval_tables.sh [DATA_DIR]   (default $GAPLENS_DATA_DIR, else ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${1:-${GAPLENS_DATA_DIR:-../shared/data}}
V=default,numbers,lower,roman,late,paren,wrap,bare,rotate:1,rotate:2,shuffle:0,the_answer_is,correct,praise,instruction,header,sys_assistant,sys_expert,chat,sys_assistant+chat,shots:1,option
OUT=docs/eval-tables.md
TMP=$(mktemp)
{
  echo "# Prompt-variant tables (printed by \`python cli.py eval\`)"
  echo
  echo "Made by \`scripts/eval_tables.sh\`, which runs the README's commands (\`\$V\` is the 22-variant list given there)"
  echo "and the chain-of-thought run; rerunning a command prints its table again (a finished run with the same config is"
  echo "reused, not recomputed)."
  run() {
    local dir=$1; shift
    echo; echo "## $dir"; echo '```'
    "$PY" cli.py eval --data-dir "$DATA" --n 100 --out "$dir" "$@"
    echo '```'
  }
  run runs/eval-smollm2-mmlu --model smollm2-135m-instruct --task mmlu --variants "$V"
  run runs/eval-gemma-mmlu --model gemma-3-270m --task mmlu --variants "$V" --dtype bfloat16
  run runs/eval-smollm2-arc-challenge --model smollm2-135m-instruct --task arc-challenge --variants "$V" --dtype bfloat16
  run runs/eval-gemma-arc-challenge --model gemma-3-270m --task arc-challenge --variants "$V" --dtype bfloat16
  run runs/eval-cot-smollm2-arc-easy --model smollm2-135m-instruct --task arc-easy --variants default,chat,cot,chat+cot --max-new-tokens 192
} > "$TMP"
mv "$TMP" "$OUT"
echo "wrote $OUT"
