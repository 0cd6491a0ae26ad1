#!/usr/bin/env bash
# The whole test suite, as README.md promises and .ci/run calls it.
#
# Installs what the tests need when it is missing (with apt-get: haproxy for the scale-out
# tests, nftables and iproute2 for the DNAT path, netcat-openbsd for the README's commands),
# then runs, in order:
#   1. the release build of echo-server and echo-bench, which tests/doc_commands.rs runs as the
#      documentation does (target/release/...);
#   2. every workspace test in release mode (real sockets, threads, processes, HAProxy,
#      nftables in network namespaces, the documentation's runnable commands);
#   3. the loom models of the ring (own target dir: --cfg loom rebuilds everything);
#   4. the fuzz corpus replay (regression seeds of the line parser and the ring);
#   5. the lab smoke test: every model under load, every echoed byte checked.
# Without root, the nftables tests and the documented commands that need root print
# "skipped: ..." and pass.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

need haproxy haproxy
need nc netcat-openbsd
if [ "$(id -u)" -eq 0 ]; then
  need nft nftables
  need ip iproute2
fi
if [ ${#MISSING_TOOLS[@]} -gt 0 ]; then
  packages="$(printf '%s\n' "${MISSING_TOOLS[@]}" | sed -n 's/.*(package \(.*\))$/\1/p' | paste -sd' ' -)"
  echo "== installing $packages (the tests run them for real)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # shellcheck disable=SC2086 # a list of package names, one word each.
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $packages >/dev/null
fi

# Both builds the documentation runs: cargo resolves features per command, so `-p rawloop`
# alone and `-p rawloop -p echo-bench` produce different artifacts; building both now makes the
# documented commands' own builds no-ops under tests/doc_commands.rs's timeouts.
echo "== cargo build --release -p rawloop; cargo build --release -p rawloop -p echo-bench"
cargo build --release -p rawloop
cargo build --release -p rawloop -p echo-bench

echo "== cargo test --workspace --release"
cargo test --workspace --release

echo "== loom models of the ring"
RUSTFLAGS="--cfg loom" cargo test -p pool --release --target-dir target-loom --test loom

if [ -f fuzz/Cargo.toml ]; then
  echo "== fuzz corpus replay"
  cargo test --release --manifest-path fuzz/Cargo.toml
fi

echo "== lab smoke test (echo-bench lab --quick)"
target/release/echo-bench lab --quick --out target/lab-quick --server-bin target/release/echo-server
