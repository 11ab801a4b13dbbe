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
//! The filesystems' metadata is read from the image (its metadata chunks are small and
//! stay decompressed in the chain's cache). While `create` writes an image, the file
//! pieces that must be read are read from the source disk, which was just read and sits in
//! the page cache, and each block read there is used only if its hash equals the image's
//! ([`Builder::read_disk`]); otherwise the image is read. The catalog therefore always
//! describes the image, even when the source changed since.

use super::delta::{Delta, DeltaVolume, MAX_WRITTEN_DEPTH};
use super::{Catalog, ContentId, Entry, StreamEntry, Volume, ROOT_PARENT};
use crate::blockdev::{is_zero, BlockDev};
use crate::chain::{BlockState, Chain};
use crate::error::{Error, Result};
use crate::fs::browse::{DataMap, FileSystem, Metadata, NodeId, NodeKind};
use crate::ranges::Ranges;
use crate::vfs::Vfs;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

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

/// Blocks per page of the block-state cache: 2 MiB of disk at 4 KiB blocks.
const STATE_PAGE: u64 = 512;
/// Pages the cache holds before it starts again (about 32 MiB).
const STATE_PAGES: usize = 4096;

/// Block states of a point by page of [`STATE_PAGE`] blocks, read from the chain once.
#[derive(Default)]
struct StateCache(std::sync::Mutex<HashMap<u64, Arc<[BlockState]>>>);

