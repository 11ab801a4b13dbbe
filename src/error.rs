//! One error type for the whole crate.
//!
//! The split follows what a user can do about it: `Io` (the system refused), `NotAnImage`
//! (wrong file), `Incomplete` and `Corrupt` (the image is damaged: integrity failures),
//! `Unsupported` (a newer format or feature), `Invalid` (bad arguments or input).
//! Every variant names the file; corruption also names the byte offset and what was expected.
//!
//! Reading the filesystems inside an image has kinds of its own: `DamagedMetadata` (a
//! filesystem structure failed a check: what and at which byte of the volume),
//! `UnsupportedFeature` (a structure strata does not decode), `NotADirectory`,
//! `IsADirectory`, `NotFound` and `Ambiguous`. Each front-end maps a kind in one place: the
//! CLI's exit code ([`Error::is_integrity_failure`]), FUSE's errno
//! (`platform::fuse::tree::errno`) and Dokan's NTSTATUS (`platform::dokan::names::status_of`).

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
    /// A partition or file cannot be read because the image data under it failed its
    /// integrity check: the message names it and the damage.
    #[error("{0}")]
    Damaged(String),
    /// A filesystem's own metadata failed a check (the image holds it as the disk did):
    /// names the filesystem, what is wrong and, where known, its byte offset from the start
    /// of the volume.
    #[error("{fs}: damaged metadata{}: {detail}", at_byte(*offset))]
    DamagedMetadata {
        /// The filesystem: `NTFS`, `ext`, `FAT`, `exFAT`.
        fs: String,
        /// Byte offset of the damaged structure from the start of the volume.
        offset: Option<u64>,
        /// What is damaged and how.
        detail: String,
    },
    /// Data that uses a feature strata cannot read (an encrypted file, an unknown
    /// compression, a filesystem option): the message names the file or volume and the
    /// feature.
    #[error("{0}")]
    UnsupportedFeature(String),
    /// A path goes through something that is not a directory, or a directory operation
    /// was asked of a file: the message names it.
    #[error("{0}")]
    NotADirectory(String),
    /// Contents were asked of a directory: the message names it.
    #[error("{0}")]
    IsADirectory(String),
    /// Bad input from the user: the message says what and why.
    #[error("{0}")]
    Invalid(String),
    /// A path inside an image does not exist: the message names it.
    #[error("{0}")]
    NotFound(String),
    /// A name looked up ignoring case matches several entries that differ only in case,
    /// none exactly: the message names them.
    #[error("{0}")]
    Ambiguous(String),
    /// An encrypted image cannot be unlocked: no key was given, or the passphrase or key
    /// file opens none of its key slots (exit code 4).
    #[error("{}: {detail}", path.display())]
    Key { path: PathBuf, detail: String },
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

    /// The strata error an `io::Error` carries (one made from an [`Error`] and passed
    /// through a third-party parser's `Read`), or `None` for a system error.
    pub fn from_io(e: io::Error) -> std::result::Result<Error, io::Error> {
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            let inner = e.into_inner().expect("checked above");
            return Ok(*inner.downcast::<Error>().expect("checked above"));
        }
        Err(e)
    }

    /// Damaged metadata of filesystem `fs` at byte `offset` of its volume (`None`: not known).
    pub fn damaged_metadata(
        fs: impl std::fmt::Display,
        offset: Option<u64>,
        detail: impl std::fmt::Display,
    ) -> Self {
        Error::DamagedMetadata {
            fs: fs.to_string(),
            offset,
            detail: detail.to_string(),
        }
    }

    /// True when the error means damaged data (exit code 3): the image failed an integrity
    /// check, or a filesystem in it has damaged metadata.
    pub fn is_integrity_failure(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. }
                | Error::Incomplete { .. }
                | Error::BrokenChain { .. }
                | Error::Damaged(_)
                | Error::DamagedMetadata { .. }
        )
    }
}

/// " at byte N" when the offset is known.
fn at_byte(offset: Option<u64>) -> String {
    offset.map_or_else(String::new, |o| format!(" at byte {o}"))
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io { source, .. } => source,
            Error::Invalid(m) => io::Error::new(io::ErrorKind::InvalidInput, m),
            Error::NotFound(m) => io::Error::new(io::ErrorKind::NotFound, m),
            Error::Interrupted => io::Error::new(io::ErrorKind::Interrupted, "interrupted"),
            // Damaged or foreign data reads as EIO, the errno front-ends expect. The error
            // itself rides inside, so a parser that got it through `std::io::Read` can hand
            // it back whole ([`Error::from_io`]): its kind decides the exit code.
            other => io::Error::other(other),
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

/// Runs `f`, a call into a third-party parser (the `ntfs` crate) over bytes read from a
/// disk, and turns a panic inside it into an error naming `what`. The crate trusts some
/// on-disk values (it ends in `unreachable!` on a short read inside a nested structure),
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
        Err(Error::damaged_metadata(what, None, why))
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

/// The first panic the CLI's hook saw that [`contain_panics`] did not turn into an error:
/// its message and where it happened. A panic in a worker thread reaches the main thread
/// as a generic "thread panicked"; this keeps the original cause for the one-line report.
static FIRST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The CLI's panic hook: contained panics stay silent as with [`quiet_contained_panics`];
/// any other panic is recorded (see [`internal_error`]) instead of printed, so the user
/// sees one line, not a backtrace note. With `STRATA_BACKTRACE=1` the default report is
/// printed too, for whoever debugs it (not `RUST_BACKTRACE`, which many shells set for
/// every Rust program). `echo` prints one line per panic to stderr at once:
/// a mount reports panics per request and keeps serving, so nothing reports them later.
pub fn record_panics(echo: bool) {
    let previous = std::panic::take_hook();
    let debug = std::env::var_os("STRATA_BACKTRACE").is_some_and(|v| v != "0");
    std::panic::set_hook(Box::new(move |info| {
        if CONTAINED.with(|c| c.get()) {
            return;
        }
        let msg = payload_text(info.payload());
        let text = match info.location() {
            Some(l) => format!("{}:{}: {msg}", l.file(), l.line()),
            None => msg.to_string(),
        };
        if debug {
            previous(info);
        } else if echo {
            eprintln!("strata: internal error: {text}");
        }
        let mut first = FIRST_PANIC.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(text);
    }));
}

/// First line of a panic's message.
fn payload_text(p: &(dyn std::any::Any + Send)) -> &str {
    let why = p
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| p.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    why.lines().next().unwrap_or_default()
}

/// Runs a whole command, `f`, catching a panic that escapes it: a bug, or damage strata
/// does not recognise yet, must end in one line naming the file (see [`internal_error`]),
/// not in a crash report. On a panic, returns its cause: the first panic recorded by
/// [`record_panics`] (a worker thread's, when the main thread only saw the worker fail),
/// else the panic's own message.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let first = FIRST_PANIC.lock().unwrap_or_else(|p| p.into_inner()).take();
        first.unwrap_or_else(|| payload_text(&*p).to_string())
    })
}

/// The one-line report of a panic while reading `file`.
pub fn internal_error(file: &Path, why: &str) -> String {
    format!(
        "{}: internal error ({why}); the image may hold damage strata does not recognise; \
         please report this with the image if you can",
        file.display()
    )
}
