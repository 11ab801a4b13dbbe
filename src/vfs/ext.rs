//! ext2/3/4 through `ext4-view`.
//!
//! The crate's `Ext4` is reference-counted internally (not `Send`) and addresses files by
//! path only. So every thread loads its own instance on first use (loading reads only the
//! superblock, group descriptors and journal), kept in a thread-local table keyed by this
//! filesystem's id. The crate does not expose inode numbers, link counts or extended
//! attributes: those come from strata's own inode reader ([`super::ext_inode`]), so node
//! ids are the inode numbers (root 2), and a table maps each to the first path seen for it
//! (any name of a hard-linked inode reads the same data).
// The thread-locals below are const-initialised already; clippy 1.96 (the Windows check's
// toolchain) still reports them as if they were not.
#![allow(clippy::missing_const_for_thread_local)]

use super::ext_inode::Inodes;
use super::{DirEntry, FileSystem, Metadata, NodeId, NodeKind, PartDev, Time};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fs::FsKind;
use ext4_view::{Ext4, Ext4Error, Ext4Read, FileType};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static LOADED: RefCell<BTreeMap<u64, Ext4>> = const { RefCell::new(BTreeMap::new()) };
    /// The file this thread read last: (instance, node, open file). Sequential reads of
    /// one file then cost no path lookup each.
    static OPEN: RefCell<Option<(u64, NodeId, ext4_view::File)>> = const { RefCell::new(None) };
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

/// Inode number -> the first path seen for it; metadata kept once read (listing a
/// directory reads every entry's inode directly, without a path lookup).
#[derive(Default)]
struct Nodes {
    paths: HashMap<NodeId, Vec<u8>>,
    meta: HashMap<NodeId, Metadata>,
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

fn time(t: ext4_view::Timestamp) -> Option<Time> {
    Some(Time {
        secs: t.seconds(),
        nanos: t.nanoseconds(),
    })
}

fn convert(md: &ext4_view::Metadata) -> Metadata {
    let kind = kind_of(md.file_type());
    let size = match kind {
        NodeKind::File | NodeKind::Symlink => md.len(),
        _ => 0,
    };
    let mut m = Metadata::new(kind, size);
    m.mtime = time(md.modified());
    m.atime = time(md.accessed());
    m.crtime = md.created().and_then(time);
    m.mode = Some(u32::from(md.mode()));
    m.uid = Some(md.uid());
    m.gid = Some(md.gid());
    m
}

fn kind_of(t: FileType) -> NodeKind {
    if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_block_dev() {
        NodeKind::Block
    } else if t.is_char_dev() {
        NodeKind::Char
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else if t.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
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
        let raw = self.with(|fs| {
            let mut out = Vec::new();
            for e in fs.read_dir(p.as_slice()).map_err(|e| err(&p, e))? {
                let e = e.map_err(|e| err(&p, e))?;
                let name = e.file_name();
                let bytes = name.as_ref().to_vec();
                if bytes == b"." || bytes == b".." {
                    continue;
                }
                let md = e.metadata().map_err(|e| err(&p, e))?;
                out.push((bytes, convert(&md)));
            }
            Ok(out)
        })?;
        let inos: HashMap<Vec<u8>, u64> = self.inodes.dir_entries(dir)?.into_iter().collect();
        let mut out = Vec::with_capacity(raw.len());
        for (name, mut meta) in raw {
            let node = *inos.get(&name).ok_or_else(|| {
                crate::fs::corrupt(
                    "ext",
                    0,
                    format!(
                        "{}: entry {} not found in the directory's blocks",
                        String::from_utf8_lossy(&p),
                        String::from_utf8_lossy(&name)
                    ),
                )
            })?;
            meta.nlink = Some(Inodes::nlink(&self.inodes.inode(node)?));
            meta.ino = Some(node);
            let mut nodes = self.nodes.lock().expect("not poisoned");
            nodes
                .paths
                .entry(node)
                .or_insert_with(|| Self::child(&p, &name));
            let kind = meta.kind;
            nodes.meta.insert(node, meta);
            out.push(DirEntry {
                name: String::from_utf8_lossy(&name).into_owned(),
                node,
                kind,
            });
        }
        Ok(out)
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        if let Some(m) = self.nodes.lock().expect("not poisoned").meta.get(&node) {
            return Ok(m.clone());
        }
        let p = self.path(node)?;
        let md = self.with(|fs| fs.symlink_metadata(p.as_slice()).map_err(|e| err(&p, e)))?;
        let mut m = convert(&md);
        m.nlink = Some(Inodes::nlink(&self.inodes.inode(node)?));
        m.ino = Some(node);
        self.nodes
            .lock()
            .expect("not poisoned")
            .meta
            .insert(node, m.clone());
        Ok(m)
    }

    fn read_at(&self, node: NodeId, stream: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if !stream.is_empty() {
            return Err(Error::NotFound(format!(
                "ext files have no named streams ({stream})"
            )));
        }
        let meta = self.metadata(node)?;
        let p = self.path(node)?;
        if meta.kind != NodeKind::File {
            return Err(Error::Invalid(format!(
                "{}: not a regular file ({:?})",
                String::from_utf8_lossy(&p),
                meta.kind
            )));
        }
        if offset >= meta.size {
            return Ok(0);
        }
        let cached = OPEN.with(|o| match o.borrow_mut().take() {
            Some((i, n, f)) if i == self.instance && n == node => Some(f),
            _ => None,
        });
        let mut f = match cached {
            Some(f) => f,
            None => self.with(|fs| fs.open(p.as_slice()).map_err(|e| err(&p, e)))?,
        };
        let r = (|| {
            f.seek_to(offset).map_err(|e| err(&p, e))?;
            let mut done = 0;
            while done < buf.len() {
                let n = f.read_bytes(&mut buf[done..]).map_err(|e| err(&p, e))?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            Ok(done)
        })();
        OPEN.with(|o| *o.borrow_mut() = Some((self.instance, node, f)));
        r
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
