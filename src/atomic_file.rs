//! Crash-safe output files: written as `NAME.partial`, synced, then renamed to `NAME`.
//!
//! Until the rename nothing is at `NAME`, and an existing `NAME` stays untouched, so a kill,
//! a full disk or an error at any moment never leaves a half-written file under the final
//! name. A dropped, uncommitted file removes its `.partial`.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// An output file that appears under its final name only when committed.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    partial: PathBuf,
    file: Option<File>,
}

/// What `file_type` is when it is neither a regular file, a directory nor a symbolic link:
/// a device node, a FIFO or a socket, which an output must never replace.
pub fn special_kind(file_type: &std::fs::FileType) -> Option<&'static str> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_block_device() {
            return Some("a block device");
        }
        if file_type.is_char_device() {
            return Some("a character device");
        }
        if file_type.is_fifo() {
            return Some("a FIFO");
        }
        if file_type.is_socket() {
            return Some("a socket");
        }
    }
    if file_type.is_file() || file_type.is_dir() || file_type.is_symlink() {
        None
    } else {
        Some("not a regular file")
    }
}

/// The temporary name used while `target` is being written.
pub fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

impl AtomicFile {
    /// Starts writing `target`. An existing non-empty `target` is refused unless `force`;
    /// a device node, FIFO or socket (or a link to one) always is. A stale `.partial` from
    /// an earlier killed run is replaced.
    pub fn create(target: &Path, force: bool) -> Result<AtomicFile> {
        let found = std::fs::metadata(target);
        if let Some(kind) = found
            .as_ref()
            .ok()
            .and_then(|m| special_kind(&m.file_type()))
        {
            return Err(Error::Invalid(format!(
                "{}: is {kind}; the output must be a regular file (it is never replaced, \
                 even with --force)",
                target.display()
            )));
        }
        match found {
            Ok(m) if m.is_dir() => {
                return Err(Error::Invalid(format!(
                    "{}: is a directory; give a file name for the output",
                    target.display()
                )))
            }
            Ok(m) if !force && (m.len() > 0 || !m.is_file()) => {
                return Err(Error::Invalid(format!(
                    "{}: already exists; use --force to replace it",
                    target.display()
                )))
            }
            _ => {}
        }
        let partial = partial_path(target);
        // Opened without truncation and locked first, so a second strata writing the same
        // output is refused instead of clobbering the first one's file.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&partial)
            // Named by the target: the `.partial` is strata's own business, and what fails
            // here (a missing directory, no permission) is the target's.
            .map_err(|e| Error::io(target, "cannot create output", e))?;
        if file.try_lock().is_err() {
            return Err(Error::Invalid(format!(
                "{}: another strata process is writing this output",
                partial.display()
            )));
        }
        file.set_len(0)
            .map_err(|e| Error::io(&partial, "cannot create output", e))?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            partial,
            file: Some(file),
        })
    }

    /// The file being written.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("open until committed")
    }

    /// Takes the handle (e.g. to wrap it in a writer); hand it back with [`AtomicFile::commit`].
    pub fn take(&mut self) -> File {
        self.file.take().expect("open until committed")
    }

    /// The name written to until commit.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// The final name.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Syncs `file` (this output's handle) and renames the partial file to the target,
    /// then syncs the directory so the rename survives a power cut.
    pub fn commit(mut self, file: File) -> Result<()> {
        file.sync_all()
            .map_err(|e| Error::io(&self.partial, "cannot flush output to disk", e))?;
        drop(file);
        std::fs::rename(&self.partial, &self.target).map_err(|e| {
            Error::io(
                &self.target,
                "cannot rename the finished output into place",
                e,
            )
        })?;
        self.file = None;
        self.partial.clear(); // nothing left to clean up
        #[cfg(unix)]
        if let Some(dir) = self.target.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.partial.as_os_str().is_empty() {
            self.file = None;
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn dropped_output_leaves_nothing_and_keeps_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.strata");
        std::fs::write(&target, b"old").unwrap();
        assert!(AtomicFile::create(&target, false).is_err());
        {
            let mut out = AtomicFile::create(&target, true).unwrap();
            out.take().write_all(b"new").unwrap();
            assert!(partial_path(&target).exists());
        }
        assert!(!partial_path(&target).exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
    }

    #[test]
    fn a_second_writer_of_the_same_output_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.strata");
        let mut first = AtomicFile::create(&target, false).unwrap();
        let mut f = first.take();
        f.write_all(b"first").unwrap();
        let e = AtomicFile::create(&target, false).unwrap_err().to_string();
        assert!(e.contains("another strata process"), "{e}");
        // The refused writer neither truncated nor removed the first one's file.
        assert_eq!(std::fs::read(partial_path(&target)).unwrap(), b"first");
        first.commit(f).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"first");
    }

    #[test]
    fn commit_replaces_atomically() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.strata");
        let mut out = AtomicFile::create(&target, false).unwrap();
        let mut f = out.take();
        f.write_all(b"data").unwrap();
        out.commit(f).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"data");
        assert!(!partial_path(&target).exists());
    }
}
