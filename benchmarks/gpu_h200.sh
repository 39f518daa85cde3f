#!/usr/bin/env bash
# GPU figures for docs/benchmarks.md, in one device call (see the device tool's README).
#
# The device's python3 has torch (CUDA), numpy, scipy, h5py, safetensors, tensorboard, rich, pyyaml, but not
# PyAV: before the call, fetch its wheel here (python 3.12, manylinux x86-64) into the ignored folder .whl:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0
# then run:  run(command="bash benchmarks/gpu_h200.sh", carry=[".whl"], timeout_s=600)
#
# It prints one table: it/s and peak memory of `tganv2 train` (ucf101-192 on the synthetic dataset at 192 px,
# fp32 and bf16) and the `tganv2 bench step` JSON for ucf101-192 and faceforensics-256 (largest batch, MFU).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src
fi
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
ITERS=${ITERS:-200}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
for precision in bf16 fp32; do
  python3 -m tganv2.cli train --preset ucf101-192 --device cuda --iterations "$ITERS" --batch 32 \
    --precision "$precision" --workers 12 --checkpoint-every 100000 --sample-every 100000 --no-progress \
    --out "$OUT/train-$precision" train.log_every=10 data.synthetic_size=2048 2>&1 | tail -2
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
print(f"{'run':<24}{'median s/it':>12}{'it/s':>8}{'peak GB':>9}")
for run in sorted(Path(sys.argv[1]).glob("train-*")):
    rows = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "sec_per_it" in r][2:]  # skip warm-up
    s = statistics.median(r["sec_per_it"] for r in rows)
    print(f"{'ucf101-192 ' + run.name[6:]:<24}{s:>12.3f}{1 / s:>8.2f}{max(r['peak_mem_gb'] for r in rows):>9.1f}")
PY
for preset in ucf101-192 faceforensics-256; do
  for precision in bf16 fp32; do
    python3 -m tganv2.cli bench step --preset "$preset" --precision "$precision" --device cuda \
      --variants tganv2 no-subsampling --find-max-batch --output "$OUT/step-$preset-$precision.json" 2>&1 | tail -8
  done
done
