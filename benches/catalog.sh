#!/usr/bin/env bash
# catalog.sh - what the file catalog costs `strata create` and what it buys: find,
# history and diff over 30 daily points of an NTFS + ext4 disk, against walking every
# point with `strata ls -R`, against the same commands on images made --no-catalog,
# and against borg over the same trees.
#
# Usage: sudo benches/catalog.sh [--runs N] [--days N] [--keep] [--rebuild]
#                                [--max-wait S]
#
#   --runs N      timed rounds (default 5); every figure is the median
#   --days N      daily points (default 30; at least 2)
#   --keep        keep the disk, both chains of points, the borg repository and the
#                 query outputs in the work directory; a later run reuses them and
#                 goes straight to the timed part
#   --rebuild     build the disk and the points again even if kept ones exist
#   --max-wait S  before each timed command, wait up to S seconds (default 3) for
#                 a second in which the machine is under 10% busy
#   -h, --help    show this help
#
# A full run takes about 50 minutes on 2 cores: 12 building the disk and the points,
# most of the rest in the no-catalog walks and borg.
#
# Environment: STRATA_BENCH_DIR (default /var/tmp/strata-catalog-bench) is the work
# directory (about 4 GiB while it runs; results-*.md and runs-*.csv stay there);
# STRATA, a strata binary to use instead of building target/release/strata. The
# binary is copied into the work directory first, so a rebuild of the tree during
# the run does not change what is measured. Needs root (loop devices, mounts),
# ntfs-3g, e2fsprogs, sfdisk, python3, /usr/bin/time and borg (Debian: borgbackup).
#
# The disk: a 2560 MiB sparse file, GPT, p1 NTFS of 1200 MiB filled through ntfs-3g
# (a budget of this machine's /usr/share without man/doc/locale, /etc,
# documents from fixtures/gen-files.py, photos, a sync log), p2 ext4 of 1300 MiB
# filled through a kernel loop mount (/usr/share/man, /usr/share/doc,
# /usr/include, /usr/lib/python3*, /etc, documents, music, a log). Only
# world-readable files are copied. Then DAYS points: point 0 as built; before
# each later point, on each partition through its mount: 20 files edited in place
# (5 of them also grown), 10 deleted, 5 renamed, 2 new files in existing
# directories and a new directory of 6 files (about 3 MB, one of them a .conf),
# about 200 KB appended to the log, every 4th day a small directory renamed, and
# a tracked file rewritten every 3rd (p2) or 5th (p1) day. Every change is
# recorded (changes/dayNN.tsv) and used to check what strata reports.
#
# Each point is imaged twice: into points/cat (catalog, point 0 full, then each an
# incremental of the previous point) and into points/nocat (the same with
# --no-catalog), one timed run each, the order alternating by day. After the
# points' trees are changed and before they are imaged, `borg create --compression
# zstd,3` stores both mounted trees as archive dayNN of one repository. Then, in
# RUNS rounds (the order of the commands reversed every other round, after one
# warm-up round that is not counted):
#   create     full image of the last point, and an incremental of it on the
#              point before the last (one day of changes): with and without catalog
#   find       strata find DIR '*.conf' over every point (catalog; no catalog:
#              walks) vs borg list --pattern of every archive (one borg process per
#              archive, after borg list --short of the repository)
#   walk       strata ls -R / of every point (one process per point)
#   history    strata history DIR /p2/home/bob/notes/todo.txt vs borg list
#              ARCHIVE PATH of every archive
#   diff       strata diff day10 day11 vs borg diff REPO::day10 day11
# Figures are wall times and CPU times (user + sys, children included); the share
# of the machine's CPU used by other processes meanwhile is recorded per command.
# The checks (run once, after timing): find's answers equal the .conf names that
# `ls -R` lists in every point, and borg's; find -i; catalog and walked answers
# of find, history and diff agree; history's versions are the days the tracked
# file changed; diff names every recorded change of the day and nothing
# unexplained, and agrees with borg diff.

# The whole script is one { } group, so bash parses it completely before
# running it: editing the file during a run does not affect that run.
{
set -euo pipefail
export LC_ALL=C TZ=UTC

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROG=catalog.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }
usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

RUNS=5
DAYS=30
KEEP=0
REBUILD=0
MAX_WAIT=3
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --days) DAYS=${2:?--days needs a number}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --rebuild) REBUILD=1; shift ;;
        --max-wait) MAX_WAIT=${2:?--max-wait needs seconds}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
[[ "$DAYS" =~ ^[0-9]+$ ]] && [ "$DAYS" -ge 2 ] || die "--days must be 2 or more"
[[ "$MAX_WAIT" =~ ^[0-9]+$ ]] || die "--max-wait must be a number of seconds"
[ "$(id -u)" = 0 ] || die "must run as root (loop devices, mounts)"
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install $2"; }
need python3 python3; need sfdisk fdisk; need losetup mount; need mkntfs ntfs-3g
need ntfs-3g ntfs-3g; need mke2fs e2fsprogs; need e2fsck e2fsprogs
need borg "borgbackup (apt-get install borgbackup)"
[ -x /usr/bin/time ] || die "/usr/bin/time not found; install time"
[ -e /dev/fuse ] || die "/dev/fuse is missing (needed by ntfs-3g)"

WORK=${STRATA_BENCH_DIR:-/var/tmp/strata-catalog-bench}
mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock -n 9 || die "another catalog.sh run holds $WORK/.lock"

# Bump when the disk or the day recipe below changes, so kept builds are redone.
RECIPE=1
MIB=$((1024 * 1024))
DISK_MIB=2560
P1_START=2048 P1_SECTORS=$((1200 * 2048))                 # NTFS
P2_START=$((P1_START + P1_SECTORS)) P2_SECTORS=$((1300 * 2048))  # ext4
BASE=$WORK/base.img
BASE_INFO=$WORK/base.info
DISK=$WORK/disk.img
PTS=$WORK/points
CAT=$PTS/cat
NOCAT=$PTS/nocat
CHANGES=$WORK/changes
BORG_DIR=$WORK/borg
BREPO=$BORG_DIR/repo
MNT=$WORK/mnt
STATE=$PTS/built
HIST_PATH=/p2/home/bob/notes/todo.txt
if [ "$DAYS" -ge 12 ]; then DA=10 DB=11; else DA=$((DAYS - 2)) DB=$((DAYS - 1)); fi
day() { printf 'day%02d' "$1"; }

# borg keeps its cache, keys and security records under the work directory.
export BORG_BASE_DIR=$BORG_DIR/home BORG_PASSPHRASE='' \
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

