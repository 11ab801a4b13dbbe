"""The browser and HTTP side of tests/serve.rs: `strata serve` driven as a person would
(headless Chromium through harness.py) and as a client would (plain HTTP with the cookie).

Usage: test_serve.py CASE JSON-ARGS. Every case gets the URL the server printed (`url`) and
what it needs to know about the disks behind it; contents are compared with references that
do not come from strata (the sample disk's manifest, the trees the volumes were made from,
the contents the test wrote). Exits non-zero with a message on the first failed check;
prints `TIMING ...` lines the Rust side passes on.
"""
import hashlib
import http.client
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import unicodedata
import urllib.parse
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import console_errors, driver, wait_ready  # noqa: E402

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def sha_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def enc(path):
    """A path inside an image as the page puts it in a URL: each segment encodeURIComponent'd."""
    return "/".join(urllib.parse.quote(s, safe="-_.!~*'()") for s in path.split("/") if s)


# The characters the page shows as visible \uXXXX escapes (app.js HIDDEN).
def hidden(c):
    o = ord(c)
    return (o <= 0x1F or 0x7F <= o <= 0x9F or o == 0x61C or 0x200B <= o <= 0x200F
            or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069 or o == 0xFEFF)


def shown_bytes(n):
    """A size as the page writes it (decimal units)."""
    if n < 1000:
        return f"{n} B"
    v, unit = n, 0
    while v >= 1000 and unit < 5:
        v, unit = v / 1000, unit + 1
    return f"{v:.{1 if v < 10 else 0}f} {['B', 'KB', 'MB', 'GB', 'TB', 'PB'][unit]}"


def plain(name):
    return "".join(f"\\u{ord(c):04X}" if hidden(c) else c for c in name)


def escape_name(name):
    """strata's archive names (vfs::path::escape_name on Unix, then `\\` as %5C): control
    characters, `/`, and a `%` before a hex digit become %XX of their UTF-8 bytes."""
    if name == "":
        return "%"
    if name == "%":
        return "%25"
    if name in (".", ".."):
        return "%2E" * len(name)
    out = []
    for i, c in enumerate(name):
        bad = (unicodedata.category(c) == "Cc" or c == "/"
               or (c == "%" and i + 1 < len(name) and name[i + 1] in "0123456789abcdefABCDEF"))
        out.append("".join(f"%{b:02X}" for b in c.encode()) if bad else c)
    return "".join(out).replace("\\", "%5C")


# ---- HTTP -----------------------------------------------------------------------------

class Resp:
    def __init__(self, status, headers, body, error):
        self.status, self.headers, self.body, self.error = status, headers, body, error

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        check(self.status == 200, f"status {self.status}: {self.body[:300]!r}")
        return json.loads(self.body)

    def complete(self):
        """The whole body arrived as announced (no read error, Content-Length met)."""
        n = self.header("content-length")
        return self.error is None and (n is None or int(n) == len(self.body))


