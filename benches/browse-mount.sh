#!/usr/bin/env bash
# browse-mount.sh - strata ls/cp and strata mount against ntfs-3g, the kernel,
# ewfmount, xmount and qemu-storage-daemon, on the same disks in one run.
#
# Usage: sudo benches/browse-mount.sh [--runs N] [--rebuild]
#
#   --runs N       rounds (default 3); every figure is the median
#   --rebuild      build the bench disks again even if cached ones exist
#   -h, --help     show this help
#
# Environment: STRATA_BENCH_DIR (default /var/tmp/strata-bench-browse) caches
# the disks and their images (about 5 GiB); STRATA (default: target/release/
# strata, built if missing). Needs root (loop devices and mounts), ntfs-3g,
# e2fsprogs, gdisk, fuse3, and for the peers ewf-tools (ewfacquire,
# ewfmount), xmount and qemu-utils (qemu-storage-daemon); a missing peer is
# reported and left out.
#
# The disks: GPT, one 2 GiB partition, NTFS (filled through ntfs-3g) and an
# ext4 sibling (mkfs.ext4 -d) holding the same tree: big.bin (300 MiB of
# programs and libraries from /usr), small/ (20 000 files of 1-8 KiB in 200
# directories) and tree/ (21 000 entries: 1 000 directories of 20 small
# files), so a walk of the volume meets more than 42 000 entries. Images of
# each disk: strata (default options), E01 (ewfacquire, fast compression),
# qcow2 (qemu-img convert, uncompressed).
#
# Measured each round, on each disk, every mount built fresh just before the
# command (so the mount's own caches are cold), image and disk files warm in
# the page cache:
#   read     cat big.bin > /dev/null                              (MB/s)
#   find     find over the whole volume, printing each size (lstat)
#   tar      tar c small/ | cat > /dev/null
#   RSS      peak resident memory of the mount's user-space processes
# with: strata mount; ntfs-3g or the kernel on a loop device over the raw
# disk; ewfmount + ntfs-3g/kernel; xmount (E01 -> raw) + ntfs-3g/kernel;
# qemu-storage-daemon's FUSE export of the qcow2 + ntfs-3g/kernel.
# And the browsing commands, without a mount: strata ls -R of the volume
# (time, peak RSS) against find over the ntfs-3g/kernel mount of the raw
# disk; strata cp of big.bin (MB/s); strata cp -r of small/ against tar c of
# it over ntfs-3g/kernel. Copies go to /dev/shm.
{
set -euo pipefail
export LC_ALL=C TZ=UTC

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROG=browse-mount.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

RUNS=3
REBUILD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?}; shift 2 ;;
        --rebuild) REBUILD=1; shift ;;
        -h|--help) sed -n '2,/^{/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "must run as root (loop devices and mounts)"
for t in ntfs-3g mkntfs mkfs.ext4 sgdisk fusermount3 losetup /usr/bin/time python3; do
    command -v "$t" >/dev/null || die "'$t' not found"
done

BENCH=${STRATA_BENCH_DIR:-/var/tmp/strata-bench-browse}
STRATA=${STRATA:-$REPO/target/release/strata}
if [ ! -x "$STRATA" ]; then
    (cd "$REPO" && cargo build --release --quiet)
