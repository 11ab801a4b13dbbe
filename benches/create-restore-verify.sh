#!/usr/bin/env bash
# create-restore-verify.sh - time strata against zstd on a realistic test disk.
#
# Usage: benches/create-restore-verify.sh [--runs N] [--out-dir DIR]
#                                         [--rev REV] [--max-wait S]
#                                         [--rebuild-disk] [--disk-only]
#
#   --runs N         timed rounds (default 5); every figure is the median
#   --out-dir DIR    where images, .zst files and restored disks are written
#                    (default: a fresh directory in /dev/shm, i.e. tmpfs, so
#                    that the storage device is not what is measured)
#   --rev REV        benchmark git revision REV (exported with git archive and
#                    built under STRATA_BENCH_DIR) instead of the working tree
#   --max-wait S     before each timed command, wait up to S seconds (default
#                    60) for the machine to be idle (under 10% CPU busy)
#   --rebuild-disk   build the test disk again even if a cached one exists
#   --disk-only      build (or check) the test disk and stop
#   -h, --help       show this help
#
# Environment: STRATA_BENCH_DIR (default /var/tmp/strata-bench) holds the
# cached test disk (disk.img, 2.5 GiB, plus disk.info) and the results of
# each run (results-*.md, runs-*.csv). Building the disk needs root (the NTFS
# partition is filled through an ntfs-3g mount) and about 6 GiB there.
#
# The test disk: GPT, an NTFS partition and an ext4 partition of 1216 MiB
# each, both about 40% full of a mix of files copied from this machine's
# /usr (programs, libraries, documentation, man pages, locales, headers,
# Python sources), generated documents (fixtures/gen-files.py), logs, and
# incompressible "media" files (photos, videos, music, archives). Before
# each filesystem is made, 30% of its partition (from the middle on) is
# filled with old data (file contents and random bytes, as left behind by
# deleted files); the rest of the free space and 126 MiB of unpartitioned
# space at the end are zeros. The disk file is fully allocated (no holes),
# like a real disk.
#
# Measured, in one run, each round interleaving the tools and alternating
# which one goes first:
#   create   strata create --quiet --clone        vs  zstd -3 -T0
#            strata create --clone --threads 1    vs  zstd -3 -T1
#            strata create --quiet (used blocks only, for reference)
#   restore  strata restore (to a sparse file)    vs  zstd -d --sparse
#   verify   strata verify                        vs  zstd -t
# --clone stores every sector, old data in free space included, so that
# image holds what the .zst holds; strata's default stores only the blocks
# the filesystems use (revisions without --clone always store every sector).
# Every command's output ends flushed to stable storage: strata fsyncs what
# it writes, and each zstd command that writes a file is followed by
# `sync FILE`. All inputs are read warm from the page cache (they are read
# once before the first round); caches are not dropped between runs. A
# warm-up round, not counted, comes first and checks that both restores give
# back the disk byte for byte. Each command waits for an idle machine first
# (see --max-wait); a run that started on an idle machine but during which
# other processes used more than 10% of the CPU is repeated (up to 3 times),
# and the load from other processes is reported.

# The whole script is one { } group, so bash parses it completely before
# running it: editing the file during a run does not affect that run.
{
set -euo pipefail
export LC_ALL=C TZ=UTC

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROG=create-restore-verify.sh

die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }
usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

RUNS=5
OUT=
REBUILD=0
DISK_ONLY=0
REV=
MAX_WAIT=60
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --out-dir) OUT=${2:?--out-dir needs a directory}; shift 2 ;;
        --max-wait) MAX_WAIT=${2:?--max-wait needs seconds}; shift 2 ;;
        --rev) REV=${2:?--rev needs a git revision}; shift 2 ;;
        --rebuild-disk) REBUILD=1; shift ;;
        --disk-only) DISK_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
[[ "$MAX_WAIT" =~ ^[0-9]+$ ]] || die "--max-wait must be a number of seconds"

WORK=${STRATA_BENCH_DIR:-/var/tmp/strata-bench}
DISK=$WORK/disk.img
INFO=$WORK/disk.info
# Bump when the recipe below changes, so cached disks are rebuilt.
DISK_RECIPE=3

MIB=$((1024 * 1024))
DISK_MIB=2560
P1_START_MIB=1 P1_MIB=1216      # NTFS
P2_START_MIB=1217 P2_MIB=1216   # ext4; 126 MiB stay unpartitioned at the end

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install $2"; }

mkdir -p "$WORK"

