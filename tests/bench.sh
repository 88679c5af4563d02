#!/usr/bin/env bash
# Runs pmesh's benchmark on release builds: tests/bench.sh [--agents 10,50,200] [--lines N].
set -euo pipefail
cd "$(dirname "$0")/.."
tests/images/build.sh
cargo build --release --workspace --bins --locked
PMESH_BIN_DIR="$PWD/target/release" exec target/release/pmesh-bench "$@"
