#!/usr/bin/env bash
# Mounted find and small-file tar on a disk like a Linux root: big directories.
#
# Usage: benches/browse-root.sh [--runs N] [--ops "find tar"] [--rebuild] [--reimage]
#                               [--compare IMAGE] [--install]
#
# Builds once (cached in $STRATA_BENCH_DIR, default /var/tmp/strata-bench-root) a GPT
# disk with an ext4 partition made by `mkfs.ext4 -d` and an NTFS partition filled through
# ntfs-3g, both from a copy of this machine's /usr/share, /usr/bin,
# /usr/lib/x86_64-linux-gnu, /usr/include, /usr/lib/python3.* and /etc (1.5-2 GiB,
# directories of thousands of entries such as /usr/share/man/man1 and
# /usr/lib/x86_64-linux-gnu; one directory of 6,000 generated man-page-like files is
# added so that a directory of 5,000+ entries exists on any machine). The disk is imaged
# with strata (defaults) and as E01 (`ewfacquire -c fast`).
#
# Each round measures, on a fresh mount every time (caches of the mount cold, container
# files warm in the page cache), for ext4 (p1) and NTFS (p2):
#   - find over the whole partition (`find -printf '%s'`: names and sizes);
#   - tar c of usr/share (small files, big directories) to /dev/null;
# through: strata mount; ewfmount + the kernel's ext4 / ntfs-3g on the E01's raw file
# (ewf-tools); the kernel's ext4 / ntfs-3g on a loop device over the raw disk. For the
# strata mount it also records the CPU time (user + sys) of the mount process and, when
# the kernel has the fuse tracepoints, the FUSE requests by type. Medians of the rounds;
# the order of the tools alternates between rounds.
#
# --ops chooses the measurements (default both: "find tar").
#
# --reimage makes the strata image of the cached disk again with this strata (the disk
# and the E01 are kept): a change in how `create` lays out an image then shows in the
# mounts. --compare IMAGE also mounts IMAGE (another strata image of the same disk, for
# instance one made by an earlier version) in every round, as the tool "strata_b".
#
# --install installs the Debian packages the bench needs (ewf-tools and the tools that
# build the disk) and exits.
{
set -euo pipefail
export LC_ALL=C TZ=UTC

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROG=browse-root.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

PKGS="ewf-tools ntfs-3g e2fsprogs gdisk fuse3 python3 procps"
RUNS=3
REBUILD=0
REIMAGE=0
COMPARE=
OPS=(find tar)
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?}; shift 2 ;;
        --rebuild) REBUILD=1; shift ;;
        --reimage) REIMAGE=1; shift ;;
        --ops) read -r -a OPS <<<"${2:?}"; shift 2 ;;
        --compare) COMPARE=$(realpath "${2:?}"); shift 2 ;;
        --install)
            apt-get install -y --no-install-recommends $PKGS
            exit 0 ;;
        -h|--help) sed -n '2,/^{/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "must run as root (loop devices and mounts)"
for t in ntfs-3g mkntfs mkfs.ext4 sgdisk fusermount3 losetup python3 ewfmount ewfacquire; do
    command -v "$t" >/dev/null || die "'$t' not found (benches/browse-root.sh --install)"
done

BENCH=${STRATA_BENCH_DIR:-/var/tmp/strata-bench-root}
STRATA=${STRATA:-$REPO/target/release/strata}
if [ ! -x "$STRATA" ]; then
    (cd "$REPO" && cargo build --release --quiet)
