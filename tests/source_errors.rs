//! A source that cannot be read: `create` fails naming the device and the byte offset, or
//! with `--skip-bad-sectors` images around the bad sectors, records them (they read as
//! zeros), `info` and `verify` list them and verify does not count them as damage.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A device-mapper device: `table` lines (start, length in sectors, target) over `file`'s
/// loop device; removed on drop.
struct Mapped {
    name: String,
    _lo: Loop,
}

impl Mapped {
    fn new(name: &str, file: &Path, segments: &[(u64, u64, bool)]) -> Mapped {
        let lo = Loop::attach(file, 512, true);
        let table: String = segments
            .iter()
            .map(|&(start, len, good)| {
                if good {
                    format!("{start} {len} linear {} {start}\n", lo.0)
                } else {
                    format!("{start} {len} error\n")
                }
            })
            .collect();
        let mut child = Command::new("dmsetup")
            .args(["create", name])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("dmsetup is needed for this test");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(table.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "dmsetup create {name}");
        Mapped {
            name: name.into(),
            _lo: lo,
        }
    }

    fn path(&self) -> String {
        format!("/dev/mapper/{}", self.name)
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        let _ = Command::new("dmsetup")
            .args(["remove", "--retry", &self.name])
            .status();
    }
}

#[test]
fn unreadable_sectors_fail_create_or_are_recorded_with_skip_bad_sectors() {
    if !require_root("unreadable_sectors_fail_create_or_are_recorded_with_skip_bad_sectors") {
        return;
    }
    // A kernel without device-mapper (some containers) cannot run this; the truncated-source
    // tests below take the same paths with errors from a regular file.
    let dm = Command::new("dmsetup").arg("targets").output();
    if !dm.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("error"))
    {
        eprintln!("skipped: the kernel has no device-mapper error target");
        return;
    }
    let d = tempdir();
    let file = d.path().join("disk.img");
    let data = text(8 << 20, 50);
    std::fs::write(&file, &data).unwrap();
    // 8 MiB: sectors 4096..4104 (bytes 2 MiB .. 2 MiB + 4 KiB) and 10000..10001 fail.
    let name = format!("strata-bad-{}", std::process::id());
    let dev = Mapped::new(
        &name,
        &file,
        &[
            (0, 4096, true),
            (4096, 8, false),
            (4104, 5896, true),
            (10000, 1, false),
            (10001, 16384 - 10001, true),
        ],
    );
    let image = d.path().join("disk.strata");

    // Without the option: a one-line error naming the device and the first bad byte.
    let (code, _, err) = outcome(&run(&[&"create", &dev.path(), &image, &"-q", &"--clone"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&dev.path()) && err.contains("2097152"),
        "{err}"
    );
    assert!(err.contains("--skip-bad-sectors"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!image.exists() && !d.path().join("disk.strata.partial").exists());

    // With it: the bad blocks are recorded and everything else is imaged.
    let (code, _, err) = outcome(&run(&[
        &"create",
        &dev.path(),
        &image,
        &"-q",
        &"--clone",
        &"--skip-bad-sectors",
    ]));
    assert_eq!(code, 0, "{err}");
    // Sector 10000 is byte 5120000, inside the 4 KiB block 1250 (5120000..5124096).
    let want_ranges = [(2097152u64, 2101248u64), (5120000, 5124096)];
    assert!(
        err.contains("2097152-2101248") && err.contains("5120000-5124096"),
        "{err}"
    );
    let info = ok(run(&[&"info", &image]));
    assert!(
        info.contains("unreadable:") && info.contains("2097152-2101248"),
        "{info}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"info", &image, &"--json"]))).unwrap();
    assert_eq!(v["unreadable"].as_array().unwrap().len(), 2, "{v}");
    // Restored: the source everywhere, zeros in the unreadable blocks.
    let got = verify_and_restore(&image);
    let mut expect = data.clone();
    for (a, b) in want_ranges {
        expect[a as usize..b as usize].fill(0);
    }
    assert!(
        got == expect,
        "restored disk differs outside the unreadable blocks"
    );
}

/// `verify` passes (unreadable ranges are no damage) and names the unreadable ranges; the
/// restored disk is returned.
fn verify_and_restore(image: &Path) -> Vec<u8> {
    let out = ok(run(&[&"verify", &image]));
    assert!(
        out.contains("OK ") && out.contains("could not be read"),
        "{out}"
    );
    let restored = image.with_extension("restored");
    ok(run(&[&"restore", &image, &restored, &"-q"]));
    std::fs::read(&restored).unwrap()
}

/// Starts `create DISK IMAGE extra…` on a 64 MiB source, cuts the source to 1 MiB while it
/// is read, and returns the outcome and the source's first MiB.
fn create_while_truncating(dir: &Path, extra: &[&str]) -> ((i32, String, String), Vec<u8>) {
    let disk = dir.join("disk.img");
    let data = noise(64 << 20, 51);
    std::fs::write(&disk, &data).unwrap();
    let child = strata()
        .args(["create", "-q", "--level", "19", "--threads", "1"])
        .args(extra)
        .arg(&disk)
        .arg(dir.join("disk.strata"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.set_len(1 << 20).unwrap();
    let o = child.wait_with_output().unwrap();
    (outcome(&o), data[..1 << 20].to_vec())
}

/// A source file that shrinks while it is read: `create` fails naming it and the offset,
/// and leaves nothing behind.
#[test]
fn source_truncated_while_read_fails_with_the_offset() {
    let d = tempdir();
    let image = d.path().join("disk.strata");
    let (o, _) = create_while_truncating(d.path(), &[]);
    let (code, _, err) = o;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("disk.img") && err.contains("at byte"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!image.exists() && !d.path().join("disk.strata.partial").exists());
}

/// The same with `--skip-bad-sectors`: the part that could no longer be read is recorded as
/// unreadable up to the disk's end, listed by `info` and `verify` (which passes), and
/// restores as zeros; what was read before is intact.
#[test]
fn source_truncated_with_skip_bad_sectors_records_the_lost_tail() {
    let d = tempdir();
    let image = d.path().join("disk.strata");
    let ((code, _, err), head) = create_while_truncating(d.path(), &["--skip-bad-sectors"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("could not be read") && err.contains("-67108864"),
        "{err}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"info", &image, &"--json"]))).unwrap();
    let ranges = v["unreadable"].as_array().unwrap();
    let (start, end) = (
        ranges[0][0].as_u64().unwrap(),
        ranges[0][1].as_u64().unwrap(),
    );
    assert_eq!((ranges.len(), end), (1, 64 << 20), "{v}");
    assert!(start >= 1 << 20, "{v}");
    let info = ok(run(&[&"info", &image]));
    assert!(info.contains(&format!("{start}-{end}")), "{info}");
    let got = verify_and_restore(&image);
    assert_eq!(got.len(), 64 << 20);
    assert!(
        got[..1 << 20] == head[..],
        "the part read before the cut is intact"
    );
    assert!(got[start as usize..].iter().all(|&b| b == 0));
}
