//! ext2/3/4 read by strata against the kernel's ext4 driver (a read-only loop mount) and
//! e2fsprogs: damaged extent trees, symlinks, `ea_inode`, journals that need recovery,
//! unwritten extents, inline data and casefolded directories; volumes made by `mkfs -d`
//! against the kernel's mount, and the third-party test disks against their debugfs
//! listings (`fixtures/third-party`). Tests that mount need root.
#![cfg(unix)]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A volume file `name` of `size` made by `mkfs.ext4 ARGS -d tree`.
fn mkfs(dir: &Path, name: &str, tree: &Path, args: &[&str], size: &str) -> PathBuf {
    let vol = dir.join(name);
    let mut a = vec!["-q", "-F"];
    a.extend_from_slice(args);
    a.extend(["-d", tree.to_str().unwrap(), vol.to_str().unwrap(), size]);
    sh("mkfs.ext4", &a);
    vol
}

/// Every entry below `root` (not following links): path -> "d", "f SIZE SHA256" or
/// "l TARGET", and with `xattrs` the `user.*` attributes (sha256 of each value).
const WALK: &str = r#"
import os, sys, json, hashlib
root, xattrs = sys.argv[1], sys.argv[2] == 'x'
out = {}
for top, dirs, files in os.walk(root):
    for n in dirs + files:
        p = os.path.join(top, n)
        rel = p[len(root):]
        if rel.startswith('/lost+found'):
            continue
        if os.path.islink(p):
            out[rel] = 'l ' + os.readlink(p)
            continue
        if os.path.isdir(p):
            v = 'd'
        else:
            h = hashlib.sha256()
            with open(p, 'rb') as f:
                for chunk in iter(lambda: f.read(1 << 20), b''):
                    h.update(chunk)
            v = 'f %d %s' % (os.path.getsize(p), h.hexdigest())
        if xattrs:
            for a in sorted(os.listxattr(p)):
                if a.startswith('user.'):
                    v += ' %s=%s' % (a, hashlib.sha256(os.getxattr(p, a)).hexdigest())
        out[rel] = v
print(json.dumps(out))
"#;

fn walk(root: &Path, xattrs: bool) -> BTreeMap<String, String> {
    let o = python(
        WALK,
        Path::new("/"),
        &[root, Path::new(if xattrs { "x" } else { "-" })],
    );
    serde_json::from_slice(&o).unwrap()
}

/// What the kernel shows of the ext volume file `vol`, mounted read-only. The kernel
/// replays a journal that needs recovery onto the device even then, so it mounts a copy.
fn kernel_walk(vol: &Path, xattrs: bool) -> BTreeMap<String, String> {
    let copy = vol.with_extension("kernel");
    std::fs::copy(vol, &copy).unwrap();
    let mnt = vol.with_extension("mnt");
    let _ = std::fs::create_dir(&mnt);
    let dev = Loop::attach(&copy, 512, false);
    sh("mount", &["-o", "ro", &dev.0, mnt.to_str().unwrap()]);
    let w = std::panic::catch_unwind(|| walk(&mnt, xattrs));
    sh("umount", &[mnt.to_str().unwrap()]);
    drop(dev);
    std::fs::remove_file(&copy).unwrap();
    w.unwrap()
}

/// True when the ext volume file `vol` needs journal recovery (dumpe2fs's features).
fn needs_recovery(vol: &Path) -> bool {
    sh("dumpe2fs", &["-h", vol.to_str().unwrap()])
        .lines()
        .any(|l| l.starts_with("Filesystem features:") && l.contains("needs_recovery"))
}

/// What strata shows of image `img`: `cp -r` of its root walked like the kernel's mount,
/// with the `user.*` attributes `ls --json` gives (a copy's filesystem may not hold
/// values of 64 KiB).
fn strata_walk(img: &Path, xattrs: bool) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    let out = img.with_extension("out");
    let _ = std::fs::remove_dir_all(&out);
    let (code, _, err) = outcome(&run(&[&"cp", &"-r", &"-q", &img, &"/", &out]));
    assert!(code == 0 && (xattrs || !err.contains("not kept")), "{err}");
    let mut w = walk(&out, false);
    if xattrs {
        let (code, ls, err) = outcome(&run(&[&"ls", &img, &"/", &"-R", &"--json"]));
        assert_eq!(code, 0, "{err}");
        for line in ls.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let path = v["path"].as_str().unwrap();
            let Some(e) = w.get_mut(path) else { continue };
            if e.starts_with("l ") {
                continue;
            }
            let mut names: Vec<_> = v["xattrs"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(n, _)| n.starts_with("user."))
                .collect();
            names.sort_by(|a, b| a.0.cmp(b.0));
            for (n, val) in names {
                let hex = val.as_str().unwrap().strip_prefix("0x").unwrap();
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                let h: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                e.push_str(&format!(" {n}={h}"));
            }
        }
    }
    w
}

/// Byte offset of inode `path`'s `i_block` (extent root or block map) in `vol`, from
/// debugfs.
fn i_block_at(vol: &Path, path: &str) -> u64 {
    let o = sh(
        "debugfs",
        &["-R", &format!("imap {path}"), vol.to_str().unwrap()],
    );
    // "located at block 34, offset 0x0b00"
    let block: u64 = o.split("located at block ").nth(1).unwrap()[..o
        .split("located at block ")
        .nth(1)
        .unwrap()
        .find(',')
        .unwrap()]
        .parse()
        .unwrap();
    let off = u64::from_str_radix(o.split("offset 0x").nth(1).unwrap().trim(), 16).unwrap();
    let bs = dumpe2fs_block_size(&sh("dumpe2fs", &["-h", vol.to_str().unwrap()]));
    block * bs + off + 0x28
}