# ---------------------------------------------------------------------------
# Cleanup: only what this script created.
# ---------------------------------------------------------------------------
MNT=
NTFS_PID=
SCRATCH=
OUT_CREATED=0
cleanup() {
    local rc=$?
    set +e
    if [ -n "$MNT" ] && mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi
    if [ -n "$NTFS_PID" ]; then kill "$NTFS_PID" 2>/dev/null; wait "$NTFS_PID" 2>/dev/null; fi
    [ -z "$SCRATCH" ] || rm -rf "$SCRATCH"
    [ "$OUT_CREATED" = 0 ] || rm -rf "$OUT"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Content helpers (Python 3 stdlib only).
# ---------------------------------------------------------------------------
write_helpers() {  # DIR
    cat >"$1/content.py" <<'EOF'
"""Fills a directory tree for one partition, or writes old data into a
partition image. Deterministic for a given machine: files are chosen by a
hash of their path and copied in sorted order; generated bytes come from
seeded PRNGs."""
import hashlib, os, random, shutil, stat, subprocess, sys, time

MiB = 1 << 20

def machine_files(roots, salt, exts=None, max_size=16 * MiB):
    """Regular files under roots, each with a stable pseudo-random key."""
    out = []
    for root in roots:
        for dp, dns, fns in os.walk(root):
            dns.sort()
            for f in sorted(fns):
                p = os.path.join(dp, f)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or st.st_size > max_size:
                    continue
                if exts and not f.endswith(exts):
                    continue
                if not os.access(p, os.R_OK):
                    continue
                key = hashlib.sha256((salt + p).encode()).digest()[:8]
                out.append((key, root, os.path.relpath(p, root), st.st_size))
    return out

def sample(files, budget):
    """About budget bytes of files, each taken or not by its own key alone
    (so that installing a package changes the choice only a little);
    returned sorted by path."""
    total = sum(f[3] for f in files)
    limit = int(min(1.0, budget / total) * 2**64) if total else 0
    chosen = [(root, rel, size) for key, root, rel, size in files
              if int.from_bytes(key, "big") < limit]
    return (sorted(chosen, key=lambda t: (t[1].encode(), t[0])),
            sum(t[2] for t in chosen))

def copy_sample(dest, prefix, roots, budget_mib, salt, exts=None):
    files, used = sample(machine_files(roots, salt, exts), budget_mib * MiB)
    for root, rel, size in files:
        src = os.path.join(root, rel)
        # Keep the roots apart when there are several (e.g. include/ and python3.11/).
        sub = os.path.basename(root.rstrip("/")) if len(roots) > 1 else ""
        dst = os.path.join(dest, prefix, sub, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
        st = os.stat(src)
        os.utime(dst, (st.st_mtime, st.st_mtime))
    return len(files), used

def tree_size(top):
    n = used = 0
    for dp, dns, fns in os.walk(top):
        for f in fns:
            n += 1
            used += os.lstat(os.path.join(dp, f)).st_size
    return n, used

def random_file(path, size, seed, magic=b""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    r = random.Random(seed)
    with open(path, "wb") as f:
        f.write(magic)
        left = size - len(magic)
        while left > 0:
            n = min(left, 4 * MiB)
            f.write(r.randbytes(n))
            left -= n

def log_file(path, size, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    r = random.Random(seed)
    hosts = ["desk-01", "laptop", "nas"]
    procs = ["systemd[1]", "kernel", "sshd[812]", "cron[640]", "NetworkManager[702]",
             "dbus-daemon[611]", "backup.sh[2231]", "firefox[4410]", "pulseaudio[1312]"]
    msgs = ["Started Session {n} of user alice.", "Accepted publickey for alice from 192.168.1.{n} port {p}",
            "eth0: link up, 1000Mbps, full-duplex", "CPU{c}: Core temperature above threshold, cpu clock throttled",
            "({u}) CMD (run-parts /etc/cron.hourly)", "Finished backup of /home/alice: {n} files, {p} MB",
            "dhcp4 (eth0): state changed new lease, address=192.168.1.{n}", "Reloading configuration...",
            "audit: type=1400 apparmor=\"ALLOWED\" operation=\"open\" profile=\"firefox\" pid={p}",
            "usb 1-{c}: new high-speed USB device number {n} using xhci_hcd"]
    t = 1672531200
    with open(path, "w") as f:
        written = 0
        while written < size:
            t += r.randint(0, 40)
            line = "%s %s %s: %s\n" % (
                time.strftime("%b %d %H:%M:%S", time.gmtime(t)),
                r.choice(hosts), r.choice(procs),
                r.choice(msgs).format(n=r.randint(1, 254), p=r.randint(1024, 65535),
                                      c=r.randint(0, 7), u=r.choice(["root", "alice"])))
            f.write(line)
            written += len(line)

def gen_docs(dest, seed, count, big, genfiles):
    subprocess.run([sys.executable, genfiles, "--quiet", "--seed", str(seed), "--count",
                    str(count), "--big", str(big), dest], check=True)

def profile_ntfs(dest, genfiles):
    """A Windows data volume: programs, a user's documents, projects and media."""
    u = os.path.join(dest, "Users", "alice")
    report = []
    report.append(("programs", copy_sample(dest, "Program Files/Tools",
                   ["/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/libexec"], 130, "ntfs-bin")))
    report.append(("reference docs", copy_sample(u, "Documents/Reference",
                   ["/usr/share/doc", "/usr/share/man"], 35, "ntfs-doc")))
    report.append(("source code", copy_sample(u, "Projects",
                   ["/usr/include", "/usr/lib/python3.11"], 70, "ntfs-src",
                   (".h", ".hpp", ".c", ".py", ".txt", ".rst", ".json", ".cfg", ".toml"))))
    gen_docs(os.path.join(u, "Documents", "Personal"), 101, 3000, 12, genfiles)
    report.append(("documents", tree_size(os.path.join(u, "Documents", "Personal"))))
    r = random.Random(7)
    pics = 0
    for i in range(60):
        size = r.randint(300 * 1024, 1700 * 1024)
        random_file(os.path.join(u, "Pictures", "2023", "IMG_%04d.jpg" % (1000 + i)), size,
                    1000 + i, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
        pics += size
    random_file(os.path.join(u, "Videos", "holiday-2022.mp4"), 64 * MiB, 1,
                b"\x00\x00\x00\x20ftypisom")
    random_file(os.path.join(u, "Videos", "screen-recording.mp4"), 28 * MiB, 2,
                b"\x00\x00\x00\x20ftypisom")
    random_file(os.path.join(u, "Downloads", "photos-2021.zip"), 16 * MiB, 3, b"PK\x03\x04")
    log_file(os.path.join(u, "AppData", "Local", "Sync", "sync.log"), 20 * MiB, 4)
    report.append(("media (random)", (63, pics + 108 * MiB)))
    report.append(("log", (1, 20 * MiB)))
    return report

def profile_ext4(dest, genfiles):
    """A Linux root filesystem with a home directory."""
    h = os.path.join(dest, "home", "bob")
    report = []
    report.append(("libraries", copy_sample(dest, "usr/lib/x86_64-linux-gnu",
                   ["/usr/lib/x86_64-linux-gnu"], 130, "ext4-lib")))
    report.append(("programs", copy_sample(dest, "usr/bin", ["/usr/bin"], 30, "ext4-bin")))
    report.append(("shared data", copy_sample(dest, "usr/share", ["/usr/share"], 95, "ext4-share")))
    report.append(("source code", copy_sample(dest, "usr/src",
                   ["/usr/include", "/usr/lib/python3.11"], 60, "ext4-src")))
    gen_docs(os.path.join(h, "docs"), 202, 2500, 8, genfiles)
    report.append(("documents", tree_size(os.path.join(h, "docs"))))
    r = random.Random(8)
    music = 0
    for i in range(30):
        size = r.randint(1024 * 1024, 2400 * 1024)
        random_file(os.path.join(h, "Music", "album", "track%02d.ogg" % (i + 1)), size,
                    2000 + i, b"OggS\x00\x02")
        music += size
    random_file(os.path.join(h, "backups", "home-2023-11.tar.zst"), 24 * MiB, 5,
                b"\x28\xb5\x2f\xfd")
    log_file(os.path.join(dest, "var", "log", "syslog.1"), 20 * MiB, 6)
    report.append(("media (random)", (31, music + 24 * MiB)))
    report.append(("log", (1, 20 * MiB)))
    return report

def stale(img, offset, length, seed):
    """Old data in free space: file contents (from a different sample than the
    live files) alternating with random bytes, 8 MiB then 4 MiB."""
    files = [os.path.join(root, rel) for root, rel, _ in
             sample(machine_files(["/usr/lib/x86_64-linux-gnu", "/usr/share"], "stale%d" % seed),
                    length)[0]]
    r = random.Random(seed)
    with open(img, "r+b") as out:
        out.seek(offset)
        left, fi = length, 0
        while left > 0:
            n = min(left, 8 * MiB)
            piece = bytearray()
            while len(piece) < n and fi < len(files):
                with open(files[fi], "rb") as f:
                    piece += f.read(n - len(piece))
                fi += 1
            if len(piece) < n:
                piece += r.randbytes(n - len(piece))
            out.write(piece)
            left -= n
            n = min(left, 4 * MiB)
            out.write(r.randbytes(n))
            left -= n

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "fill":
        dest, profile, genfiles = sys.argv[2:5]
        rep = {"ntfs": profile_ntfs, "ext4": profile_ext4}[profile](dest, genfiles)
        for what, (n, used) in rep:
            print("  %-16s %5d files %8.1f MiB" % (what, n, used / MiB))
    elif cmd == "stale":
        stale(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit("unknown command " + cmd)
EOF
}

# ---------------------------------------------------------------------------
# Test disk.
# ---------------------------------------------------------------------------
disk_is_cached() {
    [ -f "$DISK" ] && [ -f "$INFO" ] &&
        grep -qx "recipe: $DISK_RECIPE" "$INFO" &&
        [ "$(stat -c %s "$DISK")" = $((DISK_MIB * MIB)) ]
}

build_disk() {
    [ "$(id -u)" = 0 ] || die "building the test disk needs root (ntfs-3g mount); re-run as root"
    need python3 python3; need sgdisk gdisk; need mkntfs ntfs-3g; need ntfs-3g ntfs-3g
    need mke2fs e2fsprogs; need dumpe2fs e2fsprogs; need e2fsck e2fsprogs
    need ntfsfix ntfs-3g
    [ -e /dev/fuse ] || die "/dev/fuse is missing (needed by ntfs-3g)"
    local started=$SECONDS
    SCRATCH=$(mktemp -d "$WORK/build.XXXXXX")
    write_helpers "$SCRATCH"
    local py="python3 $SCRATCH/content.py" genfiles=$REPO/fixtures/gen-files.py
    local p1=$SCRATCH/p1.img p2=$SCRATCH/p2.img

    # Old data first: 30% of each partition, at 50%-80% of it.
    note "building the test disk in $WORK (takes a few minutes)"
    truncate -s $((P1_MIB * MIB)) "$p1"
    truncate -s $((P2_MIB * MIB)) "$p2"
    $py stale "$p1" $((P1_MIB * MIB / 2)) $((P1_MIB * MIB * 30 / 100 / MIB * MIB)) 11
    $py stale "$p2" $((P2_MIB * MIB / 2)) $((P2_MIB * MIB * 30 / 100 / MIB * MIB)) 22

    # Partition 1: NTFS, quick-formatted (old data stays) and filled through ntfs-3g.
    note "partition 1: NTFS, $P1_MIB MiB"
    mkntfs -q -F -f -T -s 512 -p $((P1_START_MIB * MIB / 512)) -H 255 -S 63 -L Data "$p1" \
        2>"$SCRATCH/mkntfs.log" || { cat "$SCRATCH/mkntfs.log" >&2; die "mkntfs failed"; }
    MNT=$SCRATCH/mnt
    mkdir -p "$MNT"
    ntfs-3g -o no_detach,big_writes "$p1" "$MNT" </dev/null >"$SCRATCH/ntfs-3g.log" 2>&1 &
    NTFS_PID=$!
    for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
    mountpoint -q "$MNT" || { cat "$SCRATCH/ntfs-3g.log" >&2; die "ntfs-3g did not mount"; }
    $py fill "$MNT" ntfs "$genfiles"
    local n1_files n1_used n1_size
    n1_files=$(find "$MNT" -type f | wc -l)
    read -r n1_size n1_used < <(df -B1 --output=size,used "$MNT" | tail -1)
    umount "$MNT"
    wait "$NTFS_PID" || die "ntfs-3g exited with an error"
    NTFS_PID= MNT=
    ntfsfix -n "$p1" >"$SCRATCH/ntfsfix.log" 2>&1 || { cat "$SCRATCH/ntfsfix.log" >&2; die "NTFS is not clean"; }

    # Partition 2: ext4 made from a staged tree, without discarding (old data stays).
    note "partition 2: ext4, $P2_MIB MiB"
    local tree=$SCRATCH/tree2 uuid=53545241-5441-4245-4e43-000000000002 n2_files
    mkdir -p "$tree"
    $py fill "$tree" ext4 "$genfiles"
    n2_files=$(find "$tree" -type f | wc -l)
    find "$tree" -type d -exec touch -h -d @1700000000 {} +
    E2FSPROGS_FAKE_TIME=1704067200 mke2fs -q -F -t ext4 -b 4096 -I 256 -L linux -U "$uuid" \
        -E "root_owner=0:0,hash_seed=$uuid,lazy_itable_init=0,lazy_journal_init=0,nodiscard" \
        -d "$tree" "$p2"
    rm -rf "$tree"
    e2fsck -fn "$p2" >"$SCRATCH/e2fsck.log" 2>&1 || { cat "$SCRATCH/e2fsck.log" >&2; die "ext4 is not clean"; }
    local n2_blocks n2_free
    n2_blocks=$(dumpe2fs -h "$p2" 2>/dev/null | awk -F: '/^Block count/ {gsub(/ /,"",$2); print $2}')
    n2_free=$(dumpe2fs -h "$p2" 2>/dev/null | awk -F: '/^Free blocks/ {gsub(/ /,"",$2); print $2}')

    # Assemble: a fully written (not sparse) file, so that no tool can skip holes.
    note "assembling $DISK_MIB MiB disk"
    local tmp=$WORK/disk.img.tmp
    rm -f "$tmp"
    dd if=/dev/zero of="$tmp" bs=1M count=$DISK_MIB status=none
    sgdisk -o -U 53545241-5441-4245-4e43-000000000000 \
        -n 1:$((P1_START_MIB * 2048)):$(((P1_START_MIB + P1_MIB) * 2048 - 1)) -t 1:0700 \
        -u 1:53545241-5441-4245-4e43-000000000101 -c 1:"Basic data partition" \
        -n 2:$((P2_START_MIB * 2048)):$(((P2_START_MIB + P2_MIB) * 2048 - 1)) -t 2:8300 \
        -u 2:53545241-5441-4245-4e43-000000000102 -c 2:"Linux filesystem" \
        "$tmp" >"$SCRATCH/sgdisk.log" 2>&1 || { cat "$SCRATCH/sgdisk.log" >&2; die "sgdisk failed"; }
    dd if="$p1" of="$tmp" bs=1M seek=$P1_START_MIB conv=notrunc status=none
    dd if="$p2" of="$tmp" bs=1M seek=$P2_START_MIB conv=notrunc status=none
    sgdisk -v "$tmp" 2>&1 | grep -q 'No problems found' || die "sgdisk -v found problems"
    sync "$tmp"
    local zero_blocks
    zero_blocks=$(python3 - "$tmp" <<'EOF'
import sys
z, n = bytes(4096), 0
with open(sys.argv[1], "rb") as f:
    while True:
        b = f.read(1 << 20)
        if not b:
            break
        n += sum(1 for i in range(0, len(b), 4096) if b[i:i + 4096] == z)
print(n)
EOF
)
    {
        echo "recipe: $DISK_RECIPE"
        echo "built: $(date -u '+%Y-%m-%d %H:%M UTC') in $((SECONDS - started)) s"
        echo "size: $((DISK_MIB * MIB))"
        echo "p1: NTFS ${P1_MIB} MiB at ${P1_START_MIB} MiB, $n1_files files," \
             "$((n1_used / MIB)) MiB used of $((n1_size / MIB)) MiB ($((100 * n1_used / n1_size))%)"
        echo "p2: ext4 ${P2_MIB} MiB at ${P2_START_MIB} MiB, $n2_files files," \
             "$(((n2_blocks - n2_free) * 4096 / MIB)) MiB used of $((n2_blocks * 4096 / MIB)) MiB" \
             "($((100 * (n2_blocks - n2_free) / n2_blocks))%)"
        echo "zero 4 KiB blocks: $zero_blocks of $((DISK_MIB * 256))" \
             "($((100 * zero_blocks / (DISK_MIB * 256)))%)"
    } >"$INFO.tmp"
    mv "$tmp" "$DISK"
    mv "$INFO.tmp" "$INFO"
    rm -rf "$SCRATCH"
    SCRATCH=
    note "test disk ready ($((SECONDS - started)) s)"
}

# One builder at a time (other benchmarks call --disk-only on the same directory).
exec 9>"$WORK/.lock"
flock 9
if [ "$REBUILD" = 1 ] || ! disk_is_cached; then
    build_disk
else
    note "reusing the test disk in $WORK (--rebuild-disk to build it again)"
fi
flock -u 9
sed 's/^/  /' "$INFO" >&2
[ "$DISK_ONLY" = 0 ] || exit 0

# ---------------------------------------------------------------------------
# Build strata.
# ---------------------------------------------------------------------------
need cargo "Rust (https://rustup.rs)"
need zstd zstd
need python3 python3
if [ -n "$REV" ]; then
    GIT_REV=$(git -C "$REPO" rev-parse --short "$REV^{commit}") || die "unknown revision $REV"
    SRC=$WORK/src-$GIT_REV
    note "building strata $GIT_REV in $SRC (cargo build --release)"
    rm -rf "$SRC"
    mkdir -p "$SRC"
    git -C "$REPO" archive "$GIT_REV" | tar -x -C "$SRC"
    (cd "$SRC" && CARGO_TARGET_DIR=$WORK/target cargo build --release --quiet)
    rm -rf "$SRC"
    STRATA=$WORK/target/release/strata
else
    GIT_REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
    [ -z "$(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] ||
        GIT_REV="$GIT_REV with uncommitted changes"
    note "building strata (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet)
    STRATA=$REPO/target/release/strata
fi
[ -x "$STRATA" ] || die "$STRATA was not built"

if [ -z "$OUT" ]; then
    if [ -d /dev/shm ] && [ "$(df -B1 --output=avail /dev/shm | tail -1)" -gt $((8 * 1024 * MIB)) ]; then
        OUT=$(mktemp -d /dev/shm/strata-bench.XXXXXX)
    else
        OUT=$(mktemp -d "$WORK/out.XXXXXX")
    fi
    OUT_CREATED=1
else
    mkdir -p "$OUT"
fi
OUT_FS=$(df --output=fstype "$OUT" | tail -1)

TIME_BIN=
[ -x /usr/bin/time ] && TIME_BIN=/usr/bin/time

STAMP=$(date -u '+%Y%m%d-%H%M%S')
CSV=$WORK/runs-$STAMP.csv
REPORT=$WORK/results-$STAMP.md
echo "round,op,tool,seconds,user,sys,maxrss_kib,bytes,other_cpu,counted" >"$CSV"

# The machine may be shared. Before each timed command, wait (up to
# --max-wait seconds) for a second in which less than 10% of the CPU time
# was used; during the command, record the share of the machine's CPU time
# that went to anything else (other_cpu, from /proc/stat minus the command's
# own user + sys time).
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
wait_idle() {  # fails when the machine is still busy after MAX_WAIT seconds
    local waited=0 a b
    while :; do
        a=$(busy_ticks); sleep 1; b=$(busy_ticks)
        [ $(((b - a) * 100)) -ge $((10 * CLK_TCK * NCPU)) ] || return 0
        waited=$((waited + 1))
        if [ "$waited" -ge "$MAX_WAIT" ]; then
            note "the machine is still busy after ${MAX_WAIT} s of waiting; measuring anyway"
            return 1
        fi
    done
}

# timed ROUND OP TOOL OUTPUT_FILE_OR_- cmd...: runs cmd, appends a CSV line.
# A timed round's run is repeated (up to 3 times) when the machine was idle
# when it started but other processes took more than 10% of its CPU time
# meanwhile; only the last attempt counts (the others stay in the CSV with
# counted=0). Under steady load there is no point in repeating.
timed() {
    local round=$1 op=$2 tool=$3 output=$4 attempt retries=3 t0 t1 b0 b1
    local user=- sys=- rss=- bytes=- other=- counted idle
    shift 4
    [ "$round" != 0 ] || retries=0
    for ((attempt = 0; ; attempt++)); do
        idle=1
        wait_idle || idle=0
        b0=$(busy_ticks)
        t0=$EPOCHREALTIME
        if [ -n "$TIME_BIN" ]; then
            "$TIME_BIN" -f '%U %S %M' -o "$OUT/.time" "$@"
        else
            "$@"
        fi
        t1=$EPOCHREALTIME
        b1=$(busy_ticks)
        if [ -n "$TIME_BIN" ]; then
            read -r user sys rss <"$OUT/.time"
            other=$(awk -v t0="$t0" -v t1="$t1" -v b="$((b1 - b0))" -v hz="$CLK_TCK" -v n="$NCPU" \
                        -v u="$user" -v s="$sys" \
                        'BEGIN {o = (b / hz - u - s) / (n * (t1 - t0)); printf "%.3f", o < 0 ? 0 : o}')
        fi
        [ "$output" = - ] || bytes=$(stat -c %s "$output")
        counted=1
        if [ "$other" != - ] && [ "$idle" = 1 ] && [ "$attempt" -lt "$retries" ] &&
            awk -v o="$other" 'BEGIN {exit !(o > 0.10)}'; then
            counted=0
        fi
        echo "$round,$op,$tool,$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}'),$user,$sys,$rss,$bytes,$other,$counted" >>"$CSV"
        [ "$counted" = 0 ] || return 0
        note "round $round, $op, $tool: other processes used ${other} of the CPU meanwhile; repeating it"
    done
}

IMG=$OUT/disk.strata        # every sector (--clone): holds what the .zst holds
USED=$OUT/used.strata       # strata's default: the blocks the filesystems use
ZST=$OUT/disk.img.zst
RESTORED=$OUT/restored.img

# strata revisions that read filesystems store only used blocks unless --clone;
# older ones always store every sector and have no --clone.
CLONE=()
if "$STRATA" create --help 2>/dev/null | grep -q -- '--clone'; then
    CLONE=(--clone)
fi

# The zstd side: a shell running zstd, then fsyncing its output as strata does.
ZSTD_C='zstd -q -f -3 "$1" "$2" -o "$3" && sync "$3"'   # THREADS_FLAG INPUT OUTPUT
ZSTD_D='zstd -q -f -d --sparse "$1" -o "$2" && sync "$2"'  # INPUT OUTPUT

# The commands of a step in round R's order: as given in odd rounds, reversed
# in even ones (so no tool always goes first).
in_order() {
    local r=$1; shift
    if [ $((r % 2)) = 1 ]; then echo "$@"; else printf '%s\n' "$@" | tac | tr '\n' ' '; fi
}

round() {
    local r=$1 t tools=(zstd strata)
    [ ${#CLONE[@]} = 0 ] || tools+=(strata-used)
    for t in $(in_order "$r" "${tools[@]}"); do
        case $t in
            zstd) timed "$r" create-T0 zstd "$ZST" bash -c "$ZSTD_C" _ -T0 "$DISK" "$ZST" ;;
            strata) timed "$r" create-T0 strata "$IMG" \
                        "$STRATA" create --quiet --force "${CLONE[@]}" "$DISK" "$IMG" ;;
            strata-used) timed "$r" create-T0 strata-used "$USED" \
                        "$STRATA" create --quiet --force "$DISK" "$USED" ;;
        esac
    done
    for t in $(in_order "$r" zstd strata); do
        case $t in
            zstd) timed "$r" create-T1 zstd "$OUT/t1.zst" bash -c "$ZSTD_C" _ -T1 "$DISK" "$OUT/t1.zst"
                  rm -f "$OUT/t1.zst" ;;
            strata) timed "$r" create-T1 strata "$OUT/t1.strata" \
                        "$STRATA" create --quiet --force --threads 1 "${CLONE[@]}" "$DISK" "$OUT/t1.strata"
                    rm -f "$OUT/t1.strata" ;;
        esac
    done
    for t in $(in_order "$r" "${tools[@]}"); do
        case $t in
            zstd) timed "$r" restore zstd - bash -c "$ZSTD_D" _ "$ZST" "$RESTORED" ;;
            strata) timed "$r" restore strata - "$STRATA" restore --quiet --force "$IMG" "$RESTORED" ;;
            strata-used) timed "$r" restore strata-used - \
                        "$STRATA" restore --quiet --force "$USED" "$RESTORED" ;;
        esac
        # The used-block image gives back the files, not the old data in free
        # space, so only the other two are compared byte for byte.
        if [ "$r" = 0 ] && [ "$t" != strata-used ]; then
            cmp "$DISK" "$RESTORED" || die "$t restore did not reproduce the disk"
        fi
        rm -f "$RESTORED"
    done
    for t in $(in_order "$r" "${tools[@]}"); do
        case $t in
            zstd) timed "$r" verify zstd - zstd -q -t "$ZST" >/dev/null ;;
            strata) timed "$r" verify strata - "$STRATA" verify --quiet "$IMG" >/dev/null ;;
            strata-used) timed "$r" verify strata-used - "$STRATA" verify --quiet "$USED" >/dev/null ;;
        esac
    done
}

