# The two commands of the README. Both set everything up on a fresh machine with Python 3.10+.
#   make demo   a short real DMaskingNAS search on Fashion-MNIST on the CPU (about 8 minutes on 2 cores)
#   make test   the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup data lint

setup: $(VENV)/.installed data

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

data:
	@scripts/install_data.sh

demo: setup
	$(BIN)/supernas search recipes/fmnist_dmasking.yaml

test: setup
	HYPOTHESIS_PROFILE=ci PYTHONHASHSEED=0 $(BIN)/python -m pytest -q -n auto --dist worksteal

lint: setup
	$(BIN)/ruff check src tests benchmarks
