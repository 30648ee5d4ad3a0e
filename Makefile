# Two commands: `make run` (the whole service on SQLite) and `make test` (the whole suite).
# Both create .venv and install what they need on first use (`make run` only the service itself).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install run test lint drills bench screenshots clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	touch $(DEV_STAMP) $(RUN_STAMP)

install: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(BIN)/python -m service run

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "not drill" $(PYTEST_ARGS)

# ruff (lint and format), the import contracts between the rooms of service/ (pyproject.toml), and the type check.
lint: $(DEV_STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

# Fault drills (RELIABILITY.md): real processes, a private PostgreSQL stopped and restarted
# under load, Cal.com storms. Minutes, not seconds; .ci/run runs them after `make test`.
drills: $(DEV_STAMP)
	$(BIN)/python -m pytest -m drill tests/drills $(PYTEST_ARGS)

# The benchmarks (bench/README.md); appends a dated section to BENCHMARKS.md. About 30 minutes.
bench: $(DEV_STAMP)
	$(BIN)/python bench/run_all.py

# The README's console screenshots (docs/console-*.png), taken by the browser tests in a real
# Chromium (Debian: apt-get install chromium chromium-driver) on SQLite.
screenshots: $(DEV_STAMP)
	REQUIRE_BROWSER=1 SCREENSHOTS_DIR=docs $(BIN)/python -m pytest tests/browser -k sqlite -p no:cacheprovider -q

# Removes the virtualenv and caches. The database (var/, with every account and secret) is kept:
# delete it yourself, knowingly, with `rm -rf var/`.
clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache build
