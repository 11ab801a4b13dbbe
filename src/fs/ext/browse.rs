//! ext2/3/4, read by strata's own inode reader ([`super::inode`]), with the journal
//! applied in memory when the filesystem needs recovery ([`super::journal`]). Node ids
//! are inode numbers (root 2); a table maps each to the first path seen for it, for
//! messages.
//!
//! The `ext4-view` crate read symlinks and checked features here once. It was dropped: it
//! exposes no inodes (so every open walked the path again), opens only by path, refuses
//! whole filesystems with `ea_inode`, `inline_data`, `meta_bg`, `mmp` or `large_dir`,
//! and allocated a symlink's on-disk size before reading it.

// The thread-local below is const-initialised already; clippy 1.96 (the Windows check's
// toolchain) still reports it as if it were not.
#![allow(clippy::missing_const_for_thread_local)]

use super::inode::{Inodes, Run};
use super::names::NameIndex;
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fs::browse::{
    Changes, DataMap, DirEntry, FileSystem, Metadata, NodeId, NodeKind, PartDev,
};
use crate::fs::FsKind;
use crate::le::LeFields;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// A file being read: (filesystem instance, node, its data runs).
type OpenFile = (u64, NodeId, Rc<Vec<Run>>);

thread_local! {
    /// The data runs of the file this thread read last: (instance, node, runs), so that
    /// sequential reads of one file map it once.
    static OPEN: RefCell<Option<OpenFile>> = const { RefCell::new(None) };
}

/// Inode number -> the first path seen for it.
#[derive(Default)]
struct Nodes {
    paths: HashMap<NodeId, Vec<u8>>,
}

/// The kind a directory entry's file type byte names (`EXT4_FT_*`); None for 0 (unknown)
/// and for values no kernel writes.
fn kind_of_file_type(t: u8) -> Option<NodeKind> {
    Some(match t {
        1 => NodeKind::File,
        2 => NodeKind::Dir,
        3 => NodeKind::Char,
        4 => NodeKind::Block,
        5 => NodeKind::Fifo,
        6 => NodeKind::Socket,
        7 => NodeKind::Symlink,
        _ => return None,
    })
}

/// Inode number of the root directory.
const ROOT: NodeId = 2;
/// The first inode that is not reserved (`EXT4_GOOD_OLD_FIRST_INO`): below it the
/// journal, the resize inode and others the filesystem changes by itself.
const FIRST_ORDINARY_INODE: NodeId = 11;

/// `s_feature_incompat` flags strata reads, and what mke2fs calls the others. Whatever
/// else is set is refused whole, naming it, as the kernel refuses to mount it.
const INCOMPAT_READ: u32 = 0x0002 // filetype
    | 0x0004 // needs_recovery (the journal is applied)
    | 0x0010 // meta_bg
    | 0x0040 // extent
    | 0x0080 // 64bit
    | 0x0100 // mmp
    | 0x0200 // flex_bg
    | 0x0400 // ea_inode
    | 0x2000 // metadata_csum_seed
    | 0x4000 // large_dir (hashed directories are read linearly)
    | 0x8000 // inline_data
    | 0x1_0000 // encrypt (encrypted files are refused one by one)
    | 0x2_0000; // casefold (names are stored as given)
/// Names of the other defined flags; undefined ones are named `FEATURE_I<bit>` as
/// e2fsprogs names them.
const INCOMPAT_NAMES: [(u32, &str); 3] = [
    (0x0001, "compression"),
    (
        0x0008,
        "journal_dev (an external journal, not a filesystem)",
    ),
    (0x1000, "dirdata"),
];

/// Refuses a filesystem with an incompatible feature strata cannot read, naming it.
fn check_features(dev: &PartDev) -> Result<()> {
    let mut sb = [0u8; 1024];
    dev.read_at(1024, &mut sb)?;
    let unknown = LeFields(&sb).u32(0x60) & !INCOMPAT_READ;
    if unknown == 0 {
        return Ok(());
    }
    let names: Vec<String> = (0..32)
        .map(|b| 1u32 << b)
        .filter(|f| unknown & f != 0)
        .map(|f| {
            INCOMPAT_NAMES.iter().find(|(v, _)| *v == f).map_or_else(
                || format!("FEATURE_I{}", f.trailing_zeros()),
                |(_, n)| (*n).to_string(),
            )
        })
        .collect();
    Err(Error::UnsupportedFeature(format!(
        "ext: this filesystem uses a feature strata cannot read yet: {}",
        names.join(", ")
    )))
}

/// A mounted ext2/3/4 filesystem.
pub struct ExtFs {
    instance: u64,
    kind: FsKind,
    nodes: Mutex<Nodes>,
    inodes: Inodes,
    names: NameIndex,
}