/// A file whose extent root (in the inode) is damaged in five ways, each edited in the
/// image: `cat` reports damaged metadata naming the inode (it panicked on overlapping
/// ranges: "slice index starts at 4096 but ends at 0"), and the kernel refuses each
/// edited file too; the untouched file reads as the kernel reads it.
#[test]
fn ext_damaged_extent_trees_are_errors() {
    if !require_root("ext_damaged_extent_trees_are_errors") {
        return;
    }
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    // Four one-block extents with holes between: the root holds four entries.
    python(
        "f = open('frag.bin', 'wb')\nfor i in range(4):\n    f.seek(i * 8192); f.write(bytes([65 + i]) * 4096)\n",
        &tree,
        &[],
    );
    // No metadata_csum: the kernel then judges the edited extents, not an inode checksum.
    let vol = mkfs(
        dir.path(),
        "vol.ext4",
        &tree,
        &["-b", "4096", "-O", "^metadata_csum"],
        "8M",
    );
    let root = i_block_at(&vol, "/frag.bin");
    let pristine = std::fs::read(&vol).unwrap();
    let img = image_of(&vol, dir.path());
    let o = run(&[&"cat", &img, &"/frag.bin"]);
    assert_eq!(
        o.stdout,
        std::fs::read(tree.join("frag.bin")).unwrap(),
        "undamaged"
    );
    let entry = |e: u64| root + 12 + 12 * e;
    // (what, byte offset, new bytes)
    let edits: [(&str, u64, Vec<u8>); 6] = [
        ("ranges overlap", entry(1), 0u32.to_le_bytes().to_vec()),
        ("ranges out of order", entry(3), 1u32.to_le_bytes().to_vec()),
        (
            "more entries than room",
            root + 4,
            3u16.to_le_bytes().to_vec(),
        ),
        ("empty extent", entry(0) + 4, 0u16.to_le_bytes().to_vec()),
        (
            "block past the filesystem",
            entry(2) + 8,
            100_000u32.to_le_bytes().to_vec(),
        ),
        ("depth says index", root + 6, 1u16.to_le_bytes().to_vec()),
    ];
    for (what, at, bytes) in edits {
        let v = dir.path().join("edited.ext4");
        std::fs::write(&v, &pristine).unwrap();
        write_at(&v, at, &bytes);
        // The kernel cannot read the edited file either.
        let mnt = dir.path().join("mnt");
        let _ = std::fs::create_dir(&mnt);
        let dev = Loop::attach(&v, 512, true);
        sh("mount", &["-o", "ro,noload", &dev.0, mnt.to_str().unwrap()]);
        let kernel = std::fs::read(mnt.join("frag.bin"));
        sh("umount", &[mnt.to_str().unwrap()]);
        drop(dev);
        assert!(kernel.is_err(), "{what}: the kernel read it");
        let img = image_of(&v, dir.path());
        let (code, _, err) = outcome(&run(&[&"cat", &img, &"/frag.bin"]));
        assert_eq!(code, 3, "{what}: {err}");
        assert!(
            err.contains("damaged metadata at byte ") && err.contains("inode 12"),
            "{what}: {err}"
        );
        // Listing still works.
        let (code, out, err) = outcome(&run(&[&"ls", &img, &"/"]));
        assert_eq!(code, 0, "{what}: {err}");
        assert!(out.contains("frag.bin"), "{what}: {out}");
        std::fs::remove_file(&img).unwrap();
    }
}

/// Changes made through a kernel mount: files created, rewritten, renamed and deleted,
/// each forced into the journal (fsync commits a transaction) but, copied at once, not
/// yet written back to their home blocks.
const CHANGES: &str = r#"
import os, shutil
def put(p, data):
    with open(p, 'wb') as f:
        f.write(data); f.flush(); os.fsync(f.fileno())
for i in range(300):
    put('new%03d' % i, (b'%d journal ' % i) * (i * 7 + 1))
os.makedirs('tree/a/b')
put('tree/a/b/deep', os.urandom(70000))
put('old.txt', b'rewritten in place ' * 500)
os.rename('keep.txt', 'tree/renamed.txt')
os.remove('gone.txt')
shutil.rmtree('olddir')
os.setxattr('tree/renamed.txt', 'user.new', b'set while mounted')
os.symlink('tree/a/b/deep', 'link')
fd = os.open('.', os.O_RDONLY); os.fsync(fd); os.close(fd)
"#;

/// An ext volume imaged while mounted, after its changes were committed to the journal
/// but before they reached their home blocks (the common state of an image of a running
/// server), reads as the kernel reads it after replaying the journal: with the journal
/// format of ext4 (64-bit, checksums v3), of ext4 without checksums or 64-bit, of ext3,
/// and with data journalling (file contents in the journal too). Without the replay,
/// strata listed the old tree.
#[test]
fn ext_journal_needing_recovery_reads_as_the_kernel() {
    if !require_root("ext_journal_needing_recovery_reads_as_the_kernel") {
        return;
    }
    let variants: [(&str, &[&str], &str); 4] = [
        ("ext4", &["-t", "ext4"], ""),
        (
            "no csum",
            &["-t", "ext4", "-O", "^metadata_csum,^64bit"],
            "",
        ),
        ("ext3", &["-t", "ext3"], ""),
        ("data=journal", &["-t", "ext4"], "data=journal"),
    ];
    for (what, args, opts) in variants {
        let dir = tempdir();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("old.txt"), b"before").unwrap();
        std::fs::write(tree.join("keep.txt"), text(9000, 1)).unwrap();
        std::fs::write(tree.join("gone.txt"), b"deleted later").unwrap();
        std::fs::create_dir(tree.join("olddir")).unwrap();
        std::fs::write(tree.join("olddir/f"), b"in a deleted dir").unwrap();
        let mut a = vec!["-b", "4096", "-J", "size=4"];
        a.extend_from_slice(args);
        let vol = mkfs(dir.path(), "vol.ext", &tree, &a, "32M");
        let mnt = dir.path().join("live");
        std::fs::create_dir(&mnt).unwrap();
        let dev = Loop::attach(&vol, 512, false);
        let o = if opts.is_empty() {
            "commit=600".to_string()
        } else {
            format!("commit=600,{opts}")
        };
        sh("mount", &["-o", &o, &dev.0, mnt.to_str().unwrap()]);
        let r = std::panic::catch_unwind(|| python(CHANGES, &mnt, &[]));
        // The image: the backing file as it is while the volume is mounted.
        let snap = dir.path().join("snap.ext");
        std::fs::copy(&vol, &snap).unwrap();
        sh("umount", &[mnt.to_str().unwrap()]);
        drop(dev);
        r.unwrap();
        assert!(needs_recovery(&snap), "{what}: the copy needs recovery");
        let kernel = kernel_walk(&snap, true);
        assert!(kernel.contains_key("/tree/a/b/deep"), "{what}: {kernel:?}");
        assert!(!kernel.contains_key("/gone.txt"), "{what}");
        let img = image_of(&snap, dir.path());
        assert_eq!(strata_walk(&img, true), kernel, "{what}");

        // The last transaction made incomplete (its commit block's magic cleared): the
        // kernel's recovery stops before it, and so must strata. With checksums, the
        // last commit block failing its checksum (a commit time byte flipped): the kernel
        // then refuses to mount ("journal transaction is corrupt"); e2fsck's recovery
        // (the same code) applies the transactions before it, and strata reads that
        // state. The edits are made in the image.
        let commit = last_commit_block(&snap);
        let mut edits = vec![("no commit", 0u64, vec![0u8; 4])];
        if what == "ext4" || what == "data=journal" {
            edits.push(("bad commit checksum", 48, vec![0x7F]));
        }
        for (how, off, bytes) in edits {
            let v = dir.path().join("damaged.ext");
            std::fs::copy(&snap, &v).unwrap();
            write_at(&v, commit + off, &bytes);
            let k = if how == "no commit" {
                kernel_walk(&v, true)
            } else {
                let fixed = dir.path().join("e2fsck.ext");
                std::fs::copy(&v, &fixed).unwrap();
                let o = std::process::Command::new("e2fsck")
                    .args(["-y", "-E", "journal_only"])
                    .arg(&fixed)
                    .output()
                    .unwrap();
                assert!(
                    o.status.code().is_some_and(|c| c <= 1),
                    "{}",
                    String::from_utf8_lossy(&o.stdout)
                );
                assert!(
                    String::from_utf8_lossy(&o.stdout).contains("was corrupt"),
                    "{}",
                    String::from_utf8_lossy(&o.stdout)
                );
                kernel_walk(&fixed, true)
            };
            assert_ne!(
                k, kernel,
                "{what}, {how}: the last transaction changed something"
            );
            let img = image_of(&v, dir.path());
            assert_eq!(strata_walk(&img, true), k, "{what}, {how}");
            std::fs::remove_file(&img).unwrap();
        }
    }
}

