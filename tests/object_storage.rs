//! Images in an S3-compatible bucket (`s3://BUCKET/KEY`), served by a real Garage started by
//! each test (tests/common/s3.rs) and inspected with curl.
//!
//! Reading: chains of an ext4 disk changed through the kernel, full, differential and
//! incremental, clones and used blocks, are made locally and uploaded with curl under one
//! prefix: from the bucket, `info` gives what it gives for the local files, `verify` passes,
//! every point restores to the same bytes as its local copy (clones: the disk as it was),
//! `ls`, `cat` and `cp` give the files the kernel showed (`fixtures/manifest.sh`), a FUSE
//! mount shows the same tree, and nothing is written to the bucket. Wrong credentials, a
//! missing bucket or object, a parent object replaced, deleted or in another prefix, and a
//! stopped server each give one clear line naming the `s3://` URL, a non-zero exit, no
//! output file and no hang.
//!
//! Writing: the same chains made by `create` straight into the bucket (and mixed with local
//! files) read exactly as the chains made locally, catalogs included; an existing object is
//! kept unless `--force`; a server killed during an upload, or strata killed or interrupted,
//! leaves no object, and incomplete uploads are aborted (by the run, or by the next one).
//! Mounts outlive a stopped server and stay responsive on a slow one.
//!
//! The round trips and mounts need root (loop mounts for the kernel's ext4 and the
//! manifests), the mounts /dev/fuse too; every test needs garage 2.5.0 and curl
//! (tests/run-all.sh installs them). Under `CI=true` nothing is skipped.
#![cfg(target_os = "linux")]

mod common;

use common::s3::{Garage, SlowProxy, BUCKET};
use common::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const MANIFEST_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/manifest.sh");

/// The points of a chain: a full image, a differential of it, an incremental of that.
const NAMES: [&str; 3] = ["p0-full", "p1-diff", "p2-inc"];
/// How each point is made: `create` with this flag and the image of this point.
const PARENTS: [Option<(&str, usize)>; 3] = [
    None,
    Some(("--differential", 0)),
    Some(("--incremental", 1)),
];
/// The ext4 volume of the test disk (partition 1 at 1 MiB of a GPT disk).
const VOL_BYTES: u64 = 32 << 20;
const VOL_START: u64 = 1 << 20;

/// No strata run may take this long, whatever the server does.
const LIMIT: Duration = Duration::from_secs(30);

/// Words one of which a message about each failure says (lower case).
const DENIED: &[&str] = &[
    "403",
    "denied",
    "forbidden",
    "credential",
    "signature",
    "access key",
    "secret",
    "authori",
    "permission",
];
const NOT_FOUND: &[&str] = &["404", "not found", "no such", "does not exist", "missing"];
/// A missing bucket is called one: "no such object" would send the user looking for a
/// file when the bucket's name is wrong.
const NO_BUCKET: &[&str] = &["bucket"];
const UNREACHABLE: &[&str] = &[
    "connect",
    "refused",
    "reach",
    "unavailable",
    "timed out",
    "timeout",
    "network",
];

fn img(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.strata"))
}

/// strata (with the thread's S3 settings) and `args`.
fn cmd(args: &[&dyn AsRef<OsStr>]) -> Command {
    let mut c = strata();
    for a in args {
        c.arg(a);
    }
    c
}

/// Runs `c` and returns its output; fails the test if it takes longer than [`LIMIT`] (the
/// process is killed).
fn within(c: Command) -> Output {
    Running::start(c).wait(LIMIT)
}

