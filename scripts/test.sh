#!/usr/bin/env bash
# The whole test setup in one command: installs what the tests need where it is missing
# (Debian packages, and a one-time build of a real kube-apiserver into a cache outside the
# checkout), then runs every test, the cluster tests against both API backends. `.ci/run` runs exactly this after fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

# command the tests run -> Debian package that provides it
declare -A package_for=(
  [kill]=procps
  [curl]=curl
  [promtool]=prometheus
  [prometheus]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [kubectl]=kubernetes-client
  [prometheus-blackbox-exporter]=prometheus-blackbox-exporter
)

missing=()
for cmd in "${!package_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${package_for[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "test.sh: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    # The packages' services are never started here: tests start their own instances.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test.sh: missing ${missing[*]} and no apt-get here; install them and re-run" >&2
    exit 1
  fi
fi

# The real Kubernetes API server the cluster tests run against beside the simulator: built
# once per machine into a cache outside the checkout (4 to 13 minutes on 2 cores), reused
# after that. Installs etcd-server (and, for the build, golang-go and friends) where missing.
BACKSTOP_KUBE_BIN_DIR=$(bash scripts/kube-apiserver.sh)
export BACKSTOP_KUBE_BIN_DIR

# The layout rules of docs/architecture.md (file sizes, dry runs only in the applier, no
# sandbox in the production build).
bash scripts/layout.sh

# Most tests wait on servers (API servers, S3, Prometheus) more than they compute: four at a
# time keep 2 cores busy (measured: the integration binary's wall time 451 s with 2, 342 s
# with 4, at 188 % CPU). RUST_TEST_THREADS overrides it.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-4}
cargo test --locked --workspace --all-targets --no-fail-fast "$@"

# Then each cargo-fuzz target runs for a bounded time (BACKSTOP_FUZZ_SECONDS, default 20),
# seeded from the kept corpus, on an unoptimised instrumented build: about 5.5 minutes to
# build cold on 2 cores, one minute to run. Only for the whole suite: a run narrowed by
# arguments (`scripts/test.sh --test it watch::`) skips it. tests/it/fuzz_corpus.rs replays the
# corpus through the same checks in every run.
if [ $# -eq 0 ]; then
  FUZZ_PROFILE=dev bash scripts/fuzz.sh "${BACKSTOP_FUZZ_SECONDS:-20}"
fi
