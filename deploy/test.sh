#!/usr/bin/env bash
# The test command of the README. With root (run as root, or as a user with
# sudo) it first installs and starts what the tests need (containerd, runc,
# protoc, a registry, tritonclient, chromium...), then checks formatting and
# runs every test of the workspace, the cgroup, containerd, namespace and multi-process
# tests included, then schemathesis against the API (tests/schemathesis.sh).
# Without root it runs the tests that need none.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
root=0
if can_root; then
  root=1
  export EDGE_TEST_ROOT=1
  need=()
  command -v python3 >/dev/null || need+=(python3)
  command -v cc >/dev/null || need+=(build-essential)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  # deploy/lab and its failure tests (crates/edge/tests/lab.rs): namespaces, veth, bridge.
  command -v ip >/dev/null || need+=(iproute2)
  # The lab's one-way firewall of a node behind NAT (`deploy/lab nat`),
  # and the CNI plugins' rules.
  command -v iptables >/dev/null || need+=(iptables)
  # Bridge networking (crates/edge-net/tests/bridge.rs): the standard CNI
  # plugins, nsenter to run a server inside an allocation's namespace.
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
  command -v nsenter >/dev/null || need+=(util-linux)
  # The autonomy tests count and kill task processes (pgrep, pkill, kill).
  command -v pgrep >/dev/null || need+=(procps)
  # The containerd driver's tests: a real containerd + runc, protoc for the
  # gRPC bindings, busybox for the test image, a local registry and skopeo.
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  command -v protoc >/dev/null || need+=(protobuf-compiler)
  command -v busybox >/dev/null || need+=(busybox-static)
  command -v docker-registry >/dev/null || need+=(docker-registry)
  command -v skopeo >/dev/null || need+=(skopeo)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  # tests/schemathesis.sh installs schemathesis into a venv.
  python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
  # The dashboard's browser test (crates/edge/tests/ui.rs): headless
  # Chromium driven over WebDriver.
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
  apt_install "${need[@]}"
  export EDGE_TEST_BROWSER=1

  # tritonclient drives `edge model serve` in crates/edge/tests/model.rs,
  # which runs as root: installed as root. onnx builds the conformance
  # models of crates/edge-model/tests/conformance.rs. onnxruntime's package
  # carries ONNX Runtime's shared library, which the tests of the
  # onnxruntime backend load (EDGE_ONNXRUNTIME_LIB).
  if ! as_root python3 -c "import numpy, onnx, onnxruntime, tritonclient.http, tritonclient.grpc" 2>/dev/null; then
    as_root python3 -m pip install --quiet "tritonclient[http,grpc]" numpy onnx onnxruntime 2>/dev/null ||
      as_root python3 -m pip install --quiet --break-system-packages "tritonclient[http,grpc]" numpy onnx onnxruntime
  fi
  # A copy beside the build: model tasks run as `nobody` under a root agent,
  # and root's Python may live where nobody can read (/root/.pyenv).
  ort_lib=$(as_root python3 -c 'import onnxruntime, pathlib; print(next(pathlib.Path(onnxruntime.__file__).parent.joinpath("capi").glob("libonnxruntime.so*")))')
  mkdir -p target/onnxruntime
  as_root cat "$ort_lib" > target/onnxruntime/libonnxruntime.so
  chmod 0644 target/onnxruntime/libonnxruntime.so
  export EDGE_ONNXRUNTIME_LIB=$PWD/target/onnxruntime/libonnxruntime.so

  # containerd has no init system to start it here; run it if nothing answers.
  if ! as_root ctr version >/dev/null 2>&1; then
    as_root sh -c 'setsid containerd >/var/log/containerd-ci.log 2>&1 </dev/null &'
    for _ in $(seq 1 100); do
      as_root ctr version >/dev/null 2>&1 && break
      sleep 0.1
    done
    as_root ctr version >/dev/null || { as_root cat /var/log/containerd-ci.log; exit 1; }
  fi
  export EDGE_TEST_CONTAINERD=1
else
  echo "note: no root and no sudo: tests that need cgroups, containerd or namespaces print 'skipped'" >&2
fi
cargo fmt --all -- --check
# Lints double the build time on a cold machine; CI runs the tests, and
# developers run `EDGE_LINT=1 bash deploy/test.sh` (or the clippy line) before
# pushing.
if [ "${EDGE_LINT:-0}" = 1 ]; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi
if [ "$root" = 1 ] && [ "$(id -u)" != 0 ]; then
  # cargo builds as the invoking user, so target/ and ~/.cargo stay theirs;
  # only the test binaries run as root, through sudo as cargo's runner (-E
  # keeps EDGE_TEST_* and what cargo sets for a test). A cold build outlasts
  # sudo's password timeout: build first, then ask for it once, not in the
  # middle of the test output.
  cargo test --workspace --locked --no-run
  sudo -v
  host=$(rustc -vV | sed -n 's/^host: //p')
  export "CARGO_TARGET_$(echo "$host" | tr 'a-z-' 'A-Z_')_RUNNER=sudo -E"
fi
cargo test --workspace --locked --no-fail-fast
# The API contract against a running server, no agents
# (tests/schemathesis.sh). With root, python3-venv was installed above.
if [ "$root" = 1 ] || python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  bash tests/schemathesis.sh
else
  echo "skipped: tests/schemathesis.sh (the API contract) needs python3 with venv (Debian: python3-venv)" >&2
fi
