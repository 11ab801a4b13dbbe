#!/usr/bin/env bash
# serve.sh - `strata serve` (the web front-end) against the strata CLI on the same
# image, in the same run, interleaved: first listing, a rendered page in a headless
# browser, a big-file download, a folder of 20 000 small files as zip and tar.
#
# Usage: sudo benches/serve.sh [--runs N] [--rebuild] [--no-browser]
#
#   --runs N       rounds (default 5); every figure is the median
#   --rebuild      build the bench disks again (in STRATA_BENCH_DIR) even if cached
#                  ones exist, and do not use browse-mount.sh's
#   --no-browser   leave out the page timings (headless Chromium)
#   -h, --help     show this help
#
# A run of 5 rounds takes about 3 minutes once the disks exist (most of it in the zip
# and tar downloads); building the NTFS disk (when browse-mount.sh's is not cached) takes
# 5 to 10 more.
#
# Environment: STRATA (default: target/release/strata, built if missing or older than
# the sources); the binary is copied to the work directory first, so a rebuild of the tree
# during the run does not change what is measured. STRATA_BROWSE_DIR (default
# /var/tmp/strata-bench-browse): benches/browse-mount.sh's cache, whose NTFS disk image
# (ntfs.strata) is used when present. STRATA_BENCH_DIR (default
# /var/tmp/strata-bench-serve): this bench's own disks (the NTFS disk when browse-mount's
# is not cached, about 700 MB; the 10 000-entry ext4 disk, a few MB), results.md (every
# run's table appended) and runs-*.csv (every round's figures). Needs curl, python3,
# /usr/bin/time; for the page timings chromium, chromium-driver and Selenium in
# /var/cache/strata-venv (tests/run-all.sh makes it; STRATA_PYTHON to use another);
# building the disks needs root, ntfs-3g, e2fsprogs and gdisk.
#
# The disks: browse-mount.sh's NTFS disk (GPT, one 2 GiB partition filled through
# ntfs-3g: big.bin, 300 MiB of programs and libraries from /usr; small/, 20 000 files
# of 1-8 KiB in 200 directories; tree/, 1 000 directories of 20 small files; 41 203
# entries), built here the same way if browse-mount.sh has not cached it; and a 128 MiB
# ext4 disk (GPT, mkfs.ext4 -d) whose many/ holds 10 000 files in one directory. Each is
# imaged with `strata create` (defaults).
#
# Measured each round, every `strata serve` started fresh for the measurement (a cold
# process: nothing opened, no cache) and stopped after it, the image files warm in the
# page cache; the steps run in one order on odd rounds and reversed on even ones:
#   listing   from starting `strata serve IMAGE` to a complete GET /api/ls/ID/p1 (the
#             NTFS root); that request alone (curl's time_total; it opens the image);
#             the same request again on that server (warm). Peer: `strata ls IMAGE /p1`,
#             process start to exit. The same for the ext4 many/ (10 000 entries; the
#             JSON carries each entry's type, size and time, so the peer is `ls -l`).
#   page      headless Chromium: from drv.get(URL/browse/ID/p1?token=...) (the first
#             visit: 303 to the page with the cookie, page, script, /api/sets, /api/ls)
#             to <body data-ready="1">, for the NTFS root and for the ext4 many/ (10 000
#             entries). Target: under 1 s. No peer.
#   raw       curl /raw/ID/p1/big.bin -o /dev/null (MB/s) against
#             `strata cat IMAGE /p1/big.bin > /dev/null`. Target: at least 0.8x cat.
#   zip, tar  curl /zip/ID/p1/small -o /dev/shm/... (and /tar/) against
#             `strata cp -r IMAGE /p1/small /dev/shm/...`; and both again from a
#             `strata serve --cache-size 512M`: serve gives each open image a quarter of
#             --cache-size (it keeps up to 4 open), so 512M gives the image the 128 MiB
#             the CLI has by default.
# Also: peak RSS (VmHWM) and CPU time (user + sys, all threads) of the server after
# each download, against /usr/bin/time's figures for the CLI. Checked once per run, on
# round 1's outputs: /api/ls names equal `strata ls` names (many/: names and sizes equal
# `ls -l`'s); the downloaded big.bin equals `strata cat`'s (sha256); the zip passes
# zipfile.testzip(), holds 20 000 files and 201 directories, each file equal to the one
# `strata cp -r` wrote; the tar the same. Every round: every page shows a listing with
# the right entry count. A download that fails is reported, measured again on a fresh
# server, and the server's log kept (serve-*.log).