fi
mkdir -p "$BENCH"
WORK=$(mktemp -d /dev/shm/strata-br.XXXXXX)
MNTS=()
cleanup() {
    set +e
    for m in "${MNTS[@]}"; do mountpoint -q "$m" && umount -l "$m"; done
    # The trace buffer back to its size before the run.
    [ -n "${TRACE_KB:-}" ] && echo "$TRACE_KB" >"$TRACING/buffer_size_kb"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "$PROG: error: command failed at line $LINENO" >&2' ERR

# Partitions: p1 ext4, p2 NTFS, 2560 MiB each, from 1 MiB.
PSIZE=$((2560 << 20))
OFF1=$((1 << 20))
OFF2=$((OFF1 + PSIZE))
declare -A OFF=([ext4]=$OFF1 [ntfs]=$OFF2)
declare -A PNUM=([ext4]=p1 [ntfs]=p2)

# ---------------------------------------------------------------- the disk
build_tree() { # DIR
    local t=$1 d
    mkdir -p "$t/usr/lib"
    for d in /usr/share /usr/bin /usr/include /usr/lib/x86_64-linux-gnu /usr/lib/python3.*; do
        [ -d "$d" ] || continue
        mkdir -p "$t$(dirname "$d")"
        cp -a "$d" "$t$(dirname "$d")/"
    done
    cp -a /etc "$t/"
    # Sockets and device nodes are not files a tar of a root disk would copy.
    find "$t" \( -type s -o -type p -o -type b -o -type c \) -delete
    # One directory of 6,000 entries whatever the machine has (man-page-like gzip files).
    python3 - "$t/usr/share/man/man3big" <<'EOF'
import gzip, os, random, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
rng = random.Random(20)
words = "open read write close seek stat mmap lock poll select socket bind".split()
for i in range(6000):
    name = "%s_%s_%04d.3.gz" % (rng.choice(words), rng.choice(words), i)
    body = " ".join(rng.choice(words) for _ in range(rng.randint(50, 800))).encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(gzip.compress(body, 9, mtime=0))
EOF
    touch "$t/.done"
}

if [ $REBUILD = 1 ] || [ ! -f "$BENCH/ready" ]; then
    note "building the bench disk in $BENCH (once, a few minutes)"
    tree=$BENCH/tree
    find "$BENCH" -mindepth 1 -maxdepth 1 ! -name tree -exec rm -rf {} +
    if [ ! -f "$tree/.done" ]; then rm -rf "$tree"; mkdir -p "$tree"; build_tree "$tree"; fi
    disk=$BENCH/disk.img
    truncate -s $((OFF2 + PSIZE + (1 << 20))) "$disk"
    sgdisk -n 1:$((OFF1 / 512)):$((OFF2 / 512 - 1)) -t 1:8300 \
        -n 2:$((OFF2 / 512)):$(((OFF2 + PSIZE) / 512 - 1)) -t 2:0700 "$disk" >/dev/null
    truncate -s $PSIZE "$BENCH/ext4.vol"
    mkfs.ext4 -q -F -L ROOT -d "$tree" "$BENCH/ext4.vol"
    dd if="$BENCH/ext4.vol" of="$disk" bs=1M seek=$((OFF1 >> 20)) conv=sparse,notrunc status=none
    rm "$BENCH/ext4.vol"
    lo=$(losetup -f --show -o $OFF2 --sizelimit $PSIZE "$disk")
    mkntfs -q -F -Q -L DATA -p $((OFF2 / 512)) -H 255 -S 63 "$lo"
    mkdir -p "$WORK/fill"; ntfs-3g "$lo" "$WORK/fill"
    # ntfs-3g keeps symlinks as symlinks; ownership and modes it cannot keep.
    cp -r "$tree/." "$WORK/fill/"
    umount "$WORK/fill"; losetup -d "$lo"
    "$STRATA" create -q "$disk" "$BENCH/disk.strata"
    ewfacquire -u -q -c fast -t "$BENCH/disk" "$disk" >/dev/null
    rm -rf "$tree"
    touch "$BENCH/ready"
fi
if [ $REIMAGE = 1 ]; then
    note "imaging the disk again with $STRATA"
    t0=$(date +%s.%N)
    "$STRATA" create -q -f "$BENCH/disk.img" "$BENCH/disk.strata"
    note "create took $(python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$(date +%s.%N)") s"
fi
ls -l "$BENCH" >&2
[ "$RUNS" -gt 0 ] || exit 0

