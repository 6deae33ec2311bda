#!/usr/bin/env bash
# One prepared GPU check: benchmarks/bench_sam3.py --full on the H200 machine, < 8 min.
#
#   here:      scripts/gpu/fetch_wheels.sh          # once: cp312 wheels into scripts/gpu/wheels/ (git-ignored)
#   device:    run(command="bash scripts/gpu/run_h200.sh", carry=["scripts/gpu/wheels"], timeout_s=540)
#
# The GPU machine has Python 3.12, torch 2.11 and transformers but not pycocotools, pandas' parquet engine,
# nvidia-ml-py (or dagster, which the bench never imports). Only the wheels whose module is missing there are
# installed, with --no-index into a private folder on PYTHONPATH: nothing of the machine's own site is touched.
# Output goes to stdout and, when the device tool provides $OUT, to $OUT/bench_sam3_full.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
WHEELS=scripts/gpu/wheels
SITE="${TMPDIR:-/tmp}/samantics-gpu-site"
if [ ! -d "$WHEELS" ] || [ -z "$(ls "$WHEELS"/*.whl 2>/dev/null)" ]; then
  echo "no wheels in $WHEELS: run scripts/gpu/fetch_wheels.sh on a machine with PyPI, then carry $WHEELS" >&2
  exit 2
fi
need=()
have() { "$PY" -c "import $1" >/dev/null 2>&1; }
have pycocotools || need+=(pycocotools)
have pandas || need+=(pandas python_dateutil pytz tzdata six)
have pyarrow || have fastparquet || need+=(fastparquet cramjam fsspec)
have pynvml || need+=(nvidia_ml_py)
have yaml || need+=(pyyaml)
have filelock || need+=(filelock)
if [ ${#need[@]} -gt 0 ]; then
  files=()
  for n in "${need[@]}"; do files+=("$(ls "$WHEELS"/"$n"-*.whl | head -1)"); done
  echo "installing from carried wheels: ${need[*]}"
  if ! "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "${files[@]}"; then
    echo "pip failed; unpacking the wheels instead (a wheel is a zip of its site-packages files)"
    for f in "${files[@]}"; do "$PY" -m zipfile -e "$f" "$SITE" || exit 3; done
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv,noheader || true
out="${OUT:-/tmp}/bench_sam3_full.txt"
# 470 s for the bench itself leaves the device tool's 540 s limit room for start-up and the copy back.
timeout 470 "$PY" -u benchmarks/bench_sam3.py --full "$@" 2>&1 | grep -v "Writing model shards\|Loading weights" | tee "$out"
rc=${PIPESTATUS[0]}
echo "bench exit status: $rc (124: cut by the 470 s limit; the rows printed so far stand)"
exit "$rc"
