//! Used-block maps: partition tables and filesystem allocation maps read from third-party
//! images with documented contents (`fixtures/third-party`), and disks built by the fixture
//! scripts with the real tools, imaged, restored and checked by those tools.
// Real mkfs tools, mounts, loop devices and xattrs: Unix only.
#![cfg(unix)]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use strata::blockdev::file::FileDev;
use strata::fs::FsOptions;
use strata::layout::{map_disk, DiskMap, Imaging};
use strata::partition::Scheme;

fn map_file(p: &Path, sector_size: u32) -> DiskMap {
    let dev = FileDev::open(p).unwrap();
    map_disk(&dev, sector_size, &FsOptions::default())
}

/// The one partition of a bare volume, which must have been mapped by its filesystem.
fn bare(map: &DiskMap, fs: &str, label: &str) -> strata::layout::PartReport {
    assert!(map.table.is_none(), "{map:#?}");
    assert_eq!(map.partitions.len(), 1);
    let p = map.partitions[0].clone();
    assert_eq!(p.fs.as_deref(), Some(fs), "{map:#?}");
    assert_eq!(p.label, label);
    assert_eq!(p.imaging, Imaging::UsedBlocks, "{map:#?}");
    assert!(map.warnings.is_empty(), "{:?}", map.warnings);
    p
}

#[test]
fn ext_images_from_ext4_view() {
    let d = tempdir();
    // (file, type, label, block size, used blocks as dumpe2fs counts them)
    for (file, fs, label, bs, used) in [
        (
            "test_disk1.bin.zst",
            "ext4",
            "ext4-view testfs",
            1024,
            20_742,
        ),
        ("test_disk_ext2.bin.zst", "ext2", "", 1024, 77_912),
        (
            "test_disk_ext3.bin.zst",
            "ext3",
            "ext4-view testfs",
            1024,
            8_257,
        ),
    ] {
        let img = third_party(&format!("ext4-view/{file}"), d.path());
        let map = map_file(&img, 512);
        let p = bare(&map, fs, label);
        assert_eq!(p.used_bytes, used * bs, "{file}");
        std::fs::remove_file(img).unwrap();
    }
}

#[test]
fn ntfs_volume_from_the_ntfs_crate() {
    let d = tempdir();
    let img = third_party("ntfs-rs/testfs1.zst", d.path());
    let p = bare(&map_file(&img, 512), "NTFS", "mylabel");
    // 2,675 clusters of 512 bytes marked in $Bitmap, plus the sector after the volume's last
    // cluster, where the backup boot sector is.
    assert_eq!(p.used_bytes, 2675 * 512 + 512);
}

#[test]
fn fat12_and_fat16_volumes_from_rust_fatfs() {
    let d = tempdir();
    for (file, fs, fat_sectors, root_sectors) in [
        ("fat12.img.zst", "FAT12", 6, 32),
        ("fat16.img.zst", "FAT16", 20, 32),
    ] {
        let img = third_party(&format!("rust-fatfs/{file}"), d.path());
        let p = bare(&map_file(&img, 512), fs, "Test!");
        // 1 reserved sector, 2 FATs, the root directory, then 35 used clusters of 512.
        let meta = (1 + 2 * fat_sectors + root_sectors) * 512;
        assert_eq!(p.used_bytes, meta + 35 * 512, "{file}");
    }
}

#[test]
fn exfat_volume_from_obhq_exfat() {
    let d = tempdir();
    let img = third_party("obhq-exfat/exfat.img.zst", d.path());
    let map = map_file(&img, 512);
    let p = bare(&map, "exFAT", "Test image");
    assert!(
        p.used_bytes >= 7 * 4096 && p.used_bytes < 7 * 4096 + 64 * 1024,
        "{p:?}"
    );
}

#[test]
fn mbr_disk_from_embedded_sdmmc() {
    let d = tempdir();
    let img = third_party("embedded-sdmmc/disk.img.zst", d.path());
    let map = map_file(&img, 512);
    let t = map.table.as_ref().expect("a table");
    assert_eq!(t.scheme, Scheme::Mbr);
    assert_eq!(t.disk_id, "0x2ba5c9dd");
    let got: Vec<_> = t
        .partitions
        .iter()
        .map(|p| (p.number, p.start / 512, p.len / 512, p.type_id.as_str()))
        .collect();
    assert_eq!(
        got,
        [(1, 2048, 262_144, "0x0e"), (2, 264_192, 784_384, "0x0c")]
    );
    let (p1, p2) = (&map.partitions[0], &map.partitions[1]);
    assert_eq!(
        (p1.fs.as_deref(), p1.label.as_str()),
        (Some("FAT16"), "P-FAT16")
    );
    assert_eq!(
        (p2.fs.as_deref(), p2.label.as_str()),
        (Some("FAT32"), "P-FAT32")
    );
    // 32,776 clusters of 2 KiB and 16,394 of 4 KiB in use, plus reserved sectors and FATs.
    assert!(p1.used_bytes >= 32_776 * 2048 && p1.used_bytes < 32_776 * 2048 + (1 << 20));
    assert!(p2.used_bytes >= 16_394 * 4096 && p2.used_bytes < 16_394 * 4096 + (2 << 20));
    assert_eq!(p1.imaging, Imaging::UsedBlocks);
    assert_eq!(p2.imaging, Imaging::UsedBlocks);
}

