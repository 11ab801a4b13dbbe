#!/usr/bin/env bash
# cold-random-read.sh - random 4 KiB reads across a mounted 2 GiB disk image, and a big
# file read through a mount with the image out of the page cache, against ewfmount,
# qemu-storage-daemon (qcow2) and the kernel on a loop device.
#
# Usage: sudo benches/cold-random-read.sh [--runs N] [--reads N]
#
#   --runs N    rounds (default 3); figures are medians, every mount fresh
#   --reads N   random reads per measurement (default 3000)
#
# Environment: STRATA_BENCH_DIR (default /var/tmp/strata-bench-random) caches the disk
# and its images (about 5 GiB with the qcow2); QCOW2 (default $STRATA_BENCH_DIR/disk.qcow2)
# and DISK (default $STRATA_BENCH_DIR/disk.img) may put the qcow2 and the raw disk elsewhere
# (a tmpfs when the disk is short of room; the raw disk's cold row is then not cold); STRATA (default
# target/release/strata). Needs root, fuse3, e2fsprogs, ewf-tools (ewfacquire, ewfmount)
# and qemu-utils (qemu-img, qemu-storage-daemon); a missing peer is left out.
#
# The disk: 2 GiB, one ext4 filesystem (mkfs.ext4 -d, no partition table) holding
# big.bin (300 MiB of this machine's shared libraries) and copies of /usr/share, /usr/bin,
# /usr/include and the Python standard library, about 1.7 GiB in all. Images: strata
# (defaults: 1 MiB chunks, zstd -3), strata with 64 KiB chunks, E01 (ewfacquire -c fast,
# 32 KiB chunks), qcow2 (qemu-img convert, uncompressed).
#
# Random reads: the raw disk as one file of each mount (strata mount --raw, ewfmount,
# qemu-storage-daemon --export fuse; the raw disk file itself, from the page cache, as the
# ceiling), POSIX_FADV_RANDOM (no readahead), distinct 4 KiB-aligned offsets from a seeded
# shuffle, one thread (QD1) and four threads (QD4); image files warm in the page cache.
# Cold big-file read: the image file dropped from the page cache (posix_fadvise
# DONTNEED on that file only, so other work on the machine keeps its cache), a fresh mount,
# then cat big.bin: strata mount, ewfmount + the kernel's ext4, the kernel's ext4 on a loop
# device over the raw disk; and the same with the image file warm. The FUSE ceiling:
# strata mount with a 1 GiB cache, big.bin read once (every chunk decompressed and
# cached), dropped from the page cache, read again: each read is then a FUSE round trip
# and a copy, no decompression and no image I/O (the format has no uncompressed "store"
# mode to measure instead).
{
set -euo pipefail
export LC_ALL=C TZ=UTC
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROG=cold-random-read.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }
RUNS=3
READS=3000
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?}; shift 2 ;;
        --reads) READS=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^{/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "must run as root (loop devices and mounts)"
BENCH=${STRATA_BENCH_DIR:-/var/tmp/strata-bench-random}
QCOW2=${QCOW2:-$BENCH/disk.qcow2}
DISK=${DISK:-$BENCH/disk.img}
STRATA=${STRATA:-$REPO/target/release/strata}
[ -x "$STRATA" ] || (cd "$REPO" && cargo build --release --quiet)
HAVE_EWF=0; command -v ewfmount >/dev/null && command -v ewfacquire >/dev/null && HAVE_EWF=1
HAVE_QSD=0; command -v qemu-storage-daemon >/dev/null && command -v qemu-img >/dev/null && HAVE_QSD=1
[ $HAVE_EWF = 1 ] || note "ewf-tools not installed: ewfmount left out"
[ $HAVE_QSD = 1 ] || note "qemu-utils not installed: qemu-storage-daemon left out"
mkdir -p "$BENCH"
WORK=$(mktemp -d /dev/shm/strata-crr.XXXXXX)
MNTS=()
QSD_PID=
cleanup() {
    set +e
    [ -z "$QSD_PID" ] || kill "$QSD_PID" 2>/dev/null
    for m in "${MNTS[@]}"; do mountpoint -q "$m" && umount -l "$m"; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- the disk and its images (cached) ----
if [ ! -f "$DISK" ]; then
    note "building the 2 GiB disk (once)"
    T=$BENCH/tree; rm -rf "$T"; mkdir -p "$T"
    find /usr/lib/x86_64-linux-gnu -maxdepth 1 -type f -size +100k -print0 | sort -z |
        xargs -0 cat 2>/dev/null | head -c $((300 << 20)) >"$T/big.bin" || true
    cp -a /usr/share "$T/share"; cp -a /usr/bin "$T/bin"; cp -a /usr/include "$T/include"
    cp -a /usr/lib/python3* "$T/" 2>/dev/null || true
    truncate -s 2G "$DISK.tmp"
    mkfs.ext4 -q -F -E nodiscard -d "$T" "$DISK.tmp"
    rm -rf "$T"; mv "$DISK.tmp" "$DISK"
fi
[ -f "$BENCH/disk.strata" ] || "$STRATA" create -q "$DISK" "$BENCH/disk.strata"
[ -f "$BENCH/disk-64k.strata" ] ||
    "$STRATA" create -q --chunk-size 65536 "$DISK" "$BENCH/disk-64k.strata"
[ $HAVE_EWF = 0 ] || [ -f "$BENCH/disk.E01" ] ||
    ewfacquire -u -q -c fast -t "$BENCH/disk" "$DISK" >/dev/null
[ $HAVE_QSD = 0 ] || [ -f "$QCOW2" ] || qemu-img convert -O qcow2 "$DISK" "$QCOW2"

drop() { # drops FILE from the page cache (that file only)
    python3 -c "import os,sys; os.posix_fadvise(os.open(sys.argv[1], os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED)" "$1"
}
warm() { cat "$1" >/dev/null; }

# ---- mounts: each sets DEV (the raw disk as a file) or FS (the ext4 root) ----
S=$WORK/s; E=$WORK/e; Q=$WORK/q.raw; L=$WORK/l
mkdir -p "$S" "$E" "$L"
LOOP=
up() { # KIND [strata image] -> sets DEV / FS
    case $1 in
        raw) DEV=$DISK ;;
        strata|strata64)
            local img=$BENCH/disk.strata; [ "$1" = strata64 ] && img=$BENCH/disk-64k.strata
            "$STRATA" mount --raw ${2:+--cache-size "$2"} "$img" "$S"; MNTS+=("$S"); DEV=$S/disk.img ;;
        strata-files)
            "$STRATA" mount ${2:+--cache-size "$2"} "$BENCH/disk.strata" "$S"; MNTS+=("$S"); FS=$S ;;
        ewf) ewfmount "$BENCH/disk.E01" "$E" >/dev/null; MNTS+=("$E"); DEV=$E/ewf1 ;;
        ewf-files)
            ewfmount "$BENCH/disk.E01" "$E" >/dev/null; MNTS+=("$E")
            LOOP=$(losetup -r -f --show "$E/ewf1"); mount -t ext4 -o ro,noload "$LOOP" "$L"; MNTS+=("$L"); FS=$L ;;
        loop-files)
            LOOP=$(losetup -r -f --show "$DISK"); mount -t ext4 -o ro,noload "$LOOP" "$L"; MNTS+=("$L"); FS=$L ;;
        qsd)
            : >"$Q"
            qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$QCOW2",read-only=on \
                --blockdev driver=qcow2,node-name=q,file=f,read-only=on \
                --export type=fuse,id=e,node-name=q,mountpoint="$Q",writable=off >/dev/null 2>&1 &
            QSD_PID=$!
            local i=0
            until [ "$(stat -c %s "$Q")" -gt 0 ]; do sleep 0.05; i=$((i + 1)); [ $i -lt 200 ] || die "qsd did not start"; done
            DEV=$Q ;;
    esac
}
down() {
    set +e
    mountpoint -q "$L" && umount "$L"
    [ -z "$LOOP" ] || losetup -d "$LOOP"; LOOP=
    mountpoint -q "$S" && "$STRATA" unmount "$S"
    # The next mount of the same directory must not race the old one going away.
    local i=0
    while mountpoint -q "$S" || mountpoint -q "$E"; do sleep 0.05; i=$((i + 1)); [ $i -lt 200 ] || break; done
    mountpoint -q "$E" && { umount "$E" || fusermount3 -u "$E"; }
    if [ -n "$QSD_PID" ]; then kill "$QSD_PID"; wait "$QSD_PID" 2>/dev/null; QSD_PID=; fi
    MNTS=()
    set -e
}

