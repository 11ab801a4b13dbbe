#!/usr/bin/env bash
# long-chain.sh - a chain of 1,000 points against a full image of the same disk: open,
# info, restore, read through a mount, the next incremental, verify.
#
# Usage: benches/long-chain.sh [--runs N] [--points "10 100 1000"] [--rebuild]
#
#   --runs N       timed runs of each command (default 5); figures are medians
#   --points LIST  chain lengths to measure (default "10 100 1000"; the chain is built to
#                  the largest)
#   --rebuild      build the disk and the chain again even if cached ones exist
#
# Environment: STRATA_BENCH_DIR (default /var/tmp/strata-bench-long-chain) caches the
# disk and the chain (about 100 MiB plus 9 KiB per point); STRATA (default
# target/release/strata, built if missing). The mount row needs root and /dev/fuse
# (left out otherwise).
#
# The disk: 64 MiB, a quarter of its 4 KiB blocks random bytes and the rest text (a
# fixed seed). Point 0 is a full image of it; every later point changes one 4 KiB block
# at a seeded random place and is an incremental image of the previous point. For each
# chain length N, and for a full image of the disk as it is at point N:
#   open      strata info of the top image (resolves and checks the whole chain, probes
#             the partition table)
#   restore   strata restore of the top image to /dev/shm
#   read      cat of disk.img from a fresh `strata mount --raw` (the mount's caches cold,
#             the image files warm in the page cache), MB/s
#   next inc  strata create --incremental of the disk with one more changed block, on top
#             of point N (for the full image: on top of that full image)
#   verify    strata verify of the top image (every image of the chain)
# Each restore is compared with the disk as it was at that point once, before timing.
{
set -euo pipefail
export LC_ALL=C TZ=UTC
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROG=long-chain.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

RUNS=5
POINTS="10 100 1000"
REBUILD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?}; shift 2 ;;
        --points) POINTS=${2:?}; shift 2 ;;
        --rebuild) REBUILD=1; shift ;;
        -h|--help) sed -n '2,/^{/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
MAX=0
for n in $POINTS; do [ "$n" -gt "$MAX" ] && MAX=$n; done
[ "$MAX" -ge 1 ] || die "--points needs at least one length of 1 or more"

BENCH=${STRATA_BENCH_DIR:-/var/tmp/strata-bench-long-chain}
STRATA=${STRATA:-$REPO/target/release/strata}
if [ ! -x "$STRATA" ]; then
    (cd "$REPO" && cargo build --release --quiet)
fi
WORK=$(mktemp -d /dev/shm/strata-lc.XXXXXX)
MNT=$WORK/mnt
cleanup() {
    set +e
    mountpoint -q "$MNT" 2>/dev/null && umount -l "$MNT"
    rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" "$@"; }
img() { printf '%s/chain/p%04d.strata' "$BENCH" "$1"; }

# Writes one seeded 4 KiB block into the disk file $1 for point $2.
change() {
    python3 - "$1" "$2" <<'PY'
import random, sys
r = random.Random(int(sys.argv[2]))
with open(sys.argv[1], "r+b") as f:
    f.seek(r.randrange(64 * 256) * 4096)
    f.write(r.randbytes(4096))
PY
}

# ---- the disk and the chain (cached) ----
built=$(cat "$BENCH/chain/built" 2>/dev/null || echo 0)
if [ "$REBUILD" = 1 ] || [ "$built" -lt "$MAX" ]; then
    note "building a chain of $MAX points in $BENCH (once)"
    rm -rf "$BENCH/chain"; mkdir -p "$BENCH/chain"
    python3 - "$BENCH/chain/disk.img" <<'PY'
import random, sys
r = random.Random(20261202)
words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9)))
         for _ in range(2000)]
with open(sys.argv[1], "wb") as f:
    for i in range(64 * 256):
        if i % 4 == 0:
            f.write(r.randbytes(4096))
        else:
            f.write(b" ".join(r.choice(words) for _ in range(800))[:4096].ljust(4096, b"\n"))
PY
    "$STRATA" create -q "$BENCH/chain/disk.img" "$(img 0)"
    for i in $(seq 1 "$MAX"); do
        change "$BENCH/chain/disk.img" "$i"
        "$STRATA" create -q "$BENCH/chain/disk.img" "$(img "$i")" --incremental "$(img $((i - 1)))"
        for n in $POINTS; do
            [ "$n" = "$i" ] && cp "$BENCH/chain/disk.img" "$BENCH/chain/disk-$n.img"
        done
        [ $((i % 100)) = 0 ] && note "  $i points"
    done
    echo "$MAX" >"$BENCH/chain/built"
