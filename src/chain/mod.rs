//! Backup chains: a full image and the differential/incremental images on top of it,
//! resolved into one read-only virtual disk.
//!
//! Each image answers for its own blocks: stored data, zeros, or (children only) "ask my
//! parent" by leaving the block unmapped. [`Chain::open`] finds the ancestors
//! ([`resolve`]) and overlays their extent tables once, top image winning, into one merged
//! map; afterwards a read costs one binary search whatever the chain length.

pub mod resolve;

use crate::blockdev::BlockDev;
use crate::cache::Cache;
use crate::container::header::ImageKind;
use crate::container::index::{find_run, Extent, ExtentKind, Run};
use crate::container::reader::Image;
use crate::error::{Error, Result};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub use resolve::ResolveOptions;

/// Default ceiling of decompressed chunks a chain keeps in memory (every layer together),
/// for backups and restores; browsing and mounts set their own (`--cache-size`).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// Longest chain accepted (layer numbers are 16-bit).
pub const MAX_CHAIN_LEN: usize = 65_535;

/// One run of the merged map: which layer holds these blocks, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapExtent {
    pub disk_block: u64,
    pub count: u32,
    /// Index into [`Chain::layers`] (0 = the full image).
    pub layer: u16,
    pub kind: ExtentKind,
    pub chunk: u32,
    pub block_in_chunk: u32,
}

impl Run for MapExtent {
    fn start(&self) -> u64 {
        self.disk_block
    }
    fn end(&self) -> u64 {
        MapExtent::end(self)
    }
    fn data(&self) -> Option<(u32, u32)> {
        (self.kind == ExtentKind::Data).then_some((self.chunk, self.block_in_chunk))
    }
}

impl MapExtent {
    fn from_extent(e: &Extent, layer: u16) -> MapExtent {
        MapExtent {
            disk_block: e.disk_block,
            count: e.count,
            layer,
            kind: e.kind,
            chunk: e.chunk,
            block_in_chunk: e.block_in_chunk,
        }
    }
    /// One past the last block.
    pub fn end(&self) -> u64 {
        self.disk_block + u64::from(self.count)
    }
    /// The part of this run from `start` to `end` (blocks), keeping the chunk offset right.
    fn slice(&self, start: u64, end: u64) -> MapExtent {
        let skip = (start - self.disk_block) as u32;
        MapExtent {
            disk_block: start,
            count: (end - start) as u32,
            block_in_chunk: if self.kind == ExtentKind::Data {
                self.block_in_chunk + skip
            } else {
                0
            },
            ..*self
        }
    }
}

/// `upper` laid over `lower`: both sorted and non-overlapping; where both have a run,
/// `upper` wins. Linear in the two lengths.
pub fn overlay(lower: &[MapExtent], upper: &[MapExtent]) -> Vec<MapExtent> {
    let mut out = Vec::with_capacity(lower.len() + upper.len());
    let mut j = 0;
    for l in lower {
        let (mut at, end) = (l.disk_block, l.end());
        while at < end {
            while j < upper.len() && upper[j].end() <= at {
                out.push(upper[j]);
                j += 1;
            }
            match upper.get(j) {
                // `u` covers `at`; it is emitted once `at` has passed it.
                Some(u) if u.disk_block <= at => at = u.end(),
                next => {
                    let stop = next.map_or(end, |u| u.disk_block.min(end));
                    out.push(l.slice(at, stop));
                    at = stop;
                }
            }
        }
    }
    out.extend_from_slice(&upper[j..]);
    out
}

/// [`Chain::merge`] over layers whose runs `runs(i)` gives.
fn merge_runs(runs: &dyn Fn(usize) -> Vec<MapExtent>, lo: usize, hi: usize) -> Vec<MapExtent> {
    if lo == hi {
        return runs(lo);
    }
    let mid = lo + (hi - lo) / 2;
    overlay(&merge_runs(runs, lo, mid), &merge_runs(runs, mid + 1, hi))
}

/// What a block holds at a chain point, for change detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// Reads as zeros.
    Zero,
    /// Stored data with this xxh3-64 block hash.
    Hash(u64),
}

