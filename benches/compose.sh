#!/usr/bin/env bash
# `edge compose up` of a 10-service project (busybox httpd replicas, a
# healthcheck each, three networks) from a cached image to every service
# healthy, on an `edge dev` with containerd and bridge networking (as root,
# containerd running), median of ROUNDS runs; against the sum of `ctr run
# -d` starts of the same ten containers (Docker is not on these machines,
# so `docker compose up -d` is not the baseline here).
# usage: bash benches/compose.sh      (EDGE=path ROUNDS=5 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
EDGE=${EDGE:-${CARGO_TARGET_DIR:-target}/release/edge}
ROUNDS=${ROUNDS:-5}
[ -x "$EDGE" ] || cargo build --release -p edge
EDGE=$(realpath "$EDGE")
IMAGE=docker.io/edge/busybox:latest
work=$(mktemp -d)
pids=()
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -f "$work/dev.log" ]; then tail -n 30 "$work/dev.log" >&2; fi
  (cd "$work/app" 2>/dev/null && "$EDGE" compose down -v >/dev/null 2>&1) || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ctr_clean edge-bench
  rm -rf "$work"
}
trap cleanup EXIT

bash tests/images/build-busybox.sh "$work/busybox.tar" "$IMAGE" >/dev/null
ctr -n edge-bench images import "$work/busybox.tar" >/dev/null

# The project: ten services, each an httpd with a healthcheck.
mkdir -p "$work/app"
{
  echo "name: bench"
  echo "services:"
  for i in $(seq 0 9); do
    nets="[tier$((i % 3))]"
    cat <<SVC
  svc$i:
    image: $IMAGE
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    networks: $nets
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
      interval: 1s
      timeout: 1s
SVC
  done
  echo "networks:"
  for t in 0 1 2; do echo "  tier$t: {}"; done
} >"$work/app/compose.yaml"

port=$(free_port)
export EDGE_ADDR=http://127.0.0.1:$port
"$EDGE" dev --data-dir "$work/data" --bind "127.0.0.1:$port" --bridge-name edgebcmp0 \
  --bridge-subnet 10.216.9.0/24 --network-pool 10.216.12.0/22 --network-prefix 24 \
  >"$work/dev.log" 2>&1 &
pids+=($!)
ready() { "$EDGE" node ls -o json 2>/dev/null | grep -q '"ready"'; }
wait_for 30 "edge dev" ready
"$EDGE" image import "$work/busybox.tar" >/dev/null

healthy() {
  "$EDGE" service ls --namespace bench -o json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
ok = len(s) == 10 and all(x["instances"] > 0 and x["passing"] == x["instances"] for x in s)
sys.exit(0 if ok else 1)'
}
stopped() { [ "$("$EDGE" compose ps -o json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 0 ]; }

: >"$work/edge.ms"
cd "$work/app"
for r in $(seq 1 "$ROUNDS"); do
  t0=$(ms)
  "$EDGE" compose up --detach >/dev/null
  WAIT_POLL=0.05 wait_for 120 "ten healthy services" healthy
  echo $(($(ms) - t0)) >>"$work/edge.ms"
  "$EDGE" compose down >/dev/null
  wait_for 60 "the project to stop" stopped
done
cd - >/dev/null

: >"$work/ctr.ms"
for r in $(seq 1 "$ROUNDS"); do
  t0=$(ms)
  for i in $(seq 0 9); do
    ctr -n edge-bench run -d "$IMAGE" "bench-$r-$i" httpd -f -p $((18080 + i)) -h /www >/dev/null
  done
  echo $(($(ms) - t0)) >>"$work/ctr.ms"
  ctr_clean edge-bench
done

e=$(median <"$work/edge.ms")
c=$(median <"$work/ctr.ms")
echo "RESULT compose_up_10_services_healthy_ms=$e ctr_run_10_sum_ms=$c rounds=$ROUNDS"
