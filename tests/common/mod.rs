//! Helpers shared by the integration tests: run the real `strata` binary in a fresh
//! directory and build test disks.
#![allow(dead_code)]

#[cfg(target_os = "linux")]
pub mod s3;
pub mod tsk;

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test. While this thread runs an S3 server ([`s3::Garage`]), with that
/// server's connection settings in its environment.
pub fn strata() -> Command {
    #[allow(unused_mut)]
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    #[cfg(target_os = "linux")]
    s3::apply_env(&mut c);
    c
}

/// Runs strata with `args`; returns the output.
pub fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = strata();
    for a in args {
        c.arg(a);
    }
    c.output().expect("strata runs")
}

/// Address space strata gets in the bad-input tests ([`strata_limited`]): a size read
/// from damaged data and allocated unchecked fails the test instead of passing unseen.
/// 1 GiB holds a normal run several times over (measured peaks of `VmPeak` in
/// docs/RELIABILITY.md): the 64 MiB chunk cache, glibc's per-thread malloc arenas (64 MiB
/// of address space each, two in browsing commands), 8 MiB thread stacks and zstd's
/// windows.
pub const ADDRESS_SPACE_LIMIT: u64 = 1 << 30;

/// The binary under test, limited to [`ADDRESS_SPACE_LIMIT`] of address space
/// (`RLIMIT_AS`, as `ulimit -v` sets it): for every run that feeds it damaged input.
pub fn strata_limited() -> Command {
    #[allow(unused_mut)]
    let mut c = strata();
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            c.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: ADDRESS_SPACE_LIMIT as libc::rlim_t,
                    rlim_max: ADDRESS_SPACE_LIMIT as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    c
}

/// Runs strata with `args` under [`ADDRESS_SPACE_LIMIT`]; returns the output.
pub fn run_limited(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = strata_limited();
    for a in args {
        c.arg(a);
    }
    c.output().expect("strata runs")
}