randread() { # FILE THREADS SEED -> reads per second
    python3 - "$1" "$2" "$READS" "$3" <<'PY'
import os, random, sys, threading, time
path, threads, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
size = os.stat(path).st_size
blocks = random.Random(seed).sample(range(size // 4096), n)
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
parts = [blocks[i::threads] for i in range(threads)]
def work(part):
    for b in part:
        if len(os.pread(fd, 4096, b * 4096)) != 4096:
            raise SystemExit("short read")
ts = [threading.Thread(target=work, args=(p,)) for p in parts]
t0 = time.monotonic()
for t in ts: t.start()
for t in ts: t.join()
print(f"{n / (time.monotonic() - t0):.0f}")
PY
}
catspeed() { # FILE -> MB/s
    python3 - "$1" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
t0 = time.monotonic(); n = 0
while True:
    b = os.read(fd, 1 << 20)
    if not b: break
    n += len(b)
print(f"{n / (time.monotonic() - t0) / 1e6:.0f}")
PY
}

declare -A R
add() { R[$1]="${R[$1]:-} $2"; }
RAND_KINDS="raw strata strata64"
[ $HAVE_EWF = 1 ] && RAND_KINDS="$RAND_KINDS ewf"
[ $HAVE_QSD = 1 ] && RAND_KINDS="$RAND_KINDS qsd"
FILE_KINDS="loop-files strata-files"
[ $HAVE_EWF = 1 ] && FILE_KINDS="$FILE_KINDS ewf-files"
image_of() { case $1 in loop-files) echo "$DISK";; strata-files) echo "$BENCH/disk.strata";; ewf-files) echo "$BENCH/disk.E01";; esac; }

