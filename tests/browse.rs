//! `strata ls`, `cat` and `cp` across filesystems: the sample disk's partitions, the
//! command line, paths, and one `Vfs` shared by threads. Each filesystem's own tests are in
//! `browse_ntfs.rs`, `browse_ext.rs` and `browse_fat.rs`.
//!
//! The sample disk's expected listing (`fixtures/sample/sample-disk.manifest.txt`) was made
//! with the kernel's ext4 driver, ntfs-3g and mtools (`fixtures/manifest.sh`): every name,
//! type, size, mtime, link target and sha256 read from an image must match it.
// The reference listings come from Linux tools (mtools, the kernel, ntfs-3g), run here.
#![cfg(unix)]

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The sample disk manifest's lines of partition `part` (`p1`…).
fn manifest_lines(part: &str) -> BTreeSet<String> {
    sample_manifest()
        .lines()
        .filter(|l| l.starts_with(&format!("{part}\t")))
        .map(str::to_string)
        .collect()
}

/// The sample disk: ls and cp of every partition give exactly the manifest.
#[test]
fn sample_disk_matches_the_manifest() {
    let dir = tempdir();
    let disk = sample_disk(dir.path());
    let img = image_of(&disk, dir.path());

    // The top lists the three partitions with their filesystems.
    let (top, _) = ls_tree(&img, "/");
    let parts: Vec<_> = top
        .iter()
        .filter(|(p, _)| p.matches('/').count() == 1)
        .map(|(p, s)| {
            (
                p.clone(),
                s.json["filesystem"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        parts,
        [
            ("/p1".to_string(), "FAT32".to_string()),
            ("/p2".to_string(), "NTFS".to_string()),
            ("/p3".to_string(), "ext4".to_string())
        ]
    );
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample/sample-disk.manifest.txt"),
    )
    .unwrap();
    compare_with_manifest(&img, &manifest, &["p1", "p2", "p3"]);
}

#[test]
fn cat_reads_files_and_lookups_follow_each_filesystem() {
    let dir = tempdir();
    let img = image_of(&sample_disk(dir.path()), dir.path());
    let want: BTreeMap<String, String> = manifest_lines("p2")
        .into_iter()
        .chain(manifest_lines("p1"))
        .chain(manifest_lines("p3"))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (format!("/{}{}", f[0], f[1]), f[5].to_string())
        })
        .collect();
    for (path, sha) in [
        ("/p2/README.txt", &want["/p2/README.txt"]),
        // NTFS and FAT names are case-insensitive; ext names are not.
        ("/p2/readme.TXT", &want["/p2/README.txt"]),
        ("p3/README.txt", &want["/p3/README.txt"]),
        (
            "/p1/Dokumente/draft v2.txt",
            &want["/p1/Dokumente/draft v2.txt"],
        ),
        (
            "/p1/dokumente/DRAFT V2.TXT",
            &want["/p1/Dokumente/draft v2.txt"],
        ),
        ("/p3/src/../README.txt", &want["/p3/README.txt"]),
    ] {
        let o = run(&[&"cat", &img, &path]);
        let (code, _, err) = outcome(&o);
        assert_eq!(code, 0, "{path}: {err}");
        assert_eq!(&hex_sha(&o.stdout), sha, "{path}");
    }
    for bad in [
        "/p3/readme.txt",
        "/p9/x",
        "/p2/nothing here",
        "/p3/README.txt/x",
    ] {
        let (code, _, err) = outcome(&run(&[&"cat", &img, &bad]));
        assert_eq!(code, 1, "{bad}");
        assert!(
            err.contains(bad.trim_start_matches('/').split('/').next().unwrap()),
            "{bad}: {err}"
        );
    }
    // Listed paths are normalised.
    let out = ok(run(&[&"ls", &"--json", &img, &"p3/src/../Music/"]));
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["path"].as_str().unwrap().starts_with("/p3/Music/"),
            "{line}"
        );
    }
    let (code, _, err) = outcome(&run(&[&"cat", &img, &"/p3/src"]));
    assert_eq!(code, 1);
    assert!(err.contains("not a regular file"), "{err}");
    let (code, _, err) = outcome(&run(&[&"cat", &img, &"/p3/dangling link"]));
    assert_eq!(code, 1);
    assert!(err.contains("symbolic link to does/not/exist"), "{err}");
}

