#!/usr/bin/env bash
# Latency of GET /v1/nodes while N connections sit idle without sending a
# header (slowloris). Starts `edge dev` on a free port, opens the idle
# connections from python3, then times requests with curl.
# Usage: benches/idle_conns.sh [N=1000] [REQUESTS=50]
set -euo pipefail
N=${1:-1000}
REQS=${2:-50}
cd "$(dirname "$0")/.."
EDGE=${EDGE:-${CARGO_TARGET_DIR:-target}/release/edge}
[ -x "$EDGE" ] || cargo build --release -p edge
DATA=$(mktemp -d)
PORT=$((20000 + RANDOM % 10000))
"$EDGE" dev --data-dir "$DATA" --bind "127.0.0.1:$PORT" --dns-port 0 --no-lb >"$DATA/log" 2>&1 &
DEV=$!
trap 'kill $DEV 2>/dev/null; wait $DEV 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v1/status/health" >/dev/null && break; sleep 0.1; done
python3 - "$PORT" "$N" "$REQS" <<'PY'
import socket, subprocess, sys, time, resource
port, n, reqs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
times = []
for _ in range(reqs):
    t = time.perf_counter()
    subprocess.run(["curl", "-fs", "-o", "/dev/null", f"http://127.0.0.1:{port}/v1/nodes"], check=True)
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(f"{n} idle connections, {reqs} x GET /v1/nodes (curl, new connection each): "
      f"p50 {times[len(times)//2]:.1f} ms, p99 {times[int(len(times)*0.99)-1]:.1f} ms, max {times[-1]:.1f} ms")
PY
