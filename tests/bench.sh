#!/usr/bin/env bash
# Runs pmesh's benchmarks on release builds:
#   tests/bench.sh [--agents 10,50,200] [--lines N] ...   pmesh-bench (events, start, artifacts, fan-out, RSS)
#   tests/bench.sh services                              pmesh-bench-services (time to DNS, NTP, LDAP, NFS)
set -euo pipefail
cd "$(dirname "$0")/.."
tests/images/build.sh
cargo build --release --workspace --bins --locked
target="${CARGO_TARGET_DIR:-$PWD/target}/release"
if [ "${1:-}" = services ]; then
  shift
  PMESH_BIN_DIR="$target" exec "$target/pmesh-bench-services" "$@"
fi
PMESH_BIN_DIR="$target" exec "$target/pmesh-bench" "$@"