/// Exit code, stdout and stderr of a run, as text.
pub fn outcome(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts a run succeeded and returns its stdout.
pub fn ok(o: Output) -> String {
    let (code, out, err) = outcome(&o);
    assert_eq!(code, 0, "strata failed\nstdout: {out}\nstderr: {err}");
    out
}

/// sha256 of a file, hex.
pub fn sha256(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compressible text-like bytes.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    let words = [
        "backup ", "disk ", "sector ", "image ", "chunk ", "restore ", "file\n", "data ",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let r = noise(len / 4 + 8, seed);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(words[(r[i % r.len()] % 8) as usize].as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Writes `data` at `offset` in `path` (creating it).
pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
}

/// A temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-test-")
        .tempdir()
        .unwrap()
}

/// The committed sample disk, decompressed into `dir`.
pub fn sample_disk(dir: &Path) -> PathBuf {
    let zst = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample/sample-disk.img.zst");
    let raw = zstd::stream::decode_all(std::fs::File::open(zst).unwrap()).unwrap();
    let p = dir.join("sample-disk.img");
    std::fs::write(&p, raw).unwrap();
    p
}

/// First 4 KiB block of the sample disk's ext4 partition (p3, at MiB 65).
pub const SAMPLE_P3_FIRST_BLOCK: u64 = 68157440 / 4096;

/// The sample disk's ext4 partition (p3, 30 MiB from MiB 65) copied out of `disk` into
/// `dir`, for debugfs.
pub fn sample_p3(disk: &Path, dir: &Path) -> PathBuf {
    let part = dir.join("p3.ext4");
    sh(
        "dd",
        &[
            &format!("if={}", disk.display()),
            &format!("of={}", part.display()),
            "bs=1M",
            "skip=65",
            "count=30",
            "status=none",
        ],
    );
    part
}

/// The sample disk's 4 KiB blocks holding `file` of p3 (`part`, from [`sample_p3`]), in
/// file order, from debugfs.
pub fn sample_p3_blocks(part: &Path, file: &str) -> Vec<u64> {
    sh(
        "debugfs",
        &["-R", &format!("blocks {file}"), part.to_str().unwrap()],
    )
    .split_whitespace()
    .map(|b| SAMPLE_P3_FIRST_BLOCK + b.parse::<u64>().unwrap())
    .collect()
}

/// Tests that need root (loop devices, mounts) call this first. Outside CI they are
/// skipped for non-root users, visibly (see [`skip`]); in CI (`CI` set, as `.ci/run` does)
/// a missing privilege is a failure, never a skip.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    #[cfg(unix)]
    let root = unsafe { libc::geteuid() } == 0;
    #[cfg(not(unix))]
    let root = false;
    root || skip(test, "needs root")
}

/// Tests that mount images call this first: root, /dev/fuse and fusermount3 (fuse3), or
/// a skip as [`require_root`].
pub fn require_fuse(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    let fusermount = Command::new("fusermount3").arg("-V").output().is_ok();
    std::path::Path::new("/dev/fuse").exists() && fusermount
        || skip(test, "needs /dev/fuse and fusermount3")
}

/// Skips `test` (returns false), or fails it when `CI` is set. libtest shows a test that
/// returns early as passed and hides what it printed, so the skip is written to the
/// process's stderr directly (not through `eprintln!`, which libtest captures) and, when
/// `STRATA_SKIPPED` names a file, appended to it: `tests/run-all.sh` lists that file at
/// the end of the run.
pub fn skip(test: &str, reason: &str) -> bool {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {reason}, and CI must not skip it"
    );
    let line = format!("SKIPPED {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os("STRATA_SKIPPED") {
        // One short O_APPEND write a line, so parallel test processes do not mix lines.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
    false
}

/// Runs a shell tool that must succeed; returns stdout.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed for this test: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A loop device over `file` (detached on drop).
pub struct Loop(pub String);

impl Loop {
    pub fn attach(file: &Path, sector_size: u32, read_only: bool) -> Loop {
        let ss = sector_size.to_string();
        let mut args = vec!["--find", "--show", "--sector-size", &ss];
        if read_only {
            args.push("--read-only");
        }
        let f = file.to_str().unwrap();
        args.push(f);
        Loop(sh("losetup", &args))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// Byte-compares two files without reading them into memory.
pub fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 22], vec![0u8; 1 << 22]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Damages, in an image made with 4 KiB chunks, the chunk holding each 4 KiB disk block of
/// `blocks`: one byte in the middle of its compressed payload is flipped, so reads of that
/// block (and only that block) fail their checksum.
pub fn damage_block_chunks(image: &Path, blocks: &[u64]) {
    let img = strata::container::reader::Image::open(image).unwrap();
    let mut bytes = std::fs::read(image).unwrap();
    for &block in blocks {
        let e = img
            .index()
            .extents
            .iter()
            .find(|e| e.disk_block <= block && block < e.end())
            .expect("the block is stored");
        assert_eq!(e.count, 1, "one block per chunk");
        let c = &img.index().chunks[e.chunk as usize];
        bytes[(c.offset + 24 + u64::from(c.stored_len) / 2) as usize] ^= 0x20;
    }
    drop(img);
    std::fs::write(image, bytes).unwrap();
}

/// Fills the NTFS volume file `vol` through an ntfs-3g mount with `script` (Python, run
/// in the mounted root).
pub fn ntfs3g_fill(vol: &Path, script: &str) {
    ntfs3g_fill_with(vol, "", script);
}

/// [`ntfs3g_fill`] with ntfs-3g mount options `opts` (`-o` list; empty for none).
pub fn ntfs3g_fill_with(vol: &Path, opts: &str, script: &str) {
    let mnt = vol.with_extension("mnt");
    let _ = std::fs::create_dir(&mnt);
    let mut args = vec![vol.to_str().unwrap(), mnt.to_str().unwrap()];
    if !opts.is_empty() {
        args.extend(["-o", opts]);
    }
    sh("ntfs-3g", &args);
    let o = std::panic::catch_unwind(|| python(script, &mnt, &[]));
    sh("umount", &[mnt.to_str().unwrap()]);
    o.unwrap();
}

/// Runs the Python `script` with `args` in `cwd`; returns its stdout (it must succeed).
pub fn python(script: &str, cwd: &Path, args: &[&Path]) -> Vec<u8> {
    let o = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// A fresh 16 MiB NTFS volume file `vol.ntfs` in `dir`, made by mkntfs.
pub fn small_ntfs(dir: &Path) -> PathBuf {
    let vol = dir.join("vol.ntfs");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    sh("mkntfs", &["-q", "-F", "-f", vol.to_str().unwrap()]);
    vol
}

/// The `fixtures/` directory of the repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The committed manifest of the sample disk (`fixtures/sample/sample-disk.manifest.txt`).
pub fn sample_manifest() -> String {
    std::fs::read_to_string(fixtures().join("sample/sample-disk.manifest.txt")).unwrap()
}

/// Files of every partition of `disk` as the real tools read them (`fixtures/manifest.sh`,
/// written to `out`), with the sector size given or, for `None`, the one manifest.sh finds.
pub fn manifest(disk: &Path, sector_size: Option<u32>, out: &Path) -> String {
    let ss = sector_size.map(|s| s.to_string());
    let mut args = Vec::new();
    if let Some(ss) = &ss {
        args.extend(["--sector-size", ss.as_str()]);
    }
    args.extend([disk.to_str().unwrap(), out.to_str().unwrap()]);
    sh(fixtures().join("manifest.sh").to_str().unwrap(), &args);
    std::fs::read_to_string(out).unwrap()
}

/// `strata info --json` of `image`.
pub fn info_json(image: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(run(&[&"info", &image, &"--json"]))).unwrap()
}

/// Images `disk` in `dir` (with `extra` arguments), verifies the image, restores it and
/// checks the restored disk is identical. Returns the image path.
pub fn round_trip(dir: &Path, disk: &Path, extra: &[&str]) -> PathBuf {
    let image = dir.join("disk.strata");
    let restored = dir.join("restored.img");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"create", &disk, &image, &"--quiet"];
    for e in extra {
        args.push(e);
    }
    ok(run(&args));
    ok(run(&[&"verify", &image, &"--quiet"]));
    ok(run(&[&"restore", &image, &restored, &"--quiet"]));
    assert_eq!(sha256(disk), sha256(&restored), "restored disk differs");
    std::fs::remove_file(&restored).unwrap();
    image
}

/// Asserts `args` fail with exit code `code` and a one-line error containing `needles` and
/// no Rust debug text.
pub fn fails(args: &[&dyn AsRef<std::ffi::OsStr>], code: i32, needles: &[&str]) -> String {
    // Under the address-space limit: a refusal must not need an outsized allocation.
    let (c, out, err) = outcome(&run_limited(args));
    assert_eq!(c, code, "stdout: {out}\nstderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{err:?} lacks {n:?}");
    }
    no_debug_text(&err);
    err
}