/// Byte offset in `vol` of the last commit block of its journal (from debugfs).
fn last_commit_block(vol: &Path) -> u64 {
    let v = vol.to_str().unwrap();
    let log = sh("debugfs", &["-R", "logdump", v]);
    let j: u64 = log
        .lines()
        .rfind(|l| l.contains("(commit block) at block "))
        .unwrap_or_else(|| panic!("no commit block: {log}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let phys: u64 = sh("debugfs", &["-R", &format!("bmap <8> {j}"), v])
        .parse()
        .unwrap();
    phys * 4096
}

/// The third-party image whose journal needs recovery (two committed transactions with
/// revoke blocks, 773 directories that exist only in the journal) lists as the kernel
/// lists it.
#[test]
fn ext_third_party_journal_image_reads_as_the_kernel() {
    if !require_root("ext_third_party_journal_image_reads_as_the_kernel") {
        return;
    }
    let dir = tempdir();
    let vol = third_party("ext4-view/test_disk_4k_block_journal.bin.zst", dir.path());
    assert!(needs_recovery(&vol));
    let kernel = kernel_walk(&vol, true);
    assert_eq!(kernel.len(), 773, "{kernel:?}");
    let img = image_of(&vol, dir.path());
    assert_eq!(strata_walk(&img, true), kernel);
}

/// Files made through a kernel mount on volumes with features that used to be refused
/// whole or need care: inline data (small files, directories and symlinks inside the
/// inode), `ea_inode` (attribute values up to 64 KiB in inodes of their own), `meta_bg`,
/// `mmp`, `large_dir`, `bigalloc`, and files with holes and unwritten (fallocated)
/// extents. Every file's content, every link target and every `user.*` attribute reads
/// as the kernel reads it.
const FEATURE_FILES: &str = r#"
import os, sys
feature = sys.argv[1]
open('tiny', 'w').write('in the inode\n')
open('small', 'wb').write(bytes(range(100)))
open('large', 'wb').write(os.urandom(200000))
with open('holes', 'wb') as f:
    f.write(b'start'); f.seek(1 << 20); f.write(b'after a hole'); f.truncate(3 << 20)
os.mkdir('d')
for i in range(3):
    open('d/f%d' % i, 'w').write('%d\n' % i)
os.symlink('x' * 50, 'fast')
os.symlink('y' * 100, 'longer')
os.symlink('z' * 3000, 'slow')
os.mkdir('many')
for i in range(400):
    open('many/%04d' % i, 'w').write(str(i))
if feature == 'ea_inode':
    os.setxattr('small', 'user.big', os.urandom(65536))
    os.setxattr('small', 'user.mid', os.urandom(9000))
    os.setxattr('tiny', 'user.small', b'stays in the inode')
    os.setxattr('d', 'user.big', os.urandom(30000))
if feature == 'unwritten':
    with open('prealloc', 'wb') as f:
        os.posix_fallocate(f.fileno(), 0, 1 << 20)
        f.write(b'written head')
    open('keep size', 'wb').write(b'x' * 5000)
    import subprocess
    subprocess.check_call(['fallocate', '--keep-size', '-l', '1048576', 'keep size'])
"#;

#[test]
fn ext_features_read_as_the_kernel() {
    if !require_root("ext_features_read_as_the_kernel") {
        return;
    }
    for feature in [
        "inline_data",
        "ea_inode",
        "unwritten",
        "meta_bg,^resize_inode",
        "mmp",
        "large_dir",
        "bigalloc",
    ] {
        let dir = tempdir();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        // mkfs -d writes inline files and symlinks its own way (e2fsprogs).
        std::fs::write(tree.join("by mkfs"), b"made by mke2fs -d\n").unwrap();
        std::os::unix::fs::symlink("w".repeat(80), tree.join("mkfs link")).unwrap();
        let mut args = vec!["-b", "4096", "-I", "256"];
        if feature != "unwritten" {
            args.extend(["-O", feature]);
        }
        let vol = mkfs(dir.path(), "vol.ext4", &tree, &args, "64M");
        let mnt = dir.path().join("live");
        std::fs::create_dir(&mnt).unwrap();
        let dev = Loop::attach(&vol, 512, false);
        sh("mount", &[&dev.0, mnt.to_str().unwrap()]);
        let r = std::panic::catch_unwind(|| {
            python(FEATURE_FILES, &mnt, &[Path::new(feature)]);
        });
        sh("umount", &[mnt.to_str().unwrap()]);
        drop(dev);
        r.unwrap();
        if feature == "unwritten" {
            // The unwritten extents' blocks hold stale bytes here: they are overwritten
            // in the image (as a freed file's data would be), and must still read as zeros.
            let ex = sh("debugfs", &["-R", "ex /prealloc", vol.to_str().unwrap()]);
            let mut stale = 0;
            for l in ex.lines().filter(|l| l.contains("Uninit")) {
                // " 0/ 0   2/  2     3 -   255 33795 - 34047    253 Uninit"
                let f: Vec<&str> = l.split_whitespace().collect();
                let phys: u64 = f[f.len() - 5].parse().unwrap();
                write_at(&vol, phys * 4096, &[0xAA; 4096]);
                stale += 1;
            }
            assert!(stale > 0, "no unwritten extent: {ex}");
        }
        let kernel = kernel_walk(&vol, true);
        assert!(kernel.len() > 404, "{feature}: {kernel:?}");
        let img = image_of(&vol, dir.path());
        let seen = strata_walk(&img, true);
        let diff: Vec<_> = kernel
            .iter()
            .filter(|(k, v)| seen.get(*k) != Some(v))
            .map(|(k, v)| (k, v, seen.get(k)))
            .take(10)
            .collect();
        assert!(
            diff.is_empty() && seen.len() == kernel.len(),
            "{feature}: differs from the kernel: {diff:#?}"
        );
    }
}

/// A casefolded directory (`casefold` feature, `+F` flag) lists and reads as debugfs
/// reads it. This kernel has no CONFIG_UNICODE and cannot mount casefold volumes, so
/// mke2fs fills the volume and debugfs sets the flag on the directory.
#[test]
fn ext_casefold_directory_reads_as_debugfs() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("cf")).unwrap();
    for n in ["Straße", "MiXeD", "ünï", &"a".repeat(200)] {
        std::fs::write(tree.join("cf").join(n), n).unwrap();
    }
    std::fs::write(tree.join("plain"), b"not folded").unwrap();
    let vol = mkfs(dir.path(), "vol.ext4", &tree, &["-O", "casefold"], "16M");
    let v = vol.to_str().unwrap();
    let stat = sh("debugfs", &["-R", "stat /cf", v]);
    let flags = u32::from_str_radix(
        stat.split("Flags: 0x")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap(),
        16,
    )
    .unwrap();
    let set = format!("set_inode_field /cf flags 0x{:x}", flags | 0x4000_0000);
    sh("debugfs", &["-w", "-R", &set, v]);
    assert!(sh("debugfs", &["-R", "stat /cf", v]).contains("Flags: 0x4"));
    let out = dir.path().join("rdump");
    std::fs::create_dir(&out).unwrap();
    sh("debugfs", &["-R", &format!("rdump / {}", out.display()), v]);
    let reference = walk(&out, false);
    assert_eq!(reference.len(), 6, "{reference:?}");
    let img = image_of(&vol, dir.path());
    assert_eq!(strata_walk(&img, false), reference);
}