class Server:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.url = url
        self.host, self.port = u.hostname, u.port
        self.netloc = u.netloc
        self.base = f"http://{u.netloc}"
        self.token = urllib.parse.parse_qs(u.query)["token"][0]
        self.cookie = f"strata_token_{self.port}={self.token}"

    def get(self, path, headers=None, cookie=True, host=True):
        """GET `path` exactly as given (no normalisation); cookie/host: True for the right
        one, a string for that one, None for none."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
            if host is True:
                host = self.netloc
            if host is not None:
                conn.putheader("Host", host)
            if cookie is True:
                cookie = self.cookie
            if cookie is not None:
                conn.putheader("Cookie", cookie)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.endheaders()
            try:
                r = conn.getresponse()
            except (ConnectionError, http.client.HTTPException) as e:
                # Closed before a status line (status 0): the server gave up before answering.
                return Resp(0, {}, b"", f"no response: {type(e).__name__}: {e}")
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            error, body = None, b""
            try:
                body = r.read()
            except http.client.IncompleteRead as e:
                error, body = f"IncompleteRead after {len(e.partial)} bytes", e.partial
            except (ConnectionError, OSError) as e:
                error = f"{type(e).__name__}: {e}"
            return Resp(r.status, hdrs, body, error)
        finally:
            conn.close()

    def api(self, path):
        return self.get(path).json()

    def sets(self):
        return self.api("/api/sets")

    def image_ids(self):
        """name of each served image -> id."""
        return {i["name"]: i["id"] for s in self.sets()["sets"] for i in s["images"]}

    def only_id(self):
        ids = self.image_ids()
        check(len(ids) == 1, f"one image expected: {ids}")
        return next(iter(ids.values()))

    def raw(self, iid, path, headers=None):
        return self.get(f"/raw/{iid}/{enc(path)}?dl=1", headers)


def read_manifest(path):
    """(files: path -> (size, sha), dirs: path -> set of child names, links: path -> sha of
    target) of a manifest.sh listing, paths as /pN/..."""
    files, dirs, links = {}, {}, {}
    for line in Path(path).read_text().splitlines():
        part, p, kind, size, _mtime, digest = line.split("\t")
        if kind == "x":
            continue
        full = f"/{part}{p}"
        dirs.setdefault(f"/{part}", set())
        parent, name = full.rsplit("/", 1)
        dirs.setdefault(parent, set()).add(name)
        if kind == "d":
            dirs.setdefault(full, set())
        elif kind == "f":
            files[full] = (int(size), digest)
        elif kind == "l":
            links[full] = digest
    return files, dirs, links


def read_streams(path):
    """Named streams of a manifest.sh listing (its `x` lines, ntfs-3g's `user.` attributes):
    path -> {stream name: sha256}."""
    out = {}
    for line in Path(path).read_text().splitlines():
        part, p, kind, _size, _mtime, digest = line.split("\t")
        if kind == "x":
            file, attr = p.split(":", 1)
            out.setdefault(f"/{part}{file}", {})[attr.removeprefix("user.")] = digest
    return out


def tree_of(root):
    """Files below a host directory: relative path -> bytes."""
    out = {}
    for top, _dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(top, n)
            out["/" + os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


# ---- the browser -----------------------------------------------------------------------

EXPECTED_CONSOLE = ("Failed to load resource",)


def no_console_errors(drv, allow_failed_requests=False, allow=()):
    """No console error since the last call, apart from failed requests when allowed (all
    of them, or those whose message holds a string of `allow`)."""
    errs = console_errors(drv)
    if allow_failed_requests:
        errs = [e for e in errs if not any(x in e for x in EXPECTED_CONSOLE)]
    errs = [e for e in errs if not any(x in e for x in allow)]
    check(not errs, f"console errors on {drv.current_url}: {errs}")


def js(drv, script, *args):
    return drv.execute_script(script, *args)


def view(drv):
    return js(drv, "return document.body.dataset.view")


def goto(drv, srv, path, want_view, timeout=30):
    drv.get(srv.base + path)
    wait_ready(drv, timeout)
    v = view(drv)
    if v != want_view:
        err = js(drv, "const e = document.querySelector('#error'); return e && e.textContent")
        raise Failed(f"{path}: view {v!r}, wanted {want_view!r} (error: {err!r})")


def click_and_wait(drv, elem, want_view, timeout=30):
    """Clicks an in-app link: the page changes view without reloading."""
    elem.click()
    WebDriverWait(drv, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "1"
        and d.execute_script("return document.body.dataset.view") == want_view,
        f"view {want_view!r} not reached from {drv.current_url}")


def back(drv, want_view):
    drv.back()
    WebDriverWait(drv, 30, poll_frequency=0.05).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "1"
        and d.execute_script("return document.body.dataset.view") == want_view,
        f"back: view {want_view!r} not reached ({drv.current_url})")


def login(drv, srv):
    drv.get(srv.url)
    wait_ready(drv, 30)
    check(view(drv) == "sets", f"the token URL shows {view(drv)!r}")
    check("token" not in drv.current_url, f"the token stays in the address: {drv.current_url}")


def rendered_rows(drv):
    """The listing's rows in the page (only those in view exist), in display order."""
    return js(drv, """
        return [...document.querySelectorAll('#listing .entry')]
          .map(r => ({name: r.dataset.name, type: r.dataset.type, top: parseFloat(r.style.top),
                      text: r.querySelector('a.name').textContent,
                      ctl: r.querySelectorAll('a.name span.ctl').length,
                      href: r.querySelector('a.name').getAttribute('href')}))
          .sort((a, b) => a.top - b.top);""")


def row_link(drv, name):
    a = js(drv, """const n = arguments[0];
        const r = [...document.querySelectorAll('#listing .entry')].find(r => r.dataset.name === n);
        return r ? r.querySelector('a.name') : null;""", name)
    check(a is not None, f"no row {name!r} in {drv.current_url}")
    return a


def download(drv, click, timeout=30, what=""):
    """Runs click() (which starts one download) and returns the finished file, in a
    directory of its own so names never collide."""
    d = tempfile.mkdtemp(dir=drv.download_dir)
    drv.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": d})
    click()
    deadline = time.monotonic() + timeout
    while True:
        names = os.listdir(d)
        done = [n for n in names if not n.endswith(".crdownload") and not n.startswith(".")]
        if done and not any(n.endswith(".crdownload") for n in names):
            check(len(done) == 1, f"several downloads: {done}")
            return Path(d) / done[0]
        if time.monotonic() > deadline:
            raise Failed(f"{what}: no download finished after {timeout}s (have {names})")
        time.sleep(0.05)


def download_fails(drv, click, wait=4.0):
    """Runs click() and checks that no finished download appears within `wait` seconds."""
    d = tempfile.mkdtemp(dir=drv.download_dir)
    drv.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": d})
    click()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        done = [n for n in os.listdir(d) if not n.endswith(".crdownload")]
        check(not done, f"a download that should fail finished: {done} "
              f"({[os.path.getsize(os.path.join(d, n)) for n in done]} bytes)")
        time.sleep(0.1)
    return os.listdir(d)


def open_driver(width, height):
    """harness.driver with a download directory of its own, removed by close()."""
    return driver(width, height, tempfile.mkdtemp(prefix="strata-dl-"))


def close(drv):
    try:
        drv.quit()
    finally:
        shutil.rmtree(drv.download_dir, ignore_errors=True)


def no_horizontal_scroll(drv, what):
    w = js(drv, "return [document.documentElement.scrollWidth, window.innerWidth]")
    check(w[0] <= w[1], f"{what}: horizontal scroll at {w[1]} px wide (content {w[0]} px)")


# ---- archives --------------------------------------------------------------------------

def archive_members(kind, data):
    """name -> ('f', bytes) | ('l', target) | ('d', None) of a zip or tar."""
    out = {}
    if kind == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            check(z.testzip() is None, "zip CRC error")
            for i in z.infolist():
                mode = (i.external_attr >> 16) & 0o170000
                if i.is_dir():
                    out[i.filename.rstrip("/")] = ("d", None)
                elif mode == 0o120000:
                    out[i.filename] = ("l", z.read(i).decode())
                else:
                    out[i.filename] = ("f", z.read(i))
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            for m in t.getmembers():
                if m.isdir():
                    out[m.name.rstrip("/")] = ("d", None)
                elif m.issym():
                    out[m.name] = ("l", m.linkname)
                elif m.isfile():
                    out[m.name] = ("f", t.extractfile(m).read())
                else:
                    raise Failed(f"{m.name}: unexpected tar member type {m.type!r}")
    for name in out:
        parts = name.split("/")
        check(not name.startswith("/") and ".." not in parts and "." not in parts
              and "" not in parts and "\\" not in name,
              f"unsafe member name {name!r}")
    return out


def check_archive(kind, data, top, files, links, below):
    """Every file (files: path -> (size, sha256)) and link (links: path -> sha256 of the
    target) of the reference below `below` is in the archive under
    `top/` with its escaped name and the same contents, and the archive holds nothing else
    that is not a directory."""
    members = archive_members(kind, data)

    def arc(p):
        rel = p[len(below):].strip("/").split("/")
        return "/".join([top] + [escape_name(n) for n in rel])

    want = {}
    for p, (_size, digest) in files.items():
        if p.startswith(below + "/"):
            want[arc(p)] = ("f", digest)
    for p, digest in links.items():
        if p.startswith(below + "/"):
            want[arc(p)] = ("l", digest)
    got = {}
    for name, (k, v) in members.items():
        if k == "f":
            got[name] = ("f", sha(v))
        elif k == "l":
            got[name] = ("l", sha(v.encode()))
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(n for n in set(want) & set(got) if want[n] != got[n])
    check(not missing and not extra and not wrong,
          f"{kind} of {below}: missing {missing[:10]}, extra {extra[:10]}, wrong {len(wrong)} {wrong[:10]}")
    return len(want)


# ---- cases -----------------------------------------------------------------------------

def case_sample(a):
    """The sample disk: pages, every listing and every file against the manifest, one file
    and the zip of p2 downloaded by the browser, the tar of p3 over HTTP."""
    srv = Server(a["url"])
    files, dirs, links = read_manifest(a["manifest"])
    iid = srv.only_id()

    # Every directory's listing, and every file's bytes, over HTTP.
    top = srv.api(f"/api/ls/{iid}/")
    check(top.get("top") and [e["name"] for e in top["entries"]] == ["p1", "p2", "p3"],
          f"partitions: {top}")
    for d, children in sorted(dirs.items()):
        res = srv.api(f"/api/ls/{iid}/{enc(d)}")
        check(res["type"] == "dir", f"{d}: {res.get('type')}")
        names = [e["name"] for e in res["entries"]]
        check(len(names) == len(set(names)) and set(names) == children,
              f"{d}: listed {sorted(names)}, manifest has {sorted(children)}")
        for e in res["entries"]:
            p = f"{d}/{e['name']}"
            check("error" not in e, f"{p}: {e.get('error')}")
            if p in files:
                check(e["type"] == "file" and e["size"] == files[p][0], f"{p}: {e}")
    for p, (size, digest) in sorted(files.items()):
        r = srv.raw(iid, p)
        check(r.status == 200 and r.complete(), f"/raw {p}: {r.status} {r.error} {r.body[:200]!r}")
        check(len(r.body) == size and sha(r.body) == digest, f"/raw {p}: wrong contents")
    for p, digest in links.items():
        m = srv.api(f"/api/ls/{iid}/{enc(p)}")
        check(m["type"] == "symlink" and sha(m["target"].encode()) == digest, f"{p}: {m}")
    streams = read_streams(a["manifest"])
    check(streams, "the manifest has no named streams")
    for p, named in streams.items():
        m = srv.api(f"/api/ls/{iid}/{enc(p)}")
        check({x["name"] for x in m["streams"]} == set(named), f"{p}: streams {m['streams']}")
        for name, digest in named.items():
            r = srv.get(f"/raw/{iid}/{enc(p)}?dl=1&stream={urllib.parse.quote(name)}")
            check(r.status == 200 and r.complete() and sha(r.body) == digest, f"{p}:{name}: {r.status}")
    print(f"checked {len(dirs)} listings, {len(files)} files, {len(links)} links, "
          f"{sum(map(len, streams.values()))} streams over HTTP")

    # The tar of p3 over HTTP.
    r = srv.get(f"/tar/{iid}/p3")
    check(r.status == 200 and r.error is None, f"/tar p3: {r.status} {r.error}")
    check(r.header("content-type") == "application/x-tar", f"tar type {r.header('content-type')}")
    n = check_archive("tar", r.body, "p3", files, links, "/p3")
    print(f"tar of p3: {n} members match")

    drv = open_driver(1280, 900)
    try:
        login(drv, srv)
        links_ = drv.find_elements(By.CSS_SELECTOR, "a.point-link[data-image-id]")
        check([x.get_attribute("data-image-id") for x in links_] == [iid], "sets page: one point")
        check(not drv.find_elements(By.CSS_SELECTOR, "tr.broken-row"), "sets page: a broken row")
        no_console_errors(drv)
        click_and_wait(drv, links_[0], "point")
        check(drv.current_url.endswith(f"/point/{iid}"), drv.current_url)
        parts = js(drv, "return [...document.querySelectorAll('#partitions tbody tr')].map(r => r.cells[1].textContent)")
        check(len(parts) == 3 and parts[0].startswith("FAT") and parts[1].startswith("NTFS")
              and parts[2].startswith("ext"), f"point page partitions: {parts}")
        no_console_errors(drv)
        click_and_wait(drv, drv.find_element(By.CSS_SELECTOR, "a.button.primary"), "dir")
        check(drv.current_url.endswith(f"/browse/{iid}/"), drv.current_url)
        check([r["name"] for r in rendered_rows(drv)] == ["p1", "p2", "p3"], "the partitions listing")
        for part in ("p1", "p2", "p3"):
            click_and_wait(drv, row_link(drv, part), "dir")
            names = {r["name"] for r in rendered_rows(drv)}
            check(names == dirs[f"/{part}"], f"/{part} in the page: {sorted(names)}")
            count = js(drv, "return document.querySelector('#entry-count').textContent")
            check(count == f"{len(dirs['/' + part])} entries", f"/{part}: {count!r}")
            no_console_errors(drv)
            back(drv, "dir")
        # Down to one file by clicks, its text preview and its download.
        for step in ("p1", "Dokumente", "final"):
            click_and_wait(drv, row_link(drv, step), "dir")
        target = "/p1/Dokumente/final/Résumé.txt"
        click_and_wait(drv, row_link(drv, "Résumé.txt"), "file")
        check(js(drv, "return document.querySelector('#file-name').textContent") == "Résumé.txt", "file name")
        WebDriverWait(drv, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#preview"))
        raw = srv.raw(iid, target).body
        shown_text = js(drv, "const p = document.querySelector('#preview pre.text'); return p && p.textContent")
        check(shown_text == raw[:65536].decode("utf-8"), "the text preview is not the file's text")
        enc_label = js(drv, "return document.querySelector('#encoding').textContent")
        check(enc_label.startswith("Text, UTF-8"), f"encoding: {enc_label!r}")
        f = download(drv, lambda: drv.find_element(By.CSS_SELECTOR, "a#download").click())
        check(sha_file(f) == files[target][1], f"downloaded {f.name}: wrong contents")
        no_console_errors(drv)
        # A picture: shown, and its named stream listed and downloaded.
        pic = "/p2/results.png"
        goto(drv, srv, f"/browse/{iid}/{enc(pic)}", "file")
        # (Its bytes are a PNG signature and noise: the picture is asked for, not drawn.)
        src = js(drv, "const i = document.querySelector('#preview img.preview'); return i && i.getAttribute('src')")
        check(src == f"/raw/{iid}/{enc(pic)}", f"{pic}: picture from {src!r}")
        r = srv.get(src)
        check(r.status == 200 and r.header("content-type") == "image/png" and sha(r.body) == files[pic][1],
              f"{src}: {r.status} {r.header('content-type')}")
        items = drv.find_elements(By.CSS_SELECTOR, "#streams li")
        check(len(items) == 1 and items[0].text.startswith("Zone.Identifier"), f"{pic}: streams {[i.text for i in items]}")
        f = download(drv, items[0].find_element(By.TAG_NAME, "a").click, what=f"{pic} stream")
        check(sha_file(f) == streams[pic]["Zone.Identifier"], f"{pic}: stream download {f.name}: wrong contents")
        no_console_errors(drv)
        # Binary data: the hex view of its first bytes.
        bin_ = "/p3/src/build/big-1.bin"
        goto(drv, srv, f"/browse/{iid}/{enc(bin_)}", "file")
        WebDriverWait(drv, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#preview pre.hex"), f"{bin_}: no hex view")
        head = srv.raw(iid, bin_, {"Range": "bytes=0-15"}).body
        first = js(drv, "return document.querySelector('#preview pre.hex').textContent.split('\\n')[0]")
        check(first.startswith("00000000  " + " ".join(f"{b:02x}" for b in head)), f"{bin_}: hex {first!r}")
        check(js(drv, "return document.querySelector('#encoding').textContent").startswith("Binary data"), "encoding")
        no_console_errors(drv)
        # The zip of p2 through its button.
        goto(drv, srv, f"/browse/{iid}/p2", "dir")
        z = download(drv, lambda: drv.find_element(By.CSS_SELECTOR, "a#zip").click())
        check(z.name == "p2.zip", f"zip named {z.name!r}")
        n = check_archive("zip", z.read_bytes(), "p2", files, links, "/p2")
        print(f"zip of p2 from the browser: {n} members match")
        no_console_errors(drv)
    finally:
        close(drv)


def case_chain(a):
    """Two points of an ext4 volume: sets, history with each version's download, the
    differences and a search, against what the test changed."""
    srv = Server(a["url"])
    ids = srv.image_ids()
    A, B = ids[a["full"]], ids[a["incr"]]
    check(len(ids) == 2, f"two images: {ids}")
    edited = a["edited"]
    want_rows = {(c, p) for c, p in a["changes"]}
    cli_rows = {(r["change"], r["path"]) for r in a["cli_rows"]}
    check(cli_rows == want_rows, f"strata diff --json: {sorted(cli_rows)} vs made {sorted(want_rows)}")
    api_rows = srv.api(f"/api/diff?a={A}&b={B}&path=%2F")["rows"]
    check({(r["change"], r["path"]) for r in api_rows} == want_rows, f"/api/diff: {api_rows}")
    for r in api_rows:
        if r["change"] == "renamed":
            check(r.get("old_path") == a["renamed_from"], f"rename: {r}")

    drv = open_driver(1280, 900)
    try:
        login(drv, srv)
        pts = js(drv, "return [...document.querySelectorAll('a.point-link')].map(a => a.dataset.imageId)")
        check(sorted(pts) == sorted([A, B]), f"sets page points {pts}")
        check(len(drv.find_elements(By.CSS_SELECTOR, ".timeline a")) == 2, "two points on the timeline")
        no_console_errors(drv)

        # The edited file: two versions, each downloadable with its own contents.
        goto(drv, srv, f"/history/{B}/{enc(edited)}", "history")
        rows = drv.find_elements(By.CSS_SELECTOR, "tr.version")
        check(len(rows) == 2 and not drv.find_elements(By.CSS_SELECTOR, "tr.version.deleted"),
              f"{edited}: {len(rows)} version rows")
        got = {}
        for row in rows:
            link = row.find_element(By.CSS_SELECTOR, "a[download]")
            href = link.get_attribute("href")
            img = urllib.parse.urlsplit(href).path.split("/")[2]
            f = download(drv, link.click)
            got[img] = sha_file(f)
        check(got == {A: a["versions"][0], B: a["versions"][1]},
              f"version downloads {got}, wanted A={a['versions'][0]} B={a['versions'][1]}")
        no_console_errors(drv)

        # The deleted file: present in A, absent in B.
        goto(drv, srv, f"/history/{B}/{enc(a['deleted'])}", "history")
        check(len(drv.find_elements(By.CSS_SELECTOR, "tr.version")) == 2
              and len(drv.find_elements(By.CSS_SELECTOR, "tr.version.deleted")) == 1,
              f"{a['deleted']}: not one version and one absence")
        no_console_errors(drv)

        # What changed.
        goto(drv, srv, f"/diff?a={A}&b={B}", "diff")
        shown = set(map(tuple, js(drv, "return [...document.querySelectorAll('tr.change')].map(r => [r.dataset.change, r.dataset.path])")))
        check(shown == want_rows, f"diff page: {sorted(shown)}, made {sorted(want_rows)}")
        count = js(drv, "return document.querySelector('#diff-count').textContent")
        check(count == f"{len(want_rows)} change(s)", f"diff count {count!r}")
        no_console_errors(drv)
        # The point page's compare button picks the previous point.
        goto(drv, srv, f"/point/{B}", "point")
        link = drv.find_element(By.XPATH, "//a[contains(@href, '/diff?b=')]")
        click_and_wait(drv, link, "diff")
        drv.find_element(By.CSS_SELECTOR, "#diff-form button[type=submit]").click()
        WebDriverWait(drv, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#diff-count")
                                     and d.execute_script("return document.body.dataset.ready") == "1")
        shown = set(map(tuple, js(drv, "return [...document.querySelectorAll('tr.change')].map(r => [r.dataset.change, r.dataset.path])")))
        check(shown == want_rows, f"diff from the point page: {sorted(shown)}")

        # Search: the added file is in the second point only; the kept one in both.
        goto(drv, srv, f"/search?q={urllib.parse.quote(a['added_name'])}", "search")
        res = js(drv, "return [...document.querySelectorAll('tr.result')].map(r => [r.dataset.path, r.dataset.image])")
        check(res == [[a["added"], B]], f"search {a['added_name']}: {res}")
        check(js(drv, "return document.querySelector('#result-count').textContent").startswith("1 match(es) in 2 point(s)"),
              "result count")
        goto(drv, srv, f"/search?q={urllib.parse.quote(a['kept_name'])}&type=f", "search")
        # Unchanged in both points: one row, holding both.
        res = js(drv, "return [...document.querySelectorAll('tr.result')].map(r => [r.dataset.path, r.dataset.image, r.dataset.images])")
        check(res == [[a["kept"], B, f"{A} {B}"]], f"search {a['kept_name']}: {res}")
        # The header's search box.
        goto(drv, srv, "/", "sets")
        box = drv.find_element(By.ID, "search-box")
        box.send_keys(a["added_name"].upper())
        box.submit()
        WebDriverWait(drv, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result-count"))
        no_console_errors(drv)
    finally:
        close(drv)


def case_bigdir(a):
    """10,000 entries in one folder: the count, scrolling to the end, the filter, sorting;
    ranges of a 64 MiB file."""
    srv = Server(a["url"])
    iid = srv.only_id()
    src = Path(a["tree"])
    folder = a["folder"]
    sizes = {p.name: p.stat().st_size for p in (src / folder.strip("/")).iterdir()}
    check(len(sizes) == 10000, f"the source tree has {len(sizes)} files")
    names = sorted(sizes)

    drv = open_driver(1280, 900)
    try:
        login(drv, srv)
        t0 = time.monotonic()
        goto(drv, srv, f"/browse/{iid}/{enc(folder)}", "dir", timeout=60)
        ready_ms = (time.monotonic() - t0) * 1000
        WebDriverWait(drv, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#listing .entry"))
        drawn_ms = (time.monotonic() - t0) * 1000
        print(f"TIMING big directory of 10000 entries: navigation to data-ready {ready_ms:.0f} ms, "
              f"to the first rows drawn {drawn_ms:.0f} ms")
        count = js(drv, "return document.querySelector('#entry-count').textContent")
        check(count == "10000 entries", f"entry count {count!r}")
        rows = rendered_rows(drv)
        check(len(rows) < 200, f"{len(rows)} rows in the page: not virtual")
        check([r["name"] for r in rows] == names[:len(rows)], "first rows not in name order")
        # Scroll to the bottom: the last name is drawn.
        js(drv, "const b = document.querySelector('#rows'); b.scrollTop = b.scrollHeight;")
        WebDriverWait(drv, 10, poll_frequency=0.05).until(
            lambda d: any(r["name"] == names[-1] for r in rendered_rows(d)),
            f"{names[-1]} not drawn after scrolling to the bottom")
        rows = rendered_rows(drv)
        check([r["name"] for r in rows] == names[-len(rows):], "last rows not in name order")
        last = js(drv, """const b = document.querySelector('#rows');
            const r = [...b.querySelectorAll('.entry')].find(r => r.dataset.name === arguments[0]).getBoundingClientRect();
            const v = b.getBoundingClientRect(); return [r.top >= v.top - 1, r.bottom <= v.bottom + 1];""", names[-1])
        check(last == [True, True], f"the last row is not in view: {last}")
        # The filter keeps exactly the matching row.
        pick = names[7777]
        box = drv.find_element(By.ID, "filter")
        box.send_keys(pick)
        WebDriverWait(drv, 10).until(lambda d: [r["name"] for r in rendered_rows(d)] == [pick],
                                     f"filter {pick!r} did not leave exactly its row")
        count = js(drv, "return document.querySelector('#entry-count').textContent")
        check(count == "1 of 10000 entries", f"filtered count {count!r}")
        box.clear()
        box.send_keys("~")  # matches no name: nothing is left
        WebDriverWait(drv, 10).until(lambda d: rendered_rows(d) == [])
        js(drv, "const f = document.querySelector('#filter'); f.value = ''; f.dispatchEvent(new Event('input'));")
        WebDriverWait(drv, 10).until(lambda d: js(d, "return document.querySelector('#entry-count').textContent") == "10000 entries")
        # Size, largest first (ties by name), after two clicks.
        btn = drv.find_element(By.CSS_SELECTOR, "button[data-sort=size]")
        btn.click()
        btn.click()
        check(btn.get_attribute("aria-sort") == "descending", f"aria-sort {btn.get_attribute('aria-sort')!r}")
        by_size = sorted(names, key=lambda n: (-sizes[n], n))
        WebDriverWait(drv, 10).until(lambda d: rendered_rows(d) and rendered_rows(d)[0]["name"] == by_size[0],
                                     "largest file not first")
        rows = rendered_rows(drv)
        check([r["name"] for r in rows] == by_size[:len(rows)],
              f"size order: {[r['name'] for r in rows[:5]]} vs {by_size[:5]}")
        shown_size = js(drv, "return document.querySelector('#listing .entry .num').textContent")
        check(shown_size == shown_bytes(sizes[by_size[0]]), f"size shown {shown_size!r} for {sizes[by_size[0]]} bytes")
        no_console_errors(drv)
    finally:
        close(drv)

    # Ranges of the big file against slices of the source.
    big = a["big"]
    data = (src / big.strip("/")).read_bytes()
    size = len(data)
    r = srv.raw(iid, big)
    check(r.status == 200 and r.complete() and sha(r.body) == sha(data), f"{big}: whole file {r.status} {r.error}")
    check(r.header("accept-ranges") == "bytes", "no Accept-Ranges")
    mid = size // 2 - 12345
    for spec, (lo, hi) in [("bytes=0-99999", (0, 100000)),
                           (f"bytes={mid}-{mid + 3 * 1048576 + 6}", (mid, mid + 3 * 1048576 + 7)),
                           ("bytes=-100", (size - 100, size)),
                           (f"bytes={size - 5000}-", (size - 5000, size)),
                           (f"bytes={size - 10}-{size + 1000}", (size - 10, size))]:
        r = srv.raw(iid, big, {"Range": spec})
        check(r.status == 206 and r.complete(), f"{spec}: {r.status} {r.error}")
        check(r.header("content-range") == f"bytes {lo}-{hi - 1}/{size}",
              f"{spec}: Content-Range {r.header('content-range')!r}")
        check(sha(r.body) == sha(data[lo:hi]), f"{spec}: wrong bytes")
    for spec in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}"):
        r = srv.raw(iid, big, {"Range": spec})
        check(r.status == 416 and r.header("content-range") == f"bytes */{size}",
              f"{spec}: {r.status} {r.header('content-range')!r}")
    # If-Range with this version's ETag keeps the range; another's sends everything.
    tag = srv.raw(iid, big, {"Range": "bytes=0-9"}).header("etag")
    check(tag, "no ETag")
    r = srv.raw(iid, big, {"Range": "bytes=0-9", "If-Range": tag})
    check(r.status == 206 and r.body == data[:10], f"If-Range same: {r.status}")
    r = srv.raw(iid, big, {"Range": "bytes=0-9", "If-Range": '"other"'})
    check(r.status == 200 and len(r.body) == size, f"If-Range other: {r.status}")


def case_hostile(a):
    """Hostile names: inert in the page, shown with visible escapes, each file opened and
    downloaded with its exact bytes; the zip and tar hold them under safe names."""
    srv = Server(a["url"])
    iid = srv.only_id()
    folder = a["folder"]
    tree = {p[len(folder) + 1:]: v for p, v in tree_of(a["tree"]).items() if p.startswith(folder + "/")}
    check(len(tree) == a["count"], f"the source folder has {len(tree)} files")
    res = srv.api(f"/api/ls/{iid}/{enc(folder)}")
    check(sorted(e["name"] for e in res["entries"]) == sorted(tree), f"/api/ls names: {[e['name'] for e in res['entries']]}")
    for name, data in tree.items():
        r = srv.raw(iid, f"{folder}/{name}")
        check(r.status == 200 and r.complete() and r.body == data, f"/raw {name!r}: {r.status} {r.error}")

    drv = open_driver(1280, 900)
    try:
        login(drv, srv)
        goto(drv, srv, f"/browse/{iid}/{enc(folder)}", "dir")

        def inert(where):
            check(js(drv, "return window.__pwned") is None, f"{where}: a name ran script")
            try:
                text = drv.switch_to.alert.text
                raise Failed(f"{where}: an alert is open: {text!r}")
            except NoAlertPresentException:
                pass

        inert("folder")
        check(js(drv, "return document.querySelectorAll('#listing img, #view img').length") == 0,
              "an img element in the listing")
        rows = rendered_rows(drv)
        check(sorted(r["name"] for r in rows) == sorted(tree), f"data-name: {[r['name'] for r in rows]}")
        for r in rows:
            check(r["text"] == plain(r["name"]), f"shown {r['text']!r} for {r['name']!r}")
            check(r["ctl"] == sum(map(hidden, r["name"])), f"{r['name']!r}: {r['ctl']} escapes")
        no_console_errors(drv)
        for name, data in sorted(tree.items()):
            click_and_wait(drv, row_link(drv, name), "file")
            inert(f"page of {name!r}")
            shown_name = js(drv, "return document.querySelector('#file-name').textContent")
            check(shown_name == plain(name), f"file name shown {shown_name!r} for {name!r}")
            check(js(drv, "return document.querySelectorAll('#view img').length") == 0, f"an img on {name!r}'s page")
            # (Names in `apart` are downloaded by a test of their own.)
            if name not in a.get("apart", ()):
                f = download(drv, lambda: drv.find_element(By.CSS_SELECTOR, "a#download").click(),
                             what=f"download of {name!r}")
                check(f.read_bytes() == data, f"download of {name!r} (as {f.name!r}): wrong contents")
            no_console_errors(drv)
            back(drv, "dir")
        inert("folder, after every file")
        # A real picture with a hostile name: drawn, its name inert in the alt text.
        pic = a["picture"]
        goto(drv, srv, f"/browse/{iid}/{enc(pic)}", "file")
        WebDriverWait(drv, 20).until(lambda d: d.execute_script(
            "const i = document.querySelector('#preview img.preview'); return i && i.complete && i.naturalWidth > 0"),
            f"{pic!r}: the picture is not drawn")
        size = js(drv, "const i = document.querySelector('#preview img.preview'); return [i.naturalWidth, i.naturalHeight, i.alt]")
        check(size == [a["picture_size"][0], a["picture_size"][1], "Preview of " + plain(pic.rsplit("/", 1)[1])],
              f"{pic!r}: picture {size}")
        check(js(drv, "return document.querySelectorAll('#view img').length") == 1, "more than the preview's img")
        inert(f"page of {pic!r}")
        f = download(drv, lambda: drv.find_element(By.CSS_SELECTOR, "a#download").click(), what=f"download of {pic!r}")
        check(f.read_bytes() == Path(a["tree"], pic.lstrip("/")).read_bytes(), f"{pic!r}: wrong download")
        no_console_errors(drv)
        # The search page shows the names as text too.
        goto(drv, srv, f"/search?q=pwned&scope={iid}", "search")
        inert("search")
        paths = js(drv, "return [...document.querySelectorAll('tr.result')].map(r => r.dataset.path)")
        check(sorted(paths) == sorted(p for p in tree_of(a["tree"]) if "pwned" in p), f"search: {paths}")
        no_console_errors(drv)
    finally:
        close(drv)

    for kind in ("zip", "tar"):
        r = srv.get(f"/{kind}/{iid}/{enc(folder)}")
        check(r.status == 200 and r.error is None, f"/{kind}: {r.status} {r.error}")
        members = archive_members(kind, r.body)
        top = escape_name(folder.strip("/").split("/")[-1])
        want = {f"{top}/{escape_name(n)}": d for n, d in tree.items()}
        got = {n: v for n, (k, v) in members.items() if k == "f"}
        check(set(got) == set(want), f"{kind} names {sorted(got)} vs {sorted(want)}")
        for n, d in want.items():
            check(got[n] == d, f"{kind} {n!r}: wrong contents")
            check(urllib.parse.unquote(n.split("/", 1)[1]) == [k for k in tree if f"{top}/{escape_name(k)}" == n][0],
                  f"{n!r} does not unescape to its name")
        print(f"{kind}: {len(want)} files under safe names")


def case_download(a):
    """One file's page, and its download through the page's button."""
    srv = Server(a["url"])
    iid = srv.only_id()
    data = Path(a["source"]).read_bytes()
    drv = open_driver(1280, 900)
    try:
        login(drv, srv)
        goto(drv, srv, f"/browse/{iid}/{enc(a['path'])}", "file")
        r = srv.raw(iid, a["path"])
        check(r.status == 200 and r.body == data, f"{a['path']!r} over HTTP: {r.status}")
        disposition = r.header("content-disposition")
        f = download(drv, lambda: drv.find_element(By.CSS_SELECTOR, "a#download").click(), timeout=10,
                     what=f"download of {a['path']!r} (Content-Disposition: {len(disposition)} "
                          f"characters, {disposition[:100]}...)")
        check(f.read_bytes() == data, f"download of {a['path']!r}: wrong contents")
        no_console_errors(drv)
    finally:
        close(drv)


def case_access(a):
    """Token, cookie, Host and Origin checks; requests that try to leave the image never
    return a byte of the canary file next to it."""
    srv = Server(a["url"])
    canary = a["canary_text"].encode()
    files, _dirs, _links = read_manifest(a["manifest"])
    iid = srv.only_id()
    readme = files["/p1/README.txt"][1]
    raw_path = f"/raw/{iid}/p1/README.txt"
    bad_token = srv.token[:-1] + ("0" if srv.token[-1] != "0" else "1")

    for path in ("/", "/api/sets", raw_path, f"/zip/{iid}/p1", "/assets/app.js", f"/browse/{iid}/"):
        r = srv.get(path, cookie=None)
        check(r.status == 401, f"{path} without a token: {r.status}")
        for wrong in (f"?token={bad_token}", f"?token={srv.token[:32]}", "?token="):
            sep = "&" if "?" in path else ""
            r = srv.get(path + (wrong.replace("?", "&") if sep else wrong), cookie=None)
            check(r.status == 401, f"{path}{wrong}: {r.status}")
        r = srv.get(path, cookie=f"strata_token_{srv.port}={bad_token}")
        check(r.status == 401, f"{path} with a wrong cookie: {r.status}")
        r = srv.get(path, cookie=f"strata_token_{srv.port + 1}={srv.token}")
        check(r.status == 401, f"{path} with another port's cookie name: {r.status}")
        check(canary not in r.body and sha(r.body) != readme, f"{path}: a refusal with contents")
    r = srv.get(f"/?token={srv.token}", cookie=None)
    check(r.status == 303 and r.header("location") == "/", f"token URL: {r.status} {r.header('location')}")
    want_cookie = f"strata_token_{srv.port}={srv.token}; Path=/; HttpOnly; SameSite=Strict"
    check(r.header("set-cookie") == want_cookie, f"Set-Cookie {r.header('set-cookie')!r}")
    r = srv.get(f"/browse/{iid}/p1?x=1&token={srv.token}", cookie=None)
    check(r.status == 303 and r.header("location") == f"/browse/{iid}/p1?x=1", f"deep token URL: {r.header('location')}")
    r = srv.get(raw_path + f"?token={srv.token}", cookie=None)
    check(r.status == 303, f"raw with the token: {r.status}")
    r = srv.get(raw_path)
    check(r.status == 200 and sha(r.body) == readme, f"with the cookie: {r.status}")
    for h in ("content-security-policy", "x-content-type-options", "x-frame-options"):
        check(r.header(h), f"/raw: no {h}")
    check("sandbox" in r.header("content-security-policy"), "/raw CSP without sandbox")
    page = srv.get("/")
    check(page.status == 200 and "script-src 'self'" in page.header("content-security-policy"), "page CSP")

    for host in ("evil.example:%d" % srv.port, "evil.example", "127.0.0.1:%d" % (srv.port + 1),
                 "localhost.evil.example:%d" % srv.port, "127.0.0.2:%d" % srv.port):
        for path in ("/", "/api/sets", raw_path):
            r = srv.get(path, host=host)
            check(r.status == 421, f"Host {host} {path}: {r.status}")
    r = srv.get("/api/sets", host=None)
    check(r.status == 400, f"no Host: {r.status}")
    for host in (f"localhost:{srv.port}", f"LOCALHOST:{srv.port}", f"[::1]:{srv.port}"):
        check(srv.get("/api/sets", host=host).status == 200, f"Host {host} refused")
    for origin in ("http://evil.example", f"http://evil.example:{srv.port}", "null",
                   f"https://127.0.0.1:{srv.port}", f"http://localhost:{srv.port}"):
        for path in ("/api/sets", raw_path):
            r = srv.get(path, headers={"Origin": origin})
            check(r.status == 403, f"Origin {origin} {path}: {r.status}")
    r = srv.get("/api/sets", headers={"Origin": f"http://{srv.netloc}"})
    check(r.status == 200, f"own Origin: {r.status}")

    # Leaving the image: (path, expectation) with "error" (4xx), "page" (the app's page),
    # "top" (the image's partition list) or a manifest path (that file of the image).
    cpath = a["canary_path"]
    q = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
    name = os.path.basename(cpath)
    attempts = [
        (f"/raw/{iid}/../../{name}", "error"),
        (f"/raw/{iid}/../../../../../../..{cpath}", "error"),
        (f"/raw/{iid}/%2e%2e/%2e%2e/{name}", "error"),
        (f"/raw/{iid}/%2E%2E/%2E%2E/%2E%2E/%2E%2E{cpath}", "error"),
        (f"/raw/{iid}/..%2F..%2F{name}", "error"),
        (f"/raw/{iid}/..%2F..%2F..%2F..%2F..%2F..{q(cpath)}", "error"),
        (f"/raw/{iid}/{q(cpath)}", "error"),
        (f"/raw/{iid}{cpath}", "error"),
        (f"/raw/{iid}/%252e%252e/{name}", "error"),
        (f"/raw/{iid}/..%5C..%5C{name}", "error"),
        (f"/raw/{iid}/p1/..%00/{name}", "error"),
        (f"/raw/{q(cpath)}/x", "error"),
        (f"/raw/..%2F{name}/x", "error"),
        (f"/raw/../{name}", "error"),
        (f"/raw/{a['image_name']}/p1/README.txt", "error"),
        (f"/raw/{q(a['image_path'])}/p1/README.txt", "error"),
        (f"/raw/00000000-0000-0000-0000-000000000000/x", "error"),
        (f"/raw/{iid}/p1/../../../p1/README.txt", "/p1/README.txt"),
        (f"/raw/{iid}/p1/Dokumente/%2E%2E/README.txt", "/p1/README.txt"),
        (f"/raw/{iid}/p1/Dokumente/..%2F..%2Fp1%2FREADME.txt", "/p1/README.txt"),
        (f"/api/ls/{iid}/..%2F..", "top"),
        (f"/api/ls/{iid}/../../..", "top"),
        (f"/api/ls/{iid}/..%2F..%2F{name}", "error"),
        (f"/api/ls/{q(os.path.dirname(cpath))}/", "error"),
        (f"/api/history/{iid}/..%2F..%2F{name}", "history"),
        (f"/api/point/..%2F{name}", "error"),
        (f"/api/check/{iid}/..%2F..%2F{name}", "error"),
        (f"/api/check/{q(os.path.dirname(cpath))}/{name}", "error"),
        (f"/api/point/{q(a['image_path'])}", "error"),
        (f"/api/diff?a={q(cpath)}&b={q(cpath)}", "error"),
        (f"/api/diff?a={q(a['image_path'])}&b={iid}", "error"),
        (f"/zip/{iid}/..%2F..", "error"),
        (f"/zip/{iid}/../../{name}", "error"),
        (f"/tar/{iid}/%2e%2e/%2e%2e", "error"),
        (f"/tar/{q(os.path.dirname(cpath))}/", "error"),
        (f"/assets/..%2F..%2F{name}", "page"),
        (f"/assets/../../{name}", "page"),
        (f"/{name}", "page"),
        (cpath, "page"),
    ]
    index = page.body
    for path, want in attempts:
        r = srv.get(path)
        check(canary not in r.body, f"{path}: THE CANARY FILE'S CONTENTS CAME BACK")
        if want == "error":
            ok = 400 <= r.status < 500
        elif want == "page":
            ok = r.status in (200, 404) and (r.body == index or r.status == 404)
        elif want == "top":
            ok = r.status == 200 and [e["name"] for e in json.loads(r.body)["entries"]] == ["p1", "p2", "p3"]
        elif want == "history":
            ok = r.status == 200 and json.loads(r.body)["versions"] == [] or 400 <= r.status < 500
        else:
            ok = r.status == 200 and sha(r.body) == files[want][1]
        check(ok, f"{path}: {r.status} {r.body[:200]!r}, wanted {want}")
    print(f"{len(attempts)} attempts to leave the image answered safely")

    # The browser: no token shows the refusal; the token URL leaves no token in reach of
    # scripts (HttpOnly) or in the address bar.
    drv = open_driver(1280, 900)
    try:
        drv.get(srv.base + "/")
        body = js(drv, "return document.body.innerText")
        check("access token missing or wrong" in body, f"without the token: {body[:200]!r}")
        no_console_errors(drv, allow_failed_requests=True)
        login(drv, srv)
        # The refusal page's icon was refused too, maybe logged only now.
        no_console_errors(drv, allow=("/favicon.ico - Failed to load resource: the server responded with a status of 401",))
        check(js(drv, "return document.cookie") == "", "the token cookie is readable by scripts")
        check(srv.token not in js(drv, "return location.href + document.documentElement.outerHTML"),
              "the token is in the page")
        got = js(drv, "return fetch('/api/sets').then(r => r.status)")
        check(got == 200, f"the page's own fetch: {got}")
        no_console_errors(drv)
    finally:
        close(drv)


def case_damage(a):
    """A damaged file never comes back as a complete 200 with wrong bytes; its page says so;
    its folder's zip does not end valid; every other file still reads exactly."""
    srv = Server(a["url"])
    files, _dirs, _links = read_manifest(a["manifest"])
    iid = srv.only_id()
    damaged = set(a["damaged"])
    check(a["start"] in damaged and a["middle"] in damaged, f"damaged: {damaged}")
    intact = 0
    for p, (size, digest) in sorted(files.items()):
        if not p.startswith("/p3/"):
            continue
        r = srv.raw(iid, p)
        if p in damaged:
            failed_status = r.status >= 500 and r.header("x-strata-damaged") == "1"
            check(failed_status or not r.complete(),
                  f"/raw {p} (damaged): {r.status}, {len(r.body)} bytes, complete")
            check(not (r.status == 200 and r.complete()), f"/raw {p}: a complete 200")
            if p == a["start"]:
                check(failed_status, f"/raw {p} (damaged at its start): {r.status} {r.headers}")
            if p == a["middle"]:
                check(r.status == 200 and not r.complete() and len(r.body) >= 1 << 20,
                      f"/raw {p} (damaged after 1 MiB): {r.status}, {len(r.body)} bytes, {r.error}")
                # Nothing of the damaged block was sent, right or wrong.
                check(len(r.body) <= a["middle_offset"],
                      f"/raw {p}: {len(r.body)} bytes sent, the damage starts at {a['middle_offset']}")
        else:
            check(r.status == 200 and r.complete() and sha(r.body) == digest,
                  f"/raw {p} (intact): {r.status} {r.error}")
            intact += 1
    # A range that avoids the damage reads; one that meets it fails.
    r = srv.raw(iid, a["middle"], {"Range": "bytes=0-4095"})
    check(r.status == 206 and r.complete(), f"range before the damage: {r.status}")
    r = srv.raw(iid, a["middle"], {"Range": f"bytes={a['middle_offset']}-"})
    check(r.status >= 500 and r.header("x-strata-damaged") == "1", f"range at the damage: {r.status}")
    print(f"{intact} intact files of p3 read exactly, {len(damaged)} damaged ones fail")

    # The archives of the folders holding them: the transfer fails, or what came is not a
    # whole archive (a tar's end is two zero blocks, after every member in full).
    for p in (a["start"], a["middle"]):
        folder = p.rsplit("/", 1)[0]
        for kind in ("zip", "tar"):
            r = srv.get(f"/{kind}/{iid}/{enc(folder)}")
            whole = r.status == 200 and r.error is None
            if whole:
                try:
                    archive_members(kind, r.body)
                except (zipfile.BadZipFile, tarfile.TarError, Failed, EOFError):
                    whole = False
                if kind == "tar" and (len(r.body) % 512 or r.body[-1024:] != bytes(1024)):
                    whole = False
            check(not whole, f"/{kind} of {folder}: a whole archive ({r.status}, {len(r.body)} bytes)")
            print(f"/{kind} of {folder}: {r.status}, {len(r.body)} bytes, {r.error}")

    drv = open_driver(1280, 900)
    try:
        login(drv, srv)
        goto(drv, srv, f"/browse/{iid}/{enc(a['start'])}", "file")
        WebDriverWait(drv, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#error"),
                                     f"{a['start']}: no #error on its page")
        msg = js(drv, "return document.querySelector('#error').textContent")
        check(msg.startswith("Damaged:"), f"error shown: {msg!r}")
        no_console_errors(drv, allow_failed_requests=True)
        # The folder's readability check names exactly the damaged files; an intact
        # folder's says all its files read.
        for folder, want in (("/p3", damaged), ("/p3/Music", set())):
            goto(drv, srv, f"/browse/{iid}/{enc(folder)}", "dir")
            drv.find_element(By.ID, "check").click()
            WebDriverWait(drv, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#check-ok, #check-bad, #check-result #error"),
                                         f"{folder}: the check gave no answer")
            named = set(js(drv, "return [...document.querySelectorAll('#check-bad li.unreadable')].map(l => l.dataset.path)"))
            check(named == want, f"{folder}: the check names {sorted(named)}, damaged are {sorted(want)}")
            if not want:
                n = sum(1 for p in files if p.startswith(folder + "/"))
                text = js(drv, "return document.querySelector('#check-ok').textContent")
                check(text.startswith(f"all {n} file(s) readable"), f"{folder}: {text!r}, {n} files")
        no_console_errors(drv, allow_failed_requests=True)
        # The download of a file damaged past its first MiB fails in the browser.
        goto(drv, srv, f"/browse/{iid}/{enc(a['middle'])}", "file")
        left = download_fails(drv, lambda: drv.find_element(By.CSS_SELECTOR, "a#download").click())
        print(f"the damaged download left {left}")
        # An intact file beside the damaged one downloads exactly.
        folder = a["middle"].rsplit("/", 1)[0]
        goto(drv, srv, f"/browse/{iid}/{enc(folder)}", "dir")
        ok_name = next(n for n in sorted(js(drv, "return [...document.querySelectorAll('#listing .entry')].map(r => r.dataset.name)"))
                       if f"{folder}/{n}" in files and f"{folder}/{n}" not in damaged)
        click_and_wait(drv, row_link(drv, ok_name), "file")
        f = download(drv, lambda: drv.find_element(By.CSS_SELECTOR, "a#download").click())
        check(sha_file(f) == files[f"{folder}/{ok_name}"][1], f"{ok_name}: wrong download")
        no_console_errors(drv, allow_failed_requests=True)
    finally:
        close(drv)


def case_phone(a):
    """A phone-sized window: the sets page, folders and a file page fit its width."""
    srv = Server(a["url"])
    ids = srv.image_ids()
    drv = open_driver(390, 844)
    try:
        login(drv, srv)
        check(js(drv, "return innerWidth") == 390, f"window width {js(drv, 'return innerWidth')}")
        no_horizontal_scroll(drv, "sets page")
        for name, want, path in a["pages"]:
            iid = ids[name]
            url = f"/point/{iid}" if want == "point" else f"/browse/{iid}/{enc(path)}"
            goto(drv, srv, url, want)
            if want == "dir":
                check(rendered_rows(drv), f"{path}: no rows")
            no_horizontal_scroll(drv, path)
            no_console_errors(drv)
    finally:
        close(drv)


CASES = {
    "sample": case_sample,
    "chain": case_chain,
    "bigdir": case_bigdir,
    "hostile": case_hostile,
    "access": case_access,
    "download": case_download,
    "damage": case_damage,
    "phone": case_phone,
}


def main():
    case, args = sys.argv[1], json.loads(sys.argv[2])
    t0 = time.monotonic()
    try:
        CASES[case](args)
    except Failed as e:
        print(f"FAILED {case}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"TIMING browser case {case}: {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()
