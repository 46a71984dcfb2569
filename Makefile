# Two commands set everything up: `make run` serves, `make test` checks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint typecheck pytest postgres tools stack demo bench bench-instrumentation clean

run: $(RUN_STAMP)
	$(BIN)/leafwatch serve

test: $(TEST_STAMP) postgres tools lint typecheck pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

pytest: $(TEST_STAMP) postgres tools
	$(BIN)/pytest

postgres:
	@scripts/ensure-postgres.sh

# promtool and amtool: the tests check metrics, rules and routing with the real tools.
tools:
	@scripts/ensure-tools.sh

# The real Prometheus and Alertmanager (Debian packages) with deploy/'s configuration, against
# a LeafWatch that `make run` serves; Ctrl-C stops both.
stack: $(RUN_STAMP) tools
	$(BIN)/leafwatch stack up

# The seed's 30 days in about ten minutes: LeafWatch, Prometheus and Alertmanager started here,
# with rules 30 times faster, and the `story` scenario played against them (docs/simulator.md).
# The [simulate] extra (onnx) builds the worse model of the accuracy phase.
DEMO_STAMP := $(VENV)/.installed-demo
demo: $(DEMO_STAMP) tools
	$(BIN)/leafwatch demo --scenario story --speed 30

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[simulate]'
	touch $@ $(RUN_STAMP)

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/predict.py

# wrk, a C load generator, leaves the server more CPU than a Python one would (the fallback).
bench-instrumentation: $(TEST_STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python benchmarks/instrumentation.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# torch==2.13.0 (the [train] extra) installs a CPU build from this machine's disk.
$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,train,mlflow]'
	touch $@ $(RUN_STAMP)

clean:
	rm -rf $(VENV) var logs build dist src/*.egg-info
