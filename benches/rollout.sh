#!/usr/bin/env bash
# Rolling update under load: N copies of an HTTP service (exec, busybox
# httpd) published on the node's load balancer; wrk runs
# through it in steady state, then again while a new revision rolls out
# MAX_PARALLEL copies at a time. Reports failed requests (must be 0), p99
# in steady state vs during the rollout, and the rollout's time against the
# sum of its min_healthy_time waits (the overhead per batch is what edge
# adds: starting a copy, its first passing check, stopping the old one).
# usage: bash benches/rollout.sh [N] [MAX_PARALLEL] [MIN_HEALTHY]
#        (defaults: 10, 2, 2s; EDGE=path to a built edge)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}
MAX_PARALLEL=${2:-2}
MIN_HEALTHY=${3:-2s}
EDGE=${EDGE:-target/release/edge}
[ -x "$EDGE" ] || cargo build --release -p edge
EDGE=$(realpath "$EDGE")
. deploy/lib.sh
command -v wrk >/dev/null || apt_install wrk
command -v busybox >/dev/null || apt_install busybox-static
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ms() { date +%s%3N; }
WAIT_POLL=0.1
. benches/lib.sh
quiet() { "$@" >/dev/null 2>&1; }

work=$(mktemp -d)
port=$(free_port); dns=$(free_port); lb=$(free_port)
api=http://127.0.0.1:$port
export EDGE_ADDR=$api
mkdir -p "$work/www" && echo ok >"$work/www/index.html"
cleanup() {
  "$EDGE" job stop rollout >/dev/null 2>&1 || true
  sleep 2
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
pids=()
trap cleanup EXIT

job() {
  cat >"$work/job.hcl" <<EOF
job "rollout" {
  group "web" {
    count = $N
    update {
      max_parallel     = $MAX_PARALLEL
      min_healthy_time = "$MIN_HEALTHY"
    }
    network {
      port "http" {}
    }
    service {
      name           = "rollout"
      port           = "http"
      shutdown_delay = "1s"
      check {
        type     = "http"
        path     = "/"
        interval = "500ms"
        timeout  = "1s"
      }
      publish {
        port     = $lb
        protocol = "http"
      }
    }
    task "web" {
      driver = "exec"
      config {
        command = "$(command -v busybox)"
        args    = ["httpd", "-f", "-p", "127.0.0.1:\${EDGE_PORT_http}", "-h", "$work/www"]
      }
      env {
        REVISION = "$1"
      }
      resources {
        cpu    = 20
        memory = 32
      }
    }
  }
}
EOF
  "$EDGE" job run --detach "$work/job.hcl" >/dev/null
}

# Copies serving through the API: "<running at VERSION> <running in all>".
count() {
  python3 - "$api" "$1" <<'EOF'
import json, sys, urllib.request
api, version = sys.argv[1], int(sys.argv[2])
allocs = json.load(urllib.request.urlopen(f"{api}/v1/job/rollout/allocations", timeout=2))
running = [a for a in allocs if a["client_status"] == "running"]
print(sum(a["job_version"] == version for a in running), len(running))
EOF
}
all_at() { [ "$(count "$1")" = "$N $N" ]; }
serving() {
  python3 - "$api" "$N" <<'EOF'
import json, sys, urllib.request
api, n = sys.argv[1], int(sys.argv[2])
inst = json.load(urllib.request.urlopen(f"{api}/v1/service/rollout", timeout=2))
sys.exit(0 if sum(i["status"] == "passing" for i in inst) == n else 1)
EOF
}

"$EDGE" server --data-dir "$work/server" --bind "127.0.0.1:$port" >"$work/server.log" 2>&1 &
pids+=($!)
wait_for 20 "the server's join token" test -s "$work/server/token"
"$EDGE" agent --server "$api" --join-token "$(cat "$work/server/token")" \
  --data-dir "$work/agent" --dns-port "$dns" --name bench >"$work/agent.log" 2>&1 &
pids+=($!)
wait_for 30 "a ready node" quiet sh -c "'$EDGE' node ls | grep -q ready"
job 1
wait_for 120 "$N copies running" all_at 0
wait_for 60 "$N copies passing" serving

# "req/s p99_ms failed" of one wrk run; failed = socket errors + non-2xx.
load() {
  wrk -t1 -c16 -d"$1" --latency "http://127.0.0.1:$lb/" | tee -a "$work/wrk.txt" | python3 -c '
import re, sys
t = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)", t)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps:.0f} {p99:.2f} {errs + (int(non2xx.group(1)) if non2xx else 0)}")'
}

read -r s_rps s_p99 s_failed < <(load 10s)
# The rollout runs inside one long wrk run that starts first.
load 60s >"$work/rollout.out" &
wrk_pid=$!
sleep 2
t0=$(ms)
job 2
wait_for 120 "every copy at revision 2" all_at 1
took=$(($(ms) - t0))
wait "$wrk_pid"
read -r r_rps r_p99 r_failed <"$work/rollout.out"

batches=$(((N + MAX_PARALLEL - 1) / MAX_PARALLEL))
healthy_ms=$(python3 -c "import sys; s='$MIN_HEALTHY'; print(int(float(s[:-2]) if s.endswith('ms') else float(s[:-1]) * 1000))")
floor=$((batches * healthy_ms))
echo "rollout bench: $N copies, max_parallel $MAX_PARALLEL, min_healthy_time $MIN_HEALTHY ($batches batches)"
echo "  steady:  $s_rps req/s, p99 $s_p99 ms, $s_failed failed"
echo "  rollout: $r_rps req/s, p99 $r_p99 ms, $r_failed failed (60 s of wrk, the rollout inside it)"
echo "  rollout took $took ms vs $floor ms of min_healthy_time: $(((took - floor) / batches)) ms overhead per batch"
[ "$r_failed" = 0 ] || { cat "$work/wrk.txt" >&2; echo "rollout bench: requests failed during the rollout" >&2; exit 1; }
