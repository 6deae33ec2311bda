# Two commands for a fresh clone (see README): `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv demo lint test test-fast test-chaos bench trainer-venvs

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,ray]"
	touch $@

demo: venv
	$(BIN)/samantics demo

# Label Studio for the review round-trip tests (tests/review/), in a venv of its own: label-studio-sdk's pins
# (opencv-python-headless<4.13, numpy<2.3) would downgrade the project's. About a minute, once (the stamp).
LS_VENV ?= .venv-labelstudio
LABEL_STUDIO_VERSION ?= 1.23.2

$(LS_VENV)/.installed:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install --quiet --upgrade pip
	$(LS_VENV)/bin/pip install --quiet "label-studio==$(LABEL_STUDIO_VERSION)"
	touch $@

# Ultralytics (.venv-yolo, on top of .venv's torch) and FiftyOne (.venv-fiftyone) for the export tests
# (tests/test_yolo_export.py), each in a venv of its own: scripts/trainer-venvs.sh says why. A no-op once made.
trainer-venvs: venv
	VENV=$(VENV) PYTHON=$(PYTHON) scripts/trainer-venvs.sh yolo fiftyone

# ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade) and mypy, both configured in pyproject.toml.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# The deployment tests' tools (tests/deploy/requirements.txt), then PostgreSQL, Chromium and docker-compose
# (scripts/test-services.sh: Debian's packages if missing, a throwaway cluster on 127.0.0.1, stopped after).
test: venv lint $(LS_VENV)/.installed trainer-venvs
	$(BIN)/pip install --quiet --disable-pip-version-check -r tests/deploy/requirements.txt
	@eval "$$(scripts/test-services.sh start)"; trap 'scripts/test-services.sh stop' EXIT; \
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra --durations=25

# Only the chaos test (in `make test` too): run workers SIGKILLed at random points under a real daemon
# (tests/test_chaos.py; about 2.5 minutes; SAMANTICS_CHAOS_SEED=N picks another seed).
test-chaos: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra -m chaos

# The edit loop: everything but the tests marked `slow` (Dagster processes, the demo, benchmarks, the stack);
# no services needed (the deployment tests that need them skip). Under 3 minutes on 2 cores.
test-fast: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra -m "not slow" --durations=15

# Every benchmark the README quotes a figure from, each printing its table against its baseline in the same
# run (README "Benchmarks"). bench_scale runs at 10 k images here (5.5 min on a shared 2-core machine; its
# default, 100 k, was not timed); the README's 1 M rows are `bench_scale.py --sizes 1000000` by hand (~20 GB of disk), its
# SAM3 bars `bench_sam3.py --full` on a GPU. bench_sensor builds its 1 M empty files once and reuses them.
bench: venv
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_dedupe.py
	$(BIN)/python benchmarks/bench_hamming.py
	$(BIN)/python benchmarks/bench_sam3.py
	$(BIN)/python benchmarks/bench_ml_backend.py
	$(BIN)/python benchmarks/bench_sensor.py
	$(BIN)/python benchmarks/bench_split.py
	$(BIN)/python benchmarks/bench_scale.py --sizes 10000
	$(BIN)/python benchmarks/bench_run_healing.py
	$(BIN)/python benchmarks/bench_audit_memory.py
	$(BIN)/python benchmarks/bench_label_workers.py
	$(BIN)/python benchmarks/bench_quality.py
