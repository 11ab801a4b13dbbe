//! Opens an image, checks its header, trailer and index, and reads it.

use super::chunk::{open_record, ChunkFault, CHUNK_RECORD_HEADER};
use super::header::{Header, HeaderError, ImageKind, HEADER_SIZE};
use super::index::{find_run, ExtentKind, Index, Run, Trailer, BLOCK_HASH_SIZE, TRAILER_SIZE};
use crate::blockdev::file::read_exact_at;
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use lru::LruCache;
use std::fs::File;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Default ceiling for decompressed chunks kept in memory by one image.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// An open, checked image.
pub struct Image {
    path: PathBuf,
    file: File,
    file_len: u64,
    header: Header,
    trailer: Trailer,
    index: Index,
    /// Recently used decompressed chunks; sequential and nearby reads hit it.
    cache: Mutex<LruCache<u32, Arc<Vec<u8>>>>,
}

/// A problem `verify` reports about the header while still checking the rest.
pub type HeaderProblem = String;

/// Refuses the `.partial` output of a run that was interrupted. It may even be complete
/// (a consolidation checks its output before renaming it), but it was never accepted: the
/// image of that name without `.partial` is the one to use.
fn refuse_unfinished(path: &Path) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy());
    if name.is_some_and(|n| n.ends_with(".partial")) {
        return Err(Error::Incomplete {
            path: path.into(),
            reason: "the unfinished output of an interrupted run (it was never renamed to \
                     its final name)"
                .into(),
        });
    }
    Ok(())
}

impl Image {
    /// Opens and checks an image: header checksum, trailer, index digest and structure.
    pub fn open(path: &Path) -> Result<Image> {
        refuse_unfinished(path)?;
        Self::open_inner(path, true).map(|(img, _)| img)
    }

    /// Like [`Image::open`] but a header checksum mismatch is returned as a problem instead
    /// of an error, so that `verify` can go on to check every chunk.
    pub fn open_for_verify(path: &Path) -> Result<(Image, Option<HeaderProblem>)> {
        refuse_unfinished(path)?;
        Self::open_inner(path, false)
    }

    /// Like [`Image::open_for_verify`], for a writer checking its own `.partial` output
    /// before it renames it.
    pub fn open_unfinished(path: &Path) -> Result<(Image, Option<HeaderProblem>)> {
        Self::open_inner(path, false)
    }

