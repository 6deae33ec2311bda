#!/usr/bin/env bash
# The GPU check, one command, for a machine with a CUDA GPU and no internet (Python 3.12 with torch, pandas,
# pyarrow, pytest and pillow preinstalled; transformers there may be another version than the pinned one):
#
#   here, once:  scripts/gpu/fetch_wheels.sh      # cp312 wheels into scripts/gpu/wheels/ (git-ignored)
#   device:      run(command="bash scripts/gpu/run_gpu_check.sh", carry=["scripts/gpu/wheels"], timeout_s=570)
#
# 1. A venv over the machine's own packages (--system-site-packages: its torch/CUDA stay) with the carried
#    transformers==5.23.0 and whatever else is missing or too old, installed from the wheels only (--no-index).
# 2. The GPU tests (pytest -m cuda, plus the sam3_video-shape loads): device RLE on CUDA through the production
#    path against pycocotools, bf16 against fp32 within the stated tolerance, a real CUDA out-of-memory error.
# 3. benchmarks/bench_sam3.py --full with the time that is left (rows are printed as they finish).
# Everything it reports goes to $OUT (versions.txt, gpu-tests.txt + .xml, bench_sam3_full.txt, summary.txt), the
# folder the device tool hands back. Total: under 9 minutes (BUDGET_S, default 530 s, from the start).
set -uo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
BUDGET_S="${BUDGET_S:-530}"
OUT="${OUT:-/tmp/samantics-gpu-check}"
mkdir -p "$OUT"
WHEELS=scripts/gpu/wheels
VENV="${TMPDIR:-/tmp}/samantics-gpu-venv"
left() { echo $(( BUDGET_S - ($(date +%s) - start) )); }
say() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$OUT/summary.txt"; }

if [ -z "${PY:-}" ] && [ -z "$(ls "$WHEELS"/*.whl 2>/dev/null)" ]; then
  say "no wheels in $WHEELS: run scripts/gpu/fetch_wheels.sh on a machine with PyPI, then carry $WHEELS"
  exit 2
fi
PIPQ=(--quiet --disable-pip-version-check --no-index)
if [ -n "${PY:-}" ]; then  # an interpreter that has everything already (a dry run of the steps below, on a CPU)
  say "using PY=$PY as it is"
  PY_GIVEN=1
elif python3 -m venv --system-site-packages "$VENV" > "$OUT/pip.txt" 2>&1; then
  PY="$VENV/bin/python"
  if ! "$PY" -m pip install "${PIPQ[@]}" --find-links "$WHEELS" "transformers==5.23.0" pycocotools nvidia-ml-py \
       >> "$OUT/pip.txt" 2>&1; then
    # The resolver wanted something not carried (say, a newer numpy): every carried wheel into the venv as is.
    say "pip could not resolve from the carried wheels (pip.txt); installing them all without resolving"
    "$PY" -m pip install "${PIPQ[@]}" --no-deps "$WHEELS"/*.whl >> "$OUT/pip.txt" 2>&1 \
      || { say "pip install failed (see pip.txt)"; tail -20 "$OUT/pip.txt"; exit 4; }
  fi
else  # no ensurepip there: the wheels into a folder put first on the path, the machine's own site after it
  say "python3 -m venv failed (pip.txt); installing the carried wheels with --target instead"
  SITE="${TMPDIR:-/tmp}/samantics-gpu-site"
  python3 -m pip install "${PIPQ[@]}" --no-deps --target "$SITE" "$WHEELS"/*.whl >> "$OUT/pip.txt" 2>&1 \
    || { say "pip install --target failed (see pip.txt)"; tail -20 "$OUT/pip.txt"; exit 4; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  PY=python3
fi
"$PY" - > "$OUT/versions.txt" 2>&1 <<'PYEOF'
import sys, torch, transformers, numpy, pycocotools
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA DEVICE"
print("python", sys.version.split()[0], "| torch", torch.__version__, "| transformers", transformers.__version__,
      "| numpy", numpy.__version__, "| cuda", torch.version.cuda, "|", gpu)
PYEOF
say "$(cat "$OUT/versions.txt")"
if grep -q "NO CUDA DEVICE" "$OUT/versions.txt" && [ -z "${PY_GIVEN:-}" ]; then
  say "torch sees no GPU here: the cuda tests would only be skipped"; exit 5
fi
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv,noheader >> "$OUT/versions.txt" 2>&1 || true

# The GPU tests: every cuda-marked test, and the checkpoint-shape loads on this machine's Python and torch.
tests_s=$(( $(left) < 200 ? $(left) : 200 ))
OMP_NUM_THREADS=4 timeout "$tests_s" "$PY" -m pytest -q -p no:cacheprovider -rs -x \
  tests/core/test_sam3_model.py tests/core/test_label_oom_cuda.py tests/core/test_rle_torch.py \
  -k "cuda or no_missing_or_unexpected or tracker_loader or real_checkpoints_shape" \
  --junitxml "$OUT/gpu-tests.xml" > "$OUT/gpu-tests.txt" 2>&1
tests_rc=$?
say "GPU tests: exit $tests_rc (124: cut at ${tests_s} s): $(tail -1 "$OUT/gpu-tests.txt")"

# The benchmark with what is left (20 s kept for handing $OUT back).
bench_s=$(( $(left) - 20 ))
if [ "$bench_s" -gt 60 ]; then
  timeout "$bench_s" "$PY" -u benchmarks/bench_sam3.py --full 2>&1 \
    | grep -v "Writing model shards\|Loading weights" > "$OUT/bench_sam3_full.txt"
  bench_rc=${PIPESTATUS[0]}
  say "bench_sam3.py --full: exit $bench_rc (124: cut at ${bench_s} s; the rows printed so far stand)"
else
  bench_rc=125
  say "no time left for bench_sam3.py --full"
fi
cat "$OUT/gpu-tests.txt" | tail -15
cat "$OUT/bench_sam3_full.txt" 2>/dev/null | tail -40
[ "$tests_rc" -eq 0 ] || exit "$tests_rc"
[ "$bench_rc" -eq 0 ] || [ "$bench_rc" -eq 124 ] || exit "$bench_rc"
exit 0