/// Fails on Rust `{:?}` output reaching a user.
pub fn no_debug_text(s: &str) {
    for d in [
        "Custom {",
        "kind: ",
        "Os {",
        "(Dir)",
        "(File)",
        "Some(",
        "Full image",
        "\"\\",
    ] {
        assert!(!s.contains(d), "Rust debug text {d:?} in {s:?}");
    }
}

pub const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/third-party");

pub fn hex_sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An entry as strata shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub kind: String,
    pub size: u64,
    pub mtime: i64,
    pub target: Option<String>,
    pub json: serde_json::Value,
}

/// `strata ls IMAGE ROOT -R --json`, keyed by path below ROOT.
pub fn ls_tree(img: &Path, root: &str) -> (BTreeMap<String, Listed>, bool) {
    ls_tree_with(img, root, &[])
}

/// [`ls_tree`] with `extra` arguments (an encrypted image's `--passphrase-file FILE`).
pub fn ls_tree_with(
    img: &Path,
    root: &str,
    extra: &[&std::ffi::OsStr],
) -> (BTreeMap<String, Listed>, bool) {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"ls", &img, &root, &"-R", &"--json"];
    for e in extra {
        args.push(e);
    }
    let o = run(&args);
    let (code, out, err) = outcome(&o);
    assert!(code == 0 || code == 1, "ls failed: {err}");
    let mut map = BTreeMap::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        let path = v["path"].as_str().unwrap();
        let rel = path
            .strip_prefix(root.trim_end_matches('/'))
            .unwrap()
            .to_string();
        map.insert(
            rel,
            Listed {
                kind: v["type"].as_str().unwrap().to_string(),
                size: v["size"].as_u64().unwrap(),
                mtime: v["mtime"].as_i64().unwrap_or(0),
                target: v["target"].as_str().map(str::to_string),
                json: v.clone(),
            },
        );
    }
    (map, code == 0)
}

