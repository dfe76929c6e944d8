# Punk Records: the one entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .cache/sam-venv
SAM := $(SAM_VENV)/bin/sam
ARCH ?= arm64
export PIP_CACHE_DIR := $(CURDIR)/.cache/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export SAM_CLI_TELEMETRY := 0
# The layer package is imported exactly as in Lambda, where /opt/python is on the path.
export PYTHONPATH := $(CURDIR)/layers/punk_records/python:$(CURDIR)

.PHONY: help venv sam-venv prepare test unit lint format samples openapi build validate migrate \
	up down status send clean bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv with the layer and development dependencies

$(VENV)/.installed: requirements-dev.txt layers/punk_records/requirements.txt
	@echo "==> installing Python dependencies into $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

sam-venv: $(SAM_VENV)/.installed ## install the AWS SAM CLI into its own virtualenv

$(SAM_VENV)/.installed: requirements-sam.txt
	@echo "==> installing the AWS SAM CLI into $(SAM_VENV)"
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	@$(SAM_VENV)/bin/python -m pip install -q --upgrade pip
	@$(SAM_VENV)/bin/python -m pip install -q -r requirements-sam.txt
	@touch $@

prepare: venv ## fetch the Kafka jars and install PostgreSQL if missing (cached)
	@$(PY) -m local.services prepare

test: prepare sam-venv lint ## THE test command: install what is needed, then run every test
	@$(PY) -m pytest --cov --cov-report=term:skip-covered

unit: venv ## unit tests only (no services)
	@$(PY) -m pytest tests/unit

lint: venv ## ruff lint and format check, mypy
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy

format: venv ## apply ruff formatting and safe fixes
	@$(PY) -m ruff check --fix .
	@$(PY) -m ruff format .

samples: venv ## regenerate events/ from real envelopes
	@$(PY) -m local.samples

openapi: venv ## regenerate docs/openapi.json from the ingest routes
	@$(PY) -m local.openapi

build: venv sam-venv ## sam build without Docker (ARCH=arm64|x86_64, default arm64)
	@LAYER_ARCHITECTURE=$(ARCH) PIP="$(CURDIR)/$(PY) -m pip" $(SAM) build --parameter-overrides Architecture=$(ARCH)

validate: sam-venv ## sam validate --lint (offline)
	@$(SAM) validate --lint

migrate: venv ## apply the PostgreSQL migrations to DATABASE_URL
	@$(PY) -m local.migrate

up: prepare sam-venv ## the whole pipeline locally: Kafka, PostgreSQL, both functions (docs/local.md)
	@$(PY) -m local.stack up

down: venv ## stop everything `make up` started
	@$(PY) -m local.stack down

status: venv ## say what runs
	@$(PY) -m local.stack status || true

send: venv ## POST a sample event (or FILE=events.json) to the local API, print the answer
	@$(PY) -m local.stack send $(FILE)

bench: prepare sam-venv ## benchmarks: table, bench/results.json, docs/benchmarks.md (BENCH_ARGS=--quick)
	@$(PY) -m bench $(BENCH_ARGS)

clean: down ## stop services and delete local state (keeps download caches)
	rm -rf .local .aws-sam
