//! Lookups through a mount: the mount answers a lookup from the listing it keeps of the
//! parent directory, and hands a name it does not find there as typed to the filesystem
//! (FAT matches names whatever their case). Both ways must give what the filesystem's own
//! `lookup` gives: checked on a real disk (ext4 made by `mkfs.ext4 -d`, FAT by mkfs.fat and mtools) for
//! every name of a directory of 3,000 entries, names that are not there, and names typed
//! in another case; inode numbers and contents also against the kernel's ext4 and mtools.
//!
//! Needs root, /dev/fuse and fusermount3 (package fuse3), dosfstools, mtools, e2fsprogs and gdisk;
//! under `CI=true` a missing one is a failure.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata::vfs::{FileSystem, NodeId};

/// Inodes of a mount are `(partition + 1) << 48 | node`.
const NODE_MASK: u64 = (1 << 48) - 1;
const BIG: usize = 3000;

fn require_fuse(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    let ok =
        Path::new("/dev/fuse").exists() && Command::new("fusermount3").arg("-V").output().is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: needs /dev/fuse and fusermount3 (fuse3), and CI must not skip it"
        );
        eprintln!("{test}: skipped (needs /dev/fuse and fusermount3)");
    }
    ok
}

/// Detaches a mount when dropped, even when the test fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// A GPT disk: p1 ext4 (32 MiB) with `big/` of 3,000 files, p2 FAT (16 MiB) with `BIG/`
/// of 300 files with mixed-case long names.
fn make_disk(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("big")).unwrap();
    std::fs::create_dir_all(tree.join("small")).unwrap();
    for i in 0..BIG {
        let body = text(40 + (i * 37) % 900, i as u64);
        std::fs::write(tree.join(format!("big/file-{i:05}.txt")), body).unwrap();
    }
    std::fs::write(tree.join("small/a"), b"a\n").unwrap();
    std::fs::write(tree.join("small/B"), b"B\n").unwrap();
    let ext = dir.join("ext.vol");
    std::fs::File::create(&ext)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    sh(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-d",
            tree.to_str().unwrap(),
            ext.to_str().unwrap(),
        ],
    );

    let fat = dir.join("fat.vol");
    std::fs::File::create(&fat)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let f = fat.to_str().unwrap();
    sh("mkfs.fat", &["-F", "16", "-n", "DATA", f]);
    sh("mmd", &["-i", f, "::/BIG"]);
    let src = dir.join("fatsrc");
    std::fs::create_dir_all(&src).unwrap();
    let mut files = Vec::new();
    for i in 0..300 {
        let name = format!("Report Of Week {i:03}.Txt");
        std::fs::write(src.join(&name), text(100 + i, 1000 + i as u64)).unwrap();
        files.push(src.join(name).to_str().unwrap().to_string());
    }
    std::fs::write(src.join("readme.txt"), b"lower\n").unwrap();
    files.push(src.join("readme.txt").to_str().unwrap().to_string());
    let mut args = vec!["-i", f, "-m"];
    args.extend(files.iter().map(String::as_str));
    args.push("::/BIG/");
    sh("mcopy", &args);

    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(50 << 20)
        .unwrap();
    let d = disk.to_str().unwrap();
    sh(
        "sgdisk",
        &[
            "-n",
            "1:2048:+32M",
            "-t",
            "1:8300",
            "-n",
            "2:0:+16M",
            "-t",
            "2:0700",
            d,
        ],
    );
    for (vol, at) in [(&ext, 1u64), (&fat, 1 + 32)] {
        let data = std::fs::read(vol).unwrap();
        write_at(&disk, at << 20, &data);
    }
    disk
}

/// The node `fs.lookup` gives for `name` in `dir`, None when not found.
fn fs_lookup(fs: &dyn FileSystem, dir: NodeId, name: &str) -> Option<NodeId> {
    match fs.lookup(dir, name, strata::vfs::Case::Exact) {
        Ok(n) => Some(n),
        Err(strata::Error::NotFound(_)) => None,
        Err(e) => panic!("lookup of {name}: {e}"),
    }
}

/// The mount's node for `path`, None when it says there is none.
fn mount_lookup(path: &Path) -> Option<NodeId> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Some(m.ino() & NODE_MASK),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// Another case of a name: upper case, or lower case when it is all upper case already.
fn other_case(name: &str) -> String {
    let up = name.to_uppercase();
    if up != name {
        up
    } else {
        name.to_lowercase()
    }
}

