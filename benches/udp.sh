#!/usr/bin/env bash
# UDP through the load balancer: round trips of 64-byte datagrams from FLOWS
# client sockets (each one flow, ping-pong) to an echo backend, directly,
# through edge's load balancer (`publish { protocol = "udp" }`) and through
# nginx's stream proxy (`listen ... udp`), on 127.0.0.1.
# Usage: benches/udp.sh [seconds=5] [flows=32] [rounds=3]
# Both proxies run at once, pinned to CPU 1, one worker each; the load and
# the backend are pinned to CPU 0.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

SECONDS_EACH=${1:-5}
FLOWS=${2:-32}
ROUNDS=${3:-3}
BACKEND=18190 EDGE=18191 NGINX=18192

if ! command -v nginx >/dev/null || ! ls /usr/lib/nginx/modules/ngx_stream_module.so >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light libnginx-mod-stream >/dev/null
fi

cargo build -q --release -p edge-lb --example lb_bench
BIN=${CARGO_TARGET_DIR:-target}/release/examples/lb_bench

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

pin_cpus

cat >"$tmp/nginx.conf" <<CFG
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/nginx.log warn;
events { worker_connections 4096; }
stream {
  upstream echo { server 127.0.0.1:$BACKEND; }
  server {
    listen 127.0.0.1:$NGINX udp;
    proxy_pass echo;
    proxy_timeout 30s;
  }
}
CFG

"${CPU0[@]}" "$BIN" udp-backend "$BACKEND" & pids+=($!)
backend=$!
"${CPU1[@]}" "$BIN" udp-lb "127.0.0.1:$BACKEND" "$EDGE" >"$tmp/edge.log" 2>&1 & pids+=($!)
edge=$!
"${CPU1[@]}" nginx -c "$tmp/nginx.conf" -e "$tmp/nginx.log" & pids+=($!)
sleep 1
nginx_worker=$(pgrep -P "$(cat "$tmp/nginx.pid")" | head -1)


# "round_trips/s p50_us p99_us lost cpu_us_per_round_trip" of the proxy.
measure() {
  local port=$1 pid=$2 out c0 c1
  c0=$(cpu_s "$pid")
  out=$("${CPU0[@]}" "$BIN" udp-load "127.0.0.1:$port" "$FLOWS" "$SECONDS_EACH")
  c1=$(cpu_s "$pid")
  awk -v cpu="$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" -v s="$SECONDS_EACH" '
    { printf "%s %s %s %s %.2f\n", $1, $2, $3, $4, ($1 > 0 ? cpu * 1e6 / ($1 * s) : 0) }' <<<"$out"
}

targets=("edge:$EDGE:$edge" "nginx:$NGINX:$nginx_worker" "direct:$BACKEND:$backend")
for t in "${targets[@]}"; do IFS=: read -r _ port _ <<<"$t"; "${CPU0[@]}" "$BIN" udp-load "127.0.0.1:$port" "$FLOWS" 1 >/dev/null; done

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "udp-load $FLOWS flows x ${SECONDS_EACH}s x $ROUNDS rounds (interleaved, median shown); proxies: 1 thread"
for r in $(seq "$ROUNDS"); do
  for t in "${targets[@]}"; do
    IFS=: read -r name port pid <<<"$t"
    echo "$name $(measure "$port" "$pid")" >>"$tmp/results"
  done
done
printf '%-8s %14s %8s %8s %6s %14s\n' target round_trips/s p50_us p99_us lost cpu_us/trip
for t in "${targets[@]}"; do
  name=${t%%:*}
  awk -v n="$name" '$1 == n' "$tmp/results" | sort -k2 -n | awk -v rounds="$ROUNDS" '
    NR == int((rounds + 1) / 2) { printf "%-8s %14s %8s %8s %6s %14s\n", $1, $2, $3, $4, $5, $6 }'
done
echo "all runs:"; cat "$tmp/results"