#[test]
fn gpt_disk_from_the_gpt_crate() {
    let d = tempdir();
    let img = Path::new(TESTDATA).join("gpt-crate/gpt-disk.img");
    let local = d.path().join("gpt-disk.img");
    std::fs::copy(&img, &local).unwrap();
    let map = map_file(&local, 512);
    let t = map.table.as_ref().expect("a table");
    assert_eq!(t.scheme, Scheme::Gpt);
    assert_eq!(t.disk_id, "1B6A2BFA-E92B-184C-A8A7-ED0610D54821");
    let got: Vec<_> = t
        .partitions
        .iter()
        .map(|p| (p.number, p.start / 512, p.len / 512, p.type_name.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, 34, 1, "Linux filesystem"),
            (2, 35, 4, "Linux filesystem")
        ]
    );
    assert!(t.warnings.is_empty());
    // Nothing recognisable inside: every block is kept, and so is the whole disk.
    assert_eq!(map.ranges.total(), 36_864);

    // A damaged primary header: the backup copy is used, with a warning.
    write_at(&local, 512 + 40, b"damage");
    let map = map_file(&local, 512);
    let t = map.table.as_ref().expect("the backup is used");
    assert_eq!(t.partitions.len(), 2);
    assert!(t.warnings[0].contains("primary GPT"), "{:?}", t.warnings);

    // Both damaged: no table; every block of the disk, with a warning.
    write_at(&local, 71 * 512 + 40, b"damage");
    let map = map_file(&local, 512);
    assert!(map.table.is_none());
    assert!(map.table_error.as_deref().unwrap().contains("GPT"));
    assert_eq!(map.ranges.total(), 36_864);
    assert!(
        map.warnings[0].contains("every block"),
        "{:?}",
        map.warnings
    );
}

#[test]
fn other_ntfs_samples_map_or_fall_back_cleanly() {
    let d = tempdir();
    // A bare NTFS volume with an attribute list: 1,488 of 9,471 4-KiB clusters used.
    let img = third_party("go-ntfs-charlie/charlie.dd.zst", d.path());
    let p = bare(&map_file(&img, 512), "NTFS", "Charlie");
    // The 9,471st cluster ends before the volume does: from there to the end of the file
    // (the backup boot sector and beyond) is kept.
    assert_eq!(p.used_bytes, 1488 * 4096 + (p.len - 9471 * 4096), "{p:?}");
    // 2 MiB clusters: a one-partition MBR disk.
    let img = third_party("ntfs-samples-msuhanov/ntfs-2m.raw.zst", d.path());
    let map = map_file(&img, 512);
    let p = &map.partitions[0];
    assert_eq!(p.fs.as_deref(), Some("NTFS"));
    assert_eq!(p.label, "2M");
    match &p.imaging {
        Imaging::UsedBlocks => assert!(p.used_bytes >= 20 * (2 << 20), "{p:?}"),
        Imaging::EveryBlock(r) => assert_eq!(p.used_bytes, p.len, "{r}"),
    }
    // The ext4 whose journal needs recovery: its bitmaps may be stale, so every block.
    let img = third_party("ext4-view/test_disk_4k_block_journal.bin.zst", d.path());
    let map = map_file(&img, 512);
    let p = &map.partitions[0];
    assert_eq!(p.fs.as_deref(), Some("ext4"));
    assert_eq!(p.used_bytes, 16_384 * 4096);
    match &p.imaging {
        Imaging::EveryBlock(r) => assert!(r.contains("needs recovery"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(map.warnings[0].contains("needs recovery"));
}

/// 4 KiB blocks of `p` that start with `magic`.
fn blocks_starting_with(p: &Path, magic: &[u8]) -> u64 {
    use std::io::Read;
    let mut f = std::fs::File::open(p).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        let got = f.read(&mut buf).unwrap();
        if got == 0 {
            return n;
        }
        n += buf[..got]
            .chunks(4096)
            .filter(|b| b.starts_with(magic))
            .count() as u64;
    }
}

#[test]
fn free_space_with_old_data_is_not_imaged_ntfs_ramslack() {
    // Windows 10 NTFS on a disk filled with "PTRN" before formatting: 256,365 free clusters
    // still hold it.
    let d = tempdir();
    let disk = third_party("ntfs-samples-msuhanov/ntfs-ramslack.raw.zst", d.path());
    assert!(blocks_starting_with(&disk, b"PTRN") > 250_000);
    let image = d.path().join("ramslack.strata");
    ok(run(&[&"create", &disk, &image, &"-q"]));
    let info: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"info", &image, &"--json"]))).unwrap();
    assert_eq!(info["content"], "used-blocks");
    let p = &info["layout"]["partitions"][0];
    assert_eq!(p["fs"], "NTFS");
    assert_eq!(p["label"], "RAM Slack");
    assert_eq!(p["imaging"]["mode"], "used_blocks");
    // 5,003 used clusters of 4 KiB, and what lies outside the partition (64 KiB before it,
    // ~3 MiB after it).
    let data = info["data_bytes"].as_u64().unwrap();
    assert!(data < 5_003 * 4096 + (4 << 20), "{data}");
    let restored = d.path().join("restored.img");
    std::fs::remove_file(&disk).unwrap();
    ok(run(&[&"restore", &image, &restored, &"-q"]));
    // The pattern may come back only outside the partition (15 blocks before it, 753
    // after it) and in allocated clusters (Windows does not initialise all of $LogFile).
    let left = blocks_starting_with(&restored, b"PTRN");
    assert!(
        left <= 15 + 753 + 5_003,
        "{left} blocks of old data came back"
    );
}

