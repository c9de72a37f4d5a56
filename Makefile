# Ember: `make install` then `make test`. Everything runs from the local virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On a machine without an NVIDIA driver, pin torch to the CPU build (constraints-cpu.txt);
# with one, pip picks its default (CUDA) build. Override with `make install TORCH_CONSTRAINT=`.
TORCH_CONSTRAINT ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,constraints-cpu.txt)
PIP_C := $(if $(TORCH_CONSTRAINT),-c $(TORCH_CONSTRAINT),)
CONFIG ?= configs/quickstart.yaml
RUNS ?= runs
# `make bench`: the tiny twins of configs/bench/ (configs/debug/bench_*.yaml) at CPU-sized contexts, about a minute
# on a CPU. The GPU comparison: make bench BENCH_CONFIGS='configs/bench/*.yaml' BENCH_ARGS=
BENCH_CONFIGS ?= configs/debug/bench_*.yaml
BENCH_ARGS ?= --contexts 256,1024,4096 --threads 1

.PHONY: install test test-fast fit bench ui lint clean

install:  ## create .venv and install ember with its test dependencies
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q $(PIP_C) -e '.[test]'
	$(BIN)/ember --version

test:  ## the CPU test suite (what CI runs)
	$(BIN)/python -m pytest -q -x --durations=10

test-fast:  ## the tests not marked slow (no training): under a minute on 2 CPU cores
	$(BIN)/python -m pytest -q -x -m "not slow" --durations=5

fit:  ## train the quickstart model (CONFIG=... to pick another)
	$(BIN)/ember fit --config $(CONFIG)

bench:  ## `ember bench` speed table (CPU-sized twins; BENCH_CONFIGS='configs/bench/*.yaml' BENCH_ARGS= on a GPU)
	$(BIN)/ember bench --config $(BENCH_CONFIGS) $(BENCH_ARGS)

ui:  ## browse runs in the MLflow UI (installs the full mlflow server on first use)
	@$(BIN)/python -c "import mlflow.server" 2>/dev/null || $(BIN)/pip install -q $(PIP_C) -e '.[ui]'
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(RUNS))/mlflow.db

lint:  ## ruff (installs the dev extra on first use)
	@$(BIN)/python -m ruff --version >/dev/null 2>&1 || $(BIN)/pip install -q $(PIP_C) -e '.[dev]'
	$(BIN)/python -m ruff check ember plugins data_modules callbacks tests benchmarks

clean:
	rm -rf $(RUNS) .pytest_cache
