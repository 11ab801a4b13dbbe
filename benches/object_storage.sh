#!/usr/bin/env bash
# object_storage.sh - images in an S3-compatible bucket (s3://BUCKET/KEY) against the same
# images on local disk, in the same run, interleaved: create, an incremental, restore,
# info, ls -R, and a fresh strata mount (open, a big-file read, a find over the volume);
# then, through a counting proxy, the requests and bytes each operation asks of the bucket.
#
# Usage: sudo benches/object_storage.sh [--runs N] [--server-fsync] [--rebuild]
#
#   --runs N         timed rounds (default 5); every figure is the median
#   --server-fsync   run Garage with data_fsync and metadata_fsync on, so that what it
#                    acknowledges is on stable storage, as what strata writes locally is
#                    (strata fsyncs its images and restored disks); Garage's default is off
#   --rebuild        build the bench disks again even if cached ones exist
#   -h, --help       show this help
#
# A run of 5 rounds takes about 2 minutes once the disks exist (on 2 cores); building the
# disks takes about 3 more (once).
#
# Environment: STRATA_BENCH_DIR (default /var/tmp/strata-bench-s3) caches the disks and
# collects results.md (every run's tables appended), runs-*.csv (every round's figures)
# and counts-*/ (every counted operation's figures and requests). Each run works in a fresh
# directory there (removed at the end): the local images, the restored disk and the S3
# server's data, all on the same filesystem as the disks. STRATA (default:
# target/release/strata, built with cargo build --release if it is the default); the binary
# is copied to the work directory first, so a rebuild of the tree during the run does not
# change what is measured. GARAGE (default: garage on PATH, else ~/.cargo/bin/garage;
# tests/run-all.sh installs it: cargo install garage --locked --version 2.5.0). Needs root
# (loop devices, mounts), e2fsprogs, gdisk, fuse3, curl, python3, /usr/bin/time.
#
# The S3 server: Garage, one node on 127.0.0.1 (the recipe of tests/common/s3.rs: sqlite
# metadata, replication factor 1, one bucket and one key), started by the script in its
# work directory and stopped at the end; its objects are deleted before it stops and its
# data directory removed. Two settings differ from Garage's defaults and are stated in the
# results: compression_level = "none" (Garage would otherwise zstd every 1 MiB block again,
# on the same 2 cores as strata; strata's chunks are compressed already, and a remote
# server's CPU is not the client's); and, unless --server-fsync, data_fsync = false as by
# default (Garage does not fsync the blocks it stores, where a local `strata create` or
# `restore` fsyncs its output). The server is local: no network latency or bandwidth limit is measured, only
# what strata's requests cost in protocol, copies and server work. Every command gets
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT_URL for it, and
# AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE pointing nowhere.
#
# The disks: GPT, one 2 GiB ext4 partition (1 MiB in), filled through a loop mount with
# benches/browse-tree.py's tree: big.bin (300 MiB of this machine's programs and
# libraries: semi-compressible), small/ (20 000 files of 1-8 KiB in 200 directories) and
# tree/ (1 000 directories of 20 files of up to 600 bytes): 40 001 files. The second
# disk, for the incremental, is a copy changed through a loop mount: 100 files of
# small/d010 rewritten, a new directory of 50 files, a new 16 MiB file of programs, and
# tree/t0999 removed.
#
# Measured each round, local and bucket interleaved (local first in odd rounds, the bucket
# first in even ones), wall time from the shell, CPU time of strata (user + sys, all
# threads) and of the Garage server; before each command (and each mount) a `sync`, not
# timed, so that no command pays for the writeback of what the one before left dirty:
#   create       strata create -q --force DISK IMAGE                (target: bucket <= 1.3x)
#   incremental  strata create -q --force --incremental FULL DISK2 IMAGE (parent where the
#                child goes: local, or in the bucket)
#   restore      strata restore -q --force FULL FILE (a file in the work directory, on disk;
#                removed after each)
#   info         strata info FULL
#   ls -R        strata ls -R FULL /p1 > /dev/null (41 204 lines)
#   mount        strata mount FULL MNT (the command returns once the mount is ready)
#   read         cat MNT/p1/big.bin > /dev/null, on that fresh mount (strata's cache cold;
#                the local image file, and Garage's block files, warm in the page cache)
#   find         find MNT -type f | wc -l, on another fresh mount
# A warm-up round, not counted, comes first and checks that both restores give the same
# disk, both incrementals restore to the same disk, ls -R gives the same listing, big.bin
# reads the same and find counts the same files.
#
# Then each operation once more against the bucket, through benches/s3-count-proxy.py (a
# counting HTTP proxy between strata and Garage; never in the timed runs), fresh object
# names (so create checks first that the name is free, as without --force): requests by
# kind, TCP connections opened, request body bytes sent, ranged-GET body bytes fetched
# (against the image's or the file's size), GET sizes, GETs of a range already fetched (by
# the same operation) and GETs that start where another GET of the object ended (reads one
# larger GET could have made). Every counted request is listed in counts-*/count-OP.json.log.
# For mounted operations the count runs from the mount to the unmount, so it includes the
# mount's own opening, which is counted alone too (mount + unmount).

