#!/usr/bin/env bash
# ntfs-fill-check.sh - every file of a big NTFS volume filled through ntfs-3g
# reads back through strata with the sha256 ntfs-3g gives it.
#
# Usage: sudo benches/ntfs-fill-check.sh [--size SIZE] [--fragment PCT] [--keep] [SRC...]
#
#   --size SIZE   volume size (truncate syntax; default 3G). The trees are
#                 copied until the volume is 85% full.
#   --fragment PCT  first write a sparse file .fragments holding one cluster
#                 at every other cluster of the first PCT% of the volume, and
#                 remount: the files copied next are cut into one-cluster
#                 pieces there, as on an old, full disk, so that big files
#                 and directories outgrow their file records (their
#                 attributes split over extension records named by an
#                 $ATTRIBUTE_LIST). The count of such files is printed.
#   --keep        keep the work directory (volume, image, listings)
#   SRC...        trees to copy (default /usr/share /usr/lib)
#   -h, --help    show this help
#
# Environment: STRATA_BENCH_DIR (default /var/tmp/strata-bench-ntfs-fill) for
# the volume and its image; STRATA (default: target/release/strata, built if
# missing). Needs root (mounts), ntfs-3g (mkntfs), fuse3 and python3.
#
# Steps: mkntfs on a sparse file; mount it with ntfs-3g (default options, so
# names are written in the POSIX namespace and names that differ only in case
# live side by side, as they do in /usr/share/man); copy the trees with cp -a
# (ownership and special files that NTFS cannot hold are skipped), plus a
# directory of names that differ only in case (_exit.2.gz beside the link
# _Exit.2.gz, nan.3.gz beside NAN.3.gz, index.html beside Index.html, pod/
# beside Pod/); remount read-only and record every file's sha256 and every
# link's target through ntfs-3g; image the volume with strata create; then
# check every file with `strata cat` (4 at a time) and every file and link
# through one strata mount read by 4 parallel readers.
#
# Prints: files, links, bytes, and the time and throughput of each step; the
# number of files whose content differs or that fail to read (each named).
# Exit status 1 when any file differs.
{
set -euo pipefail
export LC_ALL=C TZ=UTC

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROG=ntfs-fill-check.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

SIZE=3G
KEEP=0
FRAGMENT=0
SRCS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --size) SIZE=${2:?}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --fragment) FRAGMENT=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^{/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) SRCS+=("$1"); shift ;;
    esac
