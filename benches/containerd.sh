#!/usr/bin/env bash
# Benchmarks of the containerd driver (as root, with containerd running):
#  1. `edge job run` (submit → task running) for a cached image, against
#     `ctr run -d` of the same image, median of ROUNDS runs each;
#  2. N containers on one node: the agent's RSS and CPU use while idle, and
#     the memory of the per-container log drivers.
# usage: bash benches/containerd.sh      (EDGE=path ROUNDS=7 N=50 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
EDGE=${EDGE:-target/release/edge}
ROUNDS=${ROUNDS:-7}
N=${N:-50}
[ -x "$EDGE" ] || cargo build --release -p edge
EDGE=$(realpath "$EDGE")
IMAGE=docker.io/edge/bench:latest
work=$(mktemp -d)
pids=()
cleanup() {
  local rc=$?
  # A failed run shows why before its logs are removed.
  if [ "$rc" != 0 ]; then
    for l in "$work"/*.log; do
      if [ -f "$l" ]; then echo "--- $l" && tail -n 20 "$l"; fi
    done >&2
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ctr_clean edge-bench
  rm -rf "$work"
}
trap cleanup EXIT

bash tests/images/build-busybox.sh "$work/bench.tar" "$IMAGE" >/dev/null
ctr -n edge-bench images import "$work/bench.tar" >/dev/null
"$EDGE" image import "$work/bench.tar" >/dev/null

# --- 1. start latency -------------------------------------------------------
: >"$work/ctr.ms"
for i in $(seq 1 "$ROUNDS"); do
  t0=$(ms)
  ctr -n edge-bench run -d --memory-limit 33554432 "$IMAGE" "bench-ctr-$i" sleep 1000 >/dev/null
  echo $(($(ms) - t0)) >>"$work/ctr.ms"
done
ctr_clean edge-bench

port=$(free_port)
export EDGE_ADDR=http://127.0.0.1:$port
"$EDGE" server --data-dir "$work/server" --bind "127.0.0.1:$port" >"$work/server.log" 2>&1 &
pids+=($!)
wait_for 10 "the server's join token" test -f "$work/server/token"
"$EDGE" agent --server "$EDGE_ADDR" --join-token "$(cat "$work/server/token")" \
  --data-dir "$work/agent" --log-level warn >"$work/agent.log" 2>&1 &
agent=$!
pids+=($agent)
node_ready() { [[ $("$EDGE" node ls 2>/dev/null) == *ready* ]]; }
wait_for 30 "the agent's node to be ready" node_ready

job() { # name count command...
  local name=$1 count=$2
  shift 2
  local args
  args=$(printf '"%s", ' "$@")
  cat >"$work/$name.hcl" <<HCL
job "$name" {
  group "g" {
    count = $count
    task "t" {
      driver = "containerd"
      kill_timeout = "1s"
      config {
        image = "$IMAGE"
        args  = [${args%, }]
      }
      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
HCL
  echo "$work/$name.hcl"
}
: >"$work/edge.ms"
for i in $(seq 1 "$ROUNDS"); do
  f=$(job "lat$i" 1 sleep 1000)
  t0=$(ms)
  "$EDGE" job run "$f" >/dev/null
  echo $(($(ms) - t0)) >>"$work/edge.ms"
done
ctr_med=$(median <"$work/ctr.ms")
edge_med=$(median <"$work/edge.ms")
echo "start latency, cached image (median of $ROUNDS):"
echo "  ctr run -d:   ${ctr_med} ms   (runs: $(tr '\n' ' ' <"$work/ctr.ms"))"
echo "  edge job run: ${edge_med} ms   (runs: $(tr '\n' ' ' <"$work/edge.ms"))"
echo "  overhead:     $((edge_med - ctr_med)) ms ($(((edge_med - ctr_med) * 100 / ctr_med))%)"
for i in $(seq 1 "$ROUNDS"); do "$EDGE" job stop "lat$i" >/dev/null; done

# --- 2. N containers idle ---------------------------------------------------
f=$(job many "$N" sleep 100000)
"$EDGE" job run --timeout 300s "$f" >/dev/null
sleep 10
running=$(ctr -n edge t ls | grep -c RUNNING || true)
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
c0=$(cpu_ticks "$agent")
sleep 30
c1=$(cpu_ticks "$agent")
hz=$(getconf CLK_TCK)
loggers=$(pgrep -f "containerd-logger $work/agent" || true)
pss=0
for p in $loggers; do
  pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
done
nlog=$(echo "$loggers" | grep -c . || true)
echo "$N containers on one node ($running tasks running in namespace edge):"
echo "  agent RSS idle:  $(($(rss_kb "$agent") / 1024)) MB"
echo "  agent CPU idle:  $(awk -v d=$((c1 - c0)) -v hz="$hz" 'BEGIN {printf "%.2f", d / hz / 30 * 100}')% of one core (30 s)"
echo "  log drivers:     $nlog processes, $((pss / 1024)) MB PSS total"
"$EDGE" job stop many >/dev/null
# The agent removes containers after the stop is committed: wait for that.
no_containers() { [ -z "$(ctr -n edge c ls -q)" ]; }
wait_for 60 "the agent to remove its containers" no_containers
