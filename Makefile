# Set up a virtual environment and run arastory. `make train` and `make test` are the README's Quickstart.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch 2.13 (what this project is tested with); set TORCH_SPEC="torch" for your platform's default build.
TORCH_SPEC ?= torch==2.13.0

# What `make lint` checks (narrow it while working: `make lint LINT_PATHS=arastory/llm`).
LINT_PATHS ?= arastory tests bench train.py evaluate.py

.PHONY: setup train test lint wheel-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

train: setup
	$(PY) train.py $(ARGS)

# The suite runs on TEST_WORKERS processes (pytest-xdist), one test file per worker so module fixtures are built once,
# and one torch thread per process so the workers do not fight over the cores. `make test TEST_WORKERS=0`: one process.
TEST_WORKERS ?= 2
test: setup
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

# ruff (lint rules and formatting as configured in pyproject.toml) and mypy on the package; pre-commit runs the same
# ruff hooks on each commit once `$(VENV)/bin/pre-commit install` has been run.
lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

# Build the wheel, install it in a fresh venv, and run --help, a filter and a 5-step training from outside the repo.
wheel-check: setup
	.ci/wheel_check

clean:
	rm -rf outputs multirun .pytest_cache
