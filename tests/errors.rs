//! Errors that say what happened: each kind as a filesystem gives it, the exit code and
//! message of the CLI, the errno a FUSE mount answers and the NTSTATUS the Dokan front-end
//! answers (its mapping is portable: `platform::dokan::names::status_of`).
//!
//! - A path through a file is `NotADirectory`, contents of a directory `IsADirectory`, on
//!   every filesystem of the sample disk (FAT, NTFS, ext4).
//! - Damaged metadata names the filesystem, what is damaged and its byte offset on the
//!   volume, exits 3, and a mount answers EUCLEAN, as the kernel's ext4 does for the same
//!   damage; ntfs-3g refuses the damaged NTFS record too.
//! - A feature strata does not decode exits 1 naming it, and a mount answers EOPNOTSUPP.
//!
//! Needs e2fsprogs and ntfs-3g's tools; the mount test needs root, /dev/fuse and
//! fusermount3; under `CI=true` a missing one is a failure.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::path::{Path, PathBuf};
use strata::platform::dokan::names::{status, status_of};
use strata::vfs::{Case, Target};
use strata::Error;

/// The first file and the first directory of partition `part` in the sample's manifest.
fn file_and_dir(manifest: &str, part: &str) -> (String, String) {
    let first = |kind: &str| {
        manifest
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|f| f[0] == part && f[2] == kind)
            .map(|f| f[1].to_string())
            .unwrap_or_else(|| panic!("{part}: no {kind} in the manifest"))
    };
    (first("f"), first("d"))
}

/// A path through a file and the contents of a directory are refused with their own
/// kinds by every filesystem (NTFS and FAT said `Invalid`, which Dokan answered with
/// ACCESS_DENIED, and the path through a file was `NotFound`).
#[test]
fn not_a_directory_and_is_a_directory_on_every_filesystem() {
    let dir = tempdir();
    let disk = sample_disk(dir.path());
    let img = dir.path().join("sample.strata");
    ok(run(&[&"create", &"-q", &disk, &img]));
    let vfs = strata::point::open_vfs(&img, &Default::default(), 64 << 20).unwrap();
    let manifest = sample_manifest();
    for part in ["p1", "p2", "p3"] {
        let (file, dir) = file_and_dir(&manifest, part);
        let node = |path: &str| match vfs.resolve(path).unwrap() {
            Target::Node { mount, node } => (mount, node),
            Target::Top => panic!("{path}: the top"),
        };
        let (mount, f) = node(&format!("/{part}{file}"));
        let (_, d) = node(&format!("/{part}{dir}"));
        let fs = vfs.fs(mount).unwrap();
        let kind = fs.kind().name();

        let through = format!("/{part}{file}/x");
        let e = vfs.resolve(&through).err().expect("a path through a file");
        assert!(matches!(e, Error::NotADirectory(_)), "{through}: {e:?}");
        assert!(e.to_string().contains("is not a directory"), "{e}");
        assert_eq!(status_of(&e), status::NOT_A_DIRECTORY, "{through}");

        let e = fs
            .lookup(f, "x", Case::Exact)
            .expect_err("lookup in a file");
        assert!(matches!(e, Error::NotADirectory(_)), "{kind} lookup: {e:?}");
        let e = fs.read_dir(f).expect_err("listing of a file");
        assert!(
            matches!(e, Error::NotADirectory(_)),
            "{kind} read_dir: {e:?}"
        );

        let e = fs
            .read_at(d, "", 0, &mut [0u8; 16])
            .expect_err("contents of a directory");
        assert!(matches!(e, Error::IsADirectory(_)), "{kind} read_at: {e:?}");
        assert_eq!(status_of(&e), status::FILE_IS_A_DIRECTORY, "{kind}");

        let missing = format!("/{part}{dir}/no such name");
        let e = vfs.resolve(&missing).err().expect("a missing name");
        assert!(matches!(e, Error::NotFound(_)), "{missing}: {e:?}");
        assert_eq!(status_of(&e), status::OBJECT_NAME_NOT_FOUND);

        // The CLI: one line in words, exit 1.
        fails(
            &[&"cat", &img, &format!("/{part}{dir}")],
            1,
            &["a directory"],
        );
        fails(&[&"ls", &img, &through], 1, &["is not a directory"]);
    }
}

/// An 8 MiB ext4 volume file made by `mkfs.ext4 -d tree` (without metadata checksums, so
/// that the kernel judges the edited structure, not an inode checksum).
fn ext4_of(dir: &Path, tree: &Path) -> PathBuf {
    let vol = dir.join("vol.ext4");
    sh(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-O",
            "^metadata_csum",
            "-d",
            tree.to_str().unwrap(),
            vol.to_str().unwrap(),
            "8M",
        ],
    );
    vol
}

