//! Damage anywhere in an image is found by `verify` (exit 3) with the part named, and a
//! damaged chunk fails only the reads that touch it.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use strata::blockdev::BlockDev;
use strata::container::reader::Image;

/// A 6 MiB disk (text, random, zeros) imaged with 1 MiB chunks.
fn make_image(dir: &Path) -> (PathBuf, PathBuf) {
    let disk = dir.join("disk.img");
    let mut data = text(3 << 20, 21);
    data.extend(noise(2 << 20, 22));
    data.extend(vec![0u8; 1 << 20]);
    std::fs::write(&disk, &data).unwrap();
    let image = dir.join("disk.strata");
    ok(run_limited(&[&"create", &disk, &image, &"-q"]));
    (disk, image)
}

fn flip(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

fn verify(image: &Path) -> (i32, String, String) {
    outcome(&run_limited(&[&"verify", &image, &"-q"]))
}

#[test]
fn intact_image_verifies() {
    let d = tempdir();
    let (_, image) = make_image(d.path());
    let (code, out, _) = verify(&image);
    assert_eq!(code, 0);
    assert!(out.starts_with("OK "), "{out}");
}

#[test]
fn flipped_byte_in_a_chunk_is_reported_with_its_disk_range() {
    let d = tempdir();
    let (disk, image) = make_image(d.path());
    let img = Image::open(&image).unwrap();
    let c1 = img.index().chunks[1].clone();
    drop(img);
    flip(&image, c1.offset + 24 + u64::from(c1.stored_len) / 2);
    let (code, out, _) = verify(&image);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("BAD chunk 1"), "{out}");
    assert!(out.contains("checksum mismatch"), "{out}");
    assert!(out.contains("affects disk bytes 1048576-2097152"), "{out}");
    assert!(out.contains("FAILED"), "{out}");

    // JSON names the same range.
    let (_, json, _) = outcome(&run_limited(&[&"verify", &image, &"--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["problems"][0]["disk_ranges"][0][0], 1 << 20);

    // Reads of other chunks still return the right bytes; reads of chunk 1 fail.
    let img = strata::chain::Chain::open(&image, &Default::default()).unwrap();
    let want = std::fs::read(&disk).unwrap();
    let mut buf = vec![0u8; 8192];
    img.read_at(4096, &mut buf).unwrap();
    assert_eq!(buf, want[4096..4096 + 8192]);
    img.read_at(3 << 20, &mut buf).unwrap();
    assert_eq!(buf, want[3 << 20..(3 << 20) + 8192]);
    let e = img
        .read_at((1 << 20) + 100, &mut buf)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("chunk 1") && e.contains("1048576-2097152"),
        "{e}"
    );
    img.read_at(5 << 20, &mut buf).unwrap(); // unstored zeros
    assert!(buf.iter().all(|&b| b == 0));

    // Restore refuses to produce a silently wrong disk and leaves nothing behind.
    let target = d.path().join("restored.img");
    let (code, _, err) = outcome(&run_limited(&[&"restore", &image, &target, &"-q"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("chunk 1"), "{err}");
    assert!(!target.exists());
    assert!(!d.path().join("restored.img.partial").exists());
}

#[test]
fn flipped_byte_in_the_header_is_reported_and_chunks_still_checked() {
    let d = tempdir();
    let (_, image) = make_image(d.path());
    flip(&image, 150); // inside the source description
    let (code, out, _) = verify(&image);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("BAD header") && out.contains("checksum mismatch"),
        "{out}"
    );
    let (code, _, err) = outcome(&run_limited(&[&"info", &image]));
    assert_eq!(code, 3);
    assert!(err.contains("corrupt header"), "{err}");
}

#[test]
fn flipped_byte_in_the_index_block_hashes_or_trailer_is_reported() {
    let d = tempdir();
    let (_, image) = make_image(d.path());
    let img = Image::open(&image).unwrap();
    let (idx_off, hashes_off) = (img.trailer().index_offset, img.index().block_hashes_offset);
    let len = img.file_len();
    drop(img);
    let pristine = std::fs::read(&image).unwrap();
    for (offset, expect) in [
        (idx_off + 100, "corrupt index"),
        (idx_off + 3, "corrupt index"),
        (hashes_off + 9, "block-hash table"),
        (len - 40, "corrupt trailer"),
    ] {
        std::fs::write(&image, &pristine).unwrap();
        flip(&image, offset);
        let (code, out, err) = verify(&image);
        assert_eq!(code, 3, "flip at {offset}: {out}{err}");
        assert!(
            out.contains(expect) || err.contains(expect),
            "flip at {offset}: {out}{err}"
        );
    }
}

#[test]
fn every_flip_in_a_small_image_is_caught_by_verify() {
    let d = tempdir();
    let disk = d.path().join("tiny.img");
    let mut data = vec![0u8; 64 << 10];
    data[8192..8192 + 4096].copy_from_slice(&text(4096, 23));
    data[40960..40960 + 4096].copy_from_slice(&noise(4096, 24));
    std::fs::write(&disk, &data).unwrap();
    let image = d.path().join("tiny.strata");
    ok(run_limited(&[
        &"create",
        &disk,
        &image,
        &"-q",
        &"--chunk-size",
        &"4096",
    ]));
    let pristine = std::fs::read(&image).unwrap();
    let mut tried = 0;
    for i in 0..pristine.len() {
        let mut b = pristine.clone();
        b[i] ^= 0x01;
        std::fs::write(&image, &b).unwrap();
        let r = strata::ops::verify::verify(&image, 1, false);
        assert!(
            r.as_ref().map_or(true, |r| !r.ok()),
            "flip at byte {i} was not detected"
        );
        tried += 1;
    }
    assert!(tried > 4096 + 300);
}

#[test]
fn truncated_image_is_incomplete() {
    let d = tempdir();
    let (_, image) = make_image(d.path());
    let len = std::fs::metadata(&image).unwrap().len();
    for cut in [len - 1, len / 2, 5000, 100] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        for cmd in ["info", "verify"] {
            let (code, _, err) = outcome(&run_limited(&[&cmd, &image]));
            assert_eq!(code, 3, "{cmd} at {cut}: {err}");
            assert!(
                err.contains("image is incomplete: no trailer")
                    || (cut < 4096 && err.contains("corrupt header")),
                "{cmd} at {cut}: {err}"
            );
            assert!(err.contains("disk.strata"), "{err}");
        }
    }
}

/// The `.partial` output of an interrupted run is never taken for an image, even when its
/// bytes are complete (a consolidation is killed while it checks its output).
#[test]
fn complete_partial_output_is_refused() {
    let d = tempdir();
    let (_, image) = make_image(d.path());
    let partial = d.path().join("disk.strata.partial");
    std::fs::copy(&image, &partial).unwrap();
    for cmd in ["info", "verify", "ls"] {
        let (code, _, err) = outcome(&run_limited(&[&cmd, &partial]));
        assert_eq!(code, 3, "{cmd}: {err}");
        assert!(
            err.contains("disk.strata.partial: image is incomplete")
                && err.contains("interrupted run"),
            "{cmd}: {err}"
        );
    }
    ok(run_limited(&[&"verify", &image]));
}
