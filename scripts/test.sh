#!/usr/bin/env bash
# test.sh - the README's test command: installs what is missing, then builds and runs
# the whole suite twice, in the Debug build (AddressSanitizer + UBSan) and in the
# Release build. Benchmarks are not run here (scripts/bench.sh runs them).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
status=0
for type in Debug Release; do
    dir=build-test-$(echo "$type" | tr 'A-Z' 'a-z')
    echo "== $type build ($dir)"
    scripts/build.sh "$type" "$dir"
    echo "== $type tests"
    (cd "$dir" && ctest --output-on-failure -LE bench -j "$jobs") || status=1
done
exit $status