/// Chunk reads waiting for the prefetch threads; more hints than this are dropped.
const PREFETCH_QUEUE: usize = 32;

/// The images and the cache of their decompressed chunks (which the filesystems read
/// through the chain share for their decoded units): what the prefetch threads share.
struct Store {
    layers: Vec<Image>,
    cache: Arc<Cache>,
}

impl Store {
    fn chunk(&self, layer: u16, chunk: u32) -> Result<Arc<[u8]>> {
        self.cache.chunk(layer, chunk, || {
            let img = &self.layers[layer as usize];
            img.load_chunk(chunk).map_err(|e| img.chunk_error(chunk, e))
        })
    }

    /// Decompresses chunk `chunk` of layer `layer` into the cache ahead of a read. From a
    /// bucket, the chunks after it in the same image, of the same kind, that nobody holds
    /// or is loading come in the same request (a mounted read of a big file made one
    /// request per chunk).
    fn prefetch(&self, layer: u16, chunk: u32) {
        let img = &self.layers[layer as usize];
        if !img.is_remote() {
            // A damaged chunk fails again, with its message, when it is read.
            let _ = self.chunk(layer, chunk);
            return;
        }
        let most = img.run_len(
            chunk,
            crate::storage::REMOTE_RUN_CHUNKS,
            crate::storage::REMOTE_RUN_BYTES,
        );
        let most = (1..most)
            .find(|&k| img.is_metadata_chunk(chunk + k) != img.is_metadata_chunk(chunk))
            .unwrap_or(most);
        self.cache.chunk_run(layer, chunk, most, |n| {
            img.load_run(chunk, n).into_iter().map(|r| r.ok()).collect()
        });
    }
}

/// Threads that decompress the chunks after a sequential read into the cache before they
/// are asked for, so that other cores work while the reader copies. (Hints for the
/// directories a walk lists next were tried on ext: the walk got there first.)
struct Prefetcher {
    queue: std::sync::mpsc::SyncSender<(u16, u32)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Prefetch threads: two, so that decompression of a sequential read is not bound to one
/// core while the reader copies.
const PREFETCH_THREADS: usize = 2;
/// Chunks read ahead in a chain with an image in a bucket (by
/// [`crate::storage::REMOTE_READERS`] threads): requests wait on the network, so more of
/// them run at once, and further ahead.
const REMOTE_READ_AHEAD: u64 = 8;

/// A resolved chain: images from the full one (index 0) to the point that was opened.
pub struct Chain {
    store: Arc<Store>,
    /// Each layer's first block-hash number per chunk.
    first_hash: Vec<Vec<u64>>,
    map: Vec<MapExtent>,
    /// Started by [`Chain::enable_prefetch`] (browsing and mounts, not backups).
    prefetcher: OnceLock<Prefetcher>,
    /// Where the last reads ended: a read starting at one of them is taken as sequential.
    /// Several, because reading a file also reads its metadata in between (NTFS reads
    /// the file record again for each read) and several files may be read at once.
    last_ends: [AtomicU64; 4],
    next_end: AtomicU64,
}

impl Drop for Chain {
    fn drop(&mut self) {
        // So that the images are closed when this returns.
        self.stop_prefetch();
    }
}

impl Chain {
    /// Opens the image at `path` and all its ancestors.
    pub fn open(path: &Path, opts: &ResolveOptions) -> Result<Chain> {
        Chain::from_layers(resolve::resolve(path, opts)?)
    }

