//! Appends chunks to a new image and finishes it with the index and trailer.

use super::chunk::{record_header, SealedChunk, CHUNK_RECORD_HEADER};
use super::crypto::{ImageKey, Piece, HASH_SEGMENT_ENTRIES};
use super::header::{Header, HEADER_SIZE};
use super::index::{Alias, ChunkEntry, Extent, ExtentKind, Index, Trailer, BLOCK_HASH_SIZE};
use crate::error::{Error, Result};
use crate::storage::Output;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// Writes one image front to back. The caller hands chunks and extents in ascending disk
/// order; nothing is ever rewritten, so a killed writer leaves a file without a trailer.
pub struct ImageWriter {
    out: BufWriter<Output>,
    path: PathBuf,
    pos: u64,
    header: Header,
    header_checksum: u64,
    chunks: Vec<ChunkEntry>,
    /// Data extents, in the order chunks were appended.
    extents: Vec<Extent>,
    /// Zero and unreadable extents; merged with the data extents at the end.
    other_extents: Vec<Extent>,
    aliases: Vec<Alias>,
    /// Block hashes are spilled to an unnamed temporary file: 8 bytes per 4 KiB block would
    /// otherwise grow the writer's memory with the disk (2 GiB per used TiB).
    hashes: BufWriter<File>,
    hash_count: u64,
    hasher: blake3::Hasher,
    /// The sealing key of an encrypted image.
    key: Option<Arc<ImageKey>>,
    /// Header bytes 0..1024, which an encrypted image's index is bound to.
    header_region: Vec<u8>,
    /// Block hashes of an encrypted image not yet sealed into a segment of the spill (the
    /// spill lies on the destination's storage, so it holds sealed segments only).
    segment: Vec<u8>,
    /// Segments sealed so far.
    segments: u64,
}

/// Totals of a finished image.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteSummary {
    /// Chunks written.
    pub chunks: u64,
    /// Extents written to the index.
    pub extents: u64,
    /// Uncompressed bytes held in chunks.
    pub data_bytes: u64,
    /// Size of the image file.
    pub file_bytes: u64,
}

