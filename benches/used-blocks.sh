#!/usr/bin/env bash
# used-blocks.sh - strata's used-block images against partclone | zstd and zstd.
#
# Usage: benches/used-blocks.sh [--runs N] [--out-dir DIR]
#
#   --runs N       timed rounds (default 3); every figure is the median
#   --out-dir DIR  where outputs are written (default: a fresh directory in
#                  /dev/shm, so the storage device is not what is measured)
#   -h, --help     show this help
#
# The test disk is the one benches/create-restore-verify.sh builds (GPT,
# 2.5 GiB: NTFS and ext4 partitions of 1216 MiB, each about 40% full of mixed
# files, with old data in part of the free space), cached in
# STRATA_USED_BENCH_DIR (default /var/tmp/strata-bench-used). Needs root
# (loop devices; building the disk mounts NTFS), partclone, zstd.
#
# Measured side by side, each round running every command once, the order
# reversed every other round:
#   per partition  strata create PART  vs  partclone.<fs> -c -s PART -o - | zstd -3
#   whole disk     strata create DISK  vs  zstd -3 < DISK
# strata runs twice: with its default 1 MiB chunks, and with --chunk-size 4 MiB
# (chunks are compressed independently; bigger ones lose less context).
# PART is a read-only loop device over the partition. strata uses its default
# thread count (all cores); zstd -3 is single-threaded, partclone | zstd is two
# processes. Inputs are read warm from the page cache.

set -euo pipefail
export LC_ALL=C TZ=UTC

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROG=used-blocks.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

RUNS=3
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?}; shift 2 ;;
        --out-dir) OUT=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1'" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
[ "$(id -u)" = 0 ] || die "must run as root (loop devices)"
for t in partclone.ntfs partclone.ext4 zstd losetup sfdisk python3; do
    command -v "$t" >/dev/null || die "'$t' not found (apt-get install partclone zstd fdisk)"
done

WORK=${STRATA_USED_BENCH_DIR:-/var/tmp/strata-bench-used}
mkdir -p "$WORK"
STRATA_BENCH_DIR=$WORK "$HERE/create-restore-verify.sh" --disk-only
DISK=$WORK/disk.img

(cd "$REPO" && cargo build --release --quiet)
STRATA=$REPO/target/release/strata

LOOPS=()
OUT_CREATED=0
cleanup() {
    local rc=$?
    set +e
    for l in "${LOOPS[@]}"; do losetup -d "$l"; done
    [ "$OUT_CREATED" = 0 ] || rm -rf "$OUT"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -z "$OUT" ]; then OUT=$(mktemp -d /dev/shm/strata-used-bench.XXXXXX); OUT_CREATED=1; fi
mkdir -p "$OUT"

