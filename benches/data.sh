#!/usr/bin/env bash
# What data into tasks adds to an allocation's start (as root: local
# volumes and secrets need it): the time from placement to the main task
# running (its `started_at` minus the allocation's `create_time`, both on
# this host's clock), median of N runs, for a plain exec task against the
# same task with 1 local volume + 2 configs + 2 secrets + 1 template. Then
# secret puts and agent fetches per second
# (`cargo bench -p edge-server --bench secrets`).
# usage: bash benches/data.sh      (EDGE=path N=15 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
EDGE=${EDGE:-target/release/edge}
N=${N:-15}
[ "$(id -u)" = 0 ] || {
  echo "benches/data.sh needs root (local volumes, the secrets tmpfs)" >&2
  exit 1
}
[ -x "$EDGE" ] || cargo build --release -p edge
EDGE=$(realpath "$EDGE")
work=$(mktemp -d)
pid=
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -f "$work/dev.log" ]; then tail -n 30 "$work/dev.log" >&2; fi
  if [ -n "$pid" ]; then
    "$EDGE" job stop plain >/dev/null 2>&1 || true
    "$EDGE" job stop data >/dev/null 2>&1 || true
    sleep 2
    kill "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export EDGE_ADDR=http://127.0.0.1:$port
"$EDGE" dev --data-dir "$work/data" --bind "127.0.0.1:$port" --no-bridge >"$work/dev.log" 2>&1 &
pid=$!
wait_for 30 "a ready node" sh -c "'$EDGE' node ls 2>/dev/null | grep -q ready"

"$EDGE" config put c1 a=1 >/dev/null
"$EDGE" config put c2 b=2 >/dev/null
"$EDGE" secret put s1 x=secret-one >/dev/null
"$EDGE" secret put s2 y=secret-two >/dev/null

job() { # NAME WITH_DATA RUN
  local extra="" vol=""
  if [ "$2" = 1 ]; then
    vol='volume "data" { type = "local" }'
    extra='
      volume_mount {
        volume      = "data"
        destination = "'"$work"'/mnt-'"$3"'"
      }
      config "c1" {}
      config "c2" {}
      secret "s1" {}
      secret "s2" {}
      template {
        data        = "{{ node.name }} {{ config(\"c1\").a }}"
        destination = "local/t.txt"
      }'
  fi
  cat <<EOF2
job "$1" {
  group "g" {
    $vol
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sleep"
        args    = ["600"]
      }
      $extra
      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
EOF2
}

# Placement to running, in ms, of the job's running allocation.
start_ms() {
  "$EDGE" alloc ls --job "$1" -o json | python3 -c '
import json, sys
for a in json.load(sys.stdin):
    if a["client_status"] == "running" and a["desired_status"] == "run":
        t = a["task_states"]["t"]
        print(t["started_at"] - a["create_time"])
        break
'
}

measure() { # NAME WITH_DATA
  local out=()
  for i in $(seq 1 "$N"); do
    job "$1" "$2" "$i" >"$work/$1.hcl"
    "$EDGE" job run --detach "$work/$1.hcl" >/dev/null
    wait_for 30 "$1 running" sh -c "'$EDGE' alloc ls --job $1 -o json | grep -q '\"client_status\": \"running\"'"
    out+=("$(start_ms "$1")")
    "$EDGE" job stop "$1" >/dev/null
    wait_for 30 "$1 stopped" sh -c "! '$EDGE' alloc ls --job $1 -o json | grep -q '\"client_status\": \"running\"'"
  done
  printf '%s\n' "${out[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

plain=$(measure plain 0)
data=$(measure data 1)
echo "== allocation start, placement to running, median of $N (ms)"
printf '%-58s %6s\n' "plain exec task" "$plain"
printf '%-58s %6s\n' "+ 1 local volume, 2 configs, 2 secrets, 1 template" "$data"
printf '%-58s %6s\n' "added" "$((data - plain))"

echo "== secret round trips"
cargo bench -q -p edge-server --bench secrets 2>/dev/null | grep -E "secret"
