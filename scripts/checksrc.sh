#!/usr/bin/env bash
# checksrc.sh - bans C calls that review keeps missing (unbounded copies and parses).
# Run by CTest as `checksrc`.
set -euo pipefail
cd "$(dirname "$0")/.."

banned='\b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|gets)[[:space:]]*\('
if hits=$(grep -rnE "$banned" --include='*.c' --include='*.h' protocol store node tools tests); then
    echo "checksrc: banned calls (use snprintf, memcpy with a bound, strtoul...):" >&2
    echo "$hits" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
echo "1 passed, 0 failed"
