#!/usr/bin/env bash
# Memory of `edge model serve` on a large model, per worker: the RSS of the
# server once it is ready and after every worker has run requests, with 1,
# 2 and 4 workers, on tract and on the onnxruntime backend. The model is an
# MLP generated here: LAYERS MatMul+Relu layers of SIZE x SIZE fp32 weights
# (4 x 2048 x 2048 = 64 MB by default), batch dimension open.
#
# usage: bash benches/model_memory.sh [SECONDS_OF_LOAD]
# SIZE and LAYERS set the model; the python (and ONNX Runtime library) are
# the ones benches/model.sh uses, with the onnx package added on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-3}
SIZE=${SIZE:-2048}
LAYERS=${LAYERS:-4}
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/edge-bench/kserve-venv
PY=${KSERVE_PY:-$VENV/bin/python}

cargo build --quiet --release -p edge --bin edge
cargo build --quiet --release -p edge-model --example oip_load
TARGET=${CARGO_TARGET_DIR:-target}
EDGE=$TARGET/release/edge
LOAD=$TARGET/release/examples/oip_load

if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet kserve onnxruntime numpy
  PY=$VENV/bin/python
fi
"$PY" -c 'import onnx' 2>/dev/null || "$PY" -m pip install --quiet onnx
ORT_LIB=${EDGE_ONNXRUNTIME_LIB:-$("$PY" -c 'import onnxruntime, pathlib; print(next(pathlib.Path(onnxruntime.__file__).parent.joinpath("capi").glob("libonnxruntime.so*")))')}

tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

"$PY" - "$tmp" "$SIZE" "$LAYERS" <<'PYEOF'
import json, sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
tmp, n, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
nodes, weights, prev = [], [], "x"
for i in range(layers):
    weights.append(numpy_helper.from_array((rng.standard_normal((n, n)) * 0.02).astype(np.float32), f"w{i}"))
    out = "y" if i == layers - 1 else f"h{i}"
    nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
    nodes.append(helper.make_node("Relu", [f"m{i}"], [out]))
    prev = out
graph = helper.make_graph(
    nodes, "big",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
    weights)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.save(model, f"{tmp}/big.onnx")
row = rng.random(n).astype(np.float32).tolist()
with open(f"{tmp}/big.json", "w") as f:
    json.dump({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, n], "data": row}]}, f)
PYEOF

rss_mb() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
port=$((20000 + RANDOM % 20000))
echo "model: $LAYERS x ${SIZE}x${SIZE} fp32, $(($(stat -c %s "$tmp/big.onnx") / 1048576)) MB"
echo "| backend | workers | RSS ready (MB) | RSS after load (MB) | req/s | errors |"
echo "|---|---:|---:|---:|---:|---:|"
for backend in tract onnxruntime; do
  for workers in 1 2 4; do
    args=(model serve --model "$tmp/big.onnx" --name big --host 127.0.0.1 --port "$port"
      --workers "$workers" --max-batch-size 1)
    [ "$backend" = onnxruntime ] && args+=(--backend onnxruntime --onnxruntime-lib "$ORT_LIB")
    "$EDGE" "${args[@]}" 2>"$tmp/serve.log" &
    pid=$!
    for _ in $(seq 300); do
      curl -sf "127.0.0.1:$port/v2/health/ready" >/dev/null && break
      sleep 0.1
    done
    ready=$(rss_mb "$pid")
    # Twice the workers in flight, so every worker runs (and, on
    # onnxruntime, builds its session).
    out=$("$LOAD" "127.0.0.1:$port" /v2/models/big/infer "$tmp/big.json" $((workers * 2)) "$SECS")
    after=$(rss_mb "$pid")
    load=$("$PY" -c 'import json, sys; r = json.loads(sys.argv[1]); print("%.0f | %d" % (r["rps"], r["errors"]))' "$out")
    echo "| $backend | $workers | $ready | $after | $load |"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
  done
done