impl StateCache {
    /// The states of blocks `first..first + n` (inside the disk) of `chain`'s point.
    fn get(&self, chain: &Chain, first: u64, n: u64) -> Result<Vec<BlockState>> {
        let blocks = chain.len().div_ceil(u64::from(chain.block_size()));
        let mut out = Vec::with_capacity(crate::le::usize_of(n)?);
        let mut b = first;
        while b < first + n {
            let page = b / STATE_PAGE;
            let cached = self.lock().get(&page).cloned();
            let states = match cached {
                Some(s) => s,
                None => {
                    let at = page * STATE_PAGE;
                    let s: Arc<[BlockState]> =
                        chain.block_states(at, STATE_PAGE.min(blocks - at))?.into();
                    let mut map = self.lock();
                    if map.len() >= STATE_PAGES {
                        map.clear();
                    }
                    map.insert(page, s.clone());
                    s
                }
            };
            let from = crate::le::usize_of(b - page * STATE_PAGE)?;
            let take = crate::le::clamp_len(first + n - b, states.len() - from);
            out.extend_from_slice(&states[from..from + take]);
            b += take as u64;
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<[BlockState]>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A [`Builder`]'s chain, source and source-only flag, to be sent to another thread.
#[derive(Clone)]
struct Seed(Arc<Chain>, Option<Arc<SourceDev>>, Option<Arc<AtomicBool>>);

/// Computes catalogs for one chain point.
pub struct Builder {
    chain: Arc<Chain>,
    /// The point's disk read from the source where it agrees with the point (shared by
    /// the builder's threads, with the source windows it has read and checked).
    source: Option<Arc<SourceDev>>,
    /// Set when every read must come from the source (the point's own chunks cannot be read
    /// yet, as while it is uploaded): records that a read could not be, which fails the
    /// whole catalog rather than leave entries out of it.
    only_source: Option<Arc<AtomicBool>>,
    bs: u64,
    zero_hash: u64,
    /// Block states of the point by page: files sit close together, so neighbouring
    /// lookups share a page and the hash tables are read a page at a time, not per file.
    states: StateCache,
    /// The previous point's catalog, which entries nothing changed are taken from.
    previous: Option<Arc<Previous>>,
}

/// The catalog of the point a new point was made from (its parent), and what differs:
/// a catalog built from it reads again only what the changed blocks touch.
pub struct Previous {
    pub catalog: Arc<Catalog>,
    /// The image whose catalog it is, and how many changes it was stored through.
    pub image: [u8; 16],
    pub depth: u32,
    /// Disk byte ranges the new point holds on its own (everything else reads as in the
    /// previous point).
    pub changed: Ranges,
    /// Disk byte ranges the new point's filesystems use; None when not known (every
    /// changed range then counts).
    pub used: Option<Ranges>,
}

impl Previous {
    /// `catalog` (volumes of which `from` says, for each, the previous volume and entry
    /// each entry stems from) as a change to this one; None when a whole catalog is due.
    fn change_to(&self, catalog: &Catalog, from: &[Option<(u32, Vec<u32>)>]) -> Option<Delta> {
        let depth = self.depth.checked_add(1)?;
        if depth > MAX_WRITTEN_DEPTH {
            return None;
        }
        let volumes = catalog
            .volumes
            .iter()
            .zip(from)
            .map(|(v, f)| match f {
                Some((b, stems)) => match self.catalog.volumes.get(*b as usize) {
                    Some(base) => DeltaVolume::changes(v, base, *b, stems),
                    None => DeltaVolume::Whole(v.clone()),
                },
                None => DeltaVolume::Whole(v.clone()),
            })
            .collect();
        Some(Delta {
            base: self.image,
            depth,
            block_size: catalog.block_size,
            volumes,
        })
    }
}

/// A catalog as built.
pub struct Built {
    pub catalog: Catalog,
    pub stats: BuildStats,
    /// With a previous catalog: the bytes of this one stored as a change to it.
    pub change: Option<Vec<u8>>,
}

/// How a catalog was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Entries in the catalog.
    pub entries: u64,
    /// Entries read from the filesystems (the others were taken from the previous
    /// point's catalog).
    pub read: u64,
}

impl Builder {
    /// A builder for the point `chain` ends at; `source`, when given, is the disk that
    /// point was just made from (read where it agrees with the point).
    pub fn new(chain: Arc<Chain>, source: Option<Arc<dyn BlockDev>>) -> Builder {
        let source = source.map(|s| Arc::new(SourceDev::new(chain.clone(), s, None)));
        Builder::with_source(chain, source, None)
    }

    fn with_source(
        chain: Arc<Chain>,
        source: Option<Arc<SourceDev>>,
        only_source: Option<Arc<AtomicBool>>,
    ) -> Builder {
        let bs = u64::from(chain.block_size());
        Builder {
            chain,
            source,
            only_source,
            bs,
            zero_hash: zero_hash(bs),
            states: StateCache::default(),
            previous: None,
        }
    }

    /// Builds from `previous` where the filesystem can tell what changed since (ext and
    /// NTFS); a filesystem it cannot is walked whole.
    pub fn with_previous(mut self, previous: Previous) -> Builder {
        self.previous = Some(Arc::new(previous));
        self
    }

    /// A builder for the point `chain` ends at, whose own chunks cannot be read: every byte
    /// comes from `source`, the disk it was just made from, where it agrees with the
    /// point's block hashes; [`Builder::build`] fails if any byte did not.
    pub fn from_source_only(chain: Arc<Chain>, source: Arc<dyn BlockDev>) -> Builder {
        let missed = Arc::new(AtomicBool::new(false));
        let source = SourceDev::new(chain.clone(), source, Some(missed.clone()));
        Builder::with_source(chain, Some(Arc::new(source)), Some(missed))
    }

    /// What another thread needs to make a builder of the same point ([`Builder::sibling`]);
    /// the block-state cache is not shared.
    fn seed(&self) -> Seed {
        Seed(
            self.chain.clone(),
            self.source.clone(),
            self.only_source.clone(),
        )
    }

    fn sibling(seed: Seed) -> Builder {
        Builder::with_source(seed.0, seed.1, seed.2)
    }

    /// The states of blocks `first..first + n` (inside the disk).
    fn block_states(&self, first: u64, n: u64) -> Result<Vec<BlockState>> {
        self.states.get(&self.chain, first, n)
    }

    /// Reads disk bytes of the point: from the source where each block read there has the
    /// point's hash (or is zero where the point has zeros), else from the image.
    ///
    /// Not through [`SourceDev`]'s windows: these are the partial blocks of files, one or
    /// two per file and rarely next to each other, where a window would read 16 blocks to
    /// use one.
    fn read_disk(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        let (Some(src), false) = (&self.source, buf.is_empty() || end > self.chain.len()) else {
            return self.chain.read_at(offset, buf);
        };
        src.read_checked(offset, buf, |f, n| self.block_states(f, n))
    }

    /// Reads bytes `from..from + buf.len()` of a file laid out as `map` says, the file's
    /// filesystem starting at byte `start` of the disk: holes and bytes past the
    /// initialized size are zeros.
    fn read_mapped(&self, map: &DataMap, start: u64, from: u64, buf: &mut [u8]) -> Result<()> {
        buf.fill(0);
        let end = (from + buf.len() as u64).min(map.valid);
        for &(foff, doff, len) in &map.runs {
            let (a, b) = (foff.max(from), foff.saturating_add(len).min(end));
            if a >= b {
                continue;
            }
            let at = start.saturating_add(doff).saturating_add(a - foff);
            let lo = crate::le::usize_of(a - from)?;
            let hi = crate::le::usize_of(b - from)?;
            self.read_disk(at, &mut buf[lo..hi])?;
        }
        Ok(())
    }

    /// Walks every filesystem of the point. Fails only when the partition table cannot be
    /// read; a filesystem or entry that cannot be read is left out or marked unreadable.
    pub fn build(&self) -> Result<Catalog> {
        self.build_with_stats().map(|b| b.catalog)
    }

    /// As [`Builder::build`], with how many entries were read and, with a previous
    /// catalog, the catalog as a change to it.
    pub fn build_with_stats(&self) -> Result<Built> {
        // With the source at hand, the filesystems' metadata is read from it where it
        // agrees with the point: a read of the page cache and a hash per block, where the
        // image would decompress a chunk for each inode or directory block a walk of
        // changed records reaches.
        let dev: Arc<dyn BlockDev> = match &self.source {
            Some(source) => source.clone(),
            None => self.chain.clone(),
        };
        let vfs = Vfs::open(dev, self.chain.sector_size(), self.chain.cache())?;
        // Each filesystem is walked on its own thread: the walks read different parts of
        // the disk and share nothing but the chain's cache.
        let previous = self
            .previous
            .as_deref()
            .filter(|p| p.catalog.block_size == self.chain.block_size());
        let walks: Vec<Result<(Volume, Walked, Option<u32>)>> = std::thread::scope(|s| {
            crate::threads::join_all(
                vfs.mounts()
                    .iter()
                    .filter_map(|m| Some((m, m.fs.as_ref().ok()?, m.kind?)))
                    .map(|(m, fs, kind)| {
                        let seed = self.seed();
                        let before = previous.and_then(|p| {
                            let mut v = p.catalog.volumes.iter().enumerate();
                            let (i, v) =
                                v.find(|(_, v)| v.name == m.name && v.fs == kind.name())?;
                            Some((p, u32::try_from(i).ok()?, v))
                        });
                        s.spawn(move || {
                            let b = Builder::sibling(seed);
                            let from = match before {
                                Some((p, _, v)) => {
                                    match b.walk_from(&**fs, m.start, m.size, v, p) {
                                        Err(Error::Interrupted) => return Err(Error::Interrupted),
                                        // Anything the shortcut cannot follow is walked whole.
                                        r => r.ok().flatten(),
                                    }
                                }
                                None => None,
                            };
                            let mut walked = match from {
                                Some(done) => done,
                                None => b.walk(&**fs, m.start, None)?,
                            };
                            let volume = Volume {
                                name: m.name.clone(),
                                fs: kind.name().to_string(),
                                entries: std::mem::take(&mut walked.entries),
                            };
                            Ok((volume, walked, before.map(|(_, i, _)| i)))
                        })
                    })
                    .collect(),
            )
        });
        let mut stats = BuildStats::default();
        let mut volumes = Vec::new();
        let mut from = Vec::new();
        for w in walks {
            let (v, walked, base) = w?;
            stats.entries += v.entries.len() as u64;
            stats.read += walked.read;
            volumes.push(v);
            from.push(base.zip(walked.from));
        }
        if let Some(missed) = &self.only_source {
            if missed.load(Ordering::Relaxed) {
                return Err(source_changed(missed));
            }
        }
        let catalog = Catalog {
            block_size: self.chain.block_size(),
            volumes,
        };
        let change = match previous {
            Some(p) if from.iter().any(Option::is_some) => {
                p.change_to(&catalog, &from).map(|d| d.encode())
            }
            _ => None,
        };
        Ok(Built {
            catalog,
            stats,
            change,
        })
    }

    /// Every entry of `fs` (at byte `start` of the device), parents before children, with
    /// the number of entries read: all of them, but those `reuse` takes from the previous
    /// point's catalog.
    fn walk(&self, fs: &dyn FileSystem, start: u64, reuse: Option<&Reuse>) -> Result<Walked> {
        let same = |node: NodeId| reuse.and_then(|r| r.same(node));
        // The previous entry each new one stems from (the same node; for a kept listing,
        // the same name in it), for storing the catalog as a change.
        let stem = |node: NodeId| reuse.and_then(|r| r.index_of(node)).unwrap_or(u32::MAX);
        let root = fs.root();
        let mut read = 0u64;
        let mut from = vec![stem(root)];
        let mut entries = vec![match same(root) {
            Some(e) => e.clone(),
            None => {
                read += 1;
                entry(ROOT_PARENT, String::new(), &fs.metadata(root)?)
            }
        }];
        // About as many entries as before: reserved once, not grown by doubling (each
        // growth copies the entries and touches fresh pages).
        if let Some(r) = reuse {
            let n = r.entries.len() + r.entries.len() / 16;
            entries.reserve(n);
            from.reserve(n);
        }
        let mut stack = vec![(0u32, root)];
        let mut seen = HashSet::from([root]);
        // Regular files, by node: their identities are computed after the walk.
        let mut files: Vec<(NodeId, Vec<usize>)> = Vec::new();
        let mut file_at: HashMap<NodeId, usize> = HashMap::new();
        while let Some((at, dir)) = stack.pop() {
            crate::progress::check_interrupt()?;
            let list = match reuse.and_then(|r| r.listing(dir)) {
                Some(l) => l,
                None => match fs.read_dir(dir) {
                    Ok(l) => l
                        .into_iter()
                        .map(|d| (d.name, d.node, d.kind, stem(d.node)))
                        .collect(),
                    Err(Error::Interrupted) => return Err(Error::Interrupted),
                    Err(_) => {
                        entries[at as usize].unreadable = true;
                        continue;
                    }
                },
            };
            for (name, node, kind, stems_from) in list {
                from.push(stems_from);
                let e = match same(node) {
                    Some(old) => {
                        let mut e = old.clone();
                        (e.parent, e.name) = (at, name.into());
                        e
                    }
                    None => {
                        read += 1;
                        let mut e = match fs.metadata(node) {
                            Ok(m) => entry(at, name, &m),
                            Err(_) => {
                                let mut e = entry(at, name, &Metadata::new(kind, 0));
                                e.unreadable = true;
                                e
                            }
                        };
                        if !e.unreadable {
                            match e.kind {
                                NodeKind::File => {
                                    // Several names of one file share its identity.
                                    let k = *file_at.entry(node).or_insert_with(|| {
                                        files.push((node, Vec::new()));
                                        files.len() - 1
                                    });
                                    files[k].1.push(entries.len());
                                }
                                NodeKind::Symlink => self.link_id(fs, node, &mut e),
                                _ => {}
                            }
                        }
                        e
                    }
                };
                let is_dir = e.kind == NodeKind::Dir;
                let i = u32::try_from(entries.len())
                    .map_err(|_| Error::Invalid("more than 2^32 entries".into()))?;
                entries.push(e);
                if is_dir && seen.insert(node) {
                    stack.push((i, node));
                }
            }
        }
        self.identify(fs, start, &files, &mut entries)?;
        Ok(Walked {
            entries,
            read,
            from: reuse.map(|_| from),
        })
    }

    /// Every entry of `fs` (at byte `start` of the device, `len` bytes), as
    /// [`Builder::walk`] gives them and in the same order, taken from `prev` (the same
    /// volume at the previous point) except where the changes since touch them. None when
    /// the filesystem cannot tell what changed, or when a changed block in use is not
    /// accounted for by the records that changed (a file's contents rewritten without its
    /// record): the volume must then be walked whole.
    fn walk_from(
        &self,
        fs: &dyn FileSystem,
        start: u64,
        len: u64,
        prev: &Volume,
        p: &Previous,
    ) -> Result<Option<Walked>> {
        let window = Ranges::from_unsorted(vec![(start, start.saturating_add(len))]);
        let relative = |r: &Ranges| {
            Ranges::from_unsorted(
                r.intersect(&window)
                    .as_slice()
                    .iter()
                    .map(|&(a, b)| (a - start, b - start))
                    .collect(),
            )
        };
        let changed = relative(&p.changed);
        let Some(changes) = fs.changes(&changed)? else {
            return Ok(None);
        };
        let in_use = match &p.used {
            Some(u) => changed.intersect(&relative(u)),
            None => changed.clone(),
        };
        let mut known: Vec<(u64, u64)> = changes.explained.as_slice().to_vec();
        // Directories whose record changed but whose listing cannot have: kept outside
        // the record, in blocks that did not change.
        let mut kept = HashSet::new();
        for &n in &changes.nodes {
            // A record that no longer holds a file has no blocks in use.
            if let Ok(f) = fs.footprint(n) {
                known.extend_from_slice(f.as_slice());
                if !f.as_slice().iter().any(|&(a, b)| overlaps(&changed, a, b))
                    && !fs.listing_in_record(n)
                {
                    kept.insert(n);
                }
            }
        }
        // A directory's blocks change without its record where the filesystem keeps
        // copies of its children's sizes and times in them (NTFS): such a directory is
        // listed again, its unchanged children still taken from before. The directories
        // of changed records are looked at first; all of them only if that leaves a
        // changed block unaccounted for.
        let mut relist = HashSet::new();
        let mut looked = HashSet::new();
        let mut left = in_use.subtract(&Ranges::from_unsorted(known));
        // Marks the directories among `dirs` whose blocks changed; returns those blocks.
        let mut look = |dirs: &mut dyn Iterator<Item = u64>| -> Result<Ranges> {
            let mut more = Vec::new();
            for ino in dirs {
                if changes.nodes.contains(&ino) || !looked.insert(ino) {
                    continue;
                }
                let f = match fs.footprint(ino) {
                    Ok(f) => f,
                    Err(Error::Interrupted) => return Err(Error::Interrupted),
                    // A directory gone from its record is changed, and in `nodes`.
                    Err(_) => continue,
                };
                if f.as_slice().iter().any(|&(a, b)| overlaps(&in_use, a, b)) {
                    relist.insert(ino);
                    more.extend_from_slice(f.as_slice());
                }
            }
            Ok(Ranges::from_unsorted(more))
        };
        let pe = &prev.entries;
        left = left.subtract(&look(
            &mut pe
                .iter()
                .filter(|e| e.ino.is_some_and(|i| changes.nodes.contains(&i)))
                .filter_map(|e| pe.get(usize::try_from(e.parent).ok()?)?.ino),
        )?);
        if !left.as_slice().is_empty() {
            left = left.subtract(&look(
                &mut pe
                    .iter()
                    .filter(|e| e.kind == NodeKind::Dir)
                    .filter_map(|e| e.ino),
            )?);
        }
        if !left.as_slice().is_empty() {
            return Ok(None);
        }
        let Some(reuse) = Reuse::new(&prev.entries, changes.nodes, relist, kept) else {
            return Ok(None);
        };
        self.walk(fs, start, Some(&reuse)).map(Some)
    }

    /// Sets a symbolic link's identity from its target, or marks it unreadable.
    fn link_id(&self, fs: &dyn FileSystem, node: NodeId, e: &mut Entry) {
        match fs.read_link(node) {
            Ok(t) => {
                let mut h = blake3::Hasher::new();
                h.update(b"strata link 1\0");
                h.update(t.as_bytes());
                e.id = Some(short(h));
            }
            Err(_) => e.unreadable = true,
        }
    }

    /// Sets the content identities of `files` (a node and its entries), on one thread per
    /// core: files in walk order, so that each thread's reads stay close together.
    fn identify(
        &self,
        fs: &dyn FileSystem,
        start: u64,
        files: &[(NodeId, Vec<usize>)],
        entries: &mut [Entry],
    ) -> Result<()> {
        let shared: &[Entry] = entries;
        // Each thread has its own builder: the block-state cache is not shared.
        let seed = self.seed();
        let results = crate::threads::map_parts(files, |part| -> Result<Vec<_>> {
            let b = Builder::sibling(seed.clone());
            let mut out = Vec::with_capacity(part.len());
            for (n, (node, names)) in part.iter().enumerate() {
                if n % 256 == 0 {
                    crate::progress::check_interrupt()?;
                }
                out.push(b.contents(fs, *node, &shared[names[0]], start));
            }
            Ok(out)
        });
        let mut done = files.iter();
        for part in results {
            for (id, streams, bad) in part? {
                let (_, names) = done.next().expect("one result per file");
                for &i in names {
                    let e = &mut entries[i];
                    (e.id, e.streams, e.unreadable) = (id, streams.clone(), bad);
                }
            }
        }
        Ok(())
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
                        for s in self.block_states(b, (j - i) as u64)? {
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
                        if let Some(m) = &map {
                            self.read_mapped(m, start, from, &mut buf[..want])?;
                            got = want;
                        }
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

/// One volume's entries, as a walk leaves them.
struct Walked {
    entries: Vec<Entry>,
    /// Entries read from the filesystem (the others were taken from before).
    read: u64,
    /// With a previous catalog: for each entry, the previous entry it stems from
    /// (`u32::MAX`: none).
    from: Option<Vec<u32>>,
}

/// What a walk takes from the previous point's catalog of a volume.
struct Reuse<'p> {
    entries: &'p [Entry],
    /// Each previous directory's children: they lie together, in listing order.
    kids: Vec<(usize, usize)>,
    /// An entry of each node.
    by_ino: HashMap<u64, usize>,
    /// Nodes read again (their records changed).
    changed: HashSet<NodeId>,
    /// Directories listed again (their blocks changed).
    relist: HashSet<NodeId>,
    /// Directories among `changed` whose listings did not change.
    kept: HashSet<NodeId>,
}

impl<'p> Reuse<'p> {
    /// None when `entries` is not as a walk leaves it (an entry without its inode number,
    /// a directory's children apart).
    fn new(
        entries: &'p [Entry],
        changed: HashSet<NodeId>,
        relist: HashSet<NodeId>,
        kept: HashSet<NodeId>,
    ) -> Option<Reuse<'p>> {
        let mut kids = vec![(0usize, 0usize); entries.len()];
        let mut by_ino = HashMap::with_capacity(entries.len());
        for (j, e) in entries.iter().enumerate() {
            by_ino.entry(e.ino?).or_insert(j);
            if j == 0 {
                continue;
            }
            let k = kids.get_mut(usize::try_from(e.parent).ok()?)?;
            match *k {
                (_, 0) => *k = (j, j + 1),
                (_, end) if end == j => k.1 += 1,
                _ => return None,
            }
        }
        Some(Reuse {
            entries,
            kids,
            by_ino,
            changed,
            relist,
            kept,
        })
    }

    /// The previous entry of `node` when its record did not change.
    fn same(&self, node: NodeId) -> Option<&'p Entry> {
        if self.changed.contains(&node) {
            return None;
        }
        let e = &self.entries[*self.by_ino.get(&node)?];
        (!e.unreadable).then_some(e)
    }

    /// The previous listing of `dir` when nothing of it changed.
    fn listing(&self, dir: NodeId) -> Option<Vec<(String, NodeId, NodeKind, u32)>> {
        let j = *self.by_ino.get(&dir)?;
        let d = &self.entries[j];
        if d.kind != NodeKind::Dir
            || d.unreadable
            || self.relist.contains(&dir)
            || (self.changed.contains(&dir) && !self.kept.contains(&dir))
        {
            return None;
        }
        let (a, b) = self.kids[j];
        (a..b.max(a))
            .map(|k| {
                let e = &self.entries[k];
                Some((e.name.to_string(), e.ino?, e.kind, u32::try_from(k).ok()?))
            })
            .collect()
    }

    /// The index of an entry of `node`.
    fn index_of(&self, node: NodeId) -> Option<u32> {
        u32::try_from(*self.by_ino.get(&node)?).ok()
    }
}

/// Whether `[a, b)` meets any range of `r`.
fn overlaps(r: &Ranges, a: u64, b: u64) -> bool {
    let s = r.as_slice();
    let i = s.partition_point(|&(_, end)| end <= a);
    s.get(i).is_some_and(|&(start, _)| start < b)
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
        name: name.into(),
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
                name: s.name.as_str().into(),
                size: s.size,
                id: None,
            })
            .collect(),
        unreadable: false,
    }
}

