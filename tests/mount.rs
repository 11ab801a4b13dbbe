//! `strata mount` and `strata unmount`: real FUSE mounts of images, compared with what the
//! kernel's ext4 driver, ntfs-3g and mtools show of the same disk (`fixtures/manifest.sh`
//! lists both the same way: names, types, sizes, mtimes, sha256 of contents and link
//! targets, user.* extended attributes and NTFS streams).
//!
//! Every test needs root, /dev/fuse and fusermount3 (package fuse3); under `CI=true` a
//! missing one is a failure. Every mount is undone by a guard, even when a test fails.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MANIFEST_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/manifest.sh");
const MAKE_DISK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/make-disk.sh");

/// A strata mount; dropping it detaches the mount (`fusermount3 -uz`) and stops a
/// foreground process, so a failing test never leaves a mount behind.
struct Mounted {
    dir: PathBuf,
    child: Option<Child>,
}

impl Mounted {
    /// `strata mount IMAGE DIR EXTRA...` in the default (background) mode.
    fn new(image: &Path, dir: &Path, extra: &[&str]) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"mount", &image, &dir];
        for e in extra {
            args.push(e);
        }
        let m = Mounted {
            dir: dir.to_path_buf(),
            child: None,
        };
        ok(run(&args));
        assert!(is_mounted(dir), "mount returned before the mount was there");
        m
    }

    /// `strata mount --foreground`, its stderr to `log`; waits until the mount is there.
    fn foreground(image: &Path, dir: &Path, log: &Path) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let child = strata()
            .args(["mount", "--foreground"])
            .arg(image)
            .arg(dir)
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let m = Mounted {
            dir: dir.to_path_buf(),
            child: Some(child),
        };
        let start = Instant::now();
        while !is_mounted(dir) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no mount after 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.dir)
                .status();
        }
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Manifest lines (see `fixtures/manifest.sh`) of the tree at `dir`, as partition `part`.
fn walk(part: &str, dir: &Path) -> String {
    sh(
        "bash",
        &[MANIFEST_SH, "--walk", part, dir.to_str().unwrap()],
    ) + "\n"
}

/// The manifest lines of partition `part` only.
fn lines_of(manifest: &str, part: &str) -> String {
    manifest
        .lines()
        .filter(|l| l.split('\t').next() == Some(part))
        .map(|l| format!("{l}\n"))
        .collect()
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

fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.expect_err("must fail").raw_os_error().unwrap_or(0)
}

fn sample() -> (tempfile::TempDir, PathBuf, PathBuf, String) {
    let d = tempdir();
    let disk = sample_disk(d.path());
    let image = d.path().join("sample.strata");
    ok(run(&[&"create", &disk, &image, &"-q"]));
    (d, disk, image, sample_manifest())
}

