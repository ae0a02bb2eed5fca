#!/usr/bin/env bash
# Scale benchmark with simulated nodes: a release `edge server` on loopback,
# `edge sim --nodes N` (fake agents speaking the real protocol), then JOBS
# service jobs of COUNT allocations each (100 x 1000 = 100,000). Prints the
# time from the first job registration to every allocation reported
# running, the server's peak RSS (VmHWM) and CPU seconds (also by thread),
# the job POSTs' latency, and `edge sim`'s own CPU and RSS. Before the
# jobs, the server's CPU over IDLE seconds of nothing but heartbeats (every
# node beats every TTL/3), measured once SETTLE seconds (default: one beat
# interval and 5 s) have let every node open the connections it keeps.
#
#   benches/sim.sh              # 1,000 then 5,000 nodes
#   NODES="500" JOBS=10 benches/sim.sh
#   TLS=1 benches/sim.sh        # the server speaks TLS, every fake node mTLS
#   EDGE_BIN=/tmp/edge-old benches/sim.sh   # another build, not rebuilt
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

NODES=${NODES:-"1000 5000"}
JOBS=${JOBS:-100}
COUNT=${COUNT:-1000}
TIMEOUT=${TIMEOUT:-120}
TLS=${TLS:-0}
TTL=${TTL:-60s}
IDLE=${IDLE:-30}
# One beat interval (TTL/3) and 5 s, for TTL given in seconds ("60s").
SETTLE=${SETTLE:-$(( ${TTL%s} / 3 + 5 ))}

# EDGE_BIN=path runs another build (an A/B of two commits) as it is.
if [ -n "${EDGE_BIN:-}" ]; then
  BIN=$EDGE_BIN
else
  cargo build --release -q -p edge
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/edge
fi
# Thousands of watches, one socket each on both sides.
ulimit -n "$(ulimit -Hn)"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

for n in $NODES; do
  dir=$(mktemp -d /tmp/edge-sim-bench.XXXXXX)
  port=$((20000 + RANDOM % 20000))
  tls=()
  addr="http://127.0.0.1:$port"
  if [ "$TLS" = 1 ]; then tls=(--tls); addr="https://127.0.0.1:$port"; fi
  "$BIN" server --data-dir "$dir/server" --bind "127.0.0.1:$port" "${tls[@]}" \
    --heartbeat-ttl "$TTL" --max-connections 20000 --log-level warn >"$dir/server.log" 2>&1 &
  server=$!
  pids=("$server")
  wait_for 10 "the server's join token (log: $dir/server.log)" test -s "$dir/server/token"
  "$BIN" sim --server "$addr" --join-token "$(cat "$dir/server/token")" \
    --nodes "$n" --stats-every 10s --log-level warn >"$dir/sim.log" 2>&1 &
  sim=$!
  pids+=("$sim")

  python3 - "$addr" "$n" "$JOBS" "$COUNT" "$TIMEOUT" "$server" "$dir/server/ca.pem" "$IDLE" "$SETTLE" "$sim" <<'EOF'
import concurrent.futures, json, os, ssl, sys, time, urllib.request

addr, nodes, jobs, count, timeout, server = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
ctx = ssl.create_default_context(cafile=sys.argv[7]) if addr.startswith("https") else None
idle, settle = float(sys.argv[8]), float(sys.argv[9])
sim = int(sys.argv[10])

def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(addr + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    # With 10,000 nodes' connections on 2 cores, a new connection is now and
    # then reset before it is served; each call here may be repeated (a job
    # registered again unchanged is no new version).
    for attempt in range(5):
        try:
            with urllib.request.urlopen(req, timeout=60, context=ctx) as r:
                return json.load(r)
        except ConnectionResetError:
            if attempt == 4:
                raise
            print(f"  connection reset on {method} {path}; again", file=sys.stderr)
            time.sleep(0.5)

def cpu_seconds(stat=None):
    f = open(stat or f"/proc/{server}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def hwm_mb(pid=None):
    for line in open(f"/proc/{pid or server}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

def threads():
    """The server's CPU seconds by thread name (the store's writer and
    committer, the runtime's workers...)."""
    out = {}
    for t in os.listdir(f"/proc/{server}/task"):
        try:
            name = open(f"/proc/{server}/task/{t}/comm").read().strip()
            out[name] = out.get(name, 0) + cpu_seconds(f"/proc/{server}/task/{t}/stat")
        except OSError:
            pass
    return out

t = time.time()
while call("GET", "/v1/status/health")["nodes_ready"] < nodes:
    if time.time() - t > timeout:
        sys.exit(f"only {call('GET', '/v1/status/health')['nodes_ready']} of {nodes} nodes registered")
    time.sleep(0.2)
print(f"{nodes} nodes ready in {time.time() - t:.1f}s; server at {hwm_mb():.0f} MB, {cpu_seconds():.1f} CPU s")
if idle > 0:
    time.sleep(settle)
    c0 = cpu_seconds()
    time.sleep(idle)
    print(f"IDLE nodes={nodes}: server CPU {cpu_seconds() - c0:.2f} s over {idle:.0f} s of heartbeats (after {settle:.0f} s to settle)")

cpu0, sim0, threads0 = cpu_seconds(), cpu_seconds(f"/proc/{sim}/stat"), threads()
total = jobs * count
latencies = []
def submit(j):
    t = time.time()
    submit_job(j)
    latencies.append(time.time() - t)

def submit_job(j):
    call("POST", "/v1/jobs", {"job": {
        "id": f"bench-{j}", "name": f"bench-{j}", "type": "service",
        "groups": [{"name": "g", "count": count, "tasks": [{
            "name": "t", "driver": "exec",
            "config": {"command": "/bin/sleep", "args": ["600"]},
            "resources": {"cpu": 10, "memory": 10}}]}]}})

# Submitted by a few clients at once, as a busy cluster would see them.
t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(submit, range(jobs)))
t_sub = time.time() - t0
running = 0
last = -1
while True:
    stubs = call("GET", "/v1/jobs")
    running = sum(g.get("running", 0) for s in stubs for g in s["summary"].values())
    if running >= total:
        break
    if time.time() - t0 > timeout:
        sys.exit(f"timed out: {running} of {total} running after {timeout:.0f}s")
    if running // 10000 != last:
        last = running // 10000
        print(f"  {time.time() - t0:6.1f}s  {running} running")
    time.sleep(0.5)
el = time.time() - t0
print(f"RESULT nodes={nodes} allocs={total}: all running in {el:.1f}s "
      f"(jobs submitted in {t_sub:.1f}s; {total / el:.0f} allocs/s); "
      f"server peak RSS {hwm_mb():.0f} MB, CPU {cpu_seconds() - cpu0:.1f} s "
      f"during the run ({cpu_seconds():.1f} s total)")
latencies.sort()
pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
print(f"  job POSTs: p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms, max {latencies[-1] * 1000:.0f} ms")
print(f"  edge sim: CPU {cpu_seconds(f'/proc/{sim}/stat') - sim0:.1f} s during the run, peak RSS {hwm_mb(sim):.0f} MB")
spent = {k: v - threads0.get(k, 0) for k, v in threads().items()}
print("  server CPU by thread: " + ", ".join(
    f"{k} {v:.1f} s" for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v >= 0.5))
EOF
  grep -E "registered" "$dir/sim.log" | tail -1 || true
  cleanup
  pids=()
  rm -rf "$dir"
done
