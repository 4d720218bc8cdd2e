#!/usr/bin/env bash
# bench_peer.sh - two nodes on loopback: A serves a model from its store, B pulls it
# with --from-peer. Prints MB/s end to end, the CPU each node spent per byte (user +
# system, from /proc/PID/stat), and raw loopback TCP (iperf3) in the same run.
#
#   bench_peer.sh SHOALD SHOAL [MIB]      (MIB: model size, default 2048)
#
# PERF=1 also profiles both nodes with perf for 5 s of the pull and prints where their
# cycles went (the split by stage in docs/benchmarks.md). SHOALD_ARGS go to both nodes.
#
# Everything lives in one temporary directory, removed on exit; the nodes are stopped by
# PID. No Hub is involved: A gets the model by `shoal import`.
set -euo pipefail

SHOALD=$(realpath "$1")
SHOAL=$(realpath "$2")
MIB=${3:-2048}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench-peer.XXXXXX")
PIDS=()
TICK=$(getconf CLK_TCK)

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start_node() { # NAME -> PID in $npid
    "$SHOALD" --data-dir "$WORK/$1" --cluster-key "$WORK/cluster.key" --hub http://127.0.0.1:9 \
        --listen 127.0.0.1:0 --http 127.0.0.1:0 --log-level info ${SHOALD_ARGS:-} 2>"$WORK/$1.log" &
    npid=$!
    PIDS+=($npid)
    local i
    for i in $(seq 1 600); do
        "$SHOAL" --data-dir "$WORK/$1" status >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "bench_peer: $1 did not start" >&2
    cat "$WORK/$1.log" >&2
    exit 1
}

"$SHOAL" keygen "$WORK/cluster.key" >/dev/null
mkdir -p "$WORK/model"
half=$((MIB / 2))
python3 -c '
import random, sys
for name, mib, seed in (("a.safetensors", int(sys.argv[2]), 1), ("b.safetensors", int(sys.argv[2]), 2)):
    r = random.Random(seed)
    with open(sys.argv[1] + "/" + name, "wb") as f:
        for _ in range(mib):
            f.write(r.randbytes(1 << 20))
' "$WORK/model" "$half"
bytes=$(du -sb "$WORK/model" | awk '{ print $1 }')

start_node a
apid=$npid
commit=$("$SHOAL" --data-dir "$WORK/a" import "$WORK/model" --repo bench/m --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["commit"])')
rm -rf "$WORK/model"
addr=$(sed -n 's/.*peers: listening on \([^ ]*\).*/\1/p' "$WORK/a.log" | tail -n 1)
start_node b
bpid=$npid

if command -v iperf3 >/dev/null; then
    iperf3 -s -1 -p 5299 -B 127.0.0.1 >/dev/null 2>&1 &
    PIDS+=($!)
    sleep 0.3
    gbit=$(iperf3 -c 127.0.0.1 -p 5299 -t 4 -J | python3 -c \
        'import json,sys; print("%.1f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))')
    echo "raw TCP over loopback (iperf3, one stream): $gbit Gbit/s"
else
    echo "raw TCP: iperf3 not installed (apt-get install iperf3)"
fi

a0=$(cpu_ticks "$apid")
b0=$(cpu_ticks "$bpid")
if [ -n "${PERF:-}" ]; then
    (sleep 0.5; perf record -q -p "$bpid" -o "$WORK/perf-b.data" -- sleep 5 >/dev/null 2>&1) &
    perfb=$!
    (sleep 0.5; perf record -q -p "$apid" -o "$WORK/perf-a.data" -- sleep 5 >/dev/null 2>&1) &
    perfa=$!
fi
t0=$(now)
HF_HUB_CACHE="$WORK/cache" "$SHOAL" --data-dir "$WORK/b" pull "bench/m@$commit" \
    --from-peer "$addr" >/dev/null 2>"$WORK/pull.err" || {
    cat "$WORK/pull.err" "$WORK/a.log" "$WORK/b.log" >&2
    exit 1
}
t1=$(now)
a1=$(cpu_ticks "$apid")
b1=$(cpu_ticks "$bpid")
awk -v n="$bytes" -v t0="$t0" -v t1="$t1" -v a="$((a1 - a0))" -v b="$((b1 - b0))" -v hz="$TICK" \
    -v rss="$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$bpid/status")" 'BEGIN {
    s = t1 - t0
    printf "pull --from-peer: %d bytes in %.2f s = %.0f MB/s\n", n, s, n / s / 1e6
    printf "CPU per byte: sender %.2f ns, receiver %.2f ns (all stages: AEAD, hashing, store, cache export)\n",
        a / hz * 1e9 / n, b / hz * 1e9 / n
    printf "receiver peak RSS %d MiB\n", rss
}'
if [ -n "${PERF:-}" ]; then
    wait "$perfa" "$perfb" || true
    for side in a:sender b:receiver; do
        echo "${side#*:}, share of cycles by function (perf, 5 s of the pull):"
        perf report -i "$WORK/perf-${side%%:*}.data" --no-children --sort dso,sym \
            --percent-limit 0.7 --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30
    done
fi
