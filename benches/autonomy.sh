#!/usr/bin/env bash
# Edge autonomy: after a simulated reboot (the agent and every task killed)
# with the server away, the time from `edge agent` starting to all N copies
# of a service answering: each on its own port, through the node's load
# balancer, and listed by the node's DNS (SRV, serving instances only).
# Per driver: exec, wasm (http mode), containerd (cached image; needs a
# running containerd). As root.
# usage: bash benches/autonomy.sh [N] [ROUNDS] [DRIVERS]
#        (defaults: 20, 5, "exec wasm containerd"; EDGE=path to a built edge)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
ROUNDS=${2:-5}
DRIVERS=${3:-exec wasm containerd}
EDGE=${EDGE:-target/release/edge}
[ -x "$EDGE" ] || cargo build --release -p edge
EDGE=$(realpath "$EDGE")
REPO=$(pwd)
ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The measured waits poll every 50 ms.
WAIT_POLL=0.05
. benches/lib.sh
quiet() { "$@" >/dev/null 2>&1; }

cat >/tmp/edge-autonomy-check.py <<'EOF'
# ports API JOB N      -> the host ports of the job's N running allocations
# check LB DNS NAME N PORT... -> exit 0 when every port and the LB answer 200
#                                and the DNS lists N serving instances (SRV)
import json, socket, struct, sys, urllib.request

def get(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status, r.read()

if sys.argv[1] == "ports":
    api, job, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
    allocs = json.loads(get(f"{api}/v1/job/{job}/allocations")[1])
    live = [a for a in allocs if a["desired_status"] == "run" and a["client_status"] == "running"]
    if len(live) != n:
        sys.exit(1)
    for a in live:
        full = json.loads(get(f"{api}/v1/allocation/{a['id']}")[1])
        print(full["resources"]["ports"][0]["value"])
    sys.exit(0)

lb, dns, name, n, ports = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6:]
for p in ports + [lb]:
    try:
        assert get(f"http://127.0.0.1:{p}/")[0] == 200
    except Exception:
        sys.exit(1)
q = struct.pack(">HHHHHH", 9, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(x)]) + x.encode() for x in f"_{name}._tcp.service.edge".split("."))
q += b"\0" + struct.pack(">HH", 33, 1)
# Over TCP: N SRV records outgrow a plain UDP answer.
s = socket.create_connection(("127.0.0.1", dns), timeout=1)
s.sendall(struct.pack(">H", len(q)) + q)
r = b""
while len(r) < 2 or len(r) < 2 + struct.unpack(">H", r[:2])[0]:
    chunk = s.recv(65535)
    if not chunk:
        sys.exit(1)
    r += chunk
r = r[2:]
sys.exit(0 if r[3] & 0xF == 0 and struct.unpack(">H", r[6:8])[0] == n else 1)
EOF
CHECK="python3 /tmp/edge-autonomy-check.py"

