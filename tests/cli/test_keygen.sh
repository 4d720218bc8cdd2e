#!/usr/bin/env bash
# test_keygen.sh - the cluster key as an operator meets it: `shoal keygen` (mode 0600, never
# overwrites, refuses bad arguments), shoald --cluster-key (a good key is loaded and its
# fingerprint logged; bad ones are refused with one line), and the default key that
# shoald makes in its data directory and reuses.
# Usage: test_keygen.sh PATH_TO_SHOAL PATH_TO_SHOALD
set -euo pipefail

shoal=$1
shoald=$2
. "$(dirname "$0")/lib.sh"
cli_setup test_keygen

# one_line: stderr of the last `expect` is one line holding each argument.
one_line() {
    local s
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err" >&2; fail "stderr is not one line"; }
    for s in "$@"; do
        grep -qF -- "$s" "$tmp/err" || { cat "$tmp/err" >&2; fail "stderr lacks '$s'"; }
    done
}
mode() { stat -c %a "$1"; }
fp_re='[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}'
flags=(--listen 127.0.0.1:0 --http 127.0.0.1:0 --hub http://127.0.0.1:9)

# --- shoal keygen ---------------------------------------------------------------------

expect 0 "$shoal" keygen --help
grep -q '^Usage: shoal keygen FILE' "$tmp/out" || fail "keygen --help prints the usage"
expect 0 "$shoal" help keygen
grep -q '^Usage: shoal keygen FILE' "$tmp/out" || fail "shoal help keygen prints the usage"
expect 0 "$shoal" --help
grep -q '^  keygen ' "$tmp/out" || fail "shoal --help lists keygen"
ok "help"

mkdir "$tmp/keys"
key=$tmp/keys/a.key
expect 0 "$shoal" keygen "$key"
grep -Eqx "cluster key $fp_re written to $key" "$tmp/out" || { cat "$tmp/out" >&2; fail "output"; }
[ ! -s "$tmp/err" ] || fail "keygen wrote to stderr on success"
fp_a=$(grep -Eo "$fp_re" "$tmp/out")
[ "$(mode "$key")" = 600 ] || fail "key mode is $(mode "$key"), not 600"
[ "$(stat -c %s "$key")" = 44 ] || fail "key file is not 44 bytes"
[ "$(head -c 8 "$key")" = SHOALCK1 ] || fail "key file magic"
[ "$(ls "$tmp/keys")" = a.key ] || fail "keygen left other files: $(ls "$tmp/keys")"
ok "keygen writes a 0600 key: $fp_a"

# The mode does not depend on the umask; keys are random.
(umask 000 && "$shoal" keygen "$tmp/keys/b.key" >"$tmp/out")
[ "$(mode "$tmp/keys/b.key")" = 600 ] || fail "umask 000 gave mode $(mode "$tmp/keys/b.key")"
fp_b=$(grep -Eo "$fp_re" "$tmp/out")
[ "$fp_b" != "$fp_a" ] || fail "two keys with one fingerprint"
cmp -s "$key" "$tmp/keys/b.key" && fail "two keys are equal"
ok "mode 600 under umask 000; keys differ"

# Never overwrites: an existing file, a dangling symlink, a directory.
cp -p "$key" "$tmp/a.copy"
expect 1 "$shoal" keygen "$key"
one_line "shoal keygen: $key: already exists"
cmp -s "$key" "$tmp/a.copy" || fail "keygen changed an existing key"
ln -s "$tmp/keys/nowhere" "$tmp/keys/link.key"
expect 1 "$shoal" keygen "$tmp/keys/link.key"
one_line "already exists"
if [ ! -L "$tmp/keys/link.key" ] || [ -e "$tmp/keys/nowhere" ]; then
    fail "symlink followed or replaced"
fi
rm "$tmp/keys/link.key"
expect 1 "$shoal" keygen "$tmp/keys"
one_line "already exists"
expect 1 "$shoal" keygen "$tmp/missing/dir/c.key"
one_line "$tmp/missing/dir/c.key" "No such file or directory"
[ "$(ls "$tmp/keys")" = "a.key
b.key" ] || fail "refusals left files: $(ls "$tmp/keys")"
ok "never overwrites"

# Usage errors: exit 2, nothing on stdout.
for args in "-" "" "$tmp/keys/x.key $tmp/keys/y.key" "--bogus $tmp/keys/x.key" "-q"; do
    # shellcheck disable=SC2086  # word splitting is the point
    expect 2 "$shoal" keygen $args
    [ ! -s "$tmp/out" ] || fail "keygen $args printed on stdout"
    grep -q '^Usage: shoal keygen' "$tmp/err" || fail "keygen $args: no usage"
done
expect 2 "$shoal" keygen -
grep -q 'standard output' "$tmp/err" || fail "keygen - says why"
expect 2 "$shoal" keygen ""
if [ -e "$tmp/keys/x.key" ] || [ -e "$tmp/keys/y.key" ]; then
    fail "a usage error wrote a key"
fi
ok "usage errors"

# --- shoald --cluster-key ---------------------------------------------------------------

# start DATA LOG ARGS...: shoald in the background; $pid gets its PID.
start() {
    local data=$1 log=$2
    shift 2
    "$shoald" --data-dir "$data" "${flags[@]}" "$@" 2>"$log" &
    pid=$!
    pids+=("$pid")
}
ready() { "$shoal" --data-dir "$1" status >/dev/null 2>&1; }
# wait_ready DATA LOG PID: `shoal status` answers within 20 s, the daemon still runs.
wait_ready() {
    wait_for 20 ready "$1" || { cat "$2" >&2; fail "node not ready"; }
    running "$3" || { cat "$2" >&2; fail "shoald exited after ready"; }
}
# stop PID LOG: SIGTERM, exit 0 within 20 s, no sanitizer report.
stop() {
    local st=0
    kill -TERM "$1"
    wait_for 20 exited "$1" || fail "shoald did not stop within 20 s"
    wait "$1" || st=$?
    [ "$st" -eq 0 ] || { cat "$2" >&2; fail "shoald exited $st after SIGTERM"; }
    if grep -q -E 'LeakSanitizer|AddressSanitizer|runtime error' "$2"; then
        cat "$2" >&2
        fail "sanitizer report"
    fi
}
logged_fp() { sed -n -E "s/.* INFO (created )?cluster key ($fp_re) \\((.*)\\)\$/\\2/p" "$1"; }

# A key from keygen: loaded, its fingerprint logged, nothing made in the data directory.
d1=$tmp/d1
start "$d1" "$tmp/log1" --cluster-key "$key"
wait_ready "$d1" "$tmp/log1" "$pid"
grep -qF "INFO cluster key $fp_a ($key)" "$tmp/log1" || { cat "$tmp/log1" >&2; fail "fp line"; }
[ ! -e "$d1/cluster.key" ] || fail "shoald made a key beside an explicit one"
stop "$pid" "$tmp/log1"
ok "shoald --cluster-key logs the fingerprint keygen printed"

# The same through the environment variable.
SHOAL_CLUSTER_KEY=$key "$shoald" --data-dir "$d1" "${flags[@]}" 2>"$tmp/log1e" &
pid=$!
pids+=("$pid")
wait_ready "$d1" "$tmp/log1e" "$pid"
[ "$(logged_fp "$tmp/log1e")" = "$fp_a" ] || fail "SHOAL_CLUSTER_KEY not used"
stop "$pid" "$tmp/log1e"
ok "SHOAL_CLUSTER_KEY"

# Bad keys: exit 1, one line naming the file and the fault, the file left alone.
# refused FILE WORDS...: shoald on $d1 with --cluster-key FILE.
refused() {
    local file=$1
    shift
    expect 1 "$shoald" --data-dir "$d1" "${flags[@]}" --cluster-key "$file"
    grep -c ' ERROR ' "$tmp/err" | grep -qx 1 || { cat "$tmp/err" >&2; fail "not one error line"; }
    for s in "$file" "$@"; do
        grep ' ERROR ' "$tmp/err" | grep -qF -- "$s" || { cat "$tmp/err" >&2; fail "lacks '$s'"; }
    done
    ! grep -q ' INFO ready' "$tmp/err" || fail "shoald got ready with a bad key"
}
head -c 30 "$key" >"$tmp/trunc.key"
chmod 600 "$tmp/trunc.key"
refused "$tmp/trunc.key" "truncated"
[ "$(stat -c %s "$tmp/trunc.key")" = 30 ] || fail "truncated key replaced"
refused "$d1/node.key" "node key file"
cp "$key" "$tmp/open.key"
chmod 644 "$tmp/open.key"
refused "$tmp/open.key" "mode 0644" "chmod 600"
[ "$(mode "$tmp/open.key")" = 644 ] || fail "mode changed"
refused "$tmp/nope.key" "no such cluster key file" "shoal keygen"
[ ! -e "$tmp/nope.key" ] || fail "shoald created a key at an explicit path"
printf 'SHOALCK1 this is not a key at all, really!' >"$tmp/damaged.key"
printf 'x' >>"$tmp/damaged.key" # 44 bytes, checksum wrong
chmod 600 "$tmp/damaged.key"
refused "$tmp/damaged.key" "damaged"
refused "$tmp/keys" "not a regular file"
ok "bad keys refused with one line"

# --- the default key --------------------------------------------------------------------

d2=$tmp/d2
start "$d2" "$tmp/log2"
wait_ready "$d2" "$tmp/log2" "$pid"
[ -f "$d2/cluster.key" ] || fail "no default cluster.key"
[ "$(mode "$d2/cluster.key")" = 600 ] || fail "default key mode $(mode "$d2/cluster.key")"
[ "$(stat -c %s "$d2/cluster.key")" = 44 ] || fail "default key size"
grep -q "INFO created cluster key .* ($d2/cluster.key)" "$tmp/log2" || fail "creation logged"
fp_d=$(logged_fp "$tmp/log2")
[[ "$fp_d" =~ ^$fp_re$ ]] || fail "default key fingerprint '$fp_d'"
stop "$pid" "$tmp/log2"
cp -p "$d2/cluster.key" "$tmp/d2.copy"

start "$d2" "$tmp/log3"
wait_ready "$d2" "$tmp/log3" "$pid"
[ "$(logged_fp "$tmp/log3")" = "$fp_d" ] || fail "fingerprint changed across restarts"
grep -q 'created cluster key' "$tmp/log3" && fail "default key made again"
cmp -s "$d2/cluster.key" "$tmp/d2.copy" || fail "default key rewritten"
stop "$pid" "$tmp/log3"
ok "default key made once ($fp_d), reused"

# The default given explicitly (as a saved --print-config does) is still the default.
d3=$tmp/d3
start "$d3" "$tmp/log4" --cluster-key "$d3/cluster.key"
wait_ready "$d3" "$tmp/log4" "$pid"
grep -q "INFO created cluster key" "$tmp/log4" || fail "explicit default path not created"
stop "$pid" "$tmp/log4"
# ...and a damaged default key is refused, not replaced.
truncate -s 10 "$d2/cluster.key"
expect 1 "$shoald" --data-dir "$d2" "${flags[@]}"
grep -q "$d2/cluster.key: cluster key file is truncated" "$tmp/err" || fail "damaged default"
[ "$(stat -c %s "$d2/cluster.key")" = 10 ] || fail "damaged default key replaced"
ok "default path rules"

echo "$pass passed, 0 failed"