impl ExtFs {
    /// Checks the features, applies the journal if it needs recovery, and reads the
    /// inode geometry.
    pub fn open(dev: PartDev, kind: FsKind) -> Result<ExtFs> {
        check_features(&dev)?;
        let fs = ExtFs {
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            inodes: Inodes::open(dev)?,
            kind,
            nodes: Mutex::new(Nodes::default()),
            names: NameIndex::new(),
        };
        fs.nodes
            .lock()
            .expect("not poisoned")
            .paths
            .insert(ROOT, b"/".to_vec());
        Ok(fs)
    }

    fn path(&self, node: NodeId) -> Result<Vec<u8>> {
        let nodes = self.nodes.lock().expect("not poisoned");
        // A node reached other than by a listing of its directory here (a catalog built
        // from a previous one lists only what changed) is named by its number.
        Ok(nodes
            .paths
            .get(&node)
            .cloned()
            .unwrap_or_else(|| format!("<inode {node}>").into_bytes()))
    }

    fn child(dir: &[u8], name: &[u8]) -> Vec<u8> {
        let mut p = dir.to_vec();
        if p.last() != Some(&b'/') {
            p.push(b'/');
        }
        p.extend_from_slice(name);
        p
    }
}

impl Drop for ExtFs {
    fn drop(&mut self) {
        // Only this thread's instance can be dropped here; other threads' go with them.
        let _ = OPEN.try_with(|o| o.borrow_mut().take());
    }
}

impl FileSystem for ExtFs {
    fn kind(&self) -> FsKind {
        self.kind
    }

    fn root(&self) -> NodeId {
        ROOT
    }

