//! The operations behind the commands: each takes options, does the work, and returns a
//! summary that the CLI prints as text or JSON.

pub mod consolidate;
pub mod create;
pub mod info;
pub mod keys;
pub mod pipeline;
pub mod plan;
pub mod restore;
pub mod verify;

/// `a / b` as a ratio for reports (0 when `b` is 0).
pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// True when `a` and `b` name the same existing file (so an output never overwrites its input).
pub(crate) fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    if crate::storage::is_remote(a) || crate::storage::is_remote(b) {
        return a == b;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}
