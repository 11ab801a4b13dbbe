//! Files inside an image: a read-only filesystem layer over a [`BlockDev`].
//!
//! # From the top
//!
//! - [`FileSystem`] (defined in [`crate::fs::browse`]) is the one interface every filesystem
//!   offers: node ids, lookup of a name in a directory, directory listing, metadata,
//!   positioned reads of a file or of one of its named streams, and symbolic link targets.
//!   Methods take `&self` and the trait is `Send + Sync`, so the CLI, FUSE and Dokan
//!   front-ends can share one instance across threads. Each filesystem implements it in
//!   its own folder under `fs/` (`fs/ntfs/browse.rs`, `fs/ext/browse.rs`…).
//! - [`Vfs`] reads the partition table of a device and mounts every partition holding a
//!   filesystem strata can read as a directory `p1`, `p2`, … (the partition numbers), or the
//!   filesystem itself when the device holds a bare one. [`Vfs::resolve`] turns a
//!   `/`-separated path into a mount and a node.
//! - [`path`] escapes names that cannot be written safely on the destination.
//! - [`scan`] reads every file to find those that damage made unreadable (`verify`).
//!
//! Nothing here writes to the device: every adapter reads through [`BlockDev::read_at`].

pub mod path;
pub mod scan;

use crate::blockdev::BlockDev;
use crate::cache::Cache;
use crate::error::{Error, Result};
pub use crate::fs::browse::{
    Case, DataMap, DirEntry, FileSystem, Metadata, NodeId, NodeKind, PartDev, Stream, Time,
};
use crate::fs::{exfat, ext, fat, ntfs, FsKind};
use std::sync::Arc;

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
    /// Where the partition starts on the device, in bytes.
    pub start: u64,
    /// The filesystem cannot be read because the image data under it is damaged (an
    /// integrity failure, or damaged filesystem metadata; not a missing or unsupported
    /// filesystem).
    pub damaged: bool,
    /// The filesystem, or a feature it uses, is one strata does not read.
    pub unsupported: bool,
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
    mounts: Vec<Mount>,
    /// The device held one filesystem and no partition table: it is the root.
    bare: bool,
}

/// Opens the filesystem `kind` on `dev`, when strata can browse it. What it decodes (NTFS
/// compressed files) is kept in `cache`.
pub fn open_fs(dev: PartDev, kind: FsKind, cache: &Arc<Cache>) -> Result<Arc<dyn FileSystem>> {
    match kind {
        FsKind::Ntfs => ntfs::browse::NtfsFs::open(dev, cache.units()).map(|f| Arc::new(f) as _),
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => {
            ext::browse::ExtFs::open(dev, kind).map(|f| Arc::new(f) as _)
        }
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => {
            fat::browse::FatFs::open(dev, kind).map(|f| Arc::new(f) as _)
        }
        FsKind::Exfat => exfat::browse::ExfatFs::open(dev).map(|f| Arc::new(f) as _),
        other => Err(Error::UnsupportedFeature(format!(
            "browsing {} is not supported",
            other.name()
        ))),
    }
}

impl Vfs {
    /// Reads the partition table of `dev`, a disk of `sector_size`-byte sectors (an image
    /// header's), as `info` does ([`crate::layout::partition_table`]), and opens every
    /// filesystem on it. A partition whose filesystem cannot be opened is kept with the
    /// reason, so that listing the top can say why it is missing. The filesystems keep what
    /// they decode in `cache`: the one of the chain `dev` reads ([`Chain::cache`]), so that
    /// one ceiling bounds the chain's chunks and the decoded units together.
    ///
    /// [`Chain::cache`]: crate::chain::Chain::cache
    pub fn open(dev: Arc<dyn BlockDev>, sector_size: u32, cache: &Arc<Cache>) -> Result<Vfs> {
        let table = crate::layout::partition_table(&*dev, sector_size)?;
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
            let (mut damaged, mut unsupported) = (false, false);
            let fs = match (kind, probe) {
                (Some(k), _) => open_fs(part, k, cache).map_err(|e| {
                    damaged = e.is_integrity_failure();
                    unsupported = matches!(e, Error::UnsupportedFeature(_));
                    e.to_string()
                }),
                (None, Err(e)) => {
                    damaged = e.is_integrity_failure();
                    Err(format!("filesystem cannot be recognised: {e}"))
                }
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
                start,
                fs,
                damaged,
                unsupported,
            });
        }
        Ok(Vfs { mounts, bare })
    }

    /// The partitions (one, unnamed, for a bare filesystem).
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
            if m.damaged {
                Error::Damaged(format!("{name}: {why}"))
            } else if m.unsupported {
                Error::UnsupportedFeature(format!("{name}: {why}"))
            } else {
                Error::Invalid(format!("{name}: {why}"))
            }
        })
    }

    /// Resolves a `/`-separated path (leading `/` optional; `.` and `..` allowed, `..`
    /// stops at the top). The first component names the partition (`p2`) unless the
    /// device is a bare filesystem. The last component is not followed if it is a link.
    /// Names are matched exactly or else ignoring case ([`Case::Insensitive`]).
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
                    return Err(Error::NotADirectory(format!(
                        "{path}: {} is not a directory",
                        rest[..depth].join("/")
                    )));
                }
            }
            // Names are looked up as Windows does (NTFS, FAT): the name as stored, else the
            // one name equal to it ignoring case, never a guess among several.
            node = fs
                .lookup(node, name, Case::Insensitive)
                .map_err(|e| match e {
                    Error::NotFound(_) => {
                        Error::NotFound(format!("{path}: no such file or directory"))
                    }
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