    fn lookup(&self, dir: NodeId, name: &str, _case: crate::fs::browse::Case) -> Result<NodeId> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::NotFound(format!(
                "{name}: no such file or directory"
            )));
        }
        let p = Self::child(&self.path(dir)?, name.as_bytes());
        let ino = self
            .names
            .lookup(dir, name.as_bytes(), || self.inodes.dir_entries(dir))?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{}: no such file or directory",
                    String::from_utf8_lossy(&p)
                ))
            })?;
        self.nodes
            .lock()
            .expect("not poisoned")
            .paths
            .entry(ino)
            .or_insert(p);
        Ok(ino)
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let p = self.path(dir)?;
        let mut out = Vec::new();
        for (name, node, file_type) in self.inodes.typed_dir_entries(dir)? {
            // The entry's own file type, as the kernel's readdir gives it: reading each
            // child's inode for it made listing a directory of 18,000 files read 18,000
            // inodes. Without one, the inode says.
            let kind = match kind_of_file_type(file_type) {
                Some(k) => k,
                None => self.metadata(node)?.kind,
            };
            self.nodes
                .lock()
                .expect("not poisoned")
                .paths
                .entry(node)
                .or_insert_with(|| Self::child(&p, &name));
            out.push(DirEntry {
                name: String::from_utf8_lossy(&name).into_owned(),
                node,
                kind,
            });
        }
        Ok(out)
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        let inode = self.inodes.inode(node)?;
        Ok(self.inodes.metadata(node, &inode))
    }

    fn read_at(&self, node: NodeId, stream: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if !stream.is_empty() {
            return Err(Error::NotFound(format!(
                "ext files have no named streams ({stream})"
            )));
        }
        let inode = self.inodes.inode(node)?;
        let meta = self.inodes.metadata(node, &inode);
        if meta.kind == NodeKind::Dir {
            return Err(Error::IsADirectory(format!(
                "{}: is a directory",
                String::from_utf8_lossy(&self.path(node)?)
            )));
        }
        if meta.kind != NodeKind::File {
            return Err(Error::Invalid(format!(
                "{}: not a regular file (a {})",
                String::from_utf8_lossy(&self.path(node)?),
                meta.kind.noun()
            )));
        }
        if offset >= meta.size {
            return Ok(0);
        }
        if Inodes::is_inline(&inode) {
            let data = self.inodes.inline_data(node, &inode)?;
            let from = crate::le::clamp_len(offset, data.len());
            let n = (data.len() - from).min(buf.len());
            buf[..n].copy_from_slice(&data[from..from + n]);
            return Ok(n);
        }
        let runs = OPEN.with(|o| match &*o.borrow() {
            Some((i, n, r)) if *i == self.instance && *n == node => Some(r.clone()),
            _ => None,
        });
        let runs = match runs {
            Some(r) => r,
            None => {
                let r = Rc::new(self.inodes.runs(node, &inode)?);
                OPEN.with(|o| *o.borrow_mut() = Some((self.instance, node, r.clone())));
                r
            }
        };
        let n = crate::le::clamp_len(meta.size - offset, buf.len());
        self.inodes.read(node, &runs, offset, &mut buf[..n])?;
        Ok(n)
    }

    fn changes(&self, changed: &crate::ranges::Ranges) -> Result<Option<Changes>> {
        // A journal applied in memory can change any block as read: walk it whole.
        let g = self.inodes.geometry();
        // (bigalloc maps clusters, which the footprints below do not follow.)
        if self.inodes.replaced() > 0 || g.cluster_size != g.block_size {
            return Ok(None);
        }
        let bs = g.block_size;
        let table_bytes = g.inodes_per_group.saturating_mul(g.inode_size);
        // Inode tables by position, with their group.
        let mut tables: Vec<(u64, u64)> = g
            .inode_tables
            .iter()
            .enumerate()
            .map(|(grp, &t)| (t.saturating_mul(bs), grp as u64))
            .collect();
        tables.sort_unstable();
        let in_tables = crate::ranges::Ranges::from_unsorted(
            tables
                .iter()
                .map(|&(a, _)| (a, a.saturating_add(table_bytes)))
                .collect(),
        );
        // The reserved inodes below the first ordinary one (journal, resize inode...)
        // change their contents without their inode.
        let mut nodes: std::collections::HashSet<NodeId> =
            (1..FIRST_ORDINARY_INODE).filter(|&i| i != ROOT).collect();
        for &(a, b) in changed.intersect(&in_tables).as_slice() {
            let k = tables.partition_point(|&(t, _)| t <= a);
            let Some(&(t, grp)) = k.checked_sub(1).and_then(|k| tables.get(k)) else {
                continue;
            };
            let first = (a - t) / g.inode_size;
            let end = (b - t).div_ceil(g.inode_size).min(g.inodes_per_group);
            for i in first..end {
                nodes.insert(grp * g.inodes_per_group + i + 1);
            }
        }
        Ok(Some(Changes {
            nodes,
            explained: super::structure(self.inodes.device())?,
        }))
    }

    fn listing_in_record(&self, dir: NodeId) -> bool {
        self.inodes
            .inode(dir)
            .map_or(true, |i| Inodes::is_inline(&i))
    }

    fn footprint(&self, node: NodeId) -> Result<crate::ranges::Ranges> {
        let inode = self.inodes.inode(node)?;
        let meta = self.inodes.metadata(node, &inode);
        let bs = self.inodes.block_size();
        let mut out = Vec::new();
        // i_block of fast symbolic links and device nodes holds no block numbers.
        let mapped = match meta.kind {
            NodeKind::File | NodeKind::Dir => true,
            NodeKind::Symlink => meta.size >= 60,
            _ => false,
        };
        if mapped {
            let (runs, map_blocks) = self.inodes.runs_and_map_blocks(node, &inode)?;
            for (_, count, phys) in runs {
                out.push((
                    phys.saturating_mul(bs),
                    phys.saturating_add(count).saturating_mul(bs),
                ));
            }
            for b in map_blocks {
                out.push((b.saturating_mul(bs), b.saturating_add(1).saturating_mul(bs)));
            }
        }
        let f = LeFields(&inode);
        let acl = u64::from(f.u32(0x68)) | u64::from(f.u16(0x76)) << 32;
        if acl != 0 {
            out.push((
                acl.saturating_mul(bs),
                acl.saturating_add(1).saturating_mul(bs),
            ));
        }
        Ok(crate::ranges::Ranges::from_unsorted(out))
    }

    fn data_map(&self, node: NodeId, stream: &str) -> Result<Option<DataMap>> {
        let inode = self.inodes.inode(node)?;
        let meta = self.inodes.metadata(node, &inode);
        if !stream.is_empty() || meta.kind != NodeKind::File || Inodes::is_inline(&inode) {
            return Ok(None);
        }
        let bs = self.inodes.block_size();
        let runs = self.inodes.runs(node, &inode)?;
        Ok(Some(DataMap {
            runs: runs
                .iter()
                .map(|&(lblk, n, start)| {
                    // Saturating: a damaged run lands past the device, where the catalog
                    // falls back to reading (which refuses it).
                    (
                        lblk.saturating_mul(bs),
                        start.saturating_mul(bs),
                        n.saturating_mul(bs),
                    )
                })
                .collect(),
            valid: meta.size,
        }))
    }

    fn xattr_names(&self, node: NodeId) -> Result<Vec<String>> {
        let inode = self.inodes.inode(node)?;
        Ok(self
            .inodes
            .xattrs(node, &inode)?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    fn xattr(&self, node: NodeId, name: &str) -> Result<Vec<u8>> {
        let inode = self.inodes.inode(node)?;
        self.inodes
            .xattrs(node, &inode)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::NotFound(format!("no extended attribute {name}")))
    }

    fn read_link(&self, node: NodeId) -> Result<String> {
        let inode = self.inodes.inode(node)?;
        let t = self.inodes.link_target(node, &inode)?;
        Ok(String::from_utf8_lossy(&t).into_owned())
    }
}
