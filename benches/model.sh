#!/usr/bin/env bash
# Model serving benchmark. For the iris classifier, the MLP and the conv net
# (a 1x3x224x224 image) of tests/model/fixtures, one-row inference requests
# at concurrency 1 and 16, over three wires: JSON REST, binary REST (the
# binary tensor extension, outputs asked back in binary) and gRPC
# (raw_input_contents):
#   edge    `edge model serve` (tract, dynamic batching)
#   edgeort `edge model serve --backend onnxruntime`, with the onnxruntime
#           library of the KServe venv's onnxruntime package
#   kserve  KServe's Python model server (V2 REST and gRPC) wrapping onnxruntime
#   inproc  onnxruntime called in-process from Python (the floor; no wire)
# plus the idle RSS of one `edge model serve` with iris.
# The same load generators drive both servers: crates/edge-model/examples/
# oip_load.rs (HTTP/1.1, keep-alive connections) and grpc_load.rs (one
# HTTP/2 connection per worker), threads in a closed loop.
#
# usage: bash benches/model.sh [SECONDS_PER_RUN]
# MODELS="convnet" runs only the named fixtures (default: iris mlp convnet);
# binaries are built into and run from $CARGO_TARGET_DIR (default: target).
# KServe, onnxruntime and numpy are installed into
# ~/.cache/edge-bench/kserve-venv on first use (or set KSERVE_PY to a python
# that has them); that python also runs the in-process floor.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/edge-bench/kserve-venv
KSERVE_PY=${KSERVE_PY:-$VENV/bin/python}

cargo build --quiet --release -p edge --bin edge
cargo build --quiet --release -p edge-model --example oip_load --example grpc_load
MODELS=${MODELS:-iris mlp convnet}
TARGET=${CARGO_TARGET_DIR:-target}
EDGE=$TARGET/release/edge
LOAD=$TARGET/release/examples/oip_load
GRPC_LOAD=$TARGET/release/examples/grpc_load

if [ ! -x "$KSERVE_PY" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet kserve onnxruntime numpy
  KSERVE_PY=$VENV/bin/python
fi
PY=$KSERVE_PY
# ONNX Runtime's library as the onnxruntime package ships it, for edgeort.
ORT_LIB=${EDGE_ONNXRUNTIME_LIB:-$("$PY" -c 'import onnxruntime, pathlib; print(next(pathlib.Path(onnxruntime.__file__).parent.joinpath("capi").glob("libonnxruntime.so*")))')}

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# One-row requests: the fixtures' reference inputs for iris and the MLP,
# the pattern image for the conv net; each as JSON and as a binary-extension
# body (JSON header, then the tensor's bytes; outputs asked back in binary).
"$PY" - "$tmp" <<'PYEOF'
import json, sys
import numpy as np
tmp = sys.argv[1]
def row(name):
    if name == "convnet":
        i = np.arange(3 * 224 * 224)
        x = ((i % 251).astype(np.float32) / np.float32(251) - np.float32(0.5)).reshape(1, 3, 224, 224)
        return "image", x, ["probabilities"]
    case = json.load(open(f"tests/model/fixtures/{name}.json"))
    i = case["inputs"][0]
    width = i["shape"][1]
    x = np.array(i["data"][:width], dtype=np.float32).reshape(1, width)
    return i["name"], x, [o["name"] for o in case["outputs"]]
for m in ["iris", "mlp", "convnet"]:
    name, x, outs = row(m)
    json.dump({"inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape),
                           "data": x.reshape(-1).tolist()}]}, open(f"{tmp}/{m}.json", "w"))
    raw = x.astype("<f4").tobytes()
    head = json.dumps({"inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape),
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outs]}).encode()
    open(f"{tmp}/{m}.bin", "wb").write(head + raw)
    open(f"{tmp}/{m}.binlen", "w").write(str(len(head)))
PYEOF

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

row() { # server model wire json
  "$PY" - "$@" <<'PYEOF'
import json, sys
name, model, wire, r = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
print(f"| {name:<7} | {model:<7} | {wire:<6} | {r['concurrency']:>2} | {r['rps']:>9.0f} "
      f"| {r['p50_ms']:>7.3f} | {r['p99_ms']:>7.3f} | {r['errors']} |")
PYEOF
}

# load SERVER MODEL HTTP_PORT GRPC_PORT: every wire at concurrency 1 and 16.
load() {
  local server=$1 m=$2 port=$3 gport=$4 c
  for c in 1 16; do
    row "$server" "$m" json "$("$LOAD" "127.0.0.1:$port" "/v2/models/$m/infer" "$tmp/$m.json" "$c" "$SECS")"
    row "$server" "$m" binary "$("$LOAD" "127.0.0.1:$port" "/v2/models/$m/infer" "$tmp/$m.bin" "$c" "$SECS" "$(cat "$tmp/$m.binlen")")"
    row "$server" "$m" grpc "$("$GRPC_LOAD" "127.0.0.1:$gport" "$m" "$tmp/$m.bin" "$(cat "$tmp/$m.binlen")" "$c" "$SECS")"
  done
}

echo "| server  | model   | wire   | c | req/s | p50 ms | p99 ms | errors |"
echo "|---------|---------|--------|---:|------:|-------:|-------:|---:|"
idle_rss=- loaded_rss=-
for m in $MODELS; do
  model=tests/model/fixtures/$m.onnx
  for c in 1 16; do
    row inproc "$m" - "$("$PY" benches/model_inproc.py "$model" "$tmp/$m.json" "$c" "$SECS")"
  done

  port=$(free_port); gport=$(free_port)
  "$EDGE" model serve --model "$model" --name "$m" --host 127.0.0.1 --port "$port" --grpc-port "$gport" 2>"$tmp/edge-$m.log" &
  pid=$!; pids+=("$pid")
  wait_ready "$port"
  sleep 0.5
  [ "$m" = iris ] && idle_rss=$(rss_kb "$pid")
  load edge "$m" "$port" "$gport"
  [ "$m" = iris ] && loaded_rss=$(rss_kb "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true

  port=$(free_port); gport=$(free_port)
  "$EDGE" model serve --model "$model" --name "$m" --host 127.0.0.1 --port "$port" --grpc-port "$gport" \
    --backend onnxruntime --onnxruntime-lib "$ORT_LIB" 2>"$tmp/edgeort-$m.log" &
  pid=$!; pids+=("$pid")
  wait_ready "$port"
  sleep 0.5
  load edgeort "$m" "$port" "$gport"
  kill "$pid"; wait "$pid" 2>/dev/null || true

  port=$(free_port); gport=$(free_port)
  "$KSERVE_PY" benches/model_kserve.py "$model" "$m" "$port" "$gport" >"$tmp/kserve-$m.log" 2>&1 &
  pid=$!; pids+=("$pid")
  wait_ready "$port"
  load kserve "$m" "$port" "$gport"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
echo
echo "edge model serve (iris) RSS: idle ${idle_rss} kB, after the load runs ${loaded_rss} kB"
