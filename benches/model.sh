#!/usr/bin/env bash
# Model serving benchmark. For the iris classifier and the MLP of
# tests/model/fixtures, one-row inference requests at concurrency 1 and 16:
#   edge    `edge model serve` (tract, dynamic batching), JSON over REST
#   edge-bin  the same, REST with the binary tensor extension
#   edge-grpc the same, gRPC ModelInfer with raw_input_contents
#   kserve  KServe's Python model server (V2 REST) wrapping onnxruntime
#   kserve-grpc  the same server over gRPC
#   inproc  onnxruntime called in-process from Python (the floor; no HTTP)
# plus the idle RSS of one `edge model serve` with iris.
# The same load generator (crates/edge-model/examples/oip_load.rs: threads,
# keep-alive connections, closed loop) drives both servers.
#
# usage: bash benches/model.sh [SECONDS_PER_RUN]
# Needs python3 with onnxruntime and numpy; KServe is installed into
# ~/.cache/edge-bench/kserve-venv on first use (or set KSERVE_PY to a python that has it).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
PY=${PYTHON:-python3}
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/edge-bench/kserve-venv
KSERVE_PY=${KSERVE_PY:-$VENV/bin/python}

cargo build --quiet --release -p edge --bin edge
cargo build --quiet --release -p edge-model --example oip_load
EDGE=target/release/edge
LOAD=target/release/examples/oip_load

if [ ! -x "$KSERVE_PY" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet kserve onnxruntime
  KSERVE_PY=$VENV/bin/python
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# One-row requests taken from the fixtures' reference inputs.
for m in iris mlp; do
  "$PY" - "$m" "$tmp/$m.json" >"$tmp/$m.binlen" <<'PYEOF'
import json, sys
case = json.load(open(f"tests/model/fixtures/{sys.argv[1]}.json"))
i = case["inputs"][0]
width = i["shape"][1]
json.dump({"inputs": [{"name": i["name"], "datatype": i["datatype"],
                       "shape": [1, width], "data": i["data"][:width]}]},
          open(sys.argv[2], "w"))
# The same request with the binary tensor extension: JSON header, then the
# little-endian FP32 row; its JSON length goes to stdout.
import struct
raw = struct.pack(f"<{width}f", *i["data"][:width])
header = json.dumps({"inputs": [{"name": i["name"], "datatype": i["datatype"], "shape": [1, width],
                                 "parameters": {"binary_data_size": len(raw)}}],
                     "parameters": {"binary_data_output": True}}).encode()
open(sys.argv[2][:-5] + ".bin", "wb").write(header + raw)
print(len(header))
PYEOF
done

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$1/v2/health/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $1 did not become ready" >&2
  return 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

row() { # server model json
  "$PY" - "$@" <<'PYEOF'
import json, sys
name, model, r = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"| {name:<11} | {model:<4} | {r['concurrency']:>2} | {r['rps']:>9.0f} "
      f"| {r['p50_ms']:>7.3f} | {r['p99_ms']:>7.3f} | {r['errors']} |")
PYEOF
}

echo "| server | model | c | req/s | p50 ms | p99 ms | errors |"
echo "|--------|------|---:|------:|-------:|-------:|---:|"
for m in iris mlp; do
  model=tests/model/fixtures/$m.onnx
  for c in 1 16; do
    row inproc "$m" "$("$PY" benches/model_inproc.py "$model" "$tmp/$m.json" "$c" "$SECS")"
  done

  port=$(free_port); gport=$(free_port)
  "$EDGE" model serve --model "$model" --name "$m" --host 127.0.0.1 --port "$port" --grpc-port "$gport" 2>"$tmp/edge-$m.log" &
  pid=$!; pids+=("$pid")
  wait_ready "$port"
  sleep 0.5
  [ "$m" = iris ] && idle_rss=$(rss_kb "$pid")
  for c in 1 16; do
    row edge "$m" "$("$LOAD" "127.0.0.1:$port" "/v2/models/$m/infer" "$tmp/$m.json" "$c" "$SECS")"
  done
  for c in 1 16; do
    row edge-bin "$m" "$("$LOAD" "127.0.0.1:$port" "/v2/models/$m/infer" "$tmp/$m.bin" "$c" "$SECS" "$(cat "$tmp/$m.binlen")")"
  done
  for c in 1 16; do
    row edge-grpc "$m" "$("$LOAD" grpc "127.0.0.1:$gport" "$m" "$tmp/$m.json" "$c" "$SECS")"
  done
  [ "$m" = iris ] && loaded_rss=$(rss_kb "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true

  port=$(free_port); gport=$(free_port)
  "$KSERVE_PY" benches/model_kserve.py "$model" "$m" "$port" "$gport" >"$tmp/kserve-$m.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_ready "$port"
  for c in 1 16; do
    row kserve "$m" "$("$LOAD" "127.0.0.1:$port" "/v2/models/$m/infer" "$tmp/$m.json" "$c" "$SECS")"
  done
  for c in 1 16; do
    row kserve-grpc "$m" "$("$LOAD" grpc "127.0.0.1:$gport" "$m" "$tmp/$m.json" "$c" "$SECS")"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
echo
echo "edge model serve (iris) RSS: idle ${idle_rss} kB, after the load runs ${loaded_rss} kB"
