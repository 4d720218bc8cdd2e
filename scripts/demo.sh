#!/usr/bin/env bash
# demo.sh - a node pulling a model, end to end, without the internet.
#
#   scripts/demo.sh [BUILD_DIR]        (default build/)
#
# Starts the project's test hub (tests/hub/hub.py, a stand-in for huggingface.co) with
# a generated 64 MiB model, starts shoald against it, runs `shoal pull` twice (the
# second time nothing is fetched), shows `shoal status`, `shoal ls` and `shoal check`, and stops
# everything. All of it lives in a temporary directory, removed on exit. With the real
# Hub the same commands work without --hub (see docs/user-guide.md).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shoald=$build/node/shoald
shoal=$build/tools/shoal
work=$(mktemp -d "${TMPDIR:-/tmp}/shoal-demo.XXXXXX")
pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

mkdir -p "$work/hub"
python3 -B tests/hub/make_model.py --root "$work/hub" --repo model/demo/tiny-llm --seed 1 \
    --files "model.safetensors:64M,config.json:small,tokenizer.json:256K" --tag v1 >/dev/null
python3 -B tests/hub/hub.py --root "$work/hub" --ready-file "$work/hub.ready" \
    --max-lifetime 600 >"$work/hub.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [ -s "$work/hub.ready" ] && break; sleep 0.05; done
hub=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$work/hub.ready")

say "shoald --data-dir $work/node --hub $hub   (the test hub stands in for huggingface.co)"
"$shoald" --data-dir "$work/node" --hub "$hub" --http 127.0.0.1:0 2>"$work/shoald.log" &
pids+=($!)
export SHOAL_DATA_DIR=$work/node
for _ in $(seq 1 200); do "$shoal" status >/dev/null 2>&1 && break; sleep 0.05; done
head -n 3 "$work/shoald.log"

export HF_HUB_CACHE=$work/hf-cache
say "shoal pull demo/tiny-llm        (HF_HUB_CACHE=$HF_HUB_CACHE)"
"$shoal" pull demo/tiny-llm
say "shoal pull demo/tiny-llm@v1     (again: everything is in the store already)"
"$shoal" pull demo/tiny-llm@v1
say "the Hugging Face cache, as huggingface_hub would find it offline"
(cd "$HF_HUB_CACHE" && find . -maxdepth 4 | sort | head -n 20)
say "shoal status"
"$shoal" status
say "shoal ls"
"$shoal" ls
say "shoal check     (reads and hashes every chunk the store holds)"
"$shoal" check
