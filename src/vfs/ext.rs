//! ext2/3/4: `ext4-view` checks the filesystem when it is opened (it refuses features it
//! cannot read, and says which) and reads symlink targets; strata's own inode reader
//! ([`super::ext_inode`]) does the rest. The crate exposes no inode numbers, link counts,
//! block counts or extended attributes, and finds a file only by walking its path again
//! for every open: on a mount, listing and reading small files that way took twice the
//! time. Its `Ext4` is reference-counted internally (not `Send`), so every thread loads
//! its own instance on first use (loading reads only the superblock, group descriptors
//! and journal), kept in a thread-local table keyed by this filesystem's id. Node ids are
//! the inode numbers (root 2), and a table maps each to the first path seen for it, by
//! which the crate finds a symlink.
// The thread-locals below are const-initialised already; clippy 1.96 (the Windows check's
// toolchain) still reports them as if they were not.
#![allow(clippy::missing_const_for_thread_local)]

use super::ext_inode::{Inodes, Run};
use super::{DirEntry, FileSystem, Metadata, NodeId, NodeKind, PartDev};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fs::FsKind;
use ext4_view::{Ext4, Ext4Error, Ext4Read};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// A file being read: (filesystem instance, node, its data runs).
type OpenFile = (u64, NodeId, Rc<Vec<Run>>);

thread_local! {
    static LOADED: RefCell<BTreeMap<u64, Ext4>> = const { RefCell::new(BTreeMap::new()) };
    /// The data runs of the file this thread read last: (instance, node, runs), so that
    /// sequential reads of one file map it once.
    static OPEN: RefCell<Option<OpenFile>> = const { RefCell::new(None) };
}

/// The crate's storage interface over a partition.
struct Reader(PartDev);

impl Ext4Read for Reader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.0
            .read_at(start_byte, dst)
            .map_err(|e| Box::new(e) as _)
    }
}

/// Inode number -> the first path seen for it, by which the crate opens it.
#[derive(Default)]
struct Nodes {
    paths: HashMap<NodeId, Vec<u8>>,
}

/// Inode number of the root directory.
const ROOT: NodeId = 2;

/// A mounted ext2/3/4 filesystem.
pub struct ExtFs {
    instance: u64,
    dev: PartDev,
    kind: FsKind,
    nodes: Mutex<Nodes>,
    inodes: Inodes,
}

fn err(what: &[u8], e: Ext4Error) -> Error {
    let path = String::from_utf8_lossy(what);
    match e {
        Ext4Error::NotFound => Error::NotFound(format!("{path}: no such file or directory")),
        Ext4Error::Incompatible(i) => Error::Invalid(format!(
            "ext: {path}: this filesystem uses a feature strata cannot read yet: {}",
            // The crate names features by their flag; say what mke2fs calls them too.
            i.to_string()
                .replace("DATA_IN_INODE", "inline_data (DATA_IN_INODE)")
                .replace("ENCRYPTION", "encrypt (ENCRYPTION)")
                .replace("CASEFOLD", "casefold (CASEFOLD)")
        )),
        e => Error::Invalid(format!("ext: {path}: {e}")),
    }
}

impl ExtFs {
    /// Loads the filesystem once to check that the crate accepts it.
    pub fn open(dev: PartDev, kind: FsKind) -> Result<ExtFs> {
        let fs = ExtFs {
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            inodes: Inodes::open(dev.clone())?,
            dev,
            kind,
            nodes: Mutex::new(Nodes::default()),
        };
        fs.nodes
            .lock()
            .expect("not poisoned")
            .paths
            .insert(ROOT, b"/".to_vec());
        fs.with(|_| Ok(()))?;
        Ok(fs)
    }

    /// Runs `f` on this thread's instance, loading it first if needed.
    fn with<T>(&self, f: impl FnOnce(&Ext4) -> Result<T>) -> Result<T> {
        let fs = LOADED.with(|l| -> Result<Ext4> {
            let mut l = l.borrow_mut();
            if let Some(fs) = l.get(&self.instance) {
                return Ok(fs.clone());
            }
            let fs = Ext4::load(Box::new(Reader(self.dev.clone()))).map_err(|e| err(b"/", e))?;
            l.insert(self.instance, fs.clone());
            Ok(fs)
        })?;
        f(&fs)
    }

    fn path(&self, node: NodeId) -> Result<Vec<u8>> {
        let nodes = self.nodes.lock().expect("not poisoned");
        nodes
            .paths
            .get(&node)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("ext: no node {node}")))
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
        let _ = LOADED.try_with(|l| l.borrow_mut().remove(&self.instance));
    }
}

impl FileSystem for ExtFs {
    fn kind(&self) -> FsKind {
        self.kind
    }

    fn root(&self) -> NodeId {
        ROOT
    }

    fn lookup(&self, dir: NodeId, name: &str) -> Result<NodeId> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::NotFound(format!(
                "{name}: no such file or directory"
            )));
        }
        let p = Self::child(&self.path(dir)?, name.as_bytes());
        let ino = self
            .inodes
            .dir_entries(dir)?
            .into_iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, ino)| ino)
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
        for (name, node) in self.inodes.dir_entries(dir)? {
            let kind = self.metadata(node)?.kind;
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
        if meta.kind != NodeKind::File {
            return Err(Error::Invalid(format!(
                "{}: not a regular file ({:?})",
                String::from_utf8_lossy(&self.path(node)?),
                meta.kind
            )));
        }
        if offset >= meta.size {
            return Ok(0);
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
        let n = (meta.size - offset).min(buf.len() as u64) as usize;
        self.inodes.read(&runs, offset, &mut buf[..n])?;
        Ok(n)
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
        let p = self.path(node)?;
        self.with(|fs| {
            let t = fs.read_link(p.as_slice()).map_err(|e| err(&p, e))?;
            Ok(String::from_utf8_lossy(t.as_ref()).into_owned())
        })
    }
}
