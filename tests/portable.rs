//! The core commands on every system strata builds for (Linux, and Windows under wine in
//! CI): create, verify, restore, ls, cat and cp on the committed sample disk, and a chain
//! consolidated in place (which replaces a file the process had open while merging).

mod common;
use common::*;
use std::collections::BTreeMap;

/// (path, type, size, sha256) of partition `part`'s entries in the sample disk's manifest.
fn manifest(part: &str) -> BTreeMap<String, (String, u64, String)> {
    sample_manifest()
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f[0] == part)
        .map(|f| {
            (
                f[1].to_string(),
                (f[2].to_string(), f[3].parse().unwrap(), f[5].to_string()),
            )
        })
        .collect()
}

#[test]
fn sample_disk_create_verify_restore_ls_cat_cp() {
    let d = tempdir();
    let disk = sample_disk(d.path());
    let image = d.path().join("sample.strata");
    ok(run(&[&"create", &disk, &image, &"--quiet"]));
    ok(run(&[&"verify", &image, &"--quiet"]));
    let restored = d.path().join("restored.img");
    ok(run(&[&"restore", &image, &restored, &"--quiet"]));
    assert_eq!(sha256(&disk), sha256(&restored), "restored disk differs");
    std::fs::remove_file(&restored).unwrap();

    for part in ["p1", "p2", "p3"] {
        let want = manifest(part);
        // ls -R --json lists every entry of the manifest with its type and size.
        let out = ok(run(&[&"ls", &"-R", &"--json", &image, &format!("/{part}")]));
        let mut seen = BTreeMap::new();
        for line in out.lines() {
            let j: serde_json::Value = serde_json::from_str(line).unwrap();
            let path = j["path"].as_str().unwrap();
            let path = path.strip_prefix(&format!("/{part}")).unwrap().to_string();
            let t = match j["type"].as_str().unwrap() {
                "file" => "f",
                "dir" => "d",
                "symlink" => "l",
                other => panic!("{path}: unexpected type {other}"),
            };
            // NTFS streams, as the manifest lists them (ntfs-3g's user.* attributes).
            for s in j["streams"].as_array().into_iter().flatten() {
                let name = s["name"].as_str().unwrap();
                seen.insert(
                    format!("{path}:user.{name}"),
                    ("x".into(), s["size"].as_u64().unwrap()),
                );
            }
            seen.insert(path, (t.to_string(), j["size"].as_u64().unwrap()));
        }
        let want_kinds: BTreeMap<_, _> = want
            .iter()
            .map(|(p, (t, size, _))| (p.clone(), (t.clone(), if t == "d" { 0 } else { *size })))
            .collect();
        let seen: BTreeMap<_, _> = seen
            .into_iter()
            .map(|(p, (t, s))| (p, (t.clone(), if t == "d" { 0 } else { s })))
            .collect();
        assert_eq!(seen, want_kinds, "{part}: ls -R differs from the manifest");

        // cat gives files' contents (a few per partition: under wine every process start
        // is slow and now and then fails by itself).
        // Streams too (p2's Zone.Identifier).
        for (path, (_, _, sha)) in want.iter().filter(|(_, (t, _, _))| t == "x") {
            let o = run(&[
                &"cat",
                &image,
                &format!("/{part}{}", path.replace(":user.", ":")),
            ]);
            assert!(o.status.success(), "cat {part}{path}: {}", outcome(&o).2);
            assert_eq!(&hex_sha(&o.stdout), sha, "cat {part}{path}");
        }
        for (path, (t, _, sha)) in want.iter().filter(|(_, (t, _, _))| t == "f").take(4) {
            let o = run(&[&"cat", &image, &format!("/{part}{path}")]);
            assert!(o.status.success(), "cat {part}{path}: {}", outcome(&o).2);
            assert_eq!(&hex_sha(&o.stdout), sha, "cat {part}{path} ({t})");
        }
    }

    // cp -r of the FAT and NTFS partitions copies every file and directory intact (the
    // ext partition holds symbolic links, which need privileges on Windows).
    let dest = d.path().join("copied");
    std::fs::create_dir(&dest).unwrap();
    ok(run(&[
        &"cp", &"-r", &"--quiet", &image, &"/p1", &"/p2", &dest,
    ]));
    for part in ["p1", "p2"] {
        for (path, (t, size, sha)) in manifest(part) {
            let copied = dest.join(part).join(path.trim_start_matches('/'));
            match t.as_str() {
                "d" => assert!(copied.is_dir(), "{}", copied.display()),
                // A stream goes with its file as an extended attribute (Linux) or a stream
                // (Windows); its contents were checked with cat above.
                "x" => {}
                _ => {
                    let data = std::fs::read(&copied)
                        .unwrap_or_else(|e| panic!("{}: {e}", copied.display()));
                    assert_eq!(data.len() as u64, size, "{}", copied.display());
                    assert_eq!(hex_sha(&data), sha, "{}", copied.display());
                }
            }
        }
    }
}