run_driver() {
  local driver=$1 work port api token dns lb job www pids=() times=()
  work=$(mktemp -d)
  port=$(free_port); dns=$(free_port); lb=$(free_port)
  api=http://127.0.0.1:$port
  www=$work/www
  mkdir -p "$www" && echo ok >"$www/index.html"
  job=bench-$driver
  local task
  case $driver in
    exec) task="driver = \"exec\"
      config {
        command = \"/usr/bin/python3\"
        args    = [\"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"--directory\", \"$www\", \"\${EDGE_PORT_http}\"]
      }" ;;
    wasm) task="driver = \"wasm\"
      config {
        module = \"$REPO/examples/wasm/web.wat\"
        mode   = \"http\"
        port   = \"http\"
      }" ;;
    containerd)
      mkdir -p "$work/agent/images"
      bash tests/images/build-busybox.sh "$work/agent/images/bench.tar" docker.io/edge/autonomy-bench:v1 >/dev/null
      task="driver = \"containerd\"
      config {
        image   = \"docker.io/edge/autonomy-bench:v1\"
        command = \"httpd\"
        args    = [\"-f\", \"-p\", \"\${EDGE_PORT_http}\", \"-h\", \"/www\"]
      }" ;;
  esac
  cat >"$work/job.hcl" <<EOF
job "$job" {
  group "web" {
    count = $N
    network {
      port "http" {}
    }
    service {
      name = "$job"
      port = "http"
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
      $task
      resources {
        cpu    = 20
        memory = 32
      }
    }
  }
}
EOF
  local agent_args=(agent --server "$api" --data-dir "$work/agent" --dns-port "$dns" --name bench)
  "$EDGE" server --data-dir "$work/server" --bind "127.0.0.1:$port" >"$work/server.log" 2>&1 &
  local server=$!
  wait_for 20 "the server's join token" test -s "$work/server/token"
  token=$(cat "$work/server/token")
  "$EDGE" "${agent_args[@]}" --join-token "$token" >>"$work/agent.log" 2>&1 &
  local agent=$!
  wait_for 30 "a ready node" quiet sh -c "EDGE_ADDR=$api '$EDGE' node ls | grep -q ready"
  EDGE_ADDR=$api "$EDGE" job run --detach "$work/job.hcl" >/dev/null
  wait_for 180 "$N running copies" quiet $CHECK ports "$api" "$job" "$N"
  local ports
  ports=$($CHECK ports "$api" "$job" "$N" | tr '\n' ' ')
  # shellcheck disable=SC2086
  wait_for 60 "all $N serving before the first reboot" quiet $CHECK check "$lb" "$dns" "$job" "$N" $ports
  kill -9 "$server"
  wait "$server" 2>/dev/null || true
  for r in $(seq 1 "$ROUNDS"); do
    # The reboot: the agent, then every task process (and container shim).
    kill -9 "$agent"; wait "$agent" 2>/dev/null || true
    case $driver in
      exec) pkill -9 -f "$work/agent/exec/" || true; pkill -9 -f -- "--directory $www" || true ;;
      wasm) ;;
      containerd)
        for c in $(ctr -n edge c ls -q); do
          if ctr -n edge c info "$c" | grep -q "$work/agent"; then
            pkill -9 -f -- "-id $c " || true
            ctr -n edge t kill -s SIGKILL "$c" >/dev/null 2>&1 || true
          fi
        done ;;
    esac
    # shellcheck disable=SC2086
    if $CHECK check "$lb" "$dns" "$job" "$N" $ports 2>/dev/null; then
      echo "autonomy bench: still serving after the simulated reboot" >&2; exit 1
    fi
    local t0; t0=$(ms)
    "$EDGE" "${agent_args[@]}" --join-token "$token" >>"$work/agent.log" 2>&1 &
    agent=$!
    # shellcheck disable=SC2086
    wait_for 60 "all $N copies serving again (round $r)" quiet $CHECK check "$lb" "$dns" "$job" "$N" $ports
    times+=($(($(ms) - t0)))
  done
  kill "$agent"; wait "$agent" 2>/dev/null || true
  # Clean up with the server back: the job's stop reaches the agent.
  "$EDGE" server --data-dir "$work/server" --bind "127.0.0.1:$port" >>"$work/server.log" 2>&1 &
  server=$!
  "$EDGE" "${agent_args[@]}" --join-token "$token" --stop-tasks-on-exit >>"$work/agent.log" 2>&1 &
  agent=$!
  wait_for 30 "the server back" quiet sh -c "EDGE_ADDR=$api '$EDGE' node ls | grep -q ready"
  EDGE_ADDR=$api "$EDGE" job stop "$job" >/dev/null || true
  sleep 2
  kill "$agent" "$server"; wait "$agent" "$server" 2>/dev/null || true
  local sorted
  sorted=$(printf '%s\n' "${times[@]}" | tr '\n' ' ')
  printf '%-11s %3d tasks: agent start -> all serving (ports, LB, DNS), median %5d ms  (rounds: %s)\n' \
    "$driver" "$N" "$(printf '%s\n' "${times[@]}" | median)" "$sorted"
  rm -rf "$work"
}

for d in $DRIVERS; do
  run_driver "$d"
done
