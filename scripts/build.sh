#!/usr/bin/env bash
# build.sh [TYPE [DIR]] - configures and builds Shoal: TYPE is Release (default) or
# Debug (AddressSanitizer + UndefinedBehaviorSanitizer); DIR defaults to build/ or
# build-debug/.
set -euo pipefail
cd "$(dirname "$0")/.."

type=${1:-Release}
case $type in
Release) dir=${2:-build} ;;
Debug) dir=${2:-build-debug} ;;
*) echo "build.sh: TYPE is Release or Debug, not '$type'" >&2; exit 2 ;;
esac
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" >/dev/null
cmake --build "$dir" -j "$jobs"