/// The sample disk (GPT: FAT32, NTFS, ext4) with one filesystem's map damaged: that
/// partition is imaged whole, with a warning, and the disk comes back identical.
fn damaged_map_falls_back(what: &str, damage: impl Fn(&Path), part: usize, reason: &str) {
    let d = tempdir();
    let disk = sample_disk(d.path());
    damage(&disk);
    let dev = FileDev::open(&disk).unwrap();
    let map = map_disk(&dev, 512, &FsOptions::default());
    for (i, p) in map.partitions.iter().enumerate() {
        if i == part {
            assert_eq!(p.used_bytes, p.len, "{what}");
            match &p.imaging {
                Imaging::EveryBlock(r) => assert!(r.contains(reason), "{what}: {r}"),
                other => panic!("{what}: {other:?}"),
            }
        } else {
            assert_eq!(p.imaging, Imaging::UsedBlocks, "{what}");
        }
    }
    let image = d.path().join("damaged.strata");
    let o = run(&[&"create", &disk, &image, &"-q"]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning") && err.contains(&format!("partition {}", part + 1)),
        "{what}: {err}"
    );
    let info = ok(run(&[&"info", &image]));
    assert!(info.contains("every block"), "{info}");
    let restored = d.path().join("restored.img");
    ok(run(&[&"restore", &image, &restored, &"-q"]));
    // The sample's free space is zeros, so a complete image restores it bit for bit.
    assert!(same_content(&disk, &restored), "{what}");
}

const SAMPLE_P1: u64 = 1_048_576;
const SAMPLE_P2: u64 = 42_991_616;
const SAMPLE_P3: u64 = 68_157_440;

fn read_u32(p: &Path, at: u64) -> u32 {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut b = [0u8; 4];
    f.read_exact(&mut b).unwrap();
    u32::from_le_bytes(b)
}

#[test]
fn damaged_ext4_bitmap_images_the_partition_whole() {
    damaged_map_falls_back(
        "ext4 block bitmap zeroed",
        |disk| {
            // Group descriptor 0 is in block 1 (4 KiB blocks); bg_block_bitmap_lo at 0x0.
            let bitmap = u64::from(read_u32(disk, SAMPLE_P3 + 4096));
            write_at(disk, SAMPLE_P3 + bitmap * 4096, &[0u8; 4096]);
        },
        2,
        "checksum",
    );
}

#[test]
fn damaged_ntfs_bitmap_record_images_the_partition_whole() {
    damaged_map_falls_back(
        "NTFS $Bitmap file record damaged",
        |disk| {
            // $MFT LCN at 0x30 of the boot sector, 4 KiB clusters, 1 KiB records; record 6.
            let mft = u64::from(read_u32(disk, SAMPLE_P2 + 0x30)) * 4096;
            write_at(disk, SAMPLE_P2 + mft + 6 * 1024, b"XXXX");
        },
        1,
        "NTFS",
    );
}

#[test]
fn damaged_fat_images_the_partition_whole() {
    damaged_map_falls_back(
        "FAT entry 0 overwritten",
        |disk| {
            // 32 reserved sectors of 512 bytes, then the first FAT.
            write_at(disk, SAMPLE_P1 + 32 * 512, &[0x12, 0x34, 0x56, 0x07]);
        },
        0,
        "media byte",
    );
}

// ---------------------------------------------------------------------------------------
// Disks built by fixtures/make-disk.sh with the real tools (root: loop devices, mounts).
// ---------------------------------------------------------------------------------------

fn make_disk(args: &[&str], out: &Path) {
    let mut a: Vec<&str> = args.to_vec();
    a.push(out.to_str().unwrap());
    sh(fixtures().join("make-disk.sh").to_str().unwrap(), &a);
}

/// Runs the filesystem's own checker, read-only, on every recognised partition.
fn fsck_all(disk: &Path, sector_size: u32) {
    let dev = FileDev::open(disk).unwrap();
    let map = map_disk(&dev, sector_size, &FsOptions::default());
    for p in &map.partitions {
        let check: &[&str] = match p.fs.as_deref() {
            Some("FAT12" | "FAT16" | "FAT32") => &["fsck.fat", "-n"],
            Some("ext2" | "ext3" | "ext4") => &["e2fsck", "-fn"],
            Some("NTFS") => &["ntfsfix", "-n"],
            Some("exFAT") => &["fsck.exfat", "-n"],
            _ => continue,
        };
        let ss = sector_size.to_string();
        let (off, len) = (p.start.to_string(), p.len.to_string());
        let lo = Loop(sh(
            "losetup",
            &[
                "--find",
                "--show",
                "--read-only",
                "--sector-size",
                &ss,
                "--offset",
                &off,
                "--sizelimit",
                &len,
                disk.to_str().unwrap(),
            ],
        ));
        let o = std::process::Command::new(check[0])
            .args(&check[1..])
            .arg(&lo.0)
            .output()
            .unwrap();
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && !text.to_lowercase().contains("corrupt"),
            "{} on partition {} ({:?}): {text}",
            check[0],
            p.number,
            p.fs
        );
    }
}

