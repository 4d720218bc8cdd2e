#!/usr/bin/env bash
# test_node_cmds.sh - the shoal tool's node commands (status, pull, ls, rm, gc, import)
# against fake_node.py, a stand-in for shoald's control API: finding the node, what the
# tool sends, what it prints, exit codes, --json, progress on and off a terminal.
# Usage: test_node_cmds.sh PATH_TO_SHOAL
set -euo pipefail

shoal=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") # absolute: some cases run elsewhere
here=$(cd "$(dirname "$0")" && pwd)
. "$(dirname "$0")/lib.sh"
cli_setup test_node_cmds

has() { grep -qF -- "$1" "$2" || { cat "$2" >&2; fail "${3:-$2 lacks '$1'}"; }; }
# json CODE: runs python CODE with d = the JSON document on stdout (which must be the
# only thing there: json.load refuses trailing text).
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); $1" "$tmp/out"; }
# last_req CODE: runs python CODE with r = the last request the fake node received.
last_req() {
    python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]; $1" "$log" \
        "${@:2}"
}
n_reqs() { if [ -f "$log" ]; then wc -l <"$log"; else echo 0; fi; }
no_escapes() { ! grep -q $'\033' "$1" || fail "escape codes in $1 (not a terminal)"; }

# A clean environment: the tool must find everything from what each test gives it.
unset SHOAL_SOCKET SHOAL_DATA_DIR HF_HUB_CACHE HF_HOME XDG_CACHE_HOME
export HOME="$tmp/home"
mkdir -p "$HOME" "$tmp/data" "$tmp/cwd"
data="$tmp/data"
sock="$data/shoald.sock"
log="$tmp/requests.jsonl"
commit=0123456789abcdef0123456789abcdef01234567

# start_fake SOCKET [OPTIONS]: runs fake_node.py there; $fake gets its PID. Ready when
# `shoal status` answers (the readiness check under test), within 20 s.
start_fake() {
    local s=$1
    shift
    python3 -B "$here/fake_node.py" "$s" "$log" "$@" 2>>"$tmp/fake.err" &
    fake=$!
    pids+=("$fake")
    wait_for 20 "$shoal" --socket "$s" status >/dev/null 2>&1 ||
        { cat "$tmp/fake.err" >&2; fail "fake node on $s not ready in 20 s"; }
}
stop_fake() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# --- usage errors: exit 2, no node needed -------------------------------------------
expect 2 "$shoal" pull
has 'no REPO given' "$tmp/err"
has 'Usage: shoal [--data-dir DIR | --socket PATH] pull' "$tmp/err"
expect 2 "$shoal" pull a b
expect 2 "$shoal" pull org/x --repo-type modle
has "--repo-type is model, dataset or space, not 'modle'" "$tmp/err"
expect 2 "$shoal" pull 'org/x y'
expect 2 "$shoal" pull 'org/x@'
expect 2 "$shoal" pull '@main'
expect 2 "$shoal" pull org/x --include
has "option '--include' needs a value" "$tmp/err"
expect 2 "$shoal" status extra
expect 2 "$shoal" status --bogus
has "shoal status: unknown option '--bogus'" "$tmp/err"
expect 2 "$shoal" ls --json=yes
has "option '--json' takes no value" "$tmp/err"
expect 2 "$shoal" rm
expect 2 "$shoal" rm org/x --repo-type x
expect 2 "$shoal" gc now
expect 2 "$shoal" import "$tmp"
has '--repo REPO is required' "$tmp/err"
expect 2 "$shoal" import "$tmp" --repo org/x@v1
expect 2 "$shoal" import --repo org/x
expect 2 "$shoal" --socket
has 'shoal: --socket needs a value' "$tmp/err"
expect 2 "$shoal" --data-dir= status
expect 2 "$shoal" --data-dir a --socket b status
has 'not both' "$tmp/err"
for c in status pull ls rm gc import; do
    expect 0 "$shoal" "$c" --help
    has "Usage: shoal [--data-dir DIR | --socket PATH] $c" "$tmp/out"
    expect 0 "$shoal" --socket "$sock" help "$c"
done
expect 0 "$shoal" pull --help
has '--include GLOB' "$tmp/out"
has 'HF_HUB_CACHE' "$tmp/out"
expect 0 "$shoal" --help
has '--data-dir DIR' "$tmp/out"
ok "usage errors and help"

