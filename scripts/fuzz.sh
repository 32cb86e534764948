#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time: `scripts/fuzz.sh [seconds per target]`
# (default 60). Installs cargo-fuzz from crates.io when it is missing. cargo-fuzz needs
# nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
#
# New inputs libFuzzer finds go to a scratch directory, not into the kept corpus
# (fuzz/corpus/<target>/ is read as seeds only); a crash is saved under
# fuzz/artifacts/<target>/ and this script exits non-zero. Keep a fixed crash's input as a
# regression seed by copying it into fuzz/corpus/<target>/.
#
# Environment: FUZZ_SANITIZER (default none: the code is safe Rust; `address` for ASan),
# FUZZ_JOBS (parallel jobs per target, default 1), FUZZ_PROFILE (`release`, the default, or
# `dev`: an unoptimised build, several times quicker to compile and slower per input, which
# is what CI uses), CARGO_TARGET_DIR (where to build).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-1}"
profile=()
case "${FUZZ_PROFILE:-release}" in
  release) ;;
  dev) profile=(--dev) ;;
  *) echo "fuzz.sh: FUZZ_PROFILE must be release or dev" >&2; exit 2 ;;
esac
parallel=()
# -jobs at all (even 1) makes libFuzzer log to fuzz-N.log files instead of stderr.
[ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
targets=(webhook_payload config_loader journal_decoder)
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

cargo fuzz build "${profile[@]}" --sanitizer "$sanitizer"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
status=0
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  echo "fuzz.sh: $target for ${seconds}s" >&2
  # -print_final_stats=1 prints stat::number_of_executed_units for the record.
  if ! cargo fuzz run "${profile[@]}" --sanitizer "$sanitizer" "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" "${parallel[@]}" -print_final_stats=1 \
    -max_len=65536 -timeout=10 2>&1 | tee "$scratch/$target.log" | grep -E '^(stat::|#[0-9]+ +DONE|==[0-9]+== ERROR|thread .* panicked|SUMMARY)'; then
    :
  fi
  if ! grep -q 'stat::number_of_executed_units' "$scratch/$target.log" \
     || grep -qE 'panicked|ERROR: libFuzzer|SUMMARY: libFuzzer' "$scratch/$target.log"; then
    echo "fuzz.sh: $target FAILED; see fuzz/artifacts/$target/" >&2
    tail -40 "$scratch/$target.log" >&2
    status=1
  fi
done
exit "$status"