/// The sample disk (FAT32, NTFS, ext4) mounted: the same tree the kernel, ntfs-3g and
/// mtools show; `tar c` and `cp -a` work; 8 processes read different files at once;
/// every kind of write is refused with EROFS; `--partition` shows one filesystem.
#[test]
fn sample_disk_mount_matches_the_real_filesystems() {
    if !require_fuse("sample_disk_mount_matches_the_real_filesystems") {
        return;
    }
    let (d, _disk, image, manifest) = sample();
    let mnt = d.path().join("mnt");
    let m = Mounted::new(&image, &mnt, &[]);
    let mut seen = String::new();
    for p in ["p1", "p2", "p3"] {
        seen += &walk(p, &mnt.join(p));
    }
    assert_eq!(seen, manifest, "mount differs from the real filesystems");

    // tar reads every entry.
    let tar = Command::new("tar")
        .args(["cf", "-", "-C"])
        .arg(&mnt)
        .arg(".")
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let listed = Command::new("tar")
        .args(["tf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&tar.stdout)?;
            c.wait_with_output()
        })
        .unwrap();
    let entries = String::from_utf8_lossy(&listed.stdout).lines().count();
    // Every manifest line that is not an attribute, the three partition directories and ./
    let want = manifest.lines().filter(|l| !l.contains("\tx\t")).count() + 4;
    assert_eq!(entries, want);

    // cp -a copies the tree with times and links intact.
    let copy = d.path().join("copy");
    sh(
        "cp",
        &[
            "-a",
            mnt.join("p3").to_str().unwrap(),
            copy.to_str().unwrap(),
        ],
    );
    assert_eq!(walk("p3", &copy), lines_of(&manifest, "p3"));

    // 8 processes read 8 different files at once.
    let mut files: Vec<(String, String)> = ["p1", "p2", "p3"]
        .iter()
        .flat_map(|p| {
            files_of(&manifest, p)
                .into_iter()
                .map(move |(f, s)| (format!("{p}{f}"), s))
        })
        .collect();
    files.sort_by_key(|(f, _)| std::fs::metadata(mnt.join(f)).map(|m| m.len()).unwrap_or(0));
    let readers: Vec<_> = files
        .iter()
        .rev()
        .take(8)
        .map(|(f, sha)| {
            let c = Command::new("sha256sum")
                .arg(mnt.join(f))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            (c, sha.clone())
        })
        .collect();
    for (c, sha) in readers {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .split(' ')
                .next()
                .unwrap(),
            sha
        );
    }

    // Writes of every kind are refused with EROFS.
    let file = mnt.join("p3/README.txt");
    assert!(file.exists());
    let erofs = libc::EROFS;
    assert_eq!(errno_of(std::fs::File::create(mnt.join("p3/new"))), erofs);
    assert_eq!(
        errno_of(std::fs::OpenOptions::new().write(true).open(&file)),
        erofs
    );
    assert_eq!(errno_of(std::fs::create_dir(mnt.join("p2/newdir"))), erofs);
    assert_eq!(errno_of(std::fs::remove_file(&file)), erofs);
    assert_eq!(
        errno_of(std::fs::rename(&file, mnt.join("p3/moved"))),
        erofs
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("x", mnt.join("p1/link"))),
        erofs
    );
    let o = Command::new("setfattr")
        .args(["-n", "user.x", "-v", "1"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("Read-only file system"));
    drop(m);
    assert!(!is_mounted(&mnt));

    // One partition as the root.
    let m = Mounted::new(&image, &mnt, &["--partition", "2"]);
    assert_eq!(walk("p2", &mnt), lines_of(&manifest, "p2"));
    drop(m);
}

/// `--raw`: the disk and each partition as files identical to the disk that was imaged,
/// which `losetup -r` and the kernel's ext4 driver open.
#[test]
fn raw_mount_shows_the_disk_and_partitions_as_files() {
    if !require_fuse("raw_mount_shows_the_disk_and_partitions_as_files") {
        return;
    }
    let (d, disk, image, manifest) = sample();
    let mnt = d.path().join("mnt");
    let m = Mounted::new(&image, &mnt, &["--raw"]);
    let names: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["disk.img", "p1.img", "p2.img", "p3.img"]);
    // Dated as the image was made (not 1970), as is the top directory.
    let info: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"info", &"--json", &image]))).unwrap();
    let created = humantime::parse_rfc3339(info["created"].as_str().unwrap()).unwrap();
    for name in names.iter().map(String::as_str).chain([""]) {
        let t = std::fs::metadata(mnt.join(name))
            .unwrap()
            .modified()
            .unwrap();
        let diff = t.duration_since(created).unwrap_or_else(|e| e.duration());
        assert!(diff.as_secs() < 1, "{name}: {t:?}, image made {created:?}");
    }
    assert!(same_content(&mnt.join("disk.img"), &disk));
    let table: serde_json::Value =
        serde_json::from_str(&sh("sfdisk", &["-J", disk.to_str().unwrap()])).unwrap();
    let raw = std::fs::read(&disk).unwrap();
    for (i, p) in table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let start = p["start"].as_u64().unwrap() as usize * 512;
        let size = p["size"].as_u64().unwrap() as usize * 512;
        let got = std::fs::read(mnt.join(format!("p{}.img", i + 1))).unwrap();
        assert!(got == raw[start..start + size], "p{}.img differs", i + 1);
    }
    // The ext4 partition file opens like a disk partition.
    let lo = Loop::attach(&mnt.join("p3.img"), 512, true);
    let inner = d.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    sh(
        "mount",
        &["-o", "ro,noload", &lo.0, inner.to_str().unwrap()],
    );
    let seen = walk("p3", &inner);
    sh("umount", &[inner.to_str().unwrap()]);
    drop(lo);
    assert_eq!(seen, lines_of(&manifest, "p3"));
    drop(m);
}

