#!/usr/bin/env bash
# Autoscaling on one `edge dev` node: the cold start of the first request
# through the load balancer's activator, for a group at zero of each kind
# (wasm http, exec python http.server, model/iris, busybox httpd in
# containerd), against the warm p50
# of the same service; then a step load (wrk at fixed concurrency) on a
# wasm service with target_concurrency, timed from the step until the
# count it asks for serves, with the number of decisions it took.
# Knative documents cold starts of seconds (its activator waits for a pod
# to be scheduled, pulled and ready); the ratio is printed.
# usage: sudo bash benches/autoscale.sh [ROUNDS] (default 5; EDGE=path to a built edge)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
EDGE=${EDGE:-target/release/edge}
[ -x "$EDGE" ] || cargo build --release -p edge
EDGE=$(realpath "$EDGE")
. deploy/lib.sh
command -v wrk >/dev/null || apt_install wrk
command -v curl >/dev/null || apt_install curl
WAIT_POLL=0.05
. benches/lib.sh

work=$(mktemp -d)
port=$(free_port); dns=$(free_port)
api=http://127.0.0.1:$port
export EDGE_ADDR=$api
pids=()
cleanup() {
  for j in as-wasm as-exec as-model as-ctr as-step; do "$EDGE" job stop "$j" >/dev/null 2>&1 || true; done
  # Tasks outlive the agent: wait for them to stop before it goes.
  for _ in $(seq 100); do
    curl -sf "$api/v1/allocations" | grep -q '"client_status":"running"' || break
    sleep 0.1
  done
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$EDGE" dev --data-dir "$work/data" --bind "127.0.0.1:$port" --dns-port "$dns" >"$work/dev.log" 2>&1 &
pids+=($!)
ready() { curl -sf "$api/v1/status/health" | grep -q '"nodes_ready":1'; }
wait_for 30 "edge dev" ready

SCALING='
    scaling {
      min                 = 0
      max                 = 4
      target_concurrency  = 8
      idle_timeout        = "10m"
      evaluation_interval = "1s"
    }'

group_job() { # ID LB TASK
  cat >"$work/$1.hcl" <<EOF
job "$1" {
  group "web" {
    count = 0
    network {
      port "http" {}
    }
    service {
      name = "$1"
      port = "http"
      publish {
        port     = $2
        protocol = "http"
      }
    }
$SCALING
$3
  }
}
EOF
}

wasm_task='    task "handler" {
      driver = "wasm"
      config {
        module = "'"$PWD"'/examples/wasm/web.wat"
        mode   = "http"
        port   = "http"
      }
    }'
# The page lives outside the task dir, readable by whoever the task runs as.
mkdir -p "$work/www" && echo ok >"$work/www/index.html" && chmod a+rx "$work" "$work/www"
exec_task='    task "server" {
      driver = "exec"
      config {
        command = "/usr/bin/python3"
        args    = ["-m", "http.server", "--directory", "'"$work/www"'", "--bind", "${EDGE_IP_http}", "${EDGE_PORT_http}"]
      }
    }'

# A TCP connect alone opens no request, so it does not wake the group.
listens() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
running() { curl -sf "$api/v1/job/$1/scale" | python3 -c 'import json,sys; print(json.load(sys.stdin)["groups"]["web"]["running"])'; }
at_zero() { [ "$(running "$1")" = 0 ]; }

