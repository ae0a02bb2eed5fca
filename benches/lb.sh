#!/usr/bin/env bash
# Side-by-side load balancer benchmark: wrk against one tiny hyper backend,
# through edge's LB and through HAProxy, in HTTP and TCP mode, on 127.0.0.1.
# Usage: benches/lb.sh [duration=10s] [connections=64] [proxy threads=1] [rounds=3]
# Both proxies run at once, pinned to CPU 1 (only the one measured is
# loaded); wrk and the backend are pinned to CPU 0.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

DURATION=${1:-10s}
CONNS=${2:-64}
THREADS=${3:-1}
ROUNDS=${4:-3}
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

pin_cpus

cat >"$tmp/haproxy.cfg" <<CFG
global
  nbthread $THREADS
  maxconn 4096
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

"${CPU0[@]}" "$BIN" backend "${BACKEND##*:}" 1 & pids+=($!)
wait_port "${BACKEND##*:}"


# One wrk run: "req/s p50_ms p99_ms cpu_us_per_req errors". CPU per request
# of the proxy does not depend on what else the machine is doing.
measure() {
  local port=$1 pid=$2 out c0 c1
  c0=$(cpu_s "$pid")
  out=$("${CPU0[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  c1=$(cpu_s "$pid")
  awk -v cpu="$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /requests in/ { total = $1 }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx|Socket errors/ { line = $0; gsub(/ +/, "_", line); err = err line ";" }
    END { printf "%s %.3f %.3f %.2f %s\n", rps, p50, p99, (total ? cpu * 1e6 / total : 0), (err == "" ? "-" : err) }' <<<"$out"
}

"${CPU1[@]}" "$BIN" lb "$BACKEND" "$EDGE_HTTP" "$EDGE_TCP" "$THREADS" >"$tmp/edge.log" 2>&1 &
edge=$!
pids+=($edge)
"${CPU1[@]}" haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
hap=$!
pids+=($hap)
for p in "$EDGE_HTTP" "$EDGE_TCP" "$HAP_HTTP" "$HAP_TCP"; do wait_port "$p"; done

backend_pid=${pids[0]}
targets=("edge-http:$EDGE_HTTP:$edge" "haproxy-http:$HAP_HTTP:$hap" "edge-tcp:$EDGE_TCP:$edge" "haproxy-tcp:$HAP_TCP:$hap" "direct:${BACKEND##*:}:$backend_pid")
for t in "${targets[@]}"; do IFS=: read -r _ port _ <<<"$t"; "${CPU0[@]}" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null; done

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t1 -c$CONNS -d$DURATION --latency x $ROUNDS rounds (interleaved, median shown); proxy threads=$THREADS; backend: 1-thread hyper"
# Rounds alternate the targets so background load hits them alike.
for r in $(seq "$ROUNDS"); do
  for t in "${targets[@]}"; do
    IFS=: read -r name port pid <<<"$t"
    echo "$name $(measure "$port" "$pid")" >>"$tmp/results"
  done
done
printf '%-14s %12s %10s %10s %12s  %s\n' target req/s p50_ms p99_ms cpu_us/req errors
for t in "${targets[@]}"; do
  name=${t%%:*}
  awk -v n="$name" '$1 == n' "$tmp/results" | sort -k2 -n | awk -v rounds="$ROUNDS" '
    NR == int((rounds + 1) / 2) { printf "%-14s %12s %10s %10s %12s  %s\n", $1, $2, $3, $4, $5, $6 }'
done
echo "all runs:"; cat "$tmp/results"