/// An NTFS and an ext4 volume made by the real tools, with NTFS alternate data streams
/// and symbolic links: the mount shows what ntfs-3g (streams as user.* attributes) and
/// the kernel show of the same disk; hard links share an inode; an absent attribute is
/// ENODATA.
#[test]
fn ntfs_streams_and_ext4_match_ntfs3g_and_the_kernel() {
    if !require_fuse("ntfs_streams_and_ext4_match_ntfs3g_and_the_kernel") {
        return;
    }
    let d = tempdir();
    let disk = d.path().join("d.img");
    sh(
        "bash",
        &[
            MAKE_DISK,
            "--size",
            "112M",
            "--part",
            "fs=ntfs,size=56M,label=WIN,seed=5,files=300,symlinks=1,xattrs=1",
            "--part",
            "fs=ext4,size=rest,label=LNX,seed=6,files=300,symlinks=1",
            disk.to_str().unwrap(),
        ],
    );
    let reference = d.path().join("ref.txt");
    sh(
        "bash",
        &[
            MANIFEST_SH,
            disk.to_str().unwrap(),
            reference.to_str().unwrap(),
        ],
    );
    let reference = std::fs::read_to_string(&reference).unwrap();
    assert!(
        reference.contains("\tx\t"),
        "the test disk should hold NTFS streams"
    );
    let image = d.path().join("d.strata");
    ok(run(&[&"create", &disk, &image, &"-q"]));
    let mnt = d.path().join("mnt");
    let m = Mounted::new(&image, &mnt, &[]);
    let seen = walk("p1", &mnt.join("p1")) + &walk("p2", &mnt.join("p2"));
    assert_eq!(seen, reference);

    // A missing attribute is ENODATA, not an error of the mount.
    let f = mnt.join("p1").join(
        files_of(&reference, "p1")
            .keys()
            .next()
            .unwrap()
            .trim_start_matches('/'),
    );
    let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
    let mut buf = [0u8; 16];
    // SAFETY: valid path, name and buffer.
    let r = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"user.no such stream".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(r, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENODATA)
    );

    // Inode numbers are stable: the same file gives the same inode after the kernel
    // forgot it (remount), and no two names of different files share one.
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(&f).unwrap().ino();
    drop(m);
    let m = Mounted::new(&image, &mnt, &[]);
    assert_eq!(std::fs::metadata(&f).unwrap().ino(), ino);
    let mut inodes = BTreeMap::new();
    for p in ["p1", "p2"] {
        for path in files_of(&reference, p).keys() {
            let md =
                std::fs::symlink_metadata(mnt.join(p).join(path.trim_start_matches('/'))).unwrap();
            if md.nlink() == 1 {
                assert!(inodes.insert(md.ino(), path.clone()).is_none(), "{path}");
            }
        }
    }
    drop(m);
}

