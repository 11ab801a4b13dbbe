//! One error type for the whole crate.
//!
//! The split follows what a user can do about it: `Io` (the system refused), `NotAnImage`
//! (wrong file), `Incomplete` and `Corrupt` (the image is damaged: integrity failures),
//! `Unsupported` (a newer format or feature), `Invalid` (bad arguments or input).
//! Every variant names the file; corruption also names the byte offset and what was expected.

use std::io;
use std::path::{Path, PathBuf};

/// Result alias used across strata.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in strata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed on `path`.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The file is not a strata image at all.
    #[error("{}: not a strata image ({reason})", path.display())]
    NotAnImage { path: PathBuf, reason: String },
    /// The image has no valid trailer: its creation never finished, or it was truncated.
    #[error("{}: image is incomplete: {reason}", path.display())]
    Incomplete { path: PathBuf, reason: String },
    /// A checksum, digest or structural check failed.
    #[error("{}: corrupt {what} at byte {offset}: {detail}", path.display())]
    Corrupt {
        path: PathBuf,
        what: String,
        offset: u64,
        detail: String,
    },
    /// The image uses a format version or feature this build does not know.
    #[error("{}: unsupported: {detail}", path.display())]
    Unsupported { path: PathBuf, detail: String },
    /// A child image's parent cannot be found: the message says which and where it looked.
    #[error("{}: {detail}", path.display())]
    MissingParent { path: PathBuf, detail: String },
    /// Images do not form a valid chain: a parent was modified or replaced, a cycle, or a
    /// parent of another disk.
    #[error("{}: {detail}", path.display())]
    BrokenChain { path: PathBuf, detail: String },
    /// Bad input from the user: the message says what and why.
    #[error("{0}")]
    Invalid(String),
    /// A path inside an image does not exist: the message names it.
    #[error("{0}")]
    NotFound(String),
    /// The user interrupted the operation (Ctrl-C); partial output was removed.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// Wraps an I/O error with the file it happened on and what was being done.
    pub fn io(path: impl AsRef<Path>, what: &'static str, source: io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            what,
            source,
        }
    }

    /// A corruption error at `offset` in `path`.
    pub fn corrupt(
        path: impl AsRef<Path>,
        what: impl Into<String>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            path: path.as_ref().to_path_buf(),
            what: what.into(),
            offset,
            detail: detail.into(),
        }
    }

    /// True when the error means the image failed an integrity check (exit code 3).
    pub fn is_integrity_failure(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::Incomplete { .. } | Error::BrokenChain { .. }
        )
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io { source, .. } => source,
            Error::Invalid(m) => io::Error::new(io::ErrorKind::InvalidInput, m),
            Error::NotFound(m) => io::Error::new(io::ErrorKind::NotFound, m),
            Error::Interrupted => io::Error::new(io::ErrorKind::Interrupted, "interrupted"),
            // Damaged or foreign data reads as EIO, the errno front-ends expect.
            other => io::Error::other(other.to_string()),
        }
    }
}

/// Set while [`contain_panics`] runs, so the panic hook stays quiet about a panic that is
/// turned into an error.
mod contained {
    // Const-initialised already; clippy 1.96 (the Windows check's toolchain) still reports
    // it as if it were not.
    #![allow(clippy::missing_const_for_thread_local)]
    thread_local! {
        pub(super) static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
}
use contained::CONTAINED;

/// Runs `f`, a call into a third-party parser (the `ntfs` and `fatfs` crates) over bytes
/// read from a disk, and turns a panic inside it into an error naming `what`. Those
/// crates trust some on-disk values (the `ntfs` crate ends in `unreachable!` on a short
/// read inside a nested structure; `fatfs` subtracts from a cluster number read from disk),
/// and a damaged disk must give an error, never a crash.
pub fn contain_panics<T>(what: impl std::fmt::Display, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let was = CONTAINED.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(was));
    r.unwrap_or_else(|p| {
        let why = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("parser failure");
        let why = why.lines().next().unwrap_or_default();
        Err(Error::Invalid(format!("{what}: damaged metadata ({why})")))
    })
}

/// Keeps the panic hook quiet for panics [`contain_panics`] turns into errors (their
/// message becomes the error); any other panic is reported as before. The CLI calls it once.
pub fn quiet_contained_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !CONTAINED.with(|c| c.get()) {
            previous(info);
        }
    }));
}
