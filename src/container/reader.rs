//! Opens an image, checks its header, trailer and index, and reads it.

use super::chunk::{open_record, ChunkFault, CHUNK_RECORD_HEADER};
use super::crypto::{ImageKey, Piece, HASH_SEGMENT_ENTRIES, SEAL_OVERHEAD, SLOTS_OFFSET};
use super::header::{Header, HEADER_SIZE};
use super::index::{ExtentKind, Index, Trailer, BLOCK_HASH_SIZE, TRAILER_SIZE};
use crate::error::{Error, Result};
use crate::storage::Blob;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open, checked image: its header, index and trailer, and its chunks read on demand.
/// Disk bytes are read through a [`crate::chain::Chain`] (a full image is a chain of one),
/// whose cache holds the decompressed chunks.
pub struct Image {
    path: PathBuf,
    blob: Blob,
    file_len: u64,
    header: Header,
    trailer: Trailer,
    index: Index,
    /// The sealing key of an encrypted image.
    key: Option<ImageKey>,
    /// Bytes 0..1024 of the header as stored, which an encrypted image's index is bound
    /// to (empty for other images).
    header_region: Vec<u8>,
    /// The last block-hash segment opened (encrypted images), since change detection asks
    /// for a chunk's worth of hashes at a time.
    last_segment: std::sync::Mutex<Option<(u64, Arc<[u64]>)>>,
}