fi
mkdir -p "$BENCH"
WORK=$(mktemp -d /dev/shm/strata-bm.XXXXXX)
MNTS=()
cleanup() {
    set +e
    for m in "${MNTS[@]}"; do mountpoint -q "$m" && umount -l "$m"; done
    pkill -f "qemu-storage-daemon.*$WORK" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "$PROG: error: command failed at line $LINENO" >&2' ERR

HAVE_EWF=0; command -v ewfmount >/dev/null && command -v ewfacquire >/dev/null && HAVE_EWF=1
HAVE_XMOUNT=0; command -v xmount >/dev/null && [ $HAVE_EWF = 1 ] && HAVE_XMOUNT=1
HAVE_QSD=0; command -v qemu-storage-daemon >/dev/null && command -v qemu-img >/dev/null && HAVE_QSD=1
[ $HAVE_EWF = 1 ] || note "ewf-tools not installed: ewfmount left out"
[ $HAVE_XMOUNT = 1 ] || note "xmount not installed: left out"
[ $HAVE_QSD = 1 ] || note "qemu-storage-daemon not installed: left out"

PART_OFF=$((1 << 20))
PART_SIZE=$((2048 << 20))

# ---------------------------------------------------------------- the disks
build_tree() { # DIR
    python3 "$HERE/browse-tree.py" "$1"
    touch "$1/.done"
}

make_disk() { # VOLUME DISK
    truncate -s $((PART_OFF + PART_SIZE + (1 << 20))) "$2"
    sgdisk -n 1:2048:$((2048 + PART_SIZE / 512 - 1)) -t 1:0700 "$2" >/dev/null
    dd if="$1" of="$2" bs=1M seek=1 conv=sparse,notrunc status=none
}

if [ $REBUILD = 1 ] || [ ! -f "$BENCH/ready" ]; then
    note "building the bench disks in $BENCH (once)"
    tree=$BENCH/tree
    find "$BENCH" -mindepth 1 -maxdepth 1 ! -name tree -exec rm -rf {} +
    if [ ! -f "$tree/.done" ]; then rm -rf "$tree"; mkdir -p "$tree"; build_tree "$tree"; fi
    truncate -s $PART_SIZE "$BENCH/ntfs.vol"
    mkntfs -q -F -Q -L BENCH "$BENCH/ntfs.vol"
    mkdir -p "$WORK/fill"; ntfs-3g "$BENCH/ntfs.vol" "$WORK/fill"
    cp -r "$tree/." "$WORK/fill/"; umount "$WORK/fill"
    truncate -s $PART_SIZE "$BENCH/ext4.vol"
    mkfs.ext4 -q -F -L BENCH -d "$tree" "$BENCH/ext4.vol"
    for fs in ntfs ext4; do
        make_disk "$BENCH/$fs.vol" "$BENCH/$fs.img"; rm "$BENCH/$fs.vol"
        "$STRATA" create -q "$BENCH/$fs.img" "$BENCH/$fs.strata"
        if [ $HAVE_EWF = 1 ]; then
            ewfacquire -u -q -c fast -t "$BENCH/$fs" "$BENCH/$fs.img" >/dev/null
        fi
        if [ $HAVE_QSD = 1 ]; then qemu-img convert -O qcow2 "$BENCH/$fs.img" "$BENCH/$fs.qcow2"; fi
    done
    rm -rf "$tree"
    touch "$BENCH/ready"
fi
ls -l "$BENCH" >&2

# ---------------------------------------------------------------- mounts
# Each mount_* sets FS (the volume's root) and PIDS (user-space processes to
# measure) and registers what umount_all tears down.
TEARDOWN=() # outer (FUSE) mounts
INNER=()    # filesystem mounts on loop devices
LOOPS=()
PIDS=
loop_fs() { # DEVFILE KIND(ntfs|ext4) DIR
    local lo
    lo=$(losetup -r -f --show -o $PART_OFF --sizelimit $PART_SIZE "$1")
    LOOPS+=("$lo")
    mkdir -p "$3"
    if [ "$2" = ntfs ]; then
        ntfs-3g -o ro "$lo" "$3"
        PIDS="$PIDS $(pgrep -n -f "ntfs-3g -o ro $lo")"
    else
        mount -t ext4 -o ro,noload "$lo" "$3"
    fi
    INNER+=("$3"); MNTS+=("$3")
    FS=$3
}
mount_strata() { # KIND
    mkdir -p "$WORK/s"
    "$STRATA" mount "$BENCH/$1.strata" "$WORK/s"
    PIDS=$(pgrep -n -f "strata mount $BENCH/$1.strata")
    TEARDOWN=("$WORK/s"); MNTS+=("$WORK/s")
    FS=$WORK/s/p1
}
mount_raw() { loop_fs "$BENCH/$1.img" "$1" "$WORK/r"; }
mount_ewf() {
    mkdir -p "$WORK/e"; ewfmount "$BENCH/$1.E01" "$WORK/e" >/dev/null
    PIDS=$(pgrep -n ewfmount); TEARDOWN=("$WORK/e"); MNTS+=("$WORK/e")
    loop_fs "$WORK/e/ewf1" "$1" "$WORK/em"
}
mount_xmount() {
    mkdir -p "$WORK/x"; xmount --in ewf "$BENCH/$1.E01" --out raw "$WORK/x" >/dev/null
    PIDS=$(pgrep -n xmount); TEARDOWN=("$WORK/x"); MNTS+=("$WORK/x")
    loop_fs "$(ls "$WORK"/x/*.dd)" "$1" "$WORK/xm"
}
mount_qsd() {
    local f=$WORK/q.raw
    : >"$f"
    qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$BENCH/$1.qcow2",read-only=on \
        --blockdev driver=qcow2,node-name=q,file=f,read-only=on \
        --export type=fuse,id=e,node-name=q,mountpoint="$f",writable=off >/dev/null 2>&1 &
    local i=0
    until [ "$(stat -c %s "$f")" -gt 0 ]; do sleep 0.05; i=$((i + 1)); [ $i -lt 200 ] || die "qsd did not start"; done
    PIDS=$!; TEARDOWN=("$f"); MNTS+=("$f")
    loop_fs "$f" "$1" "$WORK/qm"
}
umount_all() {
    local m
    for m in "${INNER[@]}"; do umount "$m" || umount -l "$m"; done
    for m in "${LOOPS[@]}"; do losetup -d "$m" 2>/dev/null || true; done
    for m in "${TEARDOWN[@]}"; do
        [ "$m" = "$WORK/q.raw" ] && continue
        umount "$m" 2>/dev/null || fusermount3 -u "$m" 2>/dev/null || umount -l "$m"
    done
    pkill -f "qemu-storage-daemon.*$WORK" 2>/dev/null || true
    # Wait for the FUSE processes to be gone, so the next mount starts cold.
    for m in $PIDS; do
        while [ -e "/proc/$m" ] && ! grep -q '^State:.*Z' "/proc/$m/status" 2>/dev/null; do sleep 0.05; done
    done
    TEARDOWN=(); INNER=(); LOOPS=(); PIDS=; MNTS=()
}
# Peak RSS (MiB) of PIDS, summed.
rss() {
    local t=0 p kb
    for p in $PIDS; do
        kb=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        t=$((t + ${kb:-0}))
    done
    if [ -n "${PIDS// /}" ]; then echo $((t / 1024)); else echo -; fi
}
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }

# ---------------------------------------------------------------- one round
declare -A R # R[kind,tool,what] = "v1 v2 ..."
add() { R[$1]="${R[$1]:-} $2"; }
OPS=(read find tar)
measure_mount() { # KIND TOOL
    local kind=$1 tool=$2 op t0 t1 peak=- r
    for op in "${OPS[@]}"; do
        "mount_$tool" "$kind"
        t0=$(now)
        case $op in
            read) cat "$FS/big.bin" >/dev/null ;;
            find) [ "$(find "$FS" -printf '%s\n' | wc -l)" -ge 40000 ] || die "$tool: find saw too few entries" ;;
            tar) tar cf - -C "$FS" small | cat >/dev/null ;;
        esac
        t1=$(now)
        r=$(rss)
        if [ "$r" != - ] && { [ "$peak" = - ] || [ "$r" -gt "$peak" ]; }; then peak=$r; fi
        umount_all
        add "$kind,$tool,$op" "$(elapsed "$t0" "$t1")"
    done
    add "$kind,$tool,rss" "$peak"
}
measure_cli() { # KIND
    local kind=$1 img=$BENCH/$1.strata out t0 t1
    out=$(/usr/bin/time -f '%e %M' "$STRATA" ls -R "$img" /p1 2>&1 >/dev/null | tail -1)
    add "$kind,cli,ls" "${out% *}"; add "$kind,cli,lsrss" "$((${out#* } / 1024))"
    rm -rf "$WORK/cp"; mkdir "$WORK/cp"
    out=$(/usr/bin/time -f '%e %M' "$STRATA" cp -q "$img" /p1/big.bin "$WORK/cp/" 2>&1 | tail -1)
    add "$kind,cli,cpbig" "${out% *}"; add "$kind,cli,cprss" "$((${out#* } / 1024))"
    if [ "$round" = 1 ]; then
        mount_raw "$kind"
        cmp -s "$WORK/cp/big.bin" "$FS/big.bin" || die "$kind: strata cp gave a different big.bin"
        umount_all
    fi
    rm -rf "$WORK/cp"; mkdir "$WORK/cp"
    out=$(/usr/bin/time -f '%e %M' "$STRATA" cp -q -r "$img" /p1/small "$WORK/cp/" 2>&1 | tail -1)
    add "$kind,cli,cpsmall" "${out% *}"
    rm -rf "$WORK/cp"
    mount_raw "$kind"
    t0=$(now); find "$FS" -printf '%s\n' >/dev/null; t1=$(now)
    umount_all; add "$kind,raw,findcli" "$(elapsed "$t0" "$t1")"
    mount_raw "$kind"
    t0=$(now); tar cf - -C "$FS" small | cat >/dev/null; t1=$(now)
    umount_all; add "$kind,raw,tarcli" "$(elapsed "$t0" "$t1")"
}