# --- no node --------------------------------------------------------------------------
expect 1 "$shoal" status
has 'shoal status: which node? give `shoal --data-dir DIR status ...`' "$tmp/err"
has 'SHOAL_DATA_DIR' "$tmp/err"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "one line when no node is given"
expect 1 "$shoal" --data-dir "$data" status
has "shoal status: no node answers on $sock (is shoald running? start it with: shoald --data-dir $data)" \
    "$tmp/err"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "one line when no node answers"
[ ! -s "$tmp/out" ] || fail "nothing on stdout when no node answers"
expect 1 "$shoal" --socket "$sock" pull org/good
has "shoal pull: no node answers on $sock" "$tmp/err"
# A socket file nobody listens on (a node that crashed): connection refused.
python3 -c "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$tmp/stale.sock"
expect 1 "$shoal" --socket "$tmp/stale.sock" ls
has "shoal ls: no node answers on $tmp/stale.sock (is shoald running? start it with: shoald --data-dir DIR)" \
    "$tmp/err"
expect 1 "$shoal" --socket "$tmp/$(printf 'x%.0s' {1..120})" status
has 'too long for a unix socket' "$tmp/err"
ok "no node: clear messages, exit 1"

start_fake "$sock"

# --- status: finding the node ---------------------------------------------------------
expect 0 "$shoal" --socket "$sock" status
has 'node      k3v9x2fakefakefake' "$tmp/out"
has 'uptime    1h02m' "$tmp/out"
has 'store     4 files (3 complete), 812 chunks, 3.00 GiB (3.00 GiB stored), quota none' "$tmp/out"
has 'hub       https://huggingface.co: 3 requests, 5.00 GiB received, 1 retries' "$tmp/out"
expect 0 "$shoal" --data-dir "$data" status
expect 0 "$shoal" --data-dir="$data" status
expect 0 "$shoal" --socket="$sock" status
expect 0 env SHOAL_SOCKET="$sock" "$shoal" status
expect 0 env SHOAL_DATA_DIR="$data" "$shoal" status
expect 0 env SHOAL_SOCKET="$sock" SHOAL_DATA_DIR="$tmp/nowhere" "$shoal" status
expect 1 env SHOAL_SOCKET="$tmp/nowhere.sock" SHOAL_DATA_DIR="$data" "$shoal" status
expect 0 env SHOAL_SOCKET="$tmp/nowhere.sock" "$shoal" --data-dir "$data" status
last_req "assert r['method'] == 'GET' and r['path'] == '/v1/status' and r['body'] is None, r"
expect 0 "$shoal" --socket "$sock" status --json
json "assert d['node_id'] == 'k3v9x2fakefakefake' and d['pulls']['active'] == 0"
ok "status: socket from options and environment, --json"

export SHOAL_SOCKET="$sock"

# --- pull: done -----------------------------------------------------------------------
before=$(n_reqs)
expect 0 env HF_HUB_CACHE="$tmp/hfcache" HF_HOME="$tmp/ignored" "$shoal" pull org/good \
    --include '*.json' --include '*.safetensors' --exclude '*.bin'
[ "$(cat "$tmp/out")" = "$tmp/hfcache/models--org--good/snapshots/$commit" ] ||
    { cat "$tmp/out" >&2; fail "pull prints the snapshot folder, alone, on stdout"; }
for f in config.json model.safetensors sub/tokenizer.json; do
    has "stored $f" "$tmp/err"
done
has 'org/good@main: resolving' "$tmp/err"
has 'org/good@main: fetching, 3 files, 3.00 GiB' "$tmp/err"
has "done: org/good@main (commit 0123456789ab): 3 files, 3.00 GiB in 4s" "$tmp/err"
no_escapes "$tmp/err"
python3 -c "
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2]):]
post = reqs[0]
assert post['method'] == 'POST' and post['path'] == '/v1/pulls', post
assert post['content_type'] == 'application/json', post
assert post['body'] == {'repo': 'org/good', 'repo_type': 'model', 'revision': 'main',
                        'include': ['*.json', '*.safetensors'], 'exclude': ['*.bin'],
                        'cache_dir': sys.argv[3] + '/hfcache'}, post
polls = [r for r in reqs[1:] if r['path'] == '/v1/pulls/' + '1']
assert len(polls) == 4 and len(reqs) == 5, reqs
" "$log" "$before" "$tmp"
ok "pull: done, files reported, request shape"