done
[ ${#SRCS[@]} -gt 0 ] || SRCS=(/usr/share /usr/lib)
[ "$(id -u)" = 0 ] || die "must run as root (mounts)"
for t in mkntfs ntfs-3g fusermount3 python3; do
    command -v "$t" >/dev/null || die "$t is needed"
done

STRATA=${STRATA:-$REPO/target/release/strata}
if [ ! -x "$STRATA" ]; then
    note "building $STRATA"
    (cd "$REPO" && cargo build --release --quiet)
fi
WORK=${STRATA_BENCH_DIR:-/var/tmp/strata-bench-ntfs-fill}
mkdir -p "$WORK"
VOL=$WORK/vol.ntfs
IMG=$WORK/vol.strata
MNT=$WORK/ntfs-3g
SMNT=$WORK/strata-mnt
mkdir -p "$MNT" "$SMNT"
cleanup() {
    mountpoint -q "$MNT" && umount "$MNT" || true
    mountpoint -q "$SMNT" && fusermount3 -uz "$SMNT" || true
    if [ "$KEEP" = 0 ]; then rm -f "$VOL" "$IMG" "$WORK"/*.tsv; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }

rm -f "$VOL" "$IMG"
truncate -s "$SIZE" "$VOL"
mkntfs -q -Q -F "$VOL" >/dev/null 2>&1 || die "mkntfs failed"
ntfs-3g "$VOL" "$MNT"

t0=$(now)
if [ "$FRAGMENT" != 0 ]; then
    # ntfs-3g puts a file's next cluster after its last one, skipping what the file
    # skips: a cluster at every other VCN leaves one-cluster holes between them.
    python3 - "$MNT/.fragments" "$(stat -f -c %S "$MNT")" "$(stat -f -c %b "$MNT")" "$FRAGMENT" <<'EOF'
import os, sys
path, cs, clusters, pct = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(clusters * pct // 200):
    os.pwrite(fd, b'F' * cs, 2 * i * cs)
os.close(fd)
EOF
    # A remount sends the allocator back to the start of the volume, into the holes.
    umount "$MNT"
    ntfs-3g "$VOL" "$MNT"
fi
# Names that differ only in case, whatever the source trees hold.
mkdir -p "$MNT/case-pairs/pod" "$MNT/case-pairs/Pod"
printf 'exit page\n' > "$MNT/case-pairs/_exit.2.gz"
ln -s _exit.2.gz "$MNT/case-pairs/_Exit.2.gz"
printf 'lower nan\n' > "$MNT/case-pairs/nan.3.gz"
printf 'UPPER NAN\n%.0s' 1 2 3 > "$MNT/case-pairs/NAN.3.gz"
printf '<p>lower</p>\n' > "$MNT/case-pairs/index.html"
printf '<p>Capital</p>\n' > "$MNT/case-pairs/Index.html"
printf 'lower pod\n' > "$MNT/case-pairs/pod/same"
printf 'capital Pod\n' > "$MNT/case-pairs/Pod/same"
# Copy top-level entries of each tree while the volume is less than 85% full.
for src in "${SRCS[@]}"; do
    [ -d "$src" ] || { note "no $src, left out"; continue; }
    dest="$MNT/$(echo "$src" | tr / _ | sed 's/^_//')"
    mkdir -p "$dest"
    for entry in "$src"/*; do
        used=$(df --output=pcent "$MNT" | tail -1 | tr -dc 0-9)
        [ "$used" -lt 85 ] || break 2
        cp -a --no-preserve=ownership "$entry" "$dest/" 2>/dev/null || true
    done
done
sync
t1=$(now)
umount "$MNT"
note "filled through ntfs-3g in $(secs "$t0" "$t1") s"

# The reference: what ntfs-3g reads.
ntfs-3g -o ro "$VOL" "$MNT"
t0=$(now)
python3 - "$MNT" > "$WORK/ref.tsv" <<'EOF'
import hashlib, os, sys
root = sys.argv[1]
for d, dirs, files in os.walk(root):
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        rel = os.path.relpath(p, root)
        if '\t' in rel or '\n' in rel:
            continue  # kept out of the tab-separated listing
        if os.path.islink(p):
            print(f'l\t{rel}\t{os.readlink(p)}\t0')
        elif os.path.isfile(p):
            h = hashlib.sha256()
            with open(p, 'rb') as f:
                for b in iter(lambda: f.read(1 << 20), b''):
                    h.update(b)
            print(f'f\t{rel}\t{h.hexdigest()}\t{os.path.getsize(p)}')
EOF
t1=$(now)
umount "$MNT"
files=$(grep -c '^f' "$WORK/ref.tsv" || true)
links=$(grep -c '^l' "$WORK/ref.tsv" || true)
bytes=$(awk -F'\t' '$1=="f"{s+=$4} END{print s+0}' "$WORK/ref.tsv")
echo "volume:   $SIZE, $files files, $links links, $bytes bytes of file data"
echo "ntfs-3g:  read and hashed everything in $(secs "$t0" "$t1") s"
if [ "$FRAGMENT" != 0 ]; then
    # Files whose attributes outgrew their record: ntfsinfo names an
    # $ATTRIBUTE_LIST (checked for files over 1 MiB; smaller ones rarely have one).
    split=0
    while IFS=$'\t' read -r kind rel _ size; do
        [ "$kind" = f ] && [ "$size" -gt 1048576 ] || continue
        ntfsinfo -F "/$rel" "$VOL" 2>/dev/null | grep -q 'ATTRIBUTE_LIST' && split=$((split + 1))
    done < "$WORK/ref.tsv"
    echo "fragments: $FRAGMENT% of the volume; $split files over 1 MiB have an \$ATTRIBUTE_LIST"
fi

t0=$(now)
"$STRATA" create --quiet "$VOL" "$IMG"
t1=$(now)
echo "create:   $(secs "$t0" "$t1") s, image $(stat -c %s "$IMG") bytes"

# Every file through `strata cat`, 4 at a time.
t0=$(now)
set +e
python3 - "$STRATA" "$IMG" "$WORK/ref.tsv" <<'EOF'
import hashlib, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
strata, img, ref = sys.argv[1:4]
rows = [l.rstrip('\n').split('\t') for l in open(ref)]
def check(row):
    kind, rel, want, _ = row
    if kind != 'f':
        return None
    p = subprocess.Popen([strata, 'cat', img, '/' + rel], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h = hashlib.sha256()
    for b in iter(lambda: p.stdout.read(1 << 20), b''):
        h.update(b)
    err = p.stderr.read().decode(errors='replace').strip()
    if p.wait() != 0:
        return f'{rel}: cat failed: {err}'
    if h.hexdigest() != want:
        return f'{rel}: cat returned other bytes'
    return None
with ThreadPoolExecutor(4) as ex:
    bad = [r for r in ex.map(check, rows) if r]
for b in bad:
    print('DIFFERS', b)
print(f'cat:      {len(bad)} files differ or fail')
sys.exit(1 if bad else 0)
EOF
cat_rc=$?
set -e
t1=$(now)
echo "cat:      every file in $(secs "$t0" "$t1") s ($(python3 -c "print(f'{$files / ($t1 - $t0):.0f} files/s, {$bytes / 1e6 / ($t1 - $t0):.1f} MB/s')"), one strata process per file)"

# Every file and link through one strata mount, 4 parallel readers.
"$STRATA" mount "$IMG" "$SMNT"
t0=$(now)
set +e
python3 - "$SMNT" "$WORK/ref.tsv" <<'EOF'
import hashlib, os, sys
from concurrent.futures import ThreadPoolExecutor
root, ref = sys.argv[1:3]
rows = [l.rstrip('\n').split('\t') for l in open(ref)]
def check(row):
    kind, rel, want, _ = row
    p = os.path.join(root, rel)
    try:
        if kind == 'l':
            got = os.readlink(p)
            return None if got == want else f'{rel}: link to {got!r}, not {want!r}'
        h = hashlib.sha256()
        with open(p, 'rb') as f:
            for b in iter(lambda: f.read(1 << 20), b''):
                h.update(b)
        return None if h.hexdigest() == want else f'{rel}: mount returned other bytes'
    except OSError as e:
        return f'{rel}: {e}'
with ThreadPoolExecutor(4) as ex:
    bad = [r for r in ex.map(check, rows) if r]
for b in bad:
    print('DIFFERS', b)
print(f'mount:    {len(bad)} files or links differ or fail')
sys.exit(1 if bad else 0)
EOF
mount_rc=$?
set -e
t1=$(now)
fusermount3 -u "$SMNT"
echo "mount:    every file in $(secs "$t0" "$t1") s ($(python3 -c "print(f'{$bytes / 1e6 / ($t1 - $t0):.0f}')") MB/s, 4 readers)"
[ "$cat_rc" = 0 ] && [ "$mount_rc" = 0 ]
}