    fn open_inner(path: &Path, strict: bool) -> Result<(Image, Option<HeaderProblem>)> {
        let meta = std::fs::metadata(path)
            .map_err(|e| crate::blockdev::file::open_error(path, "image", e))?;
        if meta.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: is a directory, not a strata image",
                path.display()
            )));
        }
        let file =
            File::open(path).map_err(|e| crate::blockdev::file::open_error(path, "image", e))?;
        let file_len = meta.len();
        let mut head = vec![0u8; (HEADER_SIZE as u64).min(file_len) as usize];
        read_exact_at(&file, &mut head, 0).map_err(|e| Error::io(path, "cannot read", e))?;
        let header = match Header::decode(&head, strict) {
            Ok(h) => h,
            Err(HeaderError::NotAnImage(reason)) => {
                return Err(Error::NotAnImage {
                    path: path.into(),
                    reason,
                })
            }
            Err(HeaderError::Unsupported(detail)) => {
                return Err(Error::Unsupported {
                    path: path.into(),
                    detail,
                })
            }
            Err(HeaderError::Corrupt { offset, detail }) => {
                return Err(Error::corrupt(path, "header", offset, detail))
            }
        };
        let header_sum = Header::stored_checksum(&head);
        let computed = xxhash_rust::xxh3::xxh3_64(&head[..HEADER_SIZE - 8]);
        let mut header_problem = (header_sum != computed).then(|| {
            format!(
                "header: checksum mismatch at byte {} (stored {header_sum:016x}, computed \
                 {computed:016x}): header fields may be wrong",
                HEADER_SIZE - 8
            )
        });

        let min_len = (HEADER_SIZE + TRAILER_SIZE) as u64;
        if file_len < min_len {
            return Err(Error::Incomplete {
                path: path.into(),
                reason: format!("no trailer (the file is only {file_len} bytes)"),
            });
        }
        let mut tail = [0u8; TRAILER_SIZE];
        read_exact_at(&file, &mut tail, file_len - TRAILER_SIZE as u64)
            .map_err(|e| Error::io(path, "cannot read", e))?;
        let trailer = Trailer::decode(&tail).map_err(|reason| {
            if tail[..8] == super::index::TRAILER_MAGIC {
                Error::corrupt(path, "trailer", file_len - TRAILER_SIZE as u64, reason)
            } else {
                Error::Incomplete {
                    path: path.into(),
                    reason: format!("no trailer ({reason})"),
                }
            }
        })?;
        let index_end = trailer.index_offset.checked_add(trailer.index_length);
        if trailer.index_offset < HEADER_SIZE as u64
            || index_end != Some(file_len - TRAILER_SIZE as u64)
        {
            return Err(Error::corrupt(
                path,
                "trailer",
                file_len - TRAILER_SIZE as u64,
                format!(
                    "index at {}+{} does not end where the trailer starts ({})",
                    trailer.index_offset,
                    trailer.index_length,
                    file_len - TRAILER_SIZE as u64
                ),
            ));
        }
        // Bounded by the file size checked just above.
        let mut ibuf = vec![0u8; trailer.index_length as usize];
        read_exact_at(&file, &mut ibuf, trailer.index_offset)
            .map_err(|e| Error::io(path, "cannot read", e))?;
        let digest = *blake3::hash(&ibuf).as_bytes();
        if digest != trailer.index_digest {
            return Err(Error::corrupt(
                path,
                "index",
                trailer.index_offset,
                format!(
                    "digest mismatch (trailer says {}, index hashes to {})",
                    hex(&trailer.index_digest[..8]),
                    hex(&digest[..8])
                ),
            ));
        }
        let index = Index::decode(
            &ibuf,
            trailer.index_offset,
            header.block_size,
            header.chunk_size,
            header.block_count(),
        )
        .map_err(|(offset, detail)| Error::corrupt(path, "index", offset, detail))?;
        if index.image_uuid != header.image_uuid {
            return Err(Error::corrupt(
                path,
                "index",
                trailer.index_offset + 8,
                format!(
                    "index belongs to image {}, header says {}",
                    index.image_uuid, header.image_uuid
                ),
            ));
        }
        if index.header_checksum != header_sum {
            let problem = format!(
                "header: does not match the checksum recorded in the index \
                 ({:016x} vs {header_sum:016x})",
                index.header_checksum
            );
            if strict {
                return Err(Error::corrupt(path, "header", 0, problem));
            }
            header_problem.get_or_insert(problem);
        }
        let slots = (DEFAULT_CACHE_BYTES / u64::from(header.chunk_size)).max(2) as usize;
        Ok((
            Image {
                path: path.into(),
                file,
                file_len,
                header,
                trailer,
                index,
                cache: Mutex::new(LruCache::new(NonZeroUsize::new(slots).expect("non-zero"))),
            },
            header_problem,
        ))
    }

    /// The file this image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Size of the image file.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// The trailer (holds the index digest that children refer to).
    pub fn trailer(&self) -> &Trailer {
        &self.trailer
    }
    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// True when this image is the parent a child names by `uuid` and index `digest`:
    /// its own identity, or one it took over by consolidation (an alias).
    pub fn answers_to(&self, uuid: uuid::Uuid, digest: &[u8; 32]) -> bool {
        (self.header.image_uuid == uuid && &self.trailer.index_digest == digest)
            || self
                .index
                .aliases
                .iter()
                .any(|a| a.uuid == uuid && &a.index_digest == digest)
    }

    /// Reads and checks chunk `i` from the file, uncached. The error says what is wrong.
    pub fn load_chunk(&self, i: u32) -> Result<Vec<u8>, ChunkLoadError> {
        let entry = &self.index.chunks[i as usize];
        let mut record = vec![0u8; CHUNK_RECORD_HEADER + entry.stored_len as usize];
        read_exact_at(&self.file, &mut record, entry.offset).map_err(ChunkLoadError::Io)?;
        open_record(entry, &record).map_err(ChunkLoadError::Fault)
    }

    /// Chunk `i`, checked and decompressed, through the cache.
    pub fn chunk(&self, i: u32) -> Result<Arc<Vec<u8>>> {
        if let Some(c) = self.cache.lock().expect("cache lock").get(&i) {
            return Ok(c.clone());
        }
        let data = Arc::new(self.load_chunk(i).map_err(|e| self.chunk_error(i, e))?);
        self.cache.lock().expect("cache lock").put(i, data.clone());
        Ok(data)
    }

    /// Turns a chunk failure into an error naming the chunk, its file offset and disk range.
    pub fn chunk_error(&self, i: u32, e: ChunkLoadError) -> Error {
        let entry = &self.index.chunks[i as usize];
        match e {
            ChunkLoadError::Io(e) => Error::io(&self.path, "cannot read chunk", e),
            ChunkLoadError::Fault(f) => Error::corrupt(
                &self.path,
                format!("chunk {i} (disk bytes {})", self.chunk_disk_ranges_text(i)),
                entry.offset,
                f.to_string(),
            ),
        }
    }

    /// Disk byte ranges whose data lives in chunk `i`, merged and clamped to the disk.
    pub fn chunk_disk_ranges(&self, i: u32) -> Vec<(u64, u64)> {
        let bs = u64::from(self.header.block_size);
        let mut out: Vec<(u64, u64)> = Vec::new();
        for e in self
            .index
            .extents
            .iter()
            .filter(|e| e.kind == ExtentKind::Data && e.chunk == i)
        {
            let (a, b) = (e.disk_block * bs, (e.end() * bs).min(self.header.disk_size));
            match out.last_mut() {
                Some(last) if last.1 == a => last.1 = b,
                _ => out.push((a, b)),
            }
        }
        out
    }

    /// [`Image::chunk_disk_ranges`] as text: `a-b, c-d` (end exclusive).
    pub fn chunk_disk_ranges_text(&self, i: u32) -> String {
        let r = self.chunk_disk_ranges(i);
        let mut parts: Vec<String> = r.iter().take(4).map(|(a, b)| format!("{a}-{b}")).collect();
        if r.len() > 4 {
            parts.push(format!("and {} more ranges", r.len() - 4));
        }
        parts.join(", ")
    }

    /// Reads `count` block hashes starting at hash number `first`.
    pub fn block_hashes(&self, first: u64, count: u64) -> Result<Vec<u64>> {
        let end = first
            .checked_add(count)
            .filter(|&e| e <= self.index.block_hash_count);
        if end.is_none() {
            return Err(Error::Invalid(format!(
                "{}: block hashes {first}+{count} out of range",
                self.path.display()
            )));
        }
        let mut buf = vec![0u8; (count * BLOCK_HASH_SIZE) as usize];
        read_exact_at(
            &self.file,
            &mut buf,
            self.index.block_hashes_offset + first * BLOCK_HASH_SIZE,
        )
        .map_err(|e| Error::io(&self.path, "cannot read block hashes", e))?;
        Ok(buf
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect())
    }

    /// Reads the whole block-hash table and checks its digest (used by `verify`).
    pub fn check_block_hash_table(&self) -> Result<()> {
        let mut hasher = blake3::Hasher::new();
        let total = self.index.block_hash_count * BLOCK_HASH_SIZE;
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        while done < total {
            let n = (total - done).min(buf.len() as u64) as usize;
            read_exact_at(
                &self.file,
                &mut buf[..n],
                self.index.block_hashes_offset + done,
            )
            .map_err(|e| Error::io(&self.path, "cannot read block hashes", e))?;
            hasher.update(&buf[..n]);
            done += n as u64;
        }
        if *hasher.finalize().as_bytes() != self.index.block_hashes_digest {
            return Err(Error::corrupt(
                &self.path,
                "block-hash table",
                self.index.block_hashes_offset,
                "digest mismatch",
            ));
        }
        Ok(())
    }
}