/// The `user.*` extended attributes of `p` (not following a link).
#[cfg(unix)]
pub fn user_xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 1 << 16];
    // SAFETY: `c` is NUL-terminated and `names` is writable for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(
        n >= 0,
        "{}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    let mut out = BTreeMap::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        if !name.starts_with(b"user.") {
            continue;
        }
        let cname = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 1 << 16];
        // SAFETY: as above; `v` is writable for its length.
        let len =
            unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(
            len >= 0,
            "{}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
        v.truncate(len as usize);
        out.insert(String::from_utf8(name.to_vec()).unwrap(), v);
    }
    out
}

/// Image file of a raw disk, made with `strata create`.
pub fn image_of(raw: &Path, dir: &Path) -> PathBuf {
    let img = dir.join(format!(
        "{}.strata",
        raw.file_name().unwrap().to_string_lossy()
    ));
    ok(run(&[&"create", &"--quiet", &raw, &img]));
    img
}

/// A third-party image decompressed into `dir`.
pub fn third_party(rel: &str, dir: &Path) -> PathBuf {
    let src = Path::new(TESTDATA).join(rel);
    let name = Path::new(rel).file_name().unwrap().to_string_lossy();
    let out = dir.join(name.trim_end_matches(".zst"));
    let file = std::fs::File::open(&src).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the third-party images belong in fixtures/third-party)",
            src.display()
        )
    });
    let mut r = zstd::stream::read::Decoder::new(file).unwrap();
    let mut w = std::fs::File::create(&out).unwrap();
    std::io::copy(&mut r, &mut w).unwrap();
    out
}

/// `strata ls -R --json` and `strata cp -r` of each partition in `parts` give exactly the
/// lines of `manifest` (`fixtures/manifest.sh` format): names, types, sizes, mtimes,
/// sha256 of contents, link targets and streams (`x` lines, as ntfs-3g shows them).
#[cfg(unix)]
pub fn compare_with_manifest(img: &Path, manifest: &str, parts: &[&str]) {
    compare_with_manifest_with(img, manifest, parts, &[]);
}

/// [`compare_with_manifest`] with `extra` arguments given to every strata run (an
/// encrypted image's `--passphrase-file FILE`). The copies stay in `IMG.out`.
#[cfg(unix)]
pub fn compare_with_manifest_with(
    img: &Path,
    manifest: &str,
    parts: &[&str],
    extra: &[&std::ffi::OsStr],
) {
    compare_with_manifest_into(img, &img.with_extension("out"), manifest, parts, extra);
}

