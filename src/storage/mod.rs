//! Where image files are kept: a local filesystem or an S3-compatible bucket. Images are
//! named by a path, or by `s3://BUCKET/KEY` for an object; this module hides which.

pub mod s3;

use crate::error::{Error, Result};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// An image file opened for reading.
pub enum Blob {
    File(File),
    Object(s3::Object),
    /// An image still being uploaded: its header, and what follows its chunk records
    /// (block hashes, index, trailer) from `tail_at` on, kept locally until the upload
    /// completes. Its chunks are not readable.
    Staged {
        head: Vec<u8>,
        tail_at: u64,
        tail: File,
    },
}

impl Blob {
    /// Opens `path` (a file or an `s3://` object) and returns it with its size.
    pub fn open(path: &Path) -> Result<(Blob, u64)> {
        if s3::is_url(path) {
            let o = s3::Object::open(path)?;
            let len = o.len();
            return Ok((Blob::Object(o), len));
        }
        let open_error = |e| crate::blockdev::file::open_error(path, "image", e);
        let meta = std::fs::metadata(path).map_err(open_error)?;
        if meta.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: is a directory, not a strata image",
                path.display()
            )));
        }
        let file = File::open(path).map_err(open_error)?;
        Ok((Blob::File(file), meta.len()))
    }

    /// Where the bytes readable at the end start: 0, except in an upload's staged view.
    pub fn tail_start(&self) -> u64 {
        match self {
            Blob::Staged { tail_at, .. } => *tail_at,
            _ => 0,
        }
    }

    /// Fills `buf` from byte `offset`.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Blob::File(f) => crate::blockdev::file::read_exact_at(f, buf, offset),
            Blob::Object(o) => o.read_exact_at(buf, offset),
            Blob::Staged {
                head,
                tail_at,
                tail,
            } => {
                let end = offset.saturating_add(buf.len() as u64);
                if end <= head.len() as u64 {
                    let at = crate::le::usize_of(offset).map_err(io::Error::other)?;
                    buf.copy_from_slice(&head[at..at + buf.len()]);
                    Ok(())
                } else if offset >= *tail_at {
                    crate::blockdev::file::read_exact_at(tail, buf, offset - *tail_at)
                } else {
                    Err(io::Error::other(
                        "its chunks cannot be read while it is being uploaded",
                    ))
                }
            }
        }
    }
}

/// Chunk readers (threads, requests in flight) of a command that reads a whole image from
/// a bucket (restore, verify): each waits on the network more than on decompression.
pub const REMOTE_READERS: usize = 8;

/// Most chunks, and stored bytes, one request fetches when chunks that follow each other
/// in an image in a bucket are read together (a restore, a mount's read-ahead).
pub const REMOTE_RUN_CHUNKS: u32 = 8;
pub const REMOTE_RUN_BYTES: u64 = 8 << 20;

/// Where a new image is written: a local file, or an upload to a bucket.
pub enum Output {
    File(File),
    Upload(Box<s3::Upload>),
}

impl Output {
    /// The local file written (None for an upload).
    pub fn into_file(self) -> Option<File> {
        match self {
            Output::File(f) => Some(f),
            Output::Upload(_) => None,
        }
    }
}

impl io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::File(f) => f.write(buf),
            Output::Upload(u) => u.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::File(f) => f.write_all(buf),
            Output::Upload(u) => u.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::File(f) => f.flush(),
            Output::Upload(u) => u.flush(),
        }
    }
}

/// Whether `path` names an object in a bucket rather than a local file.
pub fn is_remote(path: &Path) -> bool {
    s3::is_url(path)
}

/// Whether `path` names a directory of images: a local directory, or a bucket prefix (an
/// `s3://` URL that is a bare bucket, ends in `/`, or does not end in `.strata`).
pub fn is_dir(path: &Path) -> bool {
    match s3::parse(path) {
        Some((_, key)) => {
            key.is_empty()
                || key.ends_with('/')
                || !key.ends_with(&format!(".{}", crate::container::EXTENSION))
        }
        None => path.is_dir(),
    }
}

/// One name per image, so the same image reached two ways is seen as one: the canonical
/// path of a file, the URL of an object; None if a file does not exist.
pub fn canonical(path: &Path) -> Option<PathBuf> {
    if s3::is_url(path) {
        Some(path.to_path_buf())
    } else {
        std::fs::canonicalize(path).ok()
    }
}

/// Every object or regular file directly in `dir` whose name ends in `.EXT`, sorted.
pub fn files_in(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = if s3::is_url(dir) {
        s3::list(dir)?
    } else {
        std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, "cannot list", e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect()
    };
    v.retain(|p| p.extension().is_some_and(|x| x == ext));
    v.sort();
    Ok(v)
}