    /// Builds the chain from images ordered full first; each must be the parent of the next
    /// ([`resolve::check_link`] has been applied by the resolver).
    pub fn from_layers(layers: Vec<Image>) -> Result<Chain> {
        assert!(!layers.is_empty());
        if layers.len() > MAX_CHAIN_LEN {
            return Err(Error::Invalid(format!(
                "{}: chain of {} images is longer than the {MAX_CHAIN_LEN} supported",
                layers[layers.len() - 1].path().display(),
                layers.len()
            )));
        }
        if layers[0].header().kind != ImageKind::Full {
            return Err(Error::Invalid(format!(
                "{}: a chain must start with a full image",
                layers[0].path().display()
            )));
        }
        let map = Self::merge(&layers, 0, layers.len() - 1);
        let first_hash = layers
            .iter()
            .map(|l| l.index().first_block_hashes(l.header().block_size))
            .collect();
        let chunk = u64::from(layers[0].header().chunk_size);
        Ok(Chain {
            store: Arc::new(Store {
                layers,
                cache: Arc::new(Cache::new(DEFAULT_CACHE_BYTES, chunk)),
            }),
            first_hash,
            map,
            prefetcher: OnceLock::new(),
            last_ends: Default::default(),
            next_end: AtomicU64::new(0),
        })
    }

    /// The chain's images, full first, to build another chain on (the point written on
    /// top of this one): opening them again would read and check every layer twice.
    pub fn into_layers(mut self) -> Vec<Image> {
        self.stop_prefetch();
        let empty = Arc::new(Store {
            layers: Vec::new(),
            cache: Arc::new(Cache::new(1, 1)),
        });
        match Arc::try_unwrap(std::mem::replace(&mut self.store, empty)) {
            Ok(store) => store.layers,
            // The prefetch threads, joined above, held the only other references.
            Err(_) => unreachable!("a chain's store is shared only with its prefetch threads"),
        }
    }

    /// Stops the prefetch threads, if started, and waits for them: they hold the images.
    fn stop_prefetch(&mut self) {
        if let Some(p) = self.prefetcher.take() {
            drop(p.queue);
            for t in p.threads {
                let _ = t.join();
            }
        }
    }

    /// Opens the image at `path` and its ancestors with a ceiling of `cache_bytes` of
    /// decoded data kept in memory for the whole chain (every layer's chunks together,
    /// and the units of the filesystems opened with [`Chain::cache`]).
    pub fn open_with_cache(path: &Path, opts: &ResolveOptions, cache_bytes: u64) -> Result<Chain> {
        let mut chain = Chain::open(path, opts)?;
        let chunk = chain.chunk_bytes();
        Arc::get_mut(&mut chain.store)
            .expect("not shared yet")
            .cache = Arc::new(Cache::new(cache_bytes, chunk));
        Ok(chain)
    }

    /// Starts the prefetch threads (once). Worth it where files are read, as
    /// browsing and mounts do; a backup reads each chunk once and gains nothing.
    pub fn enable_prefetch(&self) {
        if self.prefetcher.get().is_some() {
            return;
        }
        let (queue, rx) = std::sync::mpsc::sync_channel::<(u16, u32)>(PREFETCH_QUEUE);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let n = if self.is_remote() {
            crate::storage::REMOTE_READERS
        } else {
            PREFETCH_THREADS
        };
        let threads = (0..n)
            .filter_map(|_| {
                let (store, rx) = (self.store.clone(), rx.clone());
                std::thread::Builder::new()
                    .name("strata-prefetch".into())
                    .spawn(move || loop {
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((layer, chunk)) = next else { break };
                        store.prefetch(layer, chunk);
                    })
                    .ok()
            })
            .collect::<Vec<_>>();
        if !threads.is_empty() {
            let _ = self.prefetcher.set(Prefetcher { queue, threads });
        }
    }

    /// Bytes of disk one chunk of the full image holds.
    fn chunk_bytes(&self) -> u64 {
        u64::from(self.store.layers[0].header().chunk_size)
    }

