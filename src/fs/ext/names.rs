//! Name lookups in big ext directories: a name -> inode table per directory, built from one
//! listing and kept for the directories looked up in last.
//!
//! Without it every lookup read and scanned the whole directory, so a walk that looks up
//! each entry of a directory of n entries (a mounted `find` or `tar`) cost n² entry
//! comparisons: about 1 ms per lookup in a directory of 18,000. The directory's hash tree
//! (htree) would find one name without listing, but it needs the filesystem's hash
//! variants (half-MD4, TEA, legacy, signed and unsigned) and is absent from small and
//! ext2 directories; a walk looks up every name anyway, so one listing per directory is
//! the cost that counts.

use crate::error::Result;
use crate::fs::browse::NodeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Directories with fewer entries are scanned as before: a table would cost more than it
/// saves, and would push big directories out.
const MIN_ENTRIES: usize = 64;
/// Names kept over all tables (about 64 bytes each).
const MAX_NAMES: usize = 1 << 20;
/// Tables kept.
const MAX_DIRS: usize = 64;

type Table = Arc<HashMap<Box<[u8]>, NodeId>>;

/// The tables of the directories looked up in last.
pub(super) struct NameIndex {
    /// (tables by directory, names in them).
    tables: Mutex<(lru::LruCache<NodeId, Table>, usize)>,
}

impl NameIndex {
    pub(super) fn new() -> NameIndex {
        NameIndex {
            tables: Mutex::new((lru::LruCache::unbounded(), 0)),
        }
    }

    /// The inode of entry `name` of directory `dir`, None when it has none; `list` gives
    /// the directory's entries in their on-disk order. The first entry of a name wins, as
    /// in a scan (a damaged directory may hold a name twice).
    pub(super) fn lookup(
        &self,
        dir: NodeId,
        name: &[u8],
        list: impl FnOnce() -> Result<Vec<(Vec<u8>, NodeId)>>,
    ) -> Result<Option<NodeId>> {
        let lock = || self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = lock().0.get(&dir) {
            return Ok(t.get(name).copied());
        }
        let entries = list()?;
        if entries.len() < MIN_ENTRIES {
            return Ok(entries
                .into_iter()
                .find(|(n, _)| n.as_slice() == name)
                .map(|(_, ino)| ino));
        }
        let mut t = HashMap::with_capacity(entries.len());
        for (n, ino) in entries {
            t.entry(n.into_boxed_slice()).or_insert(ino);
        }
        let found = t.get(name).copied();
        let t = Arc::new(t);
        let mut g = lock();
        let (tables, names) = &mut *g;
        if let Some(old) = tables.put(dir, t.clone()) {
            *names -= old.len();
        }
        *names += t.len();
        while (*names > MAX_NAMES || tables.len() > MAX_DIRS) && tables.len() > 1 {
            match tables.pop_lru() {
                Some((_, old)) => *names -= old.len(),
                None => break,
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<(Vec<u8>, NodeId)> {
        (0..n)
            .map(|i| (format!("f{i}").into_bytes(), 100 + i as NodeId))
            .collect()
    }

    #[test]
    fn big_and_small_directories_answer_as_a_scan() {
        let idx = NameIndex::new();
        for n in [3, MIN_ENTRIES, 5000] {
            let dir = n as NodeId;
            for probe in [0, n / 2, n - 1] {
                let name = format!("f{probe}");
                let got = idx.lookup(dir, name.as_bytes(), || Ok(entries(n))).unwrap();
                assert_eq!(got, Some(100 + probe as NodeId));
            }
            let miss = idx.lookup(dir, b"F0", || Ok(entries(n))).unwrap();
            assert_eq!(miss, None);
        }
    }

    #[test]
    fn a_kept_table_is_not_listed_again_and_the_first_duplicate_wins() {
        let idx = NameIndex::new();
        let mut e = entries(100);
        e.push((b"f7".to_vec(), 1));
        assert_eq!(idx.lookup(9, b"f7", || Ok(e)).unwrap(), Some(107));
        let again = idx.lookup(9, b"f99", || panic!("listed again")).unwrap();
        assert_eq!(again, Some(199));
    }

    #[test]
    fn tables_are_bounded() {
        let idx = NameIndex::new();
        for dir in 0..(MAX_DIRS as NodeId + 10) {
            idx.lookup(dir, b"f1", || Ok(entries(MIN_ENTRIES))).unwrap();
        }
        let g = idx.tables.lock().unwrap();
        assert_eq!(g.0.len(), MAX_DIRS);
        assert_eq!(g.1, MAX_DIRS * MIN_ENTRIES);
    }
}