/// A command started in the background, its output collected as it comes.
struct Running {
    child: std::process::Child,
    what: String,
    out: Option<std::thread::JoinHandle<Vec<u8>>>,
    err: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    fn start(mut c: Command) -> Running {
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{c:?}: {e}"));
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.read_to_end(&mut v);
                v
            })
        };
        let out = drain(Box::new(child.stdout.take().unwrap()));
        let err = drain(Box::new(child.stderr.take().unwrap()));
        Running {
            child,
            what: format!("{c:?}"),
            out: Some(out),
            err: Some(err),
        }
    }

    /// Whether it still runs.
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `signal` to it (this process only).
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own child, not
        // yet waited for, so it cannot have been reused.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Its output once it ends; fails the test if it runs `limit` from now (it is killed).
    fn wait(mut self, limit: Duration) -> Output {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not end within {limit:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: self.out.take().unwrap().join().unwrap(),
            stderr: self.err.take().unwrap().join().unwrap(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts a run failed with `code`: nothing on stdout, one line on stderr that names every
/// one of `names` and says one of `words` (any case; none: not checked), no panic, no Rust
/// debug text.
fn refused(o: &Output, code: i32, names: &[&str], words: &[&str], what: &str) -> String {
    let (c, out, err) = outcome(o);
    assert_eq!(c, code, "{what}: exit code\nstdout: {out}\nstderr: {err}");
    assert!(out.is_empty(), "{what}: output on failure: {out}");
    assert_eq!(err.trim().lines().count(), 1, "{what}: not one line: {err}");
    for n in names {
        assert!(err.contains(n), "{what}: {err:?} does not name {n}");
    }
    // The words are looked for in what the message says besides the names.
    let lower = names
        .iter()
        .fold(err.clone(), |e, n| e.replace(n, ""))
        .to_lowercase();
    assert!(
        words.is_empty() || words.iter().any(|w| lower.contains(w)),
        "{what}: {err:?} says none of {words:?}"
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
    no_debug_text(&err);
    err
}

/// `secret` with its last character changed.
fn other_secret(secret: &str) -> String {
    let mut s = secret.to_string();
    let last = s.pop().unwrap();
    s.push(if last == '0' { '1' } else { '0' });
    s
}

/// Neither `target` nor its `.partial` exists.
fn nothing_written(target: &Path, what: &str) {
    let partial = PathBuf::from(format!("{}.partial", target.display()));
    assert!(!target.exists(), "{what}: {} written", target.display());
    assert!(!partial.exists(), "{what}: {} left", partial.display());
}

/// sha256 of the disk `image` (a file or an `s3://` URL) restores to, in `dir`.
fn restored_sha(image: &Path, dir: &Path) -> String {
    let target = dir.join("restored.img");
    let _ = std::fs::remove_file(&target);
    ok(run(&[&"restore", &image, &target, &"-q"]));
    let s = sha256(&target);
    std::fs::remove_file(&target).unwrap();
    s
}

/// Files of `part` in a manifest: path -> sha256.
fn files_of(manifest: &str, part: &str) -> BTreeMap<String, String> {
    manifest
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f[0] == part && f[2] == "f")
        .map(|f| (f[1].to_string(), f[5].to_string()))
        .collect()
}

/// The manifest lines of partition `part` only.
fn lines_of(manifest: &str, part: &str) -> String {
    manifest
        .lines()
        .filter(|l| l.split('\t').next() == Some(part))
        .map(|l| format!("{l}\n"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// A disk changed through the kernel's ext4.

/// The first tree of the ext4 volume: directories, text and noise across many chunks, an
/// empty file, a non-ASCII name, a symbolic link and a user.* attribute.
fn first_tree(root: &Path) {
    for d in ["docs/notes/deep", "data", "small"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let readme = root.join("docs/readme.txt");
    std::fs::write(&readme, text(5_000, 1)).unwrap();
    sh(
        "setfattr",
        &[
            "-n",
            "user.comment",
            "-v",
            "read back from a bucket",
            readme.to_str().unwrap(),
        ],
    );
    std::fs::write(root.join("docs/notes/deep/note.txt"), text(900, 2)).unwrap();
    std::fs::write(root.join("data/noise.bin"), noise(1_500_000, 3)).unwrap();
    std::fs::write(root.join("data/log.txt"), text(300_000, 4)).unwrap();
    for k in 0..20u64 {
        std::fs::write(
            root.join(format!("small/file-{k:02}.txt")),
            text(200 + 97 * k as usize, 10 + k),
        )
        .unwrap();
    }
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("données d'été.txt"), text(1_234, 5)).unwrap();
    std::os::unix::fs::symlink("docs/readme.txt", root.join("readme-link")).unwrap();
}

/// Mounts the disk's ext4 partition read-write through the kernel, runs `f` in it and
/// unmounts, whatever `f` does.
fn in_ext4(disk: &Path, f: impl FnOnce(&Path)) {
    let dev = Loop(sh(
        "losetup",
        &[
            "--find",
            "--show",
            "--offset",
            &VOL_START.to_string(),
            "--sizelimit",
            &VOL_BYTES.to_string(),
            disk.to_str().unwrap(),
        ],
    ));
    let mnt = tempdir();
    sh(
        "mount",
        &["-t", "ext4", &dev.0, mnt.path().to_str().unwrap()],
    );
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(mnt.path())));
    for i in 0.. {
        let o = Command::new("umount").arg(mnt.path()).output().unwrap();
        if o.status.success() {
            break;
        }
        assert!(i < 50, "umount: {}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(dev);
    r.unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// What point `i` changes (through the kernel) before it is imaged.
fn change(disk: &Path, i: usize) {
    use std::os::unix::fs::FileExt;
    match i {
        0 => {}
        1 => in_ext4(disk, |m| {
            std::fs::write(m.join("data/new.bin"), noise(700_000, 21)).unwrap();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(m.join("data/noise.bin"))
                .unwrap();
            f.write_all_at(&noise(65_536, 22), 400_000).unwrap();
            std::fs::remove_file(m.join("small/file-03.txt")).unwrap();
            let mut log = std::fs::read(m.join("data/log.txt")).unwrap();
            log.extend(text(50_000, 23));
            std::fs::write(m.join("data/log.txt"), log).unwrap();
            std::fs::create_dir(m.join("added later")).unwrap();
            for k in 0..5u64 {
                std::fs::write(
                    m.join(format!("added later/late {k}.txt")),
                    text(3_000 + 500 * k as usize, 40 + k),
                )
                .unwrap();
            }
        }),
        _ => in_ext4(disk, |m| {
            std::fs::rename(m.join("small/file-05.txt"), m.join("small/renamed-05.txt")).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(m.join("data/new.bin"))
                .unwrap()
                .set_len(100_000)
                .unwrap();
            std::fs::write(m.join("docs/notes/deep/note.txt"), text(3_000, 31)).unwrap();
            std::fs::write(m.join("data/big-late.bin"), noise(1_200_000, 32)).unwrap();
        }),
    }
}

/// The disk at each point: its sha256 and what the kernel shows of it.
struct Points {
    shas: Vec<String>,
    manifests: Vec<String>,
}

/// Builds a GPT disk holding an ext4 volume made by `mkfs.ext4 -d`, changes it through the
/// kernel point by point and images each point into every chain of `chains` (a directory
/// and `create` options), as [`NAMES`] and [`PARENTS`] say.
fn build_points(dir: &Path, chains: &[(&Path, &[&str])]) -> Points {
    build_points_with(dir, chains, |_, _| {})
}

/// [`build_points`], calling `also(i, disk)` once point `i` is imaged into the chains (for
/// images made otherwise).
fn build_points_with(
    dir: &Path,
    chains: &[(&Path, &[&str])],
    mut also: impl FnMut(usize, &Path),
) -> Points {
    let tree = dir.join("tree");
    first_tree(&tree);
    let vol = dir.join("vol.ext4");
    sh(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-L",
            "S3TEST",
            "-d",
            tree.to_str().unwrap(),
            vol.to_str().unwrap(),
            &format!("{}k", VOL_BYTES >> 10),
        ],
    );
    let disk = dir.join("disk.img");
    disk_with(&vol, &disk);
    std::fs::remove_file(&vol).unwrap();
    let mut p = Points {
        shas: Vec::new(),
        manifests: Vec::new(),
    };
    for (i, name) in NAMES.iter().enumerate() {
        change(&disk, i);
        for (chain, extra) in chains {
            let mut c = strata();
            c.arg("create").arg(&disk).arg(img(chain, name)).arg("-q");
            c.args(*extra);
            if let Some((flag, parent)) = PARENTS[i] {
                c.arg(flag).arg(img(chain, NAMES[parent]));
            }
            ok(c.output().unwrap());
        }
        also(i, &disk);
        p.shas.push(sha256(&disk));
        p.manifests
            .push(manifest(&disk, None, &dir.join(format!("{name}.manifest"))));
    }
    assert_ne!(p.shas[0], p.shas[2], "the disk did not change");
    assert_ne!(p.manifests[1], p.manifests[2], "the files did not change");
    p
}

/// `info --json` without the names of the image and its chain (a file name here, a URL
/// there); the names left checked: each ends with the point's object name.
fn info_without_names(mut v: serde_json::Value, top: usize, what: &str) -> serde_json::Value {
    let name = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let want = |i: usize| format!("{}.strata", NAMES[i]);
    assert!(
        name(&v["image"]).ends_with(&want(top)),
        "{what}: {}",
        v["image"]
    );
    // A full image lists no chain; a child its whole chain, the full image first.
    let chain = v["chain"].as_array_mut().expect("a chain");
    assert_eq!(
        chain.len(),
        if top == 0 { 0 } else { top + 1 },
        "{what}: chain length"
    );
    for (i, c) in chain.iter_mut().enumerate() {
        assert!(
            name(&c["image"]).ends_with(&want(i)),
            "{what}: {}",
            c["image"]
        );
        let c = c.as_object_mut().unwrap();
        c.remove("image");
        c.remove("parent");
    }
    v.as_object_mut().unwrap().remove("image");
    v
}

/// A chain of each kind (clones, used blocks) of a disk changed through the kernel, made
/// locally and uploaded with curl under one prefix: from the bucket every image's `info`
/// is the local one's, the newest point verifies, every point restores byte for byte as
/// its local copy does (clones: as the disk was), `ls -R` lists what it lists locally,
/// `ls` and `cp -r` give exactly the kernel's files and `cat` every file of the newest
/// point; `--s3-endpoint` replaces AWS_ENDPOINT_URL; nothing is written to the bucket.
#[test]
fn chains_in_a_bucket_read_exactly_as_their_local_copies() {
    let test = "chains_in_a_bucket_read_exactly_as_their_local_copies";
    if !require_root(test) {
        return;
    }
    let Some(s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let clones = d.path().join("clones");
    let used = d.path().join("used");
    std::fs::create_dir(&clones).unwrap();
    std::fs::create_dir(&used).unwrap();
    let points = build_points(d.path(), &[(&clones, &["--clone"]), (&used, &[])]);
    let chains = [
        (&clones, "backups/clones", true),
        (&used, "backups/used", false),
    ];
    let key = |prefix: &str, name: &str| format!("{prefix}/{name}.strata");
    for (dir, prefix, _) in chains {
        for n in NAMES {
            s3.put(&key(prefix, n), &img(dir, n));
        }
    }
    let uploaded = s3.list("");
    assert_eq!(uploaded.len(), 6, "{uploaded:?}");

    for (dir, prefix, clone) in chains {
        for (i, n) in NAMES.iter().enumerate() {
            let what = format!("{prefix}/{n}");
            let local = img(dir, n);
            let url = s3.url(&key(prefix, n));
            let remote = Path::new(&url);

            let want = info_without_names(info_json(&local), i, &what);
            let got = info_without_names(info_json(remote), i, &what);
            assert_eq!(got["chain_error"], serde_json::Value::Null, "{what}");
            assert_eq!(got, want, "{what}: info --json");

            let sha = restored_sha(remote, d.path());
            assert_eq!(sha, restored_sha(&local, d.path()), "{what}: restored");
            if clone {
                assert_eq!(sha, points.shas[i], "{what}: restored clone");
            }

            let (l, l_clean) = ls_tree(&local, "/p1");
            let (r, r_clean) = ls_tree(remote, "/p1");
            assert!(l_clean && r_clean, "{what}: ls reported errors");
            let json = |m: &BTreeMap<String, Listed>| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.json.clone()))
                    .collect::<BTreeMap<_, _>>()
            };
            assert_eq!(json(&r), json(&l), "{what}: ls -R --json");
            let out = d
                .path()
                .join(format!("{}-{n}.out", prefix.replace('/', "-")));
            compare_with_manifest_into(remote, &out, &points.manifests[i], &["p1"], &[]);
        }

        // The newest point: its chain verifies, and every file reads as the kernel read it.
        let top = s3.url(&key(prefix, NAMES[2]));
        let local_top = img(dir, NAMES[2]);
        ok(run(&[&"verify", &top, &"-q"]));
        let text_info = ok(run(&[&"info", &top]));
        assert!(text_info.contains(NAMES[0]), "{text_info}");
        let files = files_of(&points.manifests[2], "p1");
        assert!(files.len() > 25, "{files:?}");
        for (path, sha) in &files {
            let p = format!("/p1{path}");
            let got = run(&[&"cat", &top, &p]);
            assert!(got.status.success(), "cat {top} {p}: {:?}", outcome(&got));
            assert_eq!(&hex_sha(&got.stdout), sha, "cat {top} {p}");
            let local = run(&[&"cat", &local_top, &p]);
            assert!(
                local.stdout == got.stdout,
                "cat {p}: differs from the local image"
            );
        }
    }

    // The endpoint given by --s3-endpoint instead of AWS_ENDPOINT_URL.
    let top = s3.url(&key("backups/used", NAMES[2]));
    let o = strata()
        .env_remove("AWS_ENDPOINT_URL")
        .args(["info", "--json", &top, "--s3-endpoint", &s3.endpoint])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(o)).unwrap();
    assert_eq!(
        info_without_names(v, 2, "--s3-endpoint"),
        info_without_names(info_json(&img(&used, NAMES[2])), 2, "local")
    );

    // Reading wrote nothing: the same objects, unchanged (sizes and ETags).
    assert_eq!(s3.list(""), uploaded);
}

// ---------------------------------------------------------------------------------------
// A FUSE mount of an image in a bucket.

/// A strata mount; dropping it detaches the mount, so a failing test never leaves one.
struct Mounted(PathBuf);

impl Mounted {
    fn new(image: &str, dir: &Path) -> Mounted {
        Mounted::by(cmd(&[&"mount", &image, &dir]), dir)
    }

    /// Mounted by `mount`, a `strata mount IMAGE DIR` command.
    fn by(mount: Command, dir: &Path) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let m = Mounted(dir.to_path_buf());
        ok(within(mount));
        assert!(is_mounted(dir), "mount returned before the mount was there");
        m
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
        }
    }
}

/// Every point of a chain in a bucket, mounted: the tree the kernel showed of the disk at
/// that point (names, types, sizes, mtimes, link targets, user.* attributes), and every
/// file's sha256 read through the mount is the manifest's. An object replaced under a
/// mount gives read errors, never other bytes.
#[test]
fn a_chain_in_a_bucket_mounts_with_the_files_the_kernel_shows() {
    let test = "a_chain_in_a_bucket_mounts_with_the_files_the_kernel_shows";
    if !require_fuse(test) {
        return;
    }
    let Some(s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let used = d.path().join("used");
    std::fs::create_dir(&used).unwrap();
    let points = build_points(d.path(), &[(&used, &[])]);
    for n in NAMES {
        s3.put(&format!("mounted/{n}.strata"), &img(&used, n));
    }
    for (i, n) in NAMES.iter().enumerate() {
        let url = s3.url(&format!("mounted/{n}.strata"));
        let mnt = d.path().join(format!("mnt-{n}"));
        let m = Mounted::new(&url, &mnt);
        let root = mnt.join("p1");
        let seen = sh(
            "bash",
            &[MANIFEST_SH, "--walk", "p1", root.to_str().unwrap()],
        ) + "\n";
        assert_eq!(seen, lines_of(&points.manifests[i], "p1"), "{url}: tree");
        for (path, sha) in files_of(&points.manifests[i], "p1") {
            let f = root.join(path.trim_start_matches('/'));
            assert_eq!(sha256(&f), sha, "{url}: {path}");
        }
        ok(within(cmd(&[&"unmount", &mnt])));
        assert!(!is_mounted(&mnt), "{url}: still mounted");
        drop(m);
    }

    // The full image's object replaced while the newest point is mounted (by an image with
    // its UUID and other content): each file reads as before or fails, never other bytes.
    let uuid = info_json(&img(&used, NAMES[0]))["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = d.path().join("forged.strata");
    let disk = d.path().join("disk.img");
    ok(run(&[&"create", &disk, &forged, &"-q", &"--uuid", &uuid]));
    let url = s3.url(&format!("mounted/{}.strata", NAMES[2]));
    let mnt = d.path().join("mnt-replaced");
    let m = Mounted::new(&url, &mnt);
    s3.put(&format!("mounted/{}.strata", NAMES[0]), &forged);
    for (path, sha) in files_of(&points.manifests[2], "p1") {
        let f = mnt.join("p1").join(path.trim_start_matches('/'));
        if let Ok(data) = std::fs::read(&f) {
            assert_eq!(
                hex_sha(&data),
                sha,
                "{path}: other bytes after the replacement"
            );
        }
    }
    ok(within(cmd(&[&"unmount", &mnt])));
    drop(m);
}

// ---------------------------------------------------------------------------------------
// Failures. A raw disk file is enough: no root needed.

/// A raw disk file `name` of `len` bytes: text, noise and zeros from `seed`.
fn raw_disk(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut d = text(len / 2, seed);
    d.extend(noise(len / 4, seed + 1));
    d.resize(len, 0);
    std::fs::write(&path, d).unwrap();
    path
}

/// Overwrites three places of `disk`.
fn scribble(disk: &Path, seed: u64) {
    let len = std::fs::metadata(disk).unwrap().len();
    for i in 0..3 {
        write_at(disk, (len / 4) * i + 12_345 * seed, &noise(5_000, seed + i));
    }
}

/// A full image and an incremental of a raw disk, `full.strata` and `inc.strata` in `dir`.
fn raw_chain(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let disk = raw_disk(dir, "raw.img", 6 << 20, 400);
    let (full, inc) = (dir.join("full.strata"), dir.join("inc.strata"));
    ok(run(&[&"create", &disk, &full, &"-q"]));
    scribble(&disk, 1);
    ok(run(&[
        &"create",
        &disk,
        &inc,
        &"-q",
        &"--incremental",
        &full,
    ]));
    (disk, full, inc)
}

/// Wrong credentials, a missing bucket and a missing object: `info`, `verify` and
/// `restore` exit as for a missing local file (credentials: 1) with one line naming the
/// URL, and restore writes nothing. A correct run first shows the image itself is fine.
#[test]
fn wrong_credentials_missing_buckets_and_objects_fail_with_one_line() {
    let test = "wrong_credentials_missing_buckets_and_objects_fail_with_one_line";
    let Some(s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let (_, full, inc) = raw_chain(&d.path().join("local"));
    s3.put("errors/full.strata", &full);
    s3.put("errors/inc.strata", &inc);
    let url = s3.url("errors/inc.strata");
    let target = d.path().join("out.img");
    ok(within(cmd(&[&"info", &url])));
    ok(within(cmd(&[&"verify", &url, &"-q"])));

    // Credentials the server refuses (403): another secret for the key, an unknown key.
    let wrong_secret = other_secret(&s3.secret);
    let unknown_id = format!("GK{}", "0".repeat(24));
    for (what, var, value) in [
        (
            "wrong secret key",
            "AWS_SECRET_ACCESS_KEY",
            wrong_secret.as_str(),
        ),
        (
            "unknown access key",
            "AWS_ACCESS_KEY_ID",
            unknown_id.as_str(),
        ),
    ] {
        for args in [
            vec![OsStr::new("info"), OsStr::new(&url)],
            vec![OsStr::new("verify"), OsStr::new(&url)],
            vec![OsStr::new("restore"), OsStr::new(&url), target.as_os_str()],
        ] {
            let mut c = strata();
            c.env(var, value).args(&args);
            let what = format!("{what}: {args:?}");
            let err = refused(&within(c), 1, &[&url], DENIED, &what);
            assert!(!err.contains(&s3.secret), "{what}: the secret in {err}");
            nothing_written(&target, &what);
        }
    }

    // A missing bucket, as a missing local directory; a missing object, as a missing file.
    let no_dir = d.path().join("no such dir/inc.strata");
    let no_file = d.path().join("local/nope.strata");
    let no_bucket = format!("s3://{BUCKET}-no-such-bucket/errors/inc.strata");
    let no_object = s3.url("errors/nope.strata");
    let no_prefix = s3.url("nowhere/inc.strata");
    for (what, local, remote, words) in [
        ("missing object", &no_file, &no_object, NOT_FOUND),
        ("missing prefix", &no_file, &no_prefix, NOT_FOUND),
        ("missing bucket", &no_dir, &no_bucket, NO_BUCKET),
    ] {
        for command in ["info", "verify", "restore"] {
            let what = format!("{what}: {command}");
            let mut l = cmd(&[&command, local]);
            let mut r = cmd(&[&command, remote]);
            if command == "restore" {
                l.arg(&target);
                r.arg(&target);
            }
            let (code, _, lerr) = outcome(&within(l));
            assert_ne!(code, 0, "{what}: local: {lerr}");
            refused(&within(r), code, &[remote.as_str()], words, &what);
            nothing_written(&target, &what);
        }
    }
}

/// The parent object replaced by another image, replaced by an image with its UUID and
/// other content, deleted, or in another prefix: `restore` of the child from the bucket
/// fails as it does for local files (the same exit code), with one line naming the parent
/// and where it was looked for, and writes nothing. The right parent put back restores
/// again; a chain renamed within a prefix is found by UUID, as in a directory.
#[test]
fn replaced_missing_or_misplaced_parent_objects_are_refused_as_local_files_are() {
    let test = "replaced_missing_or_misplaced_parent_objects_are_refused_as_local_files_are";
    let Some(s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let (disk, full, inc) = raw_chain(&d.path().join("local"));
    // Another disk's full image; an image of this disk, changed, under the parent's UUID.
    let other_disk = raw_disk(d.path(), "other.img", 6 << 20, 900);
    let other_full = d.path().join("other-full.strata");
    ok(run(&[&"create", &other_disk, &other_full, &"-q"]));
    let uuid = info_json(&full)["uuid"].as_str().unwrap().to_string();
    scribble(&disk, 2);
    let forged = d.path().join("forged.strata");
    ok(run(&[&"create", &disk, &forged, &"-q", &"--uuid", &uuid]));

    s3.put("chain/full.strata", &full);
    s3.put("chain/inc.strata", &inc);
    let url = s3.url("chain/inc.strata");
    let want = restored_sha(&inc, d.path());
    assert_eq!(restored_sha(Path::new(&url), d.path()), want);

    // The same chain as local files, for the exit code each case gives there.
    let mirror = d.path().join("mirror");
    std::fs::create_dir(&mirror).unwrap();
    std::fs::copy(&inc, mirror.join("inc.strata")).unwrap();
    let target = d.path().join("out.img");
    let mut missing_code = 0;
    for (what, parent) in [
        ("another image under the parent's name", Some(&other_full)),
        ("the parent's UUID over other content", Some(&forged)),
        ("no parent", None),
    ] {
        match parent {
            Some(p) => {
                std::fs::copy(p, mirror.join("full.strata")).unwrap();
                s3.put("chain/full.strata", p);
            }
            None => {
                std::fs::remove_file(mirror.join("full.strata")).unwrap();
                s3.delete("chain/full.strata");
            }
        }
        let (code, _, lerr) = outcome(&within(cmd(&[
            &"restore",
            &mirror.join("inc.strata"),
            &target,
            &"-q",
        ])));
        assert_ne!(code, 0, "{what}: the local restore must fail: {lerr}");
        nothing_written(&target, what);
        missing_code = code;
        let o = within(cmd(&[&"restore", &url, &target, &"-q"]));
        refused(
            &o,
            code,
            &["full.strata", &format!("s3://{BUCKET}/chain/")],
            &[],
            what,
        );
        nothing_written(&target, what);
    }

    // The parent back: the chain restores again.
    s3.put("chain/full.strata", &full);
    assert_eq!(restored_sha(Path::new(&url), d.path()), want);

    // A parent is looked for in the child's prefix only.
    s3.put("alone/inc.strata", &inc);
    let alone = s3.url("alone/inc.strata");
    let o = within(cmd(&[&"restore", &alone, &target, &"-q"]));
    refused(
        &o,
        missing_code,
        &["full.strata", &format!("s3://{BUCKET}/alone/")],
        &[],
        "parent in another prefix",
    );
    nothing_written(&target, "parent in another prefix");

    // Renamed within one prefix: the parent is found by its UUID.
    s3.put("renamed/monday.strata", &full);
    s3.put("renamed/tuesday.strata", &inc);
    let tuesday = s3.url("renamed/tuesday.strata");
    assert_eq!(restored_sha(Path::new(&tuesday), d.path()), want);
    let v = info_json(Path::new(&tuesday));
    let chain = v["chain"].as_array().unwrap();
    assert!(
        chain[0]["image"]
            .as_str()
            .is_some_and(|s| s.ends_with("monday.strata")),
        "{v}"
    );
}

/// A server that was stopped, and an endpoint where nothing listens (given by
/// `--s3-endpoint`): `info`, `verify` and `restore` exit 1 within [`LIMIT`] with one line
/// naming the URL and saying the server cannot be reached, and restore writes nothing.
#[test]
fn a_stopped_or_unreachable_server_fails_fast_with_one_line() {
    let test = "a_stopped_or_unreachable_server_fails_fast_with_one_line";
    let Some(mut s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let (_, full, inc) = raw_chain(&d.path().join("local"));
    s3.put("gone/full.strata", &full);
    s3.put("gone/inc.strata", &inc);
    let url = s3.url("gone/inc.strata");
    let target = d.path().join("out.img");
    ok(within(cmd(&[&"info", &url])));

    s3.stop();
    for command in ["info", "verify", "restore"] {
        let what = format!("stopped server: {command}");
        let mut c = cmd(&[&command, &url]);
        if command == "restore" {
            c.arg(&target);
        }
        refused(&within(c), 1, &[&url], UNREACHABLE, &what);
        nothing_written(&target, &what);
    }

    let (port, _held) = common::s3::refused_port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let mut c = cmd(&[&"info", &url, &"--s3-endpoint", &nowhere]);
    c.env_remove("AWS_ENDPOINT_URL");
    refused(&within(c), 1, &[&url], UNREACHABLE, "--s3-endpoint nowhere");
}

/// The harness itself, without strata: what curl puts, Garage serves whole, in ranges and
/// in listings; unsigned or wrongly signed requests are refused; deleted objects are gone.
#[test]
fn garage_serves_what_curl_puts() {
    let test = "garage_serves_what_curl_puts";
    let Some(s3) = Garage::start(test) else {
        return;
    };
    let data = noise((3 << 20) + 123, 9);
    let len = data.len() as u64;
    s3.put_bytes("harness/blob.bin", &data);
    assert_eq!(s3.head("harness/blob.bin"), Some(len));
    assert!(s3.get("harness/blob.bin").unwrap() == data);
    for (a, b) in [(0, 1), (4_095, 104_097), (len - 10, len)] {
        assert!(
            s3.get_range("harness/blob.bin", a, b) == data[a as usize..b as usize],
            "bytes {a}..{b}"
        );
    }
    let listed = s3.list("harness/");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].0.as_str(), listed[0].1),
        ("harness/blob.bin", len)
    );
    assert!(s3.list("other/").is_empty());

    let url = s3.http_url(BUCKET, "harness/blob.bin");
    let wrong = other_secret(&s3.secret);
    assert_eq!(s3.request_as(&s3.key_id, &wrong, &[], &url).0, 403);
    let o = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "403", "unsigned GET");

    s3.delete("harness/blob.bin");
    assert_eq!(s3.head("harness/blob.bin"), None);
    assert!(s3.get("harness/blob.bin").is_none());
    assert!(s3.dir().join("server.log").exists());
}

// ---------------------------------------------------------------------------------------
// Images written by strata into a bucket.

/// `find IMAGE '*' --json` of the chain of `image`, each row keyed by the name of its
/// point's image (the last part of its path or URL) instead of where it is and when it was
/// made, in order. Every point must have a catalog: nothing on stderr (a point without one
/// is walked, with a note).
fn found(image: &Path, what: &str) -> Vec<(String, serde_json::Value)> {
    let o = within(cmd(&[&"find", &image, &"*", &"--json"]));
    let (code, out, err) = outcome(&o);
    assert_eq!(code, 0, "{what}: find: {err}");
    assert!(err.is_empty(), "{what}: find said: {err}");
    let mut rows: Vec<(String, serde_json::Value)> = out
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("one JSON object a line");
            let o = v.as_object_mut().unwrap();
            let image = o.remove("image").unwrap();
            o.remove("point");
            let name = image.as_str().unwrap().rsplit('/').next().unwrap();
            (name.to_string(), v)
        })
        .collect();
    rows.sort_by_key(|(n, v)| (n.clone(), v.to_string()));
    rows
}