    /// Queues the chunks holding disk bytes `offset..offset + len` that are not cached
    /// yet for the prefetch threads, if there are any.
    fn hint(&self, offset: u64, len: u64) {
        let Some(p) = self.prefetcher.get() else {
            return;
        };
        let bs = u64::from(self.block_size());
        let (first, end) = (offset / bs, offset.saturating_add(len).div_ceil(bs));
        let start = self.find(first).unwrap_or_else(|next| next);
        // Only chunks of the kind the read came from: `create` packs filesystem metadata
        // into chunks smaller than the image's chunk size, and a walk reading directory
        // blocks one after another must not decompress the file contents next to them.
        let small = |e: &MapExtent| self.store.layers[e.layer as usize].is_metadata_chunk(e.chunk);
        let from = offset
            .checked_sub(1)
            .and_then(|b| self.find(b / bs).ok())
            .map(|i| self.map[i])
            .filter(|e| e.kind == ExtentKind::Data)
            .map(|e| small(&e));
        let mut last = None;
        for e in self.map[start..].iter().take_while(|e| e.disk_block < end) {
            let key = (e.layer, e.chunk);
            if e.kind != ExtentKind::Data
                || last == Some(key)
                || from.is_some_and(|s| s != small(e))
            {
                continue;
            }
            last = Some(key);
            if !self.store.cache.has_chunk(key.0, key.1) && p.queue.try_send(key).is_err() {
                break;
            }
        }
    }

    /// The chain's cache of decoded data, for the filesystems read through it
    /// ([`Cache::units`]), so that one ceiling bounds chunks and units together.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.store.cache
    }

    /// Lowers (or raises) the cache ceiling of an open chain, dropping what is over it.
    pub fn set_cache_bytes(&self, bytes: u64) {
        self.store.cache.set_capacity(bytes);
    }

    /// Bytes of decoded data held now (at most the ceiling).
    pub fn cache_bytes_held(&self) -> u64 {
        self.store.cache.bytes_held()
    }

    /// Chunks read and decompressed so far, that is reads the cache could not answer.
    pub fn cache_misses(&self) -> u64 {
        self.store.cache.chunk_loads()
    }

    /// The merged map of layers `lo..=hi` alone (top wins). Halves are merged and laid
    /// one over the other, so each run is copied about log2(n) times: folding one layer at
    /// a time copied the growing map once per layer, quadratic in a long chain.
    pub fn merge(layers: &[Image], lo: usize, hi: usize) -> Vec<MapExtent> {
        merge_runs(
            &|i| {
                layers[i]
                    .index()
                    .extents
                    .iter()
                    .map(|e| MapExtent::from_extent(e, i as u16))
                    .collect()
            },
            lo,
            hi,
        )
    }

    /// The images, full first; the last is the point this chain reads.
    /// Whether any image of the chain is in a bucket ([`Image::is_remote`]).
    pub fn is_remote(&self) -> bool {
        self.store.layers.iter().any(Image::is_remote)
    }

    pub fn layers(&self) -> &[Image] {
        &self.store.layers
    }

    /// The image that was opened (the chain point).
    pub fn top(&self) -> &Image {
        self.store.layers.last().expect("non-empty")
    }

    /// The merged map.
    pub fn map(&self) -> &[MapExtent] {
        &self.map
    }

    /// Logical sector size of the disk, as its image header records it (partition tables
    /// count in sectors).
    pub fn sector_size(&self) -> u32 {
        self.top().header().sector_size
    }

    /// Block size shared by every layer.
    pub fn block_size(&self) -> u32 {
        self.store.layers[0].header().block_size
    }

    /// Position of the run holding `block`, or of the first run after it (`Err`).
    fn find(&self, block: u64) -> std::result::Result<usize, usize> {
        find_run(&self.map, block)
    }

    /// Decompressed chunk `chunk` of layer `layer`, through the chain's cache.
    pub fn chunk(&self, layer: u16, chunk: u32) -> Result<Arc<[u8]>> {
        self.store.chunk(layer, chunk)
    }

