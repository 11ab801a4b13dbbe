//! The index (chunk table + extent table) and the trailer that locates it
//! (docs/FORMAT.md, "Index" and "Trailer").

use super::header::HEADER_SIZE;
use super::{chunk::CHUNK_RECORD_HEADER, MAX_CHUNK_SIZE};
use crate::le::{LeFields, LeWriter};
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

/// Index magic.
pub const INDEX_MAGIC: [u8; 8] = *b"STRATIDX";
/// Trailer magic: the last 8 bytes of a complete image.
pub const TRAILER_MAGIC: [u8; 8] = *b"STRATEND";
/// Fixed part of the index before the tables.
pub const INDEX_HEADER_SIZE: usize = 112;
/// One alias-table entry.
pub const ALIAS_ENTRY_SIZE: usize = 48;
/// One chunk-table entry.
pub const CHUNK_ENTRY_SIZE: usize = 40;
/// One extent-table entry.
pub const EXTENT_ENTRY_SIZE: usize = 24;
/// The trailer, at the very end of the file.
pub const TRAILER_SIZE: usize = 64;
/// Bytes per block hash.
pub const BLOCK_HASH_SIZE: u64 = 8;

/// How a chunk's payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Payload is the raw bytes (chosen when compression does not help).
    Raw,
    /// Payload is one zstd frame.
    Zstd,
}

impl Method {
    pub(crate) fn code(self) -> u8 {
        match self {
            Method::Raw => 0,
            Method::Zstd => 1,
        }
    }
    pub(crate) fn from_code(c: u8) -> Option<Method> {
        match c {
            0 => Some(Method::Raw),
            1 => Some(Method::Zstd),
            _ => None,
        }
    }
}

/// Where a chunk is and what it must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkEntry {
    /// File offset of the chunk record (its 24-byte header).
    pub offset: u64,
    /// Bytes of the payload as stored.
    pub stored_len: u32,
    /// Bytes of the data once decompressed.
    pub raw_len: u32,
    /// How the payload is stored.
    pub method: Method,
    /// xxh3-64 of the stored payload bytes.
    pub payload_checksum: u64,
    /// xxh3-64 of the uncompressed bytes.
    pub content_hash: u64,
}

/// What a range of disk blocks reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtentKind {
    /// Blocks stored in a chunk.
    Data,
    /// Blocks that read as zeros in this image (overrides a parent).
    Zero,
    /// Blocks that could not be read from the source; they read as zeros.
    Unreadable,
}

/// A run of disk blocks and where its data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First disk block of the run.
    pub disk_block: u64,
    /// Blocks in the run.
    pub count: u32,
    /// Where the run's data lives (a chunk, zeros, the parent, unreadable).
    pub kind: ExtentKind,
    /// Chunk index (data extents only).
    pub chunk: u32,
    /// First block of the run inside the chunk's uncompressed data (data extents only).
    pub block_in_chunk: u32,
}

impl Extent {
    /// One past the last block of the run.
    pub fn end(&self) -> u64 {
        self.disk_block + u64::from(self.count)
    }
}

/// A run of disk blocks in a sorted, non-overlapping run list: an image's extents or a
/// chain's merged map. Lets one lookup and one read routine serve both.
pub trait Run: Copy {
    /// First block.
    fn start(&self) -> u64;
    /// One past the last block.
    fn end(&self) -> u64;
    /// For stored data: the chunk and the run's first block inside it.
    fn data(&self) -> Option<(u32, u32)>;
}

impl Run for Extent {
    fn start(&self) -> u64 {
        self.disk_block
    }
    fn end(&self) -> u64 {
        Extent::end(self)
    }
    fn data(&self) -> Option<(u32, u32)> {
        (self.kind == ExtentKind::Data).then_some((self.chunk, self.block_in_chunk))
    }
}

/// Position of the run holding `block`, or of the first run after it (`Err`).
pub fn find_run<R: Run>(runs: &[R], block: u64) -> Result<usize, usize> {
    let i = runs.partition_point(|e| e.start() <= block);
    match i.checked_sub(1) {
        Some(j) if runs[j].end() > block => Ok(j),
        _ => Err(i),
    }
}

/// An earlier identity of the same chain point: a consolidated image lists the images it
/// replaces, so that children which name one of them still find their parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alias {
    /// The identity the image had.
    pub uuid: Uuid,
    /// blake3 of that image's index.
    pub index_digest: [u8; 32],
}