TOOLS=(strata raw)
[ $HAVE_EWF = 1 ] && TOOLS+=(ewf)
[ $HAVE_XMOUNT = 1 ] && TOOLS+=(xmount)
[ $HAVE_QSD = 1 ] && TOOLS+=(qsd)

# Warm every container file.
cat "$BENCH"/*.img "$BENCH"/*.strata "$BENCH"/*.E01 "$BENCH"/*.qcow2 >/dev/null 2>&1 || true
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$RUNS"); do
    note "round $round of $RUNS"
    for kind in ntfs ext4; do
        # Alternate the order of the tools between rounds.
        if [ $((round % 2)) = 0 ]; then order=$(printf '%s\n' "${TOOLS[@]}" | tac); else order=${TOOLS[*]}; fi
        for tool in $order; do measure_mount "$kind" "$tool"; done
        measure_cli "$kind"
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
med() { tr ' ' '\n' <<<"${R[$1]:-}" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
mbps() { python3 -c "import sys; print('%.0f' % (300*1048576/float(sys.argv[1])/1e6))" "$1"; }
ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1])/float(sys.argv[2])))" "$1" "$2"; }
label() { case $1 in strata) echo "strata mount";; raw) echo "$2 on the raw disk";; ewf) echo "ewfmount + $2";;
          xmount) echo "xmount + $2";; qsd) echo "qemu-storage-daemon (qcow2) + $2";; esac; }
echo
echo "browse-mount.sh: $RUNS rounds, medians; $(nproc) cores; load before $LOAD0, after $LOAD1"
echo "strata $("$STRATA" --version | cut -d' ' -f2), $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
for kind in ntfs ext4; do
    peer=ntfs-3g; [ $kind = ext4 ] && peer="kernel ext4"
    ew=${R[$kind,ewf,find]:+ewf}
    echo
    echo "### $kind disk: mounts"
    echo
    echo "| mount | read 300 MiB (MB/s) | find 41k entries (s) | tar c 20k files (s) | peak RSS (MiB) |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    for tool in "${TOOLS[@]}"; do
        echo "| $(label "$tool" "$peer") | $(mbps "$(med "$kind,$tool,read")") | $(med "$kind,$tool,find") | $(med "$kind,$tool,tar") | $(med "$kind,$tool,rss") |"
    done
    if [ -n "$ew" ]; then
        echo
        echo "strata/ewfmount: find $(ratio "$(med "$kind,strata,find")" "$(med "$kind,ewf,find")")x, tar $(ratio "$(med "$kind,strata,tar")" "$(med "$kind,ewf,tar")")x"
    fi
    echo
    echo "### $kind disk: browsing without a mount"
    echo
    echo "| command | time (s) | vs $peer on the raw disk | peak RSS (MiB) |"
    echo "| --- | ---: | ---: | ---: |"
    echo "| strata ls -R /p1 | $(med "$kind,cli,ls") | find: $(med "$kind,raw,findcli") s ($(ratio "$(med "$kind,cli,ls")" "$(med "$kind,raw,findcli")")x) | $(med "$kind,cli,lsrss") |"
    echo "| strata cp big.bin | $(med "$kind,cli,cpbig") ($(mbps "$(med "$kind,cli,cpbig")") MB/s) | | $(med "$kind,cli,cprss") |"
    echo "| strata cp -r small/ | $(med "$kind,cli,cpsmall") | tar c: $(med "$kind,raw,tarcli") s ($(ratio "$(med "$kind,cli,cpsmall")" "$(med "$kind,raw,tarcli")")x) | |"
done
exit 0
}
