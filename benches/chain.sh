#!/usr/bin/env bash
# chain.sh - incremental images against the ideal and against borg; chain open and read
# speed for chains of 1, 10 and 100 points.
#
# Usage: benches/chain.sh [--points N] [--out-dir DIR]
#
#   --points N     length of the long chain (default 100)
#   --out-dir DIR  work directory (default: a fresh directory in /var/tmp)
#
# Uses the 2.5 GiB test disk of create-restore-verify.sh (built there, cached under
# STRATA_BENCH_DIR, default /var/tmp/strata-bench; building it needs root). Needs root
# to mount the disk's partitions for the day of changes.
#
# 1. A full image of the disk, then "a day of work" through the real drivers: 3% of the
#    files on each partition rewritten, a log appended (8 MiB), 24 MiB in the middle of
#    the largest file rewritten, 40 MiB of new files.
# 2. The incremental image of the changed disk (time, size), against the ideal: exactly
#    the 4 KiB blocks that differ, concatenated and compressed with zstd -3 (size), and
#    against `borg create` of the disk file into a repository holding the first day (time
#    and repository growth), when borg is installed.
# 3. Chains of 1, 10 and N points (each point a few MiB of raw writes): time to open the
#    top point (`strata info`, which resolves the chain) and to read it all (`strata
#    restore` to tmpfs), median of 3.
set -euo pipefail
export LC_ALL=C TZ=UTC
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
POINTS=100
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --points) POINTS=${2:?}; shift 2 ;;
        --out-dir) OUT=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "chain.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
BENCH=${STRATA_BENCH_DIR:-/var/tmp/strata-bench}
"$HERE/create-restore-verify.sh" --disk-only >&2
DISK0=$BENCH/disk.img
OWN_OUT=
[ -n "$OUT" ] || { OUT=$(mktemp -d /var/tmp/strata-chain.XXXXXX); OWN_OUT=1; }
mkdir -p "$OUT"
(cd "$REPO" && cargo build --release --quiet)
S=$REPO/target/release/strata
SHM=$(mktemp -d /dev/shm/strata-chain.XXXXXX)
LOOP=
# Only what this run made: its mount, its loop device, its scratch folders (several GiB).
cleanup() {
    umount "$OUT/mnt" 2>/dev/null || true
    [ -z "$LOOP" ] || losetup -d "$LOOP" 2>/dev/null || true
    rm -rf "$SHM"
    [ -z "$OWN_OUT" ] || rm -rf "$OUT"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }
