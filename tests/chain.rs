//! Backup chains on real data: a disk changed between points through the kernel's ext4,
//! ntfs-3g, mtools and raw writes; every point of a chain mixing incremental and
//! differential images restores byte-identical; damaged, replaced or missing parents give
//! clear errors; chains can move; consolidation keeps every remaining point intact.
// Real mounts, loop devices and POSIX file APIs: Linux only.
#![cfg(unix)]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// (start, size) in bytes of each partition, from sfdisk.
fn partitions(disk: &Path) -> Vec<(u64, u64)> {
    let j: serde_json::Value =
        serde_json::from_str(&sh("sfdisk", &["--json", disk.to_str().unwrap()])).unwrap();
    let ss = j["partitiontable"]["sectorsize"].as_u64().unwrap();
    j["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap() * ss,
                p["size"].as_u64().unwrap() * ss,
            )
        })
        .collect()
}

/// A filesystem of `disk` mounted read-write through the real driver; unmounted on drop.
struct Mounted {
    dir: tempfile::TempDir,
    dev: String,
    fuse: Option<Child>,
}

impl Mounted {
    fn new(disk: &Path, (start, size): (u64, u64), fstype: &str) -> Mounted {
        let dev = sh(
            "losetup",
            &[
                "--find",
                "--show",
                "--offset",
                &start.to_string(),
                "--sizelimit",
                &size.to_string(),
                disk.to_str().unwrap(),
            ],
        );
        let dir = tempdir();
        let mnt = dir.path().to_str().unwrap().to_string();
        let fuse = if fstype == "ntfs" {
            // In the foreground, so that unmounting can wait for it to finish writing.
            let child = Command::new("ntfs-3g")
                .args(["-o", "no_detach", &dev, &mnt])
                .spawn()
                .expect("ntfs-3g is needed");
            for _ in 0..200 {
                if std::fs::read_to_string("/proc/mounts")
                    .unwrap()
                    .contains(&mnt)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            Some(child)
        } else {
            sh("mount", &["-t", fstype, &dev, &mnt]);
            None
        };
        Mounted { dir, dev, fuse }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
        if let Some(mut c) = self.fuse.take() {
            let _ = c.wait();
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// Runs an mtools command on the FAT partition at `offset`.
fn mtools(cmd: &str, disk: &Path, offset: u64, args: &[&str]) {
    let img = format!("{}@@{offset}", disk.display());
    let mut all = vec!["-i", img.as_str()];
    all.extend_from_slice(args);
    let o = Command::new(cmd)
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(&all)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn create(disk: &Path, image: &Path, parent: Option<(&str, &Path)>) -> serde_json::Value {
    create_with(disk, image, parent, &[])
}

fn create_with(
    disk: &Path,
    image: &Path,
    parent: Option<(&str, &Path)>,
    extra: &[&str],
) -> serde_json::Value {
    let mut c = strata();
    c.arg("create")
        .arg(disk)
        .arg(image)
        .arg("--json")
        .args(extra);
    if let Some((flag, p)) = parent {
        c.arg(flag).arg(p);
    }
    serde_json::from_str(&ok(c.output().unwrap())).unwrap()
}

fn restore_sha(image: &Path, dir: &Path, extra: &[&str]) -> String {
    let target = dir.join("restored.img");
    let _ = std::fs::remove_file(&target);
    let mut c = strata();
    c.arg("restore")
        .arg(image)
        .arg(&target)
        .arg("-q")
        .args(extra);
    ok(c.output().unwrap());
    let s = sha256(&target);
    std::fs::remove_file(&target).unwrap();
    s
}

#[test]
fn six_points_changed_by_real_tools_restore_exactly() {
    if !require_root("six_points_changed_by_real_tools_restore_exactly") {
        return;
    }
    let work = tempdir();
    let disk = work.path().join("pc.img");
    sh(
        fixtures().join("make-disk.sh").to_str().unwrap(),
        &[
            "--size",
            "96M",
            "--part",
            "fs=fat16,size=20M,label=CHAINFAT,seed=31,files=50",
            "--part",
            "fs=ntfs,size=24M,label=CHAINNTFS,seed=32,files=50",
            "--part",
            "fs=ext4,size=40M,label=CHAINEXT4,seed=33,files=50",
            disk.to_str().unwrap(),
        ],
    );
    let parts = partitions(&disk);
    let raw_area = parts[2].0 + parts[2].1 + (1 << 20); // unpartitioned space
    let backups = work.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let img = |n: &str| backups.join(format!("{n}.strata"));
    // Beside the default chain (used blocks only: free space is not kept, so restored
    // points are compared file by file), a chain of clones restores byte for byte.
    let clones = work.path().join("clones");
    std::fs::create_dir(&clones).unwrap();
    let mut points: Vec<(PathBuf, String)> = Vec::new();
    let mut manifests = Vec::new();
    let mut record = |name: &str, parent: Option<(&str, &str)>| {
        let p = parent.map(|(flag, n)| (flag, clones.join(format!("{n}.strata"))));
        let image = clones.join(format!("{name}.strata"));
        create_with(
            &disk,
            &image,
            p.as_ref().map(|(f, p)| (*f, p.as_path())),
            &["--clone"],
        );
        points.push((image, sha256(&disk)));
        manifests.push(manifest(
            &disk,
            None,
            &work.path().join(format!("{name}.manifest")),
        ));
    };

    // P0: full.
    let full = create(&disk, &img("p0-full"), None);
    record("p0-full", None);

    // P1 (incremental of P0): ext4 new/append/delete, a FAT file added, raw bytes.
    {
        let m = Mounted::new(&disk, parts[2], "ext4");
        std::fs::write(m.path("new-2mib.bin"), noise(2 << 20, 101)).unwrap();
        let log = m.path("app.log");
        std::fs::write(&log, text(50_000, 102)).unwrap();
        let victim = std::fs::read_dir(m.path(""))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_file() && !p.ends_with("app.log") && !p.ends_with("new-2mib.bin"));
        if let Some(v) = victim {
            std::fs::remove_file(v).unwrap();
        }
    }
    let extra = work.path().join("report.txt");
    std::fs::write(&extra, text(30_000, 103)).unwrap();
    mtools(
        "mcopy",
        &disk,
        parts[0].0,
        &[extra.to_str().unwrap(), "::/REPORT.TXT"],
    );
    write_at(&disk, raw_area, &noise(64 << 10, 104));
    let p1 = create(
        &disk,
        &img("p1-inc"),
        Some(("--incremental", &img("p0-full"))),
    );
    record("p1-inc", Some(("--incremental", "p0-full")));

    // P2 (differential of P0): NTFS big file, rename, truncate; ext4 append.
    {
        let m = Mounted::new(&disk, parts[1], "ntfs");
        std::fs::write(m.path("video.bin"), noise(3 << 20, 105)).unwrap();
        let files: Vec<PathBuf> = walk(m.dir.path());
        std::fs::rename(&files[0], m.path("renamed by user.txt")).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&files[1])
            .unwrap();
        f.set_len(10).unwrap();
    }
    {
        let m = Mounted::new(&disk, parts[2], "ext4");
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(m.path("app.log"))
            .unwrap();
        std::io::Write::write_all(&mut log, &text(20_000, 106)).unwrap();
    }
    create(
        &disk,
        &img("p2-diff"),
        Some(("--differential", &img("p1-inc"))),
    );
    record("p2-diff", Some(("--differential", "p1-inc")));

    // P3 (incremental of P2): FAT delete + rename, ext4 big file partly rewritten.
    mtools("mdel", &disk, parts[0].0, &["::/REPORT.TXT"]);
    let fat_files = sh(
        "mdir",
        &[
            "-i",
            &format!("{}@@{}", disk.display(), parts[0].0),
            "-b",
            "-/",
        ],
    );
    let first = fat_files
        .lines()
        .find(|l| !l.ends_with('/'))
        .unwrap()
        .to_string();
    mtools("mren", &disk, parts[0].0, &[&first, "::/MOVED.DAT"]);
    {
        let m = Mounted::new(&disk, parts[2], "ext4");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(m.path("new-2mib.bin"))
            .unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&noise(300_000, 107), 700_000).unwrap();
    }
    let p3 = create(
        &disk,
        &img("p3-inc"),
        Some(("--incremental", &img("p2-diff"))),
    );
    record("p3-inc", Some(("--incremental", "p2-diff")));

    // P4 (incremental of P3): NTFS deletes and many small files; raw area zeroed.
    {
        let m = Mounted::new(&disk, parts[1], "ntfs");
        std::fs::remove_file(m.path("video.bin")).unwrap();
        std::fs::create_dir(m.path("small")).unwrap();
        for i in 0..60 {
            std::fs::write(
                m.path(&format!("small/f{i}.txt")),
                text(500 + i * 37, 200 + i as u64),
            )
            .unwrap();
        }
    }
    write_at(&disk, raw_area, &vec![0u8; 64 << 10]);
    create(
        &disk,
        &img("p4-inc"),
        Some(("--incremental", &img("p3-inc"))),
    );
    record("p4-inc", Some(("--incremental", "p3-inc")));

    // P5 (differential again): ext4 truncate to zero and new small files.
    {
        let m = Mounted::new(&disk, parts[2], "ext4");
        std::fs::OpenOptions::new()
            .write(true)
            .open(m.path("app.log"))
            .unwrap()
            .set_len(0)
            .unwrap();
        for i in 0..20 {
            std::fs::write(m.path(&format!("note{i}")), text(100 + i, 300 + i as u64)).unwrap();
        }
    }
    create(
        &disk,
        &img("p5-diff"),
        Some(("--differential", &img("p4-inc"))),
    );
    record("p5-diff", Some(("--differential", "p4-inc")));

    // Children store little more than what changed: P1 wrote 2 MiB + ~150 KiB of files
    // and 64 KiB raw, P3 rewrote 300 KB of a file and renamed/deleted on FAT; the rest is
    // filesystem metadata.
    assert!(full["data_bytes"].as_u64().unwrap() > 6 << 20, "{full}");
    for (p, limit) in [(&p1, (2 << 20) + (768 << 10)), (&p3, 1 << 20)] {
        let stored = p["data_bytes"].as_u64().unwrap();
        assert!(stored < limit, "stored {stored}, limit {limit}: {p}");
        assert!(p["unchanged_bytes"].as_u64().unwrap() > 6 << 20, "{p}");
    }

    // Every point of the default chain restores with every file identical and verifies
    // with its chain; every point of the clone chain restores byte-identical.
    let names = [
        "p0-full", "p1-inc", "p2-diff", "p3-inc", "p4-inc", "p5-diff",
    ];
    for (i, name) in names.iter().enumerate() {
        let restored = work.path().join("restored-used.img");
        ok(run(&[&"restore", &img(name), &restored, &"-q", &"--force"]));
        let got = manifest(&restored, None, &work.path().join("restored.manifest"));
        assert_eq!(got, manifests[i], "files of {name} differ");
        ok(run(&[&"verify", &img(name), &"-q"]));
    }
    for (image, want) in &points {
        assert_eq!(
            &restore_sha(image, work.path(), &[]),
            want,
            "{}",
            image.display()
        );
        ok(run(&[&"verify", image, &"-q"]));
    }
    let listing = ok(run(&[&"info", &clones]));
    assert!(
        listing.contains("1 backup set") && listing.contains("6 images"),
        "{listing}"
    );

    // The whole chain moved to another directory still works.
    let moved = work.path().join("moved");
    std::fs::rename(&clones, &moved).unwrap();
    let p4 = moved.join("p4-inc.strata");
    assert_eq!(restore_sha(&p4, work.path(), &[]), points[4].1);

    // The full image elsewhere: a clear error, then found with --parent-dir.
    let elsewhere = work.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::rename(
        moved.join("p0-full.strata"),
        elsewhere.join("renamed-full.strata"),
    )
    .unwrap();
    let (code, _, err) = outcome(&run(&[&"restore", &p4, &work.path().join("x.img")]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("needs parent image") && err.contains("p0-full.strata"),
        "{err}"
    );
    assert!(err.contains("--parent-dir"), "{err}");
    assert!(!work.path().join("x.img").exists());
    assert_eq!(
        restore_sha(
            &p4,
            work.path(),
            &["--parent-dir", elsewhere.to_str().unwrap()]
        ),
        points[4].1
    );
}

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A raw disk file changed in place between points.
struct RawDisk {
    path: PathBuf,
}

impl RawDisk {
    fn new(dir: &Path, size: usize) -> RawDisk {
        let path = dir.join("raw.img");
        let mut d = text(size / 2, 400);
        d.extend(noise(size / 4, 401));
        d.resize(size, 0);
        std::fs::write(&path, d).unwrap();
        RawDisk { path }
    }
    fn change(&self, seed: u64) {
        let len = std::fs::metadata(&self.path).unwrap().len();
        let r = noise(16, seed);
        for i in 0..3 {
            let at =
                u64::from_le_bytes(r[..8].try_into().unwrap()).wrapping_mul(i + 1) % (len - 10_000);
            write_at(&self.path, at, &noise(5000, seed + i));
        }
    }
}

#[test]
fn damaged_replaced_and_foreign_parents_are_refused() {
    let d = tempdir();
    let disk = RawDisk::new(d.path(), 6 << 20);
    let full = d.path().join("full.strata");
    let inc = d.path().join("inc.strata");
    ok(run(&[&"create", &disk.path, &full, &"-q"]));
    disk.change(1);
    ok(run(&[
        &"create",
        &disk.path,
        &inc,
        &"-q",
        &"--incremental",
        &full,
    ]));
    let pristine = std::fs::read(&full).unwrap();
    let target = d.path().join("out.img");

    // A flipped byte in the parent's data: reads of that chunk fail, naming the parent.
    let img = strata::container::reader::Image::open(&full).unwrap();
    let c0 = img.index().chunks[0].clone();
    let idx = img.trailer().index_offset;
    drop(img);
    let mut b = pristine.clone();
    b[(c0.offset + 30) as usize] ^= 1;
    std::fs::write(&full, &b).unwrap();
    let (code, out, _) = outcome(&run(&[&"verify", &inc]));
    assert_eq!(code, 3);
    assert!(
        out.contains("OK ") && out.contains("BAD chunk 0") && out.contains("full.strata"),
        "{out}"
    );
    let (code, _, err) = outcome(&run(&[&"restore", &inc, &target]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("full.strata") && err.contains("chunk 0"),
        "{err}"
    );
    assert!(!target.exists());

    // A flipped byte in the parent's index: the parent cannot be used.
    let mut b = pristine.clone();
    b[(idx + 50) as usize] ^= 1;
    std::fs::write(&full, &b).unwrap();
    let (code, _, err) = outcome(&run(&[&"restore", &inc, &target]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("full.strata") && err.contains("cannot be used"),
        "{err}"
    );

    // Replaced by another image of the same disk (new UUID): not found.
    std::fs::remove_file(&full).unwrap();
    ok(run(&[&"create", &disk.path, &full, &"-q"]));
    let (code, _, err) = outcome(&run(&[&"restore", &inc, &target]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("needs parent image") && err.contains("(was `full.strata`)"),
        "{err}"
    );

    // Replaced by an image with the same UUID but other content: modified or replaced.
    std::fs::write(&full, &pristine).unwrap();
    let uuid = strata::container::reader::Image::open(&full)
        .unwrap()
        .header()
        .image_uuid;
    std::fs::remove_file(&full).unwrap();
    ok(run(&[
        &"create",
        &disk.path,
        &full,
        &"-q",
        &"--uuid",
        &uuid.to_string(),
    ]));
    let (code, _, err) = outcome(&run(&[&"info", &inc]));
    assert_eq!(code, 0);
    let (code, _, err2) = outcome(&run(&[&"restore", &inc, &target]));
    assert_eq!(code, 3, "{err}{err2}");
    assert!(err2.contains("modified or replaced"), "{err2}");

    // A child of another disk is refused at create time.
    std::fs::write(&full, &pristine).unwrap();
    let other = d.path().join("other.img");
    std::fs::write(&other, text(8 << 20, 5)).unwrap();
    let (code, _, err) = outcome(&run(&[
        &"create",
        &other,
        &d.path().join("x.strata"),
        &"--incremental",
        &full,
    ]));
    assert_eq!(code, 1);
    assert!(err.contains("not the same disk"), "{err}");
}

#[test]
fn consolidation_keeps_every_remaining_point_and_survives_kills() {
    let d = tempdir();
    let disk = RawDisk::new(d.path(), 24 << 20);
    let dir = d.path().join("set");
    std::fs::create_dir(&dir).unwrap();
    let names = ["full", "i1", "i2", "i3", "i4"];
    let mut want = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let image = dir.join(format!("{n}.strata"));
        if i == 0 {
            ok(run(&[&"create", &disk.path, &image, &"-q"]));
        } else {
            disk.change(10 + i as u64);
            let parent = dir.join(format!("{}.strata", names[i - 1]));
            ok(run(&[
                &"create",
                &disk.path,
                &image,
                &"-q",
                &"--incremental",
                &parent,
            ]));
        }
        want.push(sha256(&disk.path));
    }
    let check = |alive: &[usize]| {
        for &i in alive {
            let image = dir.join(format!("{}.strata", names[i]));
            assert_eq!(restore_sha(&image, d.path(), &[]), want[i], "{}", names[i]);
        }
    };

    // Killed consolidations never lose a point.
    for delay in [0u64, 20, 60, 150] {
        let mut child = strata()
            .args(["consolidate", "-q", "--level", "19", "--threads", "1"])
            .arg(dir.join("i2.strata"))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().ok();
        // A run that finished before the kill is done; a killed one must have lost nothing.
        if child.wait().unwrap().success() {
            break;
        }
        let _ = std::fs::remove_file(dir.join("i2.strata.partial"));
        let alive: Vec<usize> = (0..5)
            .filter(|&i| i != 1 || dir.join("i1.strata").exists())
            .collect();
        check(&alive);
    }
    // Merge i2 into i1, unless a run above got that far before its kill. A kill between
    // the rename and the removal of i1 leaves i1 behind: still a valid image of its point.
    let i2_parent = || -> String {
        let v: serde_json::Value =
            serde_json::from_str(&ok(run(&[&"info", &dir.join("i2.strata"), &"--json"]))).unwrap();
        let chain = v["chain"].as_array().unwrap().clone();
        chain[chain.len() - 2]["image"]
            .as_str()
            .unwrap()
            .to_string()
    };
    if i2_parent().ends_with("i1.strata") {
        let out = ok(run(&[&"consolidate", &dir.join("i2.strata")]));
        assert!(
            out.contains("removed") && out.contains("i1.strata"),
            "{out}"
        );
    } else if dir.join("i1.strata").exists() {
        ok(run(&[&"verify", &dir.join("i1.strata"), &"-q"]));
        std::fs::remove_file(dir.join("i1.strata")).unwrap();
    }
    assert!(i2_parent().ends_with("full.strata"));
    assert!(!dir.join("i1.strata").exists());
    check(&[0, 2, 3, 4]);

    // Roll the full image forward: merge i2 into the full image.
    ok(run(&[&"consolidate", &dir.join("i2.strata"), &"-q"]));
    assert!(!dir.join("full.strata").exists());
    check(&[2, 3, 4]);
    let info = ok(run(&[&"info", &dir.join("i2.strata"), &"--json"]));
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["kind"], "full");

    // A synthetic full of the newest point, beside the chain; nothing else changes.
    let synth = d.path().join("synthetic.strata");
    ok(run(&[
        &"consolidate",
        &dir.join("i4.strata"),
        &"--full",
        &synth,
        &"-q",
    ]));
    assert_eq!(restore_sha(&synth, d.path(), &[]), want[4]);
    check(&[2, 3, 4]);
    ok(run(&[&"verify", &dir.join("i4.strata"), &"-q"]));
}

#[test]
fn a_hundred_point_chain_reads_every_point() {
    let d = tempdir();
    let disk = RawDisk::new(d.path(), 4 << 20);
    let image = |i: usize| d.path().join(format!("p{i:03}.strata"));
    ok(run(&[&"create", &disk.path, &image(0), &"-q"]));
    let mut want = vec![sha256(&disk.path)];
    for i in 1..=100 {
        write_at(
            &disk.path,
            (i as u64 * 37_813) % (4 << 20),
            &noise(700, i as u64),
        );
        ok(run(&[
            &"create",
            &disk.path,
            &image(i),
            &"-q",
            &"--incremental",
            &image(i - 1),
        ]));
        want.push(sha256(&disk.path));
    }
    for i in [1, 50, 99, 100] {
        assert_eq!(restore_sha(&image(i), d.path(), &[]), want[i], "point {i}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"info", &image(100), &"--json"]))).unwrap();
    assert_eq!(v["chain"].as_array().unwrap().len(), 101);
}

/// A chain of 200 points read through the library: every byte of several points equals the
/// disk as it was, read in pieces that cross runs of many layers; a damaged chunk in a
/// middle point fails exactly the reads of the block it holds, naming that image, and a
/// damaged index in the middle refuses the chain when it is opened.
#[test]
fn a_two_hundred_point_chain_reads_every_byte_and_finds_a_damaged_middle() {
    use strata::blockdev::BlockDev;
    let d = tempdir();
    const BLOCKS: u64 = 512; // a 2 MiB disk
    let disk = d.path().join("disk.img");
    let mut now = text(BLOCKS as usize * 4096, 77);
    std::fs::write(&disk, &now).unwrap();
    let image = |i: usize| d.path().join(format!("p{i:03}.strata"));
    ok(run(&[&"create", &disk, &image(0), &"-q"]));
    // Point i writes its own block (64 + 11 i mod 448: no later point writes it again), a
    // block of a hot range that every point rewrites, and every tenth point zeroes one.
    let own = |i: usize| 64 + (i as u64 * 11) % (BLOCKS - 64);
    let mut want = vec![now.clone()];
    for i in 1..=200usize {
        let mut put = |block: u64, data: &[u8]| {
            now[(block * 4096) as usize..][..4096].copy_from_slice(data);
            write_at(&disk, block * 4096, data);
        };
        put(own(i), &noise(4096, i as u64));
        put(i as u64 % 64, &noise(4096, 1000 + i as u64));
        if i % 10 == 0 {
            put((i as u64 * 7) % 64, &[0; 4096]);
        }
        ok(run(&[
            &"create",
            &disk,
            &image(i),
            &"-q",
            &"--incremental",
            &image(i - 1),
        ]));
        want.push(now.clone());
    }
    let open = |i: usize| strata::chain::Chain::open(&image(i), &Default::default());
    for i in [1, 99, 100, 157, 200] {
        let chain = open(i).unwrap();
        assert_eq!(chain.layers().len(), i + 1);
        let mut got = vec![0u8; want[i].len()];
        // Pieces of an odd size, so reads start and end inside blocks and runs.
        for (n, piece) in got.chunks_mut(12_345).enumerate() {
            chain.read_at(n as u64 * 12_345, piece).unwrap();
        }
        assert!(
            got == want[i],
            "point {i} differs from the disk it was made from"
        );
    }

    // Every layer keeps its file open: a chain longer than the soft limit on open files
    // (1,024 on most desktops; 128 here) is still restored, the limit raised to the hard one.
    // Under a hard limit that low, the file that could not be opened is named with the
    // cause, not reported as a missing parent.
    #[cfg(unix)]
    for hard_too in [false, true] {
        use std::os::unix::process::CommandExt;
        let out = d.path().join("limited.img");
        let mut c = strata();
        c.args(["restore", "-q"]).arg(image(200)).arg(&out);
        // SAFETY: getrlimit and setrlimit are async-signal-safe and touch only the child.
        unsafe {
            c.pre_exec(move || {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                lim.rlim_cur = 128;
                if hard_too {
                    lim.rlim_max = 128;
                }
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let o = c.output().unwrap();
        if hard_too {
            let (code, _, err) = outcome(&o);
            assert_ne!(code, 0);
            assert!(
                err.contains("cannot open image") && err.contains("os error 24"),
                "{err}"
            );
            assert!(!out.exists(), "no partial output is left");
        } else {
            ok(o);
            assert!(std::fs::read(&out).unwrap() == want[200]);
            std::fs::remove_file(&out).unwrap();
        }
    }

    // Point 100's data chunk damaged: opening 200 still works (chunks are checked when
    // read); the block it holds fails naming p100, every other block reads as it was.
    let pristine = std::fs::read(image(100)).unwrap();
    let img = strata::container::reader::Image::open(&image(100)).unwrap();
    let e = *img
        .index()
        .extents
        .iter()
        .find(|e| e.disk_block == own(100))
        .expect("point 100 stores its own block");
    let c = img.index().chunks[e.chunk as usize].clone();
    let index_at = img.trailer().index_offset;
    drop(img);
    let mut b = pristine.clone();
    b[(c.offset + 24 + u64::from(c.stored_len) / 2) as usize] ^= 0x20;
    std::fs::write(image(100), &b).unwrap();
    let chain = open(200).unwrap();
    let mut buf = vec![0u8; 4096];
    for block in 0..BLOCKS {
        let r = chain.read_at(block * 4096, &mut buf);
        // Point 100's other blocks (hot block 36, shown by point 164 at 200, and a zero
        // block) do not come from that chunk at point 200: only its own block fails.
        if block == own(100) {
            let err = r.expect_err("a damaged chunk must not be read").to_string();
            assert!(
                err.contains("p100.strata") && err.contains("chunk"),
                "{err}"
            );
        } else if let Err(err) = r {
            panic!("block {block}: {err}");
        } else {
            assert!(
                buf[..] == want[200][(block * 4096) as usize..][..4096],
                "block {block}"
            );
        }
    }
    drop(chain);

    // Point 100's index damaged: the chain above it cannot be opened, naming p100.
    let mut b = pristine.clone();
    b[(index_at + 50) as usize] ^= 1;
    std::fs::write(image(100), &b).unwrap();
    let err = open(200)
        .err()
        .expect("a damaged index is found at open")
        .to_string();
    assert!(err.contains("p100.strata"), "{err}");
    let (code, _, err) = outcome(&run(&[&"restore", &image(200), &d.path().join("o.img")]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("p100.strata"), "{err}");
    std::fs::write(image(100), &pristine).unwrap();
    let chain = open(200).unwrap();
    let mut got = vec![0u8; want[200].len()];
    chain.read_at(0, &mut got).unwrap();
    assert!(got == want[200]);
}

/// `info DIR` lists every image once, in the set of the full image its chain starts from,
/// whatever the order the images were made in, and lists an image whose parent is gone as
/// broken (the listing resolves each chain from its newest image and skips the images it
/// already listed).
#[test]
fn a_directory_of_sets_lists_every_image_once() {
    let d = tempdir();
    let a = RawDisk::new(d.path(), 2 << 20);
    let other = d.path().join("other.img");
    std::fs::write(&other, text(1 << 20, 9)).unwrap();
    let img = |n: &str| d.path().join(n);
    // Set a: a full image and 12 incrementals, named so that name order is not time
    // order; set b: a full image, a differential and an incremental on it; then a chain
    // whose middle image is removed.
    ok(run(&[&"create", &a.path, &img("z-full.strata"), &"-q"]));
    let mut prev = img("z-full.strata");
    for i in 0..12 {
        a.change(100 + i);
        let next = img(&format!("a{:02}.strata", 11 - i));
        ok(run(&[
            &"create",
            &a.path,
            &next,
            &"-q",
            &"--incremental",
            &prev,
        ]));
        prev = next;
    }
    ok(run(&[&"create", &other, &img("b-full.strata"), &"-q"]));
    write_at(&other, 4096, &noise(4096, 3));
    ok(run(&[
        &"create",
        &other,
        &img("b-diff.strata"),
        &"-q",
        &"--differential",
        &img("b-full.strata"),
    ]));
    write_at(&other, 8192, &noise(4096, 4));
    ok(run(&[
        &"create",
        &other,
        &img("b-inc.strata"),
        &"-q",
        &"--incremental",
        &img("b-diff.strata"),
    ]));
    a.change(200);
    ok(run(&[
        &"create",
        &a.path,
        &img("c-mid.strata"),
        &"-q",
        &"--incremental",
        &prev,
    ]));
    a.change(201);
    ok(run(&[
        &"create",
        &a.path,
        &img("c-top.strata"),
        &"-q",
        &"--incremental",
        &img("c-mid.strata"),
    ]));
    std::fs::remove_file(img("c-mid.strata")).unwrap();

    let info = strata::ops::info::dir_info(d.path(), &Default::default()).unwrap();
    let names = |s: &strata::ops::info::BackupSet| -> Vec<String> {
        s.images
            .iter()
            .map(|e| e.image.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    // The full image first; the rest by creation time, which the text gives to the second
    // (ties by name), so compared here as a set.
    let sets: Vec<Vec<String>> = info
        .sets
        .iter()
        .map(|s| {
            let mut n = names(s);
            n[1..].sort();
            n
        })
        .collect();
    let mut want_a = vec!["z-full.strata".to_string()];
    want_a.extend((0..12).map(|i| format!("a{i:02}.strata")));
    // Sets in the order of their first image by name: a00 (set a) before b-diff (set b).
    assert_eq!(
        sets,
        vec![
            want_a,
            vec![
                "b-full.strata".into(),
                "b-diff.strata".into(),
                "b-inc.strata".into()
            ]
        ]
    );
    let broken: Vec<String> = info
        .broken
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(broken, vec!["c-top.strata"]);
}

#[test]
fn a_looping_chain_is_refused() {
    use strata::container::header::{Content, Header, ImageKind, MINOR_VERSION};
    use strata::container::index::Alias;
    use strata::container::writer::ImageWriter;
    let d = tempdir();
    let header = |uuid: u128, parent: u128, digest: [u8; 32]| Header {
        minor_version: MINOR_VERSION,
        incompat_features: 0,
        compat_features: 0,
        image_uuid: uuid::Uuid::from_u128(uuid),
        parent_uuid: uuid::Uuid::from_u128(parent),
        parent_index_digest: digest,
        created_unix: 0,
        created_nanos: 0,
        sector_size: 512,
        disk_size: 1 << 20,
        block_size: 4096,
        chunk_size: 1 << 20,
        kind: ImageKind::Incremental,
        content: Content::Clone,
        compression: 1,
        compression_level: 3,
        source: "test".into(),
        parent_hint: String::new(),
        encryption: None,
    };
    let write = |name: &str, h: Header, aliases: Vec<Alias>| {
        let p = d.path().join(name);
        let f = std::fs::File::create(&p).unwrap();
        let mut w = ImageWriter::new(strata::storage::Output::File(f), &p, h).unwrap();
        w.set_aliases(aliases);
        let (_, t, _) = w.finish().unwrap();
        (p, t.index_digest)
    };
    // a names parent b (by a digest b never had); b claims that identity and names a.
    let (a, a_digest) = write("a.strata", header(0xa, 0xb, [7; 32]), vec![]);
    write(
        "b.strata",
        header(0xb, 0xa, a_digest),
        vec![Alias {
            uuid: uuid::Uuid::from_u128(0xb),
            index_digest: [7; 32],
        }],
    );
    let (code, _, err) = outcome(&run(&[&"info", &a, &"--json"]));
    assert_eq!(code, 0);
    let (code, _, err2) = outcome(&run(&[&"restore", &a, &d.path().join("o.img")]));
    assert_eq!(code, 3, "{err}{err2}");
    assert!(err2.contains("loops"), "{err2}");
}

#[test]
fn files_are_browsed_at_each_point_of_a_chain() {
    let d = tempdir();
    let disk = sample_disk(d.path());
    let fat = partitions(&disk)[0].0;
    let full = d.path().join("full.strata");
    let inc = d.path().join("inc.strata");
    ok(run(&[&"create", &disk, &full, &"-q"]));
    let file = "/Dokumente/2022/2019/chapter 2.text";
    let before = ok(run(&[&"cat", &full, &format!("/p1{file}")]));
    // Change the file through mtools, add one, and take an incremental.
    let new = d.path().join("new.txt");
    std::fs::write(&new, "rewritten after the full backup\n").unwrap();
    mtools(
        "mcopy",
        &disk,
        fat,
        &["-o", new.to_str().unwrap(), &format!("::{file}")],
    );
    mtools(
        "mcopy",
        &disk,
        fat,
        &[new.to_str().unwrap(), "::/ADDED.TXT"],
    );
    ok(run(&[
        &"create",
        &disk,
        &inc,
        &"-q",
        &"--incremental",
        &full,
    ]));

    assert_eq!(ok(run(&[&"cat", &full, &format!("/p1{file}")])), before);
    assert_eq!(
        ok(run(&[&"cat", &inc, &format!("/p1{file}")])),
        "rewritten after the full backup\n"
    );
    let listed = |img: &Path| ok(run(&[&"ls", &img, &"/p1"]));
    assert!(listed(&inc).contains("ADDED.TXT"));
    assert!(!listed(&full).contains("ADDED.TXT"));
    // Copy out of the incremental: the parent is found the same way as for restore.
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    ok(run(&[&"cp", &inc, &"/p1/ADDED.TXT", &out, &"-q"]));
    assert_eq!(
        std::fs::read_to_string(out.join("ADDED.TXT")).unwrap(),
        "rewritten after the full backup\n"
    );
}

/// The chunk cache keeps what reads keep coming back to: a directory walk returns to the
/// same chunks (the MFT's, the indexes') between reads of data spread over the disk, and
/// a sequential read reads each chunk in several pieces. Each chunk in use should be
/// decompressed once.
#[test]
fn the_chunk_cache_decompresses_a_chunk_in_use_once() {
    use strata::blockdev::BlockDev;
    const CHUNK: u64 = 64 << 10;
    const CHUNKS: u64 = 800;
    let dir = tempdir();
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, text((CHUNKS * CHUNK) as usize, 7)).unwrap();
    let image = dir.path().join("disk.strata");
    let chunk = CHUNK.to_string();
    create_with(&disk, &image, None, &["--clone", "--chunk-size", &chunk]);
    // Opened as for browsing: the ceiling lowered once the volumes are known.
    let open = || {
        let c = strata::chain::Chain::open_with_cache(&image, &Default::default(), 128 * CHUNK)
            .unwrap();
        c.set_cache_bytes(96 * CHUNK);
        c
    };
    let mut buf = vec![0u8; 16 << 10];

    // A working set of 80 chunks, read round and round: it fits, so each chunk is
    // decompressed once.
    let chain = open();
    for i in 0..5 * 80u64 {
        chain
            .read_at((i % 80) * CHUNK + (i % 3) * 4096, &mut buf)
            .unwrap();
    }
    assert_eq!(chain.cache_misses(), 80);

    // A hot set of 30 chunks, read in turn between reads of new chunks.
    let chain = open();
    for i in 0..600u64 {
        chain.read_at((i * 7 % 30) * CHUNK, &mut buf).unwrap();
        chain.read_at((100 + i) * CHUNK, &mut buf).unwrap();
    }
    let misses = chain.cache_misses();
    assert!(
        misses <= 30 + 600 + 20,
        "{misses} chunks decompressed for 630"
    );

    // A sequential read in pieces a quarter of a chunk long.
    let chain = open();
    let mut at = 0;
    while at < chain.len() {
        chain.read_at(at, &mut buf).unwrap();
        at += buf.len() as u64;
    }
    assert_eq!(chain.cache_misses(), CHUNKS);
    assert!(chain.cache_bytes_held() <= 96 * CHUNK);

    // The same with the prefetch threads reading ahead: the bytes are the disk's, each
    // chunk is decompressed about once (the cache may drop a chunk read ahead before it
    // is asked for), and dropping the chain stops the threads.
    let chain = open();
    chain.enable_prefetch();
    let want = std::fs::read(&disk).unwrap();
    let mut at = 0;
    while at < chain.len() {
        chain.read_at(at, &mut buf).unwrap();
        assert!(
            buf[..] == want[at as usize..at as usize + buf.len()],
            "at {at}"
        );
        at += buf.len() as u64;
    }
    let misses = chain.cache_misses();
    assert!(
        (CHUNKS..=CHUNKS + CHUNKS / 50).contains(&misses),
        "{misses}"
    );
    drop(chain);
}

/// An incremental stores exactly the 4 KiB blocks whose bytes changed: single blocks, runs,
/// the first and the last, one with a single byte changed; a block rewritten with the same
/// bytes is not stored, and an incremental of an unchanged disk stores nothing. `info
/// --json` counts them, and the index names exactly those blocks.
#[test]
fn an_incremental_stores_exactly_the_changed_4k_blocks() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    // Noise: no block is zero or repeats another, so every block is stored as data.
    std::fs::write(&disk, noise(8 << 20, 60)).unwrap();
    let full = d.path().join("full.strata");
    ok(run(&[&"create", &disk, &full, &"-q"]));
    let info = |image: &Path| -> serde_json::Value {
        serde_json::from_str(&ok(run(&[&"info", &"--json", &image]))).unwrap()
    };
    assert_eq!(info(&full)["data_bytes"].as_u64(), Some(8 << 20));

    let mut changed: Vec<u64> = vec![0, 1, 2, 100, 513, 2047];
    changed.extend(1024..1032);
    for (i, &b) in changed.iter().enumerate() {
        write_at(&disk, b * 4096, &noise(4096, 1000 + i as u64));
    }
    // One byte in the middle of block 1500.
    let mut one = std::fs::read(&disk).unwrap()[1500 * 4096 + 2000];
    one ^= 0x01;
    write_at(&disk, 1500 * 4096 + 2000, &[one]);
    changed.push(1500);
    // Block 700 written again with the bytes it holds.
    let same = std::fs::read(&disk).unwrap()[700 * 4096..701 * 4096].to_vec();
    write_at(&disk, 700 * 4096, &same);
    changed.sort();

    let inc = d.path().join("inc.strata");
    ok(run(&[
        &"create",
        &disk,
        &inc,
        &"-q",
        &"--incremental",
        &full,
    ]));
    let n = changed.len() as u64;
    assert_eq!(
        info(&inc)["data_bytes"].as_u64(),
        Some(n * 4096),
        "{n} changed blocks"
    );
    let img = strata::container::reader::Image::open(&inc).unwrap();
    let stored: Vec<u64> = img
        .index()
        .extents
        .iter()
        .filter(|e| e.kind == strata::container::index::ExtentKind::Data)
        .flat_map(|e| e.disk_block..e.end())
        .collect();
    assert_eq!(stored, changed);
    drop(img);
    let out = d.path().join("restored.img");
    ok(run(&[&"restore", &inc, &out, &"-q"]));
    assert!(same_content(&disk, &out));

    // Nothing changed since: nothing stored.
    let none = d.path().join("none.strata");
    ok(run(&[
        &"create",
        &disk,
        &none,
        &"-q",
        &"--incremental",
        &inc,
    ]));
    assert_eq!(info(&none)["data_bytes"].as_u64(), Some(0));
}

/// A consolidated image is its top image's point, and carries its catalog: `find` gives the
/// same entries as before, `diff` against a copy of the old top finds nothing, and the
/// answers come from the catalog (no walk announced).
#[test]
fn consolidation_keeps_the_catalog_of_the_top_point() {
    let d = tempdir();
    let disk = sample_disk(d.path());
    let fat = partitions(&disk)[0].0;
    let (full, inc) = (d.path().join("full.strata"), d.path().join("inc.strata"));
    create(&disk, &full, None);
    let new = d.path().join("new.txt");
    std::fs::write(&new, "added after the full backup\n").unwrap();
    mtools(
        "mcopy",
        &disk,
        fat,
        &[new.to_str().unwrap(), "::/ADDED.TXT"],
    );
    create(&disk, &inc, Some(("--incremental", &full)));
    let keep = d.path().join("copy");
    std::fs::create_dir(&keep).unwrap();
    std::fs::copy(&inc, keep.join("inc.strata")).unwrap();
    std::fs::copy(&full, keep.join("full.strata")).unwrap();
    let find = |img: &Path| {
        let o = run(&[&"find", &"--json", &img, &"*"]);
        let (code, out, err) = outcome(&o);
        assert_eq!(code, 0, "{err}");
        assert!(!err.contains("walked"), "answered by walking: {err}");
        let mut rows: Vec<String> = out
            .lines()
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["image"].as_str().unwrap().ends_with("inc.strata")
            })
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("image");
                v.to_string()
            })
            .collect();
        rows.sort();
        rows
    };
    let before = find(&inc);
    assert!(before.iter().any(|r| r.contains("/p1/ADDED.TXT")));
    ok(run(&[&"consolidate", &inc, &"-q"]));
    assert!(!full.exists(), "the merged parent is removed");
    assert_eq!(find(&inc), before);
    let info = ok(run(&[&"info", &inc]));
    assert!(
        info.contains("catalog:") && info.contains("entries in 3 filesystems"),
        "{info}"
    );
    let (code, out, err) = outcome(&run(&[&"diff", &keep.join("inc.strata"), &inc]));
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}
