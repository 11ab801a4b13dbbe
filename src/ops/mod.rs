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

/// The layer of a chain that `target` (an output) names, if any. `target` is looked up
/// first: it usually does not exist yet, and then no layer can be it (one lookup, not one
/// per layer of a long chain).
pub(crate) fn layer_named<'a>(
    layers: &'a [crate::container::reader::Image],
    target: &std::path::Path,
) -> Option<&'a crate::container::reader::Image> {
    if !crate::storage::is_remote(target) && std::fs::metadata(target).is_err() {
        return None;
    }
    layers.iter().find(|l| same_file(l.path(), target))
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

/// The image being uploaded to `url`, as far as it can be read before the upload
/// completes: its header (`header`, as encoded) and what follows its chunk records, which
/// the upload holds locally ([`crate::storage::s3::Upload::hold`]).
pub(crate) fn staged_image(
    upload: &crate::storage::s3::Upload,
    header: &[u8],
    url: &std::path::Path,
) -> crate::error::Result<crate::container::reader::Image> {
    let (at, held) = upload.held().expect("held by hold_tail");
    let tail = held
        .try_clone()
        .map_err(|e| crate::error::Error::io(url, "cannot reopen the held end of", e))?;
    let blob = crate::storage::Blob::Staged {
        head: header.to_vec(),
        tail_at: at,
        tail,
    };
    crate::container::reader::Image::open_staged(url, blob, upload.position())
}

/// Replaces what `upload` holds after the chunk records of `image` (opened with
/// [`staged_image`]) with the same plus a catalog holding `raw`; returns the image size.
pub(crate) fn upload_catalog(
    upload: &mut crate::storage::s3::Upload,
    image: &crate::container::reader::Image,
    raw: &[u8],
) -> crate::error::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let url = image.path();
    let ioerr = |e| crate::error::Error::io(url, "cannot read back the held end of", e);
    let (at, held) = upload.held().expect("held by hold_tail");
    let mut hashes = held.try_clone().map_err(ioerr)?;
    hashes
        .seek(SeekFrom::Start(image.index().block_hashes_offset - at))
        .map_err(ioerr)?;
    upload.discard();
    crate::container::catalog::write_tail(image, raw, &mut hashes, upload)
}