# The hub cache comes from the tool's environment, the way huggingface_hub finds it.
last_post() { python3 -c "
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)['method'] == 'POST'][-1]
$1" "$log" "${@:2}"; }
expect 0 env HF_HOME="$tmp/hfhome" XDG_CACHE_HOME="$tmp/xdg" "$shoal" pull org/good
last_post "assert r['body']['cache_dir'] == sys.argv[2], r" "$tmp/hfhome/hub"
expect 0 env XDG_CACHE_HOME="$tmp/xdg" "$shoal" pull org/good
last_post "assert r['body']['cache_dir'] == sys.argv[2], r" "$tmp/xdg/huggingface/hub"
expect 0 "$shoal" pull org/good
last_post "assert r['body']['cache_dir'] == sys.argv[2], r" "$HOME/.cache/huggingface/hub"
[ "$(cat "$tmp/out")" = "$HOME/.cache/huggingface/hub/models--org--good/snapshots/$commit" ] ||
    fail "default cache snapshot folder"
expect 0 env HF_HUB_CACHE='~/hc/' "$shoal" pull org/good
last_post "assert r['body']['cache_dir'] == sys.argv[2], r" "$HOME/hc"
(cd "$tmp/cwd" && expect 0 env HF_HUB_CACHE=rel/./c/../cache HF_HOME= "$shoal" pull org/good)
last_post "assert r['body']['cache_dir'] == sys.argv[2], r" "$tmp/cwd/rel/cache"
expect 0 env HF_HUB_CACHE= HF_HOME="$tmp/hfhome" "$shoal" pull org/good
last_post "assert r['body']['cache_dir'] == sys.argv[2], r" "$tmp/hfhome/hub"
ok "pull: hub cache from HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, HOME"

# --local-dir, made absolute; options before the operand; REV after the last '@'.
(cd "$tmp/cwd" && expect 0 "$shoal" pull --local-dir ./out/../models --repo-type dataset \
    org/good@refs/pr/1)
[ "$(cat "$tmp/out")" = "$tmp/cwd/models" ] || fail "pull prints the local dir"
last_post "
assert r['body'] == {'repo': 'org/good', 'repo_type': 'dataset', 'revision': 'refs/pr/1',
                     'local_dir': sys.argv[2]}, r" "$tmp/cwd/models"
expect 1 "$shoal" pull 'name@a@b'
last_post "assert r['body']['repo'] == 'name@a' and r['body']['revision'] == 'b', r"
ok "pull: --local-dir absolute, options first, REPO@REV split"

# --json: the final pull object alone on stdout.
expect 0 "$shoal" pull --json org/good --local-dir "$tmp/ld"
json "assert d['state'] == 'done' and d['commit'] == '$commit' and len(d['files']) == 3, d"
has 'done: org/good@main' "$tmp/err"
ok "pull --json"

# --- pull: failed, unknown ------------------------------------------------------------
expect 1 "$shoal" pull org/bad
has "shoal pull: model.safetensors: sha256 mismatch with the Hub's" "$tmp/err"
[ ! -s "$tmp/out" ] || fail "a failed pull prints no location"
no_escapes "$tmp/err"
expect 1 "$shoal" pull org/bad --json
json "assert d['state'] == 'failed' and d['error'], d"
expect 1 "$shoal" pull org/nope
has 'shoal pull: org/nope: no such repository on the Hub' "$tmp/err"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "one line for an unknown repository"
ok "pull: failed and unknown repositories, exit 1 with the node's line"

# --- pull on a terminal: a live display, redrawn in place -------------------------------
python3 - "$shoal" "$tmp/tty.out" <<'EOF' || fail "pull on a terminal exited non-zero"
import os, pty, select, signal, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "pull", "org/good", "--local-dir", "x"])
out, deadline = b"", time.monotonic() + 20
while time.monotonic() < deadline:
    if select.select([fd], [], [], 0.5)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
if time.monotonic() >= deadline:
    os.kill(pid, signal.SIGKILL)
_, st = os.waitpid(pid, 0)
open(sys.argv[2], "wb").write(out)
sys.exit(os.waitstatus_to_exitcode(st))
EOF
has $'\033[J' "$tmp/tty.out" "no redraw on a terminal"
has 'model.safetensors' "$tmp/tty.out"
has 'files' "$tmp/tty.out"
has 'done: org/good@main' "$tmp/tty.out"
grep -q 'stored config.json' "$tmp/tty.out" && fail "plain lines on a terminal"
ok "pull on a terminal"

