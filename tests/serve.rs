//! `strata serve` end to end: the real binary serves images made here, and headless Chromium
//! (tests/browser/test_serve.py over tests/browser/harness.py) uses the pages as a person
//! would while plain HTTP requests fetch every file, range and archive. Contents are always
//! compared with references that do not come from strata: the sample disk's manifest, the
//! trees the volumes were made from, the contents this file wrote through the kernel.
//!
//! Needs `STRATA_PYTHON` (a Python with Selenium; tests/run-all.sh makes it) and Debian's
//! chromium and chromium-driver; the chain test needs root (a loop mount). Without them the
//! tests are skipped, which under `CI=true` is a failure.
#![cfg(unix)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A running `strata serve`, killed on drop.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    /// Starts `strata serve ROOTS...` (stderr into `log`) and waits for the URL it prints.
    fn start(roots: &[&Path], log: &Path) -> Server {
        let mut child = strata()
            .arg("serve")
            .args(roots)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("strata serve starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep the pipe open and drained for as long as the server runs.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let mut server = Server {
            child,
            url: String::new(),
            log: log.to_path_buf(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "strata serve printed no URL within 30 s: {}",
                    server.log_text()
                )
            });
        let url = line.trim();
        let (addr, token) = url
            .strip_prefix("http://127.0.0.1:")
            .and_then(|r| r.split_once("/?token="))
            .unwrap_or_else(|| panic!("not the URL line: {line:?} ({})", server.log_text()));
        assert!(
            addr.parse::<u16>().is_ok()
                && token.len() == 64
                && token.bytes().all(|b| b.is_ascii_hexdigit()),
            "URL {url:?}"
        );
        server.url = url.to_string();
        server
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python of the browser tests (`STRATA_PYTHON`, with Selenium) if it and Chromium are
/// here; else the test is skipped (a failure under CI).
fn browser_python(test: &str) -> Option<String> {
    let Some(py) = std::env::var("STRATA_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        skip(
            test,
            "STRATA_PYTHON is not set (tests/run-all.sh sets it up)",
        );
        return None;
    };
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(tool).exists() {
            skip(test, &format!("{tool} is missing (Debian chromium-driver)"));
            return None;
        }
    }
    let selenium = Command::new(&py)
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !selenium {
        skip(test, &format!("{py} cannot import selenium"));
        return None;
    }
    Some(py)
}

