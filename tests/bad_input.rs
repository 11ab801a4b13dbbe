//! Bad input gets a clear one-line error naming the file and the cause, the documented exit
//! code, and never loses data.

mod common;
use common::*;

#[test]
fn missing_source_directory_and_fifo_are_refused() {
    let d = tempdir();
    let dest = d.path().join("out.strata");
    let missing = d.path().join("no-such-disk.img");
    fails(
        &[&"create", &missing, &dest],
        1,
        &["no-such-disk.img", "does not exist"],
    );
    fails(&[&"create", &d.path(), &dest], 1, &["is a directory"]);
    let empty = d.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    fails(&[&"create", &empty, &dest], 1, &["empty.img", "is empty"]);
    #[cfg(unix)]
    {
        let fifo = d.path().join("fifo");
        sh("mkfifo", &[fifo.to_str().unwrap()]);
        fails(&[&"create", &fifo, &dest], 1, &["not a disk"]);
    }
    assert!(!dest.exists());
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1 + cfg!(unix) as usize
    );
}

#[test]
fn existing_dest_is_kept_without_force() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    std::fs::write(&disk, text(1 << 20, 41)).unwrap();
    let dest = d.path().join("out.strata");
    std::fs::write(&dest, b"precious").unwrap();
    fails(
        &[&"create", &disk, &dest],
        1,
        &["out.strata", "already exists", "--force"],
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
    ok(run_limited(&[&"create", &disk, &dest, &"--force", &"-q"]));
    ok(run_limited(&[&"verify", &dest, &"-q"]));
    // The image cannot be written over its own source.
    fails(
        &[&"create", &disk, &disk, &"--force"],
        1,
        &["overwrite the source"],
    );
}

#[test]
fn non_images_are_refused_by_info_verify_and_restore() {
    let d = tempdir();
    let junk = d.path().join("holiday.jpg");
    std::fs::write(&junk, noise(100_000, 42)).unwrap();
    let target = d.path().join("restored.img");
    for cmd in ["info", "verify"] {
        fails(&[&cmd, &junk], 1, &["holiday.jpg", "not a strata image"]);
    }
    fails(&[&"restore", &junk, &target], 1, &["not a strata image"]);
    assert!(!target.exists());
    fails(&[&"verify", &d.path()], 1, &["is a directory"]);
    fails(
        &[&"info", &d.path().join("nope.strata")],
        1,
        &["nope.strata", "does not exist"],
    );
}

#[test]
fn newer_format_version_is_refused() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    std::fs::write(&disk, text(1 << 20, 43)).unwrap();
    let image = d.path().join("new.strata");
    ok(run_limited(&[&"create", &disk, &image, &"-q"]));
    let mut b = std::fs::read(&image).unwrap();
    b[8] = 2; // major version
    std::fs::write(&image, b).unwrap();
    fails(
        &[&"info", &image],
        1,
        &["unsupported", "format version 2", "newer strata"],
    );
}

#[test]
fn restore_refuses_to_overwrite_and_to_target_the_image() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    std::fs::write(&disk, text(2 << 20, 44)).unwrap();
    let image = d.path().join("disk.strata");
    ok(run_limited(&[&"create", &disk, &image, &"-q"]));
    let target = d.path().join("target.img");
    std::fs::write(&target, b"important data").unwrap();
    fails(
        &[&"restore", &image, &target],
        1,
        &["target.img", "already exists", "--force"],
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"important data");
    ok(run_limited(&[
        &"restore", &image, &target, &"--force", &"-q",
    ]));
    assert!(same_content(&disk, &target));
    fails(
        &[&"restore", &image, &image, &"--force"],
        1,
        &["the image itself"],
    );
    ok(run_limited(&[&"verify", &image, &"-q"]));
}

#[test]
fn usage_errors_exit_2_and_help_works() {
    let (c, _, _) = outcome(&run_limited(&[&"create"]));
    assert_eq!(c, 2);
    let (c, _, _) = outcome(&run_limited(&[&"create", &"a", &"b", &"--level", &"99"]));
    assert_eq!(c, 2);
    let (c, _, _) = outcome(&run_limited(&[&"frobnicate"]));
    assert_eq!(c, 2);
    for cmd in ["create", "info", "verify", "restore", "demo"] {
        let out = ok(run_limited(&[&cmd, &"--help"]));
        assert!(out.contains("Usage: strata"), "{cmd}: {out}");
    }
}