/// Fills `buf` with disk bytes from `offset` read from `src`, if every block they touch
/// there has the point's hash (`states` gives them) or is zero where the point has zeros;
/// returns whether it did.
fn read_agreeing(
    src: &dyn BlockDev,
    bs: u64,
    offset: u64,
    buf: &mut [u8],
    states: impl Fn(u64, u64) -> Result<Vec<BlockState>>,
) -> Result<bool> {
    let end = offset.saturating_add(buf.len() as u64);
    let first = offset / bs;
    let n = end.div_ceil(bs) - first;
    let start = first * bs;
    let stop = ((first + n) * bs).min(src.len());
    let mut blocks = vec![0u8; crate::le::usize_of(n * bs)?];
    let got = crate::le::usize_of(stop.saturating_sub(start))?;
    let agrees = src.read_at(start, &mut blocks[..got]).is_ok() && {
        let states = states(first, n)?;
        let bs = crate::le::usize_of(bs)?;
        blocks
            .chunks_exact(bs)
            .zip(&states)
            .all(|(b, s)| agrees_with(b, s))
    };
    if agrees {
        let from = crate::le::usize_of(offset - start)?;
        buf.copy_from_slice(&blocks[from..from + buf.len()]);
    }
    Ok(agrees)
}

/// Whether disk block `b` is what the point holds in its place.
fn agrees_with(b: &[u8], state: &BlockState) -> bool {
    match state {
        BlockState::Zero => is_zero(b),
        BlockState::Hash(h) => xxh3_64(b) == *h,
    }
}