/// A damaged chunk: reading the file it holds fails with EIO (logged once), every other
/// file reads right, the mount keeps working.
#[test]
fn corrupt_chunk_fails_only_its_file() {
    if !require_fuse("corrupt_chunk_fails_only_its_file") {
        return;
    }
    let (d, disk, image, manifest) = sample();
    // One block per chunk, so that the damage hits exactly one file's block.
    std::fs::remove_file(&image).unwrap();
    ok(run(&[
        &"create",
        &disk,
        &image,
        &"-q",
        &"--chunk-size",
        &"4096",
    ]));
    // The victims: an NTFS and an ext4 file whose first 4 KiB block is found once on
    // the disk.
    let raw = std::fs::read(&disk).unwrap();
    let blocks: Vec<&[u8]> = raw.chunks(4096).collect();
    let victim_of = |part: &str| {
        files_of(&manifest, part)
            .into_keys()
            .find_map(|path| {
                let o = run(&[&"cat", &image, &format!("/{part}{path}")]);
                let data = o.stdout;
                if data.len() < 8192 {
                    return None;
                }
                let hits: Vec<usize> = (0..blocks.len())
                    .filter(|&i| blocks[i] == &data[..4096])
                    .collect();
                (hits.len() == 1).then(|| (format!("{part}{path}"), hits[0] as u64))
            })
            .unwrap_or_else(|| panic!("a file of {part} with a unique first block"))
    };
    let victims = [victim_of("p2"), victim_of("p3")];
    damage_block_chunks(&image, &victims.iter().map(|v| v.1).collect::<Vec<_>>());

    let mnt = d.path().join("mnt");
    let log = d.path().join("mount.log");
    let m = Mounted::foreground(&image, &mnt, &log);
    for (victim, _) in &victims {
        let vpath = mnt.join(victim);
        for _ in 0..2 {
            let mut s = String::new();
            let r = std::fs::File::open(&vpath).and_then(|mut f| {
                let mut b = Vec::new();
                f.read_to_end(&mut b).map(|_| s = format!("{}", b.len()))
            });
            assert_eq!(errno_of(r), libc::EIO, "{victim} read {s} bytes");
        }
    }
    // Every other file reads right.
    for p in ["p1", "p2", "p3"] {
        for (path, sha) in files_of(&manifest, p) {
            if victims.iter().any(|(v, _)| *v == format!("{p}{path}")) {
                continue;
            }
            let f = mnt.join(p).join(path.trim_start_matches('/'));
            let got = std::panic::catch_unwind(|| sha256(&f));
            assert_eq!(
                got.ok(),
                Some(sha),
                "{p}{path} (damaged: {victims:?}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }
    drop(m);
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.matches("corrupt").count(), 2, "each logged once: {log}");
}

/// Unmounting while a file is open detaches the mount without hanging; the open file
/// still reads. A killed mount process leaves a mount `strata unmount` clears. A
/// foreground mount unmounts on SIGTERM.
#[test]
fn unmount_busy_killed_and_foreground() {
    if !require_fuse("unmount_busy_killed_and_foreground") {
        return;
    }
    let (d, _disk, image, manifest) = sample();
    let mnt = d.path().join("mnt");
    let (path, sha) = files_of(&manifest, "p3").into_iter().next().unwrap();

    // Busy: a file held open.
    let m = Mounted::new(&image, &mnt, &[]);
    let mut held = std::fs::File::open(mnt.join("p3").join(path.trim_start_matches('/'))).unwrap();
    let start = Instant::now();
    ok(run(&[&"unmount", &mnt]));
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(!is_mounted(&mnt));
    let mut data = Vec::new();
    held.read_to_end(&mut data).unwrap();
    assert_eq!(
        <sha2::Sha256 as sha2::Digest>::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        sha
    );
    drop(held);
    drop(m);

    // Not mounted, or not a strata mount: a clear error.
    let (code, _, err) = outcome(&run(&[&"unmount", &mnt]));
    assert_eq!(code, 1);
    assert!(err.contains("is not mounted"), "{err}");

    // Killed: the dead mount is cleared by strata unmount.
    let m = Mounted::new(&image, &mnt, &[]);
    let pids = sh(
        "pgrep",
        &["-f", &format!("strata mount {}", image.display())],
    );
    for pid in pids.lines() {
        sh("kill", &["-9", pid]);
    }
    let start = Instant::now();
    while std::fs::metadata(mnt.join("p1")).is_ok() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(is_mounted(&mnt));
    ok(run(&[&"unmount", &mnt]));
    assert!(!is_mounted(&mnt));
    drop(m);

    // Foreground: SIGTERM unmounts and the process exits 0.
    let log = d.path().join("fg.log");
    let mut m = Mounted::foreground(&image, &mnt, &log);
    assert!(mnt.join("p2").is_dir());
    let mut child = m.child.take().unwrap();
    sh("kill", &["-TERM", &child.id().to_string()]);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "foreground mount did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(!is_mounted(&mnt));
    drop(m);
}

/// `st_blocks` of an ext4 mount is what the kernel reports for the same filesystem: holes,
/// unwritten extents, extent-tree blocks and attribute blocks included.
#[test]
fn ext4_block_counts_match_the_kernel() {
    if !require_fuse("ext4_block_counts_match_the_kernel") {
        return;
    }
    let d = tempdir();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("small"), b"x").unwrap();
    std::fs::write(src.join("dir/text"), text(300_000, 3)).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    // A file with holes around and between data, and one that is only a hole.
    let sparse = src.join("sparse");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    write_at(&sparse, 5 << 20, &noise(8192, 1));
    write_at(&sparse, 30 << 20, &noise(100_000, 2));
    std::fs::File::create(src.join("hole"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    // Fragmented: many small extents, so an extent tree block is counted too.
    let frag = src.join("frag");
    std::fs::File::create(&frag)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    for k in 0..200u64 {
        write_at(&frag, k * 32768, &noise(4096, k));
    }
    let fs = d.path().join("fs.img");
    sh(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-d",
            src.to_str().unwrap(),
            fs.to_str().unwrap(),
            "128M",
        ],
    );
    let kernel = d.path().join("kernel");
    std::fs::create_dir(&kernel).unwrap();
    let lo = Loop::attach(&fs, 512, true);
    sh("mount", &["-o", "ro", &lo.0, kernel.to_str().unwrap()]);
    let want = blocks_under(&kernel);
    sh("umount", &[kernel.to_str().unwrap()]);
    drop(lo);
    assert!(want.len() >= 7, "{want:?}");
    assert!(want["sparse"] < (200 << 10) / 512, "{want:?}");
    assert!(want["hole"] == 0, "{want:?}");

    assert_eq!(mounted_blocks(&fs, d.path()), want);
}

/// `st_blocks` of every entry under `dir` (not `dir` itself), by path.
fn blocks_under(dir: &Path) -> BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                todo.push(p.clone());
            }
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            out.insert(rel, md.blocks());
        }
    }
    out
}