#[test]
fn create_json_summary_has_the_figures() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    std::fs::write(&disk, text(3 << 20, 45)).unwrap();
    let image = d.path().join("disk.strata");
    let out = ok(run_limited(&[&"create", &disk, &image, &"--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["bytes_read"], 3 << 20);
    assert_eq!(v["image_bytes"], std::fs::metadata(&image).unwrap().len());
    assert!(v["ratio"].as_f64().unwrap() > 2.0, "{v}");
    assert!(v["seconds"].as_f64().is_some());
    let info: serde_json::Value =
        serde_json::from_str(&ok(run_limited(&[&"info", &image, &"--json"]))).unwrap();
    assert_eq!(info["uuid"], v["uuid"]);
}

#[cfg(target_os = "linux")]
/// Mounts a tmpfs of `size` at a fresh directory; unmounts on drop.
struct Tmpfs(tempfile::TempDir);
#[cfg(target_os = "linux")]
impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let d = tempdir();
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                d.path().to_str().unwrap(),
            ],
        );
        Tmpfs(d)
    }
    fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}
#[cfg(target_os = "linux")]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn full_destination_fails_cleanly() {
    if !require_root("full_destination_fails_cleanly") {
        return;
    }
    let d = tempdir();
    let disk = d.path().join("disk.img");
    std::fs::write(&disk, noise(16 << 20, 46)).unwrap();
    let fs = Tmpfs::new("4m");
    let keep = fs.path().join("older.strata");
    std::fs::write(&keep, b"an older backup").unwrap();
    let dest = fs.path().join("new.strata");
    fails(
        &[&"create", &disk, &dest, &"-q"],
        1,
        &["new.strata.partial", "No space left"],
    );
    let names: Vec<_> = std::fs::read_dir(fs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("older.strata")]);
    assert_eq!(std::fs::read(&keep).unwrap(), b"an older backup");

    // Restore onto a full filesystem: same guarantees.
    let image = d.path().join("disk.strata");
    ok(run_limited(&[&"create", &disk, &image, &"-q"]));
    let target = fs.path().join("restored.img");
    fails(
        &[&"restore", &image, &target, &"-q"],
        1,
        &["restored.img.partial", "No space left"],
    );
    assert!(!target.exists() && !fs.path().join("restored.img.partial").exists());
}

#[cfg(target_os = "linux")]
#[test]
fn unusable_devices_are_refused() {
    if !require_root("unusable_devices_are_refused") {
        return;
    }
    let d = tempdir();
    // A loop device with nothing attached: a device node with no medium.
    let free = sh("losetup", &["--find"]);
    let dest = d.path().join("out.strata");
    let err = fails(&[&"create", &free, &dest], 1, &[&free]);
    assert!(
        err.contains("is empty") || err.contains("No such device"),
        "{err}"
    );
    assert!(!dest.exists());

    // Restoring onto a device smaller than the disk is refused before writing anything.
    let disk = d.path().join("disk.img");
    std::fs::write(&disk, text(8 << 20, 47)).unwrap();
    let image = d.path().join("disk.strata");
    ok(run_limited(&[&"create", &disk, &image, &"-q"]));
    let small = d.path().join("small.img");
    std::fs::write(&small, vec![0x55u8; 4 << 20]).unwrap();
    let lo = Loop::attach(&small, 512, false);
    fails(
        &[&"restore", &image, &lo.0],
        1,
        &["smaller than the imaged disk"],
    );
    drop(lo);
    assert!(std::fs::read(&small).unwrap().iter().all(|&b| b == 0x55));
}