note "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$RUNS"); do
    for f in "$DISK" "$BENCH/disk.strata" "$BENCH/disk-64k.strata" "$BENCH/disk.E01" "$QCOW2"; do
        [ -f "$f" ] && warm "$f"
    done
    for k in $RAND_KINDS; do
        for qd in 1 4; do
            up "$k"; add "rand,$k,$qd" "$(randread "$DEV" $qd $((r * 10 + qd)))"; down
        done
    done
    for k in $FILE_KINDS; do
        img=$(image_of "$k")
        drop "$img"; up "$k"; add "cold,$k" "$(catspeed "$FS/big.bin")"; down
        warm "$img"; up "$k"; add "warm,$k" "$(catspeed "$FS/big.bin")"; down
    done
    up strata-files 1G; cat "$S/big.bin" >/dev/null; drop "$S/big.bin"
    add "ceiling" "$(catspeed "$S/big.bin")"; down
    drop "$BENCH/disk.strata"
    add "io" "$(catspeed "$BENCH/disk.strata")"
done

median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.0f}')" "$@"; }
med() { median ${R[$1]}; }
label() { case $1 in raw) echo "raw disk file (page cache)";; strata) echo "strata mount --raw (1 MiB chunks)";;
    strata64) echo "strata mount --raw (64 KiB chunks)";; ewf) echo "ewfmount (E01)";;
    qsd) echo "qemu-storage-daemon (qcow2)";; loop-files) echo "kernel ext4 on a loop device (raw disk)";;
    strata-files) echo "strata mount";; ewf-files) echo "ewfmount + kernel ext4";; esac; }
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $RUNS rounds, medians."
echo
echo "| random 4 KiB reads of the whole 2 GiB disk | QD1 reads/s | QD4 reads/s |"
echo "| --- | ---: | ---: |"
for k in $RAND_KINDS; do echo "| $(label "$k") | $(med "rand,$k,1") | $(med "rand,$k,4") |"; done
echo
echo "| big.bin (300 MiB) through a fresh mount | image cold MB/s | image warm MB/s |"
echo "| --- | ---: | ---: |"
for k in $FILE_KINDS; do echo "| $(label "$k") | $(med "cold,$k") | $(med "warm,$k") |"; done
echo "| strata mount, every chunk already decompressed in its cache (FUSE ceiling) | | $(med ceiling) |"
echo "| reading disk.strata itself, cold (the storage) | $(med io) | |"
exit 0
}
