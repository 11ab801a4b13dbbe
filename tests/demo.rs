//! `strata demo` runs the whole job on the built-in sample without root or extra tools.

mod common;
use common::*;

#[test]
fn demo_proves_the_restored_disk_identical() {
    let d = tempdir();
    let out = ok(run(&[&"demo", &"--dir", &d.path()]));
    assert!(
        out.contains("The restored disk is identical to the original."),
        "{out}"
    );
    // It looks inside too: every partition listed, a file read, the NTFS stream README
    // shows (the sample's Zone.Identifier, as ntfs-3g wrote it) read, and why the restore
    // is identical.
    for want in [
        "/p1 [FAT32 \"STRATAFAT\"]: Dokumente/  Music/",
        "/p2 [NTFS \"STRATANTFS\"]: Documents/",
        "/p3 [ext4 \"STRATAEXT4\"]: Dokumente/",
        "strata cat ",
        "'/p2/results.png:Zone.Identifier'\n   [ZoneTransfer]\n   ZoneId=3\n",
        "free space is zeros",
    ] {
        assert!(out.contains(want), "{want:?} missing from\n{out}");
    }
    let readme = out
        .split("/p2/README.txt'\n   ")
        .nth(1)
        .expect("README.txt read");
    let first_line = readme.lines().next().unwrap().trim_end_matches('…');
    assert!(
        first_line.len() > 20 && !first_line.contains('\u{FFFD}'),
        "{first_line}"
    );
    let want = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample/sample-disk.sha256"),
    )
    .unwrap();
    let restored = d.path().join("restored-disk.img");
    assert!(want.starts_with(&sha256(&restored)));
    // Running it again in the same place works (old files are replaced).
    ok(run(&[&"demo", &"--dir", &d.path()]));
}
