#!/usr/bin/env bash
# The test command of the README: formatting, lints, then every test of the
# workspace. As root, tests that need cgroups and real processes run too.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  export EDGE_TEST_ROOT=1
else
  echo "note: not root: tests that need cgroups print 'skipped'" >&2
fi
cargo fmt --all -- --check
# Lints double the build time on a cold machine; CI runs the tests, and
# developers run `EDGE_LINT=1 bash deploy/test.sh` (or the clippy line) before
# pushing.
if [ "${EDGE_LINT:-0}" = 1 ]; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi
cargo test --workspace --locked --no-fail-fast