/// `st_blocks` under the strata mount of an image (`DIR/vol.strata`) of the bare volume
/// `vol` (shown as the root).
fn mounted_blocks(vol: &Path, dir: &Path) -> BTreeMap<String, u64> {
    let image = dir.join("vol.strata");
    ok(run(&[&"create", &vol, &image, &"-q"]));
    let mnt = dir.join("strata-mnt");
    let m = Mounted::new(&image, &mnt, &[]);
    let seen = blocks_under(&mnt);
    drop(m);
    seen
}

const NTFS_BLOCKS: &str = r#"
import os
with open('sparse.bin', 'wb') as f:
    f.truncate(10 << 20); f.seek(5 << 20); f.write(os.urandom(4096))
os.mkdir('comp')
# FILE_ATTRIBUTE_COMPRESSED on the directory: ntfs-3g compresses new files (LZNT1).
os.setxattr('comp', 'system.ntfs_attrib_be', (0x800).to_bytes(4, 'big'))
open('comp/text.txt', 'w').write(''.join('line %d of a compressible file\n' % i for i in range(20000)))
open('comp/random.bin', 'wb').write(os.urandom(100000))
with open('comp/mixed.bin', 'wb') as f:
    f.write(b'A' * 70000); f.write(bytes(140000)); f.write(os.urandom(5000)); f.write(b'end')
with open('comp/sparse.bin', 'wb') as f:
    f.truncate(3 << 20); f.seek(1 << 20); f.write(b'island')
open('comp/small.txt', 'w').write('resident and compressed\n')
# So many data runs that the attribute continues in other file records.
with open('comp/fragmented.bin', 'wb') as f:
    for i in range(200):
        f.write((b'unit %d compressible ' % i) * 3000); f.write(os.urandom(8000))
open('small.txt', 'w').write('resident\n' * 3)
open('normal.bin', 'wb').write(os.urandom(50001))
open('empty', 'w').close()
os.symlink('normal.bin', 'link')
os.mkdir('many')
for i in range(60):
    open('many/file number %03d' % i, 'w').write(str(i))
os.mkdir('few')
open('few/one', 'w').write('1')
"#;

