# Every install step the project needs lives here: CI runs `make test` on a clean clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config.example.toml

.PHONY: install run test lint format demo bench screenshots clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: install
	$(BIN)/csms serve --config $(CONFIG)

test: install
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/python -m simulators.demo

bench: install
	$(BIN)/python -m benchmarks

screenshots: install
	$(BIN)/python -m tests.dashboard_screenshots --out docs

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