# --- ls, rm, gc, import ---------------------------------------------------------------
expect 0 "$shoal" ls
has "org/good (model) commit $commit, refs main,v1.0, pinned" "$tmp/out"
has '       712 B  config.json' "$tmp/out"
has '    3.00 GiB  model.safetensors  (partial)' "$tmp/out"
has 'total: 3 files (2 complete), 812 chunks; 3.00 GiB logical, 3.00 GiB physical' "$tmp/out"
has '1 file (2.00 KiB) in no snapshot' "$tmp/out"
last_req "assert r['method'] == 'GET' and r['path'] == '/v1/files', r"
expect 0 "$shoal" ls --json
json "assert d['snapshots'][0]['files'][0]['sha256'] == 'a' * 64"

expect 0 "$shoal" rm org/good@main
has 'removed 1 snapshot and 3 files of org/good@main' "$tmp/out"
last_req "assert r['path'] == '/v1/rm' and r['body'] == \
    {'repo': 'org/good', 'repo_type': 'model', 'revision': 'main'}, r"
expect 0 "$shoal" rm --repo-type dataset org/good
has 'removed 2 snapshots and 3 files of org/good' "$tmp/out"
last_req "assert r['body'] == {'repo': 'org/good', 'repo_type': 'dataset'}, r"
expect 1 "$shoal" rm org/none
has 'shoal rm: no snapshot of org/none matches' "$tmp/err"

expect 0 "$shoal" gc
has 'removed 1 file' "$tmp/out"
last_req "assert r['method'] == 'POST' and r['path'] == '/v1/gc' and r['body'] == {}, r"

mkdir -p "$tmp/cwd/imp/sub"
printf 'hello' >"$tmp/cwd/imp/a.txt"
printf 'hello world' >"$tmp/cwd/imp/sub/b.bin"
(cd "$tmp/cwd" && expect 0 "$shoal" import imp/ --repo org/mine)
has "imported org/mine (model) commit $(printf 'f%.0s' {1..40}): 2 files, 16 B" "$tmp/out"
last_req "assert r['path'] == '/v1/imports' and r['body'] == \
    {'dir': sys.argv[2], 'repo': 'org/mine', 'repo_type': 'model'}, r" "$tmp/cwd/imp"
(cd "$tmp/cwd" && expect 0 "$shoal" import --json --repo-type dataset --repo mine ./imp)
json "assert d['repo'] == 'mine' and d['files'] == 2 and d['bytes'] == 16, d"
before=$(n_reqs)
expect 1 "$shoal" import "$tmp/cwd/nosuch" --repo org/mine
has "shoal import: $tmp/cwd/nosuch: No such file or directory" "$tmp/err"
expect 1 "$shoal" import "$tmp/cwd/imp/a.txt" --repo org/mine
has 'Not a directory' "$tmp/err"
[ "$(n_reqs)" -eq "$before" ] || fail "import of a missing folder asks the node nothing"
ok "ls, rm, gc, import"

# --- answers too large, a node that dies mid-pull --------------------------------------
big_sock="$tmp/big.sock"
python3 -B "$here/fake_node.py" "$big_sock" "$tmp/big.jsonl" --status-pad $((65 << 20)) \
    2>>"$tmp/fake.err" &
big=$!
pids+=("$big")
wait_for 20 test -S "$big_sock" || fail "second fake node did not start"
expect 1 "$shoal" --socket "$big_sock" status
has "shoal status: the node's answer is larger than 64 MiB" "$tmp/err"
stop_fake "$big"

# Which line depends on whether curl saw the kept-alive connection die or found the
# socket gone when it reconnected; both say where and what.
expect 1 "$shoal" pull org/vanish
grep -qE "^shoal pull: (the node on $sock stopped answering|no node answers on $sock)" \
    "$tmp/err" || { cat "$tmp/err" >&2; fail "node gone mid-pull"; }
[ "$(wc -l <"$tmp/err")" -le 2 ] || fail "a short story when the node dies"
wait_for 10 test ! -S "$sock" || fail "the fake node did not go away"
expect 1 "$shoal" status
has "no node answers on $sock" "$tmp/err"
ok "limits: answer size, node gone mid-pull"

echo "$pass passed, 0 failed"
