#!/usr/bin/env bash
# Fuzzes every parser of untrusted or hand-written bytes (the targets in proto/fuzz) for
# SECONDS each (default 600), one after the other:
#
#   tests/fuzz.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Each run
# starts from a copy of proto/fuzz/corpus/TARGET in a temporary directory, so runs never grow
# the repository's corpus. Exits non-zero when any target crashes, times out or runs out of
# memory, and prints where the input that did it is (the temporary directory is then kept).
# Builds without AddressSanitizer: pmesh forbids unsafe code, and ASan would halve the runs.
# The fuzz build has its own target directory outside the checkout (PMESH_FUZZ_TARGET_DIR,
# default ~/.cache/pmesh/fuzz-target), so that CI's clean clones reuse the built dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${PMESH_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pmesh/fuzz-target}"

seconds="${1:-600}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: tests/fuzz.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi
shift || true

fuzz_dir=proto/fuzz
fuzz=(cargo +nightly fuzz)
flags=(--fuzz-dir "$fuzz_dir" --sanitizer none)
if ! "${fuzz[@]}" --version >/dev/null 2>&1; then
  echo "tests/fuzz.sh: cargo-fuzz on the nightly toolchain is missing; install it with" >&2
  echo "  rustup toolchain install nightly && cargo install cargo-fuzz --locked" >&2
  exit 2
fi

# The largest input to try, per target: room for a real file of its kind, and no more (longer
# inputs slow every execution without reaching new code).
max_len() {
  case "$1" in
    pattern_lint | bundle) echo 65536 ;;
    master_config | agent_config) echo 8192 ;;
    *) echo 16384 ;;
  esac
}

targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir "$fuzz_dir")
fi

"${fuzz[@]}" build "${flags[@]}"

work="$(mktemp -d "${TMPDIR:-/tmp}/pmesh-fuzz.XXXXXX")"
failed=()
for target in "${targets[@]}"; do
  mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  if [[ -d "$fuzz_dir/corpus/$target" ]]; then
    cp -R "$fuzz_dir/corpus/$target/." "$work/$target/corpus/"
  fi
  echo "== $target: ${seconds}s"
  # -timeout: one input taking this long is a finding (a hang), as is a crash or the memory
  # limit.
  if "${fuzz[@]}" run "${flags[@]}" "$target" "$work/$target/corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 -max_len="$(max_len "$target")" \
    -artifact_prefix="$work/$target/artifacts/" -print_final_stats=1 >"$work/$target/log" 2>&1; then
    grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$work/$target/log" || true
  else
    failed+=("$target")
    tail -n 40 "$work/$target/log"
    echo "!! $target failed; its log is $work/$target/log and the input is:"
    ls -1 "$work/$target/artifacts/"*
  fi
done

if ((${#failed[@]})); then
  echo "tests/fuzz.sh: ${failed[*]} failed; minimise an input with"
  echo "  cargo +nightly fuzz tmin --fuzz-dir $fuzz_dir --sanitizer none TARGET INPUT"
  echo "and keep it as a regression test in the crate that owns the parser. Kept: $work"
  exit 1
fi
rm -rf "$work"
echo "tests/fuzz.sh: ${#targets[@]} targets, ${seconds}s each, no crash"
