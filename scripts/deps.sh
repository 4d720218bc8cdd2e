#!/usr/bin/env bash
# deps.sh - installs what Shoal builds and tests with, from Debian 12's packages.
# Does nothing when everything is there already; needs root (or sudo) otherwise.
#   scripts/deps.sh [PACKAGE...]     also these (scripts/bench.sh adds clang for fuzzing)
set -euo pipefail

packages=(
    cmake make gcc pkg-config            # build
    libsodium-dev libuv1-dev libcurl4-openssl-dev libmsgpack-dev librocksdb-dev
    libssl-dev libjansson-dev            # libraries (OpenSSL for sha256, jansson for JSON)
    libhttp-parser-dev                   # the node's HTTP server (no pkg-config file)
    b3sum python3                        # tests: BLAKE3 cross-checks, test scripts
    iperf3                               # benchmarks: raw TCP next to the peer transport
    "$@"
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
        echo "deps.sh: run as root to install: ${missing[*]}" >&2
        exit 1
    }
    sudo=sudo
else
    sudo=
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
