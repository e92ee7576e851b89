#!/usr/bin/env bash
# The checks a lent GPU runs, within 8 minutes: install the CUDA stack, the parity tests
# on the GPU, then the bf16 train step (MFU) and the evaluation (images/s) as JSON.
#
#   experiments/benchmarks/accelerator_check.sh [OUT_DIR]      # default: $OUT, else /tmp
#   SCALE_DOWN=1 experiments/benchmarks/accelerator_check.sh DIR   # CPU: no install, tiny sizes
#
# Writes OUT_DIR/parity.txt (pytest's summary), OUT_DIR/accelerator_check.json and
# OUT_DIR/summary.json (each stage's exit code and seconds). A failed stage does not
# stop the next; the exit code is the worst stage's.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-${OUT:-/tmp/accelerator_check}}"
python="${PYTHON:-python}"
mkdir -p "$out"
stages=()
worst=0

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, record code and time
  local name=$1 limit=$2 start code
  shift 2
  start=$(date +%s)
  timeout "$limit" "$@"
  code=$?
  stages+=("\"$name\": {\"code\": $code, \"seconds\": $(( $(date +%s) - start ))}")
  (( code > worst )) && worst=$code
  echo "== $name: exit $code"
}

if [[ "${SCALE_DOWN:-0}" == 1 ]]; then
  parity=(tests/test_losses.py)
  platform=cpu
  scale=(--scale_down)
else
  stage install 150 "$python" -m pip install -q -e ".[cuda,test]"
  parity=(tests/test_model.py tests/test_hf_parity.py tests/test_losses.py
          tests/test_accumulation.py tests/test_text_trim.py)
  platform=cuda   # tests/conftest.py would otherwise pin the tests to the CPU
  scale=()
fi
JAX_PLATFORMS=$platform stage parity 150 "$python" -m pytest "${parity[@]}" -q -x -p no:cacheprovider \
  -o addopts="" > "$out/parity.txt" 2>&1
tail -n 3 "$out/parity.txt"
stage timing 240 "$python" -m experiments.benchmarks.accelerator_check \
  --out "$out/accelerator_check.json" "${scale[@]}"
printf '{%s}\n' "$(IFS=,; echo "${stages[*]}")" > "$out/summary.json"
exit "$worst"
