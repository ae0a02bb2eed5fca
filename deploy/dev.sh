#!/usr/bin/env bash
# The README's run command: on a fresh Debian machine, install what edge
# needs, build it, start `edge dev` and run the hello example, then show that
# it answers on its port. Leaves `edge dev` running (stop it with
# `kill $(cat .edge/dev.pid)`). Run it as root or as a user with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

need=()
command -v python3 >/dev/null || need+=(python3)
command -v cc >/dev/null || need+=(build-essential)
command -v curl >/dev/null || need+=(curl)
# containerd-client compiles containerd's gRPC API at build time with protoc
# ($PROTOC, else protoc on PATH). The other C code (bundled SQLite, ring)
# builds with cc alone: no pkg-config.
if ! [ -x "${PROTOC:-}" ] && ! command -v protoc >/dev/null; then
  need+=(protobuf-compiler)
fi
# Bridge networking (`network { mode = "bridge" }`, examples/bridge-web.hcl):
# the standard CNI plugins, iproute2 and iptables.
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
apt_install "${need[@]}"
if ! command -v cargo >/dev/null; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  . "$HOME/.cargo/env"
fi

cargo build --release --locked -p edge
EDGE=./target/release/edge
mkdir -p .edge
if [ -f .edge/dev.pid ] && kill -0 "$(cat .edge/dev.pid)" 2>/dev/null; then
  echo "edge dev already running (pid $(cat .edge/dev.pid))"
else
  nohup $EDGE dev --data-dir .edge >.edge/dev.log 2>&1 &
  echo $! >.edge/dev.pid
  echo "edge dev started (pid $!), log in .edge/dev.log"
fi
for _ in $(seq 1 50); do
  if $EDGE node ls 2>/dev/null | grep -q ready; then break; fi
  sleep 0.2
done
$EDGE node ls
$EDGE job run examples/hello.hcl
alloc=$($EDGE job status hello -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["allocations"][0]["id"])')
port=$($EDGE alloc status "$alloc" -o json | python3 -c 'import json,sys; print([p["value"] for p in json.load(sys.stdin)["resources"]["ports"] if p["label"]=="http"][0])')
for _ in $(seq 1 50); do
  if curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
echo "hello answers on http://127.0.0.1:$port/ :"
curl -fsS "http://127.0.0.1:$port/" | head -5
if curl -fsS -o /dev/null http://127.0.0.1:4646/ui/; then
  echo "dashboard: http://127.0.0.1:4646/ui/"
fi
