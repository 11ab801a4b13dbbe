"""Screenshots of `strata serve`'s main pages, for docs/screenshots. Not run by the tests.

    strata serve IMAGES... &          # prints http://127.0.0.1:PORT/?token=...
    $STRATA_PYTHON tests/browser/screenshots.py URL OUTDIR [--image ID] [--folder PATH]
        [--file PATH] [--query WORD]

Saves, at 1280x800: sets.png (the backup sets), point.png (one point), folder.png (a
folder), file.png (a file with a text preview), search.png (search results), history.png
(a file's versions), diff.png (what changed between two points); and folder-phone.png, the
same folder at 390x844. Whatever is not given is found: the image is the newest point of the
set with the most points, the folder the largest one near the top of its first partition,
the file a text file in it, the search word part of that file's name.
"""
import argparse
import json
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import driver, wait_ready  # noqa: E402

from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TEXT = (".txt", ".md", ".csv", ".log", ".json", ".ini", ".conf", ".text", ".py", ".rs", ".xml", ".html")


def enc(path):
    return "/".join(urllib.parse.quote(s, safe="-_.!~*'()") for s in path.split("/") if s)


class Api:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.base = f"http://{u.netloc}"
        token = urllib.parse.parse_qs(u.query)["token"][0]
        self.cookie = f"strata_token_{u.port}={token}"

    def get(self, path):
        req = urllib.request.Request(self.base + path, headers={"Cookie": self.cookie})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)


def pick_image(api):
    sets = api.get("/api/sets")["sets"]
    if not sets:
        sys.exit("the server serves no backup set")
    s = max(sets, key=lambda s: len(s["images"]))
    imgs = s["images"]
    return imgs[-1]["id"], (imgs[-2]["id"] if len(imgs) > 1 else None)


def pick_folder(api, iid):
    """The folder with the most entries among the first two levels of the first partition
    that has files (or of the volume)."""
    top = api.get(f"/api/ls/{iid}/")
    roots = [f"/{e['name']}" for e in top["entries"] if e["type"] == "dir" and not e.get("error")] if top.get("top") else ["/"]
    best = None
    for root in roots:
        candidates = [root]
        res = api.get(f"/api/ls/{iid}/{enc(root)}")
        candidates += [f"{root.rstrip('/')}/{e['name']}" for e in res["entries"] if e["type"] == "dir"]
        for c in candidates:
            try:
                entries = api.get(f"/api/ls/{iid}/{enc(c)}")["entries"]
            except Exception:
                continue
            texts = [e for e in entries if e["type"] == "file" and e["name"].lower().endswith(TEXT) and e.get("size")]
            score = (bool(texts), len(entries))
            if best is None or score > best[0]:
                best = (score, c, texts)
        if best and best[0][0]:
            break
    if best is None:
        sys.exit("no folder found")
    return best[1], best[2]


def browser(width, height):
    """A driver whose (unused) download directory close() removes."""
    return driver(width, height, tempfile.mkdtemp(prefix="strata-shots-"))


def close(drv):
    drv.quit()
    shutil.rmtree(drv.download_dir, ignore_errors=True)


def shoot(drv, api, path, out, wait_for=None):
    drv.get(api.base + path)
    wait_ready(drv, 60)
    if wait_for:
        WebDriverWait(drv, 30).until(lambda d: d.execute_script(f"return !!document.querySelector({wait_for!r})"))
    drv.execute_script("document.activeElement && document.activeElement.blur()")
    drv.save_screenshot(str(out))
    print(f"{out}: {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="the URL `strata serve` printed (with its token)")
    ap.add_argument("outdir")
    ap.add_argument("--image", help="image id (from /api/sets) of the point to show")
    ap.add_argument("--folder", help="folder inside the image, e.g. /p1/Documents")
    ap.add_argument("--file", help="text file inside the image")
    ap.add_argument("--query", help="search word")
    a = ap.parse_args()
    out = Path(a.outdir)
    out.mkdir(parents=True, exist_ok=True)
    api = Api(a.url)
    newest, previous = pick_image(api)
    iid = a.image or newest
    if a.image:
        sets = api.get("/api/sets")["sets"]
        s = next((s for s in sets if any(i["id"] == iid for i in s["images"])), None)
        ids = [i["id"] for i in s["images"]] if s else [iid]
        previous = ids[ids.index(iid) - 1] if ids.index(iid) > 0 else None
    folder, texts = (a.folder, []) if a.folder else pick_folder(api, iid)
    if a.folder and not a.file:
        entries = api.get(f"/api/ls/{iid}/{enc(folder)}")["entries"]
        texts = [e for e in entries if e["type"] == "file" and e["name"].lower().endswith(TEXT)]
    file = a.file or (f"{folder.rstrip('/')}/{texts[0]['name']}" if texts else None)
    query = a.query or (file.rsplit("/", 1)[1].rsplit(".", 1)[0].split()[0] if file else "a")

    drv = browser(1280, 800)
    try:
        drv.get(a.url)  # trades the token for the cookie
        wait_ready(drv, 60)
        shoot(drv, api, "/", out / "sets.png")
        shoot(drv, api, f"/point/{iid}", out / "point.png")
        shoot(drv, api, f"/browse/{iid}/{enc(folder)}", out / "folder.png", "#listing .entry")
        if file:
            shoot(drv, api, f"/browse/{iid}/{enc(file)}", out / "file.png", "#preview")
            shoot(drv, api, f"/history/{iid}/{enc(file)}", out / "history.png")
        else:
            print("no text file found: file.png and history.png not made (give --file)")
        shoot(drv, api, f"/search?{urllib.parse.urlencode({'q': query, 'i': '1'})}", out / "search.png")
        diff = f"/diff?a={previous}&b={iid}" if previous else f"/diff?b={iid}"
        shoot(drv, api, diff, out / "diff.png")
    finally:
        close(drv)
    drv = browser(390, 844)
    try:
        drv.get(a.url)
        wait_ready(drv, 60)
        shoot(drv, api, f"/browse/{iid}/{enc(folder)}", out / "folder-phone.png", "#listing .entry")
    finally:
        close(drv)


if __name__ == "__main__":
    main()
