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

# The suite mostly waits (sockets, servers started as processes, PostgreSQL), so it runs on
# two pytest-xdist workers per core (`make test TEST_WORKERS=0` runs it in one process). Each
# worker has a PostgreSQL database of its own (tests/pg.py). Tests go out two at a time, in
# the order tests/conftest.py sets (the slow ones first, spread over the workers).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist load --maxschedchunk 2

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