#[test]
fn lookups_from_listings_answer_as_the_filesystem() {
    if !require_fuse("lookups_from_listings_answer_as_the_filesystem") {
        return;
    }
    let dir = tempdir();
    let disk = make_disk(dir.path());
    let img = dir.path().join("disk.strata");
    ok(run(&[&"create", &"-q", &disk, &img]));

    let vfs = strata::point::open_vfs(&img, &Default::default(), 128 << 20).unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    ok(run(&[&"mount", &img, &mnt]));
    let _m = Unmount(mnt.clone());

    // The kernel's ext4 over p1 and mtools' copy of p2: the independent readers.
    let kmnt = dir.path().join("kernel");
    std::fs::create_dir_all(&kmnt).unwrap();
    let lo = Loop(sh(
        "losetup",
        &[
            "-f",
            "--show",
            "-r",
            "-o",
            "1048576",
            "--sizelimit",
            "33554432",
            disk.to_str().unwrap(),
        ],
    ));
    sh(
        "mount",
        &[
            "-t",
            "ext4",
            "-o",
            "ro,noload",
            &lo.0,
            kmnt.to_str().unwrap(),
        ],
    );
    let _k = Unmount(kmnt.clone());
    let fat = dir.path().join("fat.vol");
    let mcopied = dir.path().join("mcopied");
    std::fs::create_dir_all(&mcopied).unwrap();
    sh(
        "mcopy",
        &[
            "-s",
            "-n",
            "-i",
            fat.to_str().unwrap(),
            "::/BIG",
            mcopied.to_str().unwrap(),
        ],
    );

    for (part, sub, case_blind) in [
        ("p1", "big", false),
        ("p1", "small", false),
        ("p2", "BIG", true),
    ] {
        let m = vfs.mounts().iter().position(|x| x.name == part).unwrap();
        let fs = vfs.fs(m).unwrap();
        let node = fs_lookup(&**fs, fs.root(), sub).unwrap();
        let listed: Vec<String> = fs
            .read_dir(node)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        let mdir = mnt.join(part).join(sub);

        // The mount's listing keeps the parent's entries for the lookups that follow.
        let mut seen: Vec<String> = std::fs::read_dir(&mdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        seen.sort();
        let mut want = listed.clone();
        want.sort();
        assert_eq!(seen, want, "{part}/{sub}: listing");
        if sub != "small" {
            assert!(
                listed.len() >= 300,
                "{part}/{sub}: {} entries",
                listed.len()
            );
        }

        // The kernel got every listed entry with its attributes (readdirplus): forget
        // them, so that the lookups below reach the mount while it keeps the listing.
        std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();

        // Every name as listed.
        let mut nodes = BTreeMap::new();
        for name in &listed {
            let want = fs_lookup(&**fs, node, name);
            assert!(want.is_some(), "{part}/{sub}/{name}: listed but not found");
            assert_eq!(mount_lookup(&mdir.join(name)), want, "{part}/{sub}/{name}");
            nodes.insert(name.clone(), want.unwrap());
        }
        // Names that are not there.
        for name in [
            "nothing-here",
            "file-99999.txt",
            "Report Of Week 999.Txt",
            "file-00001.txt~",
        ] {
            assert_eq!(fs_lookup(&**fs, node, name), None, "{part}/{sub}/{name}");
            assert_eq!(mount_lookup(&mdir.join(name)), None, "{part}/{sub}/{name}");
        }
        // Names typed in another case: FAT finds the listed entry, ext nothing; the mount
        // as the filesystem in both.
        for name in listed.iter().step_by(7) {
            let typed = other_case(name);
            if listed.contains(&typed) {
                continue;
            }
            let want = fs_lookup(&**fs, node, &typed);
            if case_blind {
                assert_eq!(want, Some(nodes[name]), "{part}/{sub}/{typed}");
            } else {
                assert_eq!(want, None, "{part}/{sub}/{typed}");
            }
            assert_eq!(
                mount_lookup(&mdir.join(&typed)),
                want,
                "{part}/{sub}/{typed}"
            );
        }

        // The independent readers: same inode numbers (ext) and same contents.
        for name in &listed {
            let (reference, ino) = if part == "p1" {
                let k = kmnt.join(sub).join(name);
                (k.clone(), Some(std::fs::metadata(&k).unwrap().ino()))
            } else {
                (mcopied.join(sub).join(name), None)
            };
            if let Some(ino) = ino {
                assert_eq!(nodes[name], ino, "{part}/{sub}/{name}: inode");
            }
            assert!(
                same_content(&mdir.join(name), &reference),
                "{part}/{sub}/{name}: contents differ from {}",
                reference.display()
            );
        }
    }
}