/// `st_blocks` of an NTFS volume filled through ntfs-3g (a sparse file, LZNT1-compressed
/// files, one of them spread over several file records, resident and ordinary files, an
/// empty file, a symbolic link, directories with and without an index allocation) are
/// those ntfs-3g gives of the same volume.
#[test]
fn ntfs_st_blocks_match_ntfs3g() {
    if !require_fuse("ntfs_st_blocks_match_ntfs3g") {
        return;
    }
    let d = tempdir();
    let vol = small_ntfs(d.path());
    ntfs3g_fill(&vol, NTFS_BLOCKS);
    let info = sh(
        "ntfsinfo",
        &["-F", "/comp/fragmented.bin", vol.to_str().unwrap()],
    );
    assert!(info.contains("$ATTRIBUTE_LIST"), "{info}");
    let mnt = d.path().join("ntfs-3g");
    std::fs::create_dir(&mnt).unwrap();
    sh(
        "ntfs-3g",
        &["-o", "ro", vol.to_str().unwrap(), mnt.to_str().unwrap()],
    );
    let want = std::panic::catch_unwind(|| blocks_under(&mnt));
    sh("umount", &[mnt.to_str().unwrap()]);
    let want = want.unwrap();
    // The volume holds what the comparison is about.
    assert!(want["sparse.bin"] * 512 < 1 << 20, "{want:?}");
    assert!(want["comp/text.txt"] * 512 < 200_000, "{want:?}");
    assert!(want["comp/fragmented.bin"] * 512 < 10 << 20, "{want:?}");
    assert_eq!(want["few"], 0, "{want:?}");
    assert!(want["many"] > 0, "{want:?}");
    assert_eq!(mounted_blocks(&vol, d.path()), want);
    // `ls --json` gives the same bytes.
    let listed: BTreeMap<String, u64> = ok(run(&[
        &"ls",
        &"-R",
        &"--json",
        &d.path().join("vol.strata"),
    ]))
    .lines()
    .map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let path = v["path"]
            .as_str()
            .unwrap()
            .trim_start_matches('/')
            .to_string();
        (path, v["allocated"].as_u64().unwrap().div_ceil(512))
    })
    .collect();
    assert_eq!(listed, want);
}

/// `st_blocks` of files on a FAT volume are their sizes in whole clusters, as mtools
/// counts them (`mdu`).
#[test]
fn fat_st_blocks_are_whole_clusters_as_mtools_counts_them() {
    if !require_fuse("fat_st_blocks_are_whole_clusters_as_mtools_counts_them") {
        return;
    }
    let d = tempdir();
    let vol = d.path().join("vol.fat");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let v = vol.to_str().unwrap();
    sh("mkfs.vfat", &["-S", "512", "-s", "8", v]);
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for n in [0, 1, 511, 4095, 4096, 4097, 100_000] {
        std::fs::write(src.join(format!("f{n}")), noise(n, n as u64)).unwrap();
    }
    std::fs::write(src.join("sub/inner"), noise(9000, 1)).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        sh(
            "mcopy",
            &["-s", "-i", v, e.unwrap().path().to_str().unwrap(), "::/"],
        );
    }
    let boot = std::fs::read(&vol).unwrap();
    let cluster = u64::from(u16::from_le_bytes([boot[11], boot[12]])) * u64::from(boot[13]);
    // "::/path clusters" for every file (directories count what they hold).
    let want: BTreeMap<String, u64> = sh("mdu", &["-a", "-i", v, "::/"])
        .lines()
        .filter_map(|l| {
            let (path, n) = l.rsplit_once(' ')?;
            let path = path.strip_prefix("::/")?;
            src.join(path)
                .is_file()
                .then(|| (path.to_string(), n.parse::<u64>().unwrap() * cluster / 512))
        })
        .collect();
    assert_eq!(want.len(), 8, "{want:?}");
    let seen: BTreeMap<String, u64> = mounted_blocks(&vol, d.path())
        .into_iter()
        .filter(|(p, _)| want.contains_key(p))
        .collect();
    assert_eq!(seen, want);
}

/// `st_blocks` of files and directories on an exFAT volume are those exfat-fuse gives.
#[test]
fn exfat_st_blocks_match_exfat_fuse() {
    if !require_fuse("exfat_st_blocks_match_exfat_fuse") {
        return;
    }
    let d = tempdir();
    let vol = d.path().join("vol.exfat");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    sh("mkfs.exfat", &[vol.to_str().unwrap()]);
    let mnt = d.path().join("exfat-fuse");
    std::fs::create_dir(&mnt).unwrap();
    let dev = Loop::attach(&vol, 512, false);
    sh("mount.exfat-fuse", &[&dev.0, mnt.to_str().unwrap()]);
    let want = std::panic::catch_unwind(|| {
        python(
            "import os\n\
             for n in (0, 1, 4095, 4097, 100000):\n    open('f%d' % n, 'wb').write(os.urandom(n))\n\
             os.mkdir('many')\n\
             for i in range(150):\n    open('many/file %03d' % i, 'w').write(str(i))\n\
             os.mkdir('empty dir')",
            &mnt,
            &[],
        );
        blocks_under(&mnt)
    });
    sh("umount", &[mnt.to_str().unwrap()]);
    drop(dev);
    let want = want.unwrap();
    assert!(want["many"] > want["empty dir"], "{want:?}");
    assert_eq!(mounted_blocks(&vol, d.path()), want);
}

