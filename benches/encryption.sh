#!/usr/bin/env bash
# encryption.sh - encrypted images against unencrypted ones: create, restore, a mounted
# big-file read (image warm and cold) and the cost of unlocking a passphrase.
#
# Usage: sudo benches/encryption.sh [--runs N] [--out-dir DIR]
#
#   --runs N       timed rounds (default 3); every figure is the median
#   --out-dir DIR  where images and restored disks are written (default: a fresh
#                  directory in /dev/shm, so that the storage device is not measured)
#   -h, --help     show this help
#
# Uses the 2.5 GiB test disk of create-restore-verify.sh (built there, cached under
# STRATA_BENCH_DIR, default /var/tmp/strata-bench; building it needs root): GPT, NTFS
# and ext4 partitions about 43% full of programs, libraries, documents, logs and
# incompressible media, old data in part of the free space. Needs root for the mounts,
# fuse3 (fusermount3) and /usr/bin/time. STRATA (default target/release/strata, built
# with cargo build --release) measures another build.
#
# Three images of the disk, made in every round with strata's defaults (used blocks,
# zstd -3, 1 MiB chunks, all cores):
#   plain       strata create DISK IMG
#   encrypted   strata create --encrypt --passphrase-file F DISK IMG (Argon2id 256 MiB,
#               3 passes: the default key derivation)
#   key file    strata create --encrypt --key-file K DISK IMG (no key derivation: the
#               cost of AES-256-GCM alone, to tell it from the derivation's)
# Measured each round, the commands of a step interleaved and their order reversed
# every other round:
#   create      time and image size
#   restore     strata restore IMG FILE (a sparse file next to the images)
#   info        strata info IMG: opens the image; on the encrypted one it derives the
#               key once, so encrypted minus plain is the derivation's cost
#   read        cat of every file of 16 MiB or more (videos, a zip, a .tar.zst, two
#               logs) from a fresh strata mount: image warm in the page cache, and cold
#               (a copy of the image on the storage under STRATA_BENCH_DIR, dropped from
#               the page cache with posix_fadvise DONTNEED on that file only, so that
#               other work on the machine keeps its cache); the mount, and so its key
#               derivation, is made before the timing starts
# A warm-up round, not counted, comes first and checks that the plain and encrypted
# images restore to the same bytes. The disk file is read once before the first round
# and stays in the page cache. Wall time is from the shell, CPU time (user + sys) from
# /usr/bin/time; the load average before and after is reported, as the machine may be
# shared. The table is printed and saved as $STRATA_BENCH_DIR/results-encryption-*.md,
# every single run as runs-encryption-*.csv.
{
set -euo pipefail
export LC_ALL=C TZ=UTC
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROG=encryption.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

RUNS=3
OUT=
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --out-dir) OUT=${2:?--out-dir needs a directory}; shift 2 ;;
        -h|--help) sed -n '2,/^{/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
[ "$(id -u)" = 0 ] || die "must run as root (mounts; building the test disk)"
for t in fusermount3 mountpoint /usr/bin/time python3; do
    command -v "$t" >/dev/null || die "'$t' not found"
done

BENCH=${STRATA_BENCH_DIR:-/var/tmp/strata-bench}
"$HERE/create-restore-verify.sh" --disk-only >&2
DISK=$BENCH/disk.img
if [ -z "${STRATA:-}" ]; then
    note "building strata (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet)
    STRATA=$REPO/target/release/strata
fi
[ -x "$STRATA" ] || die "$STRATA not found"