#[test]
fn cp_never_overwrites_without_force() {
    let dir = tempdir();
    let img = image_of(&sample_disk(dir.path()), dir.path());
    let dest = dir.path().join("notes.txt");
    std::fs::write(&dest, b"mine").unwrap();
    let (code, _, err) = outcome(&run(&[&"cp", &img, &"/p3/notes", &dest]));
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"mine");

    ok(run(&[
        &"cp",
        &"--force",
        &"--quiet",
        &img,
        &"/p3/notes",
        &dest,
    ]));
    let want = manifest_lines("p3")
        .into_iter()
        .find(|l| l.starts_with("p3\t/notes\t"))
        .unwrap();
    assert!(want.ends_with(&sha256(&dest)));

    // A directory needs -r.
    let (code, _, err) = outcome(&run(&[&"cp", &img, &"/p3/src", &dir.path().join("src")]));
    assert_eq!(code, 1);
    assert!(err.contains("-r"), "{err}");

    // A link at the destination is replaced, never written through (links: Unix only).
    #[cfg(unix)]
    {
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        ok(run(&[&"cp", &"-f", &"-q", &img, &"/p3/notes", &link]));
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}

/// Names that cannot be created as they are (control characters, `%XX` look-alikes) are
/// escaped reversibly, reported, and nothing lands outside DEST. No root needed: mkfs.ext4
/// takes any byte but `/` and NUL in names.
#[test]
fn hostile_names_are_escaped_inside_dest() {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let names = [
        "new\nline",
        "bell\x07",
        "tab\there",
        "%2F..%2F..%2Fescape",
        "...",
    ];
    for n in names {
        std::fs::write(tree.join(n), n.as_bytes()).unwrap();
    }
    std::fs::create_dir(tree.join("sub\x1b[31m")).unwrap();
    std::fs::write(tree.join("sub\x1b[31m/inner"), b"inner").unwrap();
    let vol = dir.path().join("vol.ext4");
    let o = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&tree)
        .arg(&vol)
        .arg("8M")
        .output()
        .expect("mkfs.ext4 is needed for this test");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image_of(&vol, dir.path());
    let dest = dir.path().join("dest");
    let o = run(&[&"cp", &"-r", &"-q", &img, &"/", &dest]);
    let (code, _, err) = outcome(&o);
    assert_eq!(code, 0, "{err}");
    for (name, escaped) in [
        ("new\nline", "new%0Aline"),
        ("bell\x07", "bell%07"),
        ("tab\there", "tab%09here"),
        ("%2F..%2F..%2Fescape", "%252F..%252F..%252Fescape"),
        ("...", "..."),
    ] {
        let p = dest.join(escaped);
        assert_eq!(std::fs::read(&p).unwrap(), name.as_bytes(), "{escaped}");
        if name != escaped {
            assert!(err.contains(&format!("name escaped as {escaped}")), "{err}");
        }
    }
    assert_eq!(
        std::fs::read(dest.join("sub%1B[31m/inner")).unwrap(),
        b"inner"
    );
    // Nothing outside DEST: the temporary directory holds only what the test made.
    let mut top: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["dest", "tree", "vol.ext4", "vol.ext4.strata"]);
}

/// The filesystem layer is shared by threads (as a FUSE front-end will): four threads read
/// every file of every partition at once, through one `Vfs`, and get the manifest's bytes.
#[test]
fn one_vfs_serves_many_threads() {
    use std::sync::Arc;
    use strata::vfs::{NodeKind, Target, Vfs};
    let dir = tempdir();
    let img = image_of(&sample_disk(dir.path()), dir.path());
    let chain = strata::chain::Chain::open(&img, &Default::default()).unwrap();
    let chain = Arc::new(chain);
    let vfs = Arc::new(Vfs::open(chain.clone(), chain.sector_size(), chain.cache()).unwrap());
    let files: Vec<(String, String)> = ["p1", "p2", "p3"]
        .iter()
        .flat_map(|p| manifest_lines(p))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[2] == "f").then(|| (format!("/{}{}", f[0], f[1]), f[5].to_string()))
        })
        .collect();
    assert_eq!(files.len(), 360);
    let files = Arc::new(files);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (vfs, files) = (vfs.clone(), files.clone());
            std::thread::spawn(move || {
                // Each thread walks the list from a different place.
                for i in 0..files.len() {
                    let (path, sha) = &files[(i + t * 97) % files.len()];
                    let Target::Node { mount, node } = vfs.resolve(path).unwrap() else {
                        panic!("{path}: not a node");
                    };
                    let fs = vfs.fs(mount).unwrap();
                    assert_eq!(fs.metadata(node).unwrap().kind, NodeKind::File);
                    let data = Vfs::read_all(&**fs, node, "").unwrap();
                    assert_eq!(&hex_sha(&data), sha, "{path}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
