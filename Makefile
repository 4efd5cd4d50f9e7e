# Engage: two commands for a new machine (Python 3.11, pip and make).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: run test lint install clean constraints screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -c constraints.txt -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## make run: migrate the development database, seed demo data once, serve on http://127.0.0.1:5000
run: install
	ENGAGE_CONFIG=$${ENGAGE_CONFIG:-development} $(BIN)/engage db upgrade
	ENGAGE_CONFIG=$${ENGAGE_CONFIG:-development} $(BIN)/engage demo seed
	ENGAGE_CONFIG=$${ENGAGE_CONFIG:-development} $(BIN)/engage run --with-scheduler --host 127.0.0.1 --port 5000

## make test: start the local PostgreSQL and install Debian's Chromium when missing (.ci/prerequisites), ruff, then the whole suite on SQLite and PostgreSQL; the PostgreSQL and browser tests are required whenever those are there
test: install
	bash .ci/prerequisites
	$(BIN)/ruff check .
	url="$${TEST_DATABASE_URL:-$$($(BIN)/python -m tests.local_postgres)}"; \
	TEST_DATABASE_URL="$$url" \
	ENGAGE_REQUIRE_POSTGRES="$${ENGAGE_REQUIRE_POSTGRES:-$${url:+1}}" \
	ENGAGE_REQUIRE_BROWSER="$${ENGAGE_REQUIRE_BROWSER:-$$(test -x /usr/bin/chromium && echo 1)}" \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

## make screenshots: PNGs of the main pages at 320, 768 and 1280 px in build/screenshots/ (demo data, headless Chromium)
screenshots: install
	bash .ci/prerequisites
	ENGAGE_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q -p no:cacheprovider -s tests/accessibility/screenshots.py

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache

## make constraints: re-resolve the newest allowed versions into constraints.txt (then run make test)
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install -q -e ".[dev]"
	{ head -n 2 constraints.txt; .venv-constraints/bin/pip freeze --exclude-editable | grep -v '^engage'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-constraints
