#!/usr/bin/env bash
# The test command of the README. As root it first installs and starts what
# the tests need (containerd, runc, protoc, a registry, tritonclient...), then
# checks formatting and runs every test of the workspace, the cgroup,
# containerd, namespace and multi-process tests included.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  export EDGE_TEST_ROOT=1
  export DEBIAN_FRONTEND=noninteractive
  need=()
  command -v python3 >/dev/null || need+=(python3)
  command -v cc >/dev/null || need+=(build-essential)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  # deploy/lab and its failure tests (crates/edge/tests/lab.rs): namespaces, veth, bridge.
  command -v ip >/dev/null || need+=(iproute2)
  # The containerd driver's tests: a real containerd + runc, protoc for the
  # gRPC bindings, busybox for the test image, a local registry and skopeo.
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  command -v protoc >/dev/null || need+=(protobuf-compiler)
  command -v busybox >/dev/null || need+=(busybox-static)
  command -v docker-registry >/dev/null || need+=(docker-registry)
  command -v skopeo >/dev/null || need+=(skopeo)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need[@]}"
  fi

  # tritonclient drives `edge model serve` in crates/edge/tests/model.rs.
  if ! python3 -c "import numpy, tritonclient.http" 2>/dev/null; then
    python3 -m pip install --quiet "tritonclient[http]" numpy 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages "tritonclient[http]" numpy
  fi

  # containerd has no init system to start it here; run it if nothing answers.
  if ! ctr version >/dev/null 2>&1; then
    setsid containerd >/var/log/containerd-ci.log 2>&1 </dev/null &
    for _ in $(seq 1 100); do
      ctr version >/dev/null 2>&1 && break
      sleep 0.1
    done
    ctr version >/dev/null || { cat /var/log/containerd-ci.log; exit 1; }
  fi
  export EDGE_TEST_CONTAINERD=1
else
  echo "note: not root: tests that need cgroups, containerd or namespaces print 'skipped'" >&2
fi
cargo fmt --all -- --check
# Lints double the build time on a cold machine; CI runs the tests, and
# developers run `EDGE_LINT=1 bash deploy/test.sh` (or the clippy line) before
# pushing.
if [ "${EDGE_LINT:-0}" = 1 ]; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi
cargo test --workspace --locked --no-fail-fast
