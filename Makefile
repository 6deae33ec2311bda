# Two commands for a fresh clone (see README): `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv demo test bench

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: venv
	$(BIN)/samantics demo

# The deployment tests' tools (tests/deploy/requirements.txt), then PostgreSQL, Chromium and docker-compose
# (scripts/test-services.sh: Debian's packages if missing, a throwaway cluster on 127.0.0.1, stopped after).
test: venv
	$(BIN)/pip install --quiet --disable-pip-version-check -r tests/deploy/requirements.txt
	@eval "$$(scripts/test-services.sh start)"; trap 'scripts/test-services.sh stop' EXIT; \
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra

bench: venv
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_dedupe.py
	$(BIN)/python benchmarks/bench_hamming.py
	$(BIN)/python benchmarks/bench_sam3.py
	$(BIN)/python benchmarks/bench_sensor.py