/// A slow symlink whose size is edited in the image to 4 GiB (i_size_high = 1): strata,
/// under a 1 GiB address-space limit, reports it as damage naming the inode instead of
/// allocating the size (it aborted), and still lists the rest; e2fsck finds the same
/// link invalid. Fast, slow and inline symlinks are compared with the kernel in the other
/// tests.
#[test]
fn ext_symlink_with_a_huge_size_is_damage() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::os::unix::fs::symlink("s".repeat(3000), tree.join("slow")).unwrap();
    std::os::unix::fs::symlink("fast target", tree.join("fast")).unwrap();
    std::fs::write(tree.join("file"), b"still readable\n").unwrap();
    let vol = mkfs(
        dir.path(),
        "vol.ext4",
        &tree,
        &["-b", "4096", "-O", "^metadata_csum"],
        "8M",
    );
    let inode = i_block_at(&vol, "/slow") - 0x28;
    let stat = sh("debugfs", &["-R", "stat /slow", vol.to_str().unwrap()]);
    let ino = stat
        .split("Inode: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    write_at(&vol, inode + 0x6C, &1u32.to_le_bytes());
    let fsck = std::process::Command::new("e2fsck")
        .args(["-fn"])
        .arg(&vol)
        .output()
        .unwrap();
    assert_eq!(fsck.status.code(), Some(4), "e2fsck finds the damage");
    let img = image_of(&vol, dir.path());
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 1048576; exec \"$0\" ls \"$1\" / --json")
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg(&img)
        .output()
        .unwrap();
    let (code, out, err) = outcome(&o);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains(&format!("inode {ino}: symlink target of 4294970296 bytes")),
        "{err}"
    );
    assert!(out.contains("\"target\":\"fast target\""), "{out}");
    let o = run(&[&"cat", &img, &"/file"]);
    assert_eq!(o.stdout, b"still readable\n");
}

/// An incompatible feature strata cannot read is refused whole and named as mke2fs names
/// it, as the kernel refuses to mount it. No Linux tool writes `dirdata` (Lustre's
/// e2fsprogs does), so the test sets its bit in the superblock.
#[test]
fn ext_unreadable_feature_is_named() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a"), b"hi\n").unwrap();
    let vol = mkfs(
        dir.path(),
        "vol.ext4",
        &tree,
        &["-O", "^metadata_csum"],
        "8M",
    );
    let sb = std::fs::read(&vol).unwrap();
    let incompat = u32::from_le_bytes(sb[1024 + 0x60..1024 + 0x64].try_into().unwrap());
    write_at(&vol, 1024 + 0x60, &(incompat | 0x1000).to_le_bytes());
    let img = image_of(&vol, dir.path());
    let (code, _, err) = outcome(&run(&[&"ls", &img, &"/"]));
    assert_eq!(code, 1);
    assert!(err.contains("dirdata"), "{err}");
}