fn source_changed(missed: &AtomicBool) -> Error {
    missed.store(true, Ordering::Relaxed);
    Error::Invalid(
        "the source disk no longer holds what was imaged, and the image cannot be read back \
         while it is uploaded"
            .into(),
    )
}

/// The point's disk read from the source, block by block checked against the point, and
/// from the image where the source no longer agrees; or, while the point's own chunks
/// cannot be read ([`Builder::from_source_only`]), from the source alone.
struct SourceDev {
    chain: Arc<Chain>,
    source: Arc<dyn BlockDev>,
    /// With the source alone: records that a read could not be.
    missed: Option<Arc<AtomicBool>>,
    states: StateCache,
    /// Windows of the source read and checked, by number: a walk reads metadata in small
    /// pieces (an inode, a directory block) next to each other, and each read and hashed
    /// its blocks again (what the chain's chunk cache spares a walk of the image).
    windows: quick_cache::sync::Cache<u64, Arc<Window>>,
}

/// Blocks of the source read and checked together by [`SourceDev`] (64 KiB of 4 KiB blocks).
const WINDOW_BLOCKS: u64 = 16;
/// Windows [`SourceDev`] keeps (32 MiB of 4 KiB blocks).
const KEPT_WINDOWS: usize = 512;

/// Source blocks as read, and for each whether it agrees with the point.
struct Window {
    bytes: Vec<u8>,
    agrees: Vec<bool>,
}

