#!/usr/bin/env bash
# Download, here (the machine with PyPI access), the cp312 manylinux wheels that bench_sam3.py --full needs
# beyond what the GPU machine has (Python 3.12, torch 2.11, transformers): pycocotools, pandas + pyarrow
# (label_partition writes parquet parts), nvidia-ml-py (GPU busy), and the pure-Python bits they pull in.
# They land in scripts/gpu/wheels/, which is git-ignored (scripts/gpu/.gitignore): wheels are never committed.
# run_h200.sh installs only the ones whose module is missing there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pip="${PIP:-$here/../../.venv/bin/pip}"
mkdir -p "$here/wheels"
"$pip" download --quiet --disable-pip-version-check --python-version 3.12 --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --no-deps -d "$here/wheels" \
  "pycocotools==2.0.*" "pandas>=2.2,<3" "pyarrow>=15" "nvidia-ml-py" "python-dateutil" "pytz" "tzdata" "six" \
  "filelock" "pyyaml"
du -sh "$here/wheels"
ls "$here/wheels"
