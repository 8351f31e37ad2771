# Vigil — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GEN := libs/common/src
PROTOS := $(shell find proto -name '*.proto')
BUF := tools/node_modules/.bin/buf
# The last released protos, which `buf breaking` compares against (git tag, see proto/buf.yaml).
PROTO_RELEASE ?= proto-v1

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock
	touch $@

venv: $(VENV)/.installed ## create .venv with the pinned dependencies

$(GEN)/vigil/.generated: $(VENV)/.installed $(PROTOS)
	rm -rf $(GEN)/vigil && mkdir -p $(GEN)/vigil
	$(PY) -m grpc_tools.protoc -Iproto --python_out=$(GEN) --pyi_out=$(GEN) --grpc_python_out=$(GEN) $(PROTOS)
	find $(GEN)/vigil -type d -exec touch {}/__init__.py \;
	touch $@

# Editable install of our own packages; after `proto`, so the generated `vigil` package is mapped.
$(VENV)/.editable: $(GEN)/vigil/.generated pyproject.toml
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

proto: $(GEN)/vigil/.generated ## generate the protobuf/gRPC modules (vigil.*.v1)

setup: venv proto $(VENV)/.editable prometheus ## everything the other targets need

# The delegate's Prometheus health-source tests run a real Prometheus (Debian package). Installed
# with apt when missing and apt-get is there (as root, else via sudo -n); elsewhere, a note.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
prometheus: ## install Prometheus with apt-get when it is missing (health-source tests)
	@command -v prometheus >/dev/null || { command -v apt-get >/dev/null \
	  && $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
	  || echo "note: prometheus is not installed; tests/integration/delegate/test_health_sources.py needs it"

run: setup ## start the whole system on embedded defaults, run the demo, keep running until Ctrl-C
	$(PY) -m vigil_local run

demo: setup ## like run, but exit when the demo pipeline is done (0 = expected outcome)
	$(PY) -m vigil_local demo

test: setup test-unit test-integration test-e2e ## all tests

test-unit: setup ## unit tests (no network)
	$(PY) -m pytest tests/unit -q

test-integration: setup ## integration tests against the real broker and PostgreSQL
	$(PY) -m pytest tests/integration -q

test-e2e: setup ## end-to-end test through real processes
	$(PY) -m pytest tests/e2e -q

bench: setup ## benchmarks, each side by side with its reference (bench/bench_*.py)
	$(PY) bench/run.py

# `npm install` (not `npm ci`): it installs the locked versions too, and unlike `npm ci` it
# accepts a lock that lists only the platform packages the registry served (buf-linux-*).
$(BUF): tools/package.json tools/package-lock.json
	npm install --prefix tools --no-audit --no-fund --loglevel=error
	touch $@

tools: $(BUF) ## install the developer tools pinned in tools/package.json (buf) under tools/node_modules

lint: setup tools ## ruff, buf lint and buf breaking (against the last release, proto/releases/)
	$(VENV)/bin/ruff check .
	$(BUF) lint proto
	$(BUF) breaking proto --against proto/releases/$(PROTO_RELEASE).binpb

proto-release: tools ## record the current protos as release PROTO_RELEASE (the buf breaking baseline)
	$(BUF) build proto -o proto/releases/$(PROTO_RELEASE).binpb

asyncapi: setup ## regenerate docs/asyncapi.yaml (public topics) from the protobuf descriptors
	$(PY) tools/asyncapi.py

lock: ## re-pin requirements.lock from requirements.in
	rm -rf /tmp/vigil-lock && $(PYTHON) -m venv /tmp/vigil-lock
	/tmp/vigil-lock/bin/pip install -q -r requirements.in
	(echo '# Pinned by `make lock` (pip freeze of a venv built from requirements.in).'; /tmp/vigil-lock/bin/pip freeze) > requirements.lock

clean: ## remove the venv, generated code and local state
	rm -rf $(VENV) $(GEN)/vigil var

.PHONY: help venv proto proto-release setup prometheus tools asyncapi run demo test test-unit test-integration test-e2e lint bench lock clean
