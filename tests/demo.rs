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
    let want = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample/sample-disk.sha256"),
    )
    .unwrap();
    let restored = d.path().join("restored-disk.img");
    assert!(want.starts_with(&sha256(&restored)));
    // Running it again in the same place works (old files are replaced).
    ok(run(&[&"demo", &"--dir", &d.path()]));
}