impl ImageWriter {
    /// Starts an image in `file` (empty, opened for writing) by writing `header`.
    /// `path` names the file in errors; the hash spill goes beside it (for an upload, to
    /// the temporary directory).
    /// An encrypted header's master key must be in the [`keyring`](super::keyring).
    pub fn new(file: Output, path: &Path, mut header: Header) -> Result<ImageWriter> {
        let dir = match path.parent() {
            _ if crate::storage::is_remote(path) => std::env::temp_dir(),
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let spill = tempfile::tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, "cannot create a temporary file", e))?;
        let key = match &mut header.encryption {
            None => None,
            Some(e) => {
                let master = super::keyring::master(&e.key_id).ok_or_else(|| Error::Key {
                    path: path.into(),
                    detail: "the chain's key is not unlocked".into(),
                })?;
                let key = master.image_key(header.image_uuid, &e.salt);
                e.sealed_source = key.seal(Piece::Source, header.source.as_bytes());
                Some(Arc::new(key))
            }
        };
        let encoded = header.encode();
        let header_region = if key.is_some() {
            encoded[..super::crypto::SLOTS_OFFSET].to_vec()
        } else {
            Vec::new()
        };
        let header_checksum = Header::stored_checksum(&encoded);
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&encoded)
            .map_err(|e| Error::io(path, "cannot write", e))?;
        Ok(ImageWriter {
            out,
            path: path.to_path_buf(),
            pos: HEADER_SIZE as u64,
            header,
            header_checksum,
            chunks: Vec::new(),
            extents: Vec::new(),
            other_extents: Vec::new(),
            aliases: Vec::new(),
            hashes: BufWriter::new(spill),
            hash_count: 0,
            hasher: blake3::Hasher::new(),
            key,
            header_region,
            segment: Vec::new(),
            segments: 0,
        })
    }

    /// The header being written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The key chunks are sealed with (encrypted images), and the number the next chunk
    /// appended will have: workers seal chunks as `next + k` for the k-th chunk after it.
    pub fn sealing(&self) -> Option<(Arc<ImageKey>, usize)> {
        self.key.as_ref().map(|k| (k.clone(), self.chunks.len()))
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, "cannot write", e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Appends a chunk whose `i`-th block belongs at disk block `blocks[i]`. Blocks must
    /// not be given twice; across calls they may come in any order, but disk order keeps
    /// the extent table small.
    pub fn append(&mut self, chunk: &SealedChunk, blocks: &[u64]) -> Result<()> {
        let bs = self.header.block_size;
        assert_eq!(
            blocks.len() as u64 * u64::from(bs),
            u64::from(chunk.raw_len)
        );
        let index = u32::try_from(self.chunks.len())
            .map_err(|_| Error::Invalid("image would exceed 2^32 chunks".into()))?;
        let offset = self.pos;
        let sealed;
        let (payload, payload_checksum) = match (&self.key, chunk.sealed_as) {
            (None, None) => (&chunk.payload, chunk.payload_checksum),
            (Some(_), Some(n)) if n == index => (&chunk.payload, chunk.payload_checksum),
            (Some(k), None) => {
                sealed = k.seal(Piece::Chunk { index }, &chunk.payload);
                (&sealed, xxh3_64(&sealed))
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: chunk {index} was sealed for another place",
                    self.path.display()
                )))
            }
        };
        let stored_len = u32::try_from(payload.len())
            .map_err(|_| Error::Invalid("a chunk of 4 GiB or more".into()))?;
        let head = record_header(chunk.method, stored_len, chunk.raw_len, payload_checksum);
        self.write(&head)?;
        self.write(payload)?;
        debug_assert_eq!(
            self.pos,
            offset + (CHUNK_RECORD_HEADER + payload.len()) as u64
        );
        self.chunks.push(ChunkEntry {
            offset,
            stored_len,
            raw_len: chunk.raw_len,
            method: chunk.method,
            payload_checksum,
            content_hash: chunk.content_hash,
        });
        for h in &chunk.block_hashes {
            let b = h.to_le_bytes();
            if self.key.is_some() {
                self.segment.extend_from_slice(&b);
                if self.segment.len() as u64 == HASH_SEGMENT_ENTRIES * BLOCK_HASH_SIZE {
                    self.seal_segment()?;
                }
                continue;
            }
            self.hasher.update(&b);
            self.hashes
                .write_all(&b)
                .map_err(|e| Error::io(&self.path, "cannot write the block-hash spill", e))?;
        }
        self.hash_count += chunk.block_hashes.len() as u64;
        for (i, &block) in blocks.iter().enumerate() {
            push_merged(
                &mut self.extents,
                Extent {
                    disk_block: block,
                    count: 1,
                    kind: ExtentKind::Data,
                    chunk: index,
                    block_in_chunk: u32::try_from(i)
                        .map_err(|_| Error::Invalid("a chunk of 2^32 blocks or more".into()))?,
                },
            );
        }
        Ok(())
    }

    /// Seals the pending block hashes as the next segment of the table and spills it.
    fn seal_segment(&mut self) -> Result<()> {
        let key = self.key.as_ref().expect("encrypted images only");
        let sealed = key.seal(Piece::HashSegment(self.segments), &self.segment);
        self.hasher.update(&sealed);
        self.hashes
            .write_all(&sealed)
            .map_err(|e| Error::io(&self.path, "cannot write the block-hash spill", e))?;
        self.segment.clear();
        self.segments += 1;
        Ok(())
    }

    /// Records `count` blocks from `disk_block` as zero or unreadable.
    pub fn add_extent(&mut self, disk_block: u64, count: u32, kind: ExtentKind) {
        assert_ne!(kind, ExtentKind::Data, "data extents come from append");
        push_merged(
            &mut self.other_extents,
            Extent {
                disk_block,
                count,
                kind,
                chunk: 0,
                block_in_chunk: 0,
            },
        );
    }

    /// Sets the earlier identities this image answers to (consolidated images).
    pub fn set_aliases(&mut self, aliases: Vec<Alias>) {
        self.aliases = aliases;
    }

    /// All extents sorted by disk block, neighbours merged; overlaps are a caller bug.
    fn sorted_extents(&mut self) -> Result<Vec<Extent>> {
        let mut all = std::mem::take(&mut self.extents);
        all.append(&mut self.other_extents);
        all.sort_by_key(|e| e.disk_block);
        let mut out: Vec<Extent> = Vec::with_capacity(all.len());
        for e in all {
            if out.last().is_some_and(|l| l.end() > e.disk_block) {
                return Err(Error::Invalid(format!(
                    "{}: block {} was given twice",
                    self.path.display(),
                    e.disk_block
                )));
            }
            push_merged(&mut out, e);
        }
        Ok(out)
    }

    /// Keeps what [`ImageWriter::finish`] writes readable (an upload holds it locally; see
    /// [`crate::storage::s3::Upload::hold`]).
    pub fn hold_tail(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io(&self.path, "cannot write", e))?;
        if let Output::Upload(u) = self.out.get_mut() {
            u.hold()
                .map_err(|e| Error::io(&self.path, "cannot create a temporary file for", e))?;
        }
        Ok(())
    }

    /// Writes the block-hash table, the index and the trailer, and flushes. Returns the
    /// output (not yet synced: the caller syncs and renames it into place, or completes
    /// the upload) and the totals.
    pub fn finish(mut self) -> Result<(Output, Trailer, WriteSummary)> {
        let extents = self.sorted_extents()?;
        let block_hashes_offset = self.pos;
        if self.key.is_some() && !self.segment.is_empty() {
            self.seal_segment()?;
        }
        // The spill holds the table as it is stored (sealed segments when encrypted).
        let table_len = super::crypto::hash_table_len(self.hash_count, self.key.is_some())
            .ok_or_else(|| Error::Invalid("a block-hash table beyond 2^64 bytes".into()))?;
        let spill_err = |e| Error::io(&self.path, "cannot read back the block-hash spill", e);
        let mut spill = self.hashes.into_inner().map_err(|e| {
            Error::io(
                &self.path,
                "cannot write the block-hash spill",
                e.into_error(),
            )
        })?;
        spill.seek(SeekFrom::Start(0)).map_err(spill_err)?;
        let copied =
            std::io::copy(&mut (&mut spill).take(table_len), &mut self.out).map_err(spill_err)?;
        if copied != table_len {
            return Err(Error::io(
                &self.path,
                "block-hash spill is short",
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        self.pos += copied;
        let block_hashes_digest = *self.hasher.finalize().as_bytes();
        let index = Index {
            image_uuid: self.header.image_uuid,
            header_checksum: self.header_checksum,
            chunks: std::mem::take(&mut self.chunks),
            extents,
            block_hashes_offset,
            block_hash_count: self.hash_count,
            block_hashes_digest,
            aliases: std::mem::take(&mut self.aliases),
            catalog_offset: 0,
        };
        let encoded = match &self.key {
            None => index.encode(),
            Some(k) => k.seal_index(&self.header_region, &index.encode()),
        };
        let trailer = Trailer {
            index_offset: self.pos,
            index_length: encoded.len() as u64,
            index_digest: *blake3::hash(&encoded).as_bytes(),
        };
        self.hashes = BufWriter::new(spill); // keep the struct whole for `write`
        self.write(&encoded)?;
        self.write(&trailer.encode())?;
        let summary = WriteSummary {
            chunks: index.chunks.len() as u64,
            extents: index.extents.len() as u64,
            data_bytes: index.chunks.iter().map(|c| u64::from(c.raw_len)).sum(),
            file_bytes: self.pos,
        };
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.path, "cannot write", e.into_error()))?;
        Ok((file, trailer, summary))
    }
}

/// Appends `e` to `list`, extending the last extent instead when `e` continues it.
fn push_merged(list: &mut Vec<Extent>, e: Extent) {
    if let Some(last) = list.last_mut() {
        let follows = last.end() == e.disk_block
            && last.kind == e.kind
            && last.count.checked_add(e.count).is_some()
            && (e.kind != ExtentKind::Data
                || (last.chunk == e.chunk && last.block_in_chunk + last.count == e.block_in_chunk));
        if follows {
            last.count += e.count;
            return;
        }
    }
    list.push(e);
}
