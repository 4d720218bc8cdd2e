#!/usr/bin/env bash
# test_hash.sh - `shoal hash` as a user runs it: results, formats, errors, exit codes.
# Usage: test_hash.sh PATH_TO_SHOAL
set -euo pipefail

shoal=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0

fail() { echo "FAILED: $*" >&2; echo "$pass passed, 1 failed"; exit 1; }
ok() { pass=$((pass + 1)); echo "-- ok: $*" >&2; }
# expect STATUS CMD...: runs CMD, stdout to $tmp/out, stderr to $tmp/err.
expect() {
    local want=$1 got=0
    shift
    "$@" >"$tmp/out" 2>"$tmp/err" || got=$?
    [ "$got" -eq "$want" ] || { cat "$tmp/err" >&2; fail "$* exited $got, not $want"; }
}
json() { python3 -c "import json,sys; d=json.load(open('$tmp/out')); $1"; }

# Usage errors: exit 2 with the usage on stderr.
expect 2 "$shoal"
grep -q 'Usage: shoal' "$tmp/err" || fail "bare shoal prints no usage"
expect 2 "$shoal" hash
grep -q 'no FILE given' "$tmp/err" || fail "hash without files says why"
grep -q 'Usage: shoal hash' "$tmp/err" || fail "hash without files prints usage"
expect 2 "$shoal" hash --bogus x
grep -q "unknown option '--bogus'" "$tmp/err" || fail "unknown option named"
expect 2 "$shoal" hash --threads 0 x
expect 2 "$shoal" hash --threads 12abc x
expect 2 "$shoal" nosuchcommand
expect 0 "$shoal" hash --help
grep -q -- '--chunks' "$tmp/out" || fail "hash --help lists --chunks"
expect 0 "$shoal" --help
grep -q 'hash' "$tmp/out" || fail "--help lists hash"
ok "usage errors"

# Known ids: "hello world" (tests/vectors/small_files.json).
printf 'hello world' >"$tmp/hello"
expect 0 "$shoal" hash "$tmp/hello"
grep -q 'sha256 b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9' "$tmp/out" ||
    fail "hello sha256"
grep -Eq '^  piece 0 +offset 0 +len 11 +chunks 1 +f15edd43b7e85cfd25e2758ffe13b99fdd09dfa817e8d9f6548722a7a126db7f$' \
    "$tmp/out" || fail "hello piece hash"
cp "$tmp/out" "$tmp/hello.txt"
expect 0 "$shoal" hash - <"$tmp/hello"
sed "1s|.*|$tmp/hello|" "$tmp/out" | cmp -s - "$tmp/hello.txt" || fail "stdin differs from file"
head -1 "$tmp/out" | grep -qx -- '-' || fail "stdin is named -"
ok "known ids, file and stdin"

# The empty file is well defined: no pieces, no chunks, the empty sha256.
: >"$tmp/empty"
expect 0 "$shoal" hash --json "$tmp/empty"
json "f=d['files'][0]; assert f['size']==0 and f['pieces']==[] and f['piece_count']==0 \
      and f['chunk_count']==0 and f['sha256']=='e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', f"
ok "empty file"

# Several pieces: 40 MiB + 5 bytes of deterministic data.
python3 -c "
import random, sys
r = random.Random(7)
sys.stdout.buffer.write(r.randbytes(40 * 1024 * 1024 + 5))" >"$tmp/big"
want_sha=$(python3 -c "import hashlib; print(hashlib.sha256(open('$tmp/big','rb').read()).hexdigest())")
expect 0 "$shoal" hash --json --chunks "$tmp/big"
json "
f = d['files'][0]
assert d['version'] == 1 and d['piece_len'] == 16777216
assert f['sha256'] == '$want_sha' and f['size'] == 41943045 and f['piece_count'] == 3
assert [p['len'] for p in f['pieces']] == [16777216, 16777216, 8388613]
assert [p['offset'] for p in f['pieces']] == [0, 16777216, 33554432]
off = 0
for p in f['pieces']:
    assert p['offset'] == off and p['chunk_count'] == len(p['chunks'])
    for c in p['chunks']:
        assert c['offset'] == off and 1 <= c['len'] <= 131072 and len(c['hash']) == 64
        off += c['len']
assert off == f['size']
assert f['chunk_count'] == sum(p['chunk_count'] for p in f['pieces'])
"
cp "$tmp/out" "$tmp/big.json"
expect 0 "$shoal" hash --json --chunks --threads 1 "$tmp/big"
cmp -s "$tmp/out" "$tmp/big.json" || fail "one thread and many differ"
expect 0 "$shoal" hash "$tmp/big" --threads 3 --json --chunks
cmp -s "$tmp/out" "$tmp/big.json" || fail "options after the file"
expect 0 "$shoal" hash --json --chunks - <"$tmp/big"
json "assert d['files'][0]['pieces'] == json.load(open('$tmp/big.json'))['files'][0]['pieces']"
cat "$tmp/big" | "$shoal" hash --chunks - >"$tmp/out" 2>"$tmp/err"
n=$(python3 -c "import json; print(json.load(open('$tmp/big.json'))['files'][0]['chunk_count'])")
[ "$(grep -c '^    chunk of piece ' "$tmp/out")" -eq "$n" ] || fail "text --chunks lists every chunk"
ok "multi-piece file, threads, stdin, pipe"

# Errors: each names the file, exit 1, and the other files are still hashed.
mkdir "$tmp/dir"
expect 1 "$shoal" hash "$tmp/missing" "$tmp/hello" "$tmp/dir"
grep -q "shoal hash: $tmp/missing: No such file or directory" "$tmp/err" || fail "missing file"
grep -q "shoal hash: $tmp/dir: Is a directory" "$tmp/err" || fail "directory"
grep -q 'f15edd43b7e85cfd25e2758ffe13b99fdd09dfa817e8d9f6548722a7a126db7f' "$tmp/out" ||
    fail "good file hashed beside bad ones"
expect 1 "$shoal" hash --json "$tmp/missing" "$tmp/hello"
json "
f = d['files']
assert f[0]['error'] == 'No such file or directory' and 'sha256' not in f[0]
assert f[1]['size'] == 11"
# A read error part-way (reading /proc/self/mem at offset 0 fails with EIO).
if [ -r /proc/self/mem ]; then
    expect 1 "$shoal" hash --json /proc/self/mem
    grep -q 'shoal hash: /proc/self/mem: Input/output error' "$tmp/err" || fail "read error"
    json "assert d['files'][0]['error'] == 'Input/output error'"
fi
ok "errors"

# Past 4 GiB: a sparse file of 4 GiB + 1 byte (offsets beyond 32 bits).
truncate -s $((4 * 1024 * 1024 * 1024 + 1)) "$tmp/huge"
expect 0 "$shoal" hash --json "$tmp/huge"
json "
import hashlib
h = hashlib.sha256()
with open('$tmp/huge', 'rb') as f:
    while b := f.read(1 << 24):
        h.update(b)
f = d['files'][0]
assert f['size'] == 4294967297 and f['piece_count'] == 257 and f['sha256'] == h.hexdigest()
assert f['pieces'][256]['offset'] == 4294967296 and f['pieces'][256]['len'] == 1
assert len(set(p['hash'] for p in f['pieces'][:256])) == 1
"
ok "file over 4 GiB"

echo "$pass passed, 0 failed"