fi
for n in $POINTS; do
    [ -f "$BENCH/chain/disk-$n.img" ] || die "no disk copy for $n points: run with --rebuild"
    # The full image of the same disk, and the disk with one more change for `next inc`.
    [ -f "$BENCH/chain/full-$n.strata" ] ||
        "$STRATA" create -q "$BENCH/chain/disk-$n.img" "$BENCH/chain/full-$n.strata"
    cp "$BENCH/chain/disk-$n.img" "$WORK/next-$n.img"
    change "$WORK/next-$n.img" $((1000000 + n))
done

MOUNT=1
[ "$(id -u)" = 0 ] && [ -c /dev/fuse ] || { MOUNT=0; note "not root or no /dev/fuse: no mount row"; }
mkdir -p "$MNT"

declare -A T C
# time_cmd KEY CMD...: appends the wall time of CMD to T[KEY] and its CPU time (user +
# system, every thread) to C[KEY]. On a loaded machine the CPU time is the steadier one.
time_cmd() {
    local key=$1; shift
    local w c
    read -r w c < <(python3 - "$@" <<'PY'
import resource, subprocess, sys, time
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.monotonic()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
t1 = time.monotonic()
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
print(t1 - t0, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
PY
)
    T[$key]="${T[$key]:-} $w"; C[$key]="${C[$key]:-} $c"
}
mount_read() { # $1 = image; prints seconds of the cat alone
    "$STRATA" mount --raw "$1" "$MNT"
    local t0 t1
    t0=$(now); cat "$MNT/disk.img" >/dev/null; t1=$(now)
    "$STRATA" unmount "$MNT"
    python3 -c "print($t1 - $t0)"
}

# Correctness once: every top point and full image restores to the disk at that point.
for n in $POINTS; do
    want=$(sha256sum <"$BENCH/chain/disk-$n.img" | cut -d' ' -f1)
    for top in "$(img "$n")" "$BENCH/chain/full-$n.strata"; do
        "$STRATA" restore -q --force "$top" "$WORK/r.img"
        got=$(sha256sum <"$WORK/r.img" | cut -d' ' -f1)
        [ "$got" = "$want" ] || die "$top does not restore to the disk at point $n"
    done
done
rm -f "$WORK/r.img"

note "timing ($RUNS runs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg))"
for r in $(seq 1 "$RUNS"); do
    for n in $POINTS; do
        for kind in chain full; do
            if [ $kind = chain ]; then top=$(img "$n"); else top=$BENCH/chain/full-$n.strata; fi
            k="$kind,$n"
            time_cmd "$k,info" "$STRATA" info "$top"
            time_cmd "$k,restore" "$STRATA" restore -q --force "$top" "$WORK/r.img"
            rm -f "$WORK/r.img"
            if [ "$MOUNT" = 1 ]; then
                T[$k,read]="${T[$k,read]:-} $(mount_read "$top")"
            fi
            time_cmd "$k,next" "$STRATA" create -q --force "$WORK/next-$n.img" \
                "$WORK/next.strata" --incremental "$top"
            rm -f "$WORK/next.strata"
            time_cmd "$k,verify" "$STRATA" verify -q "$top"
        done
    done
done

med() { median ${T[$1]}; }
cpu() { median ${C[$1]}; }
mbps() { python3 -c "print(f'{67108864 / $1 / 1e6:.0f}')"; }
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $RUNS runs, medians, seconds:"
echo "wall time (CPU time, user + system)."
echo
echo "| points | image | open (info) | restore | read via mount --raw | next incremental | verify |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"
for n in $POINTS; do
    for kind in chain full; do
        k="$kind,$n"
        read_col="-"
        [ "$MOUNT" = 1 ] && read_col="$(med "$k,read") s ($(mbps "$(med "$k,read")") MB/s)"
        label=$([ $kind = chain ] && echo "chain of $n" || echo "full image")
        row="| $n | $label"
        for m in info restore; do row="$row | $(med "$k,$m") s ($(cpu "$k,$m"))"; done
        row="$row | $read_col"
        for m in next verify; do row="$row | $(med "$k,$m") s ($(cpu "$k,$m"))"; done
        echo "$row |"
    done
done
echo
echo "Ratios chain / full of the same disk, wall (CPU); 1.00 = as fast:"
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
for n in $POINTS; do
    line="$n points:"
    for m in info restore read next verify; do
        [ -n "${T[chain,$n,$m]:-}" ] || continue
        line="$line $m $(ratio "$(med "chain,$n,$m")" "$(med "full,$n,$m")")x"
        [ -n "${C[chain,$n,$m]:-}" ] &&
            line="$line ($(ratio "$(cpu "chain,$n,$m")" "$(cpu "full,$n,$m")")x)"
    done
    echo "$line"
done
exit 0
}
