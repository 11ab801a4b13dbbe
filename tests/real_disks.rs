//! Disks built by real tools (sgdisk/sfdisk, mkfs.fat + mtools, mkntfs + ntfs-3g,
//! mkfs.ext4 -d) come back from an image with every file identical, as read by the
//! kernel, ntfs-3g and mtools (`fixtures/manifest.sh`).
// Real mounts, loop devices and POSIX file APIs: Linux only.
#![cfg(unix)]

mod common;
use common::*;

#[test]
fn sample_disk_files_survive_create_and_restore() {
    if !require_root("sample_disk_files_survive_create_and_restore") {
        return;
    }
    let d = tempdir();
    let disk = sample_disk(d.path());
    let image = d.path().join("sample.strata");
    let restored = d.path().join("restored.img");
    ok(run(&[&"create", &disk, &image, &"-q"]));
    std::fs::remove_file(&disk).unwrap(); // only the image is left
    ok(run(&[&"restore", &image, &restored, &"-q"]));
    let got = manifest(&restored, Some(512), &d.path().join("restored.manifest"));
    let want = sample_manifest();
    assert_eq!(got.lines().count(), 451);
    assert_eq!(got, want, "files read from the restored disk differ");
}

#[test]
fn fresh_mbr_disk_with_4096_byte_sectors_round_trips() {
    if !require_root("fresh_mbr_disk_with_4096_byte_sectors_round_trips") {
        return;
    }
    let d = tempdir();
    let disk = d.path().join("mbr4k.img");
    sh(
        fixtures().join("make-disk.sh").to_str().unwrap(),
        &[
            "--table",
            "mbr",
            "--sector-size",
            "4096",
            "--size",
            "72M",
            "--part",
            "fs=fat16,size=24M,label=MBRFAT,seed=11,files=60,cluster=4096",
            "--part",
            "fs=ntfs,size=20M,label=MBRNTFS,seed=12,files=60",
            "--part",
            "fs=ext4,size=rest,label=MBREXT4,seed=13,files=60,symlinks=1",
            disk.to_str().unwrap(),
        ],
    );
    let before = manifest(&disk, Some(4096), &d.path().join("before.manifest"));
    assert!(before.lines().filter(|l| l.contains("\tf\t")).count() >= 150);
    let image = d.path().join("mbr4k.strata");
    ok(run(&[
        &"create",
        &disk,
        &image,
        &"-q",
        &"--sector-size",
        &"4096",
    ]));
    let info: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"info", &image, &"--json"]))).unwrap();
    assert_eq!(info["sector_size"], 4096);
    let restored = d.path().join("restored.img");
    ok(run(&[&"restore", &image, &restored, &"-q"]));
    assert_eq!(sha256(&disk), sha256(&restored));
    let after = manifest(&restored, Some(4096), &d.path().join("after.manifest"));
    assert_eq!(before, after);
}
