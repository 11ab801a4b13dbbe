//! What every filesystem offers for browsing: the read-only [`FileSystem`] interface, its
//! node ids, kinds and metadata. Each filesystem implements it in its own `browse` module
//! ([`super::ntfs::browse`], [`super::ext::browse`], [`super::fat::browse`],
//! [`super::exfat::browse`]); [`crate::vfs`] puts them under one tree.

use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fs::FsKind;
use serde::Serialize;
use std::sync::Arc;

/// A node (file, directory, link…) of one filesystem. Stable for the life of the
/// [`FileSystem`] instance: the same file always has the same id.
pub type NodeId = u64;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (or an NTFS symbolic link or junction).
    Symlink,
    /// Block device node (listed, not readable).
    Block,
    /// Character device node (listed, not readable).
    Char,
    /// A named pipe.
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// An NTFS reparse point strata does not translate (not a symlink or junction).
    Reparse,
}

impl NodeKind {
    /// What it is, in words: "regular file", "directory", "FIFO"...
    pub fn noun(self) -> &'static str {
        match self {
            NodeKind::File => "regular file",
            NodeKind::Dir => "directory",
            NodeKind::Symlink => "symbolic link",
            NodeKind::Block => "block device",
            NodeKind::Char => "character device",
            NodeKind::Fifo => "FIFO",
            NodeKind::Socket => "socket",
            NodeKind::Reparse => "reparse point",
        }
    }

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Time {
    /// Whole seconds (negative before 1970).
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

impl Time {
    /// From an NTFS timestamp: 100 ns intervals since 1601-01-01 UTC.
    pub fn from_nt(t: u64) -> Time {
        const EPOCH_DIFF: i64 = 11_644_473_600;
        Time {
            // u64::MAX / 10^7 is far below i64::MAX: the reinterpretation is exact.
            secs: (t / 10_000_000).cast_signed() - EPOCH_DIFF,
            nanos: (t % 10_000_000) as u32 * 100,
        }
    }

    /// As a [`std::time::SystemTime`].
    pub fn to_system(self) -> std::time::SystemTime {
        let base = std::time::UNIX_EPOCH;
        if self.secs >= 0 {
            base + std::time::Duration::new(self.secs.unsigned_abs(), self.nanos)
        } else {
            base - std::time::Duration::from_secs(self.secs.unsigned_abs())
                + std::time::Duration::from_nanos(u64::from(self.nanos))
        }
    }
}

/// A named data stream besides a file's main contents (NTFS alternate data stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stream {
    /// The stream's name (without the file's).
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
}

/// What a filesystem knows about a node. Fields a filesystem does not store are `None`.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    /// What the node is.
    pub kind: NodeKind,
    /// Bytes of the main contents (files); length of the target (symlinks); 0 otherwise.
    pub size: u64,
    /// Last modification time.
    pub mtime: Option<Time>,
    /// Last access time.
    pub atime: Option<Time>,
    /// Inode or record change time.
    pub ctime: Option<Time>,
    /// Creation time.
    pub crtime: Option<Time>,
    /// Permission bits and file type, as in `st_mode` (ext only).
    pub mode: Option<u32>,
    /// Owner (ext only).
    pub uid: Option<u32>,
    /// Group (ext only).
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

/// Where the bytes of a file (or of one of its streams) lie on its filesystem's device,
/// so that a content identity can be taken from the image's block hashes instead of
/// reading the data ([`crate::catalog`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataMap {
    /// `(offset in the file, offset on the device, length)`, in file order, not
    /// overlapping. Bytes of the file that no run covers are zeros (holes); runs may
    /// reach past the file's end.
    pub runs: Vec<(u64, u64, u64)>,
    /// Bytes at and past this offset read as zeros whatever the device holds there (NTFS
    /// initialized size); the file size when the filesystem has no such notion.
    pub valid: u64,
}

/// What changed in a filesystem between two points, as [`FileSystem::changes`] finds it
/// from the byte ranges that differ: what a catalog built from the previous point's must
/// read again ([`crate::catalog::build`]).
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Nodes whose own record (inode, file record) lies in a changed range, and the
    /// filesystem's internal nodes (journal, metadata files), whose contents change
    /// without their record. Their ids are the catalog's inode numbers.
    pub nodes: std::collections::HashSet<NodeId>,
    /// Byte ranges (from the filesystem's start) whose change needs no more than the
    /// nodes above re-read: the record tables themselves, bitmaps, superblocks.
    pub explained: crate::ranges::Ranges,
}

/// How [`FileSystem::lookup`] compares names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Only the name as stored, as ntfs-3g looks names up.
    Exact,
    /// The name as stored if there is one, else the one entry equal to it ignoring case
    /// (as Windows does); several such entries and none exact: [`Error::Ambiguous`].
    Insensitive,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name as stored (Unicode; lossily decoded where the filesystem stores bytes that
    /// are not UTF-8).
    pub name: String,
    /// The entry's node.
    pub node: NodeId,
    /// What the entry is.
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

    /// The entry `name` of directory `dir`. [`Error::NotFound`] when there is none.
    ///
    /// NTFS honours `case` (a directory may hold names that differ only in case: ntfs-3g
    /// and Windows' case-sensitive directories write them). FAT and exFAT compare names
    /// ignoring case whatever `case` says (their names cannot differ only in case, and
    /// their kernel drivers ignore it); ext compares exactly whatever `case` says.
    fn lookup(&self, dir: NodeId, name: &str, case: Case) -> Result<NodeId>;

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

    /// Where the bytes of `node`'s contents (or of its named `stream`) lie on the device,
    /// when they are stored there as they read (not compressed, encrypted or kept inside
    /// the metadata); None otherwise, and for anything but a regular file.
    fn data_map(&self, node: NodeId, stream: &str) -> Result<Option<DataMap>> {
        let _ = (node, stream);
        Ok(None)
    }

    /// What the byte ranges `changed` (from the filesystem's start; the rest of the
    /// filesystem is as at the previous point) change: see [`Changes`]. None where the
    /// filesystem cannot tell (it then has to be walked whole), and where node ids are not
    /// the inode numbers a catalog records.
    fn changes(&self, changed: &crate::ranges::Ranges) -> Result<Option<Changes>> {
        let _ = changed;
        Ok(None)
    }

    /// Every byte range (from the filesystem's start) outside its own record that `node`'s
    /// listing, metadata or contents are read from: data and directory blocks, the blocks
    /// that map them, attribute blocks. Only for filesystems whose
    /// [`FileSystem::changes`] answers.
    fn footprint(&self, node: NodeId) -> Result<crate::ranges::Ranges> {
        let _ = node;
        Err(Error::Invalid("no footprint on this filesystem".into()))
    }

    /// Whether directory `dir`'s listing is kept, wholly or in part, in its own record
    /// (NTFS index roots, ext inline directories): then a changed record may mean a
    /// changed listing, whereas otherwise the listing depends on its
    /// [`FileSystem::footprint`] alone.
    fn listing_in_record(&self, dir: NodeId) -> bool {
        let _ = dir;
        true
    }

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
