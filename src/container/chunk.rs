//! Chunk records: one independently decompressible unit of stored blocks
//! (docs/FORMAT.md, "Chunk records").

use super::crypto::{ImageKey, Piece};
use super::index::{ChunkEntry, Method};
use crate::le::{LeFields, LeWriter};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// Chunk record magic.
pub const CHUNK_MAGIC: [u8; 4] = *b"SCHK";
/// Bytes before the payload in a chunk record.
pub const CHUNK_RECORD_HEADER: usize = 24;

/// A chunk ready to be appended: payload plus everything the index records about it.
#[derive(Debug, Clone)]
pub struct SealedChunk {
    /// How the payload is stored (zstd or raw).
    pub method: Method,
    /// The bytes stored in the record.
    pub payload: Vec<u8>,
    /// Length of the data once decompressed.
    pub raw_len: u32,
    /// xxh3-64 of `payload`.
    pub payload_checksum: u64,
    /// xxh3-64 of the uncompressed data.
    pub content_hash: u64,
    /// xxh3-64 of each block of the uncompressed data, in order.
    pub block_hashes: Vec<u64>,
    /// In an encrypted image: the chunk number the payload was sealed as (None: not
    /// sealed yet; the writer seals it).
    pub sealed_as: Option<u32>,
}

impl SealedChunk {
    /// Hashes and compresses `raw` (whole blocks). The payload is stored raw when zstd
    /// does not make it smaller, so incompressible data costs no decompression later.
    /// `block_hashes` may be given when the caller already hashed the blocks.
    pub fn seal(
        raw: &[u8],
        block_size: usize,
        block_hashes: Option<Vec<u64>>,
        compressor: &mut zstd::bulk::Compressor<'_>,
    ) -> std::io::Result<SealedChunk> {
        debug_assert!(raw.len().is_multiple_of(block_size) && !raw.is_empty());
        let block_hashes =
            block_hashes.unwrap_or_else(|| raw.chunks_exact(block_size).map(xxh3_64).collect());
        debug_assert_eq!(block_hashes.len(), raw.len() / block_size);
        let content_hash = xxh3_64(raw);
        let compressed = compressor.compress(raw)?;
        let (method, payload) = if compressed.len() < raw.len() {
            (Method::Zstd, compressed)
        } else {
            (Method::Raw, raw.to_vec())
        };
        Ok(SealedChunk {
            method,
            payload_checksum: xxh3_64(&payload),
            payload,
            raw_len: u32::try_from(raw.len()).map_err(std::io::Error::other)?,
            content_hash,
            block_hashes,
            sealed_as: None,
        })
    }

    /// Seals the payload as chunk number `index` of the image `key` belongs to. Done by
    /// the compression workers, so that sealing runs on every core.
    pub fn encrypt(&mut self, key: &ImageKey, index: u32) {
        self.payload = key.seal(Piece::Chunk { index }, &self.payload);
        self.payload_checksum = xxh3_64(&self.payload);
        self.sealed_as = Some(index);
    }

    /// The 24-byte record header that precedes the payload in the file.
    // The payload is never longer than `raw_len` (`seal` keeps the raw bytes when zstd
    // does not shrink them), which `seal` checked to fit 32 bits.
    #[allow(clippy::cast_possible_truncation)]
    pub fn record_header(&self) -> [u8; CHUNK_RECORD_HEADER] {
        record_header(
            self.method,
            self.payload.len() as u32,
            self.raw_len,
            self.payload_checksum,
        )
    }
}

/// The 24-byte header of a record holding `stored_len` payload bytes.
pub fn record_header(
    method: Method,
    stored_len: u32,
    raw_len: u32,
    payload_checksum: u64,
) -> [u8; CHUNK_RECORD_HEADER] {
    let mut buf = [0u8; CHUNK_RECORD_HEADER];
    let mut w = LeWriter(&mut buf);
    w.put(0, &CHUNK_MAGIC);
    w.u8(4, method.code());
    w.u32(8, stored_len);
    w.u32(12, raw_len);
    w.u64(16, payload_checksum);
    buf
}