/// Bytes read at once from the end of an image when it is opened.
const TAIL_READ: usize = 64 << 10;

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

    /// Opens an image still being written to `path` whose bytes are readable through
    /// `blob` (of `len` bytes): a writer's view of its own upload.
    pub fn open_staged(path: &Path, blob: Blob, len: u64) -> Result<Image> {
        Self::open_blob(path, blob, len, false).map(|(img, _)| img)
    }

    fn open_inner(path: &Path, strict: bool) -> Result<(Image, Option<HeaderProblem>)> {
        let (blob, file_len) = Blob::open(path)?;
        Self::open_blob(path, blob, file_len, strict)
    }

    /// Opens `path` as [`Image::open`] does if its header is an image header that `accept`
    /// takes, before anything else of it is used (an image of another encrypted chain is
    /// not unlocked); `Ok(None)` when there is no such file or its header is no image's or
    /// is not accepted, an error when a local file is there but cannot be opened. Finding
    /// a parent opens each candidate once this way.
    pub fn open_if(path: &Path, accept: &mut dyn FnMut(&Header) -> bool) -> Result<Option<Image>> {
        refuse_unfinished(path)?;
        let (blob, file_len) = match Blob::open(path) {
            Ok(b) => b,
            // A local file that is there but cannot be opened (no permission, too many open
            // files) is reported, not passed over as if it were not the one wanted.
            Err(e @ Error::Io { .. }) if !crate::storage::is_remote(path) => return Err(e),
            Err(_) => return Ok(None),
        };
        Ok(Self::open_blob_if(path, blob, file_len, true, Some(accept))?.map(|(img, _)| img))
    }

    fn open_blob(
        path: &Path,
        blob: Blob,
        file_len: u64,
        strict: bool,
    ) -> Result<(Image, Option<HeaderProblem>)> {
        Ok(Self::open_blob_if(path, blob, file_len, strict, None)?.expect("accepted"))
    }

    /// [`Image::open_blob`], with `accept` deciding from the header alone (see
    /// [`Image::open_if`]): a header that cannot be read or decoded is then `Ok(None)`.
    fn open_blob_if(
        path: &Path,
        blob: Blob,
        file_len: u64,
        strict: bool,
        mut accept: Option<&mut dyn FnMut(&Header) -> bool>,
    ) -> Result<Option<(Image, Option<HeaderProblem>)>> {
        // The end of the file in one read: the trailer, and the whole index of a small
        // image (and its header too when the file is that small). The images of a long
        // chain are mostly small, and each is opened whenever the chain is.
        let tail_at = file_len
            .saturating_sub(TAIL_READ as u64)
            .max(blob.tail_start().min(file_len));
        let mut tail_buf = vec![0u8; crate::le::clamp_len(file_len - tail_at, TAIL_READ)];
        let mut head = vec![0u8; crate::le::clamp_len(file_len, HEADER_SIZE)];
        // The header first, so that a file `accept` refuses is not read further.
        let head_read = if tail_at == 0 {
            blob.read_exact_at(&mut tail_buf, 0).map(|()| {
                let n = head.len();
                head.copy_from_slice(&tail_buf[..n]);
            })
        } else {
            blob.read_exact_at(&mut head, 0)
        };
        let decoded = head_read
            .map_err(|e| Error::io(path, "cannot read", e))
            .and_then(|()| Header::decode(&head, strict).map_err(|e| e.at(path)));
        let mut header = match (decoded, accept.as_mut()) {
            (Ok(h), Some(accept)) => {
                if !accept(&h) {
                    return Ok(None);
                }
                h
            }
            (Ok(h), None) => h,
            (Err(_), Some(_)) => return Ok(None),
            (Err(e), None) => return Err(e),
        };
        if tail_at > 0 {
            blob.read_exact_at(&mut tail_buf, tail_at)
                .map_err(|e| Error::io(path, "cannot read", e))?;
        }
        let header_sum = Header::stored_checksum(&head);
        let computed = Header::compute_checksum(&head);
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
        tail.copy_from_slice(&tail_buf[tail_buf.len() - TRAILER_SIZE..]);
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
        let index_len = crate::le::usize_of(trailer.index_length)?;
        let ibuf = if trailer.index_offset >= tail_at {
            let at = crate::le::usize_of(trailer.index_offset - tail_at)?;
            tail_buf[at..at + index_len].to_vec()
        } else {
            let mut ibuf = vec![0u8; index_len];
            blob.read_exact_at(&mut ibuf, trailer.index_offset)
                .map_err(|e| Error::io(path, "cannot read", e))?;
            ibuf
        };
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
        let key = match &header.encryption {
            None => None,
            Some(e) => {
                let master = match super::keyring::unlock(path, &e.key_id, &e.slots) {
                    Ok(m) => m,
                    // A damaged key id or slot fails like a wrong key: with a header that
                    // fails its checksum, say it is damage (verify goes this far).
                    Err(Error::Key { .. }) if header_problem.is_some() => {
                        return Err(Error::corrupt(
                            path,
                            "header",
                            (HEADER_SIZE - 8) as u64,
                            "checksum mismatch: its key id or salt may be damaged, so no key \
                             can open it",
                        ))
                    }
                    Err(e) => return Err(e),
                };
                let key = master.image_key(header.image_uuid, &e.salt);
                let source = key
                    .open(Piece::Source, &e.sealed_source)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        Error::corrupt(path, "header", 144, "the sealed source does not open")
                    })?;
                header.source = source;
                Some(key)
            }
        };
        let header_region = if key.is_some() {
            head[..SLOTS_OFFSET].to_vec()
        } else {
            Vec::new()
        };
        let plain_index;
        let index_bytes = match &key {
            None => &ibuf,
            Some(k) => {
                plain_index = k.open_index(&header_region, &ibuf).map_err(|_| {
                    Error::corrupt(
                        path,
                        "index",
                        trailer.index_offset,
                        "authentication failed: the index or the header was changed, or \
                         the image was sealed with another key",
                    )
                })?;
                &plain_index
            }
        };
        let index = Index::decode(
            index_bytes,
            trailer.index_offset,
            header.block_size,
            header.chunk_size,
            header.block_count(),
            key.is_some(),
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
        Ok(Some((
            Image {
                path: path.into(),
                blob,
                file_len,
                header,
                trailer,
                index,
                key,
                header_region,
                last_segment: std::sync::Mutex::new(None),
            },
            header_problem,
        )))
    }

    /// The file this image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the image is an object in a bucket: each read is a request whose latency,
    /// not its size, is most of its cost, so readers keep more of them in flight.
    pub fn is_remote(&self) -> bool {
        matches!(self.blob, Blob::Object(_))
    }
    /// Fills `buf` from byte `offset` of the image file.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.blob.read_exact_at(buf, offset)
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

    /// The sealing key of an encrypted image (None for an image in clear).
    pub fn key(&self) -> Option<&ImageKey> {
        self.key.as_ref()
    }

    /// Index bytes as this image stores them: `plain` itself, or sealed to the header.
    pub fn seal_index(&self, plain: Vec<u8>) -> Vec<u8> {
        match &self.key {
            None => plain,
            Some(k) => k.seal_index(&self.header_region, &plain),
        }
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
    pub fn load_chunk(&self, i: u32) -> Result<Arc<[u8]>, ChunkLoadError> {
        let entry = &self.index.chunks[i as usize];
        let mut record = vec![0u8; CHUNK_RECORD_HEADER + entry.stored_len as usize];
        self.blob
            .read_exact_at(&mut record, entry.offset)
            .map_err(ChunkLoadError::Io)?;
        open_record(entry, &mut record, self.key.as_ref().map(|k| (k, i)))
            .map_err(ChunkLoadError::Fault)
    }

    /// Whether chunk `i` holds filesystem metadata: `create` packs it into chunks smaller
    /// than the image's chunk size, apart from file contents.
    pub fn is_metadata_chunk(&self, i: u32) -> bool {
        self.index.chunks[i as usize].raw_len < self.header.chunk_size
    }

    /// How many chunks from `first` (at most `max`, together at most `max_bytes` stored)
    /// lie one after another in the file, so [`Image::load_run`] reads them at once.
    pub fn run_len(&self, first: u32, max: u32, max_bytes: u64) -> u32 {
        let chunks = &self.index.chunks;
        let record = |i: usize| CHUNK_RECORD_HEADER as u64 + u64::from(chunks[i].stored_len);
        let start = first as usize;
        let mut bytes = record(start);
        let mut n = 1;
        while n < max {
            let i = start + n as usize;
            let Some(next) = chunks.get(i) else { break };
            bytes += record(i);
            if next.offset != chunks[i - 1].offset + record(i - 1) || bytes > max_bytes {
                break;
            }
            n += 1;
        }
        n
    }

    /// Reads and checks chunks `first..first + n`, which lie one after another in the file
    /// ([`Image::run_len`]), with one read: for an image in a bucket, one request.
    pub fn load_run(&self, first: u32, n: u32) -> Vec<Result<Arc<[u8]>, ChunkLoadError>> {
        if n <= 1 {
            return vec![self.load_chunk(first)];
        }
        let entries = &self.index.chunks[first as usize..(first + n) as usize];
        let start = entries[0].offset;
        let last = &entries[entries.len() - 1];
        let end = last.offset + CHUNK_RECORD_HEADER as u64 + u64::from(last.stored_len);
        // Bounded by the caller's byte limit, so the run fits in memory.
        let mut all = vec![0u8; crate::le::clamp_len(end - start, usize::MAX)];
        if let Err(e) = self.blob.read_exact_at(&mut all, start) {
            return (0..n)
                .map(|_| {
                    Err(ChunkLoadError::Io(std::io::Error::new(
                        e.kind(),
                        e.to_string(),
                    )))
                })
                .collect();
        }
        entries
            .iter()
            .zip(first..)
            .map(|(entry, i)| {
                let at = crate::le::clamp_len(entry.offset - start, usize::MAX);
                let mut record =
                    all[at..at + CHUNK_RECORD_HEADER + entry.stored_len as usize].to_vec();
                open_record(entry, &mut record, self.key.as_ref().map(|k| (k, i)))
                    .map_err(ChunkLoadError::Fault)
            })
            .collect()
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
        if self.key.is_some() {
            return self.sealed_block_hashes(first, count);
        }
        let mut buf = vec![0u8; crate::le::usize_of(count * BLOCK_HASH_SIZE)?];
        self.blob
            .read_exact_at(
                &mut buf,
                self.index.block_hashes_offset + first * BLOCK_HASH_SIZE,
            )
            .map_err(|e| Error::io(&self.path, "cannot read block hashes", e))?;
        Ok(buf
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect())
    }

    /// Block hashes of an encrypted image, opened segment by segment.
    fn sealed_block_hashes(&self, first: u64, count: u64) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(crate::le::usize_of(count)?);
        let mut at = first;
        let end = first + count;
        while at < end {
            let seg = at / HASH_SEGMENT_ENTRIES;
            let hashes = self.hash_segment(seg)?;
            let from = crate::le::usize_of(at - seg * HASH_SEGMENT_ENTRIES)?;
            let to =
                crate::le::usize_of((end - seg * HASH_SEGMENT_ENTRIES).min(hashes.len() as u64))?;
            out.extend_from_slice(&hashes[from..to]);
            at = seg * HASH_SEGMENT_ENTRIES + to as u64;
        }
        Ok(out)
    }

    /// Segment `seg` of an encrypted image's block-hash table, opened.
    fn hash_segment(&self, seg: u64) -> Result<Arc<[u64]>> {
        let mut last = self
            .last_segment
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((n, h)) = last.as_ref() {
            if *n == seg {
                return Ok(h.clone());
            }
        }
        let key = self.key.as_ref().expect("called for encrypted images only");
        let entries =
            (self.index.block_hash_count - seg * HASH_SEGMENT_ENTRIES).min(HASH_SEGMENT_ENTRIES);
        let stored_len = entries * BLOCK_HASH_SIZE + SEAL_OVERHEAD as u64;
        let offset = self.index.block_hashes_offset
            + seg * (HASH_SEGMENT_ENTRIES * BLOCK_HASH_SIZE + SEAL_OVERHEAD as u64);
        let mut buf = vec![0u8; crate::le::usize_of(stored_len)?];
        self.blob
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(&self.path, "cannot read block hashes", e))?;
        let plain = key.open(Piece::HashSegment(seg), &buf).map_err(|_| {
            Error::corrupt(
                &self.path,
                format!("block-hash table segment {seg}"),
                offset,
                "authentication failed: changed or damaged",
            )
        })?;
        let hashes: Arc<[u64]> = plain
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        *last = Some((seg, hashes.clone()));
        Ok(hashes)
    }

    /// Reads the whole block-hash table and checks its digest (used by `verify`).
    pub fn check_block_hash_table(&self) -> Result<()> {
        let mut hasher = blake3::Hasher::new();
        let total = super::crypto::hash_table_len(self.index.block_hash_count, self.key.is_some())
            .expect("checked when the index was opened");
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        while done < total {
            let n = crate::le::clamp_len(total - done, buf.len());
            self.blob
                .read_exact_at(&mut buf[..n], self.index.block_hashes_offset + done)
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
        if self.key.is_some() {
            // Every segment must also open: the digest names the stored bytes only.
            let segments = self.index.block_hash_count.div_ceil(HASH_SEGMENT_ENTRIES);
            for seg in 0..segments {
                self.hash_segment(seg)?;
            }
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

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