# ---------------------------------------------------------------- mounts
TRACING=/sys/kernel/tracing
EVENT=$TRACING/events/fuse/fuse_request_send
if [ ! -e $EVENT ] && [ -d $TRACING ] && ! mountpoint -q $TRACING; then
    mount -t tracefs nodev $TRACING 2>/dev/null || true
fi
HAVE_TRACE=0
[ -e $EVENT/enable ] && HAVE_TRACE=1
TRACE_KB=
[ $HAVE_TRACE = 1 ] && TRACE_KB=$(sed 's/ .*//' $TRACING/buffer_size_kb)
[ $HAVE_TRACE = 1 ] || note "no fuse tracepoints: FUSE requests not counted"
TEARDOWN=() INNER=() LOOPS=() PIDS=
loop_fs() { # FILE KIND DIR
    local lo
    lo=$(losetup -r -f --show -o "${OFF[$2]}" --sizelimit $PSIZE "$1")
    LOOPS+=("$lo"); mkdir -p "$3"
    if [ "$2" = ntfs ]; then
        ntfs-3g -o ro "$lo" "$3"
    else
        mount -t ext4 -o ro,noload "$lo" "$3"
    fi
    INNER+=("$3"); MNTS+=("$3"); FS=$3
}
mount_strata() { # KIND [IMAGE]
    local img=${2:-$BENCH/disk.strata}
    mkdir -p "$WORK/s"
    "$STRATA" mount "$img" "$WORK/s"
    PIDS=$(pgrep -n -f "$STRATA mount $img")
    [ -n "$PIDS" ] || die "no strata mount process"
    TEARDOWN=("$WORK/s"); MNTS+=("$WORK/s"); FS=$WORK/s/${PNUM[$1]}
}
mount_strata_b() { mount_strata "$1" "$COMPARE"; }
mount_raw() { loop_fs "$BENCH/disk.img" "$1" "$WORK/r"; }
mount_ewf() {
    mkdir -p "$WORK/e"; ewfmount "$BENCH/disk.E01" "$WORK/e" >/dev/null
    TEARDOWN=("$WORK/e"); MNTS+=("$WORK/e")
    loop_fs "$WORK/e/ewf1" "$1" "$WORK/em"
}
umount_all() {
    local m
    for m in "${INNER[@]}"; do umount "$m" || umount -l "$m"; done
    for m in "${LOOPS[@]}"; do losetup -d "$m" 2>/dev/null || true; done
    for m in "${TEARDOWN[@]}"; do umount "$m" 2>/dev/null || fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; done
    for m in $PIDS; do
        while [ -e "/proc/$m" ] && ! grep -q '^State:.*Z' "/proc/$m/status" 2>/dev/null; do sleep 0.05; done
    done
    TEARDOWN=(); INNER=(); LOOPS=(); PIDS=; MNTS=()
}
# CPU seconds (user + sys) of PIDS.
cpu() {
    local p t=0
    for p in $PIDS; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    python3 -c "import os, sys; print('%.2f' % (int(sys.argv[1]) / os.sysconf('SC_CLK_TCK')))" "$t"
}
# FUSE requests of the mount at DIR, counted by the kernel's fuse_request_send tracepoint
# (filtered on the mount's connection, so other FUSE mounts do not count).
trace_on() { # DIR
    [ $HAVE_TRACE = 1 ] || return 0
    echo 65536 >$TRACING/buffer_size_kb
    echo "connection == $(($(stat -c %d "$1") & 0xfffff))" >$EVENT/filter
    echo >$TRACING/trace
    echo 1 >$EVENT/enable
}
trace_off() { # prints "OP=count ..."
    [ $HAVE_TRACE = 1 ] || { echo -; return; }
    echo 0 >$EVENT/enable
    grep -o 'FUSE_[A-Z]*' $TRACING/trace | sort | uniq -c | awk '{printf "%s=%s ", substr($2, 6), $1}'
    grep -q 'LOST.*EVENTS' $TRACING/trace && printf '(events lost) '
    echo >$TRACING/trace; echo 0 >$EVENT/filter
}
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }

declare -A R
add() { R[$1]="${R[$1]:-} $2"; }
measure() { # KIND TOOL
    local kind=$1 tool=$2 op t0 t1 n
    for op in "${OPS[@]}"; do
        "mount_$tool" "$kind"
        [ "${tool%_b}" = strata ] && trace_on "$WORK/s"
        t0=$(now)
        case $op in
            find) n=$(find "$FS" -printf '%s\n' | wc -l); [ "$n" -ge 50000 ] || die "$tool: find saw only $n entries" ;;
            tar) tar cf - -C "$FS" usr/share | cat >/dev/null ;;
        esac
        t1=$(now)
        if [ "$tool" = strata ]; then
            add "$kind,cpu,$op" "$(cpu)"
            LASTREQ[$kind,$op]=$(trace_off)
        elif [ "$tool" = strata_b ]; then
            add "$kind,cpu_b,$op" "$(cpu)"
            trace_off >/dev/null
        fi
        umount_all
        add "$kind,$tool,$op" "$(elapsed "$t0" "$t1")"
    done
}
declare -A LASTREQ

TOOLS=(strata ewf raw)
[ -n "$COMPARE" ] && TOOLS+=(strata_b)
cat "$BENCH/disk.img" "$BENCH/disk.strata" "$BENCH"/disk.E* ${COMPARE:+"$COMPARE"} >/dev/null
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$RUNS"); do
    note "round $round of $RUNS"
    for kind in ext4 ntfs; do
        if [ $((round % 2)) = 0 ]; then order=$(printf '%s\n' "${TOOLS[@]}" | tac); else order=${TOOLS[*]}; fi
        for tool in $order; do measure "$kind" "$tool"; done
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
med() { tr ' ' '\n' <<<"${R[$1]:-}" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1])/float(sys.argv[2])))" "$1" "$2"; }
echo
echo "browse-root.sh: $RUNS rounds, medians; $(nproc) cores; load before $LOAD0, after $LOAD1"
echo "strata $("$STRATA" --version | cut -d' ' -f2), $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
echo "| partition | op | strata mount (s) | strata CPU (s) | ewfmount + peer (s) | peer on raw disk (s) | strata / ewfmount |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for kind in ext4 ntfs; do
    for op in "${OPS[@]}"; do
        echo "| $kind | $op | $(med "$kind,strata,$op") | $(med "$kind,cpu,$op") | $(med "$kind,ewf,$op") | $(med "$kind,raw,$op") | $(ratio "$(med "$kind,strata,$op")" "$(med "$kind,ewf,$op")")x |"
    done
done
echo
if [ -n "$COMPARE" ]; then
    echo
    echo "strata_b: $COMPARE"
    echo
    echo "| partition | op | strata mount (s) | strata CPU (s) | strata_b mount (s) | strata_b CPU (s) | ewfmount + peer (s) | strata / ewfmount | strata_b / ewfmount |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for kind in ext4 ntfs; do
        for op in "${OPS[@]}"; do
            echo "| $kind | $op | $(med "$kind,strata,$op") | $(med "$kind,cpu,$op") | $(med "$kind,strata_b,$op") | $(med "$kind,cpu_b,$op") | $(med "$kind,ewf,$op") | $(ratio "$(med "$kind,strata,$op")" "$(med "$kind,ewf,$op")")x | $(ratio "$(med "$kind,strata_b,$op")" "$(med "$kind,ewf,$op")")x |"
        done
    done
    echo
fi
echo "FUSE requests of the strata mount (last round):"
for kind in ext4 ntfs; do for op in "${OPS[@]}"; do echo "  $kind $op: ${LASTREQ[$kind,$op]:-}"; done; done
echo "all runs:"
for k in "${!R[@]}"; do echo "  $k:${R[$k]}"; done | sort
exit 0
}