/// What is wrong with a chunk record; `verify` reports it with the disk range it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkFault {
    /// The record header disagrees with the index.
    Header(String),
    /// The stored bytes do not match their checksum.
    PayloadChecksum {
        /// The checksum the record holds.
        stored: u64,
        /// The checksum of the bytes read.
        computed: u64,
    },
    /// The sealed payload failed authentication (encrypted images): it was changed, or it
    /// belongs to another position or image.
    NotAuthentic,
    /// zstd refused the payload.
    Decompress(String),
    /// Decompressed to the wrong length.
    Length {
        /// The length the index records.
        expected: u32,
        /// The length decompressed.
        got: usize,
    },
    /// The decompressed bytes do not match the content hash.
    ContentHash {
        /// The hash the index records.
        stored: u64,
        /// The hash of the bytes decompressed.
        computed: u64,
    },
}

impl std::fmt::Display for ChunkFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkFault::Header(m) => write!(f, "record header: {m}"),
            ChunkFault::PayloadChecksum { stored, computed } => write!(
                f,
                "stored-bytes checksum mismatch (expected {stored:016x}, computed {computed:016x})"
            ),
            ChunkFault::NotAuthentic => write!(
                f,
                "authentication failed: the chunk was changed, or belongs to another place \
                 or image"
            ),
            ChunkFault::Decompress(m) => write!(f, "cannot decompress: {m}"),
            ChunkFault::Length { expected, got } => {
                write!(f, "decompressed to {got} bytes, expected {expected}")
            }
            ChunkFault::ContentHash { stored, computed } => write!(
                f,
                "content hash mismatch (expected {stored:016x}, computed {computed:016x})"
            ),
        }
    }
}

/// Checks a chunk record (`record` = header + payload, as read from `entry.offset`) against
/// its index entry and returns the uncompressed bytes. An encrypted image's chunk is opened
/// with its image key and its number.
pub fn open_record(
    entry: &ChunkEntry,
    record: &mut [u8],
    key: Option<(&ImageKey, u32)>,
) -> Result<Arc<[u8]>, ChunkFault> {
    let f = LeFields(record);
    if record.len() != CHUNK_RECORD_HEADER + entry.stored_len as usize {
        return Err(ChunkFault::Header(format!(
            "record is {} bytes, index says {}",
            record.len(),
            CHUNK_RECORD_HEADER + entry.stored_len as usize
        )));
    }
    if record[..4] != CHUNK_MAGIC {
        return Err(ChunkFault::Header("no chunk signature".into()));
    }
    if f.u8(4) != entry.method.code()
        || record[5..8] != [0, 0, 0]
        || f.u32(8) != entry.stored_len
        || f.u32(12) != entry.raw_len
        || f.u64(16) != entry.payload_checksum
    {
        return Err(ChunkFault::Header("fields disagree with the index".into()));
    }
    let payload = &mut record[CHUNK_RECORD_HEADER..];
    // The payload checksum tells a damaged chunk from a tampered one. When the chunk is
    // sealed its tag covers every stored byte, so the checksum is computed only if the
    // chunk does not open.
    let check_payload = |payload: &[u8]| {
        let computed = xxh3_64(payload);
        if computed == entry.payload_checksum {
            Ok(())
        } else {
            Err(ChunkFault::PayloadChecksum {
                stored: entry.payload_checksum,
                computed,
            })
        }
    };
    let not_authentic = |payload: &[u8]| match check_payload(payload) {
        Err(e) => e,
        Ok(()) => ChunkFault::NotAuthentic,
    };
    if key.is_none() {
        check_payload(payload)?;
    }
    let payload: &[u8] = match (key, entry.method) {
        (None, Method::Raw) => {
            if payload.len() != entry.raw_len as usize {
                return Err(ChunkFault::Length {
                    expected: entry.raw_len,
                    got: payload.len(),
                });
            }
            // The stored bytes are the data: their checksum, just checked, is the
            // content hash's value, so the data is not hashed a second time.
            if entry.content_hash != entry.payload_checksum {
                return Err(ChunkFault::ContentHash {
                    stored: entry.content_hash,
                    computed: entry.payload_checksum,
                });
            }
            return Ok(Arc::from(&*payload));
        }
        (None, Method::Zstd) => payload,
        (Some((key, index)), Method::Raw) => {
            // Opened straight into the buffer the cache keeps (no copy after opening). The
            // tag authenticates these exact bytes, and the sealed index the length: the
            // content hash would check them a second time.
            let len = entry.raw_len as usize;
            if payload.len() != len + super::crypto::SEAL_OVERHEAD {
                return Err(ChunkFault::Length {
                    expected: entry.raw_len,
                    got: payload.len().saturating_sub(super::crypto::SEAL_OVERHEAD),
                });
            }
            let mut raw: Arc<[u8]> = std::iter::repeat_n(0, len).collect();
            let out = Arc::get_mut(&mut raw).expect("not shared yet");
            key.open_into(Piece::Chunk { index }, payload, out)
                .map_err(|_| not_authentic(payload))?;
            return Ok(raw);
        }
        (Some((key, index)), Method::Zstd) => {
            match key.open_in_place(Piece::Chunk { index }, payload) {
                Ok(body) => body,
                // Opening checks the tag before it changes a byte.
                Err(_) => return Err(not_authentic(payload)),
            }
        }
    };
    // Decoded straight into the shared buffer the chain's cache keeps, without a copy.
    let raw: Arc<[u8]> = {
        // Sized by the index (raw_len <= chunk size), never by the payload.
        let mut raw: Arc<[u8]> = std::iter::repeat_n(0, entry.raw_len as usize).collect();
        let out = Arc::get_mut(&mut raw).expect("not shared yet");
        let n = zstd::bulk::decompress_to_buffer(payload, out)
            .map_err(|e| ChunkFault::Decompress(e.to_string()))?;
        if n != raw.len() {
            return Err(ChunkFault::Length {
                expected: entry.raw_len,
                got: n,
            });
        }
        raw
    };
    let computed = xxh3_64(&raw);
    if computed != entry.content_hash {
        return Err(ChunkFault::ContentHash {
            stored: entry.content_hash,
            computed,
        });
    }
    Ok(raw)
}