# ---------------------------------------------------------------------------
# Cleanup: only what this script created.
# ---------------------------------------------------------------------------
LOOPS=()
NTFS_PID=
SCRATCH=$(mktemp -d "$WORK/scratch.XXXXXX")
cleanup() {
    local rc=$?
    set +e
    mountpoint -q "$MNT/p2" 2>/dev/null && { umount "$MNT/p2" || umount -l "$MNT/p2"; }
    mountpoint -q "$MNT/p1" 2>/dev/null && { umount "$MNT/p1" || umount -l "$MNT/p1"; }
    if [ -n "$NTFS_PID" ]; then wait "$NTFS_PID" 2>/dev/null; fi
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
    rm -rf "$SCRATCH"
    if [ "$KEEP" = 0 ]; then
        rm -rf "$BASE" "$BASE_INFO" "$DISK" "$PTS" "$CHANGES" "$BORG_DIR" "$MNT" \
            "$WORK/strata" "$WORK"/run-*
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Helpers (Python 3 stdlib only).
# ---------------------------------------------------------------------------
cat >"$SCRATCH/bench.py" <<'EOF'
"""Fills the partitions, makes the daily changes, reads catalog sizes, checks the
answers and writes the report. Deterministic for a given machine: trees are
copied in sorted order and every choice comes from a PRNG seeded by the day."""
import csv, fnmatch, json, os, random, shutil, stat, statistics, subprocess, sys, time

MiB = 1 << 20
WORDS = ("alpha beta gamma delta disk image backup block sector volume partition "
         "archive restore snapshot checksum cluster inode journal metadata report "
         "meeting budget invoice customer project schedule server network").split()

def text(r, size):
    out, n = [], 0
    while n < size:
        line = " ".join(r.choice(WORDS) for _ in range(r.randint(4, 14))) + "\n"
        out.append(line)
        n += len(line)
    return "".join(out)[:size]

def random_file(path, size, seed, magic=b""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    r = random.Random(seed)
    with open(path, "wb") as f:
        f.write(magic + r.randbytes(max(0, size - len(magic))))

def log_lines(r, size, t):
    procs = ["systemd[1]", "kernel", "sshd[812]", "cron[640]", "backup.sh[2231]"]
    msgs = ["Started Session %d of user alice.", "Accepted publickey from 192.168.1.%d",
            "Finished backup: %d files", "eth0: link up (%d ms)", "Reloading configuration %d"]
    out, n = [], 0
    while n < size:
        t += r.randint(0, 40)
        line = "%s desk %s: %s\n" % (time.strftime("%b %d %H:%M:%S", time.gmtime(t)),
                                       r.choice(procs), r.choice(msgs) % r.randint(1, 9999))
        out.append(line)
        n += len(line)
    return "".join(out)

def copy_tree(src, dst, budget=None, exclude=()):
    """Copies src into dst: directories, symbolic links, world-readable regular
    files up to 16 MiB (no hard links), stopping once budget bytes are copied."""
    files = links = nbytes = skipped = 0
    for dp, dns, fns in os.walk(src):
        if dp == src:
            dns[:] = [d for d in dns if d not in exclude]
            fns = [f for f in fns if f not in exclude]
        dns.sort()
        rel = os.path.relpath(dp, src)
        tdir = os.path.normpath(os.path.join(dst, rel))
        os.makedirs(tdir, exist_ok=True)
        for name in sorted(fns) + [d for d in dns if os.path.islink(os.path.join(dp, d))]:
            if budget is not None and nbytes >= budget:
                return files, links, nbytes, skipped
            s, t = os.path.join(dp, name), os.path.join(tdir, name)
            try:
                st = os.lstat(s)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(s), t)
                    links += 1
                elif stat.S_ISREG(st.st_mode) and st.st_mode & 0o004 and st.st_size <= 16 * MiB:
                    shutil.copyfile(s, t)
                    os.utime(t, ns=(st.st_mtime_ns, st.st_mtime_ns))
                    files += 1
                    nbytes += st.st_size
                else:
                    skipped += 1
            except OSError:
                skipped += 1
        dns[:] = [d for d in dns if not os.path.islink(os.path.join(dp, d))]
    return files, links, nbytes, skipped

def gen_docs(dest, seed, count, big, genfiles):
    subprocess.run([sys.executable, genfiles, "--quiet", "--seed", str(seed), "--count",
                    str(count), "--big", str(big), dest], check=True)

def fill(root, profile, genfiles):
    rep = []
    def note(what, res):
        rep.append("  %-22s %6d files %5d links %7.1f MiB (%d skipped)"
                   % (what, res[0], res[1], res[2] / MiB, res[3]))
    if profile == "ntfs":
        u = os.path.join(root, "Users", "alice")
        note("usr/share (part)", copy_tree("/usr/share", os.path.join(root, "Program Files", "share"),
                                           budget=380 * MiB, exclude=("man", "doc", "locale")))
        note("etc", copy_tree("/etc", os.path.join(root, "Program Files", "etc")))
        gen_docs(os.path.join(u, "Documents", "Personal"), 101, 2000, 8, genfiles)
        r = random.Random(1)
        for i in range(40):
            random_file(os.path.join(u, "Pictures", "2026", "IMG_%04d.jpg" % (1000 + i)),
                        r.randint(500 * 1024, 1500 * 1024), 1000 + i, b"\xff\xd8\xff\xe0")
        os.makedirs(os.path.join(u, "AppData", "Local", "Sync"), exist_ok=True)
        with open(os.path.join(u, "AppData", "Local", "Sync", "sync.log"), "w") as f:
            f.write(log_lines(r, 8 * MiB, 1767225600))
        with open(os.path.join(u, "Documents", "budget.csv"), "w") as f:
            f.write("".join("%d,%s,%d.%02d\n" % (i, r.choice(WORDS), r.randint(1, 9999), r.randint(0, 99))
                            for i in range(1500)))
    else:
        h = os.path.join(root, "home", "bob")
        for src in ("/usr/share/man", "/usr/share/doc", "/usr/include"):
            note(src[1:], copy_tree(src, os.path.join(root, src[1:])))
        for name in sorted(os.listdir("/usr/lib")):
            if name.startswith("python3"):
                note("usr/lib/" + name, copy_tree("/usr/lib/" + name, os.path.join(root, "usr", "lib", name)))
        note("etc", copy_tree("/etc", os.path.join(root, "etc")))
        gen_docs(os.path.join(h, "docs"), 202, 1500, 6, genfiles)
        r = random.Random(2)
        for i in range(20):
            random_file(os.path.join(h, "Music", "album", "track%02d.ogg" % (i + 1)),
                        r.randint(1024 * 1024, 2048 * 1024), 2000 + i, b"OggS\x00\x02")
        os.makedirs(os.path.join(root, "var", "log"), exist_ok=True)
        with open(os.path.join(root, "var", "log", "app.log"), "w") as f:
            f.write(log_lines(r, 8 * MiB, 1767225600))
        os.makedirs(os.path.join(h, "notes"), exist_ok=True)
        with open(os.path.join(h, "notes", "todo.txt"), "w") as f:
            f.write("".join("- [ ] %s\n" % text(r, 60).strip() for _ in range(150)))
    print("\n".join(rep))

def layout(part):
    if part == "p1":
        return ("Users/alice", "Users/alice/AppData/Local/Sync/sync.log",
                "Users/alice/Documents/budget.csv", 5)
    return "home/bob", "var/log/app.log", "home/bob/notes/todo.txt", 3

def day_changes(root, part, day, tsv):
    """One day of changes on one mounted partition; every change is appended to tsv
    as op<TAB>/part/path[<TAB>/part/newpath]."""
    r = random.Random("%s-%d" % (part, day))
    home, log, tracked, every = layout(part)
    protected = {log, tracked}
    files, leaf_dirs = [], []
    for dp, dns, fns in os.walk(root):
        dns[:] = sorted(d for d in dns if d != "lost+found"
                        and not os.path.islink(os.path.join(dp, d)))
        rel = os.path.relpath(dp, root)
        regular = []
        for f in sorted(fns):
            p = os.path.join(dp, f)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                regular.append((os.path.normpath(os.path.join(rel, f)), st.st_size))
        files += [x for x in regular if x[0] not in protected]
        if not dns and 1 <= len(fns) <= 30 and rel != "." and not rel.startswith(home):
            leaf_dirs.append(rel)
    rec = []
    P = lambda rel: "/%s/%s" % (part, rel)
    A = lambda rel: os.path.join(root, rel)
    pool = r.sample([f for f in files if f[1] <= 8 * MiB], 20 + 10 + 5)
    edits, deletes, renames = pool[:20], pool[20:30], pool[30:]
    for i, (rel, size) in enumerate(edits):
        with open(A(rel), "r+b") as f:
            if size:
                off = r.randrange(size)
                f.seek(off)
                f.write(r.randbytes(min(size - off, r.randint(64, 16384))))
            if i < 5 or not size:
                f.seek(0, 2)
                f.write(text(r, r.randint(200, 4000)).encode())
        rec.append(("E", P(rel)))
    for rel, _ in deletes:
        os.remove(A(rel))
        rec.append(("D", P(rel)))
    for rel, _ in renames:
        stem, ext = os.path.splitext(rel)
        new = "%s-v%02d%s" % (stem, day, ext)
        os.rename(A(rel), A(new))
        rec.append(("R", P(rel), P(new)))
    work = os.path.join(home, "work", "day-%02d" % day)
    if not os.path.isdir(A(os.path.dirname(work))):
        rec.append(("A", P(os.path.dirname(work))))
    os.makedirs(A(work))
    rec.append(("A", P(work)))
    new_files = [("notes-%02d.txt" % day, text(r, r.randint(40000, 120000)).encode()),
                 ("settings-%02d.conf" % day, text(r, r.randint(1000, 4000)).encode()),
                 ("data-%02d-1.bin" % day, r.randbytes(r.randint(256 * 1024, 1024 * 1024))),
                 ("data-%02d-2.bin" % day, r.randbytes(r.randint(256 * 1024, 1024 * 1024))),
                 ("photo-%02d.jpg" % day, b"\xff\xd8\xff\xe0" + r.randbytes(r.randint(500 * 1024, 1200 * 1024))),
                 ("report-%02d.csv" % day, text(r, r.randint(20000, 60000)).encode())]
    for name, data in new_files:
        with open(A(os.path.join(work, name)), "wb") as f:
            f.write(data)
        rec.append(("A", P(os.path.join(work, name))))
    touched = {x[0] for x in pool}
    for k, (rel, _) in enumerate(r.sample([f for f in files if f[0] not in touched], 2)):
        new = os.path.join(os.path.dirname(rel), "new-%02d-%d.txt" % (day, k))
        with open(A(new), "w") as f:
            f.write(text(r, r.randint(2000, 30000)))
        rec.append(("A", P(new)))
    with open(A(log), "a") as f:
        f.write(log_lines(r, r.randint(150000, 250000), 1767225600 + day * 86400))
    rec.append(("L", P(log)))
    if day % every == 0:
        with open(A(tracked), "r") as f:
            lines = f.read().splitlines(True)
        for _ in range(5):
            lines[r.randrange(len(lines))] = "- [x] %s (day %d)\n" % (text(r, 50).strip(), day)
        lines.append("- [ ] new task of day %d\n" % day)
        with open(A(tracked), "w") as f:
            f.writelines(lines)
        rec.append(("T", P(tracked)))
    if day % 4 == 2:
        busy = {os.path.dirname(p.split("/", 2)[2]) for x in rec for p in x[1:]}
        cands = [d for d in leaf_dirs if d not in busy]
        if cands:
            d = r.choice(cands)
            new = d + "-renamed-%02d" % day
            os.rename(A(d), A(new))
            rec.append(("RD", P(d), P(new)))
    with open(tsv, "a") as f:
        for x in rec:
            f.write("\t".join(x) + "\n")

def catinfo(path):
    """(image bytes, catalog section bytes, catalog raw bytes) read as FORMAT.md says."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(size - 64)
        t = f.read(64)
        assert t[:8] == b"STRATEND", path
        f.seek(int.from_bytes(t[8:16], "little"))
        cat = int.from_bytes(f.read(112)[104:112], "little")
        if not cat:
            return size, 0, 0
        f.seek(cat)
        h = f.read(64)
        assert h[:8] == b"STRATCAT", path
        return size, 64 + int.from_bytes(h[16:24], "little"), int.from_bytes(h[24:32], "little")

# ---- checks ----
def jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]

def walk_listing(path):
    """{image basename: [paths]} from the `== IMAGE` blocks of the ls -R walk."""
    out, cur = {}, None
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("== "):
                cur = os.path.basename(line[3:])
                out[cur] = []
            elif line:
                out[cur].append(line)
    return out

def show(label, items, n=5):
    items = sorted(items)
    s = "%s: %d" % (label, len(items))
    if items:
        s += " (e.g. " + "; ".join(" ".join(map(str, x)) if isinstance(x, tuple) else str(x)
                                  for x in items[:n]) + ")"
    return s

def checks(out, changes, da, db, days, hist_path):
    res, problems = [], []
    def cmp(label, want, got, wl, gl):
        miss, extra = want - got, got - want
        ok = not miss and not extra
        res.append("- %s: %d vs %d -> %s" % (label, len(want), len(got), "same" if ok else "DIFFER"))
        if not ok:
            res.append("  - " + show("in %s, not in %s" % (wl, gl), miss))
            res.append("  - " + show("in %s, not in %s" % (gl, wl), extra))
            problems.append(label)
    walk = walk_listing(os.path.join(out, "walk-ls.out"))
    entries = {k: len(v) for k, v in walk.items()}
    want = {(img, p) for img, ps in walk.items() for p in ps
            if fnmatch.fnmatchcase(os.path.basename(p), "*.conf")}
    find_cat = jsonl(os.path.join(out, "find-cat.json"))
    got = {(os.path.basename(x["image"]), x["path"]) for x in find_cat}
    cmp("find '*.conf' (catalog) against the .conf names in `ls -R` of every point",
        want, got, "ls -R", "find")
    want_i = {(img, p) for img, ps in walk.items() for p in ps
              if fnmatch.fnmatchcase(os.path.basename(p).lower(), "*.conf")}
    got_i = {(os.path.basename(x["image"]), x["path"]) for x in jsonl(os.path.join(out, "find-i-cat.json"))}
    cmp("find -i '*.CONF' (catalog) against ls -R, names compared lower-cased", want_i, got_i, "ls -R", "find -i")
    key = lambda x: (os.path.basename(x["image"]), x["path"], x.get("type"), x.get("size"),
                     x.get("mtime"), x.get("mtime_nsec"))
    cmp("find '*.conf': catalog against no catalog (image, path, type, size, mtime)",
        {key(x) for x in find_cat}, {key(x) for x in jsonl(os.path.join(out, "find-nocat.json"))},
        "catalog", "walk")
    bf = os.path.join(out, "borg-find.out")
    if os.path.exists(bf):
        with open(bf, encoding="utf-8", errors="surrogateescape") as f:
            borg = {(a + ".strata", "/" + p) for a, p in (l.rstrip("\n").split(" ", 1) for l in f if l.strip())}
        cmp("find '*.conf' against borg list --pattern of every archive", borg, got, "borg", "strata")

    # history: a new version on day 0 and on every day the file was rewritten.
    part, rel = hist_path.split("/", 2)[1:]
    edited = sorted({0} | {int(os.path.basename(c)[3:5]) for c in os.listdir(changes)
                           for l in open(os.path.join(changes, c)) if l.split("\t")[0] == "T"
                           and l.split("\t")[1].strip() == hist_path})
    edited = [d for d in edited if d < days]
    hist = jsonl(os.path.join(out, "hist-cat.json"))
    got_v = [sorted(os.path.basename(i) for i in v["images"]) for v in hist]
    want_v = [["day%02d.strata" % d for d in range(a, b)]
              for a, b in zip(edited, edited[1:] + [days])]
    ok = sorted(got_v) == sorted(want_v)
    res.append("- history %s: %d versions (want %d: days %s) -> %s"
               % (hist_path, len(got_v), len(want_v), ",".join(map(str, edited)), "right" if ok else "WRONG"))
    if not ok:
        res.append("  - got: " + "; ".join("%s..%s" % (v[0], v[-1]) if v else "none" for v in got_v))
        problems.append("history")
    hk = lambda v: (v.get("id"), tuple(sorted(os.path.basename(i) for i in v["images"])), v.get("size"))
    cmp("history: catalog against no catalog (id, points, size)", {hk(v) for v in hist},
        {hk(v) for v in jsonl(os.path.join(out, "hist-nocat.json"))}, "catalog", "walk")

    # diff: every recorded change of day db, and nothing else.
    dcat = jsonl(os.path.join(out, "diff-cat.json"))
    dk = lambda x: (x["change"], x.get("old_path") or "", x["path"], x.get("type", ""))
    cmp("diff day%02d day%02d: catalog against no catalog" % (da, db), {dk(x) for x in dcat},
        {dk(x) for x in jsonl(os.path.join(out, "diff-nocat.json"))}, "catalog", "walk")
    rec = [l.rstrip("\n").split("\t") for l in open(os.path.join(changes, "day%02d.tsv" % db))]
    by = {}
    for x in dcat:
        by.setdefault(x["path"], []).append(x)
        if x.get("old_path"):
            by.setdefault(x["old_path"], []).append(x)
    def has(path, change, old=None):
        return any(x["change"] == change and (old is None or x.get("old_path") == old)
                   for x in by.get(path, []))
    missing, explained = [], set()
    counts = {}
    for r in rec:
        op = r[0]
        counts[op] = counts.get(op, 0) + 1
        if op in ("E", "L", "T"):
            ok = has(r[1], "modified")
            explained.add(("modified", r[1]))
        elif op == "A":
            ok = has(r[1], "added")
            explained.add(("added", r[1]))
        elif op == "D":
            ok = has(r[1], "removed")
            explained.add(("removed", r[1]))
        else:  # R, RD: renamed (a directory's entries follow it)
            ok = has(r[2], "renamed", r[1])
            explained.add(("renamed", r[2]))
            if op == "RD":
                explained |= {("renamed", x["path"]) for x in dcat if x["change"] == "renamed"
                              and x["path"].startswith(r[2] + "/")
                              and x.get("old_path", "").startswith(r[1] + "/")}
        if not ok:
            missing.append(tuple(r))
    # Directories whose entries changed may be reported modified.
    dirs_touched = set()
    for r in rec:
        for p in r[1:]:
            dirs_touched.add(os.path.dirname(p))
    unexplained = [(x["change"], x["path"]) for x in dcat if (x["change"], x["path"]) not in explained
                   and not (x["change"] == "modified" and x.get("type") == "dir" and x["path"] in dirs_touched)]
    summary = ", ".join("%d %s" % (n, {"E": "edited", "L": "log appends", "T": "tracked-file rewrites",
                                       "A": "added", "D": "deleted", "R": "file renames",
                                       "RD": "directory renames"}[k]) for k, n in sorted(counts.items()))
    by_change = {}
    for x in dcat:
        by_change[x["change"]] = by_change.get(x["change"], 0) + 1
    res.append("- diff day%02d day%02d: %d entries (%s) for the day's %d recorded changes (%s)"
               % (da, db, len(dcat), ", ".join("%d %s" % (v, k) for k, v in sorted(by_change.items())),
                  len(rec), summary))
    res.append("  - " + show("recorded changes diff does not report", missing))
    res.append("  - " + show("entries no recorded change explains (modified directories aside)", unexplained))
    if missing or unexplained:
        problems.append("diff")
    bd = os.path.join(out, "borg-diff.json")
    if os.path.exists(bd):
        borg = set()
        for x in jsonl(bd):
            kinds = {c["type"] for c in x["changes"]}
            if kinds & {"added", "removed", "modified", "added directory", "removed directory",
                        "added link", "removed link", "changed link"}:
                borg.add("/" + x["path"])
        mine = set()
        for x in dcat:
            if x["change"] == "modified" and x.get("type") == "dir":
                continue
            mine.add(x["path"])
            if x.get("old_path"):
                mine.add(x["old_path"])
        cmp("diff: paths with content added, removed or changed, against borg diff (a rename is"
            " an old and a new path)", borg, mine, "borg", "strata")
    return res, problems, entries

# ---- report ----
def report(args):
    (csv_path, out, changes, pts_cat, pts_nocat, base_info, da, db, days, hist_path,
     meta_json) = args
    da, db, days = int(da), int(db), int(days)
    meta = json.load(open(meta_json))
    rows = list(csv.DictReader(open(csv_path)))
    def sel(phase, op, tool):
        return [r for r in rows if r["phase"] == phase and r["op"] == op and r["tool"] == tool]
    def med(rs, f="wall"):
        v = [float(r[f]) if f != "cpu" else float(r["user"]) + float(r["sys"]) for r in rs]
        return statistics.median(v) if v else float("nan")
    def other(rs):
        v = [float(r["other"]) for r in rs]
        return "%.0f%%/%.0f%%" % (100 * statistics.median(v), 100 * max(v)) if v else "-"
    def fmt(rs):
        return "%.3f s (CPU %.2f s)" % (med(rs), med(rs, "cpu")) if rs else "-"
    timed = lambda op, tool: sel("time", op, tool)
    P = []
    P.append("strata %s; borg %s; %s timed rounds after a warm-up round, medians" %
             (meta["rev"], meta["borg"], meta["runs"]))
    P.append("")
    P.append("Machine: %s. Load average at start %s, at end %s." %
             (meta["machine"], meta["load_start"], meta["load_end"]))
    P.append("Work directory on %s; the disk file and images are read warm from the page cache." % meta["fs"])
    P.append("")
    P.append("Disk (%d MiB, GPT), as built:" % meta["disk_mib"])
    P.append("")
    P += ["    " + l.rstrip() for l in open(base_info)]
    cat_imgs = sorted(f for f in os.listdir(pts_cat) if f.endswith(".strata"))
    res, problems, entries = checks(out, changes, da, db, days, hist_path)
    if entries:
        e = [entries[k] for k in sorted(entries)]
        P.append("")
        P.append("Entries per point (`strata ls -R`, both partitions): %d at day 0, %d at day %d; "
                 "%d over the %d points." % (e[0], e[-1], len(e) - 1, sum(e), len(e)))
    # ---- sizes ----
    info = {f: catinfo(os.path.join(pts_cat, f)) for f in cat_imgs}
    noc = {f: os.path.getsize(os.path.join(pts_nocat, f)) for f in cat_imgs}
    f0 = cat_imgs[0]
    size0, sec0, raw0 = info[f0]
    incs = cat_imgs[1:]
    P.append("")
    P.append("## Catalog size")
    P.append("")
    P.append("| image | with catalog | --no-catalog | difference | catalog section (raw) | catalog / image |")
    P.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    def srow(label, img, cat, nocat, raw):
        P.append("| %s | %.2f MiB | %.2f MiB | %.1f KiB | %.1f KiB (%.1f KiB raw) | %.3f%% |"
                 % (label, img / MiB, nocat / MiB, (img - nocat) / 1024, cat / 1024, raw / 1024,
                    100 * cat / img))
    srow("day 0, full", size0, sec0, noc[f0], raw0)
    if incs:
        mi = lambda k: statistics.median(info[f][k] for f in incs)
        srow("days 1-%d, incremental (medians)" % len(incs), mi(0), mi(1),
             statistics.median(noc[f] for f in incs), mi(2))
        tot = lambda k: sum(info[f][k] for f in cat_imgs)
        srow("the whole chain of %d points (sums)" % len(cat_imgs), tot(0), tot(1),
             sum(noc.values()), tot(2))
        P.append("")
        P.append("Catalog of each incremental relative to the full image: median %.3f%%; "
                 "all %d catalogs together: %.2f%% of the full image."
                 % (100 * statistics.median(info[f][1] for f in incs) / size0, len(cat_imgs),
                    100 * sum(info[f][1] for f in cat_imgs) / size0))
    if meta.get("borg_repo"):
        P.append("borg repository of the %d archives: %.1f MiB." % (days, meta["borg_repo"] / MiB))
    # ---- create ----
    P.append("")
    P.append("## create: catalog against --no-catalog")
    P.append("")
    P.append("| create | with catalog | --no-catalog | catalog costs (wall) | (CPU) | other load |")
    P.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    def crow(label, c, n):
        if not c or not n:
            return
        P.append("| %s | %s | %s | %+.1f%% | %+.1f%% | %s |" %
                 (label, fmt(c), fmt(n), 100 * (med(c) / med(n) - 1),
                  100 * (med(c, "cpu") / med(n, "cpu") - 1), other(c + n)))
    crow("full image of the last point (%s runs)" % meta["runs"], timed("create-full", "cat"),
         timed("create-full", "nocat"))
    crow("incremental, one day of changes (%s runs)" % meta["runs"], timed("create-inc", "cat"),
         timed("create-inc", "nocat"))
    crow("building: day 0, full (1 run)", sel("build", "create-full", "cat"),
         sel("build", "create-full", "nocat"))
    bc, bn = sel("build", "create-inc", "cat"), sel("build", "create-inc", "nocat")
    crow("building: days 1-%d, incremental (median of %d)" % (len(bc), len(bc)), bc, bn)
    if bc and bn:
        ratios = sorted(float(c["wall"]) / float(n["wall"]) for c, n in zip(bc, bn))
        cpu_r = sorted((float(c["user"]) + float(c["sys"])) / (float(n["user"]) + float(n["sys"]))
                       for c, n in zip(bc, bn))
        sw = lambda rs: sum(float(r["wall"]) for r in rs)
        P.append("")
        P.append("Building, days 1-%d: the per-day ratio catalog / no catalog has median %.3f "
                 "(wall; %.3f CPU), range %.2f-%.2f; summed %.1f s against %.1f s (%+.1f%%)."
                 % (len(bc), statistics.median(ratios), statistics.median(cpu_r), ratios[0], ratios[-1],
                    sw(bc), sw(bn), 100 * (sw(bc) / sw(bn) - 1)))
    bb = sel("build", "borg-create", "borg")
    if bb:
        P.append("borg create of both trees while building: day 0 %.1f s, later days median %.1f s."
                 % (float(bb[0]["wall"]), statistics.median(float(r["wall"]) for r in bb[1:]) if bb[1:] else 0))
    # ---- queries ----
    P.append("")
    P.append("## Queries over the %d points" % days)
    P.append("")
    P.append("| question | strata, catalog | strata, --no-catalog images (walks) | borg | strata catalog / borg | target |")
    P.append("| --- | ---: | ---: | ---: | ---: | --- |")
    def q(label, cat, nocat, borg, target):
        c, n, b = timed(cat, "strata"), timed(nocat, "strata") if nocat else [], timed(borg, "borg") if borg else []
        ratio = "%.3fx" % (med(c) / med(b)) if c and b else "-"
        P.append("| %s | %s | %s | %s | %s | %s |" % (label, fmt(c), fmt(n), fmt(b), ratio, target))
        return med(c) if c else float("nan")
    fc = q("find `*.conf` over every point", "find-cat", "find-nocat", "find-borg", "< 0.5 s; <= 0.1x the walk")
    w = timed("walk-ls", "strata")
    P.append("| walk every point: `strata ls -R` x%d | %s | | | | |" % (days, fmt(w)))
    hc = q("history `%s`" % hist_path, "hist-cat", "hist-nocat", "hist-borg", "< 0.3 s")
    dc = q("diff day%02d day%02d" % (da, db), "diff-cat", "diff-nocat", "diff-borg", "< 0.5 s")
    P.append("")
    P.append("Other load (share of the machine's CPU used by other processes during the counted"
             " runs, median/highest): " + "; ".join(
                 "%s %s" % (op, other(sel("time", op, t))) for op, t in
                 [("create-full", "cat"), ("create-inc", "cat"), ("find-cat", "strata"), ("walk-ls", "strata"),
                  ("find-borg", "borg"), ("hist-cat", "strata"), ("diff-cat", "strata")]
                 if sel("time", op, t)))
    P.append("")
    P.append("borg side: find and history are one `borg list --short` of the repository and then"
             " one `borg list REPO::dayNN` per archive (borg lists one archive at a time), with"
             " `--pattern '+ fm:*.conf' --pattern '- *'` for find and the path for history.")
    # ---- targets ----
    P.append("")
    P.append("## Targets")
    P.append("")
    verdict = lambda ok: "met" if ok else "NOT met"
    cf, nf = timed("create-full", "cat"), timed("create-full", "nocat")
    ci, ni = timed("create-inc", "cat"), timed("create-inc", "nocat")
    if cf and nf:
        x = med(cf) / med(nf) - 1
        P.append("- catalog adds <= 5%% to create, full image: %+.1f%% wall (%+.1f%% CPU) -> %s"
                 % (100 * x, 100 * (med(cf, "cpu") / med(nf, "cpu") - 1), verdict(x <= 0.05)))
    if ci and ni:
        x = med(ci) / med(ni) - 1
        P.append("- catalog adds <= 5%% to create, incremental: %+.1f%% wall (%+.1f%% CPU) -> %s"
                 % (100 * x, 100 * (med(ci, "cpu") / med(ni, "cpu") - 1), verdict(x <= 0.05)))
    P.append("- catalog <= 1%% of the full image: %.3f%% -> %s" % (100 * sec0 / size0, verdict(sec0 <= 0.01 * size0)))
    P.append("- find < 0.5 s: %.3f s -> %s" % (fc, verdict(fc < 0.5)))
    if w:
        P.append("- find <= 0.1x the ls -R walk of every point: %.4fx -> %s" % (fc / med(w), verdict(fc <= 0.1 * med(w))))
    P.append("- history < 0.3 s: %.3f s -> %s" % (hc, verdict(hc < 0.3)))
    P.append("- diff < 0.5 s: %.3f s -> %s" % (dc, verdict(dc < 0.5)))
    P.append("")
    P.append("## Checks of the answers")
    P.append("")
    P += res
    P.append("")
    P.append("Problems: " + (", ".join(problems) if problems else "none"))
    print("\n".join(P))

if __name__ == "__main__":
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "fill":
        fill(*a)
    elif cmd == "day":
        day_changes(a[0], a[1], int(a[2]), a[3])
    elif cmd == "catinfo":
        for p in a:
            print(p, *catinfo(p))
    elif cmd == "report":
        report(a)
    else:
        sys.exit("unknown command " + cmd)
EOF
PY="python3 $SCRATCH/bench.py"

# ---------------------------------------------------------------------------
# Mounting the disk's partitions (loop devices over the partition ranges).
# ---------------------------------------------------------------------------
attach() {  # IMAGE START SECTORS -> prints the loop device
    losetup --find --show --offset $(($2 * 512)) --sizelimit $(($3 * 512)) "$1"
}
L1= L2=
mount_parts() {  # IMAGE
    mkdir -p "$MNT/p1" "$MNT/p2"
    L1=$(attach "$1" $P1_START $P1_SECTORS); LOOPS+=("$L1")
    L2=$(attach "$1" $P2_START $P2_SECTORS); LOOPS+=("$L2")
    # noatime: reading the trees (borg) must not change what the next point holds.
    ntfs-3g -o no_detach,noatime "$L1" "$MNT/p1" </dev/null >"$SCRATCH/ntfs-3g.log" 2>&1 &
    NTFS_PID=$!
    for _ in $(seq 100); do mountpoint -q "$MNT/p1" && break; sleep 0.1; done
    mountpoint -q "$MNT/p1" || { cat "$SCRATCH/ntfs-3g.log" >&2; die "ntfs-3g did not mount"; }
    mount -t ext4 -o noatime "$L2" "$MNT/p2"
}
umount_parts() {
    umount "$MNT/p2"
    umount "$MNT/p1"
    wait "$NTFS_PID" || die "ntfs-3g exited with an error"
    NTFS_PID=
    losetup -d "$L1" "$L2"
    LOOPS=()
    sync
}

# ---------------------------------------------------------------------------
# The disk as built (point 0), kept as base.img.
# ---------------------------------------------------------------------------
build_base() {
    local started=$SECONDS tmp=$WORK/base.img.tmp
    note "building the disk (a few minutes)"
    rm -f "$tmp" "$BASE" "$BASE_INFO"
    truncate -s $((DISK_MIB * MIB)) "$tmp"
    sfdisk -q "$tmp" <<EOF2 >/dev/null
label: gpt
label-id: 53545241-5441-4341-5441-000000000000
start=$P1_START, size=$P1_SECTORS, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="Data"
start=$P2_START, size=$P2_SECTORS, type=0FC63DAF-8483-4772-8E79-3D69E4C766E4, name="Linux"
EOF2
    L1=$(attach "$tmp" $P1_START $P1_SECTORS); LOOPS+=("$L1")
    L2=$(attach "$tmp" $P2_START $P2_SECTORS); LOOPS+=("$L2")
    mkntfs -q -Q -F -L Data -p $P1_START "$L1" >"$SCRATCH/mkntfs.log" 2>&1 ||
        { cat "$SCRATCH/mkntfs.log" >&2; die "mkntfs failed"; }
    # Inode tables written now: no lazy initialisation writing them in later days.
    mke2fs -q -F -t ext4 -L linux -E lazy_itable_init=0,lazy_journal_init=0 "$L2"
    losetup -d "$L1" "$L2"; LOOPS=()
    mount_parts "$tmp"
    note "  p1 (NTFS, through ntfs-3g)"
    $PY fill "$MNT/p1" ntfs "$REPO/fixtures/gen-files.py" >"$SCRATCH/fill1.txt"
    note "  p2 (ext4, through a loop mount)"
    $PY fill "$MNT/p2" ext4 "$REPO/fixtures/gen-files.py" >"$SCRATCH/fill2.txt"
    local p n1f n1a n2f n2a u1 s1 u2 s2
    n1f=$(find "$MNT/p1" -type f | wc -l); n1a=$(find "$MNT/p1" | wc -l)
    n2f=$(find "$MNT/p2" -type f | wc -l); n2a=$(find "$MNT/p2" | wc -l)
    read -r s1 u1 < <(df -B1 --output=size,used "$MNT/p1" | tail -1)
    read -r s2 u2 < <(df -B1 --output=size,used "$MNT/p2" | tail -1)
    umount_parts
    {
        echo "recipe $RECIPE, built $(date -u '+%Y-%m-%d %H:%M UTC') in $((SECONDS - started)) s"
        echo "p1: NTFS 1200 MiB, $n1f files ($n1a entries), $((u1 / MIB)) MiB used of $((s1 / MIB)) MiB"
        cat "$SCRATCH/fill1.txt"
        echo "p2: ext4 1300 MiB, $n2f files ($n2a entries), $((u2 / MIB)) MiB used of $((s2 / MIB)) MiB"
        cat "$SCRATCH/fill2.txt"
    } >"$BASE_INFO.tmp"
    mv "$tmp" "$BASE"
    mv "$BASE_INFO.tmp" "$BASE_INFO"
    note "disk built in $((SECONDS - started)) s"
}

# ---------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
wait_idle() {
    local waited=0 a b
    while [ "$waited" -lt "$MAX_WAIT" ]; do
        a=$(busy_ticks); sleep 1; b=$(busy_ticks)
        [ $(((b - a) * 100)) -ge $((10 * CLK_TCK * NCPU)) ] || return 0
        waited=$((waited + 1))
    done
}
STAMP=$(date -u '+%Y%m%d-%H%M%S')
CSV=$WORK/runs-$STAMP.csv
REPORT=$WORK/results-$STAMP.md
echo "phase,op,tool,label,wall,user,sys,other" >"$CSV"
# timed PHASE OP TOOL LABEL OUT cmd...: runs cmd (stdout to OUT, stderr to OUT.err),
# appends wall, user and sys seconds and the other processes' CPU share to the CSV.
timed() {
    local phase=$1 op=$2 tool=$3 label=$4 out=$5 t0 t1 b0 b1 user sys
    shift 5
    wait_idle
    b0=$(busy_ticks); t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S' -o "$SCRATCH/time" "$@" >"$out" 2>"$out.err" ||
        { tail -5 "$out.err" >&2; die "failed: $*"; }
    t1=$EPOCHREALTIME; b1=$(busy_ticks)
    read -r user sys <"$SCRATCH/time"
    awk -v p="$phase" -v o="$op" -v t="$tool" -v l="$label" -v t0="$t0" -v t1="$t1" \
        -v b="$((b1 - b0))" -v hz="$CLK_TCK" -v n="$NCPU" -v u="$user" -v s="$sys" 'BEGIN {
            w = t1 - t0; x = (b / hz - u - s) / (n * w); if (x < 0) x = 0
            printf "%s,%s,%s,%s,%.4f,%s,%s,%.3f\n", p, o, t, l, w, u, s, x }' >>"$CSV"
}

# ---------------------------------------------------------------------------
# strata: built from the tree (or $STRATA), then copied.
# ---------------------------------------------------------------------------
if [ -n "${STRATA:-}" ]; then
    [ -x "$STRATA" ] || die "STRATA=$STRATA is not executable"
else
    need cargo "Rust (https://rustup.rs)"
    note "building strata (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build failed (set STRATA to use a built binary)"
    STRATA=$REPO/target/release/strata
fi
cp "$STRATA" "$WORK/strata"
S=$WORK/strata
"$S" find --help >/dev/null 2>&1 || die "$STRATA has no find command (no catalog support)"
GIT_REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] ||
    GIT_REV="$GIT_REV with uncommitted changes"
GIT_REV="$GIT_REV (binary sha256 $(sha256sum "$S" | cut -c1-12))"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$SECONDS

# ---------------------------------------------------------------------------
# The disk and the points (kept with --keep).
# ---------------------------------------------------------------------------
if [ "$REBUILD" = 1 ] || [ ! -f "$BASE_INFO" ] || ! grep -q "^recipe $RECIPE," "$BASE_INFO"; then
    build_base
    rm -f "$STATE"
else
    note "reusing the disk in $WORK (--rebuild to build it again)"
fi

if [ -f "$STATE" ] && [ "$(cat "$STATE")" = "recipe $RECIPE days $DAYS" ]; then
    note "reusing the $DAYS points in $PTS"
else
    note "making $DAYS daily points (strata with and without catalog, borg)"
    rm -rf "$PTS" "$CHANGES" "$BORG_DIR"
    mkdir -p "$CAT" "$NOCAT" "$CHANGES" "$BORG_DIR/home"
    cp --sparse=always "$BASE" "$DISK"
    borg init -e none "$BREPO" >/dev/null 2>&1 || die "borg init failed"
    for d in $(seq 0 $((DAYS - 1))); do
        dn=$(day "$d")
        mount_parts "$DISK"
        if [ "$d" -gt 0 ]; then
            : >"$CHANGES/$dn.tsv"
            $PY day "$MNT/p1" p1 "$d" "$CHANGES/$dn.tsv"
            $PY day "$MNT/p2" p2 "$d" "$CHANGES/$dn.tsv"
        fi
        timed build borg-create borg "$dn" "$SCRATCH/borg.out" \
            env -C "$MNT" borg create --compression zstd,3 "$BREPO::$dn" p1 p2
        umount_parts
        if [ "$d" = 0 ]; then
            op=create-full; inc_cat=(); inc_nocat=()
        else
            op=create-inc; prev=$(day $((d - 1)))
            inc_cat=(--incremental "$CAT/$prev.strata"); inc_nocat=(--incremental "$NOCAT/$prev.strata")
        fi
        for v in $(if [ $((d % 2)) = 0 ]; then echo cat nocat; else echo nocat cat; fi); do
            if [ "$v" = cat ]; then
                timed build "$op" cat "$dn" "$SCRATCH/create.out" \
                    "$S" create --quiet "${inc_cat[@]}" "$DISK" "$CAT/$dn.strata"
            else
                timed build "$op" nocat "$dn" "$SCRATCH/create.out" \
                    "$S" create --quiet --no-catalog "${inc_nocat[@]}" "$DISK" "$NOCAT/$dn.strata"
            fi
        done
        note "  $dn done ($((SECONDS - T_START)) s)"
    done
    echo "recipe $RECIPE days $DAYS" >"$STATE"
fi
# A kept run's building times are in its own CSV; this one's rows start here.
BUILD_S=$((SECONDS - T_START))

# ---------------------------------------------------------------------------
# Timed rounds.
# ---------------------------------------------------------------------------
RUN=$WORK/run-$STAMP
OUT=$RUN/out
mkdir -p "$OUT"
note "reading the disk and the images into the page cache"
cat "$DISK" "$CAT"/*.strata "$NOCAT"/*.strata >/dev/null
LAST=$(day $((DAYS - 1))); BEFORE=$(day $((DAYS - 2)))
A=$(day "$DA"); B=$(day "$DB")
BORG_FIND='for a in $(borg list --short "$1"); do
    borg list --format "{path}{NL}" --pattern "+ fm:*.conf" --pattern "- *" "$1::$a" | sed "s|^|$a |"
done'
BORG_HIST='for a in $(borg list --short "$1"); do
    borg list --format "{mtime} {size} {path}{NL}" "$1::$a" "$2" | sed "s|^|$a |"
done'
WALK='for i in "$1"/*.strata; do echo "== $i"; "$2" ls -R "$i" /; done'

job() {  # ROUND NAME
    local r=$1
    case $2 in
        create-full-cat) timed time create-full cat "r$r" "$OUT/create.out" \
            "$S" create --quiet --force "$DISK" "$RUN/tmp.strata" ;;
        create-full-nocat) timed time create-full nocat "r$r" "$OUT/create.out" \
            "$S" create --quiet --force --no-catalog "$DISK" "$RUN/tmp.strata" ;;
        create-inc-cat) timed time create-inc cat "r$r" "$OUT/create.out" \
            "$S" create --quiet --force --incremental "$CAT/$BEFORE.strata" "$DISK" "$RUN/tmp.strata" ;;
        create-inc-nocat) timed time create-inc nocat "r$r" "$OUT/create.out" \
            "$S" create --quiet --force --no-catalog --incremental "$NOCAT/$BEFORE.strata" "$DISK" "$RUN/tmp.strata" ;;
        find-cat) timed time find-cat strata "r$r" "$OUT/find-cat.out" "$S" find "$CAT" '*.conf' ;;
        find-nocat) timed time find-nocat strata "r$r" "$OUT/find-nocat.out" "$S" find "$NOCAT" '*.conf' ;;
        walk-ls) timed time walk-ls strata "r$r" "$OUT/walk-ls.out" bash -c "$WALK" _ "$CAT" "$S" ;;
        hist-cat) timed time hist-cat strata "r$r" "$OUT/hist-cat.out" "$S" history "$CAT" "$HIST_PATH" ;;
        hist-nocat) timed time hist-nocat strata "r$r" "$OUT/hist-nocat.out" "$S" history "$NOCAT" "$HIST_PATH" ;;
        diff-cat) timed time diff-cat strata "r$r" "$OUT/diff-cat.out" "$S" diff "$CAT/$A.strata" "$CAT/$B.strata" ;;
        diff-nocat) timed time diff-nocat strata "r$r" "$OUT/diff-nocat.out" "$S" diff "$NOCAT/$A.strata" "$NOCAT/$B.strata" ;;
        find-borg) timed time find-borg borg "r$r" "$OUT/borg-find.out" bash -c "$BORG_FIND" _ "$BREPO" ;;
        hist-borg) timed time hist-borg borg "r$r" "$OUT/borg-hist.out" bash -c "$BORG_HIST" _ "$BREPO" "${HIST_PATH#/}" ;;
        diff-borg) timed time diff-borg borg "r$r" "$OUT/borg-diff.out" borg diff "$BREPO::$A" "$B" ;;
    esac
    [ ! -f "$RUN/tmp.strata" ] || rm -f "$RUN/tmp.strata"
}
JOBS=(create-full-cat create-full-nocat create-inc-cat create-inc-nocat
      find-cat find-borg find-nocat walk-ls hist-cat hist-borg hist-nocat
      diff-cat diff-borg diff-nocat)
for r in $(seq 0 "$RUNS"); do
    if [ "$r" = 0 ]; then note "warm-up round (not counted)"; else note "round $r of $RUNS"; fi
    if [ $((r % 2)) = 1 ]; then order=("${JOBS[@]}"); else mapfile -t order < <(printf '%s\n' "${JOBS[@]}" | tac); fi
    for j in "${order[@]}"; do job "$r" "$j"; done
done
# Round 0 is the warm-up.
awk -F, 'NR == 1 || !($1 == "time" && $4 == "r0")' "$CSV" >"$CSV.tmp" && mv "$CSV.tmp" "$CSV"

# Answers in JSON for the checks (not timed).
"$S" find --json "$CAT" '*.conf' >"$OUT/find-cat.json"
"$S" find --json -i "$CAT" '*.CONF' >"$OUT/find-i-cat.json"
"$S" find --json "$NOCAT" '*.conf' >"$OUT/find-nocat.json" 2>/dev/null
"$S" history --json "$CAT" "$HIST_PATH" >"$OUT/hist-cat.json"
"$S" history --json "$NOCAT" "$HIST_PATH" >"$OUT/hist-nocat.json" 2>/dev/null
"$S" diff --json "$CAT/$A.strata" "$CAT/$B.strata" >"$OUT/diff-cat.json"
"$S" diff --json "$NOCAT/$A.strata" "$NOCAT/$B.strata" >"$OUT/diff-nocat.json" 2>/dev/null
borg diff --json-lines "$BREPO::$A" "$B" >"$OUT/borg-diff.json"

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
BORG_V=$(borg --version | awk '{print $2}')
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MACHINE="$NCPU cores ($CPU), $(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo) GiB RAM, kernel $(uname -r)"
python3 - "$SCRATCH/meta.json" <<EOF2
import json, sys
json.dump({"rev": """$GIT_REV""", "borg": "$BORG_V", "runs": "$RUNS", "machine": """$MACHINE""",
           "load_start": "$LOAD_START", "load_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
           "fs": "$(df --output=fstype "$WORK" | tail -1)", "disk_mib": $DISK_MIB,
           "borg_repo": $(du -sb "$BREPO" | cut -f1)}, open(sys.argv[1], "w"))
EOF2
$PY report "$CSV" "$OUT" "$CHANGES" "$CAT" "$NOCAT" "$BASE_INFO" "$DA" "$DB" "$DAYS" \
    "$HIST_PATH" "$SCRATCH/meta.json" >"$REPORT"
{
    echo
    echo "Run time: $((SECONDS - T_START)) s ($BUILD_S s building the disk and the points)."
} >>"$REPORT"
echo
cat "$REPORT"
echo
note "report: $REPORT; every timed command: $CSV"
[ "$KEEP" = 1 ] && note "kept: $WORK (disk, points, borg repository, query outputs in $RUN)"
exit 0
}
