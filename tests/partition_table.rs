//! `info`, `ls` and `cat` read a disk's partition table the same way
//! (`layout::partition_table`), including the cases a table alone does not tell.
//! The disks are built with Linux tools (sfdisk, mkfs.fat, mtools).
#![cfg(unix)]

mod common;

use common::*;
use std::path::Path;

fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok()
}

/// An MBR disk whose sector 0 also carries a FAT boot sector's BPB, as boot loaders that
/// copy the BPB of the partition they boot into the MBR leave it (no Linux tool writes
/// this layout, so the test copies the first 62 bytes of the partition's boot sector over
/// the MBR's boot code, leaving its partition entries alone). Sector 0 looks like a
/// bare FAT volume: `info` saw the partition, `ls` took the disk for a volume.
#[test]
fn an_mbr_carrying_a_bpb_is_a_partitioned_disk_for_info_and_ls() {
    for tool in ["sfdisk", "mkfs.fat", "mcopy"] {
        if !have(tool) {
            assert!(std::env::var_os("CI").is_none(), "{tool} is needed");
            eprintln!("skipped: {tool} is needed");
            return;
        }
    }
    let d = tempdir();
    let disk = d.path().join("bpb.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let mut sfdisk = std::process::Command::new("sfdisk")
        .args(["-q", disk.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, size=75776, type=6\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    sh(
        "mkfs.fat",
        &[
            "-F",
            "16",
            "-n",
            "BPBVOL",
            "--offset",
            "2048",
            disk.to_str().unwrap(),
            "37888",
        ],
    );
    let (a, b) = (d.path().join("a.txt"), d.path().join("b.bin"));
    std::fs::write(&a, text(5000, 3)).unwrap();
    std::fs::write(&b, noise(300_000, 4)).unwrap();
    let vol = format!("{}@@1M", disk.display());
    sh(
        "mcopy",
        &["-i", &vol, a.to_str().unwrap(), b.to_str().unwrap(), "::/"],
    );
    let bytes = std::fs::read(&disk).unwrap();
    write_at(&disk, 0, &bytes[1 << 20..(1 << 20) + 62]);
    assert!(strata::partition::looks_like_boot_sector(
        &std::fs::read(&disk).unwrap()[..512]
    ));

    let image = d.path().join("bpb.strata");
    ok(run(&[&"create", &disk, &image, &"-q"]));
    let info: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"info", &image, &"--json"]))).unwrap();
    assert_eq!(info["layout"]["table"]["scheme"], "mbr", "{info}");
    assert_eq!(info["layout"]["partitions"][0]["start"], 1 << 20, "{info}");
    assert_eq!(info["layout"]["partitions"][0]["label"], "BPBVOL", "{info}");

    let top = ok(run(&[&"ls", &image, &"--json"]));
    let v: serde_json::Value = serde_json::from_str(top.lines().next().unwrap()).unwrap();
    assert_eq!(top.lines().count(), 1, "{top}");
    assert_eq!(
        (&v["partition"], &v["filesystem"], &v["label"]),
        (
            &serde_json::json!(1),
            &serde_json::json!("FAT16"),
            &serde_json::json!("BPBVOL")
        ),
        "{top}"
    );
    // The files are mtools' bytes.
    for name in ["a.txt", "b.bin"] {
        let out = d.path().join(format!("mtools-{name}"));
        sh(
            "mcopy",
            &["-i", &vol, &format!("::/{name}"), out.to_str().unwrap()],
        );
        let got = run(&[&"cat", &image, &format!("/p1/{name}")]);
        assert!(got.status.success(), "{name}");
        assert!(got.stdout == std::fs::read(&out).unwrap(), "{name}");
        assert!(got.stdout == std::fs::read(Path::new(d.path()).join(name)).unwrap());
    }
}