const STALE: &[u8] = b"STRATA-STALE-BLK";

/// Images `disk` by used blocks and as a clone, restores the used-block image, and checks
/// it with the real tools. Returns (original manifest, restored manifest, restored disk).
/// `ss` is the disk's sector size, given to `create` unless `tell` is false.
fn round_trip_checked(
    d: &Path,
    disk: &Path,
    ss: u32,
    tell: bool,
    extra: &[&str],
) -> (String, String, PathBuf) {
    let ss_arg = if tell { ss.to_string() } else { "512".into() };
    let image = d.join("used.strata");
    let clone = d.join("clone.strata");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"create",
        &disk,
        &image,
        &"-q",
        &"-f",
        &"--sector-size",
        &ss_arg,
    ];
    for e in extra {
        args.push(e);
    }
    ok(run(&args));
    ok(run(&[
        &"create",
        &disk,
        &clone,
        &"-q",
        &"--clone",
        &"--sector-size",
        &ss_arg,
    ]));
    let (used, whole) = (info_json(&image), info_json(&clone));
    assert_eq!(used["content"], "used-blocks");
    assert_eq!(whole["content"], "clone");
    let (u, c) = (
        used["image_bytes"].as_u64().unwrap(),
        whole["image_bytes"].as_u64().unwrap(),
    );
    // Free space holds incompressible old data: a clone carries it, the image must not.
    assert!(u * 5 < c, "used-block image {u} bytes vs clone {c} bytes");
    let restored = d.join("restored.img");
    ok(run(&[&"restore", &image, &restored, &"-q", &"-f"]));
    fsck_all(&restored, ss);
    let before = manifest(disk, Some(ss), &d.join("before.manifest"));
    let after = manifest(&restored, Some(ss), &d.join("after.manifest"));
    // Old data is gone from the restored free space (what is left sits in the slack of
    // used clusters and 4 KiB blocks shared with used ones).
    let (was, left) = (
        blocks_starting_with(disk, STALE),
        blocks_starting_with(&restored, STALE),
    );
    assert!(
        was > 5_000 && left * 50 < was,
        "{left} of {was} stale blocks came back"
    );
    ext_free_blocks_are_zero(&restored, ss);
    (before, after, restored)
}

/// Every block that dumpe2fs lists as free, in every ext partition of `disk`, reads as
/// zeros: e2fsprogs, not strata's own map, says what is free.
fn ext_free_blocks_are_zero(disk: &Path, sector_size: u32) {
    use std::io::{Read, Seek, SeekFrom};
    let dev = FileDev::open(disk).unwrap();
    let map = map_disk(&dev, sector_size, &FsOptions::default());
    let mut f = std::fs::File::open(disk).unwrap();
    for p in &map.partitions {
        if !matches!(p.fs.as_deref(), Some("ext2" | "ext3" | "ext4")) {
            continue;
        }
        let (off, len) = (p.start.to_string(), p.len.to_string());
        let lo = Loop(sh(
            "losetup",
            &[
                "--find",
                "--show",
                "--read-only",
                "--offset",
                &off,
                "--sizelimit",
                &len,
                disk.to_str().unwrap(),
            ],
        ));
        let dump = sh("dumpe2fs", &[&lo.0]);
        let bs = dumpe2fs_block_size(&dump);
        let mut checked = 0u64;
        for l in dump.lines() {
            // Per-group lines are indented; the header line "Free blocks: N" is a count.
            let Some(list) = l.strip_prefix("  Free blocks:") else {
                continue;
            };
            for r in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                let mut buf = vec![0u8; ((b - a + 1) * bs) as usize];
                f.seek(SeekFrom::Start(p.start + a * bs)).unwrap();
                f.read_exact(&mut buf).unwrap();
                assert!(
                    buf.iter().all(|&x| x == 0),
                    "partition {}: free blocks {a}-{b} are not zeros",
                    p.number
                );
                checked += b - a + 1;
            }
        }
        assert!(checked > 0, "partition {}: no free blocks listed", p.number);
    }
}

/// Fails with the lines that differ (not the whole manifests).
fn same_manifest(want: &str, got: &str) {
    if want != got {
        let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
        let missing: Vec<_> = w.iter().filter(|l| !g.contains(l)).take(10).collect();
        let extra: Vec<_> = g.iter().filter(|l| !w.contains(l)).take(10).collect();
        panic!("manifests differ\nmissing: {missing:#?}\nunexpected: {extra:#?}");
    }
}

