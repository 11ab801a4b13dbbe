//! The optional catalog section (docs/FORMAT.md, "Catalog section"): a compressed,
//! checksummed blob between the last chunk record and the block-hash table, located by the
//! index header's `catalog_offset`. This module stores and loads the bytes; what they mean
//! is [`crate::catalog`]'s business.
//!
//! A catalog describes the finished image (its files are walked through the image itself),
//! so it is added to an image whose trailer is already written: [`attach`] moves the
//! block-hash table, index and trailer behind the section. The image is still its
//! `.partial` file then, so a crash leaves nothing a reader accepts.

use super::crypto::{ImageKey, Piece};
use super::index::{Index, Trailer};
use super::reader::Image;
use crate::error::{Error, Result};
use crate::le::{LeFields, LeWriter};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use xxhash_rust::xxh3::xxh3_64;

/// `STRATCAT`.
pub const SECTION_MAGIC: [u8; 8] = *b"STRATCAT";
/// Bytes of the section header.
pub const SECTION_HEADER_SIZE: u64 = 64;
/// Section version of a catalog listing every entry.
const VERSION_WHOLE: u32 = 1;
/// Section version of a catalog stored as a change to its parent's, whose uncompressed
/// bytes start with [`DELTA_MAGIC`] (which no whole catalog's do: those start with the
/// block size).
const VERSION_DELTA: u32 = 2;
/// The first bytes of a catalog stored as a change to its parent's.
pub const DELTA_MAGIC: [u8; 8] = *b"STRATDLT";
/// Largest uncompressed catalog a reader accepts: about ten million entries.
pub const MAX_RAW_LEN: u64 = 1 << 30;
/// Largest ratio of uncompressed to stored bytes a reader accepts, so a tiny damaged
/// payload cannot claim a gigabyte (a catalog holds a 16-byte content identity per file,
/// which does not compress; writers store the bytes raw when zstd would exceed it).
const MAX_RATIO: u64 = 64;

