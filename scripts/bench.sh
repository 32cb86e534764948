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

cargo build --release --features sandbox --benches --bins
for bench in probe_accuracy webhook footprint list_cost watch_scale; do
  echo
  echo "== $bench"
  cargo bench --quiet --features sandbox --bench "$bench"
done