impl SourceDev {
    fn new(
        chain: Arc<Chain>,
        source: Arc<dyn BlockDev>,
        missed: Option<Arc<AtomicBool>>,
    ) -> SourceDev {
        SourceDev {
            chain,
            source,
            missed,
            states: StateCache::default(),
            windows: quick_cache::sync::Cache::new(KEPT_WINDOWS),
        }
    }

    /// Reads `buf` at `offset` (inside the disk) from the source if every block it
    /// touches there agrees with the point (`states` gives their states), else from the
    /// image, or fails with the source alone.
    fn read_checked(
        &self,
        offset: u64,
        buf: &mut [u8],
        states: impl Fn(u64, u64) -> Result<Vec<BlockState>>,
    ) -> Result<()> {
        let bs = u64::from(self.chain.block_size());
        if read_agreeing(&*self.source, bs, offset, buf, states)? {
            return Ok(());
        }
        match &self.missed {
            Some(missed) => Err(source_changed(missed)),
            None => self.chain.read_at(offset, buf),
        }
    }

    /// Window `w` of the source (inside the disk), read and checked once.
    fn window(&self, w: u64, bs: u64) -> Result<Arc<Window>> {
        self.windows.get_or_insert_with(&w, || {
            let first = w * WINDOW_BLOCKS;
            let n = WINDOW_BLOCKS.min(self.chain.len().div_ceil(bs) - first);
            let start = first * bs;
            let stop = ((first + n) * bs).min(self.source.len());
            let mut bytes = vec![0u8; crate::le::usize_of(n * bs)?];
            let got = crate::le::usize_of(stop.saturating_sub(start))?;
            let agrees = if self.source.read_at(start, &mut bytes[..got]).is_ok() {
                let states = self.states.get(&self.chain, first, n)?;
                bytes
                    .chunks_exact(crate::le::usize_of(bs)?)
                    .zip(&states)
                    .map(|(b, s)| agrees_with(b, s))
                    .collect()
            } else {
                // A read error anywhere in the window: its pieces are read on their own.
                vec![false; crate::le::usize_of(n)?]
            };
            Ok(Arc::new(Window { bytes, agrees }))
        })
    }
}

