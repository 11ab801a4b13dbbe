//! Helpers shared by the integration tests: run the real `strata` binary in a fresh
//! directory and build test disks.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

/// Runs strata with `args`; returns the output.
pub fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = strata();
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

/// Tests that need root (loop devices, mounts) call this first. Outside CI they are
/// skipped for non-root users with a message; in CI (`CI=true`) a missing privilege
/// is a failure, never a skip.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    #[cfg(unix)]
    let root = unsafe { libc::geteuid() } == 0;
    #[cfg(not(unix))]
    let root = false;
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: needs root, and CI must not skip it"
        );
        eprintln!("{test}: skipped (needs root)");
    }
    root
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