note "reading the disk into the page cache"
cat "$DISK" >/dev/null
note "warm-up round (not counted; also checks that the restores reproduce the disk)"
round 0
"$STRATA" create --quiet --json --force "${CLONE[@]}" "$DISK" "$OUT/stats.strata" >"$OUT/create.json"
echo '{}' >"$OUT/create-used.json"
if [ ${#CLONE[@]} != 0 ]; then
    "$STRATA" create --quiet --json --force "$DISK" "$OUT/stats.strata" >"$OUT/create-used.json"
fi
rm -f "$OUT/stats.strata"
for r in $(seq 1 "$RUNS"); do
    note "round $r of $RUNS"
    round "$r"
done

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
export GIT_REV RUNS OUT_FS
BENCH_CPU=$(awk -F': ' '/^model name/ {m = $2} /^cpu family/ {f = $2} /^model\t/ {n = $2}
    END {print m ", family " f " model " n}' /proc/cpuinfo)
BENCH_ZSTD=$(zstd -V | grep -o 'v[0-9][0-9.]*' | head -1)
BENCH_MACHINE="$(nproc) cores ($BENCH_CPU), $(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' \
    /proc/meminfo) GiB RAM, kernel $(uname -r)"
export BENCH_ZSTD BENCH_MACHINE

python3 - "$CSV" "$OUT/create.json" "$OUT/create-used.json" "$DISK" >"$REPORT" <<'EOF'
import csv, json, os, statistics, sys
path, create_json, used_json, disk = sys.argv[1:5]
env = os.environ
allrows = [r for r in csv.DictReader(open(path)) if r["round"] != "0"]
rows = [r for r in allrows if r["counted"] == "1"]
repeated = len(allrows) - len(rows)
def vals(op, tool, field):
    return [float(r[field]) for r in rows
            if r["op"] == op and r["tool"] == tool and r[field] != "-"]
def med(op, tool, field="seconds"):
    v = vals(op, tool, field)
    return statistics.median(v) if v else float("nan")
def cpu(op, tool):
    v = [float(r["user"]) + float(r["sys"]) for r in rows
         if r["op"] == op and r["tool"] == tool and r["user"] != "-"]
    return "%.2f s" % statistics.median(v) if v else "-"
def spread(op, tool):
    v = vals(op, tool, "seconds")
    return "%.2f-%.2f s" % (min(v), max(v)) if v else "-"
def other(op, tool):
    v = vals(op, tool, "other_cpu")
    return "%.0f%% / %.0f%%" % (100 * statistics.median(v), 100 * max(v)) if v else "-"
disk_b = os.path.getsize(disk)
nonzero_b = json.load(open(create_json))["data_bytes"]
used = json.load(open(used_json))
has_used = bool(vals("create-T0", "strata-used", "seconds"))
MB, MiB = 1e6, 1 << 20
zst_b = med("create-T0", "zstd", "bytes")

print("strata %s, zstd %s; figures are medians of %s interleaved runs"
      % (env["GIT_REV"], env["BENCH_ZSTD"], env["RUNS"]))
print()
print("Machine: " + env["BENCH_MACHINE"])
print("Disk: %.0f MiB, %.0f MiB of it in non-zero 4 KiB blocks (%.0f%%)"
      % (disk_b / MiB, nonzero_b / MiB, 100 * nonzero_b / disk_b), end="")
if has_used:
    print(", %.0f MiB in non-zero used blocks (%.0f%%)"
          % (used["data_bytes"] / MiB, 100 * used["data_bytes"] / disk_b), end="")
print("; outputs on " + env["OUT_FS"])
print("Cache: warm (inputs in the page cache, not dropped between runs)")
print("Runs repeated because other processes were busy: %d" % repeated)
print()
print("MB/s are 10^6 bytes of the %.0f MiB disk per second (of the image file for" % (disk_b / MiB))
print("\"MB/s of image\"). \"strata (every sector)\" is `strata create --clone`, which keeps")
print("what `zstd` keeps, old data in free space included; \"strata (used blocks)\" is")
print("strata's default, which stores only the blocks the filesystems use.")
print()
print("| operation | strata | zstd | strata / zstd |")
print("| --- | ---: | ---: | ---: |")
def time_row(label, op, tool="strata", peer="zstd"):
    s, z = med(op, tool), med(op, peer)
    print("| %s | %.2f s (%.0f MB/s) | %.2f s (%.0f MB/s) | %.2fx the time, %.2fx the speed |"
          % (label, s, disk_b / MB / s, z, disk_b / MB / z, s / z, z / s))
    return s, z
def size_row(label, tool):
    b = med("create-T0", tool, "bytes")
    print("| %s | %.1f MiB (%.3f of the disk) | %.1f MiB (%.3f of the disk) | %.3fx |"
          % (label, b / MiB, b / disk_b, zst_b / MiB, zst_b / disk_b, b / zst_b))
    return b
label = "every sector" if has_used else "whole disk"
cs, cz = time_row("create, %s, all cores (`-T0`): time" % label, "create-T0")
img_b = size_row("create, %s: size" % label, "strata")
time_row("create, %s, 1 thread (`--threads 1` / `-T1`): time" % label, "create-T1")
if has_used:
    time_row("create, used blocks, all cores (`-T0`): time", "create-T0", "strata-used")
    size_row("create, used blocks: size", "strata-used")
rs, rz = time_row("restore, %s, to a sparse file (`zstd -d --sparse`): time" % label, "restore")
if has_used:
    time_row("restore, used blocks, to a sparse file: time", "restore", "strata-used")
def verify_row(label, tool, img):
    s, z = med("verify", tool), med("verify", "zstd")
    print("| %s | %.2f s (%.0f MB/s of image, %.0f MB/s of disk) | %.2f s (%.0f MB/s of .zst, %.0f MB/s of disk) | %.2fx the time |"
          % (label, s, img / MB / s, disk_b / MB / s, z, zst_b / MB / z, disk_b / MB / z, s / z))
verify_row("verify, %s (`zstd -t`)" % label, "strata", img_b)
if has_used:
    verify_row("verify, used blocks", "strata-used", med("create-T0", "strata-used", "bytes"))
print()
print("CPU time (user + sys, median), wall-time range, and the share of the machine's")
print("CPU used by other processes during the counted runs (median / highest):")
print()
print("| operation | tool | CPU | wall min-max | other load |")
print("| --- | --- | ---: | ---: | ---: |")
tools = [("strata", "strata (%s)" % label)] + ([("strata-used", "strata (used blocks)")] if has_used else []) + [("zstd", "zstd")]
for oplabel, op in [("create, all cores", "create-T0"), ("create, 1 thread", "create-T1"),
                    ("restore", "restore"), ("verify", "verify")]:
    for tool, tlabel in tools:
        if vals(op, tool, "seconds"):
            print("| %s | %s | %s | %s | %s |" % (oplabel, tlabel, cpu(op, tool), spread(op, tool), other(op, tool)))
print()
def verdict(ok): return "met" if ok else "NOT met"
print("Targets (%s):" % label)
print("- create at least as fast as `zstd -3 -T0`: %.2fx the time -> %s" % (cs / cz, verdict(cs <= cz)))
print("- create output at most 1.02x the size of `zstd -3`: %.3fx -> %s" % (img_b / zst_b, verdict(img_b <= 1.02 * zst_b)))
print("- restore at least 0.8x the speed of `zstd -d`: %.2fx -> %s" % (rz / rs, verdict(rz / rs >= 0.8)))
EOF

echo
cat "$REPORT"
echo
note "report: $REPORT; every run: $CSV"
exit
}
