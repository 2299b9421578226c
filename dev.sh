#!/usr/bin/env bash
# Bootstraps .venv (Python 3.10+) and runs the demo or the tests:
#   ./dev.sh demo [batchrec run options]    the nightly pipeline (examples/pipeline.toml) on a sample
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

# The demo: the nightly pipeline of examples/pipeline.toml on a generated sample (batchrec-demo/),
# with a local DynamoDB-compatible server (moto, installed with the test extras) for its export
# stage. Options go to `batchrec run` (--run-date D, --force, --quiet, --stage NAME, ...).
demo() {
  local run_date="" prev="" arg
  for arg in "$@"; do
    case "$arg" in --run-date=*) run_date="${arg#--run-date=}" ;; esac
    [ "$prev" = "--run-date" ] && run_date="$arg"
    prev="$arg"
  done
  local extra=()
  if [ -z "$run_date" ]; then run_date="$(date -u +%F)"; extra=(--run-date "$run_date"); fi
  mkdir -p batchrec-demo
  if [ ! -d batchrec-demo/data/interactions ]; then
    echo "== generating a sample into batchrec-demo/data (2,000 users, 500 items, 60,000 interactions)"
    "$VENV/bin/batchrec" generate --users 2000 --items 500 --interactions 60000 \
      --output batchrec-demo/data --run-date "$run_date" --quiet >/dev/null
  fi
  local port
  port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$VENV/bin/python" -m moto.server -H 127.0.0.1 -p "$port" >batchrec-demo/dynamodb-server.log 2>&1 &
  local server=$!
  trap "kill $server 2>/dev/null || true" EXIT
  "$VENV/bin/python" - "$port" <<'EOF'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1)
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("the local DynamoDB-compatible server (moto) did not start; see batchrec-demo/dynamodb-server.log")
EOF
  echo "== batchrec run examples/pipeline.toml --run-date $run_date (DynamoDB export to moto on port $port)"
  # The export goes to the local server only, with dummy credentials: nothing reaches AWS.
  env -u AWS_SESSION_TOKEN -u AWS_PROFILE \
    BATCHREC_DYNAMODB__ENDPOINT_URL="http://127.0.0.1:$port" BATCHREC_DYNAMODB__REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo \
    "$VENV/bin/batchrec" run examples/pipeline.toml "${extra[@]}" "$@"
  "$VENV/bin/python" - "batchrec-demo/runs/$run_date/manifest.json" <<'EOF'
import json, sys
try:
    m = json.load(open(sys.argv[1]))
except OSError:
    sys.exit(0)
print(f"\n== results of {m['run_date']} (manifest: {sys.argv[1]})")
for s in m["stages"]:
    print(f"stage  {s['name']:<16} {s['status']:<10} {s['seconds']:>7.1f} s")
for name, s in m["solutions"].items():
    print(f"model  {name:<16} {s['recipe']:<22} version {s['version']} ({'trained' if s['trained'] else 'kept'})")
for name, o in m["outputs"].items():
    where = o.get("path") or f"DynamoDB table {o.get('table')}"
    count = o.get("rows", o.get("items"))
    print(f"output {name:<16} {where}" + (f"  ({count:,} {'rows' if 'rows' in o else 'items'})" if count is not None else ""))
EOF
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo) bootstrap; demo "$@" ;;
  test) bootstrap; bootstrap_node; exec "$VENV/bin/python" -m pytest tests "$@" ;;
  *) echo "usage: ./dev.sh demo|test [options]" >&2; exit 2 ;;
esac