# Partitions: number, filesystem, start, size (bytes).
mapfile -t PARTS < <(sfdisk -J "$DISK" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
for i, p in enumerate(t["partitions"], 1):
    fs = "ntfs" if p["type"].upper().startswith("EBD0A0A2") else "ext4"
    print(i, fs, p["start"] * 512, p["size"] * 512)')
declare -A DEV FS
for line in "${PARTS[@]}"; do
    read -r n fs start size <<<"$line"
    l=$(losetup -r -f --show -o "$start" --sizelimit "$size" "$DISK")
    LOOPS+=("$l")
    DEV[$n]=$l
    FS[$n]=$fs
done

note "warming the page cache"
cat "$DISK" >/dev/null
for n in "${!DEV[@]}"; do cat "${DEV[$n]}" >/dev/null; done

declare -A TIMES SIZE
now() { date +%s.%N; }
# measure NAME OUTFILE CMD...: runs CMD (a shell string), records wall time and output size.
measure() {
    local name=$1 file=$2 cmd=$3 t0 t1
    rm -f "$file"
    t0=$(now)
    bash -c "$cmd"
    t1=$(now)
    TIMES[$name]+="$(python3 -c "print($t1 - $t0)") "
    SIZE[$name]=$(stat -c %s "$file")
    rm -f "$file"
}

jobs_list() {
    for n in $(printf '%s\n' "${!DEV[@]}" | sort -n); do
        echo "strata-p$n|$OUT/p$n.strata|$STRATA create ${DEV[$n]} $OUT/p$n.strata --quiet --force"
        echo "strata4m-p$n|$OUT/p$n.strata|$STRATA create ${DEV[$n]} $OUT/p$n.strata --quiet --force --chunk-size 4194304"
        echo "partclone-p$n|$OUT/p$n.pc.zst|partclone.${FS[$n]} -c -s ${DEV[$n]} -o - -L /dev/null 2>/dev/null | zstd -3 -q >$OUT/p$n.pc.zst"
    done
    echo "strata-disk|$OUT/disk.strata|$STRATA create $DISK $OUT/disk.strata --quiet --force"
    echo "strata4m-disk|$OUT/disk.strata|$STRATA create $DISK $OUT/disk.strata --quiet --force --chunk-size 4194304"
    echo "zstd-disk|$OUT/disk.zst|zstd -3 -q <$DISK >$OUT/disk.zst"
}

for ((r = 1; r <= RUNS; r++)); do
    note "round $r of $RUNS"
    if ((r % 2)); then order=cat; else order=tac; fi
    while IFS='|' read -r name file cmd; do
        measure "$name" "$file" "$cmd"
    done < <(jobs_list | $order)
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mib() { python3 -c "print('%.1f MiB' % ($1 / 1048576))"; }
sec() { python3 -c "print('%.2f s' % $1)"; }
ratio() { python3 -c "print('%.3fx' % ($1 / $2))"; }
add() { python3 -c "print($1 + $2)"; }

{
    echo "strata $(git -C "$REPO" rev-parse --short HEAD), partclone $(partclone.ntfs -v 2>&1 | grep -o 'v[0-9.]*' | head -1), zstd $(zstd -V | grep -o 'v[0-9.]*' | head -1); medians of $RUNS interleaved runs"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM; outputs on tmpfs; warm page cache"
    echo
    echo "Disk (benches/create-restore-verify.sh):"
    sed -n 's/^\(p[0-9]\|size\|zero\)/- \1/p' "$WORK/disk.info"
    echo
    echo "| source | strata | time | size | vs | time | size | time ratio | size ratio |"
    echo "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"
    for v in strata strata4m; do
        label="default"; [ "$v" = strata ] || label="4 MiB chunks"
        ts=0 tp=0 ss_sum=0 ps_sum=0
        for n in $(printf '%s\n' "${!DEV[@]}" | sort -n); do
            st=$(median "${TIMES[$v-p$n]}"); pc=$(median "${TIMES[partclone-p$n]}")
            ss=${SIZE[$v-p$n]}; ps=${SIZE[partclone-p$n]}
            echo "| partition $n (${FS[$n]}) | $label | $(sec "$st") | $(mib "$ss") | partclone.${FS[$n]} \| zstd -3 | $(sec "$pc") | $(mib "$ps") | $(ratio "$st" "$pc") | $(ratio "$ss" "$ps") |"
            ts=$(add "$ts" "$st"); tp=$(add "$tp" "$pc"); ss_sum=$((ss_sum + ss)); ps_sum=$((ps_sum + ps))
        done
        echo "| both partitions | $label | $(sec "$ts") | $(mib "$ss_sum") | partclone \| zstd -3 | $(sec "$tp") | $(mib "$ps_sum") | $(ratio "$ts" "$tp") | $(ratio "$ss_sum" "$ps_sum") |"
        sd=$(median "${TIMES[$v-disk]}"); zd=$(median "${TIMES[zstd-disk]}")
        echo "| whole disk | $label | $(sec "$sd") | $(mib "${SIZE[$v-disk]}") | partclone \| zstd -3, both partitions | $(sec "$tp") | $(mib "$ps_sum") | $(ratio "$sd" "$tp") | $(ratio "${SIZE[$v-disk]}" "$ps_sum") |"
        echo "| whole disk | $label | $(sec "$sd") | $(mib "${SIZE[$v-disk]}") | zstd -3 of the whole disk | $(sec "$zd") | $(mib "${SIZE[zstd-disk]}") | $(ratio "$sd" "$zd") | $(ratio "${SIZE[$v-disk]}" "${SIZE[zstd-disk]}") |"
    done
    echo
    echo "Every run (seconds):"
    for k in $(printf '%s\n' "${!TIMES[@]}" | sort); do echo "- $k: ${TIMES[$k]}"; done
} | tee "$WORK/results-$(date -u +%Y%m%d-%H%M%S).md"