# The whole script is one { } group, so bash parses it completely before running it.
{
set -euo pipefail
export LC_ALL=C TZ=UTC

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PROG=serve.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

RUNS=5
REBUILD=0
BROWSER=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --rebuild) REBUILD=1; shift ;;
        --no-browser) BROWSER=0; shift ;;
        -h|--help) sed -n '2,/^{/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
for t in curl python3 awk sha256sum; do command -v "$t" >/dev/null || die "'$t' not found"; done
[ -x /usr/bin/time ] || die "/usr/bin/time not found; install time"
PY=${STRATA_PYTHON:-/var/cache/strata-venv/bin/python3}
if [ $BROWSER = 1 ]; then
    { [ -x "$PY" ] && "$PY" -c 'import selenium' 2>/dev/null && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } ||
        die "no Selenium in $PY or no chromium/chromedriver (run tests/run-all.sh once, or --no-browser)"
fi

BROWSE=${STRATA_BROWSE_DIR:-/var/tmp/strata-bench-browse}
BENCH=${STRATA_BENCH_DIR:-/var/tmp/strata-bench-serve}
STRATA=${STRATA:-$REPO/target/release/strata}
if [ "$STRATA" = "$REPO/target/release/strata" ]; then
    # Built if missing or older than the sources (cargo's check; nothing to do otherwise).
    (cd "$REPO" && cargo build --release --quiet)
