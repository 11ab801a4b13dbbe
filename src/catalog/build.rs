//! Walking a chain point into a [`Catalog`], with a content identity per file.
//!
//! A file's content identity is BLAKE3 (16 bytes) over its size, the block size and the
//! xxh3-64 of each block-size piece of its contents in order, the last piece padded with
//! zeros. It depends on the bytes alone, not on where they lie, so equal contents have
//! equal identities on any layout, and a changed byte changes its piece's hash (a 64-bit
//! hash: the same odds as the change detection of incremental images). A piece that lies
//! exactly on one image block, inside the file's initialized data, takes the image's block
//! hash: nothing is read or decompressed. Holes and pieces past the initialized size are
//! zero blocks. Only the other pieces are read: a file's partial last block, data that is
//! not block-aligned on the disk (FAT, partitions that do not start on a block), and
//! contents not stored as they read (resident, compressed, inline).
//!
//! While `create` writes an image, those reads go to the source disk, which was just read
//! and sits in the page cache, and each block read there is used only if its hash equals
//! the image's ([`Verified`]); otherwise the image is read. The catalog therefore always
//! describes the image, even when the source changed since.

use super::{Catalog, ContentId, Entry, StreamEntry, Volume, ROOT_PARENT};
use crate::blockdev::{is_zero, BlockDev};
use crate::chain::{BlockState, Chain};
use crate::error::{Error, Result};
use crate::fs::browse::{FileSystem, Metadata, NodeId, NodeKind};
use crate::vfs::Vfs;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// A device that reads `source` where its blocks hold what the chain point holds (same
/// block hash, or zeros where the point has zeros), and the chain everywhere else.
pub struct Verified {
    source: Arc<dyn BlockDev>,
    chain: Arc<Chain>,
    bs: u64,
}

impl Verified {
    /// Reads `chain`'s point through `source` where they agree.
    pub fn new(source: Arc<dyn BlockDev>, chain: Arc<Chain>) -> Verified {
        let bs = u64::from(chain.block_size());
        Verified { source, chain, bs }
    }

    /// The blocks `first..first + n` read from the source, if every one matches the point.
    fn read_source(&self, first: u64, n: u64) -> Option<Vec<u8>> {
        let len = self.chain.len();
        let start = first * self.bs;
        let end = ((first + n) * self.bs).min(len).min(self.source.len());
        let mut buf = vec![0u8; usize::try_from(n * self.bs).ok()?];
        let got = usize::try_from(end.checked_sub(start)?).ok()?;
        self.source.read_at(start, &mut buf[..got]).ok()?;
        let states = self.chain.block_states(first, n).ok()?;
        let bs = usize::try_from(self.bs).ok()?;
        let all = buf.chunks_exact(bs).zip(&states).all(|(b, s)| match s {
            BlockState::Zero => is_zero(b),
            BlockState::Hash(h) => xxh3_64(b) == *h,
        });
        all.then_some(buf)
    }
}

impl BlockDev for Verified {
    fn len(&self) -> u64 {
        self.chain.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        if buf.is_empty() || end > self.len() {
            return self.chain.read_at(offset, buf);
        }
        let first = offset / self.bs;
        let n = end.div_ceil(self.bs) - first;
        match self.read_source(first, n) {
            Some(blocks) => {
                let from = crate::le::usize_of(offset - first * self.bs)?;
                buf.copy_from_slice(&blocks[from..from + buf.len()]);
                Ok(())
            }
            None => self.chain.read_at(offset, buf),
        }
    }
}

fn zero_hash(bs: u64) -> u64 {
    xxh3_64(&vec![0u8; usize::try_from(bs).unwrap_or(4096)])
}

/// How one piece of a file is hashed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// Reads as zeros.
    Zero,
    /// Exactly disk block `n` of the point.
    Block(u64),
    /// Must be read.
    Read,
}

/// Computes catalogs for one chain point.
pub struct Builder {
    chain: Arc<Chain>,
    dev: Arc<dyn BlockDev>,
    bs: u64,
    zero_hash: u64,
}