/// [`compare_with_manifest_with`] copying into `out` (made here), for an image that is not
/// a local file (an `s3://` URL).
#[cfg(unix)]
pub fn compare_with_manifest_into(
    img: &Path,
    out: &Path,
    manifest: &str,
    parts: &[&str],
    extra: &[&std::ffi::OsStr],
) {
    std::fs::create_dir(out).unwrap();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"cp", &"-r", &"--quiet", &img];
    let roots: Vec<String> = parts.iter().map(|p| format!("/{p}")).collect();
    for r in &roots {
        args.push(r);
    }
    args.push(&out);
    for e in extra {
        args.push(e);
    }
    let (code, _, cp_err) = outcome(&run(&args));
    assert_eq!(code, 0, "{cp_err}");

    for part in parts {
        let (seen, clean) = ls_tree_with(img, &format!("/{part}"), extra);
        assert!(clean, "{part}: ls reported errors");
        let mut got = BTreeSet::new();
        for (path, s) in &seen {
            let copied = out.join(part).join(path.trim_start_matches('/'));
            let (t, size, sha) = match s.kind.as_str() {
                "file" => {
                    let len = std::fs::metadata(&copied).unwrap().len();
                    assert_eq!(len, s.size, "{part}{path}: copied size");
                    ("f", s.size, sha256(&copied))
                }
                "dir" => ("d", 0, "-".to_string()),
                "symlink" => {
                    let target = s.target.clone().expect("symlinks have a target");
                    let on_disk = std::fs::read_link(&copied).unwrap();
                    assert_eq!(
                        on_disk.to_str().unwrap(),
                        target,
                        "{part}{path}: copied link"
                    );
                    ("l", target.len() as u64, hex_sha(target.as_bytes()))
                }
                k => panic!("{part}{path}: unexpected type {k}"),
            };
            assert_eq!(size, s.size, "{part}{path}: size");
            got.insert(format!("{part}\t{path}\t{t}\t{size}\t{}\t{sha}", s.mtime));
            // Streams and user.* attributes are on the copy as user.* attributes, or cp
            // said why not.
            let on_copy = if s.kind == "symlink" {
                BTreeMap::new()
            } else {
                user_xattrs(&copied)
            };
            let mut x: BTreeMap<String, Vec<u8>> = on_copy.clone();
            for st in s.json["streams"].as_array().into_iter().flatten() {
                let name = st["name"].as_str().unwrap();
                let stream = format!("/{part}{path}:{name}");
                let mut cat: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"cat", &img, &stream];
                for e in extra {
                    cat.push(e);
                }
                let o = run(&cat);
                assert!(o.status.success(), "{part}{path}:{name}");
                assert_eq!(o.stdout.len() as u64, st["size"].as_u64().unwrap());
                let key = format!("user.{name}");
                match on_copy.get(&key) {
                    Some(v) => assert!(*v == o.stdout, "{part}{path}: copied stream {name}"),
                    None => assert!(
                        cp_err.contains(&format!("/{part}{path}: stream {name} not kept: ")),
                        "{part}{path}: stream {name} neither copied nor reported: {cp_err}"
                    ),
                }
                x.insert(key, o.stdout);
            }
            for (name, value) in &x {
                got.insert(format!(
                    "{part}\t{path}:{name}\tx\t{}\t{}\t{}",
                    value.len(),
                    s.mtime,
                    hex_sha(value)
                ));
            }
            // Copies keep the modification time, links included.
            {
                let m = std::fs::symlink_metadata(&copied)
                    .unwrap()
                    .modified()
                    .unwrap();
                let secs = m.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
                assert_eq!(secs, s.mtime, "{part}{path}: copied mtime");
            }
        }
        let want: BTreeSet<String> = manifest
            .lines()
            .filter(|l| l.starts_with(&format!("{part}\t")))
            .map(str::to_string)
            .collect();
        let missing: Vec<_> = want.difference(&got).take(20).collect();
        let extra: Vec<_> = got.difference(&want).take(20).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{part}: differs from the manifest\nmissing: {missing:#?}\nextra: {extra:#?}"
        );
    }
}

