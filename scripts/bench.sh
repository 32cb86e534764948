#!/usr/bin/env bash
# The performance report in one command: every benchmark at full size, each printing its
# table (docs/performance.md explains them). Installs the peer it compares against (Debian's
# prometheus-blackbox-exporter) where missing.
#
# The benchmarks take about 5 minutes on a 2-core machine; the builds come first. The
# child-process benchmarks run the binary the image ships: the production profile (fat LTO,
# one codegen unit, no sandbox), a long build. BACKSTOP_BENCH_QUICK=1 runs them on the plain
# release binary instead (slightly larger and slower; the figures in docs/performance.md are
# from the production one).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus-blackbox-exporter >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus-blackbox-exporter >/dev/null
fi

target_dir="${CARGO_TARGET_DIR:-target}"
if [ "${BACKSTOP_BENCH_QUICK:-0}" = 1 ]; then
  cargo build --locked --release --features sandbox --benches --bins
  export BACKSTOP_BENCH_BIN="$target_dir/release/backstop"
else
  cargo build --locked --profile production --no-default-features --bin backstop
  export BACKSTOP_BENCH_BIN="$target_dir/production/backstop"
  cargo build --locked --release --features sandbox --benches --bins
fi

started=$SECONDS
for bench in probe_accuracy webhook footprint list_cost watch_scale index_scale; do
  echo
  echo "== $bench"
  cargo bench --quiet --features sandbox --bench "$bench"
done
echo
echo "benchmarks ran in $((SECONDS - started)) s (builds not counted); binary: $BACKSTOP_BENCH_BIN"
