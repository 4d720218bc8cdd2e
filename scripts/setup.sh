#!/usr/bin/env bash
# setup.sh - the first command of the README: installs the dependencies, builds
# Shoal (Release, in build/) and runs it: `shoal hash` on a sample file, then a node
# pulling a model from the project's test hub (scripts/demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
scripts/build.sh Release
sample=build/sample.bin
if [ ! -f "$sample" ]; then
    # 40 MiB of pseudo-random bytes: three pieces, the last one short.
    python3 -c "
import random, sys
sys.stdout.buffer.write(random.Random(1).randbytes(40 * 1024 * 1024 + 12345))" >"$sample"
fi
echo "== build/tools/shoal hash $sample"
build/tools/shoal hash "$sample"
scripts/demo.sh build