    /// States of blocks `first..first + count` at this chain point.
    pub fn block_states(&self, first: u64, count: u64) -> Result<Vec<BlockState>> {
        let end = first + count;
        let start = match self.find(first) {
            Ok(i) | Err(i) => i,
        };
        let runs = || {
            self.map[start..]
                .iter()
                .take_while(move |e| e.disk_block < end)
                .filter(|e| e.kind == ExtentKind::Data)
        };
        // Hash numbers of `b..b + n` inside run `e`.
        let hashes_of = |e: &MapExtent, b: u64, n: u64| {
            let at = self.first_hash[e.layer as usize][e.chunk as usize]
                + u64::from(e.block_in_chunk)
                + (b - e.disk_block);
            (at, at + n)
        };
        // Each layer's hashes in one read: the range from the first to the last one
        // needed, where that range is not much more than what is needed. A range of a full
        // image cut into pieces by the children's runs (a long chain) then costs one read,
        // not one per piece.
        let mut spans: std::collections::HashMap<u16, (u64, u64, u64)> = Default::default();
        for e in runs() {
            let (b, stop) = (e.disk_block.max(first), e.end().min(end));
            let (a, z) = hashes_of(e, b, stop - b);
            let s = spans.entry(e.layer).or_insert((a, z, 0));
            *s = (s.0.min(a), s.1.max(z), s.2 + (z - a));
        }
        let mut read: std::collections::HashMap<u16, (u64, Vec<u64>)> = Default::default();
        for (&layer, &(a, z, needed)) in &spans {
            if z - a <= needed.saturating_mul(2).max(64) {
                read.insert(
                    layer,
                    (a, self.store.layers[layer as usize].block_hashes(a, z - a)?),
                );
            }
        }
        let mut out = Vec::with_capacity(count as usize);
        let mut b = first;
        while b < end {
            match self.find(b) {
                Ok(i) => {
                    let e = self.map[i];
                    let n = e.end().min(end) - b;
                    if e.kind == ExtentKind::Data {
                        let (at, stop) = hashes_of(&e, b, n);
                        match read.get(&e.layer) {
                            Some((base, h)) => out.extend(
                                h[(at - base) as usize..(stop - base) as usize]
                                    .iter()
                                    .map(|&x| BlockState::Hash(x)),
                            ),
                            None => {
                                let hashes =
                                    self.store.layers[e.layer as usize].block_hashes(at, n)?;
                                out.extend(hashes.into_iter().map(BlockState::Hash));
                            }
                        }
                    } else {
                        out.extend(std::iter::repeat_n(BlockState::Zero, n as usize));
                    }
                    b += n;
                }
                Err(next) => {
                    let stop = self.map.get(next).map_or(end, |e| e.disk_block.min(end));
                    out.extend(std::iter::repeat_n(BlockState::Zero, (stop - b) as usize));
                    b = stop;
                }
            }
        }
        Ok(out)
    }

    /// Runs of blocks in `first..end` that hold stored data at this point (zeros elsewhere).
    pub fn data_runs(&self, first: u64, end: u64) -> Vec<(u64, u64)> {
        let start = match self.find(first) {
            Ok(i) | Err(i) => i,
        };
        self.map[start..]
            .iter()
            .take_while(|e| e.disk_block < end)
            .filter(|e| e.kind == ExtentKind::Data)
            .map(|e| (e.disk_block.max(first), e.end().min(end)))
            .filter(|(a, b)| a < b)
            .collect()
    }
}

impl BlockDev for Chain {
    fn len(&self) -> u64 {
        self.top().header().disk_size
    }

    /// Reads the disk as it was at this point. A damaged chunk fails only the reads that
    /// touch it, naming the image it is in.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let disk = self.len();
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > disk)
        {
            return Err(Error::Invalid(format!(
                "{}: read of {} bytes at {offset} is past the end of the disk ({disk} bytes)",
                self.top().path().display(),
                buf.len()
            )));
        }
        if self.prefetcher.get().is_some() {
            // Sequential: have the next two chunks' worth decompressed meanwhile.
            let end = offset + buf.len() as u64;
            let n = self.last_ends.len() as u64;
            match self
                .last_ends
                .iter()
                .find(|e| offset != 0 && e.load(Ordering::Relaxed) == offset)
            {
                Some(e) => {
                    e.store(end, Ordering::Relaxed);
                    let ahead = if self.is_remote() {
                        REMOTE_READ_AHEAD
                    } else {
                        2
                    };
                    self.hint(end, ahead * self.chunk_bytes());
                }
                None => {
                    let slot = self.next_end.fetch_add(1, Ordering::Relaxed) % n;
                    self.last_ends[slot as usize].store(end, Ordering::Relaxed);
                }
            }
        }
        read_runs(&self.map, self.block_size(), offset, buf, |(c, e)| {
            self.chunk(e.layer, c)
        })
    }

    /// The point in time this chain stands for: its top image's creation.
    fn created(&self) -> Option<crate::fs::browse::Time> {
        let h = self.top().header();
        Some(crate::fs::browse::Time {
            secs: h.created_unix,
            nanos: h.created_nanos.min(999_999_999),
        })
    }
}

