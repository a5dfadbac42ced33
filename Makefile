# KubeClassify development tasks. `make test` sets everything up from the package registries.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS := operator,gateway,inference,cpu,local,dev
PYTEST := $(BIN)/pytest

.PHONY: help install demo up down tools browser lint format crds reference chart-files test test-unit test-integration test-chart test-e2e test-calendar constraints clean bench bench-plot bench-predictor bench-batch bench-gateway bench-operator bench-http

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	@touch $@

install: $(STAMP)  ## create .venv and install the project with every extra

HOME_DIR := .local/stack

demo: install  ## the main job on this machine: local S3, Redis, predictor, gateway; a daily batch classified
	$(BIN)/kubeclassify demo --home $(HOME_DIR)

up: install  ## start the local stack and leave it running (web page, API docs, CLI)
	$(BIN)/kubeclassify up --home $(HOME_DIR)

down:  ## stop the local stack
	@if [ -x $(BIN)/kubeclassify ]; then $(BIN)/kubeclassify down --home $(HOME_DIR); fi

$(BIN)/helm $(BIN)/kubectl: scripts/install_tools.py | $(STAMP)
	$(BIN)/python scripts/install_tools.py

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

tools: $(BIN)/helm $(BIN)/kubectl browser  ## helm and kubectl into .venv/bin; Debian's chromium and curl for the tests

browser:  ## Debian's chromium and chromedriver (the web page test) and curl (the README's commands), with apt
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v curl >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver curl ca-certificates; }

lint: install  ## ruff, mypy, the layers (import-linter), and the CRDs in step with the models
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/kubeclassify crds --check

format: install  ## format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

crds: install  ## regenerate the CRDs from the models
	$(BIN)/kubeclassify crds

reference: install  ## regenerate docs/reference.md (resources, endpoints, settings, metrics) from the code
	$(BIN)/python scripts/reference.py

chart-files: install  ## regenerate the operator's RBAC rules that the chart includes
	$(BIN)/kubeclassify operator rbac --scope namespaced > charts/kubeclassify/files/operator-rbac-namespaced.yaml
	$(BIN)/kubeclassify operator rbac --scope cluster > charts/kubeclassify/files/operator-rbac-cluster.yaml

# The tests marked `calendar` once more with every process's clock a year ahead (tests/harness/clock):
# a test whose dates are fixed while the code reads the clock fails now, not when the calendar gets there.
AHEAD := KUBECLASSIFY_TEST_DAYS_AHEAD=365

test: lint tools  ## lint, every test tier, then the date-dependent tests with the clock a year ahead
	$(PYTEST)
	$(AHEAD) $(PYTEST) -m calendar

test-unit: install  ## models, builders, routes: no processes
	$(PYTEST) tests/unit -m unit  # collecting only this folder keeps it under a minute

test-integration: install browser  ## real SeaweedFS, Redis and KServe servers
	$(PYTEST) -m integration

test-chart: tools  ## helm lint and template, schemas
	$(PYTEST) -m chart

test-e2e: tools  ## operator and clients against the Kubernetes API emulator
	$(PYTEST) -m e2e

test-chaos: tools  ## kill the operator, delete its children, restart Redis and gateways while batches run; SEED=n replays a run
	KUBECLASSIFY_CHAOS_SEED=$(SEED) $(PYTEST) -m chaos

test-calendar: tools  ## the tests that depend on today's date, with the clock a year ahead
	$(AHEAD) $(PYTEST) -m calendar

constraints: $(BIN)/python  ## re-resolve every dependency and pin it in constraints.txt
	rm -rf $(VENV)/resolve && $(PYTHON) -m venv $(VENV)/resolve
	$(VENV)/resolve/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/resolve/bin/python -m pip install --quiet ".[$(EXTRAS)]"
	$(VENV)/resolve/bin/python -m pip freeze --exclude kubeclassify > constraints.txt
	rm -rf $(VENV)/resolve

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

bench: bench-predictor bench-batch bench-gateway bench-operator bench-http bench-plot  ## every benchmark, then the plot

bench-plot: install  ## benchmarks/results/batch.png: batch images/s against the model-only limit
	$(BIN)/python benchmarks/plot.py

bench-predictor: install  ## predictor over HTTP against the model alone (MobileNetV2, ResNet50V2)
	$(BIN)/python benchmarks/predictor/run.py

bench-batch: install  ## batch worker against the model alone, a seed-style loop, and through the predictor; a 10M-row manifest
	$(BIN)/python benchmarks/batch/run.py

bench-http: install  ## what one predictor call costs the caller in CPU (aiohttp, httpx, urllib3), and an S3 GET
	$(BIN)/python benchmarks/http/run.py

bench-gateway: install  ## what the gateway adds to a classification (p50/p99, 1 and 32 clients); auth req/s per core
	$(BIN)/python benchmarks/gateway/run.py

bench-operator: install  ## 1,000 ClassificationBatches at 20/s against the API emulator: create-to-Job latency, RSS
	$(BIN)/python benchmarks/operator/run.py
