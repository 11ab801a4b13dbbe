//! create → restore gives back the exact disk, for every shape of disk the format must
//! handle; the image bytes do not depend on the thread count.

mod common;
use common::*;
use std::path::Path;

#[test]
fn sample_disk_round_trips() {
    let d = tempdir();
    let disk = sample_disk(d.path());
    let image = round_trip(d.path(), &disk, &[]);
    let info = info_json(&image);
    // The sample is mostly free space: zero blocks are not stored.
    assert!(info["data_bytes"].as_u64().unwrap() < 40 << 20, "{info}");
    assert!(info["image_bytes"].as_u64().unwrap() < 8 << 20, "{info}");
    let expected = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample/sample-disk.sha256"),
    )
    .unwrap();
    assert!(expected.starts_with(&sha256(&disk)), "fixture changed");
}

#[test]
fn random_and_mixed_data_round_trips() {
    let d = tempdir();
    let disk = d.path().join("mixed.img");
    let mut data = noise(24 << 20, 1);
    data.extend(text(20 << 20, 2));
    data.extend(vec![0u8; 3 << 20]);
    data.extend(noise(5 << 20, 3));
    std::fs::write(&disk, &data).unwrap();
    let image = round_trip(d.path(), &disk, &[]);
    let info = info_json(&image);
    // Random chunks are stored raw; the zero run is not stored at all.
    assert!(info["chunks_stored_raw"].as_u64().unwrap() >= 29, "{info}");
    assert_eq!(info["data_bytes"].as_u64().unwrap(), 49 << 20, "{info}");
}

#[test]
fn size_not_a_multiple_of_chunk_block_or_sector_round_trips() {
    let d = tempdir();
    let disk = d.path().join("odd.img");
    // 3 MiB + 1234 bytes: the last block is partial and the last chunk short.
    let mut data = text((3 << 20) + 1234, 4);
    data[(3 << 20) + 1233] = 0xee;
    std::fs::write(&disk, &data).unwrap();
    let image = round_trip(d.path(), &disk, &["--chunk-size", "65536"]);
    assert_eq!(
        info_json(&image)["disk_bytes"].as_u64().unwrap(),
        (3 << 20) + 1234
    );
}

#[test]
fn mostly_zero_8_gib_sparse_file_round_trips_sparse() {
    let d = tempdir();
    let disk = d.path().join("sparse.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(8 << 30).unwrap();
    drop(f);
    write_at(&disk, 0, &text(1 << 20, 5));
    write_at(&disk, 3 << 30, &noise(3 << 20, 6));
    write_at(&disk, (8 << 30) - 4096, &text(4096, 7));
    let image = d.path().join("sparse.strata");
    let restored = d.path().join("restored.img");
    ok(run(&[&"create", &disk, &image, &"-q"]));
    let info = info_json(&image);
    assert_eq!(info["data_bytes"].as_u64().unwrap(), (4 << 20) + 4096);
    assert!(info["image_bytes"].as_u64().unwrap() < 5 << 20);
    ok(run(&[&"restore", &image, &restored, &"-q"]));
    assert!(same_content(&disk, &restored), "restored disk differs");
    // Zero ranges are holes in the restored file, not written zeros.
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&restored).unwrap().blocks();
        assert!(blocks * 512 < 64 << 20, "restored file is not sparse");
    }
}

#[test]
fn thread_count_does_not_change_the_image() {
    let d = tempdir();
    let disk = d.path().join("disk.img");
    let mut data = text(9 << 20, 8);
    data.extend(noise(3 << 20, 9));
    data.extend(vec![0u8; 1 << 20]);
    data.extend(text(5 << 20, 10));
    std::fs::write(&disk, &data).unwrap();
    let mut images = Vec::new();
    for t in ["1", "2", "5"] {
        let image = d.path().join(format!("t{t}.strata"));
        let o = strata()
            .env("SOURCE_DATE_EPOCH", "1767225600")
            .args([
                "create",
                "-q",
                "--uuid",
                "6a1b7c2d-0000-4000-8000-000000000001",
            ])
            .args(["--threads", t, "--chunk-size", "262144"])
            .arg(&disk)
            .arg(&image)
            .output()
            .unwrap();
        ok(o);
        images.push(sha256(&image));
    }
    assert_eq!(images[0], images[1]);
    assert_eq!(images[0], images[2]);
}

#[test]
fn sector_size_4096_disk_file_round_trips() {
    let d = tempdir();
    let disk = d.path().join("4k.img");
    std::fs::write(&disk, text(6 << 20, 11)).unwrap();
    let image = round_trip(d.path(), &disk, &["--sector-size", "4096"]);
    assert_eq!(info_json(&image)["sector_size"].as_u64().unwrap(), 4096);
}

#[cfg(target_os = "linux")]
#[test]
fn block_devices_with_512_and_4096_byte_sectors_round_trip() {
    if !require_root("block_devices_with_512_and_4096_byte_sectors_round_trip") {
        return;
    }
    let d = tempdir();
    let sample = sample_disk(d.path());
    for ss in [512u32, 4096] {
        let lo = Loop::attach(&sample, ss, true);
        let image = d.path().join(format!("dev{ss}.strata"));
        ok(run(&[&"create", &lo.0, &image, &"-q"]));
        let info = info_json(&image);
        assert_eq!(info["sector_size"].as_u64().unwrap(), u64::from(ss));
        assert!(info["source"]
            .as_str()
            .unwrap()
            .starts_with("block device /dev/loop"));
        // Restore onto a second loop device of the same size, then compare.
        let target = d.path().join(format!("target{ss}.img"));
        std::fs::File::create(&target)
            .unwrap()
            .set_len(std::fs::metadata(&sample).unwrap().len())
            .unwrap();
        write_at(&target, 5 << 20, &noise(1 << 20, 12)); // old data must be overwritten
        let tl = Loop::attach(&target, ss, false);
        ok(run(&[&"restore", &image, &tl.0, &"-q"]));
        drop(tl);
        assert_eq!(sha256(&sample), sha256(&target), "{ss}-byte sectors");
    }
}