/// Runs case `case` of tests/browser/test_serve.py against `server` with `args` (plus
/// the server's URL); fails with its output and the server's log if it fails. Its
/// `TIMING` lines go to stderr whatever libtest captures.
fn browser_case(py: &str, case: &str, server: &Server, mut args: Value) {
    args["url"] = json!(server.url);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/test_serve.py");
    let start = Instant::now();
    let o = Command::new(py)
        .arg(&script)
        .arg(case)
        .arg(args.to_string())
        // No __pycache__ left in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("the browser test runs");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    for line in out.lines().filter(|l| l.starts_with("TIMING")) {
        let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
    }
    eprintln!("{out}");
    assert!(
        o.status.success(),
        "browser case {case} failed after {:.1} s\n--- its stdout\n{out}\n--- its stderr\n{err}\n\
         --- the server's stderr\n{}",
        start.elapsed().as_secs_f64(),
        server.log_text()
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A directory `dir/images` holding the image of `disk` as `name` (extra `create` args).
fn image_dir(dir: &Path, disk: &Path, name: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let image = images.join(name);
    let mut c = strata();
    c.args(["create", "--quiet"])
        .args(extra)
        .arg(disk)
        .arg(&image);
    ok(c.output().unwrap());
    (images, image)
}

fn sample_manifest_path() -> PathBuf {
    fixtures().join("sample/sample-disk.manifest.txt")
}

/// The sample disk: the sets and point pages, every partition, every directory listing and
/// every file against the manifest, a file and the zip of p2 downloaded by the browser, the
/// tar of p3.
#[test]
fn sample_disk_listings_files_and_archives_match_the_manifest() {
    let Some(py) =
        browser_python("serve::sample_disk_listings_files_and_archives_match_the_manifest")
    else {
        return;
    };
    let d = tempdir();
    let disk = sample_disk(d.path());
    let (images, _) = image_dir(d.path(), &disk, "sample.strata", &[]);
    let server = Server::start(&[&images], &d.path().join("serve.log"));
    browser_case(
        &py,
        "sample",
        &server,
        json!({"manifest": sample_manifest_path()}),
    );
}

/// An ext4 volume file attached to a loop device and mounted read-write at `dir`;
/// unmounted and detached on drop, whatever happened.
struct Mounted {
    dir: PathBuf,
    _dev: Loop,
}

impl Mounted {
    fn new(vol: &Path, dir: &Path) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let dev = Loop::attach(vol, 512, false);
        sh("mount", &["-t", "ext4", &dev.0, s(dir)]);
        Mounted {
            dir: dir.to_path_buf(),
            _dev: dev,
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A process starting in another test thread can hold a copy of a descriptor for a
        // moment: a busy mount is tried again, then detached lazily.
        for _ in 0..50 {
            let o = Command::new("umount").arg(&self.dir).output();
            if o.is_ok_and(|o| o.status.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Two points of an ext4 volume changed through the kernel between them (a file edited,
/// one deleted, one added, one renamed): the sets page shows both, the edited file's
/// history gives each version's bytes, the differences are exactly those changes (as
/// `strata diff --json` says too), and a search finds the added file in the second point
/// only.
#[test]
fn chain_history_diff_and_search_show_the_changes_made() {
    let test = "serve::chain_history_diff_and_search_show_the_changes_made";
    let Some(py) = browser_python(test) else {
        return;
    };
    if !require_root(test) {
        return;
    }
    let d = tempdir();
    let vol = d.path().join("vol.ext4");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    sh("mkfs.ext4", &["-q", "-F", s(&vol)]);
    let mnt = d.path().join("mnt");
    let (v1, v2) = (text(20_000, 11), text(23_456, 12));
    {
        let m = Mounted::new(&vol, &mnt);
        let w = |p: &str, data: &[u8]| {
            let path = m.dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        };
        w("docs/report.txt", &v1);
        w("docs/old.txt", &b"obsolete\n".repeat(100));
        w("notes.txt", &text(5_000, 13));
        w("keep/kept-unchanged.bin", &noise(100_000, 14));
    }
    let images = d.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let (full, incr) = (images.join("full.strata"), images.join("incr.strata"));
    ok(run(&[&"create", &"--quiet", &vol, &full]));
    let made = now_secs();
    {
        let m = Mounted::new(&vol, &mnt);
        std::fs::write(m.dir.join("docs/report.txt"), &v2).unwrap();
        std::fs::remove_file(m.dir.join("docs/old.txt")).unwrap();
        std::fs::write(m.dir.join("docs/added-quarterly-7f3a.txt"), text(3_000, 15)).unwrap();
        std::fs::rename(m.dir.join("notes.txt"), m.dir.join("notes-renamed.txt")).unwrap();
    }
    // Each point in its own second.
    while now_secs() <= made {
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(run(&[
        &"create",
        &"--quiet",
        &"--incremental",
        &full,
        &vol,
        &incr,
    ]));
    let cli: Vec<Value> = ok(run(&[&"diff", &"--json", &full, &incr]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let server = Server::start(&[&images], &d.path().join("serve.log"));
    browser_case(
        &py,
        "chain",
        &server,
        json!({
            "full": "full.strata", "incr": "incr.strata",
            "edited": "/docs/report.txt", "versions": [hex_sha(&v1), hex_sha(&v2)],
            "deleted": "/docs/old.txt",
            "changes": [["modified", "/docs/report.txt"], ["removed", "/docs/old.txt"],
                        ["added", "/docs/added-quarterly-7f3a.txt"],
                        ["renamed", "/notes-renamed.txt"]],
            "renamed_from": "/notes.txt",
            "cli_rows": cli,
            "added": "/docs/added-quarterly-7f3a.txt", "added_name": "added-quarterly-7f3a",
            "kept": "/keep/kept-unchanged.bin", "kept_name": "kept-unchanged",
        }),
    );
}

/// A volume file `name` of `size` made by `mkfs.ext4 ARGS -d tree` (no root needed).
fn mkfs_d(dir: &Path, name: &str, tree: &Path, args: &[&str], size: &str) -> PathBuf {
    let vol = dir.join(name);
    let mut a = vec!["-q", "-F"];
    a.extend_from_slice(args);
    a.extend(["-d", s(tree), s(&vol), size]);
    sh("mkfs.ext4", &a);
    vol
}

/// A folder of 10,000 files and a 64 MiB file of noise: the count, scrolling to the last
/// row, the filter, sorting by size; ranges of the big file against slices of the source.
#[test]
fn big_directory_scrolls_filters_sorts_and_ranges_read_exact_slices() {
    let Some(py) =
        browser_python("serve::big_directory_scrolls_filters_sorts_and_ranges_read_exact_slices")
    else {
        return;
    };
    let d = tempdir();
    let tree = d.path().join("tree");
    let many = tree.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..10_000usize {
        let size = 1 + (i * 37) % 1500;
        let body = format!("{i:05} ").repeat(size / 6 + 1);
        std::fs::write(many.join(format!("n{i:05}.txt")), &body.as_bytes()[..size]).unwrap();
    }
    std::fs::write(tree.join("big.bin"), noise(64 << 20, 21)).unwrap();
    let vol = mkfs_d(
        d.path(),
        "big.ext4",
        &tree,
        &["-N", "16384", "-b", "4096"],
        "192M",
    );
    let (images, _) = image_dir(d.path(), &vol, "big.strata", &[]);
    std::fs::remove_file(&vol).unwrap();
    let server = Server::start(&[&images], &d.path().join("serve.log"));
    browser_case(
        &py,
        "bigdir",
        &server,
        json!({"tree": tree, "folder": "/many", "big": "/big.bin"}),
    );
}

/// Names that would run script, move the cursor, reorder text or climb directories if a
/// page or an archive took them as anything but text. `</script>` cannot be in a name (it
/// holds a `/`), so the script tag ends in `<\script>`; `<svg onload>` and `<img onerror>`
/// run when put in a page as HTML.
fn hostile_names() -> Vec<String> {
    let mut v: Vec<String> = [
        "<script>window.__pwned=1<\\script>",
        "<svg onload=window.__pwned=1>",
        "<img src=x onerror=\"window.__pwned=1\">",
        "a\u{1}b",
        "esc\u{1b}[31mred",
        "line\nbreak",
        "evil\u{202e}gnp.exe",
        "\"quotes' & amp;",
        "%2e%2e",
        "..%2F..%2Fetc",
        "zero\u{200b}width\u{feff}bom",
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    // 255 bytes, the most ext4 allows: 5 + 123 two-byte characters + 4.
    let long = format!("long-{}.txt", "ü".repeat(123));
    assert_eq!(long.len(), 255);
    v.push(long);
    v
}

/// A `w` x `h` RGB PNG of a colour gradient, deflate's stored blocks for its data.
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // no filter
        for x in 0..w {
            raw.extend([(x * 255 / w) as u8, (y * 255 / h) as u8, 160]);
        }
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, b) in blocks.iter().enumerate() {
        let n = b.len() as u16;
        z.push(u8::from(i + 1 == blocks.len()));
        z.extend(n.to_le_bytes());
        z.extend((!n).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend(((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", z), (b"IEND", Vec::new())] {
        out.extend((data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend(&data);
        out.extend(&c);
        out.extend(crc32fast::hash(&c).to_be_bytes());
    }
    out
}

/// Size of the picture in the hostile volume.
const PICTURE: (u32, u32) = (64, 40);

/// A picture whose name would run script if put in the page as HTML.
const PICTURE_NAME: &str = "<img src=x onerror=window.__pwned=1>.png";

/// A tree `dir/hostile-tree` with every hostile name in `/hostile` (each file's contents
/// name it and carry markup of their own) and a picture in `/pictures`, and its ext4
/// volume.
fn hostile_volume(dir: &Path) -> (PathBuf, PathBuf) {
    let tree = dir.join("hostile-tree");
    let folder = tree.join("hostile");
    std::fs::create_dir_all(&folder).unwrap();
    for (i, name) in hostile_names().iter().enumerate() {
        let mut data = format!(
            "file {i}: {name:?}\n<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=1\">\n"
        )
        .into_bytes();
        data.extend(text(3000 + i * 100, 30 + i as u64));
        std::fs::write(folder.join(name), data).unwrap();
    }
    std::fs::create_dir(tree.join("pictures")).unwrap();
    std::fs::write(
        tree.join("pictures").join(PICTURE_NAME),
        png(PICTURE.0, PICTURE.1),
    )
    .unwrap();
    let vol = mkfs_d(dir, "hostile.ext4", &tree, &[], "16M");
    (tree, vol)
}

/// Hostile names: nothing runs, each row carries the exact name and shows control and
/// bidi characters as visible escapes, each file opens by its link and downloads exactly;
/// the zip and the tar hold every file under a safe, reversible name.
#[test]
fn hostile_names_are_inert_shown_escaped_and_download_exactly() {
    let Some(py) =
        browser_python("serve::hostile_names_are_inert_shown_escaped_and_download_exactly")
    else {
        return;
    };
    let d = tempdir();
    let (tree, vol) = hostile_volume(d.path());
    let (images, _) = image_dir(d.path(), &vol, "hostile.strata", &[]);
    let server = Server::start(&[&images], &d.path().join("serve.log"));
    browser_case(
        &py,
        "hostile",
        &server,
        json!({"tree": tree, "folder": "/hostile", "count": hostile_names().len(),
               "apart": [hostile_names().pop()],
               "picture": format!("/pictures/{PICTURE_NAME}"), "picture_size": [PICTURE.0, PICTURE.1]}),
    );
}

/// The file with a name of 255 bytes (the most ext4 allows) downloads through its page's
/// button. Chromium on Linux drops a download whose suggested name is longer than 244 bytes
/// (255 less its `.crdownload` suffix) without a word, and the server suggests the whole
/// name in Content-Disposition, which wins over the button's `download` attribute.
#[test]
fn a_file_with_a_255_byte_name_downloads_from_its_page() {
    let Some(py) = browser_python("serve::a_file_with_a_255_byte_name_downloads_from_its_page")
    else {
        return;
    };
    let d = tempdir();
    let (tree, vol) = hostile_volume(d.path());
    let (images, _) = image_dir(d.path(), &vol, "hostile.strata", &[]);
    let long = hostile_names().pop().unwrap();
    let server = Server::start(&[&images], &d.path().join("serve.log"));
    browser_case(
        &py,
        "download",
        &server,
        json!({"source": tree.join("hostile").join(&long), "path": format!("/hostile/{long}")}),
    );
}

/// The token, the cookie, the Host and Origin checks; requests that try to leave the
/// image (`..` plain and encoded, absolute paths, image file names instead of ids) never
/// return the canary file lying next to the image.
#[test]
fn access_needs_the_token_and_requests_never_leave_the_images() {
    let Some(py) =
        browser_python("serve::access_needs_the_token_and_requests_never_leave_the_images")
    else {
        return;
    };
    let d = tempdir();
    let disk = sample_disk(d.path());
    let (images, image) = image_dir(d.path(), &disk, "sample.strata", &[]);
    let canary_text = format!("STRATA-CANARY-{}", uuid::Uuid::new_v4().simple());
    let canary = images.join("canary.txt");
    std::fs::write(&canary, &canary_text).unwrap();
    std::fs::write(d.path().join("canary.txt"), &canary_text).unwrap();
    let server = Server::start(&[&images], &d.path().join("serve.log"));
    browser_case(
        &py,
        "access",
        &server,
        json!({
            "manifest": sample_manifest_path(), "canary_text": canary_text,
            "canary_path": std::fs::canonicalize(&canary).unwrap(),
            "image_name": "sample.strata", "image_path": std::fs::canonicalize(&image).unwrap(),
        }),
    );
}

/// A damaged chunk in two files of the sample disk (one at its first block, one past its
/// first MiB): their downloads fail visibly (an error status with `x-strata-damaged`, or
/// a cut connection), never a complete 200 with wrong bytes; the file's page shows the
/// error; their folders' archives do not end valid; every other file reads exactly.
#[test]
fn damaged_files_fail_visibly_and_intact_ones_still_read() {
    let test = "serve::damaged_files_fail_visibly_and_intact_ones_still_read";
    let Some(py) = browser_python(test) else {
        return;
    };
    let d = tempdir();
    let disk = sample_disk(d.path());
    let (images, image) = image_dir(d.path(), &disk, "sample.strata", &["--chunk-size", "4096"]);
    let part = sample_p3(&disk, d.path());
    let start = "/Projects/tests/tmp-work/smörgåsbord.rs";
    let middle = "/src/build/big-1.bin";
    let start_blocks = sample_p3_blocks(&part, start);
    let middle_blocks = sample_p3_blocks(&part, middle);
    assert_eq!(
        middle_blocks.len(),
        261,
        "{middle}: 1066067 bytes in 4 KiB blocks"
    );
    // Block 258 of big-1.bin: past the first MiB the server reads before answering.
    damage_block_chunks(&image, &[start_blocks[0], middle_blocks[258]]);

    // Which files the damage costs, as `strata cat` reads them: exit 3, or exactly the
    // manifest's bytes.
    let mut damaged = Vec::new();
    for line in sample_manifest().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f[0] != "p3" || f[2] != "f" {
            continue;
        }
        let o = run(&[&"cat", &image, &format!("/p3{}", f[1])]);
        match o.status.code() {
            Some(0) => assert_eq!(hex_sha(&o.stdout), f[5], "cat /p3{}", f[1]),
            Some(3) => damaged.push(format!("/p3{}", f[1])),
            c => panic!("cat /p3{}: exit {c:?}: {}", f[1], outcome(&o).2),
        }
    }
    damaged.sort();
    let mut want = vec![format!("/p3{middle}"), format!("/p3{start}")];
    want.sort();
    assert_eq!(damaged, want, "files strata cat cannot read");
    let server = Server::start(&[&images], &d.path().join("serve.log"));
    browser_case(
        &py,
        "damage",
        &server,
        json!({
            "manifest": sample_manifest_path(), "damaged": damaged,
            "start": format!("/p3{start}"), "middle": format!("/p3{middle}"),
            "middle_offset": 258 * 4096,
        }),
    );
}

/// A phone-sized window (390 x 844): the sets page, a point, folders (one holding the
/// hostile names, one of 255 bytes) and a file page fit the width, no horizontal scroll.
#[test]
fn phone_screen_pages_fit_without_horizontal_scroll() {
    let Some(py) = browser_python("serve::phone_screen_pages_fit_without_horizontal_scroll") else {
        return;
    };
    let d = tempdir();
    let disk = sample_disk(d.path());
    let (images, _) = image_dir(d.path(), &disk, "sample.strata", &[]);
    let (_, vol) = hostile_volume(d.path());
    image_dir(d.path(), &vol, "hostile.strata", &[]);
    let long = hostile_names().pop().unwrap();
    let server = Server::start(&[&images], &d.path().join("serve.log"));
    browser_case(
        &py,
        "phone",
        &server,
        json!({"pages": [
            ["sample.strata", "point", ""],
            ["sample.strata", "dir", "/"],
            ["sample.strata", "dir", "/p1/Dokumente/final"],
            ["sample.strata", "file", "/p1/Dokumente/final/Résumé.txt"],
            ["hostile.strata", "dir", "/hostile"],
            ["hostile.strata", "file", format!("/hostile/{long}")],
        ]}),
    );
}
