#!/usr/bin/env bash
# Side-by-side load balancer benchmark: wrk against one tiny hyper backend,
# through edge's LB and through HAProxy, in HTTP and TCP mode, on 127.0.0.1.
# Usage: benches/lb.sh [duration=10s] [connections=64] [proxy threads=1]
# The proxy under test is pinned to CPU 1, wrk and the backend to CPU 0, so
# both proxies get one core each in turn.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10s}
CONNS=${2:-64}
THREADS=${3:-1}
BACKEND=127.0.0.1:18180
EDGE_HTTP=18181 EDGE_TCP=18182 HAP_HTTP=18183 HAP_TCP=18184

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v haproxy >/dev/null || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build -q --release -p edge-lb --example lb_bench
BIN=target/release/examples/lb_bench

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

pin() { if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }

cat >"$tmp/haproxy.cfg" <<CFG
global
  nbthread $THREADS
  maxconn 20000
defaults
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend http_in
  mode http
  bind 127.0.0.1:$HAP_HTTP
  option http-keep-alive
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  default_backend be_http
backend be_http
  mode http
  balance roundrobin
  http-reuse always
  server b1 $BACKEND
frontend tcp_in
  mode tcp
  bind 127.0.0.1:$HAP_TCP
  default_backend be_tcp
backend be_tcp
  mode tcp
  balance roundrobin
  server b1 $BACKEND
CFG

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 never opened" >&2
  exit 1
}

pin 0 "$BIN" backend "${BACKEND##*:}" 1 & pids+=($!)
wait_port "${BACKEND##*:}"

# wrk's closing summary: req/s, p50, p99.
measure() {
  local name=$1 port=$2 out
  pin 0 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null
  out=$(pin 0 wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | tr '\n' ';' || true)
  printf '%-14s %12s %10s %10s  %s\n' "$name" "$rps" "$p50" "$p99" "$errs"
}

echo "wrk -t1 -c$CONNS -d$DURATION --latency; proxy threads=$THREADS; backend: 1-thread hyper"
printf '%-14s %12s %10s %10s\n' target req/s p50 p99

pin 1 "$BIN" lb "$BACKEND" "$EDGE_HTTP" "$EDGE_TCP" "$THREADS" >"$tmp/edge.log" 2>&1 & edge=$!
pids+=($edge)
wait_port "$EDGE_HTTP"; wait_port "$EDGE_TCP"
measure "edge http" "$EDGE_HTTP"
measure "edge tcp" "$EDGE_TCP"
kill "$edge"; wait "$edge" 2>/dev/null || true

pin 1 haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 & hap=$!
pids+=($hap)
wait_port "$HAP_HTTP"; wait_port "$HAP_TCP"
measure "haproxy http" "$HAP_HTTP"
measure "haproxy tcp" "$HAP_TCP"
kill "$hap"; wait "$hap" 2>/dev/null || true

measure "direct" "${BACKEND##*:}"
