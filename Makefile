# Two commands: `make run` (the whole service on SQLite) and `make test` (the whole suite).
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test drills bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m service run

test: install
	$(BIN)/python -m pytest -m "not drill" $(PYTEST_ARGS)

# Fault drills (RELIABILITY.md): real processes, a private PostgreSQL stopped and restarted
# under load, Cal.com storms. Minutes, not seconds; .ci/run runs them after `make test`.
drills: install
	$(BIN)/python -m pytest -m drill tests/drills $(PYTEST_ARGS)

# SPEC §10 benchmarks (bench/README.md); appends a dated section to BENCHMARKS.md. ~20 min.
bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
