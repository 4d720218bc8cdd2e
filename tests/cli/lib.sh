# lib.sh - what the command-line tests share; sourced, not run.
#
#   . "$(dirname "$0")/lib.sh"; cli_setup NAME
#
# cli_setup makes $tmp (removed on exit, with every PID in $pids killed first) and the
# counter behind ok/fail. A test prints "-- ok: ..." per passed case on stderr, and at
# the end (or at the first failure) "N passed, M failed" on stdout.

# cli_setup NAME: the temporary directory and its cleanup. A unix socket path must fit
# in 108 bytes, so a long TMPDIR is passed over for /tmp.
cli_setup() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    if [ ${#tmp} -gt 70 ]; then
        rm -rf "$tmp"
        tmp=$(mktemp -d "/tmp/$1.XXXXXX")
    fi
    pids=()
    pass=0
    trap cli_cleanup EXIT
}

cli_cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}

fail() { echo "FAILED: $*" >&2; echo "$pass passed, 1 failed"; exit 1; }
ok() { pass=$((pass + 1)); echo "-- ok: $*" >&2; }

# expect STATUS CMD...: runs CMD (stdin empty), stdout to $tmp/out, stderr to $tmp/err.
expect() {
    local want=$1 got=0
    shift
    "$@" >"$tmp/out" 2>"$tmp/err" </dev/null || got=$?
    [ "$got" -eq "$want" ] || {
        cat "$tmp/out" "$tmp/err" >&2
        fail "$* exited $got, not $want"
    }
}

# wait_for SECONDS CMD...: polls CMD until it succeeds or the deadline passes.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

running() { kill -0 "$1" 2>/dev/null; }
exited() { ! running "$1"; }