/// The decoded index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// The image's identity (as in its header).
    pub image_uuid: Uuid,
    /// The header checksum, tying the index to its header.
    pub header_checksum: u64,
    /// Every chunk, in file order.
    pub chunks: Vec<ChunkEntry>,
    /// Sorted by `disk_block`, non-overlapping.
    pub extents: Vec<Extent>,
    /// File offset of the block-hash table (one xxh3-64 per stored block, in chunk order).
    pub block_hashes_offset: u64,
    /// Entries in the block-hash table.
    pub block_hash_count: u64,
    /// blake3 of the block-hash table bytes.
    pub block_hashes_digest: [u8; 32],
    /// Identities this image also answers to (see [`Alias`]).
    pub aliases: Vec<Alias>,
    /// File offset of the catalog section (see [`super::catalog`]); 0 when there is none.
    pub catalog_offset: u64,
}

/// The decoded trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// File offset of the index.
    pub index_offset: u64,
    /// Bytes of the index.
    pub index_length: u64,
    /// blake3 of the index bytes; a child image names its parent by this digest.
    pub index_digest: [u8; 32],
}

impl Trailer {
    /// Encodes the trailer with its checksum.
    pub fn encode(&self) -> [u8; TRAILER_SIZE] {
        let mut buf = [0u8; TRAILER_SIZE];
        let mut w = LeWriter(&mut buf);
        w.put(0, &TRAILER_MAGIC);
        w.u64(8, self.index_offset);
        w.u64(16, self.index_length);
        w.put(24, &self.index_digest);
        let sum = xxh3_64(&buf[..56]);
        LeWriter(&mut buf).u64(56, sum);
        buf
    }

    /// Decodes a trailer; the error says why it is not one.
    pub fn decode(buf: &[u8]) -> Result<Trailer, String> {
        let f = LeFields(buf);
        if buf.len() != TRAILER_SIZE || buf[..8] != TRAILER_MAGIC {
            return Err("the file does not end with the trailer signature; \
                        creation was interrupted or the file was truncated"
                .into());
        }
        let (stored, sum) = (f.u64(56), xxh3_64(&buf[..56]));
        if stored != sum {
            return Err(format!(
                "trailer checksum mismatch (stored {stored:016x}, computed {sum:016x})"
            ));
        }
        Ok(Trailer {
            index_offset: f.u64(8),
            index_length: f.u64(16),
            index_digest: f.bytes(24),
        })
    }
}

impl Index {
    /// Encodes the index (header, chunk table, extent table).
    pub fn encode(&self) -> Vec<u8> {
        let len = INDEX_HEADER_SIZE
            + self.chunks.len() * CHUNK_ENTRY_SIZE
            + self.extents.len() * EXTENT_ENTRY_SIZE
            + self.aliases.len() * ALIAS_ENTRY_SIZE;
        let mut buf = vec![0u8; len];
        let mut w = LeWriter(&mut buf);
        w.put(0, &INDEX_MAGIC);
        w.put(8, self.image_uuid.as_bytes());
        w.u64(24, self.header_checksum);
        w.u64(32, self.chunks.len() as u64);
        w.u64(40, self.extents.len() as u64);
        w.u64(48, self.block_hashes_offset);
        w.u64(56, self.block_hash_count);
        w.put(64, &self.block_hashes_digest);
        w.u64(96, self.aliases.len() as u64);
        w.u64(104, self.catalog_offset);
        let mut off = INDEX_HEADER_SIZE;
        for c in &self.chunks {
            w.u64(off, c.offset);
            w.u32(off + 8, c.stored_len);
            w.u32(off + 12, c.raw_len);
            w.u8(off + 16, c.method.code());
            w.u64(off + 24, c.payload_checksum);
            w.u64(off + 32, c.content_hash);
            off += CHUNK_ENTRY_SIZE;
        }
        for e in &self.extents {
            w.u64(off, e.disk_block);
            w.u32(off + 8, e.count);
            w.u32(
                off + 12,
                match e.kind {
                    ExtentKind::Data => 0,
                    ExtentKind::Zero => 1,
                    ExtentKind::Unreadable => 2,
                },
            );
            w.u32(off + 16, e.chunk);
            w.u32(off + 20, e.block_in_chunk);
            off += EXTENT_ENTRY_SIZE;
        }
        for a in &self.aliases {
            w.put(off, a.uuid.as_bytes());
            w.put(off + 16, &a.index_digest);
            off += ALIAS_ENTRY_SIZE;
        }
        buf
    }

