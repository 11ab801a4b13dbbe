//! A source that cannot be read: `create` fails naming the device and the byte offset, or
//! with `--skip-bad-sectors` images around the bad sectors, records them (they read as
//! zeros), `info` and `verify` list them and verify does not count them as damage.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

/// Needs FUSE for its failing source: Linux only.
#[cfg(target_os = "linux")]
mod failing_source {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    /// A source whose reads fail with EIO in chosen 4 KiB blocks: the raw file of a `strata
    /// mount --raw` of an image of `file` in which the chunks of those blocks are damaged. (The
    /// kernels this runs on have no device-mapper, so its `error` target cannot be used.)
    /// Unmounted on drop.
    struct Failing {
        mnt: PathBuf,
    }

    impl Failing {
        fn new(dir: &Path, file: &Path, bad_blocks: &[u64]) -> Failing {
            let image = dir.join("source.strata");
            // One 4 KiB block per chunk, so each damaged chunk is exactly one block.
            ok(run(&[
                &"create",
                &file,
                &image,
                &"-q",
                &"--clone",
                &"--chunk-size",
                &"4096",
            ]));
            damage_block_chunks(&image, bad_blocks);
            let mnt = dir.join("mnt");
            std::fs::create_dir(&mnt).unwrap();
            ok(run(&[&"mount", &image, &mnt, &"--raw"]));
            Failing { mnt }
        }

        fn path(&self) -> String {
            self.mnt.join("disk.img").display().to_string()
        }
    }

    impl Drop for Failing {
        fn drop(&mut self) {
            let _ = strata().arg("unmount").arg(&self.mnt).status();
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
        }
    }

    #[test]
    fn unreadable_sectors_fail_create_or_are_recorded_with_skip_bad_sectors() {
        if !require_root("unreadable_sectors_fail_create_or_are_recorded_with_skip_bad_sectors") {
            return;
        }
        assert!(
            Path::new("/dev/fuse").exists(),
            "this test needs /dev/fuse for its failing source"
        );
        let d = tempdir();
        let file = d.path().join("disk.img");
        let data = text(8 << 20, 50);
        std::fs::write(&file, &data).unwrap();
        // Bytes 2 MiB .. 2 MiB + 4 KiB (block 512) and the block holding byte 5120000 (block
        // 1250) fail.
        let dev = Failing::new(d.path(), &file, &[512, 1250]);
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
        // Block 1250 is bytes 5120000..5124096.
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