#[cfg(test)]
// Test chunks and inputs are small; their lengths and bytes are cut down on purpose.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn entry_for(c: &SealedChunk) -> ChunkEntry {
        ChunkEntry {
            offset: 0,
            stored_len: c.payload.len() as u32,
            raw_len: c.raw_len,
            method: c.method,
            payload_checksum: c.payload_checksum,
            content_hash: c.content_hash,
        }
    }

    fn record(c: &SealedChunk) -> Vec<u8> {
        let mut r = c.record_header().to_vec();
        r.extend_from_slice(&c.payload);
        r
    }

    #[test]
    fn compressible_and_random_chunks_round_trip() {
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let text: Vec<u8> = b"strata ".iter().cycle().take(8192).copied().collect();
        let c = SealedChunk::seal(&text, 4096, None, &mut z).unwrap();
        assert_eq!(c.method, Method::Zstd);
        assert_eq!(
            *open_record(&entry_for(&c), &mut record(&c), None).unwrap(),
            *text
        );

        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let c = SealedChunk::seal(&noise, 4096, None, &mut z).unwrap();
        assert_eq!(c.method, Method::Raw);
        assert_eq!(c.block_hashes.len(), 2);
        assert_eq!(
            *open_record(&entry_for(&c), &mut record(&c), None).unwrap(),
            *noise
        );
    }

    #[test]
    fn any_flip_in_the_record_is_caught() {
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let text: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let c = SealedChunk::seal(&text, 4096, None, &mut z).unwrap();
        let good = record(&c);
        for i in 0..good.len() {
            let mut r = good.clone();
            r[i] ^= 0x10;
            assert!(
                open_record(&entry_for(&c), &mut r, None).is_err(),
                "flip at {i}"
            );
        }
    }
}