/// The inode number of `path` in ext volume `vol` and its byte offset, as debugfs places it.
fn inode_at(vol: &Path, path: &str) -> (u64, u64) {
    let out = sh(
        "debugfs",
        &["-R", &format!("imap {path}"), vol.to_str().unwrap()],
    );
    // "Inode 12 is part of block group 0\n\tlocated at block 34, offset 0x0b00"
    let ino: u64 = out
        .strip_prefix("Inode ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("debugfs imap: {out}"));
    let at = out
        .split("located at block ")
        .nth(1)
        .unwrap_or_else(|| panic!("debugfs imap: {out}"));
    let (block, off) = at.trim().split_once(", offset 0x").unwrap();
    let block: u64 = block.parse().unwrap();
    let off = u64::from_str_radix(off.trim(), 16).unwrap();
    (ino, block * 4096 + off)
}

/// An ext4 volume with `frag.bin` (extents), `plain.txt` and `secret.txt`, and what each
/// holds; `frag.bin`'s extent header and `secret.txt`'s flags are edited by the tests.
struct Ext {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    vol: PathBuf,
    /// Inode number and byte offset of `frag.bin`'s and `secret.txt`'s inodes.
    frag: (u64, u64),
    secret: (u64, u64),
}

fn ext_volume() -> Ext {
    let d = tempdir();
    let dir = d.path().to_path_buf();
    let tree = dir.join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("frag.bin"), vec![b'f'; 20_000]).unwrap();
    std::fs::write(tree.join("plain.txt"), b"plain\n").unwrap();
    std::fs::write(tree.join("secret.txt"), b"secret\n").unwrap();
    let vol = ext4_of(&dir, &tree);
    let frag = inode_at(&vol, "/frag.bin");
    let secret = inode_at(&vol, "/secret.txt");
    Ext {
        _dir: d,
        dir,
        vol,
        frag,
        secret,
    }
}

/// Zeroes the extent header magic of `frag.bin` (in the inode's `i_block`, 0x28), as a
/// torn or stray write would: the kernel refuses the file ("Structure needs cleaning").
fn damage_extent_header(e: &Ext) -> u64 {
    let at = e.frag.1 + 0x28;
    let mut magic = [0u8; 2];
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(&e.vol).unwrap();
    f.seek(std::io::SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut magic).unwrap();
    assert_eq!(
        magic,
        [0x0A, 0xF3],
        "the extent header is where debugfs says"
    );
    write_at(&e.vol, at, &[0, 0]);
    at
}

/// Sets the fscrypt flag (EXT4_ENCRYPT_FL) on `secret.txt`'s inode. No Linux tool writes
/// an encrypted file without a key set up, so the flag is edited in: strata must refuse
/// the contents (they would be ciphertext) and say why.
fn mark_encrypted(e: &Ext) {
    let at = e.secret.1 + 0x20;
    let bytes = std::fs::read(&e.vol).unwrap();
    let flags = u32::from_le_bytes(bytes[at as usize..at as usize + 4].try_into().unwrap());
    write_at(&e.vol, at, &(flags | 0x800).to_le_bytes());
}

/// Damaged ext metadata: `cat` exits 3 with one line naming the filesystem, the inode, what
/// is wrong and the byte offset of the damaged bytes; the undamaged file still reads.
#[test]
fn damaged_ext_metadata_names_the_offset_and_exits_3() {
    let e = ext_volume();
    let at = damage_extent_header(&e);
    let img = e.dir.join("damaged.strata");
    ok(run(&[&"create", &"-q", &e.vol, &img]));
    let err = fails(
        &[&"cat", &img, &"/frag.bin"],
        3,
        &[&format!(
            "ext: damaged metadata at byte {at}: inode {}: extent node: no magic",
            e.frag.0
        )],
    );
    assert!(err.starts_with("strata: error: "), "{err}");
    let o = run(&[&"cat", &img, &"/plain.txt"]);
    assert_eq!(o.stdout, b"plain\n");
    // Through the library: the kind and its offset.
    let vfs = strata::point::open_vfs(&img, &Default::default(), 16 << 20).unwrap();
    let Target::Node { mount, node } = vfs.resolve("/frag.bin").unwrap() else {
        panic!("a file")
    };
    let got = vfs
        .fs(mount)
        .unwrap()
        .read_at(node, "", 0, &mut [0u8; 4096]);
    match got {
        Err(Error::DamagedMetadata { fs, offset, .. }) => {
            assert_eq!((fs.as_str(), offset), ("ext", Some(at)));
        }
        other => panic!("{other:?}"),
    }
}