# cold_and_warm ID LB METHOD PATH BODY: median cold start over ROUNDS (the
# group scaled to zero between rounds), then the warm p50 of 200 requests.
cold_and_warm() {
  local id=$1 lb=$2 method=$3 path=$4 body=$5 colds=() i t
  wait_for 30 "$id listening" listens "$lb"
  for i in $(seq "$ROUNDS"); do
    wait_for 60 "$id at zero" at_zero "$id"
    t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -X "$method" -H 'content-type: application/json' \
      ${body:+--data "$body"} "http://127.0.0.1:$lb$path")
    [ "${t%% *}" = 200 ] || { echo "$id: cold request got ${t%% *}" >&2; exit 1; }
    colds+=("$(awk -v s="${t#* }" 'BEGIN { printf "%d", s * 1000 }')")
    "$EDGE" job scale "$id" web 0 >/dev/null
  done
  wait_for 60 "$id at zero" at_zero "$id"
  curl -s -o /dev/null -X "$method" -H 'content-type: application/json' ${body:+--data "$body"} "http://127.0.0.1:$lb$path"
  local warm
  warm=$(for i in $(seq 200); do
    curl -s -o /dev/null -w '%{time_total}\n' -X "$method" -H 'content-type: application/json' \
      ${body:+--data "$body"} "http://127.0.0.1:$lb$path"
  done | awk '{ printf "%d\n", $1 * 1000000 }' | median)
  local cold
  cold=$(printf '%s\n' "${colds[@]}" | median)
  echo "RESULT autoscale $id cold_ms=$cold (rounds: ${colds[*]}) warm_p50_us=$warm ratio=$(awk -v c="$cold" -v w="$warm" 'BEGIN { printf "%.0f", c * 1000 / w }')x knative_1s_ratio=$(awk -v c="$cold" 'BEGIN { printf "%.1f", 1000 / (c > 0 ? c : 1) }')x"
}

lb_wasm=$(free_port); lb_exec=$(free_port); lb_model=$(free_port); lb_step=$(free_port)
group_job as-wasm "$lb_wasm" "$wasm_task"
group_job as-exec "$lb_exec" "$exec_task"
"$EDGE" job run --detach "$work/as-wasm.hcl" >/dev/null
"$EDGE" job run --detach "$work/as-exec.hcl" >/dev/null
cold_and_warm as-wasm "$lb_wasm" GET / ""
cold_and_warm as-exec "$lb_exec" GET / ""

if [ "$(id -u)" = 0 ]; then
  cat >"$work/as-model.hcl" <<EOF
job "as-model" {
  model "iris" {
    source = "$PWD/examples/models/iris.onnx"
    count  = 0
    service {
      name = "as-model"
      publish {
        port = $lb_model
      }
    }
$SCALING
  }
}
EOF
  "$EDGE" job run --detach "$work/as-model.hcl" >/dev/null
  # The model's group is named after the model.
  running() { curl -sf "$api/v1/job/$1/scale" | python3 -c 'import json,sys; g=json.load(sys.stdin)["groups"]; print(list(g.values())[0]["running"])'; }
  scale_group() { "$EDGE" job scale "$1" iris "$2" >/dev/null; }
  body='{"inputs":[{"name":"X","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}'
  wait_for 30 "as-model listening" listens "$lb_model"
  colds=()
  for i in $(seq "$ROUNDS"); do
    wait_for 60 "as-model at zero" at_zero as-model
    t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -H 'content-type: application/json' --data "$body" "http://127.0.0.1:$lb_model/v2/models/iris/infer")
    [ "${t%% *}" = 200 ] || { echo "model: cold request got ${t%% *}" >&2; exit 1; }
    colds+=("$(awk -v s="${t#* }" 'BEGIN { printf "%d", s * 1000 }')")
    scale_group as-model 0
  done
  wait_for 60 "as-model at zero" at_zero as-model
  curl -s -o /dev/null -H 'content-type: application/json' --data "$body" "http://127.0.0.1:$lb_model/v2/models/iris/infer"
  warm=$(for i in $(seq 200); do
    curl -s -o /dev/null -w '%{time_total}\n' -H 'content-type: application/json' --data "$body" "http://127.0.0.1:$lb_model/v2/models/iris/infer"
  done | awk '{ printf "%d\n", $1 * 1000000 }' | median)
  cold=$(printf '%s\n' "${colds[@]}" | median)
  echo "RESULT autoscale as-model cold_ms=$cold (rounds: ${colds[*]}) warm_p50_us=$warm ratio=$(awk -v c="$cold" -v w="$warm" 'BEGIN { printf "%.0f", c * 1000 / w }')x knative_1s_ratio=$(awk -v c="$cold" 'BEGIN { printf "%.1f", 1000 / (c > 0 ? c : 1) }')x"
else
  echo "model/iris: skipped (the model server runs as an exec task: run as root)"
fi

if [ "$(id -u)" = 0 ] && [ -S /run/containerd/containerd.sock ]; then
  # busybox httpd in a container, from an archive built here (no registry).
  bash tests/images/build-busybox.sh "$work/busybox.tar" docker.io/edge/busybox:latest >/dev/null
  "$EDGE" image import "$work/busybox.tar" >/dev/null
  ctr_task='    task "web" {
      driver       = "containerd"
      kill_timeout = "2s"
      config {
        image   = "docker.io/edge/busybox:latest"
        command = "sh"
        args    = ["-c", "exec httpd -f -p $EDGE_PORT_http -h /www"]
      }
    }'
  lb_ctr=$(free_port)
  group_job as-ctr "$lb_ctr" "$ctr_task"
  "$EDGE" job run --detach "$work/as-ctr.hcl" >/dev/null
  cold_and_warm as-ctr "$lb_ctr" GET / ""
else
  echo "containerd: skipped (run as root with containerd running)"
fi

# Step load: wrk at 32 connections against target_concurrency 8 asks 4.
SCALING='
    scaling {
      min                  = 1
      max                  = 4
      target_concurrency   = 8
      evaluation_interval  = "1s"
      stabilization_window = "30s"
    }'
group_job as-step "$lb_step" "$wasm_task"
sed -i 's/count = 0/count = 1/' "$work/as-step.hcl"
"$EDGE" job run --detach "$work/as-step.hcl" >/dev/null
serving() { curl -sf -o /dev/null "http://127.0.0.1:$lb_step/"; }
wait_for 30 "as-step serving" serving
status() { curl -sf "$api/v1/job/as-step/scale" | python3 -c 'import json,sys; g=json.load(sys.stdin)["groups"]["web"]; print(g["running"], g["desired"], round(g["in_flight"], 1), len(g["events"]))'; }
t0=$(ms)
wrk -t2 -c32 -d25s "http://127.0.0.1:$lb_step/" >"$work/wrk.txt" 2>&1 &
wrk_pid=$!
# The count the load asks for: the highest seen running with the desired
# count met, and when it was first reached.
top=1 t_top=$t0
while kill -0 "$wrk_pid" 2>/dev/null; do
  read -r run want inflight decisions < <(status)
  if [ "$run" -gt "$top" ] && [ "$run" -ge "$want" ]; then top=$run t_top=$(ms); fi
  sleep 0.2
done
wait "$wrk_pid" || true
read -r run want inflight decisions < <(status)
rps=$(awk '/Requests\/sec/ { print int($2) }' "$work/wrk.txt")
errors=$(awk '/Non-2xx|Socket errors/ { print }' "$work/wrk.txt")
echo "RESULT autoscale step wrk c=32, target_concurrency=8: 1 -> $top copies serving $((t_top - t0)) ms after the step (in flight measured at the load balancer at the end: $inflight), $decisions decisions, ${rps} req/s${errors:+, $errors}"
