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

test: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra

bench: venv
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_dedupe.py
	$(BIN)/python benchmarks/bench_hamming.py
	$(BIN)/python benchmarks/bench_sam3.py
