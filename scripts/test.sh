#!/usr/bin/env bash
# The whole test suite, as README.md promises and .ci/run calls it.
#
# Installs what the tests need (HAProxy for the scale-out test), then runs, in order:
#   1. every workspace test in release mode (real sockets, threads, processes, HAProxy);
#   2. the loom models of the ring (own target dir: --cfg loom rebuilds everything);
#   3. the fuzz corpus replay (regression seeds of the line parser and the ring);
#   4. the lab smoke test: every model under load, every echoed byte checked.
set -euo pipefail
cd "$(dirname "$0")/.."

need_haproxy() { ! command -v haproxy >/dev/null 2>&1; }
if need_haproxy; then
  echo "== installing haproxy (tests/haproxy.rs runs real HAProxy)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq haproxy >/dev/null
fi

echo "== cargo test --workspace --release"
cargo test --workspace --release

echo "== loom models of the ring"
RUSTFLAGS="--cfg loom" cargo test -p pool --release --target-dir target-loom --test loom

if [ -f fuzz/Cargo.toml ]; then
  echo "== fuzz corpus replay"
  cargo test --release --manifest-path fuzz/Cargo.toml
fi

echo "== lab smoke test (echo-bench lab --quick)"
cargo build --release -p rawloop -p echo-bench
target/release/echo-bench lab --quick --out target/lab-quick --server-bin target/release/echo-server