/// Bytes of the third-party image's journal (superblock, descriptor, revoke and commit
/// blocks, and logged blocks) flipped one at a time, 96 places: strata lists the volume
/// or fails with a one-line error, never panics.
#[test]
fn ext_damaged_journal_never_panics() {
    let dir = tempdir();
    let reference = third_party("ext4-view/test_disk_4k_block_journal.bin.zst", dir.path());
    let pristine = std::fs::read(&reference).unwrap();
    let vol = dir.path().join("journal.bin");
    // The log runs from journal block 0 (its superblock) past 865 (the end of the log).
    let v = reference.to_str().unwrap();
    let phys = |j: u64| -> u64 {
        sh("debugfs", &["-R", &format!("bmap <8> {j}"), v])
            .parse()
            .unwrap()
    };
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for k in 0..96u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Half in the headers of journal blocks (the first 64 bytes), half anywhere.
        let jblock = match k % 4 {
            0 => 0,
            1 => 289 + x % 8,
            _ => 289 + x % 580,
        };
        let within = if k % 2 == 0 {
            x >> 20 & 63
        } else {
            x >> 20 & 4095
        };
        let at = phys(jblock) * 4096 + within;
        let mut bytes = pristine.clone();
        bytes[at as usize] ^= 1 << (x >> 40 & 7);
        std::fs::write(&vol, &bytes).unwrap();
        let img = image_of(&vol, dir.path());
        let (code, _, err) = outcome(&run(&[&"ls", &img, &"/", &"-R"]));
        // 3: damaged metadata, named.
        assert!(
            matches!(code, 0 | 1 | 3)
                && !err.contains("panicked")
                && (code != 3 || err.contains("damaged metadata")),
            "flip at byte {at}: exit {code}: {err}"
        );
        std::fs::remove_file(&img).unwrap();
    }
}

/// An ext2 block map edited in the image: a 5-byte file's triple-indirect entry points
/// at a block whose 1024 entries all name one double-indirect block, whose entries all
/// name one indirect block of scattered data blocks (a billion logical blocks from three
/// blocks). Past the file's size the map is not read, as by the kernel, which reads the
/// file; with the size edited to 4 TiB the shared block is damage, reported at once
/// under a 1 GiB address-space limit (mapping it ran out of memory).
#[test]
fn ext_block_map_pointing_at_itself_is_bounded() {
    if !require_root("ext_block_map_pointing_at_itself_is_bounded") {
        return;
    }
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("small"), b"five\n").unwrap();
    std::fs::write(tree.join("filler"), vec![7u8; 3 * 4096]).unwrap();
    let vol = mkfs(
        dir.path(),
        "vol.ext2",
        &tree,
        &["-t", "ext2", "-b", "4096"],
        "16M",
    );
    let v = vol.to_str().unwrap();
    let blocks: Vec<u32> = sh("debugfs", &["-R", "blocks /filler", v])
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    let (t, d, i) = (blocks[0], blocks[1], blocks[2]);
    let fill = |block: u32, entry: &dyn Fn(u32) -> u32| {
        let mut b = Vec::with_capacity(4096);
        for k in 0..1024 {
            b.extend_from_slice(&entry(k).to_le_bytes());
        }
        write_at(&vol, u64::from(block) * 4096, &b);
    };
    fill(t, &|_| d);
    fill(d, &|_| i);
    // Scattered, so no two entries merge into one run.
    fill(i, &|k| if k % 2 == 0 { t } else { i });
    let i_block = i_block_at(&vol, "/small");
    write_at(&vol, i_block + 14 * 4, &t.to_le_bytes());

    let limited = |img: &Path| {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 1048576; exec timeout 60 \"$0\" cat \"$1\" /small")
            .arg(env!("CARGO_BIN_EXE_strata"))
            .arg(img)
            .output()
            .unwrap();
        outcome(&o)
    };
    let kernel = kernel_walk(&vol, false);
    assert!(kernel["/small"].starts_with("f 5 "), "{kernel:?}");
    let img = image_of(&vol, dir.path());
    let (code, out, err) = limited(&img);
    assert_eq!((code, out.as_str()), (0, "five\n"), "{err}");
    std::fs::remove_file(&img).unwrap();

    // i_size_high: 4 TiB.
    write_at(&vol, i_block - 0x28 + 0x6C, &1024u32.to_le_bytes());
    let img = image_of(&vol, dir.path());
    let (code, _, err) = limited(&img);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("is reached twice"), "{err}");
}

#[test]
fn ext4_view_test_disks() {
    for (img, skip) in [
        ("test_disk1.bin", &["/encrypted_dir"][..]),
        ("test_disk_ext2.bin", &[][..]),
        ("test_disk_ext3.bin", &[][..]),
    ] {
        let dir = tempdir();
        let raw = third_party(&format!("ext4-view/{img}.zst"), dir.path());
        let listing = format!("ext4-view/expected/{}", img.replace(".bin", ".listing.txt"));
        check_against_listing(&raw, "/", &listing, skip);
    }
}

#[test]
fn ext4_medium_dir_files_hold_their_names() {
    let dir = tempdir();
    let raw = third_party("ext4-view/test_disk1.bin.zst", dir.path());
    let img = image_of(&raw, dir.path());
    for n in ["0", "7", "999"] {
        let o = run(&[&"cat", &img, &format!("/medium_dir/{n}")]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), n);
    }
    // Encrypted names and contents are refused with the reason.
    let (code, _, err) = outcome(&run(&[&"ls", &img, &"/encrypted_dir"]));
    assert_eq!(code, 1);
    assert!(err.contains("encrypted"), "{err}");
}

const EXT_TREE: &str = r#"
import os, sys
root = sys.argv[1]
os.chdir(root)
open('small.txt', 'w').write('small\n')
with open('holes.bin', 'wb') as f:
    f.write(b'start'); f.seek(40000); f.write(b'in the direct blocks'); f.truncate(48000)
# Holes where a block-mapped (ext2/3) file has no indirect block at all.
with open('far holes.bin', 'wb') as f:
    f.write(b'start'); f.seek(3 << 20); f.write(b'middle'); f.truncate(9 << 20)
if sys.argv[2] == 'ext4':
    # Past 4 GiB: 64-bit sizes and offsets.
    with open('huge sparse.bin', 'wb') as f:
        f.seek((4 << 30) + 12345); f.write(b'after four gibibytes')
