# Two commands on a fresh machine:
#   make run    create .venv if missing, install, run the main job (kedro run --pipeline sgt)
#   make test   create .venv if missing, install, run the whole test suite (slow end-to-end tests too)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel: an unpinned torch pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

export KEDRO_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
# OpenMP threads sleep rather than spin at barriers: spinning threads made 2-thread torch up to ~30x
# slower whenever another process held a core (torchrun peers, the data pipelines' workers).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install run test test-fast bench bench-sweep viz clean-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/kedro run --pipeline sgt

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

bench: install
	$(BIN)/python benchmarks/rendering.py
	$(BIN)/python benchmarks/train_step.py

bench-sweep: install  # ~20 min: two sweeps for pruning, then 1 and 2 workers
	$(BIN)/python benchmarks/sweep.py

viz: install
	$(BIN)/python -m pip install --quiet -e ".[viz]"
	$(BIN)/kedro viz run
