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
# `make ui`: the address the MLflow server listens on (http://$(UI_HOST):$(UI_PORT))
UI_HOST ?= 127.0.0.1
UI_PORT ?= 5000
# `make bench`: the tiny twins of configs/bench/ (configs/debug/bench_*.yaml) at CPU-sized contexts, about a minute
# on a CPU. The GPU comparison: make bench BENCH_CONFIGS='configs/bench/*.yaml' BENCH_ARGS=
BENCH_CONFIGS ?= configs/debug/bench_*.yaml
BENCH_ARGS ?= --contexts 256,1024,4096 --threads 1
# `make mutate`: benchmarks/mutation.py, options through MUTATE_ARGS (e.g. '--only lif.leak_one_minus_beta --slow')
MUTATE_ARGS ?=
# `make fuzz`: the fuzz suite alone, longer than in `make test` (3 cases per target, seed 0); RELIABILITY.md
FUZZ_EXAMPLES ?= 15
FUZZ_SEED ?= 1

.PHONY: install test test-fast mutate fuzz fit bench ui-env ui lint clean

install:  ## create .venv and install ember with its test dependencies
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q $(PIP_C) -e '.[test]'
	$(BIN)/ember --version

# test, test-fast, fit and bench install first when .venv is missing or older than the project's dependencies
$(BIN)/ember: pyproject.toml constraints-cpu.txt
	$(MAKE) install
	@touch $@

test: $(BIN)/ember  ## the CPU test suite (what CI runs); installs first if needed
	$(BIN)/python -m pytest -q -x --durations=10

test-fast: $(BIN)/ember  ## the tests not marked slow (no training): under a minute on 2 CPU cores
	$(BIN)/python -m pytest -q -x -m "not slow" --durations=5

mutate: $(BIN)/ember  ## planted bugs in ember/ops and the memory, TRM, LIF rules: the share the tests catch (~11 min)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/mutation.py $(MUTATE_ARGS)

fuzz: $(BIN)/ember  ## the fuzz suite of RELIABILITY.md, FUZZ_EXAMPLES cases per target (~10 min at 15)
	EMBER_FUZZ_SEED=$(FUZZ_SEED) EMBER_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) OMP_NUM_THREADS=1 \
		$(BIN)/python -m pytest -q tests/cli/test_fuzz_*.py

fit: $(BIN)/ember  ## train the quickstart model (CONFIG=... to pick another); installs first if needed
	$(BIN)/ember fit --config $(CONFIG)

bench: $(BIN)/ember  ## `ember bench` speed table (CPU-sized twins; BENCH_CONFIGS='configs/bench/*.yaml' BENCH_ARGS= on a GPU)
	$(BIN)/ember bench --config $(BENCH_CONFIGS) $(BENCH_ARGS)

# The UI's server must be the client's MLflow version: a store written by a newer client is refused by an older server
# ("out-of-date database schema"), and an older one would be migrated under the client's feet. Nothing to do when
# .venv-ui holds that version already; CI builds it (.ci/run) for the tests against a real server.
ui-env: $(BIN)/ember  ## build .venv-ui: the full MLflow server of the client's version (for make ui and the tests)
	@v=$$($(BIN)/python -c "import mlflow; print(mlflow.__version__)"); \
	if [ "$$(.venv-ui/bin/python -c 'import mlflow; print(mlflow.__version__)' 2>/dev/null)" != "$$v" ]; then \
		echo "building .venv-ui with mlflow==$$v (once)"; \
		{ test -d .venv-ui || $(PYTHON) -m venv .venv-ui; } && .venv-ui/bin/pip install -q -U pip && \
		.venv-ui/bin/pip install -q "mlflow==$$v" || { echo "error: the full mlflow==$$v server cannot be installed \
	here; install a client version that has one, e.g. .venv/bin/pip install 'mlflow-skinny==<version>', or serve \
	the store from an environment of your own: mlflow ui --backend-store-uri sqlite:///$(abspath $(RUNS))/mlflow.db"; \
		exit 2; }; \
	fi

ui: ui-env  ## browse runs in the MLflow UI (the full MLflow server, the client's version, in its own .venv-ui)
	@echo "open http://$(UI_HOST):$(UI_PORT)/#/experiments/1/runs?workflowType=machine_learning (Ember's first \
	experiment, in MLflow's model-training view; the experiment list is http://$(UI_HOST):$(UI_PORT)/#/experiments)"
	.venv-ui/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(RUNS))/mlflow.db --host $(UI_HOST) --port $(UI_PORT)

lint:  ## ruff (installs the dev extra on first use)
	@$(BIN)/python -m ruff --version >/dev/null 2>&1 || $(BIN)/pip install -q $(PIP_C) -e '.[dev]'
	$(BIN)/python -m ruff check ember plugins data_modules callbacks tests benchmarks

clean:
	rm -rf $(RUNS) .pytest_cache
