#!/usr/bin/env bash
# Idle resident memory of `edge dev` (server + agent in one process) with no
# jobs, after it has settled. Run: bash benches/idle-memory.sh
# (TLS=1: `edge dev --tls`, the agent joining over mutual TLS).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
cargo build --release --locked -q -p edge
edge=${CARGO_TARGET_DIR:-target}/release/edge
tls=() scheme=http
if [ "${TLS:-0}" = 1 ]; then tls=(--tls); scheme=https; fi
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$edge" dev --data-dir "$dir" --bind "127.0.0.1:$port" "${tls[@]}" >"$dir/log" 2>&1 &
pid=$!
# A failed run shows edge's log before it is removed.
trap 'rc=$?; [ $rc = 0 ] || tail -n 20 "$dir/log" >&2; kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
node_ready() { [[ $("$edge" --address "$scheme://127.0.0.1:$port" --ca-cert "$dir/server/ca.pem" node ls 2>/dev/null) == *ready* ]]; }
wait_for 30 "edge dev's node to be ready" node_ready
sleep "${SETTLE:-10}"
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
threads=$(awk '/^Threads/ {print $2}' "/proc/$pid/status")
size=$(stat -c %s "$edge")
awk -v r="$rss_kb" -v h="$hwm_kb" -v t="$threads" -v s="$size" 'BEGIN {
  printf "edge dev idle: RSS %.1f MB (peak %.1f MB), %d threads, binary %.1f MB\n", r/1024, h/1024, t, s/1048576 }'