impl BlockDev for SourceDev {
    fn len(&self) -> u64 {
        self.chain.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        if buf.is_empty() {
            return Ok(());
        }
        if end > self.chain.len() {
            return self.chain.read_at(offset, buf);
        }
        let bs = u64::from(self.chain.block_size());
        let span = bs * WINDOW_BLOCKS;
        let blocks = crate::le::usize_of(bs)?;
        let mut pos = offset;
        let mut out = &mut buf[..];
        while !out.is_empty() {
            let win = self.window(pos / span, bs)?;
            let from = crate::le::usize_of(pos % span)?;
            let take = out.len().min(win.bytes.len() - from);
            let (head, rest) = out.split_at_mut(take);
            let agrees = win.agrees[from / blocks..(from + take).div_ceil(blocks)]
                .iter()
                .all(|&a| a);
            if agrees {
                head.copy_from_slice(&win.bytes[from..from + take]);
            } else {
                self.read_checked(pos, head, |f, n| self.states.get(&self.chain, f, n))?;
            }
            out = rest;
            pos += take as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A point's disk read from its source: every read gives the source's bytes where they
    /// agree with the point (across windows, inside blocks, over zero blocks). A read
    /// touching a block that changed after the point gives the image's bytes, or, while
    /// the image cannot be read, is refused and marks the build.
    #[test]
    fn the_source_is_read_where_it_agrees_with_the_point_and_the_image_where_not() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        let mut data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        data[300_000..340_000].fill(0);
        std::fs::write(&disk, &data).unwrap();
        let image = dir.path().join("disk.strata");
        crate::ops::create::create(&crate::ops::create::CreateOptions::new(&disk, &image)).unwrap();
        let imaged = data.clone();
        // Block 122 (bytes 499,712..503,808) changes after the point.
        data[500_000] ^= 1;
        std::fs::write(&disk, &data).unwrap();
        let chain = Arc::new(Chain::open(&image, &Default::default()).unwrap());
        let source = Arc::new(crate::blockdev::file::FileDev::open(&disk).unwrap());
        let missed = Arc::new(AtomicBool::new(false));
        let only_source = SourceDev::new(chain.clone(), source.clone(), Some(missed.clone()));
        let with_image = SourceDev::new(chain, source, None);
        for (at, len) in [
            (0, 100),
            (4_090, 20),
            (65_530, 70_000),
            (300_001, 45_000),
            (503_808, 500_000),
            (1_048_000, 576),
        ] {
            for dev in [&only_source, &with_image] {
                let mut buf = vec![1u8; len];
                dev.read_at(at as u64, &mut buf).unwrap();
                assert!(buf == data[at..at + len], "{len} bytes at {at}");
            }
            assert!(!missed.load(Ordering::Relaxed));
        }
        for (at, len) in [
            (500_000usize, 1),
            (495_000, 5_000),
            (499_712, 4_096),
            (0, 1 << 20),
        ] {
            let mut buf = vec![0u8; len];
            assert!(
                only_source.read_at(at as u64, &mut buf).is_err(),
                "{len} bytes at {at}"
            );
            with_image.read_at(at as u64, &mut buf).unwrap();
            assert!(
                buf == imaged[at..at + len],
                "{len} bytes at {at} from the image"
            );
        }
        assert!(missed.load(Ordering::Relaxed));
    }
}