open('big.bin', 'wb').write(bytes((i * 2654435761 >> 11) & 255 for i in range(3 << 20)))
os.symlink('small.txt', 'fast link')
os.symlink('/' + 'x' * 200 + '/target', 'slow link')
os.symlink('../nowhere', 'dangling')
os.link('small.txt', 'hard.txt')
os.makedirs('Ünïcödé/日本語')
open('Ünïcödé/日本語/файл.txt', 'w').write('γειά\n')
open('N' * 255, 'w').write('longest name\n')
d = 'deep'
for i in range(40):
    d = os.path.join(d, 'l%02d' % i)
os.makedirs(d)
open(os.path.join(d, 'bottom'), 'w').write('bottom\n')
os.mkdir('many')
for i in range(10050):
    with open('many/%05d' % i, 'w') as f:
        f.write(str(i))
os.chmod('small.txt', 0o600)
os.utime('small.txt', (1500000000, 1400000000))
# Extended attributes in the inode and, too big for it, in the attribute block.
os.setxattr('big.bin', 'user.note', b'in the inode')
os.setxattr('big.bin', 'user.large', bytes(range(250)) * 3)
os.setxattr('Ünïcödé', 'user.dir', b'on a directory')
"#;

/// ext2, ext3 and ext4 made by `mkfs -d` (fast and slow symlinks, holes, a file past
/// 4 GiB, hard links, Unicode and 255-byte names, 10 050 files in one directory, 40
/// levels), read exactly as the kernel reads them; the ext4 one also at a second point,
/// after changes through a kernel mount.
#[test]
fn ext_volumes_match_the_kernel() {
    if !require_root("ext_volumes_match_the_kernel") {
        return;
    }
    for fs in ["ext2", "ext3", "ext4"] {
        let dir = tempdir();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        python(EXT_TREE, dir.path(), &[&tree, Path::new(fs)]);
        let vol = dir.path().join("vol.ext");
        sh(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-t",
                fs,
                "-L",
                "POINTS",
                "-d",
                tree.to_str().unwrap(),
                vol.to_str().unwrap(),
                "128M",
            ],
        );
        let points: &[&str] = if fs == "ext4" { &["a", "b"] } else { &["a"] };
        for point in points {
            if *point == "b" {
                let mnt = dir.path().join("mnt");
                std::fs::create_dir(&mnt).unwrap();
                sh(
                    "mount",
                    &["-o", "loop", vol.to_str().unwrap(), mnt.to_str().unwrap()],
                );
                let o = std::process::Command::new("python3")
                    .arg("-c")
                    .arg(
                        "import os, shutil\nos.remove('small.txt')\nshutil.rmtree('deep/l00/l01')\n\
                         open('big.bin', 'r+b').write(b'changed')\n\
                         [os.remove('many/%05d' % i) for i in range(0, 10050, 3)]\n\
                         open('new', 'w').write('second point\\n')",
                    )
                    .current_dir(&mnt)
                    .output()
                    .unwrap();
                sh("umount", &[mnt.to_str().unwrap()]);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            }
            let (disk, manifest) = disk_and_manifest(&vol, dir.path(), point);
            let img = image_of(&disk, dir.path());
            compare_with_manifest(&img, &manifest, &["p1"]);
        }
    }
}

/// Extended attributes of every namespace (in the inode, in the attribute block, a POSIX
/// ACL), inode numbers and link counts, as the kernel shows them on the same ext4 volume.
#[test]
fn ext_xattrs_and_inode_numbers_match_the_kernel() {
    if !require_root("ext_xattrs_and_inode_numbers_match_the_kernel") {
        return;
    }
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    python(
        r#"
import os, struct
open('a.txt', 'w').write('a\n')
os.setxattr('a.txt', 'user.small', b'hi')
os.setxattr('a.txt', 'user.block', os.urandom(1500))
os.setxattr('a.txt', 'trusted.t', b'trusted value')
os.setxattr('a.txt', 'security.s', b'security value')
os.link('a.txt', 'a hard link')
os.mkdir('d')
os.setxattr('d', 'user.on dir', b'\x00\x01 binary')
acl = struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in
      [(1, 6, 0xFFFFFFFF), (2, 4, 1000), (4, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
       (0x20, 0, 0xFFFFFFFF)])
open('d/acl.txt', 'w').close()
os.setxattr('d/acl.txt', 'system.posix_acl_access', acl)
os.symlink('a.txt', 'link')
"#,
        &tree,
        &[],
    );
    let vol = dir.path().join("vol.ext4");
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
            "16M",
        ],
    );
    // What the kernel shows: path -> (inode, links, attributes in getfattr's hex form).
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    sh(
        "mount",
        &[
            "-o",
            "loop,ro",
            vol.to_str().unwrap(),
            mnt.to_str().unwrap(),
        ],
    );
    let walk = std::panic::catch_unwind(|| {
        python(
            r#"
import os, json
for top, dirs, files in os.walk('.'):
    for n in dirs + files:
        p = os.path.join(top, n)
        if p.startswith('./lost+found'):
            continue
        st = os.lstat(p)
        x = {} if os.path.islink(p) else {a: '0x' + os.getxattr(p, a).hex()
                                          for a in os.listxattr(p)}
        print(json.dumps([p[1:], st.st_ino, st.st_nlink, x]))
"#,
            &mnt,
            &[],
        )
    });
    sh("umount", &[mnt.to_str().unwrap()]);
    let walk = walk.unwrap();
    let kernel: BTreeMap<String, serde_json::Value> = String::from_utf8(walk)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v[0].as_str().unwrap().to_string(), v)
        })
        .collect();
    assert!(
        kernel["/a.txt"][3]["trusted.t"].is_string(),
        "{:?}",
        kernel["/a.txt"]
    );
    assert!(kernel["/d/acl.txt"][3]["system.posix_acl_access"].is_string());
    let img = image_of(&vol, dir.path());
    let (seen, clean) = ls_tree(&img, "/");
    assert!(clean);
    for (path, k) in &kernel {
        let s = &seen[path].json;
        assert_eq!(s["ino"], k[1], "{path}: inode number");
        assert_eq!(s["nlink"], k[2], "{path}: links");
        let empty = serde_json::json!({});
        assert_eq!(
            s.get("xattrs").unwrap_or(&empty),
            &k[3],
            "{path}: attributes"
        );
    }
    assert_eq!(
        seen.len(),
        kernel.len() + 1,
        "lost+found besides the kernel's walk"
    );
}