impl Builder {
    /// A builder for the point `chain` ends at; `source`, when given, is the disk that
    /// point was just made from (read where it agrees with the point).
    pub fn new(chain: Arc<Chain>, source: Option<Arc<dyn BlockDev>>) -> Builder {
        let bs = u64::from(chain.block_size());
        let dev: Arc<dyn BlockDev> = match source {
            Some(s) => Arc::new(Verified::new(s, chain.clone())),
            None => chain.clone(),
        };
        Builder {
            chain,
            dev,
            bs,
            zero_hash: zero_hash(bs),
        }
    }

    /// Walks every filesystem of the point. Fails only when the partition table cannot be
    /// read; a filesystem or entry that cannot be read is left out or marked unreadable.
    pub fn build(&self) -> Result<Catalog> {
        let vfs = Vfs::open(
            self.dev.clone(),
            self.chain.sector_size(),
            self.chain.cache(),
        )?;
        let mut volumes = Vec::new();
        for m in vfs.mounts() {
            let (Ok(fs), Some(kind)) = (&m.fs, m.kind) else {
                continue;
            };
            volumes.push(Volume {
                name: m.name.clone(),
                fs: kind.name().to_string(),
                entries: self.walk(&**fs, m.start)?,
            });
        }
        Ok(Catalog {
            block_size: self.chain.block_size(),
            volumes,
        })
    }

    /// Every entry of `fs` (at byte `start` of the device), parents before children.
    fn walk(&self, fs: &dyn FileSystem, start: u64) -> Result<Vec<Entry>> {
        let root = fs.root();
        let mut entries = vec![match fs.metadata(root) {
            Ok(m) => entry(ROOT_PARENT, String::new(), &m),
            Err(e) => return Err(e),
        }];
        let mut stack = vec![(0u32, root)];
        let mut seen = HashSet::from([root]);
        // Identities of files with several names, computed once.
        let mut linked: HashMap<NodeId, (Option<ContentId>, Vec<StreamEntry>, bool)> =
            HashMap::new();
        while let Some((at, dir)) = stack.pop() {
            crate::progress::check_interrupt()?;
            let list = match fs.read_dir(dir) {
                Ok(l) => l,
                Err(Error::Interrupted) => return Err(Error::Interrupted),
                Err(_) => {
                    entries[at as usize].unreadable = true;
                    continue;
                }
            };
            for d in list {
                let mut e = match fs.metadata(d.node) {
                    Ok(m) => entry(at, d.name, &m),
                    Err(_) => {
                        let mut e = entry(at, d.name, &Metadata::new(d.kind, 0));
                        e.unreadable = true;
                        e
                    }
                };
                if !e.unreadable {
                    match e.kind {
                        NodeKind::File if e.nlink.unwrap_or(1) > 1 => {
                            let (id, streams, bad) = linked
                                .entry(d.node)
                                .or_insert_with(|| self.contents(fs, d.node, &e, start))
                                .clone();
                            (e.id, e.streams, e.unreadable) = (id, streams, bad);
                        }
                        NodeKind::File => {
                            (e.id, e.streams, e.unreadable) = self.contents(fs, d.node, &e, start);
                        }
                        NodeKind::Symlink => match fs.read_link(d.node) {
                            Ok(t) => {
                                let mut h = blake3::Hasher::new();
                                h.update(b"strata link 1\0");
                                h.update(t.as_bytes());
                                e.id = Some(short(h));
                            }
                            Err(_) => e.unreadable = true,
                        },
                        _ => {}
                    }
                }
                let is_dir = e.kind == NodeKind::Dir;
                let i = u32::try_from(entries.len())
                    .map_err(|_| Error::Invalid("more than 2^32 entries".into()))?;
                entries.push(e);
                if is_dir && seen.insert(d.node) {
                    stack.push((i, d.node));
                }
            }
        }
        Ok(entries)
    }

    /// The identities of a file's main contents and of its streams, and whether one
    /// could not be computed.
    fn contents(
        &self,
        fs: &dyn FileSystem,
        node: NodeId,
        e: &Entry,
        start: u64,
    ) -> (Option<ContentId>, Vec<StreamEntry>, bool) {
        let mut bad = false;
        let mut id_of =
            |stream: &str, size: u64| match self.content_id(fs, node, stream, size, start) {
                Ok(id) => Some(id),
                Err(_) => {
                    bad = true;
                    None
                }
            };
        let id = id_of("", e.size);
        let streams = e
            .streams
            .iter()
            .map(|s| StreamEntry {
                name: s.name.clone(),
                size: s.size,
                id: id_of(&s.name, s.size),
            })
            .collect();
        (id, streams, bad)
    }