# The whole script is one { } group, so bash parses it completely before running it.
{
set -euo pipefail
export LC_ALL=C TZ=UTC

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROG=object_storage.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

RUNS=5
REBUILD=0
SERVER_FSYNC=false
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --server-fsync) SERVER_FSYNC=true; shift ;;
        --rebuild) REBUILD=1; shift ;;
        -h|--help) sed -n '2,/^{/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
[ "$(id -u)" = 0 ] || die "must run as root (loop devices and mounts)"
for t in mkfs.ext4 sgdisk losetup fusermount3 mountpoint curl python3 sha256sum cmp; do
    command -v "$t" >/dev/null || die "'$t' not found"
done
[ -x /usr/bin/time ] || die "/usr/bin/time not found; install time"
GARAGE=${GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
[ -x "$GARAGE" ] || die "no garage (cargo install garage --locked --version 2.5.0; or GARAGE=path)"

BENCH=${STRATA_BENCH_DIR:-/var/tmp/strata-bench-s3}
STRATA=${STRATA:-$REPO/target/release/strata}
if [ "$STRATA" = "$REPO/target/release/strata" ]; then
    note "building strata (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet)
fi
[ -x "$STRATA" ] || die "$STRATA not found"
mkdir -p "$BENCH"
WORK=$(mktemp -d "$BENCH/run.XXXXXX")
cp "$STRATA" "$WORK/strata"
S=$WORK/strata
MNT=$WORK/mnt
mkdir -p "$MNT"

# ---------------------------------------------------------------- cleanup
FILL=
LOOP=
MOUNT_PID=
PROXY_PID=
GARAGE_PID=
KEY_ID=
KEY_SECRET=
S3_PORT=
# shellcheck disable=SC2317 # run by the trap
cleanup() {
    local rc=$?
    set +e
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" || umount -l "$MNT"; }
    if [ -n "$FILL" ] && mountpoint -q "$FILL"; then umount "$FILL" || umount -l "$FILL"; fi
    [ -n "$LOOP" ] && losetup -d "$LOOP"
    if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID"; wait "$PROXY_PID"; fi
    if [ -n "$GARAGE_PID" ]; then
        delete_objects
        kill "$GARAGE_PID"
        wait "$GARAGE_PID"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "$PROG: error: command failed at line $LINENO" >&2' ERR

# ---------------------------------------------------------------- the disks
PART_OFF=$((1 << 20))
PART_SIZE=$((2048 << 20))
DISK=$BENCH/disk.img
DISK2=$BENCH/disk2.img
RECIPE=1 # bump when the disks' recipe changes, so cached ones are rebuilt
loop_mount() { # DISK: the partition mounted at $FILL
    LOOP=$(losetup -f --show -o $PART_OFF --sizelimit $PART_SIZE "$1")
    FILL=$WORK/fill
    mkdir -p "$FILL"
    mount -t ext4 "$LOOP" "$FILL"
}
loop_umount() {
    umount "$FILL"; FILL=
    losetup -d "$LOOP"; LOOP=
}
build_disks() {
    local t0=$SECONDS
    note "building the bench disks in $BENCH (once)"
    rm -f "$DISK" "$DISK2" "$BENCH/ready" "$DISK.tmp" "$DISK2.tmp"
    truncate -s $((PART_OFF + PART_SIZE + (1 << 20))) "$DISK.tmp"
    sgdisk -n 1:2048:$((2048 + PART_SIZE / 512 - 1)) -t 1:8300 "$DISK.tmp" >/dev/null
    LOOP=$(losetup -f --show -o $PART_OFF --sizelimit $PART_SIZE "$DISK.tmp")
    mkfs.ext4 -q -F -L BENCH "$LOOP"
    losetup -d "$LOOP"; LOOP=
    loop_mount "$DISK.tmp"
    python3 "$HERE/browse-tree.py" "$FILL"
    loop_umount
    cp --sparse=always "$DISK.tmp" "$DISK2.tmp"
    loop_mount "$DISK2.tmp"
    python3 - "$FILL" <<'EOF'
import os, random, shutil, sys
root, rng = sys.argv[1], random.Random(23)
for f in range(100):  # 100 files of small/d010 rewritten
    open(os.path.join(root, "small", "d010", "f%03d.txt" % f), "wb").write(rng.randbytes(rng.randint(1024, 8192)))
os.makedirs(os.path.join(root, "new"))
for f in range(50):  # a new directory of 50 files
    open(os.path.join(root, "new", "n%02d.txt" % f), "wb").write(("changed %d\n" % f).encode() * rng.randint(10, 500))
want, out = 16 << 20, open(os.path.join(root, "new.bin"), "wb")  # 16 MiB of programs
for d, dirs, files in sorted(os.walk("/usr/bin")):
    for f in sorted(files):
        p = os.path.join(d, f)
        if out.tell() < want and os.path.isfile(p) and not os.path.islink(p):
            out.write(open(p, "rb").read()[: want - out.tell()])
out.close()
shutil.rmtree(os.path.join(root, "tree", "t0999"))
EOF
    loop_umount
    mv "$DISK.tmp" "$DISK"
    mv "$DISK2.tmp" "$DISK2"
    echo "$RECIPE" >"$BENCH/ready"
    note "disks ready ($((SECONDS - t0)) s)"
}
if [ $REBUILD = 1 ] || [ "$(cat "$BENCH/ready" 2>/dev/null)" != "$RECIPE" ] || [ ! -f "$DISK" ] || [ ! -f "$DISK2" ]; then
    build_disks
else
    note "reusing the bench disks in $BENCH (--rebuild to build them again)"
fi

# ---------------------------------------------------------------- the S3 server
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
G=$WORK/garage
BUCKET=strata-bench
SIGV4="aws:amz:garage:s3"
g() { "$GARAGE" -c "$G/garage.toml" "$@"; }
start_garage() {
    local rpc admin node="" _ keyinfo
    mkdir -p "$G/meta" "$G/data"
    S3_PORT=$(free_port); rpc=$(free_port); admin=$(free_port)
    cat >"$G/garage.toml" <<EOF
metadata_dir = "$G/meta"
data_dir = "$G/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
data_fsync = $SERVER_FSYNC
metadata_fsync = $SERVER_FSYNC
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
    RUST_LOG=garage=warn "$GARAGE" -c "$G/garage.toml" server >"$G/server.log" 2>&1 &
    GARAGE_PID=$!
    for _ in $(seq 150); do
        node=$(g node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$node" ] && break
        kill -0 "$GARAGE_PID" 2>/dev/null || die "garage exited: $(tail -5 "$G/server.log")"
        sleep 0.2
    done
    [ -n "$node" ] || die "garage did not start (see $G/server.log)"
    for _ in $(seq 20); do g layout assign -z dc1 -c 100G "$node" >/dev/null 2>&1 && break; sleep 0.5; done
    g layout apply --version 1 >/dev/null
    g bucket create "$BUCKET" >/dev/null
    keyinfo=$(g key create strata-bench-key)
    KEY_ID=$(awk '/Key ID/ {print $NF}' <<<"$keyinfo")
    KEY_SECRET=$(awk '/Secret key/ {print $NF}' <<<"$keyinfo")
    if [ -z "$KEY_ID" ] || [ -z "$KEY_SECRET" ]; then die "no key in: $keyinfo"; fi
    g bucket allow --read --write --owner "$BUCKET" --key strata-bench-key >/dev/null
    export AWS_ACCESS_KEY_ID=$KEY_ID AWS_SECRET_ACCESS_KEY=$KEY_SECRET AWS_REGION=garage
    export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
    export AWS_CONFIG_FILE=$WORK/no-aws-files AWS_SHARED_CREDENTIALS_FILE=$WORK/no-aws-files
    export AWS_EC2_METADATA_DISABLED=true NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3 AWS_DEFAULT_REGION
    for _ in $(seq 150); do
        [ "$(s3curl -I -o /dev/null -w '%{http_code}' "$AWS_ENDPOINT_URL/$BUCKET")" = 200 ] && return 0
        sleep 0.1
    done
    die "the bucket is not served (see $G/server.log)"
}
# s3curl ARGS...: curl with the key's SigV4 signature (an independent client, for cleanup).
s3curl() {
    curl -sS --noproxy '*' --max-time 60 --aws-sigv4 "$SIGV4" --user "$KEY_ID:$KEY_SECRET" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}
# Deletes every object of the bucket (and its incomplete uploads are dropped with the server).
# shellcheck disable=SC2317 # also run by the trap
delete_objects() {
    local k n=0
    [ -n "$KEY_ID" ] || return 0
    for k in $(s3curl "http://127.0.0.1:$S3_PORT/$BUCKET?list-type=2" | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g'); do
        s3curl -X DELETE -o /dev/null "http://127.0.0.1:$S3_PORT/$BUCKET/$k" && n=$((n + 1))
    done
    note "deleted $n objects from the bucket"
}
garage_ticks() { awk '{print $14 + $15}' "/proc/$GARAGE_PID/stat"; }
start_garage
note "Garage $("$GARAGE" --version | awk '{print $2}') at $AWS_ENDPOINT_URL (pid $GARAGE_PID), data in $G"

# ---------------------------------------------------------------- measuring
STAMP=$(date -u +%Y%m%d-%H%M%S)
CSV=$BENCH/runs-$STAMP.csv
echo "round,op,where,seconds,cpu,server_cpu" >"$CSV"
CLK_TCK=$(getconf CLK_TCK)
round=0
# record OP WHERE T0 T1 CPU GTICKS0
record() {
    local g1
    g1=$(garage_ticks)
    echo "$round,$1,$2,$(awk -v a="$3" -v b="$4" -v c="$5" -v g="$((g1 - $6))" -v hz="$CLK_TCK" \
        'BEGIN {printf "%.4f,%.2f,%.2f", b - a, c, g / hz}')" >>"$CSV"
}
# timed OP WHERE OUT CMD...: CMD (stdout to OUT) under /usr/bin/time.
timed() {
    local op=$1 where=$2 out=$3 t0 t1 g0 u s
    shift 3
    sync
    g0=$(garage_ticks)
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S' -o "$WORK/.time" "$@" >"$out"
    t1=$EPOCHREALTIME
    read -r u s <"$WORK/.time"
    record "$op" "$where" "$t0" "$t1" "$(awk -v u="$u" -v s="$s" 'BEGIN {print u + s}')" "$g0"
}
mount_ticks() { awk '{print $14 + $15}' "/proc/$MOUNT_PID/stat"; }
# mount_image IMAGE [WHERE]: a fresh strata mount at $MNT; timed as "mount" when WHERE is given.
mount_image() {
    local t0 t1 g0
    sync
    g0=$(garage_ticks)
    t0=$EPOCHREALTIME
    "$S" mount "$1" "$MNT"
    t1=$EPOCHREALTIME
    MOUNT_PID=$(pgrep -n -f -x "$S mount $1 $MNT") || die "no strata mount process for $1"
    if [ -n "${2:-}" ]; then record mount "$2" "$t0" "$t1" "$(mount_ticks | awk -v hz="$CLK_TCK" '{print $1 / hz}')" "$g0"; fi
}
unmount_image() {
    fusermount3 -u "$MNT" || umount -l "$MNT"
    # Wait for the FUSE process to be gone, so the next mount starts cold.
    while [ -n "$MOUNT_PID" ] && [ -e "/proc/$MOUNT_PID" ] &&
        ! grep -q '^State:.*Z' "/proc/$MOUNT_PID/status" 2>/dev/null; do sleep 0.05; done
    MOUNT_PID=
}
# mounted OP WHERE CMD...: CMD timed on the current mount; CPU is the mount process's.
mounted() {
    local op=$1 where=$2 t0 t1 g0 c0 c1
    shift 2
    g0=$(garage_ticks); c0=$(mount_ticks)
    t0=$EPOCHREALTIME
    "$@"
    t1=$EPOCHREALTIME
    c1=$(mount_ticks)
    record "$op" "$where" "$t0" "$t1" "$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN {print (b - a) / hz}')" "$g0"
}
# shellcheck disable=SC2317 # run through mounted and counted_mount
read_big() {
    if [ "$round" = 0 ]; then sha256sum <"$MNT/p1/big.bin" | cut -d' ' -f1 >"$WORK/check-big-$where"
    else cat "$MNT/p1/big.bin" >/dev/null; fi
}
# shellcheck disable=SC2317 # run through mounted and counted_mount
count_files() {
    local n
    n=$(find "$MNT" -type f | wc -l)
    [ "$n" -ge 40000 ] || die "find saw $n files on the mount of $where (expected 40 001)"
    [ "$round" != 0 ] || echo "$n" >"$WORK/check-find-$where"
}

LOCAL_FULL=$WORK/full.strata
LOCAL_INCR=$WORK/incr.strata
URL=s3://$BUCKET/bench
image() { # WHERE KIND(full|incr)
    if [ "$1" = local ]; then echo "$WORK/$2.strata"; else echo "$URL/$2.strata"; fi
}
# The sides of a step in this round's order: local first in odd rounds, the bucket in even.
sides() { if [ $((round % 2)) = 0 ] && [ "$round" != 0 ]; then echo bucket local; else echo local bucket; fi; }

one_round() {
    local where full
    for where in $(sides); do
        timed create "$where" /dev/null "$S" create -q --force "$DISK" "$(image "$where" full)"
    done
    for where in $(sides); do
        timed incremental "$where" /dev/null \
            "$S" create -q --force --incremental "$(image "$where" full)" "$DISK2" "$(image "$where" incr)"
    done
    for where in $(sides); do
        rm -f "$WORK/restored.img"
        timed restore "$where" /dev/null "$S" restore -q --force "$(image "$where" full)" "$WORK/restored.img"
        if [ "$round" = 0 ]; then mv "$WORK/restored.img" "$WORK/check-restored-$where.img"; fi
        rm -f "$WORK/restored.img"
    done
    for where in $(sides); do
        timed info "$where" /dev/null "$S" info "$(image "$where" full)"
    done
    for where in $(sides); do
        timed ls-R "$where" "$WORK/ls-$where.txt" "$S" ls -R "$(image "$where" full)" /p1
    done
    for where in $(sides); do
        full=$(image "$where" full)
        mount_image "$full" "$where"
        mounted read "$where" read_big
        unmount_image
    done
    for where in $(sides); do
        mount_image "$(image "$where" full)"
        mounted find "$where" count_files
        unmount_image
    done
}

check_round0() {
    note "checking the warm-up round's outputs"
    cmp "$WORK/check-restored-local.img" "$WORK/check-restored-bucket.img" ||
        die "the restores from local and from the bucket differ"
    rm -f "$WORK"/check-restored-*.img
    cmp -s "$WORK/ls-local.txt" "$WORK/ls-bucket.txt" || die "ls -R from local and from the bucket differ"
    LS_ENTRIES=$(grep -c . "$WORK/ls-local.txt")
    cmp -s "$WORK/check-big-local" "$WORK/check-big-bucket" || die "big.bin reads differently from the bucket"
    cmp -s "$WORK/check-find-local" "$WORK/check-find-bucket" || die "find counts differently on the bucket's mount"
    FILES=$(cat "$WORK/check-find-local")
    local w
    for w in local bucket; do
        "$S" restore -q --force "$(image "$w" incr)" "$WORK/check-incr-$w.img"
    done
    cmp "$WORK/check-incr-local.img" "$WORK/check-incr-bucket.img" ||
        die "the incrementals, local and in the bucket, restore differently"
    rm -f "$WORK"/check-incr-*.img
    note "checks passed: restores equal, incrementals restore equal, ls -R equal ($LS_ENTRIES lines), big.bin sha256 equal, find $FILES files on both"
}

# ---------------------------------------------------------------- counting
PROXY_URL=
proxy_start() { # NAME
    rm -f "$WORK/proxy.port"
    python3 "$HERE/s3-count-proxy.py" "$S3_PORT" "$WORK/proxy.port" "$WORK/count-$1.json" &
    PROXY_PID=$!
    local _
    for _ in $(seq 100); do [ -s "$WORK/proxy.port" ] && break; sleep 0.05; done
    [ -s "$WORK/proxy.port" ] || die "the counting proxy did not start"
    PROXY_URL=http://127.0.0.1:$(cat "$WORK/proxy.port")
}
proxy_stop() {
    kill -TERM "$PROXY_PID"
    wait "$PROXY_PID"
    PROXY_PID=
}
# counted NAME CMD...: CMD with its requests going through a fresh proxy.
counted() {
    local name=$1
    shift
    proxy_start "$name"
    AWS_ENDPOINT_URL=$PROXY_URL "$@" >/dev/null
    proxy_stop
}
# counted_mount NAME IMAGE [CMD...]: a mount through a fresh proxy, CMD on it, the unmount.
counted_mount() {
    local name=$1 img=$2
    shift 2
    proxy_start "$name"
    AWS_ENDPOINT_URL=$PROXY_URL mount_image "$img"
    if [ $# -gt 0 ]; then "$@"; fi
    unmount_image
    proxy_stop
}
count_all() {
    local full=$URL/count-full.strata incr=$URL/count-incr.strata
    note "counting requests (through benches/s3-count-proxy.py)"
    counted create "$S" create -q "$DISK" "$full"
    counted incremental "$S" create -q --incremental "$full" "$DISK2" "$incr"
    counted restore "$S" restore -q --force "$full" "$WORK/restored.img"
    rm -f "$WORK/restored.img"
    counted restore-incr "$S" restore -q --force "$incr" "$WORK/restored.img"
    rm -f "$WORK/restored.img"
    counted info "$S" info "$full"
    counted ls-R "$S" ls -R "$full" /p1
    counted_mount mount "$full"
    where=count counted_mount read "$full" read_big
    where=count counted_mount find "$full" count_files
}

# ---------------------------------------------------------------- the rounds
note "reading the disks into the page cache"
cat "$DISK" "$DISK2" >/dev/null
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$EPOCHREALTIME
note "warm-up round (not counted; checks the outputs)"
round=0
one_round
check_round0
for round in $(seq "$RUNS"); do
    note "round $round of $RUNS"
    one_round
done
round=count
count_all
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
MINUTES=$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", (b - a) / 60}')
mkdir -p "$BENCH/counts-$STAMP"
cp "$WORK"/count-* "$BENCH/counts-$STAMP/"

# ---------------------------------------------------------------- report
dirty=
[ -z "$(git -C "$REPO" status --porcelain -- src platform Cargo.toml Cargo.lock 2>/dev/null)" ] ||
    dirty=" + uncommitted changes"
export RUNS SERVER_FSYNC LOAD0 LOAD1 MINUTES LS_ENTRIES FILES
REV="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty"
VERSION=$("$S" --version | cut -d' ' -f2)
GARAGE_VERSION=$("$GARAGE" --version | awk '{print $2}')
MACHINE="$(nproc) cores, $(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo) GiB RAM, kernel $(uname -r)"
FS="$(df --output=fstype "$WORK" | tail -1) ($(df --output=source "$WORK" | tail -1))"
DISK_BYTES=$(stat -c %s "$DISK")
FULL_BYTES=$(stat -c %s "$LOCAL_FULL")
INCR_BYTES=$(stat -c %s "$LOCAL_INCR")
BIG_BYTES=$((300 << 20))
export REV VERSION GARAGE_VERSION MACHINE FS DISK_BYTES FULL_BYTES INCR_BYTES BIG_BYTES
python3 - "$CSV" "$WORK" >"$WORK/report.md" <<'EOF'
import csv, json, os, statistics, sys, time
path, work = sys.argv[1:3]
env = os.environ
rows = [r for r in csv.DictReader(open(path)) if r["round"] not in ("0", "count")]
MiB, MB = 1 << 20, 1e6
def vals(op, where, field="seconds"):
    return [float(r[field]) for r in rows if r["op"] == op and r["where"] == where]
def med(op, where, field="seconds"):
    v = vals(op, where, field)
    return statistics.median(v) if v else float("nan")
def rng(op, where):
    v = vals(op, where)
    if not v:
        return "-"
    return ("%.3f-%.3f" if max(v) < 1 else "%.2f-%.2f") % (min(v), max(v))
def pair_ratio(op):
    a, b = vals(op, "bucket"), vals(op, "local")
    return statistics.median([x / y for x, y in zip(a, b)]) if a and b else float("nan")
def secs(v):
    return "%.3f s" % v if v < 1 else "%.2f s" % v

full, incr, disk, big = (int(env[k]) for k in ("FULL_BYTES", "INCR_BYTES", "DISK_BYTES", "BIG_BYTES"))
print()
print("## object_storage.sh, %s UTC: %s rounds, medians (min-max)" % (
    time.strftime("%Y-%m-%d %H:%M", time.gmtime()), env["RUNS"]))
print()
print("strata %s (%s); Garage %s, one node on 127.0.0.1 (compression_level none, data_fsync and metadata_fsync %s);"
      % (env["VERSION"], env["REV"], env["GARAGE_VERSION"], "on" if env["SERVER_FSYNC"] == "true" else "off (Garage's default)"))
print("%s; work files and Garage's data on %s; load average before %s, after %s; %s min"
      % (env["MACHINE"], env["FS"], env["LOAD0"], env["LOAD1"], env["MINUTES"]))
print("Disk %.0f MiB (GPT, ext4, %s files); full image %.1f MiB, incremental %.1f MiB; big.bin %.0f MiB"
      % (disk / MiB, env["FILES"], full / MiB, incr / MiB, big / MiB))
print()
print("| operation | local | bucket | bucket / local | target |")
print("| --- | ---: | ---: | ---: | --- |")
labels = [
    ("create", "create (full)", "<= 1.3x"),
    ("incremental", "create --incremental (parent where the child goes)", ""),
    ("restore", "restore (full) to a file", ""),
    ("info", "info", ""),
    ("ls-R", "ls -R /p1 (%s lines)" % env["LS_ENTRIES"], ""),
    ("mount", "mount (until ready)", ""),
    ("read", "mounted cat big.bin (fresh mount)", ""),
    ("find", "mounted find -type f, counted (fresh mount)", ""),
]
for op, label, target in labels:
    l, b = med(op, "local"), med(op, "bucket")
    extra_l = extra_b = ""
    if op == "read":
        extra_l, extra_b = " (%.0f MB/s)" % (big / MB / l), " (%.0f MB/s)" % (big / MB / b)
    if op == "create":
        extra_l, extra_b = " (%.0f MB/s of image)" % (full / MB / l), " (%.0f MB/s of image)" % (full / MB / b)
    r, pr = b / l, pair_ratio(op)
    met = ""
    if target:
        met = "%s: %s" % (target, "**met**" if max(r, pr) <= 1.3 else "**not met**")
    print("| %s | %s%s (%s) | %s%s (%s) | %.2fx (%.2fx) | %s |" % (
        label, secs(l), extra_l, rng(op, "local"), secs(b), extra_b, rng(op, "bucket"), r, pr, met))
print()
print("Ratios: of the medians, then in parentheses the median of each round's own ratio.")
print()
print("| CPU time, medians | strata, local | strata, bucket | Garage, during the bucket run |")
print("| --- | ---: | ---: | ---: |")
for op, label, _ in labels:
    print("| %s | %.2f s | %.2f s | %.2f s |" % (label, med(op, "local", "cpu"), med(op, "bucket", "cpu"),
                                              med(op, "bucket", "server_cpu")))
print("(mount, read and find: the mount process's CPU)")
print()

def load(name):
    return json.load(open(os.path.join(work, "count-%s.json" % name)))
counts = [("create", "create (full)", full, "image"),
          ("incremental", "create --incremental, parent in the bucket", incr, "image"),
          ("restore", "restore (full)", full, "image"),
          ("restore-incr", "restore of the incremental (reads its parent too)", full + incr, "both images"),
          ("info", "info", full, "image"),
          ("ls-R", "ls -R /p1", full, "image"),
          ("mount", "mount + unmount, nothing read", full, "image"),
          ("read", "mount, cat big.bin, unmount", big, "big.bin"),
          ("find", "mount, find -type f, unmount", full, "image")]
def adjacent(name):
    """Ranged GETs of an object that start right after the end of another GET of it: reads
    one larger GET could have made."""
    ends, starts = set(), []
    for line in open(os.path.join(work, "count-%s.json.log" % name)):
        f = line.rstrip("\n").split("\t")
        if f[1] == "GET range" and f[3].startswith("bytes="):
            a, b = map(int, f[3][6:].split("-"))
            ends.add((f[2], b))
            starts.append((f[2], a))
    return sum((p, a - 1) in ends for p, a in starts)
def kib(n):
    return "%.1f MiB" % (n / MiB) if n >= MiB else "%.0f KiB" % (n / 1024) if n >= 1024 else "%d B" % n
print("Requests to the bucket, counted by benches/s3-count-proxy.py (one run of each):")
print()
print("| operation | requests | by kind | TCP connections | sent (request bodies) | fetched (GET bodies) | fetched / reference | GETs of a range already fetched | GETs starting where another ended |")
print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for name, label, ref, refname in counts:
    c = load(name)
    req = c["requests"]
    kinds = ", ".join("%s %d" % (k, v) for k, v in sorted(req.items(), key=lambda kv: -kv[1]))
    bad = {k: v for k, v in c["statuses"].items() if not k.startswith("2")}
    if bad:
        kinds += " (answers %s)" % ", ".join("%s: %d" % kv for kv in sorted(bad.items()))
    print("| %s | %d | %s | %d | %s | %s | %.3f of the %s (%s) | %d (%s) | %d |" % (
        label, sum(req.values()), kinds, c["connections"], kib(c["sent_body"]), kib(c["fetched_body"]),
        c["fetched_body"] / ref, refname, kib(ref), c["repeat_gets"], kib(c["repeat_bytes"]), adjacent(name)))
print()
print("Sizes of the ranged GETs (count of each):")
print()
bands = [(1, 1, "1 B"), (2, 65535, "< 64 KiB"), (65536, 262143, "64-256 KiB"), (262144, 262144, "256 KiB (a page)"),
         (262145, 1048576, "256 KiB-1 MiB"), (1048577, 4 << 20, "1-4 MiB"), ((4 << 20) + 1, 1 << 62, "> 4 MiB")]
print("| operation | " + " | ".join(b[2] for b in bands) + " |")
print("| --- | " + " | ".join("---:" for _ in bands) + " |")
for name, label, _, _ in counts:
    sizes = load(name)["get_sizes"]
    cells = [sum(n for s, n in sizes.items() if lo <= int(s) <= hi) for lo, hi, _ in bands]
    print("| %s | %s |" % (label, " | ".join(str(c) if c else "" for c in cells)))
print()
print("Every round's figures: %s; the counts: %s" % (path, path.replace("runs-", "counts-").replace(".csv", "/")))
EOF
echo
tee -a "$BENCH/results.md" <"$WORK/report.md"
exit 0
}
