# The targets people expect. `make run` and `make test` set everything up first (idempotent).
PYTHON ?= python3.11
VENV := .venv
SAM_VENV := .venv-sam
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: bench-helm cold-starts docs docs-serve docs-reference sam-local-image sam-invoke setup run run-real real-cluster-build test-real test test-fast lint format typecheck validate build openapi event-schemas bench bench-large bench-throughput bench-preflight clean postgres rds-ca-bundle mutants

$(STAMP): requirements-dev.txt constraints.txt layers/shared/requirements.txt layers/kubernetes/requirements.txt pyproject.toml
	@echo "setting up $(VENV) (first time: a few minutes; pip's output in $(VENV)/install.log)"
	$(PYTHON) -m venv $(VENV)
	@scripts/quietly $(VENV)/install.log $(BIN)/pip install --quiet --upgrade pip
	@scripts/quietly $(VENV)/install.log $(BIN)/pip install --quiet -r requirements-dev.txt -c constraints.txt
	@scripts/quietly $(VENV)/install.log $(BIN)/pip install --quiet --no-deps -e .
	touch $@

# mutmut for `make mutants` only: in the project's environment, installed by that target, never by setup or CI
MUTANTS_STAMP := $(VENV)/.mutants-installed
$(MUTANTS_STAMP): $(STAMP) requirements-mutants.txt
	$(BIN)/pip install --quiet -r requirements-mutants.txt -c constraints.txt
	touch $@

$(SAM_STAMP):
	@echo "setting up $(SAM_VENV) (aws-sam-cli; pip's output in $(SAM_VENV)/install.log)"
	$(PYTHON) -m venv $(SAM_VENV)
	@scripts/quietly $(SAM_VENV)/install.log $(SAM_VENV)/bin/pip install --quiet --upgrade pip
	@scripts/quietly $(SAM_VENV)/install.log $(SAM_VENV)/bin/pip install --quiet aws-sam-cli==1.170.0
	touch $@

setup: $(STAMP) $(SAM_STAMP)

postgres:  ## start the machine's PostgreSQL when it is not running (tests use it)
	@scripts/ensure-postgres.sh

run: $(STAMP)  ## the local stack at http://localhost:3100 (embedded PostgreSQL, simulated cluster)
	$(BIN)/upgrade-local

real-cluster-build:  ## build (first time only) the real kube-apiserver + controller-manager; installs Go, etcd, docker-registry
	scripts/realk8s/build-control-plane.sh

run-real: $(STAMP) real-cluster-build  ## the local stack on a REAL control plane with the real helm (HELM=3 or 4)
	$(BIN)/upgrade-local --cluster real --helm $(or $(HELM),3)

test-real: $(STAMP) postgres real-cluster-build  ## the real-cluster suite alone (tests/realcluster; a missing part fails it)
	REAL_CLUSTER_REQUIRED=1 $(BIN)/python -m pytest -n 2 --dist loadfile tests/realcluster

test: setup postgres lint typecheck  ## every test: unit, PostgreSQL, Kubernetes over HTTP, state machine end to end
	SAM_EXECUTABLE=$(SAM_VENV)/bin/sam $(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: $(STAMP) postgres
	$(BIN)/python -m pytest -m "not e2e"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy layers/shared/upgrader upgradectl functions tests

validate: $(SAM_STAMP)
	$(SAM_VENV)/bin/sam validate --lint

# ARCH: the functions' processor (template parameter Architecture, default arm64); the layers' Makefiles build their
# wheels for it and the runtime's Python (LAMBDA_ARCHITECTURE, LAMBDA_PYTHON). Deploy with the same ARCH.
ARCH ?= arm64
LAMBDA_PYTHON := 3.12
build: $(SAM_STAMP)  ## sam build for ARCH (default arm64; python3.12 on PATH: PYENV_VERSION=3.12.x with pyenv)
	LAMBDA_ARCHITECTURE=$(ARCH) LAMBDA_PYTHON=$(LAMBDA_PYTHON) PYENV_VERSION=$${PYENV_VERSION:-3.12.1} \
		$(SAM_VENV)/bin/sam build --no-cached --parameter-overrides Architecture=$(ARCH)  # the cache ignores ARCH

sam-local-image: $(STAMP)  ## a stand-in for public.ecr.aws/lambda/python:3.12-<this machine> (Debian + CPython + awslambdaric), cached
	$(BIN)/python -m upgradectl.samlocal image

sam-invoke: $(STAMP) $(SAM_STAMP) postgres  ## sam build, then every function with every event through sam local invoke
	SAM_EXECUTABLE=$(SAM_VENV)/bin/sam $(BIN)/python -m upgradectl.samlocal invoke

docs-reference: $(STAMP)  ## regenerate docs/reference/*.md (API, CLI, events, configuration) from the code
	$(BIN)/python -m upgradectl.docs_site.reference $(REFERENCE_OUT)

# Where `make docs`, `docs-serve`, `openapi` and `docs-reference` write or listen; tests/docs runs them elsewhere.
DOCS_SITE_DIR ?= site
DOCS_ADDR ?= 127.0.0.1:8000
OPENAPI_OUT ?= docs/openapi.json
REFERENCE_OUT ?= docs/reference

docs: $(STAMP)  ## the documentation site into site/ (mkdocs build --strict: no broken link, no orphan page)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(DOCS_SITE_DIR)

docs-serve: $(STAMP)  ## the documentation site at http://localhost:8000, rebuilt as you edit
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr $(DOCS_ADDR)

openapi: $(STAMP)  ## regenerate docs/openapi.json from the code
	$(BIN)/python -m upgradectl.openapi > $(OPENAPI_OUT)

event-schemas: $(STAMP)  ## regenerate the lifecycle events' JSON Schemas under docs/events/
	$(BIN)/python -m upgradectl.event_schemas docs/events

rds-ca-bundle: $(STAMP)  ## regenerate the Amazon RDS / RDS Proxy CA bundle of the Shared layer (needs npm, node)
	$(BIN)/python scripts/update-rds-ca-bundle.py

bench: $(STAMP) postgres  ## one table of ratios, measured in one run (about 15 minutes; not in CI)
	$(BIN)/python -m benchmarks.suite

bench-helm: $(STAMP) postgres  ## make bench's helm durations alone: 20 s and 60 s Jobs, default polls, N=500 (about 1.5 h)
	$(BIN)/python -m benchmarks.suite --only helm

cold-starts: $(STAMP)  ## each function's import inside the Lambda image (after make sam-invoke's build), with bench's floor
	$(BIN)/python -m benchmarks.cold_starts

bench-large: $(STAMP) postgres  ## a 10,000-customer simulated rollout, every customer accounted for (not in CI)
	$(BIN)/python -m benchmarks.large

bench-preflight: $(STAMP)  ## the image pre-flight for 1,000 customers against a real registry: time, registry requests
	$(BIN)/python -m benchmarks.preflight

bench-throughput: $(STAMP) postgres  ## local rollout throughput at 100, 500 and 1,000 customers (customers/s, ratio)
	$(BIN)/python -m benchmarks.sim_throughput

mutants: $(MUTANTS_STAMP) postgres  ## mutation testing of the guarantee modules (MODULE=planner, or several quoted; all: hours; not in CI)
	$(BIN)/python scripts/mutants.py $(MODULE)

clean:
	rm -rf $(VENV) $(SAM_VENV) .mutants .aws-sam .pytest_cache .mypy_cache .ruff_cache .local