size() { stat -c %s "$1"; }
mib() { python3 -c "print(f'{$1 / 1048576:.1f} MiB')"; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" "$@"; }

echo "== preparing (disk copy, full image)" >&2
cp --sparse=always "$DISK0" "$OUT/day0.img"
cp --sparse=always "$DISK0" "$OUT/disk.img"
rm -f "$OUT"/*.strata
t0=$(now); "$S" create -q "$OUT/disk.img" "$OUT/full.strata"; t1=$(now)
FULL_T=$(elapsed "$t0" "$t1")

echo "== a day of changes through the real drivers" >&2
mkdir -p "$OUT/mnt"
mapfile -t PARTS < <(sfdisk --json "$OUT/disk.img" | python3 -c '
import json,sys
t=json.load(sys.stdin)["partitiontable"]; ss=t["sectorsize"]
for p in t["partitions"]: print(p["start"]*ss, p["size"]*ss)')
day_of_work() { # $1 = mount point
    python3 - "$1" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(20261130)
files = []
for d, _, names in os.walk(root):
    for n in sorted(names):
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append(p)
files.sort()
# 3% of the files rewritten with new contents of about the same size.
for p in rnd.sample(files, max(1, len(files) * 3 // 100)):
    n = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.write(rnd.randbytes(min(n, 1 << 20)))
# A log appended.
with open(os.path.join(root, "app.log"), "ab") as f:
    f.write(b"".join(b"%08d INFO request served in %d ms\n" % (i, rnd.randrange(900)) for i in range(4 << 18)))
# The middle of the largest file rewritten.
big = max(files, key=os.path.getsize)
with open(big, "r+b") as f:
    f.seek(os.path.getsize(big) // 2)
    f.write(rnd.randbytes(12 << 20))
# New files.
os.makedirs(os.path.join(root, "new-today"), exist_ok=True)
for i in range(20):
    with open(os.path.join(root, "new-today", f"doc{i}.bin"), "wb") as f:
        f.write(rnd.randbytes(1 << 20))
PY
}
for i in 0 1; do
    read -r start len <<<"${PARTS[$i]}"
    dev=$(losetup --find --show --offset "$start" --sizelimit "$len" "$OUT/disk.img"); LOOP=$dev
    if [ "$i" = 0 ]; then
        ntfs-3g -o no_detach "$dev" "$OUT/mnt" & pid=$!
        for _ in $(seq 100); do mountpoint -q "$OUT/mnt" && break; sleep 0.1; done
        day_of_work "$OUT/mnt"; umount "$OUT/mnt"; wait "$pid"
    else
        mount -t ext4 "$dev" "$OUT/mnt"; day_of_work "$OUT/mnt"; umount "$OUT/mnt"
    fi
    losetup -d "$dev"; LOOP=
done
sync

echo "== the ideal: changed 4 KiB blocks, zstd -3" >&2
python3 - "$OUT/day0.img" "$OUT/disk.img" "$OUT/changed.bin" <<'PY'
import sys
a, b, out = (open(sys.argv[1], "rb"), open(sys.argv[2], "rb"), open(sys.argv[3], "wb"))
zero = bytes(4096)
while True:
    x, y = a.read(1 << 20), b.read(1 << 20)
    if not y:
        break
    for i in range(0, len(y), 4096):
        if x[i:i + 4096] != y[i:i + 4096] and y[i:i + 4096] != zero:
            out.write(y[i:i + 4096])
PY
CHANGED=$(size "$OUT/changed.bin")
zstd -q -3 -f "$OUT/changed.bin" -o "$OUT/changed.bin.zst"
IDEAL=$(size "$OUT/changed.bin.zst")

echo "== strata incremental" >&2
sync; t0=$(now); "$S" create -q "$OUT/disk.img" "$OUT/day1.strata" --incremental "$OUT/full.strata"; t1=$(now)
INC_T=$(elapsed "$t0" "$t1"); INC=$(size "$OUT/day1.strata")
t0=$(now); cat "$OUT/disk.img" >/dev/null; t1=$(now); READ_T=$(elapsed "$t0" "$t1")
# Correctness is the tests' job (images keep used blocks only, so free space differs);
# here the image is only checked to be sound.
"$S" verify -q "$OUT/day1.strata" >/dev/null

BORG="not installed"
if command -v borg >/dev/null; then
    export BORG_PASSPHRASE="" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
    rm -rf "$OUT/borg"; borg init -e none "$OUT/borg" >/dev/null 2>&1
    borg create --compression zstd,3 "$OUT/borg::day0" "$OUT/day0.img" >/dev/null 2>&1
    b0=$(du -sb "$OUT/borg" | cut -f1)
    cp --sparse=always "$OUT/disk.img" "$OUT/day0.img" # same file name, new contents
    t0=$(now); borg create --compression zstd,3 "$OUT/borg::day1" "$OUT/day0.img" >/dev/null 2>&1; t1=$(now)
    b1=$(du -sb "$OUT/borg" | cut -f1)
    BORG="$(elapsed "$t0" "$t1") s, repository grew $(mib $((b1 - b0)))"
fi

echo "== chains of 1, 10 and $POINTS points" >&2
mkdir -p "$OUT/chain"; rm -f "$OUT/chain"/*.strata
cp "$OUT/full.strata" "$OUT/chain/p000.strata"
LEN=$(size "$OUT/disk.img")
declare -A OPEN READ
measure() { # $1 = points
    local top; top=$(printf '%s/chain/p%03d.strata' "$OUT" $(($1 - 1)))
    local o=() r=()
    for _ in 1 2 3; do
        t0=$(now); "$S" info "$top" >/dev/null; t1=$(now); o+=("$(elapsed "$t0" "$t1")")
        t0=$(now); "$S" restore -q --force "$top" "$SHM/r.img"; t1=$(now); r+=("$(elapsed "$t0" "$t1")")
        rm -f "$SHM/r.img"
    done
    OPEN[$1]=$(median "${o[@]}"); READ[$1]=$(median "${r[@]}")
}
measure 1
for i in $(seq 1 $((POINTS - 1))); do
    python3 -c "
import random,sys
r=random.Random($i); f=open(sys.argv[1],'r+b')
for _ in range(8):
    f.seek(r.randrange($LEN - (1<<20))); f.write(r.randbytes(256<<10))" "$OUT/disk.img"
    "$S" create -q "$OUT/disk.img" "$(printf '%s/chain/p%03d.strata' "$OUT" "$i")" \
        --incremental "$(printf '%s/chain/p%03d.strata' "$OUT" $((i - 1)))"
    [ $((i + 1)) = 10 ] && measure 10
done
measure "$POINTS"

cat <<EOF2
| | strata | reference |
| --- | ---: | ---: |
| full image of the disk | $FULL_T s, $(mib "$(size "$OUT/full.strata")") | |
| day-1 incremental, size | $(mib "$INC") | ideal $(mib "$IDEAL") ($(mib "$CHANGED") of changed blocks before zstd -3); ratio $(python3 -c "print(f'{$INC / $IDEAL:.2f}')")x |
| day-1 incremental, time | $INC_T s | reading the disk file once (cat): $READ_T s |
| borg create of day 1 into day 0's repository | | $BORG |

| chain length | open (strata info) | read the whole point (restore to tmpfs) |
| ---: | ---: | ---: |
| 1 | ${OPEN[1]} s | ${READ[1]} s |
| 10 | ${OPEN[10]} s | ${READ[10]} s |
| $POINTS | ${OPEN[$POINTS]} s | ${READ[$POINTS]} s |
EOF2
