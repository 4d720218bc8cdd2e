#!/usr/bin/env bash
# bench_pull.sh - one node pulling a model from the test hub, next to curl fetching the
# same files over the same link in the same run.
#
#   bench_pull.sh SHOALD SHOAL [MIB]      (MIB: model size, default 2048, two files)
#
# SHOALD_ARGS adds flags to shoald (e.g. "--hub-concurrency 4"); LINKS=loopback skips
# the shaped link.
# Two links: loopback (unshaped), and, when run as root, a 1 Gbit/s link between two
# network namespaces (veth pair, tc tbf on both ends, addresses in 198.18.0.0/15).
# Printed per link: curl (one file after the other, and all at once with --parallel),
# shoal pull (fetch, verify, store, export into a Hugging Face cache), the ratio of pull
# to the faster curl, and shoald's peak RSS. Everything is created under one temporary
# directory and removed on exit, namespaces included.
set -euo pipefail

SHOALD=$(realpath "$1")
SHOAL=$(realpath "$2")
MIB=${3:-2048}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
HUBPY="$HERE/tests/hub/hub.py"
MAKE="$HERE/tests/hub/make_model.py"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench-pull.XXXXXX")
NSH="shoalbh$$"
NSN="shoalbn$$"
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ "$(id -u)" = 0 ]; then
        ip netns del "$NSH" 2>/dev/null || true
        ip netns del "$NSN" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mbps() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t / 1e6 }'; }

# Waits (bounded) for a file to appear.
wait_file() {
    local i
    for i in $(seq 1 600); do
        [ -s "$1" ] && return 0
        sleep 0.05
    done
    echo "bench_pull: timed out waiting for $1" >&2
    exit 1
}

HALF=$((MIB / 2))
mkdir -p "$WORK/hub"
python3 -B "$MAKE" --root "$WORK/hub" --repo model/bench/m --seed 7 \
    --files "model-00001-of-00002.safetensors:${HALF}M,model-00002-of-00002.safetensors:${HALF}M,config.json:small" \
    >"$WORK/model.json"
# Every file of the commit, as the pull takes them all.
mapfile -t FILES < <(python3 -c 'import json,sys; print("\n".join(sorted(json.load(open(sys.argv[1]))["files"])))' "$WORK/model.json")
BYTES=$(python3 -c 'import json,sys; print(sum(f["size"] for f in json.load(open(sys.argv[1]))["files"].values()))' "$WORK/model.json")

# run_link NAME PREFIX HOST: PREFIX runs a command on the node's side of the link
# (empty for loopback); the hub listens on HOST in the hub's namespace.
run_link() {
    local name=$1 host=$3 hubns=$4
    local -a on=()
    [ -n "$2" ] && on=(ip netns exec "$2")
    local -a onhub=()
    [ -n "$hubns" ] && onhub=(ip netns exec "$hubns")
    local d="$WORK/$name"
    mkdir -p "$d"

    "${onhub[@]}" python3 -B "$HUBPY" --root "$WORK/hub" --host "$host" \
        --ready-file "$d/hub.ready" --max-lifetime 3600 >"$d/hub.log" 2>&1 &
    PIDS+=($!)
    wait_file "$d/hub.ready"
    local url
    url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$d/hub.ready")

    # curl, one file after the other (as a user would), then all at once.
    local t0 t1 f
    mkdir -p "$d/curl"
    t0=$(now)
    for f in "${FILES[@]}"; do
        "${on[@]}" curl -sSfL -o "$d/curl/$f" "$url/bench/m/resolve/main/$f"
    done
    t1=$(now)
    local curl_seq
    curl_seq=$(secs "$t0" "$t1")
    rm -rf "$d/curl"
    mkdir -p "$d/curl"
    local -a par=()
    for f in "${FILES[@]}"; do
        par+=(-o "$d/curl/$f" "$url/bench/m/resolve/main/$f")
    done
    t0=$(now)
    "${on[@]}" curl -sSfL --parallel --parallel-max 8 "${par[@]}"
    t1=$(now)
    local curl_par
    curl_par=$(secs "$t0" "$t1")
    rm -rf "$d/curl"

    # shoald + shoal pull.
    # shellcheck disable=SC2086 # SHOALD_ARGS: extra flags, split on spaces on purpose
    "${on[@]}" "$SHOALD" --data-dir "$d/node" --hub "$url" --http 127.0.0.1:0 \
        --log-level warn ${SHOALD_ARGS:-} >"$d/node.log" 2>&1 &
    local npid=$!
    PIDS+=($npid)
    local i
    for i in $(seq 1 600); do
        "$SHOAL" --data-dir "$d/node" status >/dev/null 2>&1 && break
        sleep 0.05
    done
    t0=$(now)
    HF_HUB_CACHE="$d/cache" "$SHOAL" --data-dir "$d/node" pull bench/m >"$d/pull.out" 2>"$d/pull.err" || {
        echo "bench_pull: shoal pull failed:" >&2
        cat "$d/pull.err" "$d/node.log" >&2
        exit 1
    }
    t1=$(now)
    local pull
    pull=$(secs "$t0" "$t1")
    local rss
    rss=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$npid/status")
    kill -TERM "$npid"
    wait "$npid" || true

    local best
    best=$(awk -v a="$curl_seq" -v b="$curl_par" 'BEGIN { print (a < b ? a : b) }')
    printf '%-9s curl one by one %7s s %6s MB/s | curl --parallel %7s s %6s MB/s\n' \
        "$name" "$curl_seq" "$(mbps "$BYTES" "$curl_seq")" "$curl_par" "$(mbps "$BYTES" "$curl_par")"
    printf '%-9s shoal pull      %7s s %6s MB/s | pull / best curl = %s | shoald peak RSS %s MiB\n' \
        "$name" "$pull" "$(mbps "$BYTES" "$pull")" \
        "$(awk -v p="$pull" -v c="$best" 'BEGIN { printf "%.3f", p / c }')" "$rss"
    rm -rf "$d/cache" "$d/node"
}

echo "model: $BYTES bytes in ${#FILES[@]} files"
run_link loopback "" 127.0.0.1 ""
[ "${LINKS:-all}" = loopback ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "shaped link: skipped (network namespaces need root)"
    exit 0
fi
ip netns add "$NSH"
ip netns add "$NSN"
ip link add vh$$ type veth peer name vn$$
ip link set vh$$ netns "$NSH"
ip link set vn$$ netns "$NSN"
ip -n "$NSH" addr add 198.18.0.1/24 dev vh$$
ip -n "$NSN" addr add 198.18.0.2/24 dev vn$$
ip -n "$NSH" link set lo up
ip -n "$NSN" link set lo up
ip -n "$NSH" link set vh$$ up
ip -n "$NSN" link set vn$$ up
# 1 Gbit/s each way: a token bucket on each end's egress.
tc -n "$NSH" qdisc add dev vh$$ root tbf rate 1gbit burst 1mb latency 20ms
tc -n "$NSN" qdisc add dev vn$$ root tbf rate 1gbit burst 1mb latency 20ms
run_link "1gbit" "$NSN" 198.18.0.1 "$NSH"