#[test]
fn chain_consolidated_in_place_restores_every_remaining_point() {
    let d = tempdir();
    let disk = sample_disk(d.path());
    let full = d.path().join("a-full.strata");
    let inc1 = d.path().join("b-inc.strata");
    let inc2 = d.path().join("c-inc.strata");
    ok(run(&[&"create", &disk, &full, &"--quiet", &"--clone"]));
    write_at(&disk, 40 << 20, &noise(3 << 20, 7));
    ok(run(&[
        &"create",
        &disk,
        &inc1,
        &"--quiet",
        &"--clone",
        &"--incremental",
        &full,
    ]));
    write_at(&disk, 41 << 20, &text(2 << 20, 8));
    write_at(&disk, 70 << 20, &noise(1 << 20, 9));
    ok(run(&[
        &"create",
        &disk,
        &inc2,
        &"--quiet",
        &"--clone",
        &"--incremental",
        &inc1,
    ]));
    let want = sha256(&disk);

    // inc2 absorbs inc1: inc1's file goes away, inc2 now builds on the full image.
    let out = ok(run(&[&"consolidate", &inc2]));
    assert!(out.contains("removed"), "{out}");
    assert!(!inc1.exists(), "the merged parent was not removed");
    ok(run(&[&"verify", &inc2, &"--quiet"]));
    let restored = d.path().join("restored.img");
    ok(run(&[&"restore", &inc2, &restored, &"--quiet"]));
    assert_eq!(sha256(&restored), want, "the consolidated point differs");
    std::fs::remove_file(&restored).unwrap();

    // And into the full image: a full image under inc2's name, the old full file removed.
    ok(run(&[&"consolidate", &inc2, &"--quiet"]));
    assert!(!full.exists(), "the merged full image was not removed");
    let info: serde_json::Value =
        serde_json::from_str(&ok(run(&[&"info", &inc2, &"--json"]))).unwrap();
    assert_eq!(info["kind"], "full", "{info}");
    ok(run(&[&"restore", &inc2, &restored, &"--quiet"]));
    assert_eq!(sha256(&restored), want, "the full image differs");
}

/// Without the Dokan 2 driver (as under wine in CI), `mount` and `unmount` say what is
/// missing and how to get it; a bad mount point is named before anything is opened.
#[cfg(windows)]
#[test]
fn mount_without_dokan_says_how_to_install_it() {
    let d = tempdir();
    let disk = sample_disk(d.path());
    let image = d.path().join("sample.strata");
    ok(run(&[&"create", &disk, &image, &"--quiet"]));
    for args in [
        vec!["mount", image.to_str().unwrap(), "X:"],
        vec!["mount", image.to_str().unwrap(), "X:", "--partition", "2"],
        vec!["unmount", "X:"],
    ] {
        let o = strata().args(&args).output().unwrap();
        let (code, _, err) = outcome(&o);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("Dokan 2 is not installed"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    let o = strata()
        .args(["mount", image.to_str().unwrap(), "backup"])
        .output()
        .unwrap();
    let (code, _, err) = outcome(&o);
    assert_eq!(code, 1);
    assert!(
        err.contains("backup: a mount point is a drive letter"),
        "{err}"
    );
}
