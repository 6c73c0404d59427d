#!/usr/bin/env bash
# `make test`: static checks, unit tests, then the integration suite against the real stack.
# Services this script started are stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
STACK=ops/stack/stack.sh

started_stack=0
if ! $STACK status >/dev/null 2>&1; then started_stack=1; fi
cleanup() {
  if [ "$started_stack" = 1 ]; then $STACK stop || true; fi
}
trap cleanup EXIT

# The deployment files' validators (kustomize + Kubernetes schemas, nginx -t, hadolint, the
# Compose schema, promtool; `make lint` runs the same), then not again in the suite below.
DEPLOY_TESTS=(tests/unit/test_deploy_files.py tests/unit/test_k8s_and_dashboards.py)
echo "== lint"
$PY -m ruff check .
$PY -m ruff format --check .
echo "== deployment files"
$PY -m pytest -q -p no:cacheprovider "${DEPLOY_TESTS[@]}"
echo "== types"
$PY -m mypy chat edge topologies tables sinks media ops
echo "== stack"
$STACK start
if [ -f web/package.json ]; then
  echo "== web unit tests (vitest)"
  (cd web && npm test --silent)
fi
echo "== tests: unit, integration (real stack, both edges, headless Chromium), faults"
$PY -m pytest tests -q -p no:cacheprovider "${DEPLOY_TESTS[@]/#/--ignore=}" "$@"
