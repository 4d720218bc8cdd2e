#!/usr/bin/env bash
# build_fuzzers.sh - builds the libFuzzer targets with clang and, optionally, runs them.
#
#   tests/fuzz/build_fuzzers.sh [SECONDS [TARGET...]]
#
# Configures its own build directory (build-fuzz/ at the top of the source tree, or
# $SHOAL_FUZZ_BUILD) with CC=clang, the Debug build type (ASan + UBSan, from the
# top-level CMakeLists.txt), -fsanitize=fuzzer-no-link on everything (coverage for
# libFuzzer) and -DSHOAL_FUZZ=ON, then builds fuzz_<target> for every target (default:
# all in TARGETS below). With SECONDS, each target runs that long on a scratch copy of
# its corpus (the seeds in corpus/<target>/ are not modified); a crash stops the script
# with libFuzzer's report and a non-zero status. Needs clang and its libFuzzer runtime
# (Debian 12: clang-14, libclang-rt-14-dev).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${SHOAL_FUZZ_BUILD:-$src/build-fuzz}
TARGETS=(noise wire_frames wire_msgs)

secs=${1:-0}
shift || true
if [ $# -gt 0 ]; then
    TARGETS=("$@")
fi

if ! command -v "${CC:-clang}" >/dev/null; then
    echo "build_fuzzers.sh: ${CC:-clang} not found: skipped (Debian: apt-get install clang-14 libclang-rt-14-dev)"
    exit 77
fi
CC=${CC:-clang} cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DSHOAL_FUZZ=ON \
    -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
make -C "$build" -j2 "${TARGETS[@]/#/fuzz_}" >/dev/null

if [ "$secs" -gt 0 ]; then
    mkdir -p "$build/fuzz-artifacts"
    for t in "${TARGETS[@]}"; do
        work=$(mktemp -d)
        cp -r "$here/corpus/$t/." "$work/"
        echo "fuzz_$t: ${secs}s on a copy of corpus/$t (crash inputs go to $build/fuzz-artifacts/)"
        status=0
        "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -max_len=8192 \
            -artifact_prefix="$build/fuzz-artifacts/$t-" "$work" >"$build/fuzz_$t.log" 2>&1 ||
            status=$?
        rm -rf "$work"
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE|SUMMARY)' \
            "$build/fuzz_$t.log" || true
        if [ "$status" -ne 0 ]; then
            tail -n 40 "$build/fuzz_$t.log" >&2
            echo "fuzz_$t: FAILED (status $status; log $build/fuzz_$t.log)" >&2
            exit 1
        fi
        echo "fuzz_$t: $(sed -n 's/^stat::number_of_executed_units: *//p' "$build/fuzz_$t.log") executions in ${secs}s, 0 crashes (log $build/fuzz_$t.log)"
    done
fi