/// The parent `info --json` says `image` recorded (`parent_hint`).
fn parent_hint(image: &Path) -> String {
    info_json(image)["parent_hint"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A chain of the ext4 disk changed through the kernel (full, differential, incremental)
/// written by `create` straight into a bucket, each parent an object beside its child, of
/// used blocks and of clones, and the same chain written to local files: every object is
/// whole (its size is the one `info` gives), every point restores byte for byte as the
/// local point does (clones: as the disk was), `ls -R --json` lists what it lists locally,
/// `cp -r` gives the kernel's files, and `find` finds in every point exactly the entries it
/// finds locally, from catalogs (nothing walked), the files being the kernel's: the
/// catalog built during the upload is right. A child records a parent in its prefix by
/// name. Mixed chains restore as well: a full image on disk, a differential of it in the
/// bucket (recording the local parent's absolute path), an incremental of that on disk
/// (recording the parent's URL).
#[test]
fn chains_written_into_a_bucket_read_as_the_same_chains_written_locally() {
    let test = "chains_written_into_a_bucket_read_as_the_same_chains_written_locally";
    if !require_root(test) {
        return;
    }
    let Some(s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let local = d.path().join("local");
    let mixed = d.path().join("mixed");
    std::fs::create_dir(&local).unwrap();
    std::fs::create_dir(&mixed).unwrap();
    let (used_url, clones_url) = (s3.url("written/used"), s3.url("written/clones"));
    let (used, clones) = (Path::new(&used_url), Path::new(&clones_url));
    // Mixed: the local full image, a differential of it in the bucket, an incremental of
    // that in a local directory.
    let mixed_diff = PathBuf::from(s3.url(&format!("mixed/{}.strata", NAMES[1])));
    let mixed_inc = img(&mixed, NAMES[2]);
    let points = build_points_with(
        d.path(),
        &[(&local, &[]), (used, &[]), (clones, &["--clone"])],
        |i, disk| {
            let (target, flag, parent) = match i {
                1 => (&mixed_diff, "--differential", img(&local, NAMES[0])),
                2 => (&mixed_inc, "--incremental", mixed_diff.clone()),
                _ => return,
            };
            ok(within(cmd(&[
                &"create", &disk, target, &"-q", &flag, &parent,
            ])));
        },
    );

    // Six objects, each as large as the image it holds.
    let objects = s3.list("written/");
    assert_eq!(objects.len(), 6, "{objects:?}");
    for (key, size, _) in &objects {
        let v = info_json(Path::new(&s3.url(key)));
        assert_eq!(v["image_bytes"].as_u64(), Some(*size), "{key}: object size");
        assert_eq!(v["chain_error"], serde_json::Value::Null, "{key}");
        assert!(
            v["catalog"].is_object(),
            "{key}: no catalog: {}",
            v["catalog"]
        );
    }
    assert!(s3.uploads("").is_empty(), "incomplete uploads left");

    for (i, n) in NAMES.iter().enumerate() {
        let what = format!("written/used/{n}");
        let l = img(&local, n);
        let (u, c) = (img(used, n), img(clones, n));
        let sha = restored_sha(&l, d.path());
        assert_eq!(restored_sha(&u, d.path()), sha, "{what}: restored");
        assert_eq!(
            restored_sha(&c, d.path()),
            points.shas[i],
            "written/clones/{n}: restored"
        );
        if let Some((_, parent)) = PARENTS[i] {
            let want = format!("{}.strata", NAMES[parent]);
            assert_eq!(parent_hint(&u), want, "{what}: parent recorded");
        }

        let (lt, l_clean) = ls_tree(&l, "/p1");
        let (ut, u_clean) = ls_tree(&u, "/p1");
        assert!(l_clean && u_clean, "{what}: ls reported errors");
        let json = |m: &BTreeMap<String, Listed>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.json.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(json(&ut), json(&lt), "{what}: ls -R --json");
        let out = d.path().join(format!("used-{n}.out"));
        compare_with_manifest_into(&u, &out, &points.manifests[i], &["p1"], &[]);
    }

    // The catalogs: the same entries in every point as locally, and the kernel's files.
    let top = NAMES[2];
    let want = found(&img(&local, top), "local");
    for chain in [used, clones] {
        let got = found(&img(chain, top), &chain.display().to_string());
        assert_eq!(got, want, "{}: find rows", chain.display());
    }
    for (i, n) in NAMES.iter().enumerate() {
        let listed: BTreeMap<String, u64> = want
            .iter()
            .filter(|(image, v)| *image == format!("{n}.strata") && v["type"] == "file")
            .filter_map(|(_, v)| {
                let path = v["path"].as_str()?.strip_prefix("/p1")?;
                Some((path.to_string(), v["size"].as_u64()?))
            })
            .collect();
        let kernel: BTreeMap<String, u64> = points.manifests[i]
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .filter(|f| f[0] == "p1" && f[2] == "f")
            .map(|f| (f[1].to_string(), f[3].parse().unwrap()))
            .collect();
        assert_eq!(listed, kernel, "{n}: files found");
    }

    // The mixed chain: each point restores as the local one, each parent recorded as it
    // was given.
    assert_eq!(
        restored_sha(&mixed_diff, d.path()),
        restored_sha(&img(&local, NAMES[1]), d.path()),
        "a differential in the bucket of a local full image: restored"
    );
    assert_eq!(
        parent_hint(&mixed_diff),
        img(&local, NAMES[0]).display().to_string(),
        "a local parent is recorded by its absolute path"
    );
    assert_eq!(
        restored_sha(&mixed_inc, d.path()),
        restored_sha(&img(&local, NAMES[2]), d.path()),
        "a local incremental of a differential in the bucket: restored"
    );
    assert_eq!(
        parent_hint(&mixed_inc),
        mixed_diff.display().to_string(),
        "a parent in a bucket is recorded by its URL"
    );
}

/// `create` to a key that holds an object: without `--force` it fails as it does over an
/// existing local file (the same exit code) with one line naming the URL, starts no upload
/// and leaves the object byte for byte as it was; with `--force` the object is replaced
/// and reads as the new image. A missing bucket, with or without `--force`: one line
/// naming the URL that says "bucket", the exit code of a missing local directory, and
/// nothing written to the bucket that exists.
#[test]
fn an_existing_object_is_kept_unless_forced_and_a_missing_bucket_is_named() {
    let test = "an_existing_object_is_kept_unless_forced_and_a_missing_bucket_is_named";
    let Some(s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let first = raw_disk(d.path(), "first.img", 6 << 20, 500);
    let second = raw_disk(d.path(), "second.img", 6 << 20, 600);
    let key = "existing/disk.strata";
    let url = s3.url(key);
    ok(within(cmd(&[&"create", &first, &url, &"-q"])));
    let before = s3.get(key).expect("the object written");
    let first_uuid = info_json(Path::new(&url))["uuid"].clone();

    // The local case, for its exit code.
    let local = d.path().join("disk.strata");
    ok(within(cmd(&[&"create", &first, &local, &"-q"])));
    let (exists_code, _, lerr) = outcome(&within(cmd(&[&"create", &second, &local, &"-q"])));
    assert_ne!(exists_code, 0, "local create over a file: {lerr}");

    let o = within(cmd(&[&"create", &second, &url, &"-q"]));
    refused(
        &o,
        exists_code,
        &[&url],
        &["exists", "force"],
        "create over an object",
    );
    let after = s3.get(key).expect("the object kept");
    assert_eq!(hex_sha(&after), hex_sha(&before), "the object changed");
    assert!(s3.uploads("").is_empty(), "an upload was started");

    ok(within(cmd(&[&"create", &second, &url, &"-q", &"--force"])));
    let replaced = s3.get(key).expect("the object replaced");
    assert_ne!(
        hex_sha(&replaced),
        hex_sha(&before),
        "--force: not replaced"
    );
    assert_ne!(
        info_json(Path::new(&url))["uuid"],
        first_uuid,
        "--force: still the first image"
    );
    assert_eq!(
        restored_sha(Path::new(&url), d.path()),
        sha256(&second),
        "--force: restored"
    );
    ok(within(cmd(&[&"verify", &url, &"-q"])));

    // A missing bucket.
    let objects = s3.list("");
    let no_dir = d.path().join("no such dir/disk.strata");
    let (missing_code, _, lerr) = outcome(&within(cmd(&[&"create", &first, &no_dir, &"-q"])));
    assert_ne!(
        missing_code, 0,
        "local create into a missing directory: {lerr}"
    );
    let no_bucket = format!("s3://{BUCKET}-no-such-bucket/existing/disk.strata");
    for force in [false, true] {
        let what = format!("create into a missing bucket (--force: {force})");
        let mut c = cmd(&[&"create", &first, &no_bucket, &"-q"]);
        if force {
            c.arg("--force");
        }
        refused(&within(c), missing_code, &[&no_bucket], NO_BUCKET, &what);
    }
    assert_eq!(s3.list(""), objects, "the bucket changed");
    assert!(s3.uploads("").is_empty(), "an upload was started");
}

/// A raw disk file `name` of `len` bytes of noise: incompressible, its image is as large.
fn random_disk(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let block = 8 << 20;
    for (k, at) in (0..len).step_by(block).enumerate() {
        f.write_all(&noise(block.min(len - at), seed + k as u64))
            .unwrap();
    }
    f.flush().unwrap();
    path
}

/// A source whose upload takes seconds (a clone of it is ~400 MB).
const LARGE: usize = 400 << 20;

/// Waits until `run`, a `create` to `key`, has an upload of `key` holding at least one
/// part; returns the upload's id. Fails if `run` ends first or no part shows within
/// [`LIMIT`].
fn upload_under_way(s3: &Garage, key: &str, run: &mut Running) -> String {
    let start = Instant::now();
    loop {
        for (k, id) in s3.uploads(key) {
            if k == key && s3.parts(key, &id) > 0 {
                return id;
            }
        }
        assert!(
            run.running(),
            "the upload of {key} ended before it was seen under way"
        );
        assert!(
            start.elapsed() < LIMIT,
            "no part of {key} uploaded within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server killed (SIGKILL) while `create` uploads a large image: strata fails within
/// [`LIMIT`] with one line naming the URL that says the server cannot be reached, and no
/// object appears (looked for once the server is back). Garage restarted on its data, the
/// same `create` succeeds, the object restores to the source byte for byte, and no
/// incomplete upload of the key is left.
#[test]
fn a_server_killed_during_an_upload_fails_it_and_the_rerun_completes() {
    let test = "a_server_killed_during_an_upload_fails_it_and_the_rerun_completes";
    let Some(mut s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let disk = random_disk(d.path(), "random.img", LARGE, 70);
    let key = "killed/server.strata";
    let url = s3.url(key);
    let create = || cmd(&[&"create", &disk, &url, &"-q", &"--clone"]);
    let mut run = Running::start(create());
    upload_under_way(&s3, key, &mut run);
    s3.kill();
    let killed = Instant::now();
    let o = run.wait(LIMIT);
    let took = killed.elapsed();
    let err = refused(
        &o,
        1,
        &[&url],
        UNREACHABLE,
        "the server killed during the upload",
    );
    eprintln!("{test}: strata ended {took:?} after the kill: {err}");

    s3.restart();
    assert_eq!(s3.head(key), None, "an object after the failed upload");
    // The server was down until strata ended: its upload could not be aborted.
    assert_eq!(s3.uploads(key).len(), 1, "the failed run's upload");
    ok(within(create()));
    assert!(s3.head(key).is_some(), "no object after the rerun");
    assert_eq!(s3.uploads(key), vec![], "incomplete uploads of {key} left");
    assert_eq!(
        restored_sha(Path::new(&url), d.path()),
        sha256(&disk),
        "restored after the rerun"
    );
}

/// strata killed (SIGKILL) while it uploads: no object, and its incomplete upload stays
/// (nothing could abort it); the next `create` to the key succeeds, the object restores,
/// and no incomplete upload of the key is left (the stale one was aborted). Interrupted
/// instead (SIGINT, SIGTERM): strata exits 1 within [`LIMIT`] with one line saying it was
/// interrupted, and leaves no object and no incomplete upload: it aborted its own.
#[test]
fn strata_killed_or_interrupted_during_an_upload_leaves_no_object() {
    let test = "strata_killed_or_interrupted_during_an_upload_leaves_no_object";
    let Some(s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let disk = random_disk(d.path(), "random.img", LARGE, 80);
    let key = "killed/strata.strata";
    let url = s3.url(key);
    let mut run = Running::start(cmd(&[&"create", &disk, &url, &"-q", &"--clone"]));
    let id = upload_under_way(&s3, key, &mut run);
    run.signal(libc::SIGKILL);
    let o = run.wait(LIMIT);
    assert_eq!(o.status.code(), None, "not killed: {o:?}");
    assert_eq!(s3.head(key), None, "an object after the kill");
    assert_eq!(
        s3.uploads(key),
        vec![(key.to_string(), id)],
        "the killed run's upload"
    );

    let small = raw_disk(d.path(), "small.img", 6 << 20, 81);
    ok(within(cmd(&[&"create", &small, &url, &"-q"])));
    assert_eq!(s3.uploads(key), vec![], "incomplete uploads of {key} left");
    assert_eq!(
        restored_sha(Path::new(&url), d.path()),
        sha256(&small),
        "restored after the kill"
    );

    for (name, signal) in [("SIGINT", libc::SIGINT), ("SIGTERM", libc::SIGTERM)] {
        let key = format!("interrupted/{name}.strata");
        let url = s3.url(&key);
        let mut run = Running::start(cmd(&[&"create", &disk, &url, &"-q", &"--clone"]));
        upload_under_way(&s3, &key, &mut run);
        run.signal(signal);
        let o = run.wait(LIMIT);
        // SIGTERM: the known bug above.
        assert_eq!(
            o.status.code(),
            Some(1),
            "{name}: strata did not stop cleanly (ended by the signal: {:?}); stderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        refused(&o, 1, &[], &["interrupt"], name);
        assert_eq!(s3.head(&key), None, "{name}: an object");
        assert_eq!(s3.uploads(&key), vec![], "{name}: its upload left");
    }
}

// ---------------------------------------------------------------------------------------
// A mount of an image in a bucket, the server failing or slow.

/// A GPT disk whose ext4 volume (96 MiB, made by `mkfs.ext4 -d`) holds a large file of
/// noise, `/big.bin` (48 MiB, many chunks), beside directories of small files: the disk and
/// what the kernel shows of it. With `long_listings`, `/later/inner` and the directories
/// of `/bulk` hold thousands of empty files with long names of noise: directory blocks
/// that do not compress, more than a mount reads at its start, so that listing them needs
/// metadata from the server.
fn disk_with_a_large_file(dir: &Path, long_listings: bool) -> (PathBuf, String) {
    let tree = dir.join("large-tree");
    for sub in ["docs", "later/inner", "more"] {
        std::fs::create_dir_all(tree.join(sub)).unwrap();
    }
    std::fs::write(tree.join("big.bin"), noise(48 << 20, 90)).unwrap();
    for k in 0..12u64 {
        let t = |n: usize, s: u64| text(n + 311 * k as usize, s + k);
        std::fs::write(tree.join(format!("docs/doc-{k:02}.txt")), t(2_000, 100)).unwrap();
        std::fs::write(tree.join(format!("later/inner/note {k}.txt")), t(700, 200)).unwrap();
        std::fs::write(tree.join(format!("more/m{k}")), t(9_000, 300)).unwrap();
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for k in 0..if long_listings { 10_300u64 } else { 0 } {
        let name: String = noise(200, 1000 + k)
            .iter()
            .map(|b| ALPHABET[usize::from(b % 64)] as char)
            .collect();
        let sub = match k {
            0..300 => "later/inner".to_string(),
            _ => format!("bulk/b{}", k / 1000),
        };
        std::fs::create_dir_all(tree.join(&sub)).unwrap();
        std::fs::write(tree.join(sub).join(name), b"").unwrap();
    }
    let vol = dir.join("large.ext4");
    sh(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-d",
            tree.to_str().unwrap(),
            vol.to_str().unwrap(),
            "96M",
        ],
    );
    let disk = dir.join("large-disk.img");
    disk_with(&vol, &disk);
    std::fs::remove_file(&vol).unwrap();
    let m = manifest(&disk, None, &dir.join("large.manifest"));
    (disk, m)
}

/// [`disk_with_a_large_file`] imaged and put into the bucket under `key`: its URL and the
/// kernel's manifest of the disk.
fn large_image_in_bucket(
    s3: &Garage,
    dir: &Path,
    key: &str,
    long_listings: bool,
) -> (String, String) {
    let (disk, manifest) = disk_with_a_large_file(dir, long_listings);
    let image = dir.join("large.strata");
    ok(within(cmd(&[&"create", &disk, &image, &"-q"])));
    s3.put(key, &image);
    (s3.url(key), manifest)
}

/// `url` mounted at `mnt` with its requests sent through `proxy`.
fn mounted_through(proxy: &SlowProxy, url: &str, mnt: &Path) -> Mounted {
    let mut mount = cmd(&[&"mount", &url, &mnt]);
    mount.env("AWS_ENDPOINT_URL", &proxy.endpoint);
    Mounted::by(mount, mnt)
}

/// sha256 of `file` read by `sha256sum` (waited for `limit` at most): exit code, the hash
/// (empty on failure), stderr, and how long it took.
fn sha256sum(file: &Path, limit: Duration) -> (i32, String, String, Duration) {
    let start = Instant::now();
    let o = Running::start({
        let mut c = Command::new("sha256sum");
        c.arg(file);
        c
    })
    .wait(limit);
    let took = start.elapsed();
    let (code, out, err) = outcome(&o);
    let sha = out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    (code, sha, err, took)
}

/// The server stopped under a mount of an image in a bucket: reading a file not read yet
/// fails with an I/O error (never other bytes) within [`LIMIT`], and the mount stays,
/// answering; the server started again, that file reads as the kernel read it, and so
/// does every other file.
#[test]
fn a_mount_outlives_a_stopped_server_and_reads_again_once_it_is_back() {
    let test = "a_mount_outlives_a_stopped_server_and_reads_again_once_it_is_back";
    if !require_fuse(test) {
        return;
    }
    let Some(mut s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let (url, manifest) = large_image_in_bucket(&s3, d.path(), "mounted/large.strata", false);
    let mnt = d.path().join("mnt");
    let m = Mounted::new(&url, &mnt);
    let files = files_of(&manifest, "p1");
    let file = |path: &str| mnt.join("p1").join(path.trim_start_matches('/'));
    let (code, sha, err, _) = sha256sum(&file("/docs/doc-00.txt"), LIMIT);
    assert_eq!((code, &sha), (0, &files["/docs/doc-00.txt"]), "{err}");

    s3.stop();
    // Waited for beyond LIMIT, so that the rest is checked too; the bound is checked last.
    let (code, sha, err, failed_after) = sha256sum(&file("/big.bin"), 2 * LIMIT);
    eprintln!(
        "{test}: the read failed after {failed_after:?}: {}",
        err.trim()
    );
    assert_ne!(code, 0, "big.bin read with the server stopped: {sha}");
    assert!(
        err.contains("Input/output error"),
        "big.bin with the server stopped: {err}"
    );
    assert!(is_mounted(&mnt), "the mount went with the server");
    let o = within({
        let mut c = Command::new("ls");
        c.arg(&mnt);
        c
    });
    assert_eq!(outcome(&o).1.trim(), "p1", "the mount's root: {o:?}");

    s3.restart();
    let (code, sha, err, _) = sha256sum(&file("/big.bin"), LIMIT);
    assert_eq!(
        (code, &sha),
        (0, &files["/big.bin"]),
        "big.bin with the server back: {err}"
    );
    for (path, want) in &files {
        let (code, sha, err, _) = sha256sum(&file(path), LIMIT);
        assert_eq!((code, &sha), (0, want), "{path}: {err}");
    }
    ok(within(cmd(&[&"unmount", &mnt])));
    drop(m);
    assert!(
        failed_after < LIMIT,
        "a read with the server stopped failed only after {failed_after:?}"
    );
}

/// How long a listing of a mount may take while a large file is read.
const RESPONSIVE: Duration = Duration::from_secs(5);

/// A slow server under a mount (a proxy holds back every 64 KiB of its answers 200 ms):
/// while `sha256sum` reads a large file not read before, which takes far longer, `ls -la`
/// of the volume's root and of a directory not listed before each answer within
/// [`RESPONSIVE`] with the entries the kernel showed, though listing needs metadata from
/// the server: a large read does not hold up the rest of the mount.
#[test]
fn a_mount_of_a_slow_server_lists_while_a_large_file_is_read() {
    let test = "a_mount_of_a_slow_server_lists_while_a_large_file_is_read";
    if !require_fuse(test) {
        return;
    }
    let Some(s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let (url, manifest) = large_image_in_bucket(&s3, d.path(), "slow/large.strata", true);
    let proxy = SlowProxy::start(&s3.endpoint, 64 << 10, Duration::from_millis(200));
    let mnt = d.path().join("mnt");
    let m = mounted_through(&proxy, &url, &mnt);
    assert!(
        proxy.bytes_down() > 0,
        "the mount did not go through the proxy"
    );

    // The large file read, its data flowing.
    let before = proxy.bytes_down();
    let mut reading = Running::start({
        let mut c = Command::new("sha256sum");
        c.arg(mnt.join("p1/big.bin"));
        c
    });
    let start = Instant::now();
    while proxy.bytes_down() < before + (1 << 20) {
        assert!(reading.running(), "big.bin read at once");
        assert!(start.elapsed() < LIMIT, "big.bin is not being read");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Small ranges (object pages, metadata) asked for while the listings ran: the large
    // file's chunks are larger.
    let mut small_asked = 0;
    for dir in ["", "later/inner"] {
        let path = mnt.join("p1").join(dir);
        let asked = proxy.ranges().len();
        let start = Instant::now();
        let mut ls = Running::start({
            let mut c = Command::new("ls");
            c.arg("-la").arg(&path);
            c
        });
        while ls.running() && start.elapsed() < RESPONSIVE {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Over the bound: still waited for, to say how long it took.
        let o = ls.wait(LIMIT);
        let took = start.elapsed();
        let small = proxy.ranges()[asked..]
            .iter()
            .filter(|(a, b)| b - a <= 256 << 10)
            .count();
        small_asked += small;
        eprintln!("{test}: ls -la /p1/{dir}: {took:?}, {small} small ranges asked");
        let (code, out, err) = outcome(&o);
        assert_eq!(code, 0, "ls -la /p1/{dir}: {err}");
        assert!(
            took < RESPONSIVE,
            "ls -la /p1/{dir} took {took:?} while big.bin was read"
        );
        let prefix = if dir.is_empty() {
            "/".to_string()
        } else {
            format!("/{dir}/")
        };
        let names: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.split('\t').nth(1)?.strip_prefix(prefix.as_str()))
            .filter(|rest| !rest.contains('/'))
            .collect();
        assert!(names.len() > 3, "/p1/{dir}: {names:?}");
        for n in names {
            assert!(out.contains(n), "ls -la /p1/{dir}: {n} missing: {out}");
        }
    }
    assert!(
        small_asked > 0,
        "the listings needed nothing from the server: they prove nothing"
    );
    assert!(
        reading.running(),
        "big.bin was read before the listings ended: they prove nothing"
    );
    drop(reading);
    ok(within(cmd(&[&"unmount", &mnt])));
    drop(m);
}

/// The source the mount table gives for the mount at `dir` (`/proc/self/mountinfo`, octal
/// escapes left as they are).
fn mount_source(dir: &Path) -> Option<String> {
    let want = dir.to_str().unwrap().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .and_then(|l| l.split_once(" - "))
        .and_then(|(_, rest)| rest.split(' ').nth(1).map(str::to_string))
}

/// A mount of an object is named in the mount table by its URL, `strata:s3://BUCKET/KEY`
/// (a mount of a file, by the file's absolute path), and `strata unmount` takes it down.
#[test]
fn a_mount_of_an_object_is_named_by_its_url() {
    let test = "a_mount_of_an_object_is_named_by_its_url";
    if !require_fuse(test) {
        return;
    }
    let Some(s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let (_, full, inc) = raw_chain(&d.path().join("local"));
    s3.put("named/full.strata", &full);
    s3.put("named/inc.strata", &inc);
    let url = s3.url("named/inc.strata");
    let mnt = d.path().join("mnt");
    let m = Mounted::by(cmd(&[&"mount", &"--raw", &url, &mnt]), &mnt);
    assert_eq!(
        mount_source(&mnt),
        Some(format!("strata:{url}")),
        "the mount's source"
    );
    ok(within(cmd(&[&"unmount", &mnt])));
    assert!(!is_mounted(&mnt), "still mounted");
    drop(m);
}

/// An in-place consolidation removes the merged parent only when it could look in every
/// place a child of it could be: a search directory in a bucket that cannot be listed
/// (here a bucket that does not exist) keeps the parent, says why, and every point left
/// still restores to its disk. Without that search directory the parent goes.
#[test]
fn consolidation_keeps_the_parent_when_a_search_place_cannot_be_listed() {
    let test = "consolidation_keeps_the_parent_when_a_search_place_cannot_be_listed";
    let Some(_s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let dir = d.path().join("local");
    let (disk, full, inc) = raw_chain(&dir);
    scribble(&disk, 2);
    let top = dir.join("top.strata");
    ok(run(&[
        &"create",
        &disk,
        &top,
        &"-q",
        &"--incremental",
        &inc,
    ]));
    let (sha_full, sha_top) = (restored_sha(&full, d.path()), restored_sha(&top, d.path()));
    let nowhere = "s3://no-such-bucket-here/images/";

    let out = ok(within(cmd(&[
        &"consolidate",
        &top,
        &"--parent-dir",
        &nowhere,
    ])));
    assert!(inc.exists(), "the parent was removed: {out}");
    assert!(
        out.contains("kept") && out.contains("inc.strata") && out.contains("no-such-bucket-here"),
        "{out}"
    );
    assert_eq!(
        restored_sha(&top, d.path()),
        sha_top,
        "top after consolidation"
    );
    assert_eq!(restored_sha(&full, d.path()), sha_full, "full");
    ok(run(&[&"verify", &inc, &"-q"]));

    // The same merge with every place readable removes the parent it merged.
    scribble(&disk, 3);
    let next = dir.join("next.strata");
    ok(run(&[
        &"create",
        &disk,
        &next,
        &"-q",
        &"--incremental",
        &top,
    ]));
    let sha_next = restored_sha(&next, d.path());
    let out = ok(within(cmd(&[&"consolidate", &next])));
    assert!(!top.exists(), "the merged parent was kept: {out}");
    assert_eq!(
        restored_sha(&next, d.path()),
        sha_next,
        "next after consolidation"
    );
}

/// A large file read through a mount of an object: the read-ahead fetches the chunks that
/// follow each other in the image several to a request (one request per chunk before),
/// and the file has the bytes the kernel read. Counted by a proxy that only passes bytes on.
#[test]
fn a_mounted_large_file_is_fetched_several_chunks_to_a_request() {
    let test = "a_mounted_large_file_is_fetched_several_chunks_to_a_request";
    if !require_fuse(test) {
        return;
    }
    let Some(s3) = Garage::start(test) else {
        return;
    };
    let d = tempdir();
    let (url, manifest) = large_image_in_bucket(&s3, d.path(), "runs/large.strata", false);
    let proxy = SlowProxy::start(&s3.endpoint, 64 << 10, Duration::ZERO);
    let mnt = d.path().join("mnt");
    let m = mounted_through(&proxy, &url, &mnt);
    let files = files_of(&manifest, "p1");
    let before = proxy.ranges().len();
    let (code, sha, err, _) = sha256sum(&mnt.join("p1/big.bin"), LIMIT);
    assert_eq!((code, &sha), (0, &files["/big.bin"]), "big.bin: {err}");
    let asked = proxy.ranges()[before..].to_vec();
    // big.bin is 48 MiB of noise: 48 chunks of 1 MiB, which zstd barely shrinks.
    let fetched: u64 = asked.iter().map(|(a, b)| b - a).sum();
    let joined = asked.iter().filter(|(a, b)| b - a > 2 << 20).count();
    eprintln!(
        "{test}: {} requests, {joined} of more than 2 MiB, {fetched} bytes",
        asked.len()
    );
    assert!(
        fetched >= 44 << 20,
        "big.bin came from elsewhere: {asked:?}"
    );
    assert!(
        asked.len() <= 24 && joined >= 3,
        "48 chunks in {} requests: {asked:?}",
        asked.len()
    );
    ok(within(cmd(&[&"unmount", &mnt])));
    drop(m);
}
