"""Headless Chromium for the `strata serve` browser tests.

Drives Debian's chromium and chromedriver (packages chromium, chromium-driver) through
Selenium from the venv tests/run-all.sh makes (STRATA_PYTHON). Nothing is downloaded at run
time: the driver path is given, so Selenium Manager is never run.
"""
import os
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Should anything still reach Selenium Manager, it must fail here rather than fetch a driver.
os.environ.setdefault("SE_OFFLINE", "true")


def driver(width=1280, height=900, download_dir=None):
    """A headless Chrome WebDriver; downloads land in download_dir (a new temp dir if None),
    kept as drv.download_dir. The caller quits it (drv.quit())."""
    download_dir = str(Path(download_dir or tempfile.mkdtemp(prefix="strata-dl-")).resolve())
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # Chromium refuses to start as root with its sandbox on
        "--disable-dev-shm-usage",  # a small /dev/shm (containers) crashes renderers
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {
        "download.default_directory": download_dir,
        "download.prompt_for_download": False,  # a prompt would hang headless
        "download.directory_upgrade": True,
        "safebrowsing.enabled": False,  # no Safe Browsing look-up of downloads (no network)
    })
    # Keep console messages so console_errors() can read them.
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    # The prefs suffice on this Chromium; this also allows downloads where a headless mode
    # ignores them (old --headless denied downloads by default).
    drv.execute_cdp_cmd("Browser.setDownloadBehavior",
                        {"behavior": "allow", "downloadPath": download_dir})
    # --window-size is the outer size and headless new takes a toolbar's height off it:
    # grow the window so the page itself gets width x height (as do screenshots).
    dw, dh = drv.execute_script("return [outerWidth - innerWidth, outerHeight - innerHeight]")
    if dw or dh:
        drv.set_window_size(width + dw, height + dh)
    drv.download_dir = download_dir
    return drv


def wait_ready(drv, timeout=10):
    """Waits until the page says it has rendered: <body data-ready="1">."""
    WebDriverWait(drv, timeout, poll_frequency=0.05).until(  # default polls only every 0.5 s
        lambda d: d.execute_script("return document.body && document.body.dataset.ready") == "1",
        f"page not ready (body data-ready != 1) after {timeout}s: {drv.current_url}")


def console_errors(drv):
    """Console errors and uncaught exceptions since the last call (reading the log empties it)."""
    return [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def wait_download(dir, name, timeout=10):
    """Path of the finished download dir/name. Chromium writes to *.crdownload and renames
    when done, so the final name appearing means the file is complete."""
    path = Path(dir) / name
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not downloaded after {timeout}s; {dir} has "
                               f"{sorted(p.name for p in Path(dir).iterdir())}")
        time.sleep(0.05)
    return path
