#!/usr/bin/env bash
# bench_hash.sh SHOAL BENCH_PROTO - `shoal hash` next to b3sum and sha256sum on the
# same 1 GiB random file in the same run, the per-stage figures, how sha256 is
# computed here, and peak memory of `shoal hash` on a 4 GiB file.
set -euo pipefail

shoal=$1
proto=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
file=$dir/random-1g

# run CMD...: prints "seconds max_rss_kib" (output of CMD discarded).
run() {
    python3 - "$@" <<'PY'
import os, subprocess, sys, time
t = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, ru = os.wait4(p.pid, 0)
if status != 0:
    sys.exit("benchmark command failed: %s" % " ".join(sys.argv[1:]))
print("%.3f %d" % (time.monotonic() - t, ru.ru_maxrss))
PY
}
mbs() { python3 -c "print('%.0f' % ($1 / $2 / 1e6))"; }

head -c $((1 << 30)) /dev/urandom >"$file"
size=$(stat -c %s "$file")
cat "$file" >/dev/null   # warm the page cache: every tool reads from memory

echo "== machine"
grep -m1 'model name' /proc/cpuinfo || true
echo "cores: $(nproc)"
echo "sha256 in OpenSSL: SHA extensions $(grep -qw sha_ni /proc/cpuinfo && echo present || echo absent) (OpenSSL uses them when present)"
echo "== stages, one core (bench_proto, 256 MiB in memory)"
"$proto"

echo "== 1 GiB file, warm page cache, best of 3"
declare -A best
for name in b3sum sha256sum shoal1 shoal2 shoal; do
    case $name in
    b3sum) cmd=(b3sum --num-threads 1 "$file") ;;
    sha256sum) cmd=(sha256sum "$file") ;;
    shoal1) cmd=("$shoal" hash --threads 1 "$file") ;;
    shoal2) cmd=("$shoal" hash --threads 2 "$file") ;;
    shoal) cmd=("$shoal" hash "$file") ;;
    esac
    best[$name]=1000
    for _ in 1 2 3; do
        read -r secs _ < <(run "${cmd[@]}")
        best[$name]=$(python3 -c "print(min(${best[$name]}, $secs))")
    done
done
b3=$(mbs "$size" "${best[b3sum]}")
printf '%-40s %8s MB/s\n' "b3sum --num-threads 1:" "$b3"
printf '%-40s %8s MB/s\n' "sha256sum (coreutils):" "$(mbs "$size" "${best[sha256sum]}")"
s1=$(mbs "$size" "${best[shoal1]}")
s2=$(mbs "$size" "${best[shoal2]}")
sn=$(mbs "$size" "${best[shoal]}")
ratio() { python3 -c "print('%.2f' % ($1 / $b3))"; }
printf '%-40s %8s MB/s  (%s x b3sum)\n' "shoal hash --threads 1 (sha256 too):" "$s1" "$(ratio "$s1")"
printf '%-40s %8s MB/s  (%s x b3sum)\n' "shoal hash --threads 2:" "$s2" "$(ratio "$s2")"
printf '%-40s %8s MB/s  (%s x b3sum)\n' "shoal hash (default threads):" "$sn" "$(ratio "$sn")"

echo "== memory: shoal hash on a 4 GiB file"
rm -f "$file"
truncate -s $((4 << 30)) "$dir/sparse-4g"
read -r secs rss < <(run "$shoal" hash "$dir/sparse-4g")
printf '%-40s %8d MiB  (%.1f s)\n' "peak RSS, 4 GiB sparse file:" $((rss / 1024)) "$secs"
