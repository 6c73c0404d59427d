# The two commands: `make run` and `make test` (see README.md). Everything else is a helper.
SHELL := /bin/bash
PY := .venv/bin/python
STACK := ops/stack/stack.sh
CACHE_DIR ?= $(HOME)/.cache/kchat
DEPLOY_TESTS := tests/unit/test_deploy_files.py tests/unit/test_k8s_and_dashboards.py
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip
export npm_config_cache ?= $(HOME)/.cache/npm

.PHONY: run test test-tools lint-tools nginx-install install venv stack-install web lint typecheck unit integration web-test e2e \
        bench stack-start stack-stop stack-status clean

run: install nginx-install  ## Start the stack and the app in the foreground (Ctrl-C stops it all)
	CHAT_ENV=$${CHAT_ENV:-dev} $(PY) -m ops.run

test: install test-tools  ## Install what is missing, start the services, run the whole suite
	bash ops/test.sh

# Debian packages: nginx (the load balancer in front of the local edges, for `make run` and the
# tests), Chromium, which only the web client's end-to-end test needs, and iproute2 (`ss`, which
# a test reads the edges' listen backlog with); and the deployment files' validators.
test-tools: lint-tools
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v ss >/dev/null || test -x /bin/ss || missing="$$missing iproute2"; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

nginx-install:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	  echo "installing: nginx"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null; }

install: venv stack-install web

venv: .venv/.installed
.venv/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

stack-install:
	$(STACK) install

web: web/dist/index.html
web/dist/index.html: $(shell find web/src web/index.html web/package.json -type f 2>/dev/null)
	@if [ -f web/package.json ]; then \
	  cd web && (npm ci --no-audit --no-fund --prefer-offline || npm install --no-audit --no-fund) && npm run build; \
	else echo "no web client yet"; fi

# The deployment files' validators: nginx (Debian's, for `nginx -t`), kustomize and promtool
# (go install, pinned in tests/deploy_tools.py, built once into $(CACHE_DIR)/bin); hadolint
# and the schemas come with the dev dependencies.
lint-tools: venv nginx-install
	CHAT_CACHE_DIR=$(CACHE_DIR) $(PY) -m tests.deploy_tools

# Static checks: ruff, then every deployment file through its ecosystem's validator (kustomize +
# Kubernetes schemas, nginx -t, hadolint, the Compose schema, promtool) and the project's rules.
lint: venv lint-tools
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	CHAT_CACHE_DIR=$(CACHE_DIR) $(PY) -m pytest -q -p no:cacheprovider $(DEPLOY_TESTS)

typecheck: venv
	$(PY) -m mypy chat edge topologies tables sinks media ops

unit: venv
	$(PY) -m pytest tests/unit -q

stack-start:
	$(STACK) start
stack-stop:
	$(STACK) stop
stack-status:
	$(STACK) status

# The peers' own installs (npm packages of the seed, Centrifugo built with go install) happen
# here only: `make run` and `make test` do not need them. PEERS=relay,seed,centrifugo chooses.
bench: install
	$(PY) -m bench.peers.install $(if $(PEERS),$(PEERS),$(if $(filter quick,$(PROFILE)),seed,relay,seed,centrifugo))
	$(PY) -m bench $(if $(PROFILE),--profile $(PROFILE),) $(if $(PEERS),--peers $(PEERS),)

clean:
	rm -rf .data web/dist
