#!/usr/bin/env bash
# Benchmarks of bridge networking (as root, CNI plugins installed):
#  1. what it adds to an allocation's start and stop (attach / detach of
#     namespace, veth, address, NAT and a port mapping), from
#     `cargo bench -p edge-net --bench attach`;
#  2. iperf3 throughput to an allocation: host networking (the server on
#     the host port) against bridge mode through the port mapping, and
#     allocation to allocation across the bridge, SECS seconds each;
#  3. TCP connection setup through the port mapping against host
#     networking, median of N connects;
#  4. on a two-node deploy/lab, from one node to the other: host
#     networking (iperf3 on the other node's address) against that node's
#     port mapping into an allocation, and allocation to allocation over a
#     named network (VXLAN).
# usage: bash benches/network.sh      (EDGE=path SECS=5 N=2000 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
EDGE=${EDGE:-target/release/edge}
SECS=${SECS:-5}
N=${N:-2000}
[ "$(id -u)" = 0 ] || {
  echo "benches/network.sh needs root (network namespaces, iptables)" >&2
  exit 1
}
command -v iperf3 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null
[ -x /usr/lib/cni/bridge ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containernetworking-plugins >/dev/null
[ -x "$EDGE" ] || cargo build --release -p edge
EDGE=$(realpath "$EDGE")
BRIDGE=edgebench1
work=$(mktemp -d)
pid=
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -f "$work/dev.log" ]; then tail -n 30 "$work/dev.log" >&2; fi
  if [ -n "$pid" ]; then
    "$EDGE" job stop netbench >/dev/null 2>&1 || true
    sleep 2
    kill "$pid" 2>/dev/null || true
  fi
  ip link del "$BRIDGE" 2>/dev/null || true
  lab down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
lab() {
  EDGE_BIN="$EDGE" EDGE_LAB_DIR="$work/lab" EDGE_LAB_BRIDGE=edgebl0 EDGE_LAB_NS=edge-bl \
    EDGE_LAB_NET=10.78.9 bash deploy/lab "$@"
}

echo "== attach / detach"
cargo bench -q -p edge-net --bench attach -- 30 2>/dev/null | grep -E "attach|detach|skipped"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export EDGE_ADDR=http://127.0.0.1:$port
"$EDGE" dev --data-dir "$work/data" --bind "127.0.0.1:$port" \
  --bridge-name "$BRIDGE" --bridge-subnet 10.216.1.0/24 >"$work/dev.log" 2>&1 &
pid=$!
wait_for 30 "a ready node" sh -c "'$EDGE' node ls 2>/dev/null | grep -q ready"

