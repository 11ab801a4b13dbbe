//! Files inside an image: a read-only filesystem layer over a [`BlockDev`].
//!
//! # From the top
//!
//! - [`FileSystem`] is the one interface every filesystem adapter offers: node ids, lookup
//!   of a name in a directory, directory listing, metadata, positioned reads of a file or
//!   of one of its named streams, and symbolic link targets. Methods take `&self` and the
//!   trait is `Send + Sync`, so the CLI, FUSE and Dokan front-ends can share one instance
//!   across threads.
//! - [`Vfs`] reads the partition table of a device and mounts every partition holding a
//!   filesystem strata can read as a directory `p1`, `p2`, … (the partition numbers), or the
//!   filesystem itself when the device holds a bare one. [`Vfs::resolve`] turns a
//!   `/`-separated path into a mount and a node.
//! - Adapters: [`ntfs`] (the `ntfs` crate; node id = file record number), [`ext`]
//!   (`ext4-view`; the crate addresses files by path and is not `Send`, so every thread
//!   gets its own instance; node ids are inode numbers, found by [`ext_inode`], which also
//!   reads link counts and extended attributes), [`fat`] (`fatfs` behind a `Mutex` on a
//!   storage adapter whose writes fail; synthesised ids), [`exfat`] (read directly;
//!   synthesised ids). [`lznt1`] decodes NTFS compression, [`wof`] files compressed by
//!   Windows' overlay filter (CompactOS) with [`xpress`] and [`lzx`] ([`huffman`] codes).
//! - [`path`] escapes names that cannot be written safely on the destination.
//! - [`scan`] reads every file to find those that damage made unreadable (`verify`).
//!
//! Nothing here writes to the device: every adapter reads through [`BlockDev::read_at`].

pub mod exfat;
pub mod ext;
pub mod ext_inode;
pub mod fat;
pub mod huffman;
pub mod lznt1;
pub mod lzx;
pub mod ntfs;
pub mod path;
pub mod scan;
pub mod wof;
pub mod xpress;

use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fs::FsKind;
use serde::Serialize;
use std::sync::Arc;

/// A node (file, directory, link…) of one filesystem. Stable for the life of the
/// [`FileSystem`] instance: the same file always has the same id.
pub type NodeId = u64;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    /// Block device node (listed, not readable).
    Block,
    /// Character device node (listed, not readable).
    Char,
    Fifo,
    Socket,
    /// An NTFS reparse point strata does not translate (not a symlink or junction).
    Reparse,
}

impl NodeKind {
    /// One letter, as `ls -l` shows it.
    pub fn letter(self) -> char {
        match self {
            NodeKind::File => '-',
            NodeKind::Dir => 'd',
            NodeKind::Symlink => 'l',
            NodeKind::Block => 'b',
            NodeKind::Char => 'c',
            NodeKind::Fifo => 'p',
            NodeKind::Socket => 's',
            NodeKind::Reparse => 'r',
        }
    }
}

/// A point in time: seconds and nanoseconds since 1970-01-01 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Time {
    pub secs: i64,
    pub nanos: u32,
}

impl Time {
    /// From an NTFS timestamp: 100 ns intervals since 1601-01-01 UTC.
    pub fn from_nt(t: u64) -> Time {
        const EPOCH_DIFF: i64 = 11_644_473_600;
        Time {
            secs: (t / 10_000_000) as i64 - EPOCH_DIFF,
            nanos: (t % 10_000_000) as u32 * 100,
        }
    }

    /// As a [`std::time::SystemTime`].
    pub fn to_system(self) -> std::time::SystemTime {
        let base = std::time::UNIX_EPOCH;
        if self.secs >= 0 {
            base + std::time::Duration::new(self.secs as u64, self.nanos)
        } else {
            base - std::time::Duration::from_secs(self.secs.unsigned_abs())
                + std::time::Duration::from_nanos(u64::from(self.nanos))
        }
    }
}

/// A named data stream besides a file's main contents (NTFS alternate data stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stream {
    pub name: String,
    pub size: u64,
}

