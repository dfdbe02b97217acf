#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh installs on the GPU machine: Python 3.12 with torch, torchvision, transformers,
# accelerate, huggingface_hub, safetensors, scipy, scikit-learn, pyyaml, matplotlib and jinja2, but without these
# (and without a network). Downloaded from PyPI into .gpu_wheels/ (ignored by git; the device tool carries it),
# binary only, for CPython 3.12 on manylinux x86_64; no dependencies are resolved (--no-deps): the list is complete
# for condbench's imports on the script's path. The versions are those the CPU tests run with.
#   bash tools/gpu_wheels.sh           # then: the device tool's carry: [".gpu_wheels"]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpu_wheels
wheels=(
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5  # condbench.suites
  typing-extensions==4.16.0  # pydantic 2.14 needs a newer one than torch does
  diffusers==0.42.1 importlib-metadata==10.2.0 lazy-importer==0.1.0 zipp==4.1.2  # the SD-VAE decoder (AutoencoderKL)
  torch-fidelity==0.4.0  # the Inception feature network of the ImageNet metrics
)
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
rm -rf "$dest"
"${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" --dest "$dest" "${wheels[@]}"
ls "$dest"
du -sh "$dest"
