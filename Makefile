# Two commands on a fresh machine: `make dev` runs every role, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3.11
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
# Installed packages are compiled once, so every start of a role reads bytecode instead of
# compiling each module again (where PYTHONDONTWRITEBYTECODE is set, nothing else would).
export UV_COMPILE_BYTECODE := 1

.PHONY: help setup system-packages dev test lint typecheck importcheck unit bench chaos clean

help:
	@echo "make dev    - set up, migrate and run every role on http://localhost:5001"
	@echo "make test   - set up and run lint, type checks and the test suite"
	@echo "make unit   - the unit tests only (no PostgreSQL, RabbitMQ or role process; seconds)"
	@echo "make bench  - run the benchmarks (PostgreSQL + RabbitMQ; bench.peers installs Dramatiq and Celery in /tmp)"
	@echo "make chaos  - the chaos test for several seeds (CHAOS_SEEDS=1,2,3,4,5), then minutes of overload (OVERLOAD_SECONDS=180)"

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

setup: $(if $(shell command -v uv 2>/dev/null),,.tools/bin/uv)
	$(UV) sync --locked --python $(PYTHON)
	.venv/bin/python -m compileall -q libs services examples bench tests > /dev/null

# Runs the example jobs unless ORCHESTRATOR_JOBS names your own modules.
dev: setup
	ORCHESTRATOR_JOBS="$${ORCHESTRATOR_JOBS:-examples.jobs}" .venv/bin/orchestrator dev

# Chromium and Prometheus, which the browser and metrics tests run (Debian packages).
system-packages:
	bash scripts/install-system-packages.sh

lint: setup
	.venv/bin/ruff check .

typecheck: setup
	.venv/bin/mypy

importcheck: setup
	.venv/bin/lint-imports

test: lint typecheck importcheck system-packages
	.venv/bin/pytest

# The unit tier (tests/unit): no PostgreSQL, RabbitMQ or role process; seconds. Schemathesis's and
# Hypothesis's pytest plugins are not loaded: no unit test uses them, and importing them is
# most of pytest's start-up.
unit: setup
	.venv/bin/pytest tests/unit -p no:schemathesis -p no:hypothesispytest

bench: setup
	.venv/bin/python -m bench.throughput
	.venv/bin/python -m bench.peers

# Random kills and SIGTERMs under load, one run per seed (make test runs one random seed);
# docs/reliability.md says what it checks.
CHAOS_SEEDS ?= 1,2,3,4,5
# Seconds of the long overload test (workers killed and stopped under 10x overload).
OVERLOAD_SECONDS ?= 180
chaos: setup
	ORCHESTRATOR_CHAOS_SEEDS="$(CHAOS_SEEDS)" ORCHESTRATOR_OVERLOAD_LONG_SECONDS="$(OVERLOAD_SECONDS)" \
		.venv/bin/pytest tests/faults/test_chaos.py tests/faults/test_delivery_limit.py -s -p no:warnings

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache
