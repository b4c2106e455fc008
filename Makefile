# Each target installs what it needs first, so `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench coverage clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	mkdir -p out/demo
	$(BIN)/scalefit fit data/example_runs.csv --plot-dir out/demo --json out/demo/fit.json
	$(BIN)/python scripts/demo_truth.py out/demo/fit.json data/example_truth.json

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check scaling_cli tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

coverage: $(STAMP)
	$(BIN)/python benchmarks/coverage.py
	$(BIN)/python benchmarks/coverage_checkpoints.py

clean:
	rm -rf $(VENV) out .pytest_cache
