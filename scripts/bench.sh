#!/usr/bin/env bash
# bench.sh - builds Release and runs the benchmarks (tests/bench), printing figures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh clang libclang-rt-14-dev   # bench_fuzz builds libFuzzer targets with clang
scripts/build.sh Release
cd build && ctest -L bench -V --timeout 1800 | grep -vE '^(UpdateCTestConfiguration|Test project|Constructing|Checking|Parse|Updating|Add Test)'