group() { # NAME MODE
  local mode=""
  [ "$2" = bridge ] && mode='mode = "bridge"'
  cat <<EOF
  group "$1" {
    network {
      $mode
      port "iperf" {}
      port "tcp" {}
    }
    task "iperf" {
      driver = "exec"
      config {
        command = "iperf3"
        args    = ["-s", "-p", "\${EDGE_PORT_iperf}"]
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
    task "accept" {
      driver = "exec"
      config {
        command = "python3"
        args    = ["-c", "import socket,os; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', int(os.environ['EDGE_PORT_tcp']))); s.listen(4096)\nwhile True: s.accept()[0].close()"]
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
EOF
}
{
  echo 'job "netbench" {'
  group host host
  group bridge bridge
  group peer bridge
  echo '}'
} >"$work/netbench.hcl"
"$EDGE" job run --detach "$work/netbench.hcl" >/dev/null
alloc_json() { # GROUP
  local id
  id=$("$EDGE" job status netbench -o json | python3 -c "import json,sys; print([a['id'] for a in json.load(sys.stdin)['allocations'] if a['group']=='$1'][0])" 2>/dev/null) || return 1
  "$EDGE" alloc status "$id" -o json
}
running() { alloc_json "$1" | python3 -c 'import json,sys; a=json.load(sys.stdin); sys.exit(0 if a["client_status"]=="running" else 1)'; }
for g in host bridge peer; do wait_for 60 "allocation $g running" running "$g"; done
field() { # GROUP PYTHON-EXPR-ON-a
  alloc_json "$1" | python3 -c "import json,sys; a=json.load(sys.stdin); print($2)"
}
hport() { field "$1" "[p['value'] for p in a['resources']['ports'] if p['label']=='$2'][0]"; }
inport() { field "$1" "[p['to'] for p in a['resources']['ports'] if p['label']=='$2'][0]"; }
sleep 1

iperf() { # NETNS-OR-EMPTY HOST PORT → Gbit/s
  local ns=()
  [ -n "$1" ] && ns=(ip netns exec "$1")
  "${ns[@]}" iperf3 -c "$2" -p "$3" -t "$SECS" -J |
    python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
echo "== iperf3 throughput, ${SECS}s each (Gbit/s)"
host_bw=$(iperf "" 127.0.0.1 "$(hport host iperf)")
bridge_bw=$(iperf "" 127.0.0.1 "$(hport bridge iperf)")
peer=$(field peer "a['id']")
bridge_ip=$(field bridge "a['address']")
a2a_bw=$(iperf "edge-$peer" "$bridge_ip" "$(inport bridge iperf)")
echo "host networking, 127.0.0.1:hostport:        $host_bw"
echo "bridge, 127.0.0.1:hostport → mapping:        $bridge_bw ($(python3 -c "print('%.0f' % (100*$bridge_bw/$host_bw))") % of host)"
echo "bridge, allocation → allocation (bridge):   $a2a_bw"

connects() { # PORT → median µs of N connects
  python3 - "$1" "$N" <<'EOF'
import socket, statistics, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
t = []
for _ in range(n):
    s = socket.socket()
    t0 = time.perf_counter()
    s.connect(("127.0.0.1", port))
    t.append(time.perf_counter() - t0)
    s.close()
t.sort()
print("p50 %.0f us, p99 %.0f us" % (statistics.median(t) * 1e6, t[int(len(t) * 0.99)] * 1e6))
EOF
}
echo "== TCP connect, $N sequential connects"
echo "host networking:        $(connects "$(hport host tcp)")"
echo "bridge, port mapping:   $(connects "$(hport bridge tcp)")"

echo "== overlay: allocation → allocation across two nodes (Gbit/s, ${SECS}s each)"
"$EDGE" job stop netbench >/dev/null 2>&1 || true
lab up 2 >/dev/null
(
  eval "$(lab env)"
  cat >"$work/overlay.hcl" <<'EOF'
job "ovlbench" {
  constraint {
    operator = "distinct_hosts"
    value    = "true"
  }
  network "bench" {}
  group "iperf" {
    count = 2
    network {
      mode     = "bridge"
      networks = ["bench"]
      port "iperf" {
        static = 5301
        to     = 5201
      }
    }
    task "iperf" {
      driver = "exec"
      config {
        command = "iperf3"
        args    = ["-s", "-p", "5201"]
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
EOF
  "$EDGE" job run --detach "$work/overlay.hcl" >/dev/null
  members() {
    "$EDGE" job status ovlbench -o json | python3 -c '
import json, sys
a = [x for x in json.load(sys.stdin)["allocations"] if x["client_status"] == "running" and x.get("networks", {}).get("bench")]
a.sort(key=lambda x: x["node_name"])
if len(a) < 2: sys.exit(1)
print(a[0]["id"], a[1]["networks"]["bench"])'
  }
  has_members() { members >/dev/null; }
  wait_for 60 "two running members" has_members
  read -r from to <<<"$(members)"
  sleep 1
  ip netns exec edge-bl-2 iperf3 -s -p 5202 -D -1
  sleep 0.5
  under=$(iperf edge-bl-1 10.78.9.12 5202)
  mapped=$(iperf edge-bl-1 10.78.9.12 5301)
  over=$(iperf "edge-$from" "$to" 5201)
  pct() { python3 -c "print('%.0f' % (100*$1/$under))"; }
  echo "host networking, node → node:               $under"
  echo "node → node's port mapping → allocation:    $mapped ($(pct "$mapped") % of host networking)"
  echo "overlay, allocation → allocation (VXLAN):   $over ($(pct "$over") % of host networking)"
)
