#!/usr/bin/env bash
# The performance report in one command: every benchmark at full size on a release build,
# each printing its table (docs/performance.md explains them). Installs the peer it compares
# against (Debian's prometheus-blackbox-exporter) where missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus-blackbox-exporter >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus-blackbox-exporter >/dev/null
fi

# The child-process benchmarks run the binary the image ships: the production profile
# without the sandbox (a long build: fat LTO, one codegen unit).
cargo build --locked --profile production --no-default-features --bin backstop
export BACKSTOP_BENCH_BIN="${CARGO_TARGET_DIR:-target}/production/backstop"
cargo build --release --features sandbox --benches --bins
# list_cost at 20,000 objects: the embedded S3 (s3s-fs) walks the whole bucket directory
# for every ListObjectsV2, so 100,000 objects take far longer to set up and list than the
# ten minutes this report is meant to take. What it measures, lists per cycle at steady
# state, does not depend on the count (docs/performance.md); set BACKSTOP_BENCH_OBJECTS to
# measure at another size.
export BACKSTOP_BENCH_OBJECTS="${BACKSTOP_BENCH_OBJECTS:-20000}"
for bench in probe_accuracy webhook footprint list_cost watch_scale index_scale; do
  echo
  echo "== $bench"
  cargo bench --quiet --features sandbox --bench "$bench"
done
