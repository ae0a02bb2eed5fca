#!/usr/bin/env bash
# The dashboard's first paint at scale: a release `edge server` on loopback,
# `edge sim` with NODES fake nodes (5,000), JOBS service jobs (1,000) of
# COUNT allocations (2) each, all running; then headless Chromium opens
# /ui/ on a fresh profile RUNS times (crates/edge/benches/ui.rs) and prints
# the first contentful paint and the first frame with the overview's data.
# Needs `chromium` and `chromium-driver` (deploy/test.sh installs them).
#
#   benches/ui.sh
#   NODES=1000 JOBS=100 benches/ui.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

NODES=${NODES:-5000}
JOBS=${JOBS:-1000}
COUNT=${COUNT:-2}

cargo build --release -q -p edge
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/edge
ulimit -n "$(ulimit -Hn)"

dir=$(mktemp -d /tmp/edge-ui-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

port=$(free_port)
addr="http://127.0.0.1:$port"
"$BIN" server --data-dir "$dir/server" --bind "127.0.0.1:$port" \
  --max-connections 20000 --log-level warn >"$dir/server.log" 2>&1 &
pids+=("$!")
wait_for 10 "the server's join token (log: $dir/server.log)" test -s "$dir/server/token"
"$BIN" sim --server "$addr" --join-token "$(cat "$dir/server/token")" \
  --nodes "$NODES" --log-level warn >"$dir/sim.log" 2>&1 &
pids+=("$!")

python3 - "$addr" "$NODES" "$JOBS" "$COUNT" <<'PY'
import concurrent.futures, json, sys, time, urllib.request
addr, nodes, jobs, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(addr + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)
t = time.time()
while call("GET", "/v1/status/health")["nodes_ready"] < nodes:
    if time.time() - t > 300:
        sys.exit("the simulated nodes did not all register")
    time.sleep(0.5)
def submit(j):
    call("POST", "/v1/jobs", {"job": {
        "id": f"web-{j}", "name": f"web-{j}", "type": "service",
        "groups": [{"name": "g", "count": count, "tasks": [{
            "name": "t", "driver": "exec",
            "config": {"command": "/bin/sleep", "args": ["600"]},
            "resources": {"cpu": 100, "memory": 64}}]}]}})
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(submit, range(jobs)))
while True:
    stubs = call("GET", "/v1/jobs")
    running = sum(g.get("running", 0) for s in stubs for g in s["summary"].values())
    if running >= jobs * count:
        break
    if time.time() - t > 600:
        sys.exit(f"only {running} of {jobs * count} allocations running")
    time.sleep(0.5)
print(f"{nodes} nodes, {jobs} jobs, {running} allocations running")
PY

# The bench is a WebDriver client: the browser does the work it measures,
# so it builds with the tests (dev profile) rather than a second release.
EDGE_ADDR="$addr" cargo bench --profile dev -q -p edge --bench ui