/// `vol` in a one-partition disk `DIR/disk-POINT.img`, and what the kernel, ntfs-3g and
/// mtools show of that disk (`fixtures/manifest.sh`, kept as `DIR/manifest-POINT.txt`).
pub fn disk_and_manifest(vol: &Path, dir: &Path, point: &str) -> (PathBuf, String) {
    let disk = dir.join(format!("disk-{point}.img"));
    disk_with(vol, &disk);
    let manifest = dir.join(format!("manifest-{point}.txt"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/manifest.sh");
    sh(
        script.to_str().unwrap(),
        &[disk.to_str().unwrap(), manifest.to_str().unwrap()],
    );
    (disk, std::fs::read_to_string(&manifest).unwrap())
}

/// A GPT disk holding `vol` as partition 1 at 1 MiB.
pub fn disk_with(vol: &Path, disk: &Path) {
    let len = std::fs::metadata(vol).unwrap().len();
    let f = std::fs::File::create(disk).unwrap();
    f.set_len(len + (2 << 20)).unwrap();
    drop(f);
    let last = 2048 + len / 512 - 1;
    sh(
        "sgdisk",
        &[
            "-n",
            &format!("1:2048:{last}"),
            "-t",
            "1:0700",
            disk.to_str().unwrap(),
        ],
    );
    let data = std::fs::read(vol).unwrap();
    write_at(disk, 1 << 20, &data);
}

/// An expected entry from a fixtures/third-party listing.
#[derive(Debug)]
pub struct Expected {
    kind: String,
    size: Option<u64>,
    sha: Option<String>,
    target: Option<String>,
}

/// Parses `path<TAB>type<TAB>…size=N…sha256=H…-> target` listings. Lines for `dir/*`
/// (many generated files) give the directory and how many entries it has.
pub fn parse_listing(text: &str) -> (BTreeMap<String, Expected>, BTreeMap<String, usize>) {
    let mut entries = BTreeMap::new();
    let mut wild = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('/')) {
        let f: Vec<&str> = line.split('\t').collect();
        if let Some(dir) = f[0].strip_suffix("/*") {
            let n: usize = f[1].split_whitespace().next().unwrap().parse().unwrap();
            wild.insert(dir.to_string(), n);
            continue;
        }
        let mut e = Expected {
            kind: f[1].to_string(),
            size: None,
            sha: None,
            target: None,
        };
        for x in &f[2..] {
            if let Some(s) = x.strip_prefix("size=") {
                e.size = s.parse().ok();
            } else if let Some(s) = x.strip_prefix("sha256=") {
                e.sha = Some(s.to_string());
            } else if let Some(t) = x.strip_prefix("-> ") {
                e.target = Some(t.to_string());
            }
        }
        entries.insert(f[0].to_string(), e);
    }
    (entries, wild)
}

/// Lists and copies `root` of the image of `raw`; checks it against `listing`. Paths in
/// `skip` (and below them) are not compared.
pub fn check_against_listing(raw: &Path, root: &str, listing: &str, skip: &[&str]) {
    let dir = raw.parent().unwrap();
    let img = image_of(raw, dir);
    let (seen, _) = ls_tree(&img, root);
    let out = dir.join("copy");
    let _ = run(&[&"cp", &"-r", &"-q", &img, &root, &out]);
    let text = std::fs::read_to_string(Path::new(TESTDATA).join(listing)).unwrap();
    let (want, wild) = parse_listing(&text);
    let skipped = |p: &str| {
        skip.iter()
            .any(|s| p == *s || p.starts_with(&format!("{s}/")))
    };
    for (path, e) in &want {
        if skipped(path) {
            continue;
        }
        let s = seen
            .get(path)
            .unwrap_or_else(|| panic!("{listing}: {path} not listed"));
        assert_eq!(s.kind, e.kind, "{listing}: {path}: type");
        if let Some(size) = e.size {
            assert_eq!(s.size, size, "{listing}: {path}: size");
        }
        if let (Some(sha), "file") = (&e.sha, e.kind.as_str()) {
            let copied = out.join(path.trim_start_matches('/'));
            assert_eq!(&sha256(&copied), sha, "{listing}: {path}: contents");
        }
        if let Some(t) = &e.target {
            if !t.ends_with("bytes)") {
                assert_eq!(s.target.as_ref(), Some(t), "{listing}: {path}: target");
            }
        }
    }
    for (d, n) in wild.iter().filter(|(d, _)| !skipped(d)) {
        let count = seen
            .keys()
            .filter(|p| {
                p.strip_prefix(&format!("{d}/"))
                    .is_some_and(|r| !r.contains('/'))
            })
            .count();
        assert_eq!(count, *n, "{listing}: entries in {d}");
    }
    for path in seen.keys() {
        let under_wild = wild.keys().any(|d| path.starts_with(&format!("{d}/")));
        assert!(
            want.contains_key(path) || under_wild || skipped(path),
            "{listing}: {path} listed but not expected"
        );
    }
}

/// (path, type, size, mtime, sha256) of every entry below `root`.
pub fn walk_tree(root: &Path) -> BTreeSet<(String, char, u64, i64, String)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mtime = m
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            if m.is_dir() {
                out.insert((rel, 'd', 0, mtime, String::new()));
                stack.push(p);
            } else {
                out.insert((rel, 'f', m.len(), mtime, sha256(&p)));
            }
        }
    }
    out
}

/// Is something mounted at `dir`?
pub fn is_mounted(dir: &Path) -> bool {
    let abs = std::fs::canonicalize(dir.parent().unwrap())
        .unwrap()
        .join(dir.file_name().unwrap());
    let want = abs.to_str().unwrap().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// The block size `dumpe2fs` (or `dumpe2fs -h`) output gives.
pub fn dumpe2fs_block_size(dump: &str) -> u64 {
    dump.lines()
        .find_map(|l| l.strip_prefix("Block size:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("dumpe2fs gives the block size")
}
