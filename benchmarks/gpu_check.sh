#!/usr/bin/env bash
# gaplens on a GPU: one short check for a bare GPU machine (under 10 minutes on one GPU), with a summary.
#
#   benchmarks/gpu_check.sh --fetch-wheels   # HERE (registry access): wheels/ with transformer-lens and the small
#                                            # pure-Python packages it and gaplens import, for a machine without them
#   benchmarks/gpu_check.sh                  # THERE: on the GPU (cuda)
#   benchmarks/gpu_check.sh --cpu            # anywhere: the same steps on the CPU (proves the script itself)
#
# The GPU machine is expected to have torch (CUDA build), transformers, peft, accelerate, scikit-learn, h5py and
# jaxtyping; whatever else gaplens imports and is missing there is installed with --no-deps from wheels/ (no
# network). Only tiny models built in code run (never the embedded GGUF models). Steps:
#   1. numerics tests on the device (GAPLENS_TEST_DEVICE): bridge == HF, shared prefix == whole sequences,
#      lens == logits, batched generation == an argmax loop, probe == scikit-learn; and the execution tests
#   2. probe and eval (chain of thought included) of tiny-llama on the device; results record the device
#   3. the toy organism locked and unlocked on the device (few steps; bfloat16 autocast and --grad-accum 2 on CUDA)
#   4. a 4-bit load of a tiny model (CUDA with bitsandbytes only)
#   5. throughput of the hooked capture vs a plain HF forward pass on the device (benchmarks/bench_reference.py when
#      it exists, else benchmarks/bench_device.py)
# Exit status: 0 when every step that ran passed. Environment: PYTHON (default .venv/bin/python, else python3),
# GAPLENS_TEST_DEVICE (default cuda, cpu with --cpu), OUT (default a temporary directory, kept).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=gpu
for arg in "$@"; do
  case "$arg" in
    --cpu) MODE=cpu ;;
    --fetch-wheels) MODE=fetch ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
# module -> distribution, installed from wheels/ when the module does not import (order: dependencies first)
NEEDED="fancy_einsum:fancy-einsum beartype:beartype typeguard:typeguard mdurl:mdurl markdown_it:markdown-it-py
pygments:pygments rich:rich einops:einops transformer_lens:transformer-lens pyarrow:pyarrow datasets:datasets
matplotlib.pyplot:matplotlib tqdm:tqdm safetensors:safetensors pytest:pytest"

if [ "$MODE" = fetch ]; then
  mkdir -p wheels
  "$PY" -m pip download -q --no-deps -d wheels transformer-lens==4.3.0 fancy-einsum beartype typeguard rich \
    markdown-it-py mdurl pygments einops pytest iniconfig pluggy || exit 1
  if [ -n "${EXTRA_WHEELS:-}" ]; then  # compiled ones for the GPU machine's Python (GPU_PYTHON, e.g. 3.10)
    "$PY" -m pip download -q --no-deps -d wheels --only-binary=:all: --platform manylinux2014_x86_64 \
      --platform manylinux_2_28_x86_64 --python-version "${GPU_PYTHON:-$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}" \
      $EXTRA_WHEELS || exit 1
  fi
  du -sh wheels; ls wheels
  echo "carry wheels/ to the GPU machine (64 MiB in all). transformer-lens also needs datasets (pyarrow, pandas, dill,"
  echo "multiprocess, xxhash) and gaplens matplotlib there; name what is missing, e.g."
  echo "  EXTRA_WHEELS=\"datasets dill multiprocess xxhash\" GPU_PYTHON=3.10 benchmarks/gpu_check.sh --fetch-wheels"
  echo "(pyarrow's wheel alone is ~55 MB)"
  exit 0
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
DEV=${GAPLENS_TEST_DEVICE:-$([ "$MODE" = cpu ] && echo cpu || echo cuda)}
export GAPLENS_TEST_DEVICE=$DEV
OUT=${OUT:-$(mktemp -d /tmp/gaplens-gpu-check.XXXXXX)}
mkdir -p "$OUT"
export GAPLENS_CACHE=$OUT/cache
LOG=$OUT/log
mkdir -p "$LOG"
SUMMARY=()
STATUS=0

