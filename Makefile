# Two commands set up everything on a fresh machine with Python 3.11 and pip:
#   make demo   - the whole loop on sample data (embedded PostgreSQL, local backend)
#   make test   - the test suite (real PostgreSQL; the Nomad API emulator is the only test double)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test processes (pytest-xdist), each with an embedded PostgreSQL server of its own; TEST_WORKERS=0 runs the
# suite in one. One when HRWSI_DATABASE_URL names a server: the tests' roles and template database are the
# server's, which two processes would create and drop under each other.
TEST_WORKERS ?= $(if $(HRWSI_DATABASE_URL),0,2)
BENCH_ARGS ?=

.PHONY: demo test bench chaos install clean lint nomad-record

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hrwsi demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# hrwsi against pgqueuer (the `bench` extra) and a raw trigger/notify floor; BENCH_ARGS=--quick for a smoke run
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

chaos: $(STAMP)
	$(BIN)/python benchmarks/chaos.py

# Record a real Nomad agent's answers for replay in the contract suite (NOMAD_ADDR, NOMAD_TOKEN).
nomad-record: $(STAMP)
	$(BIN)/python -m hrwsi.testing.nomad_recorder

clean:
	rm -rf $(VENV) bench-results .pytest_cache