/// A file record whose signature is "BAAD" (what chkdsk writes over a record it found
/// damaged; edited in here, as no Linux tool writes it): `cat` exits 3 naming the
/// record's byte offset on the volume, and ntfs-3g's `ntfscat` refuses the file too.
#[test]
fn damaged_ntfs_record_names_the_offset_and_exits_3() {
    let dir = tempdir();
    let vol = small_ntfs(dir.path());
    let src = dir.path().join("victim.txt");
    std::fs::write(&src, b"victim\n").unwrap();
    sh(
        "ntfscp",
        &[
            "-q",
            vol.to_str().unwrap(),
            src.to_str().unwrap(),
            "victim.txt",
        ],
    );
    // The victim's record: a FILE record (1 KiB, on a 1 KiB boundary) holding its name.
    let mut bytes = std::fs::read(&vol).unwrap();
    let name: Vec<u8> = "victim.txt"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let rec = (0..bytes.len() / 1024)
        .map(|i| i * 1024)
        .find(|&at| {
            bytes[at..at + 4] == *b"FILE"
                && bytes[at..at + 1024].windows(name.len()).any(|w| w == name)
        })
        .expect("the record of victim.txt");
    let plain = sh("ntfscat", &[vol.to_str().unwrap(), "victim.txt"]);
    assert_eq!(plain, "victim");
    bytes[rec..rec + 4].copy_from_slice(b"BAAD");
    std::fs::write(&vol, &bytes).unwrap();
    let by_ntfs3g = std::process::Command::new("ntfscat")
        .args([vol.to_str().unwrap(), "victim.txt"])
        .output()
        .unwrap();
    assert!(
        !by_ntfs3g.status.success(),
        "ntfscat read the damaged record"
    );

    let img = dir.path().join("vol.strata");
    ok(run(&[&"create", &"-q", &vol, &img]));
    let err = fails(
        &[&"cat", &img, &"/victim.txt"],
        3,
        &[&format!(
            "NTFS: damaged metadata at byte {rec}: file record has signature \"BAAD\" \
             instead of \"FILE\""
        )],
    );
    assert!(err.starts_with("strata: error: "), "{err}");
}

/// A feature strata does not decode (an fscrypt-encrypted ext file) exits 1 naming it.
#[test]
fn unsupported_feature_is_named_and_exits_1() {
    let e = ext_volume();
    mark_encrypted(&e);
    let img = e.dir.join("encrypted.strata");
    ok(run(&[&"create", &"-q", &e.vol, &img]));
    fails(
        &[&"cat", &img, &"/secret.txt"],
        1,
        &[
            &format!("inode {} is encrypted (fscrypt)", e.secret.0),
            "without its key",
        ],
    );
    let vfs = strata::point::open_vfs(&img, &Default::default(), 16 << 20).unwrap();
    let Target::Node { mount, node } = vfs.resolve("/secret.txt").unwrap() else {
        panic!("a file")
    };
    let got = vfs.fs(mount).unwrap().read_at(node, "", 0, &mut [0u8; 64]);
    let e = got.expect_err("encrypted");
    assert!(matches!(e, Error::UnsupportedFeature(_)), "{e:?}");
    assert_eq!(status_of(&e), status::NOT_SUPPORTED);
}

/// Unmounts a FUSE mount when dropped, even when the test fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.0)
            .status();
    }
}

/// The errno of a failed call.
fn errno_of<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => panic!("must fail"),
        Err(e) => e.raw_os_error().unwrap_or(0),
    }
}

/// What a FUSE mount answers: damaged metadata EUCLEAN (the kernel's ext4 answers the
/// same for the same damaged volume; it was EIO), an encrypted file EOPNOTSUPP (it was
/// EIO), a directory's contents EISDIR, a path through a file ENOTDIR, a missing name
/// ENOENT; the undamaged file reads.
#[test]
fn fuse_answers_an_errno_per_kind() {
    if !require_fuse("fuse_answers_an_errno_per_kind") {
        return;
    }
    let e = ext_volume();
    damage_extent_header(&e);
    mark_encrypted(&e);

    // The kernel's ext4 on the same bytes.
    let kmnt = e.dir.join("kernel");
    std::fs::create_dir(&kmnt).unwrap();
    let lo = Loop::attach(&e.vol, 512, true);
    sh("mount", &["-o", "ro,noload", &lo.0, kmnt.to_str().unwrap()]);
    let kernel = errno_of(std::fs::read(kmnt.join("frag.bin")));
    let kernel_plain = std::fs::read(kmnt.join("plain.txt"));
    sh("umount", &[kmnt.to_str().unwrap()]);
    drop(lo);
    assert_eq!(kernel, libc::EUCLEAN, "the kernel's answer");
    assert_eq!(kernel_plain.unwrap(), b"plain\n");

    let img = e.dir.join("vol.strata");
    ok(run(&[&"create", &"-q", &e.vol, &img]));
    let mnt = e.dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    ok(run(&[&"mount", &img, &mnt]));
    let _m = Unmount(mnt.clone());
    assert_eq!(
        errno_of(std::fs::read(mnt.join("frag.bin"))),
        kernel,
        "damaged metadata"
    );
    assert_eq!(
        errno_of(std::fs::read(mnt.join("secret.txt"))),
        libc::EOPNOTSUPP,
        "encrypted"
    );
    assert_eq!(std::fs::read(mnt.join("plain.txt")).unwrap(), b"plain\n");
    // These two the kernel answers from the file types the mount reports.
    assert_eq!(errno_of(std::fs::read(&mnt)), libc::EISDIR);
    assert_eq!(
        errno_of(std::fs::read(mnt.join("plain.txt/x"))),
        libc::ENOTDIR
    );
    assert_eq!(errno_of(std::fs::read(mnt.join("nothing"))), libc::ENOENT);
}