step() {  # step NAME COMMAND...: run, time, record PASS/FAIL with the log's last lines on failure
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name"
  if "$@" >"$LOG/$name.log" 2>&1; then
    SUMMARY+=("PASS  $(printf '%-12s' "$name") $((SECONDS - t0))s  $(tail -1 "$LOG/$name.log" | cut -c1-110)")
  else
    STATUS=1
    SUMMARY+=("FAIL  $(printf '%-12s' "$name") $((SECONDS - t0))s  see $LOG/$name.log")
    tail -15 "$LOG/$name.log" | sed 's/^/   | /'
  fi
}
skip() { SUMMARY+=("SKIP  $(printf '%-12s' "$1") $2"); }

# --- 0. environment: what is missing is installed from wheels/ (never the network)
dist_of() {  # the distribution that provides import name $1 (the usual spellings)
  case "$1" in
    PIL) echo pillow ;; yaml) echo pyyaml ;; dateutil) echo python-dateutil ;; sklearn) echo scikit-learn ;;
    markdown_it) echo markdown-it-py ;; *) echo "${1//_/-}" ;;
  esac
}
missing=()
for p in $NEEDED; do  # install each missing module, then whatever it turns out to need, from wheels/ only
  mod=${p%%:*}; dist=${p##*:}; tried=" "
  while ! why=$("$PY" -c "import $mod" 2>&1 | tail -1); do
    need=$(sed -n -e "s/.*No module named '\([^'.]*\).*/\1/p" -e "s/.*No package metadata was found for \([^ ]*\).*/\1/p" \
      -e "s/.*Unable to import required dependency \([^ .]*\).*/\1/p" <<<"$why")
    want=$([ -z "$need" ] || [ "$need" = "$mod" ] && echo "$dist" || dist_of "$need")
    if [[ "$tried" == *" $want "* ]] || ! "$PY" -m pip install -q --no-deps --no-index --find-links wheels "$want" \
        >/dev/null 2>&1; then
      missing+=("$mod: $why (no usable wheel of $want in wheels/)")
      break
    fi
    tried+="$want "
  done
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "cannot import, and wheels/ does not have what they need:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  echo "fetch the wheels where a registry is reachable (benchmarks/gpu_check.sh --fetch-wheels; compiled ones for the" \
       "GPU machine's Python with EXTRA_WHEELS and GPU_PYTHON) and carry wheels/" >&2
  exit 2
fi
"$PY" - <<'EOF' | tee "$LOG/env.txt"
import importlib.metadata as md, platform, torch
v = {p: md.version(p) for p in ("torch", "transformers", "transformer-lens", "accelerate", "peft", "scikit-learn")}
print("python", platform.python_version(), "|", ", ".join(f"{k} {x}" for k, x in v.items()))
print("cuda:", torch.cuda.is_available(), "|", ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "no GPU")
try:
    print("bitsandbytes", md.version("bitsandbytes"))
except md.PackageNotFoundError:
    print("bitsandbytes: not installed (4-bit step skipped)")
EOF
if [ "$DEV" != cpu ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device here: run with --cpu to check the script on the CPU" >&2
  exit 2
fi
DTYPE=$([ "$DEV" = cpu ] && echo float32 || echo bfloat16)

# --- 1. numerics and execution tests on the device (tiny models only; SmolLM2's tests are left out)
NUMERICS=$(ls tests/test_{forward,models,generate,capture,probes_*}.py 2>/dev/null)  # tiny models only (no Ray)
step numerics "$PY" -m pytest -q -p no:cacheprovider -m numerics -k "not smollm2" $NUMERICS
step execution "$PY" -m pytest -q -p no:cacheprovider tests/test_execution.py -k "not results_record"

# --- 2. probe and eval on a tiny model on the device, results recording where they ran
check_device() {  # check_device RUN_DIR: results.json records the resolved device and dtype
  "$PY" - "$1" "$DEV" <<'EOF'
import sys
from core.schemas import load_result
ex = load_result(f"{sys.argv[1]}/results.json").header.execution
want = sys.argv[2]
assert ex.device == want or ex.device.startswith(want + ":"), (ex.device, want)
print(f"recorded: device {ex.device}, dtype {ex.dtype}, batch size {ex.batch_size}, devices {ex.devices}")
EOF
}
run_probe() {
  "$PY" cli.py probe --model tiny-llama --task capitals --n 24 --control both --n-shuffles 2 --device "$DEV" \
    --dtype "$DTYPE" --out "$OUT/probe" && check_device "$OUT/probe"
}
run_eval() {
  "$PY" cli.py eval --model tiny-llama --task capitals --n 16 --variants default,option --cot on \
    --max-new-tokens 12 --n-boot 50 --device "$DEV" --dtype "$DTYPE" --out "$OUT/eval" && check_device "$OUT/eval"
}
step probe run_probe
step eval run_eval

# --- 3. the toy organism locked and unlocked on the device (few steps)
run_lock() {
  "$PY" cli.py lock --toy-steps 200 --steps 60 --n 96 --batch-size 16 --grad-accum 2 --device "$DEV" \
    --dtype "$DTYPE" --out "$OUT/lock" && check_device "$OUT/lock"
}
run_unlock() {
  "$PY" cli.py unlock --model "$OUT/lock" --epochs 6 --eval-every 3 --seeds 1 --n-eval 40 --controls noise \
    --no-progress --device "$DEV" --out "$OUT/unlock" && check_device "$OUT/unlock"
}
step lock run_lock
if [ -f "$OUT/lock/results.json" ]; then step unlock run_unlock; else skip unlock "(no lock)"; fi

# --- 4. a quantized load (CUDA + bitsandbytes)
run_4bit() {
  "$PY" - <<'EOF'
import torch
from hooks.models import load_model
full, q = load_model("tiny-llama", device="cuda"), load_model("tiny-llama", device="cuda", load_in="4bit")
ids = full.tokenizer(["The capital of France is"], return_tensors="pt").input_ids.cuda()
with torch.no_grad():
    a, b = full.bridge(ids).float(), q.bridge(ids).float()
corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
print(f"4-bit: hash {q.weight_hash} ({q.identity.weight_hash_method}), logits corr with full {corr:.3f}, "
      f"placement {q.placement.record()}")
assert corr > 0.8 and q.placement.load_in == "4bit"
EOF
}
if [ "$DEV" != cpu ] && "$PY" -c "import bitsandbytes" >/dev/null 2>&1; then step quantized run_4bit
else skip quantized "(needs CUDA and bitsandbytes)"; fi

# --- 5. throughput: hooked capture vs plain HF forward, same batches, same run
if [ -f benchmarks/bench_reference.py ]; then
  step throughput "$PY" benchmarks/bench_reference.py --device "$DEV"
elif [ "$DEV" = cpu ]; then
  step throughput "$PY" benchmarks/bench_device.py --device cpu --hidden 256 --layers 4 --rows 128 --repeats 1
else
  step throughput "$PY" benchmarks/bench_device.py --device "$DEV" --dtype bfloat16 --hidden 2048 --layers 16 \
    --rows 1024 --batch-size 64
fi

echo
echo "gaplens gpu_check ($MODE mode, device $DEV) — $(head -1 "$LOG/env.txt")"
echo "$(sed -n 2p "$LOG/env.txt")"
printf '%s\n' "${SUMMARY[@]}"
echo "logs and runs: $OUT  (${SECONDS}s in all)"
exit $STATUS
