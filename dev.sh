#!/usr/bin/env bash
# Bootstraps .venv (Python 3.10+) and runs the demo or the tests:
#   ./dev.sh demo [batchrec demo options]   generate, validate, train, recommend on a sample
#   ./dev.sh test [pytest options]          the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
VENV=${BATCHREC_VENV:-.venv}
PYTHON=${PYTHON:-python3}

bootstrap() {
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "batchrec needs Python 3.10+"'
  command -v java >/dev/null || { echo "batchrec needs Java 17 on PATH" >&2; exit 2; }
  local stamp="$VENV/.batchrec-installed"
  if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[test]"
    touch "$stamp"
  fi
}

# Node packages the tests use (dynalite, a DynamoDB-compatible server), exactly as package-lock.json pins them.
bootstrap_node() {
  command -v npm >/dev/null || { echo "the tests need Node 20+ and npm on PATH (dynalite)" >&2; exit 2; }
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo) bootstrap; exec "$VENV/bin/batchrec" demo "$@" ;;
  test) bootstrap; bootstrap_node; exec "$VENV/bin/python" -m pytest tests "$@" ;;
  *) echo "usage: ./dev.sh demo|test [options]" >&2; exit 2 ;;
esac
