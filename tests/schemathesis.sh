#!/usr/bin/env bash
# The API contract, tested from the outside: schemathesis generates requests
# from api/openapi.yaml, valid and invalid ones, sends them to a fresh
# `edge server` with no agents, and checks every answer against the spec
# (--checks all): no 5xx, only listed statuses and content types, responses
# that fit their schemas, valid bodies accepted and invalid ones refused.
# Settings are in tests/schemathesis.toml. use_after_free is left out:
# DELETE /v1/job/{id} stops a job as Nomad does, and the job stays readable
# (stop = true) until ?purge=true.
#
# Left out: the agent routes (/v1/agent/...), which only an agent holding
# the join token drives (registering made-up nodes would also have the
# scheduler place the generated jobs on them), and /v1/event/stream, which
# never ends.
#
# schemathesis is installed into ~/.cache/edge/schemathesis-venv on first
# use (needs python3 with venv). EDGE_BIN names an edge binary to test
# instead of building target/debug/edge; EDGE_SCHEMATHESIS_EXAMPLES sets the
# examples per operation (default 30) and EDGE_SCHEMATHESIS_SEED the seed
# (default fixed, so that a run is repeatable). Exits non-zero on any
# failure.
#
# The server runs with ACLs on; the script bootstraps them and sends the
# management token with every request, so schemathesis also checks that
# an operation needing a token refuses a request without one (401).
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
venv=${XDG_CACHE_HOME:-$HOME/.cache}/edge/schemathesis-venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $version"; then
  echo "installing schemathesis $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

if [ -n "${EDGE_BIN:-}" ]; then
  edge=$EDGE_BIN
else
  cargo build --locked --quiet -p edge --bin edge
  edge="${CARGO_TARGET_DIR:-target}/debug/edge"
fi

dir=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
"$edge" server --data-dir "$dir/data" --bind "127.0.0.1:$port" --acl on >"$dir/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1] + '/v1/status/health', timeout=1)" "$url" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  sleep 0.1
done

token=$(EDGE_ADDR=$url "$edge" acl bootstrap -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["secret_id"])')

status=0
"$venv/bin/schemathesis" --config-file tests/schemathesis.toml run api/openapi.yaml \
  --url "$url" \
  --header "X-Edge-Token: $token" \
  --checks all \
  --exclude-checks use_after_free \
  --exclude-path-regex '^/v1/(agent/|event/stream$)' \
  --max-examples "${EDGE_SCHEMATHESIS_EXAMPLES:-30}" \
  --seed "${EDGE_SCHEMATHESIS_SEED:-1}" \
  --request-timeout 10 || status=$?
if [ "$status" != 0 ]; then
  echo "--- server log" >&2
  tail -n 50 "$dir/server.log" >&2
fi
exit "$status"