    /// The content identity of `node`'s `stream` of `size` bytes (see the module notes).
    pub fn content_id(
        &self,
        fs: &dyn FileSystem,
        node: NodeId,
        stream: &str,
        size: u64,
        start: u64,
    ) -> Result<ContentId> {
        let bs = self.bs;
        let map = fs.data_map(node, stream).ok().flatten();
        let blocks = self.chain.len().div_ceil(bs);
        let mut h = blake3::Hasher::new();
        h.update(b"strata content 1\0");
        h.update(&size.to_le_bytes());
        h.update(&bs.to_le_bytes());
        let pieces = size.div_ceil(bs);
        let mut run = 0usize;
        // The plan of one piece, from the data map.
        let mut plan = |p: u64| -> Piece {
            let Some(m) = &map else {
                return Piece::Read;
            };
            let (off, end) = (p * bs, (p + 1) * bs);
            if off >= m.valid {
                return Piece::Zero;
            }
            while run < m.runs.len() && m.runs[run].0.saturating_add(m.runs[run].2) <= off {
                run += 1;
            }
            let Some(&(foff, doff, len)) = m.runs.get(run) else {
                return Piece::Zero;
            };
            if foff >= end {
                return Piece::Zero;
            }
            if end > m.valid || end > size || foff > off || foff.saturating_add(len) < end {
                return Piece::Read;
            }
            let at = start.saturating_add(doff).saturating_add(off - foff);
            if at % bs != 0 || at / bs >= blocks {
                return Piece::Read;
            }
            Piece::Block(at / bs)
        };
        // Pieces are hashed in windows, so that block hashes are looked up a run at a
        // time and reads are large.
        const WINDOW: u64 = 1024;
        let mut buf = Vec::new();
        let mut p = 0;
        while p < pieces {
            let end = (p + WINDOW).min(pieces);
            let plans: Vec<Piece> = (p..end).map(&mut plan).collect();
            let mut i = 0;
            while i < plans.len() {
                let mut j = i + 1;
                match plans[i] {
                    Piece::Zero => {
                        h.update(&self.zero_hash.to_le_bytes());
                    }
                    Piece::Block(b) => {
                        while j < plans.len() && plans[j] == Piece::Block(b + (j - i) as u64) {
                            j += 1;
                        }
                        for s in self.chain.block_states(b, (j - i) as u64)? {
                            let v = match s {
                                BlockState::Zero => self.zero_hash,
                                BlockState::Hash(x) => x,
                            };
                            h.update(&v.to_le_bytes());
                        }
                    }
                    Piece::Read => {
                        while j < plans.len() && plans[j] == Piece::Read {
                            j += 1;
                        }
                        let from = (p + i as u64) * bs;
                        let len = crate::le::usize_of((j - i) as u64 * bs)?;
                        buf.clear();
                        buf.resize(len, 0);
                        let want = crate::le::clamp_len(size - from, len);
                        let mut got = 0;
                        while got < want {
                            let n =
                                fs.read_at(node, stream, from + got as u64, &mut buf[got..want])?;
                            if n == 0 {
                                return Err(Error::damaged_metadata(
                                    "catalog",
                                    None,
                                    format_args!("a file ends {} bytes early", want - got),
                                ));
                            }
                            got += n;
                        }
                        for piece in buf.chunks_exact(crate::le::usize_of(bs)?) {
                            h.update(&xxh3_64(piece).to_le_bytes());
                        }
                    }
                }
                i = j;
            }
            p = end;
        }
        Ok(short(h))
    }
}

fn short(h: blake3::Hasher) -> ContentId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

/// A catalog entry from metadata (identity and streams' identities not yet set).
fn entry(parent: u32, name: String, m: &Metadata) -> Entry {
    Entry {
        parent,
        name,
        kind: m.kind,
        size: m.size,
        allocated: m.allocated,
        ino: m.ino,
        nlink: m.nlink,
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        mtime: m.mtime,
        ctime: m.ctime,
        atime: m.atime,
        crtime: m.crtime,
        id: None,
        streams: m
            .streams
            .iter()
            .map(|s| StreamEntry {
                name: s.name.clone(),
                size: s.size,
                id: None,
            })
            .collect(),
        unreadable: false,
    }
}
