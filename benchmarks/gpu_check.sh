#!/usr/bin/env bash
# condbench's GPU figures in one command, on a machine with Python 3.12 and torch but nothing of condbench and no
# network (the missing wheels travel in .gpu_wheels/, made by tools/gpu_wheels.sh). Writes, under OUT_DIR:
# gpu_check.json and gpu_check.md (benchmarks/gpu_check.py), gpu_check.log, and projection.txt (the imagenet
# suite's REPA cells projected by `condbench run imagenet --dry-run --throughput gpu_check.json`).
#   bash benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options, e.g. --budget-s 300]
#   PYTHON=.tox/shared/bin/python bash benchmarks/gpu_check.sh /tmp/check --small     # the same on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options]}"
shift
mkdir -p "$out"
py="${PYTHON:-python3}"
site="$(mktemp -d)"
if ! "$py" -c "import pydantic, diffusers, torch_fidelity" 2> /dev/null; then  # a bare machine: the carried wheels
  if ! compgen -G ".gpu_wheels/*.whl" > /dev/null; then
    echo "no .gpu_wheels/*.whl: run tools/gpu_wheels.sh here, and carry .gpu_wheels to the GPU machine" >&2
    exit 2
  fi
  "$py" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$site" .gpu_wheels/*.whl
fi
export PYTHONPATH="$PWD/src:$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 CONDBENCH_OFFLINE=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; } 2>&1 \
  | tee "$out/gpu_check.log"
"$py" benchmarks/gpu_check.py --out "$out/gpu_check.json" --markdown "$out/gpu_check.md" "$@" 2>&1 \
  | tee -a "$out/gpu_check.log"
for compile in "" "--compile"; do
  echo "\$ condbench run imagenet --dry-run --models repa-sit-xl-2 --precision bf16 $compile --throughput FILE"
  "$py" -m condbench run imagenet --dry-run --models repa-sit-xl-2 --precision bf16 $compile \
    --throughput "$out/gpu_check.json" 2>&1 || echo "(exit $?)"
done > "$out/projection.txt"
cat "$out/projection.txt"