/// A disk with 4096-byte sectors and an MBR (made on a loop device with 4096-byte sectors,
/// as such disks are partitioned), imaged from the raw file, which does not say its sector
/// size: `info`, `ls`, a mount and a `--raw` mount find the same partitions at the same
/// places, and the mount shows what ntfs-3g and the kernel show of the disk. (`ls` and
/// mounts read the table with 512-byte sectors once and found no filesystem.)
#[test]
fn mbr_with_4096_byte_sectors_info_ls_and_mount_agree() {
    if !require_fuse("mbr_with_4096_byte_sectors_info_ls_and_mount_agree") {
        return;
    }
    let d = tempdir();
    let disk = d.path().join("mbr4k.img");
    sh(
        MAKE_DISK,
        &[
            "--table",
            "mbr",
            "--sector-size",
            "4096",
            "--size",
            "48M",
            "--part",
            "fs=ntfs,size=20M,label=M4NTFS,seed=61,files=30",
            "--part",
            "fs=ext4,size=rest,label=M4EXT4,seed=62,files=30,symlinks=1",
            disk.to_str().unwrap(),
        ],
    );
    let manifest_file = d.path().join("manifest.txt");
    sh(
        "bash",
        &[
            MANIFEST_SH,
            "--sector-size",
            "4096",
            disk.to_str().unwrap(),
            manifest_file.to_str().unwrap(),
        ],
    );
    let manifest = std::fs::read_to_string(&manifest_file).unwrap();
    let image = d.path().join("mbr4k.strata");
    ok(run(&[&"create", &disk, &image, &"-q"]));

    // info: the table as create mapped it.
    let info: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"info", &image, &"--json"]))).unwrap();
    let layout = &info["layout"];
    assert_eq!(layout["table"]["sector_size"], 4096, "{info}");
    let parts: Vec<(u64, u64, u64, String)> = layout["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["number"].as_u64().unwrap(),
                p["start"].as_u64().unwrap(),
                p["len"].as_u64().unwrap(),
                p["label"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(parts.len(), 2, "{info}");
    assert_eq!((parts[0].0, parts[0].3.as_str()), (1, "M4NTFS"));
    assert_eq!((parts[1].0, parts[1].3.as_str()), (2, "M4EXT4"));
    // 4096-byte sectors: the first partition starts at sector 256 (1 MiB), not sector 2048.
    assert_eq!(parts[0].1, 1 << 20);

    // ls: the same partitions, with their filesystems and labels.
    let ls = ok(run(&[&"ls", &image, &"--json"]));
    let top: Vec<(u64, String, String)> = ls
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            (
                v["partition"].as_u64().unwrap(),
                v["filesystem"].as_str().unwrap().to_string(),
                v["label"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        top,
        [
            (1, "NTFS".to_string(), "M4NTFS".to_string()),
            (2, "ext4".to_string(), "M4EXT4".to_string())
        ],
        "{ls}"
    );

    // A mount: the files ntfs-3g and the kernel show.
    let mnt = d.path().join("mnt");
    let m = Mounted::new(&image, &mnt, &[]);
    for p in ["p1", "p2"] {
        assert!(lines_of(&manifest, p).lines().count() > 20, "{p}");
        assert_eq!(walk(p, &mnt.join(p)), lines_of(&manifest, p), "{p}");
    }
    drop(m);
    // --partition 2 alone.
    let m = Mounted::new(&image, &mnt, &["--partition", "2"]);
    assert_eq!(walk("p2", &mnt), lines_of(&manifest, "p2"));
    drop(m);

    // --raw: each partition file holds the disk's bytes where info says it lies.
    let m = Mounted::new(&image, &mnt, &["--raw"]);
    let raw = std::fs::read(&disk).unwrap();
    for (n, start, len, _) in &parts {
        let got = std::fs::read(mnt.join(format!("p{n}.img"))).unwrap();
        let (a, b) = (*start as usize, (start + len) as usize);
        assert!(
            got == raw[a..b],
            "p{n}.img differs from the disk at {start}+{len}"
        );
    }
    drop(m);
}
