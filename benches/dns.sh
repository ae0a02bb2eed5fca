#!/usr/bin/env bash
# Queries per second of edge's service DNS next to unbound serving the same
# 100-service zone from local-data, both on loopback, both loaded by dnsperf.
# Run: bash benches/dns.sh   (DURATION=10 seconds per run, MODE=a|mix|both,
# ROUNDS=1, UNBOUND_THREADS=1, BIN=prebuilt serve bench, EDGE_DNS_THREADS=cores, CLIENTS=4, OUTSTANDING=200)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-10}
mode=${MODE:-both}
threads=${UNBOUND_THREADS:-1}
clients=${CLIENTS:-4}
outstanding=${OUTSTANDING:-200}
rounds=${ROUNDS:-1}

need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v unbound >/dev/null || [ -x /usr/sbin/unbound ] || need+=(unbound)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
unbound_bin=$(command -v unbound || echo /usr/sbin/unbound)

bin=${BIN:-}
[ -n "$bin" ] || bin=$(cargo bench --locked -q -p edge-dns --bench serve --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "serve" and m.get("executable"):
        print(m["executable"])')

dir=$(mktemp -d)
pids=()
cleanup() {
  exec 3>&- 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

# A port free for both UDP and TCP (unbound binds both).
free_port() { python3 -c 'import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass'; }

# The same zone as the bench binary's synthetic catalog: svcN on 3 instances over 5 nodes.
{
  echo "server:"
  echo "  interface: 127.0.0.1"
  echo "  port: UNBOUND_PORT"
  echo "  username: \"\""
  echo "  chroot: \"\""
  echo "  directory: \"$dir\""
  echo "  pidfile: \"$dir/unbound.pid\""
  echo "  do-daemonize: no"
  echo "  use-syslog: no"
  echo "  logfile: \"$dir/unbound.log\""
  echo "  verbosity: 0"
  echo "  num-threads: $threads"
  echo "  so-reuseport: yes"
  echo "  do-ip6: no"
  echo "  module-config: \"iterator\""
  echo "  access-control: 127.0.0.0/8 allow"
  echo "  local-zone: \"service.edge.\" static"
  for s in $(seq 0 99); do
    echo "  local-data: \"svc$s.service.edge. 5 IN A 127.0.0.1\""
    for i in 0 1 2; do
      node=$(( (s + i) % 5 ))
      echo "  local-data: \"tasks.svc$s.service.edge. 5 IN A 127.0.1.$((node + 1))\""
      echo "  local-data: \"_svc$s._tcp.service.edge. 5 IN SRV 1 1 $((20000 + s * 3 + i)) node$node.node.service.edge.\""
    done
  done
  for n in 0 1 2 3 4; do echo "  local-data: \"node$n.node.service.edge. 5 IN A 127.0.1.$((n + 1))\""; done
} >"$dir/unbound.conf.in"
# Another process may take the port between the pick and unbound's bind: pick again.
for _ in 1 2 3 4 5; do
  unbound_port=$(free_port)
  sed "s/UNBOUND_PORT/$unbound_port/" "$dir/unbound.conf.in" >"$dir/unbound.conf"
  "$unbound_bin" -c "$dir/unbound.conf" -d >"$dir/unbound.out" 2>&1 &
  unbound_pid=$!
  sleep 0.5
  kill -0 "$unbound_pid" 2>/dev/null && break
done
pids+=("$unbound_pid")

mkfifo "$dir/edge.in"
"$bin" >"$dir/edge.out" 2>&1 <"$dir/edge.in" &
pids+=($!)
edge_pid=$!
exec 3>"$dir/edge.in"
for _ in $(seq 1 100); do grep -q '^udp=' "$dir/edge.out" && break; sleep 0.05; done
edge_port=$(sed -n 's/^udp=.*:\([0-9]*\)$/\1/p' "$dir/edge.out")
[ -n "$edge_port" ] || { echo "edge dns did not start:"; cat "$dir/edge.out"; exit 1; }

for s in $(seq 0 99); do echo "svc$s.service.edge A"; done >"$dir/q-a"
for s in $(seq 0 99); do
  echo "svc$s.service.edge A"; echo "tasks.svc$s.service.edge A"; echo "_svc$s._tcp.service.edge SRV"
done >"$dir/q-mix"

# Both answer the same questions with NOERROR before anything is timed (unbound may
# still be starting: give it a few seconds).
answers() { echo "$2" | dnsperf -s 127.0.0.1 -p "$1" -n 1 -t 1 2>&1 | grep -q 'NOERROR 1 '; }
for q in "svc7.service.edge A" "tasks.svc7.service.edge A" "_svc7._tcp.service.edge SRV"; do
  for p in "$edge_port" "$unbound_port"; do
    for _ in $(seq 1 10); do answers "$p" "$q" && break; sleep 0.5; done
    answers "$p" "$q" || { echo "port $p did not answer '$q' with NOERROR"; cat "$dir/unbound.out"; exit 1; }
  done
done

# CPU time the server spent, in clock ticks: a busy machine changes qps, much less this.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
run() { # name port queryfile pid -> "qps cpu_us_per_query"
  local before after
  before=$(cpu "$4")
  dnsperf -s 127.0.0.1 -p "$2" -d "$3" -l "$duration" -c "$clients" -q "$outstanding" >"$dir/$1.log" 2>&1
  after=$(cpu "$4")
  awk -v t=$((after - before)) -v hz="$hz" '/Queries completed/ {n = $3} /Queries per second/ {q = $4}
    END {printf "%.0f %.2f", q, t / hz * 1e6 / n}' "$dir/$1.log"
}

echo "dnsperf -l $duration -c $clients -q $outstanding, best of $rounds; edge threads=${EDGE_DNS_THREADS:-$(nproc)}; unbound $("$unbound_bin" -V | awk 'NR==1{print $2}') num-threads=$threads; $(nproc) cores"
printf "%-6s %10s %10s %7s %16s %16s\n" queries edge_qps unbound_qps ratio edge_cpu_us/q unbound_cpu_us/q
modes=$([ "$mode" = both ] && echo "a mix" || echo "$mode")
# Runs alternate between the two so a busy machine hurts both alike; the best round counts.
best() { awk -v a="$1" -v b="$2" 'BEGIN{split(a, x, " "); split(b, y, " "); print (x[1] + 0 >= y[1] + 0) ? a : b}'; }
for m in $modes; do
  e="0 0"; u="0 0"
  for _ in $(seq 1 "$rounds"); do
    e=$(best "$e" "$(run "edge-$m" "$edge_port" "$dir/q-$m" "$edge_pid")")
    u=$(best "$u" "$(run "unbound-$m" "$unbound_port" "$dir/q-$m" "$unbound_pid")")
  done
  read -r eq ec <<<"$e"
  read -r uq uc <<<"$u"
  lost() { awk '/Queries lost/ {print $3}' "$dir/$1.log"; }
  printf "%-6s %10s %10s %7s %16s %16s   (lost in last round: edge %s, unbound %s)\n" "$m" "$eq" "$uq" \
    "$(awk -v e="$eq" -v u="$uq" 'BEGIN{printf "%.2fx", e/u}')" "$ec" "$uc" "$(lost "edge-$m")" "$(lost "unbound-$m")"
done
