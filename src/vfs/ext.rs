//! ext2/3/4 through `ext4-view`.
//!
//! The crate's `Ext4` is reference-counted internally (not `Send`) and addresses files by
//! path only. So every thread loads its own instance on first use (loading reads only the
//! superblock, group descriptors and journal), kept in a thread-local table keyed by this
//! filesystem's id, and node ids are synthesised: the first path seen for a node gets the
//! next number, and the table maps ids back to paths. The crate does not expose inode
//! numbers or link counts; `nlink` is left out.
// The thread-locals below are const-initialised already; clippy 1.96 (the Windows check's
// toolchain) still reports them as if they were not.
#![allow(clippy::missing_const_for_thread_local)]

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

/// Path table: id -> path, path -> id. Id 1 is the root. Metadata is kept once read
/// (listing a directory reads every entry's inode directly, without a path lookup).
#[derive(Default)]
struct Nodes {
    paths: Vec<Vec<u8>>,
    ids: HashMap<Vec<u8>, NodeId>,
    meta: HashMap<NodeId, Metadata>,
}

impl Nodes {
    fn id(&mut self, path: Vec<u8>) -> NodeId {
        if let Some(&id) = self.ids.get(&path) {
            return id;
        }
        self.paths.push(path.clone());
        let id = self.paths.len() as NodeId;
        self.ids.insert(path, id);
        id
    }
}

/// A mounted ext2/3/4 filesystem.
pub struct ExtFs {
    instance: u64,
    dev: PartDev,
    kind: FsKind,
    nodes: Mutex<Nodes>,
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
            dev,
            kind,
            nodes: Mutex::new(Nodes::default()),
        };
        fs.nodes.lock().expect("not poisoned").id(b"/".to_vec());
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
        node.checked_sub(1)
            .and_then(|i| nodes.paths.get(i as usize))
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
        1
    }

    fn lookup(&self, dir: NodeId, name: &str) -> Result<NodeId> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::NotFound(format!(
                "{name}: no such file or directory"
            )));
        }
        let p = Self::child(&self.path(dir)?, name.as_bytes());
        let md = self.with(|fs| fs.symlink_metadata(p.as_slice()).map_err(|e| err(&p, e)))?;
        // Kept: a mount asks for the metadata of what it just looked up, and each path
        // walk of ext4-view reads the directories again.
        let mut nodes = self.nodes.lock().expect("not poisoned");
        let id = nodes.id(p);
        nodes.meta.entry(id).or_insert_with(|| convert(&md));
        Ok(id)
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
        let mut nodes = self.nodes.lock().expect("not poisoned");
        Ok(raw
            .into_iter()
            .map(|(name, meta)| {
                let node = nodes.id(Self::child(&p, &name));
                let kind = meta.kind;
                nodes.meta.insert(node, meta);
                DirEntry {
                    name: String::from_utf8_lossy(&name).into_owned(),
                    node,
                    kind,
                }
            })
            .collect())
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        if let Some(m) = self.nodes.lock().expect("not poisoned").meta.get(&node) {
            return Ok(m.clone());
        }
        let p = self.path(node)?;
        let md = self.with(|fs| fs.symlink_metadata(p.as_slice()).map_err(|e| err(&p, e)))?;
        let m = convert(&md);
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

    fn read_link(&self, node: NodeId) -> Result<String> {
        let p = self.path(node)?;
        self.with(|fs| {
            let t = fs.read_link(p.as_slice()).map_err(|e| err(&p, e))?;
            Ok(String::from_utf8_lossy(t.as_ref()).into_owned())
        })
    }
}