fn sha256_of_zeros(len: usize) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(vec![0u8; len])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn mbr_with_logical_partitions_swap_pagefile_and_old_data() {
    if !require_root("mbr_with_logical_partitions_swap_pagefile_and_old_data") {
        return;
    }
    let d = tempdir();
    let disk = d.path().join("logical.img");
    make_disk(
        &[
            "--table",
            "mbr",
            "--stale-data",
            "5",
            "--size",
            "120M",
            "--part",
            "fs=fat16,size=24M,label=LFAT,seed=21,files=40,cluster=4096",
            "--part",
            "fs=ntfs,size=20M,label=LNTFS,seed=22,files=40,xattrs=1,pagefile=3M",
            "--part",
            "fs=swap,size=4M,label=LSWAP",
            "--part",
            "fs=ext4,size=24M,label=LEXT4,seed=23,files=40,symlinks=1,xattrs=1",
            "--part",
            "fs=raw,size=4M",
            "--part",
            "fs=exfat,size=12M,label=LEXFAT,seed=25,files=30",
            "--part",
            "fs=ext2,size=rest,label=LEXT2,seed=24,files=20",
        ],
        &disk,
    );
    // The table as sfdisk reads it.
    let sf: serde_json::Value =
        serde_json::from_str(&sh("sfdisk", &["-J", disk.to_str().unwrap()])).unwrap();
    let want: Vec<(u64, u64)> = sf["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "5")
        .map(|p| {
            (
                p["start"].as_u64().unwrap() * 512,
                p["size"].as_u64().unwrap() * 512,
            )
        })
        .collect();
    let dev = FileDev::open(&disk).unwrap();
    let map = map_disk(&dev, 512, &FsOptions::default());
    let t = map.table.as_ref().unwrap();
    let got: Vec<(u64, u64)> = t.partitions.iter().map(|p| (p.start, p.len)).collect();
    assert_eq!(got, want);
    let numbers: Vec<u32> = t.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 3, 5, 6, 7, 8]);
    let fs: Vec<Option<&str>> = map.partitions.iter().map(|p| p.fs.as_deref()).collect();
    assert_eq!(
        fs,
        [
            Some("FAT16"),
            Some("NTFS"),
            Some("Linux swap"),
            Some("ext4"),
            None,
            Some("exFAT"),
            Some("ext2")
        ]
    );
    assert_eq!(map.partitions[2].used_bytes, 4096); // the swap header only
    assert_eq!(
        map.partitions[1].skipped,
        [("pagefile.sys".to_string(), 3 << 20)]
    );

    let (before, after, _) = round_trip_checked(d.path(), &disk, 512, true, &[]);
    assert!(
        before.contains("\tx\t"),
        "no xattrs / streams in the manifest"
    );
    // pagefile.sys comes back as zeros; everything else is identical.
    let zeros = sha256_of_zeros(3 << 20);
    let fix = |m: &str| -> String {
        m.lines()
            .map(|l| {
                if l.starts_with("p2\t/pagefile.sys\t") {
                    let mut f: Vec<&str> = l.split('\t').collect();
                    f[5] = &zeros;
                    f.join("\t")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    assert!(before.contains("p2\t/pagefile.sys\t"));
    assert_ne!(before, after);
    same_manifest(&fix(&before), &after);
    let info = ok(run(&[&"info", &d.path().join("used.strata")]));
    assert!(info.contains("no filesystem recognised"), "{info}");
    assert!(info.contains("ext2 \"LEXT2\""), "{info}");

    // --keep-pagefile keeps it.
    let kept = d.path().join("kept.strata");
    ok(run(&[&"create", &disk, &kept, &"-q", &"--keep-pagefile"]));
    let restored = d.path().join("kept.img");
    ok(run(&[&"restore", &kept, &restored, &"-q"]));
    assert_eq!(
        manifest(&restored, Some(512), &d.path().join("kept.manifest")),
        before
    );
}

#[test]
fn gpt_with_4096_byte_sectors_and_old_data() {
    if !require_root("gpt_with_4096_byte_sectors_and_old_data") {
        return;
    }
    let d = tempdir();
    let disk = d.path().join("gpt4k.img");
    make_disk(
        &[
            "--table",
            "gpt",
            "--sector-size",
            "4096",
            "--stale-data",
            "6",
            "--size",
            "72M",
            "--part",
            "fs=fat16,size=20M,label=GFAT,seed=31,files=40,cluster=4096",
            "--part",
            "fs=ntfs,size=20M,label=GNTFS,seed=32,files=40,xattrs=1",
            "--part",
            "fs=ext4,size=rest,label=GEXT4,seed=33,files=40,symlinks=1,xattrs=1",
        ],
        &disk,
    );
    let (before, after, restored) = round_trip_checked(d.path(), &disk, 4096, true, &[]);
    assert!(before.lines().count() > 100);
    same_manifest(&before, &after);
    // The backup GPT at the disk's end came back: sgdisk finds no problem.
    let lo = Loop::attach(&restored, 4096, true);
    let v = sh("sgdisk", &["-v", &lo.0]);
    assert!(v.contains("No problems found"), "{v}");
    let info = info_json(&d.path().join("used.strata"));
    assert_eq!(info["layout"]["table"]["sector_size"], 4096);
    assert_eq!(info["layout"]["partitions"][1]["label"], "GNTFS");
}

#[test]
fn bare_filesystems_without_a_table() {
    if !require_root("bare_filesystems_without_a_table") {
        return;
    }
    let d = tempdir();
    for (fs, label) in [
        ("ext4", "BAREEXT4"),
        ("ntfs", "BARENTFS"),
        ("exfat", "BAREEXFAT"),
        ("fat32", "BAREFAT"),
    ] {
        let disk = d.path().join(format!("bare-{fs}.img"));
        make_disk(
            &[
                "--table",
                "none",
                "--size",
                "40M",
                "--part",
                &format!("fs={fs},size=40M,label={label},seed=41,files=30"),
            ],
            &disk,
        );
        let image = d.path().join(format!("bare-{fs}.strata"));
        ok(run(&[&"create", &disk, &image, &"-q"]));
        let info = info_json(&image);
        assert!(info["layout"]["table"].is_null());
        let p = &info["layout"]["partitions"][0];
        assert_eq!(p["label"], label, "{info}");
        assert_eq!(p["imaging"]["mode"], "used_blocks", "{info}");
        // Free space was zeros: the restored volume is the same, byte for byte.
        let restored = d.path().join(format!("bare-{fs}.restored"));
        ok(run(&[&"restore", &image, &restored, &"-q"]));
        assert!(same_content(&disk, &restored), "{fs}");
    }
}

#[test]
fn damaged_metadata_never_panics() {
    use strata::blockdev::window::MemDev;
    let d = tempdir();
    let images = [
        third_party("ntfs-rs/testfs1.zst", d.path()),
        third_party("rust-fatfs/fat12.img.zst", d.path()),
        third_party("rust-fatfs/fat16.img.zst", d.path()),
        third_party("obhq-exfat/exfat.img.zst", d.path()),
        third_party("ext4-view/test_disk_ext2.bin.zst", d.path()),
        sample_disk(d.path()),
    ];
    for img in images {
        let mut dev = MemDev(std::fs::read(&img).unwrap());
        let clean = map_disk(&dev, 512, &FsOptions::default());
        let len = dev.0.len();
        // Overwrite 8 bytes at pseudo-random places, mostly in the metadata-dense start.
        let r = noise(8 * 600, 77);
        for (i, w) in r.chunks_exact(8).enumerate() {
            let x = u64::from_le_bytes(w.try_into().unwrap()) as usize;
            let at = if i % 3 == 0 {
                x % len
            } else {
                x % len.min(1 << 20)
            };
            let at = at.min(len - 8);
            let saved: [u8; 8] = dev.0[at..at + 8].try_into().unwrap();
            let junk = if i % 2 == 0 {
                [0u8; 8]
            } else {
                *b"\xff\x7f\x00\x80junk"
            };
            dev.0[at..at + 8].copy_from_slice(&junk);
            let map = map_disk(&dev, 512, &FsOptions::default());
            // Whatever happened, the map stays inside the disk.
            assert!(map
                .ranges
                .as_slice()
                .last()
                .is_none_or(|r| r.1 <= len as u64));
            dev.0[at..at + 8].copy_from_slice(&saved);
        }
        let again = map_disk(&dev, 512, &FsOptions::default());
        assert_eq!(clean.ranges, again.ranges);
    }
}

#[test]
fn damaged_partition_table_images_the_whole_disk() {
    let d = tempdir();
    let disk = sample_disk(d.path());
    // Both GPT headers (LBA 1 and the last LBA): the protective MBR is all that is left.
    let len = std::fs::metadata(&disk).unwrap().len();
    write_at(&disk, 512 + 24, &[0xEE; 8]);
    write_at(&disk, len - 512 + 24, &[0xEE; 8]);
    let image = d.path().join("damaged.strata");
    let (code, _, err) = outcome(&run(&[&"create", &disk, &image, &"-q"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: partition table unreadable") && err.contains("every block"),
        "{err}"
    );
    let info = ok(run(&[&"info", &image]));
    assert!(info.contains("table:        unreadable"), "{info}");
    let restored = d.path().join("restored.img");
    ok(run(&[&"restore", &image, &restored, &"-q"]));
    assert!(same_content(&disk, &restored));
}

#[test]
fn mbr_with_4096_byte_sectors_is_recognised_in_a_raw_file() {
    if !require_root("mbr_with_4096_byte_sectors_is_recognised_in_a_raw_file") {
        return;
    }
    let d = tempdir();
    let disk = d.path().join("mbr4k.img");
    make_disk(
        &[
            "--table",
            "mbr",
            "--sector-size",
            "4096",
            "--stale-data",
            "7",
            "--size",
            "48M",
            "--part",
            "fs=ntfs,size=20M,label=M4NTFS,seed=51,files=40",
            "--part",
            "fs=ext4,size=rest,label=M4EXT4,seed=52,files=40",
        ],
        &disk,
    );
    // --sector-size 512 (the default for raw files): the filesystems tell it is 4096.
    let (before, after, _) = round_trip_checked(d.path(), &disk, 4096, false, &[]);
    same_manifest(&before, &after);
    assert!(before.lines().count() > 60);
    let info = info_json(&d.path().join("used.strata"));
    assert_eq!(info["layout"]["table"]["sector_size"], 4096, "{info}");
    for p in info["layout"]["partitions"].as_array().unwrap() {
        assert_eq!(p["imaging"]["mode"], "used_blocks", "{info}");
    }
}

/// `dumpe2fs -h` field value.
fn dumpe2fs_field(img: &Path, field: &str) -> u64 {
    let out = sh("dumpe2fs", &["-h", img.to_str().unwrap()]);
    out.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .trim_start_matches(':')
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in dumpe2fs output"))
}

#[test]
fn ext_layouts_made_by_mke2fs() {
    // Group layouts the parser must handle, each checked against dumpe2fs's count of used
    // blocks and by a byte-exact round trip (free space is zeros here).
    let d = tempdir();
    let tree = d.path().join("tree");
    sh(
        "python3",
        &[
            fixtures().join("gen-files.py").to_str().unwrap(),
            "--quiet",
            "--seed",
            "61",
            "--count",
            "60",
            "--big",
            "3",
            tree.to_str().unwrap(),
        ],
    );
    for (name, args) in [
        (
            "ext4 4k, small groups",
            &["-t", "ext4", "-b", "4096", "-g", "2048"][..],
        ),
        ("ext4 1k", &["-t", "ext4", "-b", "1024"][..]),
        (
            "ext4 no flex_bg",
            &["-t", "ext4", "-b", "4096", "-g", "4096", "-O", "^flex_bg"][..],
        ),
        (
            "ext4 meta_bg",
            &["-t", "ext4", "-b", "1024", "-O", "meta_bg,^resize_inode"][..],
        ),
        (
            "ext4 sparse_super2",
            &[
                "-t",
                "ext4",
                "-b",
                "4096",
                "-g",
                "2048",
                "-O",
                "sparse_super2",
            ][..],
        ),
        (
            "ext4 32-bit",
            &[
                "-t",
                "ext4",
                "-b",
                "4096",
                "-g",
                "2048",
                "-O",
                "^64bit,^metadata_csum",
            ][..],
        ),
        (
            "ext3 no sparse_super",
            &[
                "-t",
                "ext3",
                "-b",
                "1024",
                "-O",
                "^sparse_super,^resize_inode",
            ][..],
        ),
        ("ext2", &["-t", "ext2", "-b", "4096", "-g", "4096"][..]),
    ] {
        let img = d.path().join("fs.img");
        let _ = std::fs::remove_file(&img);
        let mut a = vec!["-q", "-F", "-L", "EXTTEST", "-d", tree.to_str().unwrap()];
        a.extend_from_slice(args);
        a.extend_from_slice(&[img.to_str().unwrap(), "64M"]);
        sh("mke2fs", &a);
        let map = map_file(&img, 512);
        let p = bare(
            &map,
            &map.partitions[0].fs.clone().unwrap_or_default(),
            "EXTTEST",
        );
        let bs = dumpe2fs_field(&img, "Block size");
        let used = dumpe2fs_field(&img, "Block count") - dumpe2fs_field(&img, "Free blocks");
        assert_eq!(p.used_bytes, used * bs, "{name}");
        let image = d.path().join("fs.strata");
        ok(run(&[&"create", &img, &image, &"-q", &"-f"]));
        let restored = d.path().join("fs.restored");
        ok(run(&[&"restore", &image, &restored, &"-q", &"-f"]));
        assert!(same_content(&img, &restored), "{name}");
    }
}

#[test]
fn fat_layouts_made_by_mkfs_fat() {
    // FAT12/16/32 with several cluster sizes, filled by mtools; checked against fsck.fat's
    // count of used clusters and by a byte-exact round trip.
    let d = tempdir();
    let tree = d.path().join("tree");
    sh(
        "python3",
        &[
            fixtures().join("gen-files.py").to_str().unwrap(),
            "--quiet",
            "--seed",
            "71",
            "--count",
            "40",
            "--big",
            "0",
            tree.to_str().unwrap(),
        ],
    );
    for (bits, size_kib, spc) in [
        ("12", "2000", "1"),
        ("12", "8192", "8"),
        ("16", "32768", "1"),
        ("16", "65536", "8"),
        ("32", "65536", "1"),
        ("32", "270000", "8"),
    ] {
        let name = format!("FAT{bits} {size_kib} KiB, {spc} sectors per cluster");
        let img = d.path().join("fat.img");
        let _ = std::fs::remove_file(&img);
        sh(
            "mkfs.fat",
            &[
                "-C",
                "-F",
                bits,
                "-s",
                spc,
                "-n",
                "FATTEST",
                img.to_str().unwrap(),
                size_kib,
            ],
        );
        let entries: Vec<String> = std::fs::read_dir(&tree)
            .unwrap()
            .map(|e| e.unwrap().path().to_str().unwrap().to_string())
            .collect();
        let mut args = vec!["-i", img.to_str().unwrap(), "-s", "-Q"];
        args.extend(entries.iter().map(|s| s.as_str()));
        args.push("::/");
        sh("mcopy", &args);
        let map = map_file(&img, 512);
        let p = bare(&map, &format!("FAT{bits}"), "FATTEST");
        // fsck.fat -v: "...: N files, USED/TOTAL clusters"
        let o = std::process::Command::new("fsck.fat")
            .args(["-n", img.to_str().unwrap()])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(o.status.success(), "{name}: {out}");
        let used: u64 = out
            .split("files, ")
            .nth(1)
            .and_then(|t| t.split('/').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: {out}"));
        let cluster = 512 * spc.parse::<u64>().unwrap();
        let meta = p.used_bytes - used * cluster;
        // Reserved sectors, FATs, root directory, and the sectors after the last cluster.
        assert!(
            meta < 2 << 20,
            "{name}: {} used bytes, {used} clusters",
            p.used_bytes
        );
        let image = d.path().join("fat.strata");
        ok(run(&[&"create", &img, &image, &"-q", &"-f"]));
        let restored = d.path().join("fat.restored");
        ok(run(&[&"restore", &image, &restored, &"-q", &"-f"]));
        assert!(same_content(&img, &restored), "{name}");
    }
    // mkfs.fat makes FAT32 volumes with fewer clusters than the specification wants; the
    // BPB layout (no 16-bit FAT size) says FAT32, as the Linux driver reads it.
    let img = d.path().join("small32.img");
    sh(
        "mkfs.fat",
        &[
            "-C",
            "-F",
            "32",
            "-s",
            "8",
            "-n",
            "SMALL32",
            img.to_str().unwrap(),
            "65536",
        ],
    );
    bare(&map_file(&img, 512), "FAT32", "SMALL32");
}

#[test]
fn ext_with_a_stale_fat_boot_sector_is_imaged_whole() {
    // Both signatures: which filesystem is current cannot be told, so nothing is left out.
    let d = tempdir();
    let (ext, fat) = (d.path().join("ext.img"), d.path().join("fat.img"));
    sh(
        "mke2fs",
        &["-q", "-F", "-t", "ext4", ext.to_str().unwrap(), "16M"],
    );
    sh("mkfs.fat", &["-C", fat.to_str().unwrap(), "16384"]);
    let boot = std::fs::read(&fat).unwrap()[..512].to_vec();
    write_at(&ext, 0, &boot);
    let map = map_file(&ext, 512);
    let p = &map.partitions[0];
    assert_eq!(p.used_bytes, 16 << 20);
    match &p.imaging {
        Imaging::EveryBlock(r) => assert!(r.contains("both ext4 and FAT16"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(map.warnings.len(), 1, "{:?}", map.warnings);
}

#[test]
fn ntfs_alternate_data_streams_survive_charlie() {
    if !require_root("ntfs_alternate_data_streams_survive_charlie") {
        return;
    }
    // A Windows-made bare NTFS volume whose /Nine.txt has three streams, one of them in an
    // extension record (through $ATTRIBUTE_LIST).
    let d = tempdir();
    let vol = third_party("go-ntfs-charlie/charlie.dd.zst", d.path());
    let image = d.path().join("charlie.strata");
    ok(run(&[&"create", &vol, &image, &"-q"]));
    std::fs::remove_file(&vol).unwrap();
    let restored = d.path().join("charlie.restored");
    ok(run(&[&"restore", &image, &restored, &"-q"]));
    let lo = Loop::attach(&restored, 512, true);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    sh("ntfs-3g", &["-o", "ro", &lo.0, mnt.to_str().unwrap()]);
    let check = std::panic::catch_unwind(|| {
        let f = mnt.join("Nine.txt");
        let data = std::fs::read(&f).unwrap();
        assert_eq!(data.len(), 5000);
        assert_eq!(
            hex_sha(&data),
            "cd841188f2034920150512139f5decc6b13e6af52b49522395aebe292bf2c6df"
        );
        // ntfs-3g shows streams as user.* xattrs; expected/charlie.listing.txt gives them.
        for (name, size, sha) in [
            ("user.111", 5005, "e8e8c473ba6cb75c"),
            ("user.222", 56, "90190c1d304cab72"),
            ("user.333", 6005, "5375ee1662a98ee8"),
        ] {
            let v = xattr(&f, name);
            assert_eq!(v.len(), size, "{name}");
            assert!(hex_sha(&v).starts_with(sha), "{name}");
        }
    });
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    check.unwrap();
}

/// An extended attribute's value (Linux).
fn xattr(path: &Path, name: &str) -> Vec<u8> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len >= 0,
        "getxattr {name}: {}",
        std::io::Error::last_os_error()
    );
    buf.truncate(len as usize);
    buf
}

#[test]
fn encrypted_volumes_are_imaged_whole_without_a_warning() {
    use strata::blockdev::window::MemDev;
    // LUKS2 header (magic, version 2, label at 24) and a BitLocker boot sector.
    let mut luks = vec![0u8; 4 << 20];
    luks[..8].copy_from_slice(b"LUKS\xba\xbe\x00\x02");
    luks[24..31].copy_from_slice(b"secrets");
    let mut bitlocker = vec![0u8; 4 << 20];
    bitlocker[..11].copy_from_slice(b"\xeb\x58\x90-FVE-FS-");
    bitlocker[510..512].copy_from_slice(&[0x55, 0xAA]);
    for (dev, fs, label) in [(luks, "LUKS", "secrets"), (bitlocker, "BitLocker", "")] {
        let map = map_disk(&MemDev(dev), 512, &FsOptions::default());
        let p = &map.partitions[0];
        assert_eq!((p.fs.as_deref(), p.label.as_str()), (Some(fs), label));
        assert_eq!(p.used_bytes, 4 << 20);
        match &p.imaging {
            Imaging::EveryBlock(r) => assert!(r.contains("encrypted"), "{r}"),
            other => panic!("{other:?}"),
        }
        assert!(map.warnings.is_empty(), "{:?}", map.warnings);
    }
}