OWN_OUT=
[ -n "$OUT" ] || { OUT=$(mktemp -d /dev/shm/strata-enc.XXXXXX); OWN_OUT=1; }
mkdir -p "$OUT"
COLD=$(mktemp -d "$BENCH/enc-cold.XXXXXX") # on the storage: page cache can be dropped
MNT=$OUT/mnt
mkdir -p "$MNT"
# shellcheck disable=SC2317 # run by the trap
cleanup() {
    set +e
    mountpoint -q "$MNT" && { fusermount3 -u "$MNT" || umount -l "$MNT"; }
    rm -rf "$COLD"
    if [ -n "$OWN_OUT" ]; then rm -rf "$OUT"; else rm -f "$OUT"/*.strata "$OUT"/restored*.img "$OUT/.time" "$OUT/pass" "$OUT/key"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The secrets: a passphrase file (one line) and a 32-byte key file.
printf 'correct horse battery staple 2026\n' >"$OUT/pass"
head -c 32 /dev/urandom >"$OUT/key"
chmod 600 "$OUT/pass" "$OUT/key"
K=()
key_options() { # VARIANT -> K: the options that give its key
    case $1 in
        plain) K=() ;;
        enc) K=(--passphrase-file "$OUT/pass") ;;
        key) K=(--key-file "$OUT/key") ;;
    esac
}

STAMP=$(date -u '+%Y%m%d-%H%M%S')
CSV=$BENCH/runs-encryption-$STAMP.csv
REPORT=$BENCH/results-encryption-$STAMP.md
echo "round,op,variant,seconds,cpu,bytes" >"$CSV"

# timed ROUND OP VARIANT OUTPUT_FILE_OR_- cmd...: runs cmd, appends a CSV line.
timed() {
    local round=$1 op=$2 variant=$3 output=$4 t0 t1 u s bytes=-
    shift 4
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S' -o "$OUT/.time" "$@"
    t1=$EPOCHREALTIME
    read -r u s <"$OUT/.time"
    [ "$output" = - ] || bytes=$(stat -c %s "$output")
    echo "$round,$op,$variant,$(awk -v a="$t0" -v b="$t1" -v u="$u" -v s="$s" \
        'BEGIN {printf "%.4f,%.2f", b - a, u + s}'),$bytes" >>"$CSV"
}

# The commands of a step in round R's order: as given in odd rounds, reversed in even ones.
in_order() {
    local r=$1; shift
    if [ $((r % 2)) = 1 ]; then echo "$@"; else printf '%s\n' "$@" | tac | tr '\n' ' '; fi
}

drop() { # drops FILE from the page cache (that file only)
    python3 -c "import os,sys; os.posix_fadvise(os.open(sys.argv[1], os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED)" "$1"
}

MOUNT_PID=
mount_image() { # IMAGE VARIANT
    key_options "$2"
    "$STRATA" mount "${K[@]}" "$1" "$MNT"
    MOUNT_PID=$(pgrep -n -f "strata mount .*$MNT\$") || die "no strata mount process for $MNT"
}
CLK_TCK=$(getconf CLK_TCK)
fuse_ticks() { # CPU time (user + sys ticks) of the mount's process so far
    awk '{print $14 + $15}' "/proc/$MOUNT_PID/stat"
}
unmount_image() {
    fusermount3 -u "$MNT" || umount -l "$MNT"
    # Wait for the FUSE process to be gone, so the next mount starts cold.
    while [ -n "$MOUNT_PID" ] && [ -e "/proc/$MOUNT_PID" ] &&
        ! grep -q '^State:.*Z' "/proc/$MOUNT_PID/status" 2>/dev/null; do sleep 0.05; done
    MOUNT_PID=
}

img() { echo "$OUT/$1.strata"; }
BIG=() # the big files, relative to the mount point
BIG_BYTES=0
round() {
    local r=$1 v temp c0 c1
    for v in $(in_order "$r" plain enc key); do
        key_options "$v"
        timed "$r" create "$v" "$(img "$v")" \
            "$STRATA" create -q -f ${K[0]:+--encrypt} "${K[@]}" "$DISK" "$(img "$v")"
    done
    for v in $(in_order "$r" plain enc key); do
        key_options "$v"
        timed "$r" restore "$v" - "$STRATA" restore -q -f "${K[@]}" "$(img "$v")" "$OUT/restored.img"
        if [ "$r" = 0 ] && [ ! -e "$OUT/restored-first.img" ]; then
            mv "$OUT/restored.img" "$OUT/restored-first.img"
        elif [ "$r" = 0 ]; then
            cmp "$OUT/restored-first.img" "$OUT/restored.img" ||
                die "the plain, passphrase and key-file images do not restore alike ($v)"
        fi
        rm -f "$OUT/restored.img"
    done
    rm -f "$OUT/restored-first.img"
    for v in $(in_order "$r" plain enc key); do
        key_options "$v"
        timed "$r" info "$v" - "$STRATA" info "${K[@]}" "$(img "$v")" >/dev/null
    done
    # Mounted reads of the plain and the passphrase image (the key only matters at mount).
    for v in $(in_order "$r" plain enc); do
        cp "$(img "$v")" "$COLD/$v.strata"; sync "$COLD/$v.strata"
    done
    for temp in warm cold; do
        for v in $(in_order "$r" plain enc); do
            if [ $temp = warm ]; then
                cat "$(img "$v")" >/dev/null; mount_image "$(img "$v")" "$v"
            else
                drop "$COLD/$v.strata"; mount_image "$COLD/$v.strata" "$v"
            fi
            if [ ${#BIG[@]} = 0 ]; then
                mapfile -t BIG < <(cd "$MNT" && find . -type f -size +15M | sort)
                [ ${#BIG[@]} -gt 0 ] || die "no file of 16 MiB or more in the mounted image"
                BIG_BYTES=$(cd "$MNT" && du -cb --apparent-size "${BIG[@]}" | tail -1 | cut -f1)
                note "read step: ${#BIG[@]} files, $BIG_BYTES bytes: ${BIG[*]}"
            fi
            c0=$(fuse_ticks)
            (cd "$MNT" && timed "$r" "read-$temp" "$v" - cat "${BIG[@]}" >/dev/null)
            c1=$(fuse_ticks)
            echo "$r,read-$temp-fuse,$v,-,$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", t / hz}'),-" >>"$CSV"
            unmount_image
        done
    done
}

note "reading the disk into the page cache"
cat "$DISK" >/dev/null
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
note "warm-up round (not counted; also checks that the images restore alike)"
round 0
for r in $(seq 1 "$RUNS"); do
    note "round $r of $RUNS"
    round "$r"
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
FLAGS=$(for f in aes pclmulqdq vaes vpclmulqdq; do
    if grep -qw "$f" /proc/cpuinfo; then echo -n "$f yes, "; else echo -n "$f NO, "; fi
done)
BENCH_MACHINE="$(nproc) cores ($CPU_MODEL), $(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' \
    /proc/meminfo) GiB RAM, kernel $(uname -r)"
BENCH_FLAGS=${FLAGS%, }
BENCH_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
BENCH_FILES=${#BIG[@]}
export RUNS LOAD0 LOAD1 BIG_BYTES BENCH_MACHINE BENCH_FLAGS BENCH_REV BENCH_FILES
python3 - "$CSV" >"$REPORT" <<'EOF'
import csv, os, statistics, sys
env = os.environ
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["round"] != "0"]
rounds = sorted({r["round"] for r in rows})
def get(op, v, field="seconds"):
    return {r["round"]: float(r[field]) for r in rows if r["op"] == op and r["variant"] == v}
def med(op, v, field="seconds"):
    return statistics.median(get(op, v, field).values())
def per_round_ratio(op, v, peer="plain"):
    a, b = get(op, v), get(op, peer)
    return statistics.median(a[k] / b[k] for k in rounds)
MiB = 1 << 20
print("strata %s; %s rounds, medians; load average %s before, %s after"
      % (env["BENCH_REV"], env["RUNS"], env["LOAD0"], env["LOAD1"]))
print()
print("Machine: " + env["BENCH_MACHINE"])
print("CPU flags for AES-256-GCM: " + env["BENCH_FLAGS"])
print()
print("Ratio: encrypted / plain, of the medians (in parentheses: the median of each round's own"
      " ratio). \"key file\" is an image encrypted under a key file: no key derivation, only"
      " AES-256-GCM.")
print()
print("| measure | plain | encrypted (passphrase) | ratio | key file | ratio | target | met? |")
print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
def verdict(ok): return "yes" if ok else "**no**"
results = []
def time_row(label, op, target, with_key=True, cpu=True):
    p, e = med(op, "plain"), med(op, "enc")
    ratio = e / p
    cells = ["%.2f s" % p, "%.2f s" % e, "%.2fx (%.2fx)" % (ratio, per_round_ratio(op, "enc"))]
    if with_key:
        k = med(op, "key")
        cells += ["%.2f s" % k, "%.2fx (%.2fx)" % (k / p, per_round_ratio(op, "key"))]
    else:
        cells += ["", ""]
    ok = ratio <= target
    print("| %s | %s | ≤ %.2fx | %s |" % (label, " | ".join(cells), target, verdict(ok)))
    results.append((label, ratio, target, ok))
time_row("`create`: time", "create", 1.05)
ps, es, ks = med("create", "plain", "bytes"), med("create", "enc", "bytes"), med("create", "key", "bytes")
print("| `create`: image size | %.1f MiB | %.1f MiB (+%d bytes) | %.5fx | %.1f MiB | %.5fx | | |"
      % (ps / MiB, es / MiB, es - ps, es / ps, ks / MiB, ks / ps))
time_row("`restore` to a sparse file: time", "restore", 1.10)
big = int(env["BIG_BYTES"])
for temp in ("warm", "cold"):
    op = "read-" + temp
    p, e = med(op, "plain"), med(op, "enc")
    ratio = e / p
    ok = ratio <= 1.10
    print("| mounted read of %s files, %.0f MiB, image %s | %.2f s (%.0f MB/s) | %.2f s (%.0f MB/s) | %.2fx (%.2fx) | | | ≤ 1.10x | %s |"
          % (env["BENCH_FILES"], big / MiB, temp, p, big / 1e6 / p, e, big / 1e6 / e, ratio,
             per_round_ratio(op, "enc"), verdict(ok)))
    results.append(("read, " + temp, ratio, 1.10, ok))
p, e, k = med("info", "plain"), med("info", "enc"), med("info", "key")
kdf = e - p
ok = 0.5 <= kdf <= 1.0
print("| `info`: open (encrypted: one key derivation) | %.3f s | %.3f s | | %.3f s | | | |" % (p, e, k))
print("| key derivation (info encrypted - info plain) | | %.3f s | | | | 0.5-1 s | %s |" % (kdf, verdict(ok)))
print()
print("CPU time (user + sys, all threads), medians:")
print()
print("| command | plain | encrypted (passphrase) | key file |")
print("| --- | ---: | ---: | ---: |")
for label, op in [("create", "create"), ("restore", "restore"), ("info", "info"),
                  ("cat, image warm", "read-warm"), ("cat, image cold", "read-cold")]:
    c = ["%.2f s" % med(op, v, "cpu") if get(op, v) else "" for v in ("plain", "enc", "key")]
    print("| %s | %s |" % (label, " | ".join(c)))
    if op.startswith("read"):
        c = ["%.2f s" % med(op + "-fuse", v, "cpu") if get(op + "-fuse", v, "cpu") else ""
             for v in ("plain", "enc", "key")]
        print("| ... the mount's process during that `cat` | %s |" % " | ".join(c))
print()
print("Targets: " + "; ".join("%s %.2fx of ≤ %.2fx: %s" % (l, r, t, "met" if ok else "NOT met")
                              for l, r, t, ok in results)
      + "; key derivation %.2f s of 0.5-1 s: %s" % (kdf, "met" if ok else "NOT met"))
EOF

echo
cat "$REPORT"
echo
note "report: $REPORT; every run: $CSV"
exit
}