fi
"$STRATA" serve --help >/dev/null 2>&1 || die "$STRATA is missing or has no 'serve'"
mkdir -p "$BENCH"
WORK=$(mktemp -d /dev/shm/strata-serve.XXXXXX)
cp "$STRATA" "$WORK/strata"
S=$WORK/strata
SPID=
FILL=
cleanup() {
    set +e
    [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
    [ -n "$FILL" ] && mountpoint -q "$FILL" && umount "$FILL"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "$PROG: error: command failed at line $LINENO" >&2' ERR

# ---------------------------------------------------------------- the disks
# The NTFS disk as browse-mount.sh builds it (its tree, browse-tree.py, and make_disk; the ext4
# sibling and the other images left out).
PART_OFF=$((1 << 20))
PART_SIZE=$((2048 << 20))
build_tree() { # DIR
    python3 "$HERE/browse-tree.py" "$1"
}
make_disk() { # VOLUME DISK PART_BYTES
    truncate -s $((PART_OFF + $3 + (1 << 20))) "$2"
    sgdisk -n 1:2048:$((2048 + $3 / 512 - 1)) -t 1:0700 "$2" >/dev/null
    dd if="$1" of="$2" bs=1M seek=1 conv=sparse,notrunc status=none
}
need_build_tools() {
    [ "$(id -u)" = 0 ] || die "building the bench disks needs root (ntfs-3g mount)"
    for t in ntfs-3g mkntfs mkfs.ext4 sgdisk; do command -v "$t" >/dev/null || die "'$t' not found"; done
}
# An image this binary cannot read (made by an older format) is made again from its disk.
usable() { [ -f "$1" ] && "$S" ls "$1" / >/dev/null 2>&1; }

if [ $REBUILD = 0 ] && [ -f "$BROWSE/ready" ] && usable "$BROWSE/ntfs.strata"; then
    NTFS_IMG=$BROWSE/ntfs.strata
else
    NTFS_IMG=$BENCH/ntfs.strata
    if [ $REBUILD = 1 ] || [ ! -f "$BENCH/ntfs.ready" ]; then
        need_build_tools
        note "building the NTFS bench disk in $BENCH (once; about 10 minutes)"
        rm -f "$BENCH/ntfs.img" "$BENCH/ntfs.ready" "$NTFS_IMG"
        tree=$BENCH/tree; rm -rf "$tree"; mkdir -p "$tree"; build_tree "$tree"
        truncate -s $PART_SIZE "$BENCH/ntfs.vol"
        mkntfs -q -F -Q -L BENCH "$BENCH/ntfs.vol" 2>/dev/null
        FILL=$WORK/fill; mkdir -p "$FILL"; ntfs-3g "$BENCH/ntfs.vol" "$FILL"
        cp -r "$tree/." "$FILL/"; umount "$FILL"; FILL=
        make_disk "$BENCH/ntfs.vol" "$BENCH/ntfs.img" $PART_SIZE
        rm -rf "$BENCH/ntfs.vol" "$tree"
        touch "$BENCH/ntfs.ready"
    fi
    if ! usable "$NTFS_IMG"; then
        note "imaging $BENCH/ntfs.img"
        rm -f "$NTFS_IMG"; "$S" create -q "$BENCH/ntfs.img" "$NTFS_IMG"
    fi
fi
MANY_IMG=$BENCH/many.strata
if [ $REBUILD = 1 ] || [ ! -f "$BENCH/many.ready" ]; then
    need_build_tools
    note "building the 10 000-entry ext4 disk in $BENCH"
    rm -f "$BENCH/many.img" "$BENCH/many.ready" "$MANY_IMG"
    tree=$BENCH/many-tree; rm -rf "$tree"; mkdir -p "$tree/many"
    python3 - "$tree/many" <<'EOF'
import os, random, sys
rng = random.Random(11)
for i in range(10000):
    open(os.path.join(sys.argv[1], "f%05d.txt" % i), "wb").write(b"x" * rng.randint(0, 2000))
EOF
    truncate -s $((128 << 20)) "$BENCH/many.vol"
    mkfs.ext4 -q -F -L MANY -N 16384 -d "$tree" "$BENCH/many.vol"
    make_disk "$BENCH/many.vol" "$BENCH/many.img" $((128 << 20))
    rm -rf "$BENCH/many.vol" "$tree"
    touch "$BENCH/many.ready"
fi
if ! usable "$MANY_IMG"; then rm -f "$MANY_IMG"; "$S" create -q "$BENCH/many.img" "$MANY_IMG"; fi
note "images: $NTFS_IMG, $MANY_IMG"

# ---------------------------------------------------------------- the server
STAMP=$(date -u +%Y%m%d-%H%M%S)
# start_serve IMAGE [OPTION...]: starts `strata serve` and reads its URL; sets SPID, BASE,
# COOKIE.
start_serve() { # IMAGE [OPTION...]
    coproc SRV { exec "$S" serve "$@" 2>>"$WORK/serve.log"; }
    SPID=$SRV_PID
    local url
    read -r -t 30 url <&"${SRV[0]}" || die "strata serve printed no URL (see $WORK/serve.log)"
    [[ "$url" =~ ^(http://127\.0\.0\.1:([0-9]+))/\?token=([0-9a-f]+)$ ]] || die "unexpected URL '$url'"
    BASE=${BASH_REMATCH[1]}
    COOKIE="strata_token_${BASH_REMATCH[2]}=${BASH_REMATCH[3]}"
    TOKEN=${BASH_REMATCH[3]}
}
# stop_serve: sets SRSS (peak RSS, MiB) and SCPU (user + sys seconds, every thread).
stop_serve() {
    SRSS=$(awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$SPID/status")
    SCPU=$(awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' "/proc/$SPID/stat")
    kill -TERM "$SPID"
    wait "$SPID" 2>/dev/null || true
    SPID=
}
# get PATH OUT: GET through curl with the cookie; sets CT (time_total), CSIZE. Fails
# (status 1, the reason in CERR) on a curl error or a status other than 200.
get() {
    local w rc=0
    w=$(curl -sS -b "$COOKIE" -o "$2" -w '%{time_total} %{size_download} %{http_code}' "$BASE$1" 2>"$WORK/curl.err") || rc=$?
    CT=${w%% *}; w=${w#* }; CSIZE=${w%% *}
    if [ $rc != 0 ] || [ "${w##* }" != 200 ]; then
        CERR="GET $1: curl exit $rc, HTTP ${w##* }, $CSIZE bytes after $CT s: $(cat "$WORK/curl.err")"
        return 1
    fi
}
# A failed download is reported, counted and measured again (once) on a fresh server.
FAILS=()
failed() {
    note "$CERR"
    FAILS+=("round $round: $CERR")
    cp "$WORK/serve.log" "$BENCH/serve-$STAMP.log" 2>/dev/null || true
}
# The images' ids, from /api/sets.
image_id() { # IMAGE
    start_serve "$1"
    get /api/sets "$WORK/sets.json" || die "$CERR"
    stop_serve
    python3 - "$WORK/sets.json" "$(basename "$1")" <<'EOF'
import json, sys
ids = [i["id"] for s in json.load(open(sys.argv[1]))["sets"] for i in s["images"] if i["name"] == sys.argv[2]]
if len(ids) != 1:
    sys.exit("no single id for " + sys.argv[2])
print(ids[0])
EOF
}
NTFS_ID=$(image_id "$NTFS_IMG")
MANY_ID=$(image_id "$MANY_IMG")

# ---------------------------------------------------------------- the steps
declare -A R # R[what] = "v1 v2 ..."
add() { R[$1]="${R[$1]:-} $2"; echo "$round,$1,$2" >>"$CSV"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.4f", b - a}'; }
# cli NAME OUT CMD...: runs CMD (stdout to OUT) under /usr/bin/time; adds NAME (wall),
# NAME.cpu, NAME.rss.
cli() {
    local name=$1 out=$2 t0 t1 u s m
    shift 2
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S %M' -o "$WORK/time" "$@" >"$out"
    t1=$EPOCHREALTIME
    read -r u s m <"$WORK/time"
    add "$name" "$(sub "$t0" "$t1")"
    add "$name.cpu" "$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}')"
    add "$name.rss" $((m / 1024))
}
CHECK=$WORK/check
# NAME: a server for IMG started and URL listed, timed from the start (NAME.serve.first)
# and as a request (NAME.serve.req); the answer goes to $WORK/NAME.json, and in round 1
# also to the check directory. The server is left running.
first_listing() {
    local name=$1 img=$2 url=$3 t0 t1
    t0=$EPOCHREALTIME
    start_serve "$img"
    get "$url" "$WORK/$name.json" || die "$CERR"
    t1=$EPOCHREALTIME
    add "$name.serve.first" "$(sub "$t0" "$t1")"
    add "$name.serve.req" "$CT"
    if [ "$round" = 1 ]; then cp "$WORK/$name.json" "$CHECK/$name.json"; fi
}
step_ls_serve() {
    first_listing ls "$NTFS_IMG" "/api/ls/$NTFS_ID/p1"
    get "/api/ls/$NTFS_ID/p1" /dev/null || die "$CERR"
    add ls.serve.again "$CT"
    stop_serve
}
# The 10 000-entry folder: its JSON holds every entry's type, size and time, so the peer
# is `ls -l`.
step_lsmany_serve() {
    first_listing lsmany "$MANY_IMG" "/api/ls/$MANY_ID/p1/many"
    stop_serve
}
step_lsmany_cli() {
    cli lsmany.cli "$WORK/lsmany.txt" "$S" ls -l "$MANY_IMG" /p1/many
    if [ "$round" = 1 ]; then cp "$WORK/lsmany.txt" "$CHECK/lsmany.txt"; fi
}
step_ls_cli() {
    cli ls.cli "$WORK/ls.txt" "$S" ls "$NTFS_IMG" /p1
    if [ "$round" = 1 ]; then cp "$WORK/ls.txt" "$CHECK/ls.txt"; fi
}
step_raw() {
    local out=/dev/null
    [ "$round" = 1 ] && out=$CHECK/big.raw
    start_serve "$NTFS_IMG"
    if ! get "/raw/$NTFS_ID/p1/big.bin" "$out"; then
        stop_serve; failed
        start_serve "$NTFS_IMG"
        get "/raw/$NTFS_ID/p1/big.bin" "$out" || die "$CERR (twice)"
    fi
    stop_serve
    [ "$CSIZE" = $((300 << 20)) ] || die "raw: $CSIZE bytes instead of 300 MiB"
    add raw.serve "$CT"; add raw.serve.cpu "$SCPU"; add raw.serve.rss "$SRSS"
}
step_cat() {
    cli cat.cli /dev/null "$S" cat "$NTFS_IMG" /p1/big.bin
    if [ "$round" = 1 ]; then "$S" cat "$NTFS_IMG" /p1/big.bin | sha256sum >"$CHECK/big.cat.sha"; fi
}
step_archive() { # zip|tar NAME [OPTION...]
    local kind=$1 name=$2 out=$WORK/small.$1
    shift 2
    start_serve "$NTFS_IMG" "$@"
    if ! get "/$kind/$NTFS_ID/p1/small" "$out"; then
        stop_serve; failed
        start_serve "$NTFS_IMG" "$@"
        get "/$kind/$NTFS_ID/p1/small" "$out" || die "$CERR (twice)"
    fi
    stop_serve
    add "$name" "$CT"; add "$name.cpu" "$SCPU"; add "$name.rss" "$SRSS"
    if [ "$round" = 1 ] && [ $# = 0 ]; then mv "$out" "$CHECK/small.$kind"; else rm -f "$out"; fi
}
step_zip() { step_archive zip zip.serve; }
step_tar() { step_archive tar tar.serve; }
# The same with the cache the CLI has: serve gives each open image a quarter of
# --cache-size (it keeps up to 4 open), so 512M gives this one image the CLI's 128 MiB.
step_zip_big_cache() { step_archive zip zip.serve512 --cache-size 512M; }
step_tar_big_cache() { step_archive tar tar.serve512 --cache-size 512M; }
step_cp() {
    rm -rf "$WORK/cp"; mkdir "$WORK/cp"
    cli cp.cli /dev/null "$S" cp -q -r "$NTFS_IMG" /p1/small "$WORK/cp/"
    if [ "$round" = 1 ]; then mv "$WORK/cp" "$CHECK/cp"; else rm -rf "$WORK/cp"; fi
}
cat >"$WORK/page.py" <<'EOF'
# page.py REPO STRATA PAGES-JSON: for each page {name, image, path, entries}, a fresh
# `strata serve IMAGE` and the time from drv.get(first-visit URL) to data-ready="1".
import json, subprocess, sys, time
sys.path.insert(0, sys.argv[1] + "/tests/browser")
from harness import driver

# Installed before the page's own scripts: notes when <body data-ready> becomes "1"
# (performance.now(), from the start of the navigation, the 303 included).
HOOK = """
new MutationObserver(() => {
  if (window.__ready === undefined && document.body && document.body.dataset.ready === "1")
    window.__ready = performance.now();
}).observe(document, {attributes: true, subtree: true, attributeFilter: ["data-ready"]});
"""
READY = """
const done = arguments[arguments.length - 1];
const ok = () => window.__ready !== undefined;
if (ok()) { done(window.__ready); return; }
new MutationObserver((_, o) => { if (ok()) { o.disconnect(); done(window.__ready); } })
  .observe(document, {attributes: true, subtree: true, attributeFilter: ["data-ready"]});
"""
# Milestones from the start of the navigation (ms): the page received, DOMContentLoaded
# (app.js has run), /api/sets and /api/ls answered.
SPLIT = """
const r = performance.getEntriesByType("resource"), n = performance.getEntriesByType("navigation")[0];
const end = (p) => { const e = r.find((e) => new URL(e.name).pathname.startsWith(p)); return e ? e.responseEnd : null; };
return {document: n.responseEnd, dcl: n.domContentLoadedEventEnd, sets: end("/api/sets"), ls: end("/api/ls/")};
"""
strata, pages = sys.argv[2], json.loads(sys.argv[3])
drv = driver()
out = {}
try:
    drv.set_script_timeout(30)
    drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOK})
    drv.get("about:blank")
    for p in pages:
        srv = subprocess.Popen([strata, "serve", p["image"]], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        try:
            base, token = srv.stdout.readline().strip().split("/?token=")
            t0 = time.perf_counter()
            drv.get(f"{base}{p['path']}?token={token}")
            in_page = drv.execute_async_script(READY)
            t1 = time.perf_counter()
            view = drv.execute_script("return document.body.dataset.view")
            count = drv.execute_script("const c = document.getElementById('entry-count'); return c && c.textContent")
            if view != "dir" or count != f"{p['entries']} entries":
                sys.exit(f"page {p['name']}: view {view!r}, count {count!r}")
            split = drv.execute_script(SPLIT)
            out[p["name"]] = {"wall": t1 - t0, "in_page": in_page / 1000,
                              **{k: (v / 1000 if v is not None else None) for k, v in split.items()}}
        finally:
            srv.terminate()
            srv.wait()
finally:
    drv.quit()
print(json.dumps(out))
EOF
ROOT_ENTRIES=
step_page() {
    [ $BROWSER = 1 ] || return 0
    local pages j
    pages=$(printf '[{"name": "root", "image": "%s", "path": "/browse/%s/p1", "entries": %s},
        {"name": "many", "image": "%s", "path": "/browse/%s/p1/many", "entries": 10000}]' \
        "$NTFS_IMG" "$NTFS_ID" "$ROOT_ENTRIES" "$MANY_IMG" "$MANY_ID")
    j=$("$PY" "$WORK/page.py" "$REPO" "$S" "$pages") || die "page timing failed"
    local k v
    while read -r k v; do add "$k" "$v"; done < <(python3 -c '
import json, sys
for page, d in json.loads(sys.argv[1]).items():
    for k, v in d.items():
        if v is not None:
            print("page.%s.%s %.4f" % (page, k, v))' "$j")
}

# Checks of round 1's outputs.
check_outputs() {
    note "checking round 1's outputs"
    python3 - "$CHECK" <<'EOF' || die "check failed"
import hashlib, json, os, sys, tarfile, zipfile
c = sys.argv[1]
def fail(m): sys.exit("check: " + m)
names = sorted(e["name"] for e in json.load(open(c + "/ls.json"))["entries"])
cli = sorted(l.rstrip("\n").rstrip("/") for l in open(c + "/ls.txt") if l.strip())
if names != cli:
    fail("/api/ls names %s differ from strata ls %s" % (names[:8], cli[:8]))
many = json.load(open(c + "/lsmany.json"))["entries"]
cli = {l.split()[-1]: int(l.split()[1]) for l in open(c + "/lsmany.txt") if l.strip()}
if len(many) != 10000 or {e["name"]: e["size"] for e in many} != cli:
    fail("/api/ls of many/ (%d entries) differs from strata ls -l (%d)" % (len(many), len(cli)))
h = hashlib.sha256(open(c + "/big.raw", "rb").read()).hexdigest()
if h != open(c + "/big.cat.sha").read().split()[0]:
    fail("/raw big.bin differs from strata cat")
ref = {}
for d, _, fs in os.walk(c + "/cp/small"):
    for f in fs:
        p = os.path.join(d, f)
        ref[os.path.relpath(p, c + "/cp")] = open(p, "rb").read()
if len(ref) != 20000:
    fail("strata cp -r wrote %d files" % len(ref))
z = zipfile.ZipFile(c + "/small.zip")
if z.testzip() is not None:
    fail("zip member %s is damaged" % z.testzip())
files = [i for i in z.infolist() if not i.is_dir()]
dirs = [i for i in z.infolist() if i.is_dir()]
if len(files) != 20000 or len(dirs) != 201:
    fail("zip holds %d files and %d dirs" % (len(files), len(dirs)))
for i in files:
    if ref.get(i.filename) != z.read(i):
        fail("zip member %s differs from strata cp's" % i.filename)
t = tarfile.open(c + "/small.tar")
n = 0
for m in t:
    if m.isfile():
        n += 1
        if ref.get(m.name) != t.extractfile(m).read():
            fail("tar member %s differs from strata cp's" % m.name)
if n != 20000:
    fail("tar holds %d files" % n)
print("checks passed: /api/ls = strata ls (%d names; many/: 10000 names and sizes); big.bin sha256 equal; zip (testzip ok) "
      "and tar: 20000 files equal to strata cp -r's" % len(names), file=sys.stderr)
EOF
}

# ---------------------------------------------------------------- the rounds
CSV=$BENCH/runs-$STAMP.csv
echo "round,measure,value" >"$CSV"
cat "$NTFS_IMG" "$MANY_IMG" >/dev/null
ROOT_ENTRIES=$("$S" ls "$NTFS_IMG" /p1 | grep -c .)
STEPS=(ls_serve ls_cli lsmany_serve lsmany_cli raw cat zip cp tar zip_big_cache tar_big_cache page)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$EPOCHREALTIME
for round in $(seq "$RUNS"); do
    note "round $round of $RUNS"
    if [ "$round" = 1 ]; then mkdir -p "$CHECK"; fi
    if [ $((round % 2)) = 0 ]; then order=$(printf '%s\n' "${STEPS[@]}" | tac); else order=${STEPS[*]}; fi
    for s in $order; do "step_$s"; done
    if [ "$round" = 1 ]; then check_outputs; rm -rf "$CHECK"; fi
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
MINUTES=$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", (b - a) / 60}')

# ---------------------------------------------------------------- report
med() { tr ' ' '\n' <<<"${R[$1]:-}" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
range() { tr ' ' '\n' <<<"${R[$1]:-}" | grep -v '^$' | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {if (NR) printf "%.3f-%.3f", lo, hi}'; }
ms() { if [ "$1" = - ]; then echo -; else awk -v v="$1" 'BEGIN {printf "%.1f", v * 1000}'; fi; }
ms_range() { tr ' ' '\n' <<<"${R[$1]:-}" | grep -v '^$' | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {if (NR) printf "%.1f-%.1f", lo * 1000, hi * 1000}'; }
s3() { if [ "$1" = - ]; then echo -; else awk -v v="$1" 'BEGIN {printf "%.3f", v}'; fi; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }
mbps() { calc %.0f "300 * 1048576 / $1 / 1e6"; }
ratio() { if [ "$1" = - ] || [ "$2" = - ]; then echo -; else calc %.2f "$1 / $2"; fi; }
# pair A B [inv]: the median of the rounds' own ratios A/B (B/A with inv): each round
# measured both under the same load.
pair() {
    paste -d' ' <(tr ' ' '\n' <<<"${R[$1]:-}" | grep -v '^$') <(tr ' ' '\n' <<<"${R[$2]:-}" | grep -v '^$') |
        awk -v inv="${3:-}" '{print (inv ? $2 / $1 : $1 / $2)}' | sort -g |
        awk '{a[NR]=$1} END {if (NR) printf "%.2f", a[int((NR+1)/2)]; else print "-"}'
}
yes_no() { if awk "BEGIN {exit !($1)}"; then echo "yes"; else echo "**no**"; fi; }
dirty=; [ -n "$(git -C "$REPO" status --porcelain -- src 2>/dev/null)" ] && dirty=" + uncommitted changes under src/"
{
echo
echo "## serve.sh, $(date -u '+%Y-%m-%d %H:%M') UTC: $RUNS rounds, medians (min-max)"
echo
echo "strata $("$S" --version | cut -d' ' -f2), $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty;" \
     "$(nproc) cores; load average before $LOAD0, after $LOAD1; $MINUTES min"
echo "NTFS image $NTFS_IMG ($ROOT_ENTRIES entries at the root); 10 000-entry image $MANY_IMG"
echo
echo "| measure | strata serve | peer | ratio | target | met? |"
echo "| --- | ---: | ---: | ---: | --- | --- |"
a=$(med ls.serve.first); b=$(med ls.cli)
echo "| first listing of the NTFS root ($ROOT_ENTRIES entries), from process start (ms) | $(ms "$a") ($(ms_range ls.serve.first)) | strata ls /p1: $(ms "$b") ($(ms_range ls.cli)) | $(ratio "$a" "$b") ($(pair ls.serve.first ls.cli)) | | |"
a=$(med ls.serve.req)
echo "| ... the /api/ls request alone (opens the image) (ms) | $(ms "$a") ($(ms_range ls.serve.req)) | $(ms "$b") | $(ratio "$a" "$b") ($(pair ls.serve.req ls.cli)) | | |"
echo "| ... the same request again, warm (ms) | $(ms "$(med ls.serve.again)") | | | | |"
a=$(med lsmany.serve.first); b=$(med lsmany.cli)
echo "| first listing of many/ (10 000 entries, ext4), from process start (ms) | $(ms "$a") ($(ms_range lsmany.serve.first)) | strata ls -l: $(ms "$b") ($(ms_range lsmany.cli)) | $(ratio "$a" "$b") ($(pair lsmany.serve.first lsmany.cli)) | | |"
a=$(med lsmany.serve.req)
echo "| ... the /api/ls request alone (ms) | $(ms "$a") ($(ms_range lsmany.serve.req)) | $(ms "$b") | $(ratio "$a" "$b") ($(pair lsmany.serve.req lsmany.cli)) | | |"
if [ $BROWSER = 1 ]; then
    for p in root many; do
        a=$(med page.$p.wall)
        [ $p = root ] && what="NTFS root ($ROOT_ENTRIES entries)" || what="ext4 folder of 10 000 entries"
        echo "| page ready in Chromium, $what (s) | $(s3 "$a") ($(range page.$p.wall)) | | | < 1 s | $(yes_no "$a < 1") |"
    done
fi
a=$(med raw.serve); b=$(med cat.cli); r=$(ratio "$b" "$a"); pr=$(pair raw.serve cat.cli inv)
echo "| big.bin 300 MiB (MB/s) | /raw: $(mbps "$a") ($(mbps "$(range raw.serve | cut -d- -f2)")-$(mbps "$(range raw.serve | cut -d- -f1)")) | strata cat: $(mbps "$b") ($(mbps "$(range cat.cli | cut -d- -f2)")-$(mbps "$(range cat.cli | cut -d- -f1)")) | $r ($pr) | >= 0.8x | $(yes_no "$r >= 0.8 && $pr >= 0.8") |"
b=$(med cp.cli)
for z in zip tar; do
    a=$(med $z.serve)
    echo "| small/ (20 000 files) as $z (s) | /$z: $(s3 "$a") ($(range $z.serve)) | strata cp -r: $(s3 "$b") ($(range cp.cli)) | $(ratio "$a" "$b") ($(pair $z.serve cp.cli)) | | |"
done
for z in zip tar; do
    a=$(med $z.serve512)
    echo "| ... as $z, serve --cache-size 512M (128 MiB for the image, as the CLI) (s) | $(s3 "$a") ($(range $z.serve512)) | $(s3 "$b") | $(ratio "$a" "$b") ($(pair $z.serve512 cp.cli)) | | |"
done
echo
echo "Ratios: serve/peer for times, serve's MB/s over cat's for big.bin; the ratio of the medians,"
echo "then in parentheses the median of each round's own ratio (both measured under the same load)."
echo
echo "| resources (medians) | strata serve | strata CLI | ratio |"
echo "| --- | ---: | ---: | ---: |"
echo "| big.bin: CPU user+sys (s) | $(med raw.serve.cpu) | cat: $(med cat.cli.cpu) | $(ratio "$(med raw.serve.cpu)" "$(med cat.cli.cpu)") |"
echo "| small/ as zip / tar: CPU user+sys (s) | $(med zip.serve.cpu) / $(med tar.serve.cpu) | cp -r: $(med cp.cli.cpu) | $(ratio "$(med zip.serve.cpu)" "$(med cp.cli.cpu)") / $(ratio "$(med tar.serve.cpu)" "$(med cp.cli.cpu)") |"
echo "| peak RSS, big.bin (MiB) | $(med raw.serve.rss) | cat: $(med cat.cli.rss) | |"
echo "| peak RSS, small/ zip / tar (MiB) | $(med zip.serve.rss) / $(med tar.serve.rss) | cp -r: $(med cp.cli.rss) | |"
echo "| small/ as zip / tar with --cache-size 512M: CPU (s), peak RSS (MiB) | $(med zip.serve512.cpu) / $(med tar.serve512.cpu), $(med zip.serve512.rss) / $(med tar.serve512.rss) | | |"
if [ $BROWSER = 1 ]; then
    echo
    echo "Where a page's time goes (medians, ms from the start of the navigation, the 303"
    echo "included, by the page's Performance API; ready noted by a script installed before"
    echo "the page's own):"
    echo
    echo "| page | drv.get to ready (wall) | page received | DOMContentLoaded (app.js run) | /api/sets answered | /api/ls answered | data-ready=1 |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for p in root many; do
        echo "| $p | $(ms "$(med page.$p.wall)") | $(ms "$(med page.$p.document)") | $(ms "$(med page.$p.dcl)") | $(ms "$(med page.$p.sets)") | $(ms "$(med page.$p.ls)") | $(ms "$(med page.$p.in_page)") |"
    done
fi
echo
if [ ${#FAILS[@]} -gt 0 ]; then
    echo "Downloads that failed (each measured again on a fresh server):"
    printf -- '- %s\n' "${FAILS[@]}"
    echo
fi
echo "Every round's figures: $CSV"
} | tee -a "$BENCH/results.md"
exit 0
}
