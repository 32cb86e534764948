#!/usr/bin/env bash
# Checks the layout rules docs/architecture.md states, so they cannot rot:
# - no Rust source file over 600 lines;
# - `dry_run` only in the applier, never in a playbook;
# - the production build (the binary without its default features) contains no sandbox code
#   (no s3s crate in its dependency tree);
# - one time crate of our choosing: the production build has jiff and no chrono (the AWS SDK
#   brings `time` for itself; that one is not ours to drop).
# scripts/test.sh runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
while IFS= read -r file; do
  lines=$(wc -l < "$file")
  if [ "$lines" -gt 600 ]; then
    echo "layout.sh: $file has $lines lines (limit 600); split it by job" >&2
    fail=1
  fi
done < <(find src crates -name '*.rs')

if grep -rn "dry_run" crates/core/src/responder/playbook; then
  echo "layout.sh: a playbook mentions dry_run; only responder/applier.rs may" >&2
  fail=1
fi

if cargo tree --locked --no-default-features -e normal --prefix none -p backstop 2>/dev/null \
    | grep -E '^(s3s|s3s-fs|backstop-sandbox) ' ; then
  echo "layout.sh: the production build depends on the sandbox" >&2
  fail=1
fi
if cargo tree --locked --no-default-features -e normal --prefix none -p backstop 2>/dev/null \
    | grep -E '^chrono ' ; then
  echo "layout.sh: the production build depends on chrono; the project's time crate is jiff" >&2
  fail=1
fi
if ! cargo tree --locked -e normal --prefix none -p backstop >/dev/null 2>&1; then
  echo "layout.sh: cargo tree failed" >&2
  fail=1
fi
exit $fail
