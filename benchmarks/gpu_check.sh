#!/usr/bin/env bash
# The GPU check in one call (issue 13): correctness, speed and data loading on one CUDA GPU.
#
#   device:    run(command="bash benchmarks/gpu_check.sh", timeout_s=600)   # writes $OUT/gpu_check.{json,md}
#   anywhere:  GPU_CHECK_DRY=1 OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh   # CPU, tiny configs
#
# Needs torch (CUDA), numpy, scipy, h5py, safetensors, tensorboard, rich, tqdm, pyyaml and pytest; no PyAV,
# no network. The stages are described in benchmarks/gpu_check.py. Each runs in its own process under its
# own `timeout`, and the whole check stays within GPU_CHECK_SECONDS (default 470 s): the speed grid gets the
# time the other stages leave and stops itself in time, marking the rows it did not reach as skipped.
# Only gpu_check.json and gpu_check.md are written under $OUT; scratch files (the HDF5 file, compile
# caches) live in a temporary folder elsewhere, deleted on exit. A stage that fails is named on stderr, the
# other stages still run, and the exit status is non-zero after the report is written.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
PY=${PYTHON:-python3}
OUT=${OUT:?set OUT to the folder for gpu_check.json and gpu_check.md}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor" TRITON_CACHE_DIR="$WORK/triton"
export GPU_CHECK_COMMAND="${GPU_CHECK_DRY:+GPU_CHECK_DRY=$GPU_CHECK_DRY }bash benchmarks/gpu_check.sh"
TOTAL=${GPU_CHECK_SECONDS:-470}
REPORT_SECONDS=20
failed=()

stage() {  # stage NAME LIMIT_SECONDS [ARGS...]: run one stage under `timeout`, record its exit status
  local name=$1 limit=$2 rc=0 began=$SECONDS why
  shift 2
  echo "gpu_check: stage $name (limit $limit s)" >&2
  timeout --kill-after=10 "$limit" "$PY" benchmarks/gpu_check.py "$name" --work "$WORK" "$@" || rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - began))" "$limit" >>"$WORK/status.tsv"
  if [ "$rc" -ne 0 ]; then
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then why="timed out after $limit s"; else why="exit status $rc"; fi
    echo "gpu_check: stage $name FAILED ($why)" >&2
    failed+=("$name")
  fi
}

stage env 40
stage correctness 140
stage finite 80
stage gpu-tests 70
stage data 50
left=$((TOTAL - SECONDS - REPORT_SECONDS))
if [ "$left" -ge 30 ]; then
  stage speed "$((left + 10))" --budget "$((left - 10))"
else
  echo "gpu_check: stage speed skipped: only $left s left" >&2
  printf 'speed\t-1\t0\t0\n' >>"$WORK/status.tsv"  # -1: skipped
fi
stage report "$REPORT_SECONDS" --out "$OUT"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "gpu_check: FAILED stages: ${failed[*]} (see $OUT/gpu_check.md)" >&2
  exit 1
fi
echo "gpu_check: every stage passed; the table is $OUT/gpu_check.md" >&2
