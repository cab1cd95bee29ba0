# The README's commands. Everything installs itself on first use: a fresh clone needs only
# python3 (3.11), java (17+) and mvn on the PATH.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PACKAGES := contracts services/runtime services/archive services/tickets services/loyalty services/notify services/console services/relations cli
STACK := $(BIN)/python deploy/local/stack.py

.PHONY: help venv store up down status demo test test-containers unit lint fmt schemas clean-local rebuild-archive

help:
	@echo "make demo   - start the local stack and the services, replay realistic traffic, print a summary"
	@echo "make test   - lint, then every test (unit, integration, e2e) on a real Kafka + MongoDB-wire server"
	@echo "make test-containers - the same tests with Kafka and MongoDB (replica set) in Docker (testcontainers)"
	@echo "make up     - start Kafka, SecantusDB and the services in the background; print URLs, the dev token and the demo users"
	@echo "make down   - stop what 'make up' started (data stays in .local/)"
	@echo "make store  - build (once per machine) the Rust SecantusDB server the stack and tests run; CRM_STORE=python skips it"
	@echo "make lint   - ruff, ruff format --check, mypy, lint-imports"
	@echo "make schemas - regenerate contracts/schemas after a contract change"
	@echo "make rebuild-archive - replay the retained topics into a fresh archive database"

venv: $(STAMP)

# The Rust SecantusDB server, built once per machine into ~/.cache/crm-suite (CRM_STORE=python: the
# Python server, no build); falls back to the Python server where cargo cannot build it.
store: venv
	$(STACK) store

$(STAMP): requirements-dev.txt $(addsuffix /pyproject.toml,$(PACKAGES))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@echo "installing the suite's Python packages into $(VENV) (first run only, 1-2 minutes; pip lists each one)"
	PYTHONUNBUFFERED=1 $(BIN)/python -m pip install --progress-bar off --disable-pip-version-check -r requirements-dev.txt $(addprefix -e ,$(PACKAGES)) | grep --line-buffered -E '^(Collecting|Installing|Successfully)'; exit $${PIPESTATUS[0]}
	touch $(STAMP)

up: store
	$(STACK) up

down: venv
	$(STACK) down

status: venv
	$(STACK) status

demo: store
	$(STACK) up
	$(BIN)/python deploy/local/demo.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PACKAGES) deploy/local tests benchmarks docs/asyncapi
	$(BIN)/lint-imports

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

rebuild-archive: venv
	$(BIN)/python -m crm_archive.rebuild --database crm_archive_rebuild --drop

schemas: venv
	$(BIN)/python -m crm_contracts.schemas contracts/schemas

unit: venv
	$(BIN)/pytest -m unit

test: lint store
	$(BIN)/pytest

# The same suites with Apache Kafka (KRaft) and MongoDB (a one-node replica set) as containers, from
# deploy/compose.yaml's images; needs a Docker engine and stops at once with a message without one.
test-containers: lint
	CRM_TEST_STACK=containers $(BIN)/pytest

clean-local: down
	rm -rf .local