    /// Decodes an index and checks its structure against the image geometry, so that no
    /// later lookup can index out of range. `index_offset` is where `buf` starts in the file
    /// (for error offsets and to bound chunk locations).
    pub fn decode(
        buf: &[u8],
        index_offset: u64,
        block_size: u32,
        chunk_size: u32,
        block_count: u64,
        sealed: bool,
    ) -> Result<Index, (u64, String)> {
        let f = LeFields(buf);
        let at = |rel: usize| index_offset + rel as u64;
        // What sealing adds to every chunk payload of an encrypted image.
        let overhead = if sealed {
            super::crypto::SEAL_OVERHEAD as u64
        } else {
            0
        };
        if buf.len() < INDEX_HEADER_SIZE || buf[..8] != INDEX_MAGIC {
            return Err((at(0), "no index signature".into()));
        }
        let chunk_count = f.u64(32);
        let extent_count = f.u64(40);
        let alias_count = f.u64(96);
        let expect = (chunk_count as u128) * CHUNK_ENTRY_SIZE as u128
            + (extent_count as u128) * EXTENT_ENTRY_SIZE as u128
            + (alias_count as u128) * ALIAS_ENTRY_SIZE as u128
            + INDEX_HEADER_SIZE as u128;
        if expect != buf.len() as u128 {
            return Err((
                at(32),
                format!(
                    "{chunk_count} chunks, {extent_count} extents and {alias_count} aliases \
                     do not fill the {}-byte index",
                    buf.len()
                ),
            ));
        }
        let block_hashes_offset = f.u64(48);
        let block_hash_count = f.u64(56);
        let bs = u64::from(block_size);
        // Capacities are hints: a count past the address space reserves nothing up front.
        let mut chunks = Vec::with_capacity(usize::try_from(chunk_count).unwrap_or(0));
        let mut off = INDEX_HEADER_SIZE;
        let mut next_free = HEADER_SIZE as u64;
        let mut total_blocks: u64 = 0;
        let max_stored = u64::from(chunk_size) + (u64::from(chunk_size) >> 7) + 4096;
        for i in 0..chunk_count {
            let c = ChunkEntry {
                offset: f.u64(off),
                stored_len: f.u32(off + 8),
                raw_len: f.u32(off + 12),
                method: Method::from_code(f.u8(off + 16))
                    .ok_or_else(|| (at(off + 16), format!("chunk {i}: unknown method")))?,
                payload_checksum: f.u64(off + 24),
                content_hash: f.u64(off + 32),
            };
            let bad = |what: String| Err((at(off), format!("chunk {i}: {what}")));
            if c.raw_len == 0 || c.raw_len > chunk_size || u64::from(c.raw_len) % bs != 0 {
                return bad(format!("impossible uncompressed length {}", c.raw_len));
            }
            if u64::from(c.stored_len) > max_stored + overhead
                || (c.method == Method::Raw
                    && u64::from(c.stored_len) != u64::from(c.raw_len) + overhead)
            {
                return bad(format!("impossible stored length {}", c.stored_len));
            }
            let end = c
                .offset
                .saturating_add(CHUNK_RECORD_HEADER as u64 + u64::from(c.stored_len));
            if c.offset < next_free || end > block_hashes_offset {
                return bad(format!("record at {} overlaps its neighbours", c.offset));
            }
            next_free = end;
            total_blocks += u64::from(c.raw_len) / bs;
            chunks.push(c);
            off += CHUNK_ENTRY_SIZE;
        }
        // The catalog lies between the last chunk record and the block-hash table.
        let catalog_offset = f.u64(104);
        if catalog_offset != 0
            && (catalog_offset < next_free
                || catalog_offset.saturating_add(super::catalog::SECTION_HEADER_SIZE)
                    > block_hashes_offset)
        {
            return Err((
                at(104),
                format!("catalog at {catalog_offset} overlaps its neighbours"),
            ));
        }
        if block_hash_count != total_blocks {
            return Err((
                at(56),
                format!("{block_hash_count} block hashes for {total_blocks} stored blocks"),
            ));
        }
        if super::crypto::hash_table_len(block_hash_count, sealed)
            .and_then(|len| block_hashes_offset.checked_add(len))
            .is_none_or(|end| end != index_offset)
        {
            return Err((at(48), "block-hash table does not end at the index".into()));
        }
        let mut extents = Vec::with_capacity(usize::try_from(extent_count).unwrap_or(0));
        let mut prev_end = 0u64;
        for i in 0..extent_count {
            let kind = match f.u32(off + 12) {
                0 => ExtentKind::Data,
                1 => ExtentKind::Zero,
                2 => ExtentKind::Unreadable,
                k => return Err((at(off + 12), format!("extent {i}: unknown kind {k}"))),
            };
            let e = Extent {
                disk_block: f.u64(off),
                count: f.u32(off + 8),
                kind,
                chunk: f.u32(off + 16),
                block_in_chunk: f.u32(off + 20),
            };
            let bad = |what: String| Err((at(off), format!("extent {i}: {what}")));
            if e.count == 0 || e.disk_block < prev_end || e.end() > block_count {
                return bad(format!(
                    "blocks {}+{} out of order or past the disk's {block_count} blocks",
                    e.disk_block, e.count
                ));
            }
            if e.kind == ExtentKind::Data {
                let Some(c) = chunks.get(e.chunk as usize) else {
                    return bad(format!("chunk {} does not exist", e.chunk));
                };
                if u64::from(e.block_in_chunk) + u64::from(e.count) > u64::from(c.raw_len) / bs {
                    return bad(format!("runs past the end of chunk {}", e.chunk));
                }
            }
            prev_end = e.end();
            extents.push(e);
            off += EXTENT_ENTRY_SIZE;
        }
        let mut aliases = Vec::with_capacity(usize::try_from(alias_count).unwrap_or(0));
        for _ in 0..alias_count {
            aliases.push(Alias {
                uuid: Uuid::from_bytes(f.bytes(off)),
                index_digest: f.bytes(off + 16),
            });
            off += ALIAS_ENTRY_SIZE;
        }
        Ok(Index {
            image_uuid: Uuid::from_bytes(f.bytes(8)),
            header_checksum: f.u64(24),
            chunks,
            extents,
            block_hashes_offset,
            block_hash_count,
            block_hashes_digest: f.bytes(64),
            aliases,
            catalog_offset,
        })
    }