/// What a filesystem knows about a node. Fields a filesystem does not store are `None`.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    pub kind: NodeKind,
    /// Bytes of the main contents (files); length of the target (symlinks); 0 otherwise.
    pub size: u64,
    pub mtime: Option<Time>,
    pub atime: Option<Time>,
    /// Inode or record change time.
    pub ctime: Option<Time>,
    /// Creation time.
    pub crtime: Option<Time>,
    /// Permission bits and file type, as in `st_mode` (ext only).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Number of names the node has.
    pub nlink: Option<u32>,
    /// Inode number (ext) or file record number (NTFS), as the kernel and ntfs-3g give it
    /// in `st_ino`.
    pub ino: Option<u64>,
    /// Bytes the node takes on disk (holes and compression make it less than the size),
    /// as `st_blocks * 512` from the kernel or ntfs-3g; None: not known, taken as the size.
    pub allocated: Option<u64>,
    /// Named streams (NTFS), not counting the main contents.
    pub streams: Vec<Stream>,
}

impl Metadata {
    /// Metadata with only a kind and a size.
    pub fn new(kind: NodeKind, size: u64) -> Metadata {
        Metadata {
            kind,
            size,
            mtime: None,
            atime: None,
            ctime: None,
            crtime: None,
            mode: None,
            uid: None,
            gid: None,
            nlink: None,
            ino: None,
            allocated: None,
            streams: Vec::new(),
        }
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name as stored (Unicode; lossily decoded where the filesystem stores bytes that
    /// are not UTF-8).
    pub name: String,
    pub node: NodeId,
    pub kind: NodeKind,
}

/// A read-only filesystem.
///
/// Callers pass node ids obtained from this same instance ([`FileSystem::root`],
/// [`FileSystem::lookup`], [`FileSystem::read_dir`]). Implementations never write to
/// their device and may be called from many threads at once.
pub trait FileSystem: Send + Sync {
    /// The filesystem type.
    fn kind(&self) -> FsKind;

    /// The root directory.
    fn root(&self) -> NodeId;

    /// The entry `name` of directory `dir`. [`Error::NotFound`] when there is none;
    /// NTFS and FAT compare names case-insensitively, ext exactly.
    fn lookup(&self, dir: NodeId, name: &str) -> Result<NodeId>;

    /// Every entry of `dir` except `.` and `..`, in the filesystem's order.
    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>>;

    /// Metadata of `node`.
    fn metadata(&self, node: NodeId) -> Result<Metadata>;

    /// Reads bytes of `node`'s contents (or of its named `stream`; `""` is the main
    /// contents) from `offset` into `buf`. Returns how many bytes were read: less than
    /// `buf.len()` only at the end of the data, 0 at or past it. Holes read as zeros.
    /// Refused for directories and for contents strata cannot decode (with a message
    /// that says why).
    fn read_at(&self, node: NodeId, stream: &str, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// The target of a symbolic link, as stored (NTFS: translated to `/` separators and
    /// made relative to the volume where possible).
    fn read_link(&self, node: NodeId) -> Result<String>;

    /// Names of `node`'s extended attributes, with their namespace (`user.comment`,
    /// `security.selinux`). NTFS alternate data streams are not attributes: they are listed
    /// in [`Metadata::streams`]. Filesystems without extended attributes have none.
    fn xattr_names(&self, node: NodeId) -> Result<Vec<String>> {
        let _ = node;
        Ok(Vec::new())
    }

    /// The value of `node`'s extended attribute `name`; [`Error::NotFound`] when it has none
    /// of that name.
    fn xattr(&self, node: NodeId, name: &str) -> Result<Vec<u8>> {
        let _ = node;
        Err(Error::NotFound(format!("no extended attribute {name}")))
    }
}

/// A partition (or bare device) as an owned device: a window that holds its device.
pub type PartDev = crate::blockdev::window::Window<Arc<dyn BlockDev>>;

/// One partition shown at the top of a [`Vfs`].
pub struct Mount {
    /// `p1`, `p2`… (empty for a bare filesystem).
    pub name: String,
    /// Partition number (0 for a bare filesystem).
    pub number: u32,
    /// The filesystem found, if any.
    pub kind: Option<FsKind>,
    pub label: String,
    /// Partition size in bytes.
    pub size: u64,
    /// The opened filesystem, or why it cannot be browsed.
    pub fs: std::result::Result<Arc<dyn FileSystem>, String>,
}

/// Where a path leads.
#[derive(Clone)]
pub enum Target {
    /// The top directory listing the partitions.
    Top,
    /// A node of a mounted filesystem.
    Node { mount: usize, node: NodeId },
}

/// Every readable filesystem of a device, under one tree.
pub struct Vfs {
    dev: Arc<dyn BlockDev>,
    mounts: Vec<Mount>,
    /// The device held one filesystem and no partition table: it is the root.
    bare: bool,
}

/// Opens the filesystem `kind` on `dev`, when strata can browse it.
pub fn open_fs(dev: PartDev, kind: FsKind) -> std::result::Result<Arc<dyn FileSystem>, String> {
    let r: Result<Arc<dyn FileSystem>> = match kind {
        FsKind::Ntfs => ntfs::NtfsFs::open(dev).map(|f| Arc::new(f) as _),
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => {
            ext::ExtFs::open(dev, kind).map(|f| Arc::new(f) as _)
        }
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => {
            fat::FatFs::open(dev, kind).map(|f| Arc::new(f) as _)
        }
        FsKind::Exfat => exfat::ExfatFs::open(dev).map(|f| Arc::new(f) as _),
        other => return Err(format!("browsing {} is not supported", other.name())),
    };
    r.map_err(|e| e.to_string())
}

impl Vfs {
    /// Reads the partition table of `dev` and opens every filesystem on it. A partition
    /// whose filesystem cannot be opened is kept with the reason, so that listing the top
    /// can say why it is missing.
    pub fn open(dev: Arc<dyn BlockDev>) -> Result<Vfs> {
        let table = crate::partition::probe(&*dev, 512)?;
        let mut mounts = Vec::new();
        let bare = table.scheme == crate::partition::Scheme::None;
        let parts: Vec<(u32, u64, u64)> = if bare {
            vec![(0, 0, dev.len())]
        } else {
            table
                .partitions
                .iter()
                .map(|p| (p.number, p.start, p.len))
                .collect()
        };
        for (number, start, len) in parts {
            let part = PartDev::new(dev.clone(), start, len)?;
            let probe = crate::fs::probe(&part);
            let (kind, label) = match &probe {
                Ok(Some(p)) => (Some(p.kind), p.label.clone()),
                _ => (None, String::new()),
            };
            let fs = match (kind, probe) {
                (Some(k), _) => open_fs(part, k),
                (None, Err(e)) => Err(format!("filesystem cannot be recognised: {e}")),
                (None, Ok(_)) => Err("no filesystem recognised".to_string()),
            };
            mounts.push(Mount {
                name: if bare {
                    String::new()
                } else {
                    format!("p{number}")
                },
                number,
                kind,
                label,
                size: len,
                fs,
            });
        }
        Ok(Vfs { dev, mounts, bare })
    }

    /// The partitions (one, unnamed, for a bare filesystem).
    /// Starts the device's prefetching (see [`BlockDev::start_prefetch`]).
    pub fn start_prefetch(&self) {
        self.dev.start_prefetch();
    }

    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// True when the device is one filesystem without a partition table.
    pub fn is_bare(&self) -> bool {
        self.bare
    }

    /// The filesystem of mount `i`, or why it cannot be browsed.
    pub fn fs(&self, i: usize) -> Result<&Arc<dyn FileSystem>> {
        let m = &self.mounts[i];
        m.fs.as_ref().map_err(|why| {
            let name = if m.name.is_empty() { "volume" } else { &m.name };
            Error::Invalid(format!("{name}: {why}"))
        })
    }

    /// Resolves a `/`-separated path (leading `/` optional; `.` and `..` allowed, `..`
    /// stops at the top). The first component names the partition (`p2`) unless the
    /// device is a bare filesystem. The last component is not followed if it is a link.
    pub fn resolve(&self, path: &str) -> Result<Target> {
        let parts = path::components(path);
        let (mount, rest) = if self.bare {
            (0, &parts[..])
        } else {
            let Some(first) = parts.first() else {
                return Ok(Target::Top);
            };
            let Some(i) = self.mounts.iter().position(|m| m.name == *first) else {
                return Err(Error::NotFound(format!(
                    "{path}: no partition named {first} (try `strata ls IMAGE`)"
                )));
            };
            (i, &parts[1..])
        };
        let fs = self.fs(mount)?;
        let mut node = fs.root();
        for (depth, name) in rest.iter().enumerate() {
            if depth > 0 {
                // Only directories can be walked through.
                let m = fs.metadata(node)?;
                if m.kind != NodeKind::Dir {
                    return Err(Error::NotFound(format!(
                        "{path}: {} is not a directory",
                        rest[..depth].join("/")
                    )));
                }
            }
            node = fs.lookup(node, name).map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!("{path}: no such file or directory")),
                e => e,
            })?;
        }
        Ok(Target::Node { mount, node })
    }

    /// Reads all of a node's `stream` into memory (small files, tests).
    pub fn read_all(fs: &dyn FileSystem, node: NodeId, stream: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = fs.read_at(node, stream, out.len() as u64, &mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
}
