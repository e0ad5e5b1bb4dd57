# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install model demo test bench clean

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

test: model
	PYTHON=$(BIN)/python scripts/ensure-redis
	scripts/ensure-chromium
	CATALOG_TEST_POSTGRES_URL="$${CATALOG_TEST_POSTGRES_URL-$$(PYTHON=$(BIN)/python scripts/postgres-url)}" \
		$(BIN)/python -m pytest

bench: model
	PYTHON=$(BIN)/python scripts/ensure-redis
	$(BIN)/python benchmarks/cutout.py
	$(BIN)/python benchmarks/cutout_quality.py
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) var demo-out .pytest_cache