/// Output of a command that met damage: a success whose bytes are right, or errors, each
/// one line starting with `strata:`, with no panic report; an internal error (a panic
/// caught by the CLI) names the image and exits 3.
#[cfg(target_os = "linux")]
fn no_panic_report(what: &str, o: &std::process::Output, image: &std::path::Path) {
    let (code, _, err) = outcome(o);
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace", "\nnote:"] {
        assert!(!err.contains(bad), "{what}: panic report on stderr: {err}");
    }
    assert!(
        err.lines().all(|l| l.starts_with("strata: ")),
        "{what}: stray stderr lines: {err}"
    );
    if err.contains("internal error") {
        assert_eq!(code, 3, "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(err.contains(&image.display().to_string()), "{what}: {err}");
    }
}

/// An ext4 file whose two extents are stored out of order (the kernel keeps them sorted
/// and searches them as such; a damaged or foreign writer may not): no command ends in
/// a panic report. Bytes edited here: no Linux tool writes unsorted extents.
#[cfg(target_os = "linux")]
#[test]
fn a_panic_on_damaged_metadata_is_one_line_naming_the_image() {
    let d = tempdir();
    let tree = d.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let data = noise(3072, 61);
    std::fs::write(tree.join("f"), &data).unwrap();
    let vol = d.path().join("ext.img");
    let (vol_s, tree_s) = (vol.to_str().unwrap(), tree.to_str().unwrap());
    sh(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-O",
            "^has_journal,^metadata_csum",
            "-b",
            "1024",
            "-N",
            "32",
            "-d",
            tree_s,
            vol_s,
            "512k",
        ],
    );
    // Where inode 12 (/f) lies, and its data blocks, from debugfs.
    let imap = sh("debugfs", &["-R", "imap /f", vol_s]);
    let num = |after: &str| -> u64 {
        let t = imap.split(after).nth(1).unwrap().trim_start();
        let t = t.split([',', '\n']).next().unwrap().trim();
        match t.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).unwrap(),
            None => t.parse().unwrap(),
        }
    };
    let at = num("located at block") * 1024 + num("offset");
    let blocks: Vec<u32> = sh("debugfs", &["-R", "blocks /f", vol_s])
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    // Extent header (magic, 2 entries, room for 4, depth 0), then block 1-2 before 0.
    let mut node = Vec::new();
    for v in [0xF30Au16, 2, 4, 0, 0, 0] {
        node.extend_from_slice(&v.to_le_bytes());
    }
    for (lblk, len, start) in [(1u32, 2u16, blocks[1]), (0, 1, blocks[0])] {
        node.extend_from_slice(&lblk.to_le_bytes());
        node.extend_from_slice(&len.to_le_bytes());
        node.extend_from_slice(&0u16.to_le_bytes());
        node.extend_from_slice(&start.to_le_bytes());
    }
    write_at(&vol, at + 0x28, &node);

    let image = d.path().join("ext.strata");
    ok(run_limited(&[&"create", &vol, &image, &"-q"]));
    assert!(ok(run_limited(&[&"ls", &image, &"/"])).contains('f'));
    let (file_out, dir_out) = (d.path().join("f.out"), d.path().join("tree.out"));
    let runs: [(&str, Vec<&dyn AsRef<std::ffi::OsStr>>); 4] = [
        ("cat", vec![&"cat", &image, &"/f"]),
        ("cp", vec![&"cp", &"-q", &image, &"/f", &file_out]),
        ("cp -r", vec![&"cp", &"-r", &"-q", &image, &"/", &dir_out]),
        ("verify", vec![&"verify", &"-q", &image]),
    ];
    for (what, args) in runs {
        let mut c = strata_limited();
        // Set by many developers' shells; must not bring the report back.
        c.env("RUST_BACKTRACE", "1");
        for a in &args {
            c.arg(a);
        }
        let o = c.output().unwrap();
        no_panic_report(what, &o, &image);
        if what == "cat" && o.status.success() {
            assert!(o.stdout == data, "cat returned wrong bytes with success");
        }
    }
}

/// The catch itself: a panic in a worker thread is reported with the worker's cause.
#[test]
fn internal_error_text_is_one_line() {
    let t = strata::error::internal_error(std::path::Path::new("x.strata"), "boom at a.rs:1");
    assert_eq!(t.lines().count(), 1);
    assert!(t.starts_with("x.strata: internal error"), "{t}");
    let r = strata::error::catch_panic(|| -> u32 { panic!("first line\nsecond") });
    assert_eq!(r.unwrap_err(), "first line");
}
