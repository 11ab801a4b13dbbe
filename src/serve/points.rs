//! The images a server serves, known by UUID, and the few kept open.

use crate::chain::{Chain, ResolveOptions};
use crate::error::{Error, Result};
use crate::vfs::Vfs;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Points kept open at once: browsing moves between a few (a point and its neighbours in
/// a diff or history); they share the cache ceiling equally.
const MAX_OPEN: usize = 4;

/// One opened point: the chain and its filesystems.
pub(crate) struct Opened {
    chain: Arc<Chain>,
    pub vfs: Vfs,
}

pub(crate) struct Points {
    roots: Vec<PathBuf>,
    pub opts: ResolveOptions,
    cache_bytes: u64,
    /// Image id (its UUID) -> file. Only these can be named by a request.
    known: Mutex<HashMap<String, PathBuf>>,
    /// Canonical path of each known file -> its id.
    ids: Mutex<HashMap<PathBuf, String>>,
    /// The points open now, by id.
    open: Mutex<lru::LruCache<String, Arc<Opened>>>,
}

fn canonical(p: &Path) -> PathBuf {
    crate::storage::canonical(p).unwrap_or_else(|| p.to_path_buf())
}

impl Points {
    pub fn new(roots: Vec<PathBuf>, opts: ResolveOptions, cache_bytes: u64) -> Result<Points> {
        for r in &roots {
            if crate::storage::is_dir(r) {
                crate::storage::files_in(r, crate::container::EXTENSION)?;
            } else if crate::storage::is_remote(r) {
                crate::storage::Blob::open(r)?;
            } else {
                std::fs::metadata(r).map_err(|e| Error::io(r, "cannot serve", e))?;
            }
        }
        let p = Points {
            roots,
            opts,
            cache_bytes,
            known: Mutex::new(HashMap::new()),
            ids: Mutex::new(HashMap::new()),
            open: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(MAX_OPEN).expect("not zero"),
            )),
        };
        p.rescan();
        Ok(p)
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// How many images are served.
    pub fn count(&self) -> usize {
        self.known.lock().expect("lock").len()
    }

    /// Looks for images again (a new backup may have been written since).
    pub fn rescan(&self) {
        let mut found = HashMap::new();
        for root in &self.roots {
            let paths = if crate::storage::is_dir(root) {
                crate::chain::resolve::images_in(root)
            } else {
                // An image: it and the ancestors its chain resolves to.
                match crate::chain::resolve::resolve(root, &self.opts) {
                    Ok(layers) => layers.iter().map(|l| l.path().to_path_buf()).collect(),
                    Err(_) => vec![root.clone()],
                }
            };
            for p in paths {
                if let Some(h) = crate::chain::resolve::peek_header(&p) {
                    found.entry(h.image_uuid.to_string()).or_insert(p);
                }
            }
        }
        let ids = found
            .iter()
            .map(|(id, p)| (canonical(p), id.clone()))
            .collect();
        *self.known.lock().expect("lock") = found;
        *self.ids.lock().expect("lock") = ids;
    }

    /// Unlocks every encrypted chain served, once, before the server starts: a passphrase
    /// is asked on the terminal now rather than in the middle of a request. A chain that
    /// stays locked is reported, and its pages answer with the reason.
    pub fn unlock_all(&self) {
        let known: Vec<PathBuf> = self.known.lock().expect("lock").values().cloned().collect();
        let mut done = std::collections::HashSet::new();
        for p in known {
            let Some(h) = crate::chain::resolve::peek_header(&p) else {
                continue;
            };
            if let Some(e) = h.encryption {
                if done.insert(e.key_id) {
                    if let Err(err) = crate::container::keyring::unlock(&p, &e.key_id, &e.slots) {
                        eprintln!("strata: warning: {err}");
                    }
                }
            }
        }
    }

    /// The file of image `id`, if it is served.
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        if let Some(p) = self.known.lock().expect("lock").get(id) {
            return Some(p.clone());
        }
        self.rescan();
        self.known.lock().expect("lock").get(id).cloned()
    }

    /// The id of the served image at `path`.
    pub fn id_of(&self, path: &Path) -> Option<String> {
        self.ids
            .lock()
            .expect("lock")
            .get(&canonical(path))
            .cloned()
    }

    /// Opens image `id` (or returns it open). Blocking: call on a blocking thread.
    pub fn open(&self, id: &str) -> Result<Arc<Opened>> {
        if let Some(o) = self.open.lock().expect("lock").get(id) {
            return Ok(o.clone());
        }
        let path = self
            .path(id)
            .ok_or_else(|| Error::NotFound(format!("{id}: no such image is served")))?;
        let chain = crate::point::open_chain(&path, &self.opts, self.cache_bytes)?;
        let vfs = crate::point::vfs_of(&chain)?;
        chain.enable_prefetch();
        let o = Arc::new(Opened { chain, vfs });
        let mut open = self.open.lock().expect("lock");
        open.put(id.to_string(), o.clone());
        // One point browsed alone gets the whole ceiling (a zip of 20,000 small files
        // took 10x longer with a quarter of it, decompressing chunks again and again).
        let share = (self.cache_bytes / open.len() as u64).max(16 << 20);
        for (_, p) in open.iter() {
            p.chain.set_cache_bytes(share);
        }
        Ok(o)
    }
}
