#!/usr/bin/env bash
# Download, here (the machine with PyPI access), what the GPU check (run_gpu_check.sh) needs beyond the GPU
# machine's own Python 3.12 + torch + pandas/pyarrow/pytest/pillow: the pinned transformers==5.23.0 (pure Python)
# with its dependencies at the versions it needs (huggingface_hub, tokenizers, safetensors, ...), pycocotools and
# nvidia-ml-py, as cp312 manylinux wheels. numpy is left out (torch brings it there) to keep the carried folder
# small (~30 MB of the device tool's 64 MiB).
# They land in scripts/gpu/wheels/, git-ignored (scripts/gpu/.gitignore): wheels are never committed; the device
# tool carries the folder when the run names it in `carry`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pip="${PIP:-$here/../../.venv/bin/pip}"
rm -rf "$here/wheels"
mkdir -p "$here/wheels"
"$pip" download --quiet --disable-pip-version-check --python-version 3.12 --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_34_x86_64 -d "$here/wheels" \
  "transformers==5.23.0" "pycocotools==2.0.11" "nvidia-ml-py"
rm -f "$here"/wheels/numpy-*.whl
du -sh "$here/wheels"
ls "$here/wheels"
