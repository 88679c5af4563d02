#!/usr/bin/env bash
# Runs every test of pmesh: shellcheck on the scripts, unit tests, and the multi-process
# tests in tests/ (real binaries, real TLS, real sled, real Docker with locally built images,
# systemd-analyze), and every fuzz target briefly (nightly and cargo-fuzz; .ci/run installs them).
# The multi-process tests start the built binaries, so they are built first.
set -euo pipefail
cd "$(dirname "$0")/.."
shellcheck tests/*.sh tests/images/*.sh .ci/run
# Formatting and lints first: they take seconds and fail fast.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Container images the tests use, built from Debian packages and cached by tag.
tests/images/build.sh
cargo build --workspace --bins --locked
cargo test --workspace --locked -- --test-threads="${PMESH_TEST_THREADS:-2}"
# Every fuzz target briefly (tests/fuzz.sh runs them for 10 minutes each on demand): a crash
# in the corpus or in 15 s of mutation fails the run.
tests/fuzz.sh "${PMESH_FUZZ_SECONDS:-15}"