    /// Position of the extent holding `block`, or of the first extent after it (`Err`).
    pub fn find(&self, block: u64) -> Result<usize, usize> {
        find_run(&self.extents, block)
    }

    /// Index of each chunk's first block hash (prefix sums of block counts).
    pub fn first_block_hashes(&self, block_size: u32) -> Vec<u64> {
        let mut acc = 0u64;
        self.chunks
            .iter()
            .map(|c| {
                let first = acc;
                acc += u64::from(c.raw_len / block_size);
                first
            })
            .collect()
    }
}

// Chunks larger than this are refused when reading, whatever the header says.
const _: () = assert!(MAX_CHUNK_SIZE <= u32::MAX / 2);

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        Index {
            image_uuid: Uuid::from_u128(7),
            header_checksum: 99,
            chunks: vec![ChunkEntry {
                offset: HEADER_SIZE as u64,
                stored_len: 100,
                raw_len: 8192,
                method: Method::Zstd,
                payload_checksum: 1,
                content_hash: 2,
            }],
            extents: vec![
                Extent {
                    disk_block: 0,
                    count: 1,
                    kind: ExtentKind::Data,
                    chunk: 0,
                    block_in_chunk: 0,
                },
                Extent {
                    disk_block: 5,
                    count: 1,
                    kind: ExtentKind::Data,
                    chunk: 0,
                    block_in_chunk: 1,
                },
            ],
            block_hashes_offset: HEADER_SIZE as u64 + 24 + 100,
            block_hash_count: 2,
            block_hashes_digest: [3; 32],
            aliases: vec![Alias {
                uuid: Uuid::from_u128(8),
                index_digest: [4; 32],
            }],
            catalog_offset: 0,
        }
    }

    #[test]
    fn round_trip_and_lookup() {
        let idx = sample();
        let buf = idx.encode();
        let at = idx.block_hashes_offset + 16;
        let back = Index::decode(&buf, at, 4096, 1 << 20, 10, false).unwrap();
        assert_eq!(back, idx);
        assert_eq!(back.find(0), Ok(0));
        assert_eq!(back.find(3), Err(1));
        assert_eq!(back.find(5), Ok(1));
        assert_eq!(back.find(9), Err(2));
    }

    #[test]
    fn structural_errors_are_caught() {
        let idx = sample();
        let at = idx.block_hashes_offset + 16;
        // Extent past the end of the disk.
        assert!(Index::decode(&idx.encode(), at, 4096, 1 << 20, 5, false).is_err());
        // Overlapping extents.
        let mut bad = idx.clone();
        bad.extents[1].disk_block = 0;
        assert!(Index::decode(&bad.encode(), at, 4096, 1 << 20, 10, false).is_err());
        // Extent running past its chunk.
        let mut bad = idx.clone();
        bad.extents[1].block_in_chunk = 2;
        assert!(Index::decode(&bad.encode(), at, 4096, 1 << 20, 10, false).is_err());
        // Wrong hash count.
        let mut bad = idx;
        bad.block_hash_count = 3;
        assert!(Index::decode(&bad.encode(), at, 4096, 1 << 20, 10, false).is_err());
    }

    #[test]
    fn trailer_round_trip_and_flips() {
        let t = Trailer {
            index_offset: 1234,
            index_length: 96,
            index_digest: [9; 32],
        };
        let buf = t.encode();
        assert_eq!(Trailer::decode(&buf).unwrap(), t);
        for i in 0..TRAILER_SIZE {
            let mut b = buf;
            b[i] ^= 1;
            assert!(Trailer::decode(&b).is_err(), "flip at {i}");
        }
    }
}