/// Encodes a section holding `raw`, sealed with `key` in an encrypted image (whose
/// content hash is then 0: the seal authenticates the bytes, and a hash of the plaintext
/// would let anyone confirm a guessed catalog).
fn encode(raw: &[u8], key: Option<&ImageKey>) -> Result<Vec<u8>> {
    let compressed = zstd::bulk::compress(raw, 3)
        .map_err(|e| Error::Invalid(format!("cannot compress the catalog: {e}")))?;
    let raw_len = raw.len() as u64;
    let (method, payload) = if compressed.len() < raw.len()
        && raw_len <= (compressed.len() as u64).saturating_mul(MAX_RATIO)
    {
        (1u8, compressed)
    } else {
        (0u8, raw.to_vec())
    };
    let payload = match key {
        None => payload,
        Some(k) => k.seal(Piece::Catalog { method, raw_len }, &payload),
    };
    if raw_len > MAX_RAW_LEN {
        return Err(Error::Invalid(format!(
            "the catalog would take {raw_len} bytes, more than the {MAX_RAW_LEN} a reader accepts"
        )));
    }
    let mut head = [0u8; 64];
    let mut w = LeWriter(&mut head);
    w.put(0, &SECTION_MAGIC);
    w.u32(
        8,
        if raw.starts_with(&DELTA_MAGIC) {
            VERSION_DELTA
        } else {
            VERSION_WHOLE
        },
    );
    w.u8(12, method);
    w.u64(16, payload.len() as u64);
    w.u64(24, raw_len);
    w.u64(32, xxh3_64(&payload));
    w.u64(40, if key.is_some() { 0 } else { xxh3_64(raw) });
    let sum = xxh3_64(&head[..48]);
    LeWriter(&mut head).u64(48, sum);
    let mut out = head.to_vec();
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Adds a catalog holding `raw` to the finished image `file` (at `path`, still its
/// `.partial` name): the section goes where the block-hash table was, and the table, the
/// index (now naming the section) and the trailer follow it. Returns the new file size.
pub fn attach(file: &mut File, path: &Path, raw: &[u8]) -> Result<u64> {
    let image = Image::open_unfinished(path)?.0;
    let ioerr = |what: &'static str| move |e: std::io::Error| Error::io(path, what, e);
    let hashes_len = hashes_len(&image);
    // The block-hash table is copied aside first (0.2% of the data, so it goes to a
    // temporary file rather than memory).
    let mut reader = File::open(path).map_err(ioerr("cannot reopen"))?;
    reader
        .seek(SeekFrom::Start(image.index().block_hashes_offset))
        .map_err(ioerr("cannot read"))?;
    let mut aside = tempfile::tempfile_in(crate::chain::resolve::dir_of(path))
        .map_err(ioerr("cannot create a temporary file beside"))?;
    let copied = std::io::copy(&mut (&mut reader).take(hashes_len), &mut aside)
        .map_err(ioerr("cannot copy the block-hash table of"))?;
    if copied != hashes_len {
        return Err(Error::io(
            path,
            "block-hash table is short",
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    let at = image.index().block_hashes_offset;
    file.set_len(at).map_err(ioerr("cannot truncate"))?;
    file.seek(SeekFrom::Start(at))
        .map_err(ioerr("cannot seek"))?;
    aside
        .seek(SeekFrom::Start(0))
        .map_err(ioerr("cannot read back"))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut *file);
    write_tail(&image, raw, &mut aside, &mut out)
}

/// Bytes of `image`'s block-hash table as stored.
pub fn hashes_len(image: &Image) -> u64 {
    super::crypto::hash_table_len(image.index().block_hash_count, image.key().is_some())
        .expect("checked when the index was opened")
}

/// Writes what follows the last chunk record of `image` once a catalog holding `raw` is
/// added: the section, the block-hash table (read from `hashes`, [`hashes_len`] bytes),
/// the index naming the section, and the trailer. Returns the new image size.
pub fn write_tail(
    image: &Image,
    raw: &[u8],
    hashes: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<u64> {
    let path = image.path();
    let ioerr = |what: &'static str| move |e: std::io::Error| Error::io(path, what, e);
    let mut index: Index = image.index().clone();
    let section = encode(raw, image.key())?;
    let hashes_len = hashes_len(image);
    let at = index.block_hashes_offset;
    out.write_all(&section).map_err(ioerr("cannot write"))?;
    let copied = std::io::copy(&mut hashes.take(hashes_len), out).map_err(ioerr("cannot write"))?;
    if copied != hashes_len {
        return Err(Error::io(
            path,
            "block-hash table is short",
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    index.catalog_offset = at;
    index.block_hashes_offset = at + section.len() as u64;
    let encoded = image.seal_index(index.encode());
    let trailer = Trailer {
        index_offset: index.block_hashes_offset + hashes_len,
        index_length: encoded.len() as u64,
        index_digest: *blake3::hash(&encoded).as_bytes(),
    };
    out.write_all(&encoded).map_err(ioerr("cannot write"))?;
    out.write_all(&trailer.encode())
        .map_err(ioerr("cannot write"))?;
    out.flush().map_err(ioerr("cannot write"))?;
    Ok(trailer.index_offset + trailer.index_length + super::index::TRAILER_SIZE as u64)
}

/// Why an image's catalog cannot be used.
#[derive(Debug)]
pub enum CatalogError {
    /// The section is damaged: its checks failed (the message says which).
    Damaged(String),
    /// The image file could not be read.
    Io(Error),
}

/// Whether `image`'s catalog is stored as a change to its parent's, from its section
/// header alone (false when it has none or the header is damaged: [`load`] says why).
pub fn is_change(image: &Image) -> bool {
    matches!(section_head(image), Ok(Some((_, _, VERSION_DELTA))))
}

/// The header of `image`'s catalog section, its offset and version, checked (signature,
/// checksum, a known version); None when the image has no catalog.
fn section_head(image: &Image) -> std::result::Result<Option<([u8; 64], u64, u32)>, CatalogError> {
    let at = image.index().catalog_offset;
    if at == 0 {
        return Ok(None);
    }
    let mut head = [0u8; 64];
    image
        .read_exact_at(&mut head, at)
        .map_err(|e| CatalogError::Io(Error::io(image.path(), "cannot read the catalog of", e)))?;
    let damaged = |what: String| Err(CatalogError::Damaged(format!("catalog at {at}: {what}")));
    let f = LeFields(&head);
    if head[..8] != SECTION_MAGIC {
        return damaged("no catalog signature".into());
    }
    if f.u64(48) != xxh3_64(&head[..48]) {
        return damaged("header checksum mismatch".into());
    }
    let version = f.u32(8);
    if version != VERSION_WHOLE && version != VERSION_DELTA {
        return damaged(format!("unknown version {version}"));
    }
    Ok(Some((head, at, version)))
}

/// The uncompressed catalog of `image`, or None when it has none.
pub fn load(image: &Image) -> std::result::Result<Option<Vec<u8>>, CatalogError> {
    let Some((head, at, version)) = section_head(image)? else {
        return Ok(None);
    };
    let damaged = |what: String| Err(CatalogError::Damaged(format!("catalog at {at}: {what}")));
    let f = LeFields(&head);
    let (method, stored_len, raw_len) = (f.u8(12), f.u64(16), f.u64(24));
    let room = image.index().block_hashes_offset - at - SECTION_HEADER_SIZE;
    if stored_len > room {
        return damaged(format!(
            "{stored_len} bytes do not fit before the block hashes"
        ));
    }
    if raw_len > MAX_RAW_LEN || raw_len > stored_len.saturating_mul(MAX_RATIO) {
        return damaged(format!("impossible length {raw_len}"));
    }
    let overhead = if image.key().is_some() {
        crate::container::crypto::SEAL_OVERHEAD as u64
    } else {
        0
    };
    if (method == 0 && raw_len.checked_add(overhead) != Some(stored_len)) || method > 1 {
        return damaged(format!("unknown method {method}"));
    }
    let Ok(stored_usize) = usize::try_from(stored_len) else {
        return damaged(format!("impossible length {stored_len}"));
    };
    let mut payload = vec![0u8; stored_usize];
    image
        .read_exact_at(&mut payload, at + SECTION_HEADER_SIZE)
        .map_err(|e| CatalogError::Io(Error::io(image.path(), "cannot read the catalog of", e)))?;
    if xxh3_64(&payload) != f.u64(32) {
        return damaged("payload checksum mismatch".into());
    }
    let payload = match image.key() {
        None => payload,
        Some(k) => match k.open(Piece::Catalog { method, raw_len }, &payload) {
            Ok(p) => p,
            Err(_) => return damaged("authentication failed: changed or damaged".into()),
        },
    };
    let raw = if method == 0 {
        payload
    } else {
        let Ok(cap) = usize::try_from(raw_len) else {
            return damaged(format!("impossible length {raw_len}"));
        };
        match zstd::bulk::decompress(&payload, cap) {
            Ok(r) if r.len() == cap => r,
            Ok(r) => return damaged(format!("decodes to {} bytes, not {raw_len}", r.len())),
            Err(e) => return damaged(format!("cannot decompress: {e}")),
        }
    };
    if image.key().is_none() && xxh3_64(&raw) != f.u64(40) {
        return damaged("content checksum mismatch".into());
    }
    // (The sealed bytes of an encrypted image carry the form; the header's is not
    // authenticated.)
    if raw.starts_with(&DELTA_MAGIC) != (version == VERSION_DELTA) {
        return damaged(format!("version {version} does not match its contents"));
    }
    Ok(Some(raw))
}
