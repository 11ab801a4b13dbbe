//! Replays the fuzz targets' seeds (`fuzz/corpus/TARGET/seed-*`) and every input that once
//! made a target fail (`tests/fuzz-regressions/TARGET/*`) through the same harness the
//! fuzzer runs (`fuzz/fuzz_targets/harness.rs`), so a normal `cargo test` keeps each fix.
//! A panic, an allocation failure or a hang here is the bug coming back.

#[path = "../fuzz/fuzz_targets/harness.rs"]
mod harness;

use std::path::Path;

/// Runs `dir`'s files (those whose name starts with `prefix`) through `target`; returns
/// how many ran.
fn replay(dir: &Path, prefix: &str, target: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && !n.starts_with('.'))
        })
        .collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        eprintln!("replaying {}", f.display());
        target(&data);
    }
    files.len()
}

#[test]
fn seeds_and_past_failures_run_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = 0;
    for &(name, target) in harness::TARGETS {
        let n = replay(&root.join("fuzz/corpus").join(name), "seed-", target);
        assert!(
            n > 0,
            "no seeds for fuzz target {name} (run fuzz/make-seeds.sh)"
        );
        seeds += n;
        replay(&root.join("tests/fuzz-regressions").join(name), "", target);
    }
    assert!(seeds >= 8);
}

/// The walk the whole-stack target does reaches the files of every seed volume, so the
/// fuzzer starts from inputs that exercise every layer.
#[test]
fn walk_reads_the_files_of_every_seed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/vfs_walk");
    for e in std::fs::read_dir(&dir).expect("vfs_walk seeds") {
        let p = e.expect("entry").path();
        let dev = std::sync::Arc::new(strata::blockdev::window::MemDev(std::fs::read(&p).unwrap()));
        let files = harness::walk(dev);
        assert!(files >= 1, "{}: the walk read {files} files", p.display());
        eprintln!("{}: {files} files", p.display());
    }
}

/// Every directory of past failures names a target (a typo would silently replay nothing).
#[test]
fn regression_directories_name_targets() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    for e in std::fs::read_dir(&dir).expect("tests/fuzz-regressions") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            assert!(
                harness::TARGETS.iter().any(|(t, _)| *t == name),
                "tests/fuzz-regressions/{name} is not a fuzz target"
            );
        }
    }
}
