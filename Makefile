# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install model demo test test-fast lint test-deps bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

model: install
	$(BIN)/catalog-service models install

demo: model
	$(BIN)/catalog-service demo

# The checks first: they take seconds, the tests minutes.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test-deps: model
	PYTHON=$(BIN)/python scripts/ensure-redis

# Tests marked both_databases run on PostgreSQL as well when one answers; the rest run on SQLite.
test: lint test-deps
	scripts/ensure-chromium
	scripts/ensure-tools
	CATALOG_TEST_POSTGRES_URL="$${CATALOG_TEST_POSTGRES_URL-$$(PYTHON=$(BIN)/python scripts/postgres-url)}" \
		$(BIN)/python -m pytest

# The edit loop: SQLite only, no browser, no test marked slow, no checks (`make lint` runs those).
test-fast: test-deps
	CATALOG_TEST_POSTGRES_URL= $(BIN)/python -m pytest -m "not browser and not slow"

bench: model
	PYTHON=$(BIN)/python scripts/ensure-redis
	$(BIN)/python benchmarks/cutout.py
	$(BIN)/python benchmarks/cutout_quality.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/scenes.py
	$(BIN)/python benchmarks/backfill.py --products 200

clean:
	rm -rf $(VENV) var demo-out .pytest_cache
