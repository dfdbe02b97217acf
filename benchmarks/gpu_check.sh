#!/usr/bin/env bash
# condbench's GPU figures in one command, on a machine with Python 3.12 and torch but nothing of condbench and no
# network (the missing wheels travel in .gpu_wheels/, made by tools/gpu_wheels.sh). Writes, under OUT_DIR:
# gpu_check.json and gpu_check.md (benchmarks/gpu_check.py), gpu_check.log, and projection.txt (the imagenet
# suite's REPA cells projected by `condbench run imagenet --dry-run --throughput gpu_check.json`).
#   bash benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options, e.g. --budget-s 300]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options]}"
shift
mkdir -p "$out"
site="$(mktemp -d)"
if compgen -G ".gpu_wheels/*.whl" > /dev/null; then
  python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$site" .gpu_wheels/*.whl
fi
export PYTHONPATH="$PWD/src:$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 CONDBENCH_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$out/gpu_check.log" || true
python3 benchmarks/gpu_check.py --out "$out/gpu_check.json" --markdown "$out/gpu_check.md" "$@" 2>&1 \
  | tee -a "$out/gpu_check.log"
for compile in "" "--compile"; do
  echo "\$ condbench run imagenet --dry-run --models repa-sit-xl-2 --precision bf16 $compile --throughput gpu_check.json"
  python3 -m condbench run imagenet --dry-run --models repa-sit-xl-2 --precision bf16 $compile \
    --throughput "$out/gpu_check.json" 2>&1 || echo "(exit $?)"
done > "$out/projection.txt"
cat "$out/projection.txt"