/// Device nodes, FIFOs and sockets are listed with their type, not read, not copied. The
/// type comes from each directory entry where the filesystem records it there (`filetype`)
/// and from the inode where it does not (`-O ^filetype`): both list alike.
#[test]
fn ext_special_files_are_listed_not_read() {
    if !require_root("ext_special_files_are_listed_not_read") {
        return;
    }
    for args in [&[][..], &["-O", "^filetype"][..]] {
        let dir = tempdir();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        sh(
            "mknod",
            &[tree.join("null").to_str().unwrap(), "c", "1", "3"],
        );
        sh(
            "mknod",
            &[tree.join("loop").to_str().unwrap(), "b", "7", "0"],
        );
        sh("mkfifo", &[tree.join("fifo").to_str().unwrap()]);
        std::fs::write(tree.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink("file", tree.join("link")).unwrap();
        let vol = mkfs(dir.path(), "vol.ext4", &tree, args, "16M");
        let features = sh("dumpe2fs", &["-h", vol.to_str().unwrap()]);
        let has_filetype = features
            .lines()
            .any(|l| l.starts_with("Filesystem features:") && l.contains(" filetype"));
        assert_eq!(has_filetype, args.is_empty(), "{features}");
        let img = image_of(&vol, dir.path());
        let (seen, _) = ls_tree(&img, "/");
        assert_eq!(seen["/null"].kind, "char", "{args:?}");
        assert_eq!(seen["/loop"].kind, "block", "{args:?}");
        assert_eq!(seen["/fifo"].kind, "fifo", "{args:?}");
        assert_eq!(seen["/file"].kind, "file", "{args:?}");
        assert_eq!(seen["/link"].kind, "symlink", "{args:?}");
        assert_eq!(seen["/sub"].kind, "dir", "{args:?}");
        // The listing itself (what a mount's readdir gives as each entry's type) agrees
        // with each node's own metadata, and with the type of the file it was made from.
        let vfs = strata::point::open_vfs(&img, &Default::default(), 64 << 20).unwrap();
        let fs = vfs.fs(0).unwrap();
        let listed = fs.read_dir(fs.root()).unwrap();
        assert!(listed.len() >= 7, "{listed:?}");
        for e in &listed {
            let meta = fs.metadata(e.node).unwrap();
            assert_eq!(e.kind, meta.kind, "{args:?} {}", e.name);
            if e.name == "lost+found" {
                continue;
            }
            use std::os::unix::fs::FileTypeExt;
            let t = std::fs::symlink_metadata(tree.join(&e.name))
                .unwrap()
                .file_type();
            let source = [
                (t.is_file(), "File"),
                (t.is_dir(), "Dir"),
                (t.is_symlink(), "Symlink"),
                (t.is_char_device(), "Char"),
                (t.is_block_device(), "Block"),
                (t.is_fifo(), "Fifo"),
                (t.is_socket(), "Socket"),
            ]
            .into_iter()
            .find_map(|(is, kind)| is.then_some(kind));
            assert_eq!(
                Some(format!("{:?}", e.kind).as_str()),
                source,
                "{args:?} {}",
                e.name
            );
        }
        let (code, _, err) = outcome(&run(&[&"cat", &img, &"/null"]));
        assert_eq!(code, 1);
        assert!(err.contains("not a regular file"), "{err}");
        let out = dir.path().join("out");
        let o = run(&[&"cp", &"-r", &"-q", &img, &"/", &out]);
        let (code, _, err) = outcome(&o);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("/null: skipped"), "{err}");
        assert!(out.join("volume/file").exists() || out.join("file").exists());
        assert!(!out.join("null").exists() && !out.join("volume/null").exists());
    }
}

/// Disk blocks `debugfs -R "blocks PATH"` lists for `path` in `vol`.
fn debugfs_blocks(vol: &Path, path: &str) -> Vec<u64> {
    let out = sh(
        "debugfs",
        &["-R", &format!("blocks \"{path}\""), vol.to_str().unwrap()],
    );
    let blocks: Vec<u64> = out.split_whitespace().map(|w| w.parse().unwrap()).collect();
    assert!(!blocks.is_empty(), "{path}: no blocks: {out}");
    blocks
}

