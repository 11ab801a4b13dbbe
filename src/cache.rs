//! The one memory cache of decoded data kept while a point in time is read: the chain's
//! decompressed chunks and the filesystems' decoded units (NTFS compression units, WOF
//! chunks), under one ceiling in bytes (`--cache-size`).
//!
//! A [`crate::chain::Chain`] owns it; the filesystems receive a [`Units`] handle through
//! [`crate::vfs::Vfs::open`] and never see the chain. One budget for both means that no
//! share is set aside for compressed files a walk never reads, and that a volume of
//! compressed files can use what the chunks do not need.

use crate::error::Result;
use quick_cache::sync::GuardResult;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a cached buffer is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// Decompressed chunk `chunk` of image `layer` of a chain.
    Chunk { layer: u16, chunk: u32 },
    /// Decoded unit `unit` of stream `stream` (`""` for a file's contents) of file `node`
    /// in the volume that [`Cache::units`] numbered `volume`.
    Unit {
        volume: u64,
        node: u64,
        stream: Box<str>,
        unit: u64,
    },
}

/// Weighs a buffer by its bytes, so that the ceiling is a memory ceiling whatever the
/// chunk size of each image and the unit size of each volume.
#[derive(Clone)]
struct Bytes;

impl quick_cache::Weighter<Key, Arc<[u8]>> for Bytes {
    fn weight(&self, _key: &Key, val: &Arc<[u8]>) -> u64 {
        val.len().max(1) as u64
    }
}

/// Decoded buffers under one byte ceiling. Concurrent: a mount's worker threads and the
/// chain's prefetch threads read through it at once, and a buffer several threads want at
/// the same moment is decoded once.
pub struct Cache {
    map: quick_cache::sync::Cache<Key, Arc<[u8]>, Bytes>,
    /// Numbers handed out by [`Cache::units`].
    volumes: AtomicU64,
    /// Chunks decompressed so far (reads the cache could not answer).
    chunk_loads: AtomicU64,
    /// Units decoded so far.
    unit_loads: AtomicU64,
}

impl Cache {
    /// A cache of at most `bytes`, for buffers of about `item` bytes (an estimate that
    /// sizes the cache's bookkeeping).
    pub fn new(bytes: u64, item: u64) -> Cache {
        // One shard: with several, each holds an equal part of the ceiling and the chunks a
        // walk keeps coming back to (the MFT's, a directory's index) hash unevenly, so a
        // small NTFS copy decompressed each chunk 5 times over. A chunk takes about a
        // millisecond to decompress, so one lock held for a lookup is no contention for a
        // mount's workers. Mostly recency: 10% of the space stays for newly read buffers,
        // which a sequential read or a directory walk reuses right away.
        let opts = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity((bytes / item.max(1)).max(1) as usize)
            .weight_capacity(bytes.max(1))
            .shards(1)
            .hot_allocation(0.9)
            .build()
            .expect("valid cache options");
        Cache {
            map: quick_cache::sync::Cache::with_options(
                opts,
                Bytes,
                Default::default(),
                Default::default(),
            ),
            volumes: AtomicU64::new(0),
            chunk_loads: AtomicU64::new(0),
            unit_loads: AtomicU64::new(0),
        }
    }

    /// Chunk `chunk` of layer `layer`, from the cache or else from `load` (kept if it
    /// succeeds; an error is returned and nothing kept).
    pub fn chunk(
        &self,
        layer: u16,
        chunk: u32,
        load: impl FnOnce() -> Result<Arc<[u8]>>,
    ) -> Result<Arc<[u8]>> {
        self.map
            .get_or_insert_with(&Key::Chunk { layer, chunk }, || {
                self.chunk_loads.fetch_add(1, Ordering::Relaxed);
                load()
            })
    }

    /// Loads chunks `first..first + n` of layer `layer` with one call of `load(n)`, where
    /// `n` (at most `max`) stops before the first chunk that is held or being loaded by
    /// another thread, which never waits here. A chunk `load` gives no buffer for (None: it
    /// failed) is not kept; whoever reads it loads it again and gets the error.
    pub fn chunk_run(
        &self,
        layer: u16,
        first: u32,
        max: u32,
        load: impl FnOnce(u32) -> Vec<Option<Arc<[u8]>>>,
    ) {
        let mut claimed = Vec::new();
        for chunk in (first..).take(max as usize) {
            let key = Key::Chunk { layer, chunk };
            match self.map.get_value_or_guard(&key, Some(Duration::ZERO)) {
                GuardResult::Guard(g) => claimed.push(g),
                GuardResult::Value(_) | GuardResult::Timeout => break,
            }
        }
        if claimed.is_empty() {
            return;
        }
        let n = claimed.len() as u32;
        self.chunk_loads.fetch_add(u64::from(n), Ordering::Relaxed);
        // Guards left without a value (a failed or missing load) are dropped: a reader
        // waiting on one then loads the chunk itself.
        for (guard, loaded) in claimed.into_iter().zip(load(n)) {
            if let Some(buf) = loaded {
                let _ = guard.insert(buf);
            }
        }
    }

