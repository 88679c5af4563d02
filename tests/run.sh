#!/usr/bin/env bash
# Runs every test of pmesh: unit tests and the multi-process tests in tests/.
# The multi-process tests start the real binaries, so they are built first.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
cargo test --workspace --locked -- --test-threads="${PMESH_TEST_THREADS:-2}"