/// Why a chunk could not be loaded.
#[derive(Debug)]
pub enum ChunkLoadError {
    /// The file could not be read.
    Io(std::io::Error),
    /// The chunk is damaged.
    Fault(ChunkFault),
}

impl BlockDev for Image {
    fn len(&self) -> u64 {
        self.header.disk_size
    }

    /// Reads disk bytes. Unmapped blocks of a full image are zeros. A damaged chunk fails
    /// only the reads that touch it.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if self.header.kind != ImageKind::Full {
            return Err(Error::Invalid(format!(
                "{}: is a {:?} image; reading it needs its parent chain",
                self.path.display(),
                self.header.kind
            )));
        }
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.header.disk_size) {
            return Err(Error::Invalid(format!(
                "{}: read of {} bytes at {offset} is past the end of the disk ({} bytes)",
                self.path.display(),
                buf.len(),
                self.header.disk_size
            )));
        }
        read_runs(
            &self.index.extents,
            self.header.block_size,
            offset,
            buf,
            |chunk| self.chunk(chunk.0),
        )
    }
}

/// Fills `buf` with disk bytes from `offset` out of a sorted run list: stored runs are
/// copied from their chunk (`chunk((chunk, run))` loads it), everything else is zeros.
/// The caller has checked that the read lies inside the disk.
pub fn read_runs<R: Run>(
    runs: &[R],
    block_size: u32,
    offset: u64,
    buf: &mut [u8],
    chunk: impl Fn((u32, &R)) -> Result<Arc<Vec<u8>>>,
) -> Result<()> {
    let bs = u64::from(block_size);
    let mut pos = offset;
    let mut out = &mut buf[..];
    while !out.is_empty() {
        let block = pos / bs;
        let (n, src) = match find_run(runs, block) {
            Ok(i) => {
                let e = &runs[i];
                let n = (e.end() * bs - pos).min(out.len() as u64) as usize;
                match e.data() {
                    Some((c, first)) => {
                        let at = (u64::from(first) + block - e.start()) * bs + pos % bs;
                        (n, Some((chunk((c, e))?, at as usize)))
                    }
                    None => (n, None),
                }
            }
            Err(next) => {
                let gap_end = runs.get(next).map_or(u64::MAX, |e| e.start() * bs);
                ((gap_end - pos).min(out.len() as u64) as usize, None)
            }
        };
        let (head, rest) = out.split_at_mut(n);
        match src {
            Some((data, at)) => head.copy_from_slice(&data[at..at + n]),
            None => head.fill(0),
        }
        out = rest;
        pos += n as u64;
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