/// Fills `buf` with disk bytes from `offset` out of a sorted run list: stored runs are
/// copied from their chunk (`chunk((chunk, run))` loads it), everything else is zeros.
/// The caller has checked that the read lies inside the disk.
fn read_runs<R: Run>(
    runs: &[R],
    block_size: u32,
    offset: u64,
    buf: &mut [u8],
    chunk: impl Fn((u32, &R)) -> Result<Arc<[u8]>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(b: u64, n: u32, layer: u16) -> MapExtent {
        MapExtent {
            disk_block: b,
            count: n,
            layer,
            kind: ExtentKind::Data,
            chunk: layer as u32,
            block_in_chunk: b as u32,
        }
    }

    /// Which layer answers for each of the first `len` blocks (None = unmapped).
    fn owners(map: &[MapExtent], len: u64) -> Vec<Option<(u16, u32)>> {
        (0..len)
            .map(|b| {
                map.iter()
                    .find(|e| e.disk_block <= b && b < e.end())
                    .map(|e| (e.layer, e.block_in_chunk + (b - e.disk_block) as u32))
            })
            .collect()
    }

    #[test]
    fn overlay_matches_a_block_by_block_model() {
        let lower = vec![run(0, 10, 0), run(12, 3, 0), run(20, 30, 0)];
        let upper = vec![run(2, 2, 1), run(9, 5, 1), run(25, 1, 1), run(49, 3, 1)];
        let got = overlay(&lower, &upper);
        // Sorted and non-overlapping.
        for w in got.windows(2) {
            assert!(w[0].end() <= w[1].disk_block, "{got:?}");
        }
        let model: Vec<_> = (0..60u64)
            .map(|b| {
                upper
                    .iter()
                    .chain(lower.iter())
                    .find(|e| e.disk_block <= b && b < e.end())
                    .map(|e| (e.layer, e.block_in_chunk + (b - e.disk_block) as u32))
            })
            .collect();
        assert_eq!(owners(&got, 60), model);
    }

    #[test]
    fn merging_many_layers_matches_a_block_by_block_model() {
        // 37 layers of pseudo-random runs (an odd count, so the halves differ in size).
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let layers: Vec<Vec<MapExtent>> = (0..37u16)
            .map(|l| {
                let mut v = Vec::new();
                let mut b = next(20);
                while b < 400 {
                    let n = 1 + next(if l == 0 { 200 } else { 6 }) as u32;
                    let mut r = run(b, n, l);
                    r.block_in_chunk = next(1000) as u32;
                    v.push(r);
                    b += u64::from(n) + next(if l == 0 { 3 } else { 40 });
                }
                v
            })
            .collect();
        let got = merge_runs(&|i| layers[i].clone(), 0, layers.len() - 1);
        for w in got.windows(2) {
            assert!(w[0].end() <= w[1].disk_block, "{got:?}");
        }
        // Block by block, the newest of `layers` that maps each block.
        let model = |layers: &[Vec<MapExtent>]| -> Vec<_> {
            (0..450u64)
                .map(|b| {
                    layers
                        .iter()
                        .rev()
                        .flatten()
                        .find(|e| e.disk_block <= b && b < e.end())
                        .map(|e| (e.layer, e.block_in_chunk + (b - e.disk_block) as u32))
                })
                .collect()
        };
        assert_eq!(owners(&got, 450), model(&layers));
        // A sub-range of layers, as consolidation merges them.
        let part = merge_runs(&|i| layers[i].clone(), 5, 20);
        assert_eq!(owners(&part, 450), model(&layers[5..=20]));
    }

    #[test]
    fn overlay_with_empty_sides() {
        let a = vec![run(3, 4, 0)];
        assert_eq!(overlay(&a, &[]), a);
        assert_eq!(overlay(&[], &a), a);
    }
}