/// `create` packs ext metadata (inode tables, directories, long symlinks) into chunks of
/// their own, smaller than the image's chunk size and holding no file contents, so that
/// a directory walk decompresses metadata only. The image restores byte for byte, reads
/// as the kernel reads the volume, and an incremental image on top does too.
#[test]
fn ext_metadata_in_chunks_of_its_own() {
    use strata::container::index::ExtentKind;
    use strata::container::reader::Image;
    let dir = tempdir();
    let tree = dir.path().join("tree");
    // Directories written between files, so that their blocks lie among file data.
    let script = r#"
import os, random
rng = random.Random(7)
for d in range(6):
    os.makedirs('d%d/sub' % d)
    with open('d%d/data.bin' % d, 'wb') as f:
        f.write(rng.randbytes(3 << 20))
    for i in range(40):
        open('d%d/sub/n%03d.txt' % (d, i), 'w').write('note %d %d\n' % (d, i) * (i + 1))
    os.symlink('t' * 90 + str(d), 'd%d/long link' % d)
os.makedirs('big')
for i in range(3000):
    open('big/file-with-a-long-name-%05d.txt' % i, 'w').write('entry %d\n' % i)
"#;
    std::fs::create_dir(&tree).unwrap();
    python(script, &tree, &[]);
    let vol = mkfs(
        dir.path(),
        "vol.ext4",
        &tree,
        &["-b", "4096", "-I", "256"],
        "96M",
    );

    let img = round_trip(dir.path(), &vol, &[]);
    let image = Image::open(&img).unwrap();
    let chunk_size = image.header().chunk_size;
    let index = image.index();
    let chunk_of = |block: u64| -> u32 {
        let e = index
            .extents
            .iter()
            .find(|e| e.disk_block <= block && block < e.end())
            .unwrap_or_else(|| panic!("block {block} is not stored"));
        assert_eq!(e.kind, ExtentKind::Data, "block {block}");
        e.chunk
    };
    let small = |c: u32| index.chunks[c as usize].raw_len < chunk_size;
    let mut meta_chunks = std::collections::BTreeSet::new();
    for path in ["/", "/big", "/d0", "/d3/sub", "/d5/sub", "/d2/long link"] {
        for b in debugfs_blocks(&vol, path) {
            let c = chunk_of(b);
            assert!(
                small(c),
                "{path}: block {b} is in chunk {c}, a full-size one"
            );
            meta_chunks.insert(c);
        }
    }
    // The inode table of group 0 (inode 2 is the root directory's).
    let stat = sh("debugfs", &["-R", "imap <2>", vol.to_str().unwrap()]);
    let itable: u64 = stat
        .split("located at block ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("debugfs imap: {stat}"));
    assert!(small(chunk_of(itable)), "inode table block {itable}");
    meta_chunks.insert(chunk_of(itable));
    for d in 0..6 {
        for b in debugfs_blocks(&vol, &format!("/d{d}/data.bin")) {
            let c = chunk_of(b);
            assert!(
                !meta_chunks.contains(&c),
                "/d{d}/data.bin: block {b} shares chunk {c} with metadata"
            );
        }
    }

    if require_root("ext_metadata_in_chunks_of_its_own") {
        assert_eq!(strata_walk(&img, false), kernel_walk(&vol, false));
    }

    // An incremental image after changes: a new directory, new files. (Nothing is
    // deleted: a freed block keeps its bytes in the volume file but is not imaged.)
    let changes = dir.path().join("changes");
    std::fs::write(&changes, b"changed contents\n".repeat(3000)).unwrap();
    let c = changes.to_str().unwrap();
    sh(
        "debugfs",
        &["-w", "-R", "mkdir /added", vol.to_str().unwrap()],
    );
    for cmd in [
        format!("write {c} /added/one"),
        format!("write {c} /big/added-too"),
    ] {
        sh("debugfs", &["-w", "-R", &cmd, vol.to_str().unwrap()]);
    }
    let inc = dir.path().join("inc.strata");
    ok(run(&[
        &"create",
        &"--quiet",
        &vol,
        &inc,
        &"--incremental",
        &img,
    ]));
    let restored = dir.path().join("restored.ext4");
    ok(run(&[&"restore", &"--quiet", &inc, &restored]));
    assert_eq!(
        sha256(&vol),
        sha256(&restored),
        "incremental restores another volume"
    );
    let inc_index = Image::open(&inc).unwrap();
    let added = debugfs_blocks(&vol, "/added");
    assert!(inc_index
        .index()
        .extents
        .iter()
        .any(|e| e.disk_block <= added[0]
            && added[0] < e.end()
            && inc_index.index().chunks[e.chunk as usize].raw_len < chunk_size));
    if require_root("ext_metadata_in_chunks_of_its_own") {
        assert_eq!(strata_walk(&inc, false), kernel_walk(&vol, false));
    }

    // A synthetic full image of the incremental's point keeps the metadata apart too.
    let full = dir.path().join("full.strata");
    ok(run(&[&"consolidate", &"--quiet", &inc, &"--full", &full]));
    let merged = Image::open(&full).unwrap();
    for path in ["/", "/big", "/added", "/d3/sub"] {
        for b in debugfs_blocks(&vol, path) {
            let e = merged
                .index()
                .extents
                .iter()
                .find(|e| e.disk_block <= b && b < e.end())
                .unwrap();
            assert!(
                merged.index().chunks[e.chunk as usize].raw_len < chunk_size,
                "{path}: block {b} is in a full-size chunk after consolidate"
            );
        }
    }
    ok(run(&[&"restore", &"--quiet", &"--force", &full, &restored]));
    assert_eq!(sha256(&vol), sha256(&restored));
}

/// An image made before `create` packed metadata into chunks of its own (every chunk
/// 1 MiB, directories among file contents) still verifies, restores the volume it was
/// made of, reads as the kernel reads that volume, and takes an incremental image made
/// today on top.
#[test]
fn ext_image_from_before_metadata_chunks_still_reads() {
    use strata::container::reader::Image;
    const VOLUME_SHA256: &str = "842c08c4b82c471e3a8c4951a8775b0c8781ad6115dd29d40fac2183b1d6d53b";
    let dir = tempdir();
    let img = dir.path().join("old.strata");
    std::fs::copy(
        fixtures().join("old-images/ext4-before-metadata-chunks.strata"),
        &img,
    )
    .unwrap();
    // The fixture is what it says: full-size chunks, but for the last.
    let old = Image::open(&img).unwrap();
    let chunks = &old.index().chunks;
    assert!(chunks.len() > 2);
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c.raw_len == old.header().chunk_size));
    ok(run(&[&"verify", &"--quiet", &img]));
    let vol = dir.path().join("vol.ext4");
    ok(run(&[&"restore", &"--quiet", &img, &vol]));
    assert_eq!(sha256(&vol), VOLUME_SHA256);
    if require_root("ext_image_from_before_metadata_chunks_still_reads") {
        let kernel = kernel_walk(&vol, false);
        assert!(kernel.len() > 600, "{kernel:?}");
        assert_eq!(strata_walk(&img, false), kernel);
    }

    let changes = dir.path().join("changes");
    std::fs::write(&changes, b"added later\n".repeat(1000)).unwrap();
    let c = changes.to_str().unwrap();
    for cmd in [
        "mkdir /later".to_string(),
        format!("write {c} /later/file"),
        format!("write {c} /many/entry-later.txt"),
    ] {
        sh("debugfs", &["-w", "-R", &cmd, vol.to_str().unwrap()]);
    }
    let inc = dir.path().join("inc.strata");
    ok(run(&[
        &"create",
        &"--quiet",
        &vol,
        &inc,
        &"--incremental",
        &img,
    ]));
    let restored = dir.path().join("restored.ext4");
    ok(run(&[&"restore", &"--quiet", &inc, &restored]));
    assert_eq!(sha256(&vol), sha256(&restored));
    if require_root("ext_image_from_before_metadata_chunks_still_reads") {
        assert_eq!(strata_walk(&inc, false), kernel_walk(&vol, false));
    }
}