    /// True when chunk `chunk` of layer `layer` is held (without counting as a use).
    pub fn has_chunk(&self, layer: u16, chunk: u32) -> bool {
        self.map.peek(&Key::Chunk { layer, chunk }).is_some()
    }

    /// A handle for one volume's units, under a number no other handle of this cache has.
    pub fn units(self: &Arc<Self>) -> Units {
        Units {
            cache: self.clone(),
            volume: self.volumes.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Lowers (or raises) the ceiling, dropping what is over it.
    pub fn set_capacity(&self, bytes: u64) {
        self.map.set_capacity(bytes.max(1));
    }

    /// Bytes held now (at most the ceiling).
    pub fn bytes_held(&self) -> u64 {
        self.map.weight()
    }

    /// Chunks decompressed so far.
    pub fn chunk_loads(&self) -> u64 {
        self.chunk_loads.load(Ordering::Relaxed)
    }

    /// Units decoded so far, by every volume.
    pub fn unit_loads(&self) -> u64 {
        self.unit_loads.load(Ordering::Relaxed)
    }
}

/// What a filesystem holds of the [`Cache`]: its decoded units, apart from every other
/// volume's.
#[derive(Clone)]
pub struct Units {
    cache: Arc<Cache>,
    volume: u64,
}

impl Units {
    /// Unit `unit` of stream `stream` of file `node`, from the cache or else from `load`
    /// (kept if it succeeds).
    pub fn get_or_load(
        &self,
        node: u64,
        stream: &str,
        unit: u64,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<[u8]>> {
        let key = Key::Unit {
            volume: self.volume,
            node,
            stream: stream.into(),
            unit,
        };
        self.cache.map.get_or_insert_with(&key, || {
            self.cache.unit_loads.fetch_add(1, Ordering::Relaxed);
            load().map(Arc::from)
        })
    }

    /// The cache this handle draws on.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(n: usize) -> Arc<[u8]> {
        vec![7u8; n].into()
    }

    #[test]
    fn chunks_and_units_share_one_byte_ceiling() {
        let cache = Arc::new(Cache::new(1000, 100));
        let (a, b) = (cache.units(), cache.units());
        for i in 0..20 {
            cache.chunk(0, i, || Ok(buf(100))).unwrap();
            a.get_or_load(1, "", u64::from(i), || Ok(vec![1u8; 100]))
                .unwrap();
            assert!(cache.bytes_held() <= 1000, "{}", cache.bytes_held());
        }
        assert_eq!((cache.chunk_loads(), cache.unit_loads()), (20, 20));
        // A held unit is answered without loading; volumes do not see each other's units.
        let got = a.get_or_load(1, "", 19, || panic!("held")).unwrap();
        assert_eq!(&got[..], &[1u8; 100][..]);
        let other = b.get_or_load(1, "", 19, || Ok(vec![2u8; 100])).unwrap();
        assert_eq!(&other[..], &[2u8; 100][..]);
        // Nor do streams of one file, or a unit of one and a chunk of the same numbers.
        let s = a.get_or_load(1, "s", 19, || Ok(vec![3u8; 100])).unwrap();
        assert_eq!(&s[..], &[3u8; 100][..]);
        assert_eq!(cache.unit_loads(), 22);
    }

    #[test]
    fn a_failed_load_is_not_kept_and_a_buffer_over_the_ceiling_is_not_held() {
        let cache = Arc::new(Cache::new(1000, 100));
        let u = cache.units();
        assert!(u
            .get_or_load(1, "", 0, || Err(crate::Error::Invalid("bad".into())))
            .is_err());
        let again = u.get_or_load(1, "", 0, || Ok(vec![5u8; 10])).unwrap();
        assert_eq!(&again[..], &[5u8; 10][..]);
        cache.chunk(0, 0, || Ok(buf(5000))).unwrap();
        assert!(cache.bytes_held() <= 1000);
        assert!(!cache.has_chunk(0, 0));
    }

    #[test]
    fn a_run_stops_at_a_held_chunk_and_keeps_only_what_loaded() {
        let cache = Arc::new(Cache::new(10_000, 100));
        cache.chunk(0, 3, || Ok(buf(100))).unwrap();
        let mut asked = 0;
        cache.chunk_run(0, 0, 8, |n| {
            asked = n;
            vec![Some(buf(100)), None, Some(buf(100))]
        });
        // Chunk 3 is held, so the run is 0..3; chunk 1's load failed and is not kept.
        assert_eq!(asked, 3);
        assert_eq!(
            (0..4).map(|c| cache.has_chunk(0, c)).collect::<Vec<_>>(),
            [true, false, true, true]
        );
        assert_eq!(cache.chunk_loads(), 4);
        // Nothing to claim: `load` is not called.
        cache.chunk_run(0, 2, 8, |_| panic!("chunk 2 is held"));
        // Another layer's chunks of the same numbers are its own.
        cache.chunk_run(1, 0, 2, |n| vec![Some(buf(100)); n as usize]);
        assert!(cache.has_chunk(1, 1) && !cache.has_chunk(1, 2));
    }
}
