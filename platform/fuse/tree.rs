//! What a mount shows, as a `fuser::Filesystem`: the files of an image (one directory per
//! partition, or one filesystem) or, with `--raw`, the disk and its partitions as files.
//!
//! Every request runs under `catch_unwind`: a bug in an adapter fails that request with EIO
//! (fuser replies EIO for a reply dropped unanswered) and the mount keeps serving.

use crate::error::Error;
pub use crate::point::View;
use crate::vfs::{Case, FileSystem, Metadata, NodeId, NodeKind, Vfs};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, KernelConfig,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// The image never changes while mounted: the kernel may keep names and attributes long.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// The top directory's inode (FUSE's root).
const ROOT: u64 = 1;
/// Node ids of every adapter fit in 48 bits (NTFS file record numbers are 48-bit; the
/// others are counters), so an inode is `(mount + 1) << 48 | node`: stable, and unique
/// across partitions.
const NODE_BITS: u32 = 48;
const NODE_MASK: u64 = (1 << NODE_BITS) - 1;
/// Largest read buffer a worker keeps between requests (the kernel asks for at most
/// 1 MiB at a time unless told otherwise).
const MAX_KEPT_BUF: usize = 4 << 20;

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Directory listings kept (see `ImageFs::dirs`): a walk comes back to a directory's
/// entries after listing its subdirectories, so more than its depth.
const LISTINGS: usize = 64;
/// Entries kept over all listings (a few hundred bytes each).
const LISTED_ENTRIES: usize = 1 << 19;
/// Largest extended attribute value Linux passes (XATTR_SIZE_MAX).
const XATTR_MAX: u64 = 65536;
/// Prefix under which NTFS alternate data streams appear, as with ntfs-3g's
/// `streams_interface=xattr`.
const STREAM_PREFIX: &str = "user.";

/// A node of the mount.
#[derive(Clone, Copy)]
enum Node {
    /// The top directory of a multi-partition or raw mount.
    Top,
    /// Node `node` of mount `mount`.
    Fs { mount: usize, node: NodeId },
    /// Raw file `i`.
    Raw(usize),
}

/// One listed entry of an open directory.
struct Listed {
    ino: u64,
    kind: FileType,
    name: Vec<u8>,
}

/// A directory's listing, with its entries sorted by name for lookups (built on the first
/// lookup).
struct Listing {
    entries: Vec<Listed>,
    by_name: OnceLock<Vec<u32>>,
}

impl Listing {
    fn new(entries: Vec<Listed>) -> Listing {
        Listing {
            entries,
            by_name: OnceLock::new(),
        }
    }

    /// The inode of the entry named exactly `name` (not `.` or `..`); the first one listed
    /// when a damaged directory holds a name twice.
    fn find(&self, name: &[u8]) -> Option<u64> {
        if name == b"." || name == b".." {
            return None;
        }
        let order = self.by_name.get_or_init(|| {
            let mut v: Vec<u32> = (0..self.entries.len() as u32).collect();
            // Stable: equal names keep the listing's order.
            v.sort_by(|a, b| {
                self.entries[*a as usize]
                    .name
                    .cmp(&self.entries[*b as usize].name)
            });
            v
        });
        let at = order.partition_point(|i| self.entries[*i as usize].name.as_slice() < name);
        let e = &self.entries[*order.get(at)? as usize];
        (e.name == name).then_some(e.ino)
    }
}

/// The mounted image.
pub struct ImageFs {
    view: View,
    uid: u32,
    gid: u32,
    /// Listings of the directories read last, by inode, so that a large directory read in
    /// several requests is listed once. (No per-open state: opendir is not used.)
    /// Lookups of names in them are answered from the listing (see `lookup_ino`).
    /// With the number of entries they hold.
    dirs: Mutex<(lru::LruCache<u64, Arc<Listing>>, usize)>,
    /// Errors already logged (a damaged chunk is reported once, not on every read).
    logged: Mutex<HashSet<String>>,
    log: fn(&str),
    /// The kernel skips opens (and opendirs) once they answer ENOSYS; older kernels would
    /// fail the open instead.
    no_open: bool,
    no_opendir: bool,
}

fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File | NodeKind::Reparse => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Block => FileType::BlockDevice,
        NodeKind::Char => FileType::CharDevice,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Socket => FileType::Socket,
    }
}

/// The errno a strata error stands for: the one place a kind becomes an errno.
///
/// Damaged filesystem metadata is EUCLEAN ("Structure needs cleaning"), as the kernel's
/// ext4 answers for the same damage; damaged image data (a chunk that fails its check) is
/// EIO; a feature strata does not decode is EOPNOTSUPP.
pub(crate) fn errno(e: &Error) -> Errno {
    match e {
        Error::NotFound(_) => Errno::ENOENT,
        Error::NotADirectory(_) => Errno::ENOTDIR,
        Error::IsADirectory(_) => Errno::EISDIR,
        Error::DamagedMetadata { .. } => Errno::from_i32(libc::EUCLEAN),
        Error::UnsupportedFeature(_) | Error::Unsupported { .. } => Errno::EOPNOTSUPP,
        Error::Interrupted => Errno::EINTR,
        // An encrypted image whose key was not given.
        Error::Key { .. } => Errno::EACCES,
        Error::Io { source, .. } => source.raw_os_error().map_or(Errno::EIO, Errno::from_i32),
        // Image damage (Corrupt, Incomplete, BrokenChain, Damaged), a name that matches
        // several entries ignoring case (Ambiguous), anything else.
        _ => Errno::EIO,
    }
}

type Res<T> = std::result::Result<T, Errno>;

/// Runs one request, catching a panic so that none reaches fuser (the unanswered reply
/// then answers EIO).
fn guarded(what: &str, log: fn(&str), f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        log(&format!(
            "internal error in {what}; the request failed with EIO"
        ));
    }
}

impl ImageFs {
    /// A mount of `view`; `log` reports errors (stderr or syslog).
    pub fn new(view: View, log: fn(&str)) -> ImageFs {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        ImageFs {
            view,
            uid,
            gid,
            dirs: Mutex::new((lru::LruCache::unbounded(), 0)),
            logged: Mutex::new(HashSet::new()),
            log,
            no_open: false,
            no_opendir: false,
        }
    }

    /// Logs an error once per distinct message and turns it into an errno.
    fn fail(&self, e: Error) -> Errno {
        // A missing name or a wrong kind of node is an answer, not a failure to report.
        if !matches!(
            e,
            Error::NotFound(_) | Error::NotADirectory(_) | Error::IsADirectory(_)
        ) {
            let msg = e.to_string();
            let mut seen = self.logged.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() < 100_000 && seen.insert(msg.clone()) {
                (self.log)(&msg);
            }
        }
        errno(&e)
    }

    fn vfs(&self) -> Option<(&Vfs, Option<usize>)> {
        match &self.view {
            View::Files { vfs, single } => Some((vfs, *single)),
            View::Raw(_) => None,
        }
    }

    fn fs(&self, mount: usize) -> Res<&Arc<dyn FileSystem>> {
        let (vfs, _) = self.vfs().ok_or(Errno::ENOENT)?;
        vfs.fs(mount).map_err(|e| self.fail(e))
    }

    fn node(&self, ino: INodeNo) -> Res<Node> {
        let ino = ino.0;
        match &self.view {
            View::Raw(files) => match ino {
                ROOT => Ok(Node::Top),
                i if i >= 2 && ((i - 2) as usize) < files.len() => Ok(Node::Raw((i - 2) as usize)),
                _ => Err(Errno::ENOENT),
            },
            View::Files { vfs, single } => {
                if ino == ROOT {
                    return match single {
                        Some(m) => Ok(Node::Fs {
                            mount: *m,
                            node: vfs.fs(*m).map_err(|e| self.fail(e))?.root(),
                        }),
                        None => Ok(Node::Top),
                    };
                }
                let mount = ((ino >> NODE_BITS) as usize).checked_sub(1);
                match mount {
                    Some(m) if m < vfs.mounts().len() => Ok(Node::Fs {
                        mount: m,
                        node: ino & NODE_MASK,
                    }),
                    _ => Err(Errno::ENOENT),
                }
            }
        }
    }

    fn ino(&self, mount: usize, node: NodeId) -> Res<u64> {
        if let Some((vfs, Some(m))) = self.vfs() {
            if m == mount && vfs.fs(m).is_ok_and(|fs| fs.root() == node) {
                return Ok(ROOT);
            }
        }
        if node > NODE_MASK {
            return Err(Errno::EOVERFLOW);
        }
        Ok(((mount as u64 + 1) << NODE_BITS) | node)
    }

    fn time(t: Option<crate::vfs::Time>) -> SystemTime {
        t.map_or(SystemTime::UNIX_EPOCH, |t| t.to_system())
    }

    /// Every time of `a` set to `t`, where known.
    fn set_times(a: &mut FileAttr, t: Option<crate::vfs::Time>) {
        if let Some(t) = t {
            let t = t.to_system();
            (a.atime, a.mtime, a.ctime, a.crtime) = (t, t, t, t);
        }
    }

    fn base_attr(&self, ino: u64, kind: FileType, size: u64) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm: if kind == FileType::Directory {
                0o555
            } else {
                0o444
            },
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            // Large: cp and friends size their buffers by it.
            blksize: 128 << 10,
            flags: 0,
        }
    }

    fn meta_attr(&self, ino: u64, m: &Metadata) -> FileAttr {
        let kind = file_type(m.kind);
        let mut a = self.base_attr(ino, kind, m.size);
        if let Some(bytes) = m.allocated {
            a.blocks = bytes.div_ceil(512);
        }
        if let Some(mode) = m.mode {
            a.perm = (mode & 0o7777) as u16;
        } else if kind == FileType::Symlink {
            a.perm = 0o777;
        }
        if let Some(n) = m.nlink {
            a.nlink = n;
        }
        a.uid = m.uid.unwrap_or(self.uid);
        a.gid = m.gid.unwrap_or(self.gid);
        a.mtime = Self::time(m.mtime);
        a.atime = Self::time(m.atime.or(m.mtime));
        a.ctime = Self::time(m.ctime.or(m.mtime));
        a.crtime = Self::time(m.crtime.or(m.mtime));
        a
    }

    fn attr(&self, ino: u64) -> Res<FileAttr> {
        match self.node(INodeNo(ino))? {
            Node::Top => {
                let mut a = self.base_attr(ino, FileType::Directory, 0);
                if let View::Raw(files) = &self.view {
                    Self::set_times(&mut a, files.first().and_then(|f| f.1.created()));
                }
                Ok(a)
            }
            Node::Raw(i) => {
                let View::Raw(files) = &self.view else {
                    return Err(Errno::ENOENT);
                };
                let dev = &files[i].1;
                let mut a = self.base_attr(ino, FileType::RegularFile, dev.len());
                // The disk as it was when the image was made.
                Self::set_times(&mut a, dev.created());
                Ok(a)
            }
            Node::Fs { mount, node } => {
                let m = self.fs(mount)?.metadata(node).map_err(|e| self.fail(e))?;
                Ok(self.meta_attr(ino, &m))
            }
        }
    }

    fn lookup_ino(&self, parent: INodeNo, name: &OsStr) -> Res<u64> {
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        match self.node(parent)? {
            Node::Top => match &self.view {
                View::Raw(files) => files
                    .iter()
                    .position(|(n, _)| n == name)
                    .map(|i| i as u64 + 2)
                    .ok_or(Errno::ENOENT),
                View::Files { vfs, .. } => {
                    let m = vfs
                        .mounts()
                        .iter()
                        .position(|m| m.name == name && m.fs.is_ok())
                        .ok_or(Errno::ENOENT)?;
                    self.ino(m, vfs.fs(m).map_err(|e| self.fail(e))?.root())
                }
            },
            Node::Raw(_) => Err(Errno::ENOTDIR),
            Node::Fs { mount, node } => {
                // A walk lists a directory, then looks up each of its entries: answered
                // from the listing, a lookup costs no filesystem work (a lookup of ext
                // or FAT scans the directory). A name not listed as typed goes to the
                // filesystem, which may match it otherwise (FAT and NTFS ignore case).
                let cached = self.dirs_lock().0.get(&parent.0).cloned();
                if let Some(ino) = cached.and_then(|l| l.find(name.as_bytes())) {
                    return Ok(ino);
                }
                let fs = self.fs(mount)?;
                // Exact, as ntfs-3g and the kernel's ext4 look names up (FAT and exFAT
                // ignore case whatever the mode, as the kernel's drivers do).
                let child = fs
                    .lookup(node, name, Case::Exact)
                    .map_err(|e| self.fail(e))?;
                self.ino(mount, child)
            }
        }
    }

    fn dirs_lock(&self) -> std::sync::MutexGuard<'_, (lru::LruCache<u64, Arc<Listing>>, usize)> {
        self.dirs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn list(&self, ino: INodeNo) -> Res<Vec<Listed>> {
        let parent_ino = ino.0;
        let mut out = vec![
            Listed {
                ino: parent_ino,
                kind: FileType::Directory,
                name: b".".to_vec(),
            },
            Listed {
                ino: ROOT,
                kind: FileType::Directory,
                name: b"..".to_vec(),
            },
        ];
        match self.node(ino)? {
            Node::Top => match &self.view {
                View::Raw(files) => {
                    for (i, (name, _)) in files.iter().enumerate() {
                        out.push(Listed {
                            ino: i as u64 + 2,
                            kind: FileType::RegularFile,
                            name: name.as_bytes().to_vec(),
                        });
                    }
                }
                View::Files { vfs, .. } => {
                    for (i, m) in vfs.mounts().iter().enumerate() {
                        if let Ok(fs) = &m.fs {
                            out.push(Listed {
                                ino: self.ino(i, fs.root())?,
                                kind: FileType::Directory,
                                name: m.name.as_bytes().to_vec(),
                            });
                        }
                    }
                }
            },
            Node::Raw(_) => return Err(Errno::ENOTDIR),
            Node::Fs { mount, node } => {
                let fs = self.fs(mount)?;
                for e in fs.read_dir(node).map_err(|e| self.fail(e))? {
                    out.push(Listed {
                        ino: self.ino(mount, e.node)?,
                        kind: file_type(e.kind),
                        name: e.name.into_bytes(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The listing of directory `ino`, kept for the next requests of the same walk.
    fn listing(&self, ino: INodeNo) -> Res<Arc<Listing>> {
        if let Some(l) = self.dirs_lock().0.get(&ino.0) {
            return Ok(l.clone());
        }
        let l = Arc::new(Listing::new(self.list(ino)?));
        let mut g = self.dirs_lock();
        let (dirs, entries) = &mut *g;
        if let Some(old) = dirs.put(ino.0, l.clone()) {
            *entries -= old.entries.len();
        }
        *entries += l.entries.len();
        // The newest listing stays whatever its size: its reads are still to come.
        while (dirs.len() > LISTINGS || *entries > LISTED_ENTRIES) && dirs.len() > 1 {
            match dirs.pop_lru() {
                Some((_, old)) => *entries -= old.entries.len(),
                None => break,
            }
        }
        Ok(l)
    }

    /// Reads from `offset` into `buf`; returns the bytes read (fewer at the end).
    fn read_into(&self, ino: INodeNo, offset: u64, buf: &mut [u8]) -> Res<usize> {
        match self.node(ino)? {
            Node::Top => Err(Errno::EISDIR),
            Node::Raw(i) => {
                let View::Raw(files) = &self.view else {
                    return Err(Errno::ENOENT);
                };
                let dev = &files[i].1;
                let n = dev.len().saturating_sub(offset).min(buf.len() as u64) as usize;
                dev.read_at(offset, &mut buf[..n])
                    .map_err(|e| self.fail(e))?;
                Ok(n)
            }
            Node::Fs { mount, node } => {
                let fs = self.fs(mount)?;
                let mut got = 0;
                while got < buf.len() {
                    let n = fs
                        .read_at(node, "", offset + got as u64, &mut buf[got..])
                        .map_err(|e| self.fail(e))?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                Ok(got)
            }
        }
    }

    /// Names of the extended attributes of `ino`: the filesystem's, then each NTFS stream
    /// as `user.<name>`.
    fn xattr_names(&self, ino: INodeNo) -> Res<Vec<String>> {
        let Node::Fs { mount, node } = self.node(ino)? else {
            return Ok(Vec::new());
        };
        let fs = self.fs(mount)?;
        let mut names = fs.xattr_names(node).map_err(|e| self.fail(e))?;
        let m = fs.metadata(node).map_err(|e| self.fail(e))?;
        names.extend(
            m.streams
                .iter()
                .map(|s| format!("{STREAM_PREFIX}{}", s.name)),
        );
        Ok(names)
    }

    fn xattr_value(&self, ino: INodeNo, name: &OsStr) -> Res<Vec<u8>> {
        let Node::Fs { mount, node } = self.node(ino)? else {
            return Err(Errno::ENODATA);
        };
        let name = name.to_str().ok_or(Errno::ENODATA)?;
        let fs = self.fs(mount)?;
        if let Some(stream) = name.strip_prefix(STREAM_PREFIX) {
            let m = fs.metadata(node).map_err(|e| self.fail(e))?;
            if let Some(s) = m.streams.iter().find(|s| s.name == stream) {
                if s.size > XATTR_MAX {
                    return Err(Errno::E2BIG);
                }
                return Vfs::read_all(&**fs, node, &s.name).map_err(|e| self.fail(e));
            }
        }
        match fs.xattr(node, name) {
            Ok(v) => Ok(v),
            Err(Error::NotFound(_)) => Err(Errno::ENODATA),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn statfs_blocks(&self) -> u64 {
        let bytes: u64 = match &self.view {
            View::Raw(files) => files.first().map_or(0, |f| f.1.len()),
            View::Files { vfs, single } => vfs
                .mounts()
                .iter()
                .enumerate()
                .filter(|(i, _)| single.is_none_or(|s| s == *i))
                .map(|(_, m)| m.size)
                .sum(),
        };
        bytes / 4096
    }
}

/// Sends an xattr reply: the size when asked for it (`size` 0), the data when it fits,
/// ERANGE otherwise.
fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() <= size as usize {
        reply.data(data);
    } else {
        reply.error(Errno::ERANGE);
    }
}

impl fuser::Filesystem for ImageFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        use fuser::InitFlags as F;
        // readdirplus (names with attributes in one request), parallel lookups in one
        // directory, and cached symlink targets; each only if the kernel offers it. Not
        // FUSE_READDIRPLUS_AUTO: with it the kernel asks for attributes with a
        // directory's first batch only, and a walk (find, tar, a file manager) then looks
        // up every other entry in its own round trip: a mounted find of a Linux root took
        // 25,000 lookups and twice the time.
        for flag in [
            F::FUSE_DO_READDIRPLUS,
            F::FUSE_PARALLEL_DIROPS,
            F::FUSE_CACHE_SYMLINKS,
        ] {
            if config.capabilities().contains(flag) {
                let _ = config.add_capabilities(flag);
            }
        }
        let caps = config.capabilities();
        self.no_open = caps.contains(F::FUSE_NO_OPEN_SUPPORT);
        self.no_opendir = caps.contains(F::FUSE_NO_OPENDIR_SUPPORT);
        // Large reads: ask for as much readahead as the kernel allows.
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        guarded("lookup", self.log, || {
            match self.lookup_ino(parent, name).and_then(|i| self.attr(i)) {
                Ok(a) => reply.entry(&TTL, &a, Generation(0)),
                Err(e) => reply.error(e),
            }
        })
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        guarded("getattr", self.log, || match self.attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        })
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        guarded("readlink", self.log, || {
            let r = match self.node(ino) {
                Ok(Node::Fs { mount, node }) => self
                    .fs(mount)
                    .and_then(|fs| fs.read_link(node).map_err(|e| self.fail(e))),
                Ok(_) => Err(Errno::EINVAL),
                Err(e) => Err(e),
            };
            match r {
                Ok(t) => reply.data(t.as_bytes()),
                Err(e) => reply.error(e),
            }
        })
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        guarded("open", self.log, || {
            if flags.acc_mode() != OpenAccMode::O_RDONLY {
                return reply.error(Errno::EROFS);
            }
            match self.node(ino) {
                // Nothing is kept per open file, so ENOSYS tells the kernel to stop sending
                // opens and releases (two of the three requests a small file costs); it then
                // keeps its page cache across opens, as FOPEN_KEEP_CACHE would.
                Ok(_) if self.no_open => reply.error(Errno::ENOSYS),
                // The data never changes: the kernel may keep its page cache across opens.
                Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(e),
            }
        })
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        guarded("read", self.log, || {
            // Each worker reuses one buffer: a fresh one per request cost page faults and
            // zeroing on every read.
            READ_BUF.with(|b| {
                let mut b = b.borrow_mut();
                let size = size as usize;
                let mut own;
                let buf = if size <= MAX_KEPT_BUF {
                    if b.len() < size {
                        b.resize(size, 0);
                    }
                    &mut b[..size]
                } else {
                    own = vec![0u8; size];
                    &mut own[..]
                };
                match self.read_into(ino, offset, buf) {
                    Ok(n) => reply.data(&buf[..n]),
                    Err(e) => reply.error(e),
                }
            })
        })
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        guarded("opendir", self.log, || match self.node(ino) {
            // As for files: nothing is kept per open directory, so ENOSYS spares the
            // kernel's opendir and releasedir requests (two of the three a directory of a
            // walk costs), and it keeps the listings it has read (FOPEN_CACHE_DIR).
            Ok(_) if self.no_opendir => reply.error(Errno::ENOSYS),
            Ok(_) => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Err(e) => reply.error(e),
        })
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        guarded("readdir", self.log, || {
            let l = match self.listing(ino) {
                Ok(l) => l,
                Err(e) => return reply.error(e),
            };
            for (i, e) in l.entries.iter().enumerate().skip(offset as usize) {
                if reply.add(
                    INodeNo(e.ino),
                    i as u64 + 1,
                    e.kind,
                    OsStr::from_bytes(&e.name),
                ) {
                    break;
                }
            }
            reply.ok()
        })
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        guarded("readdirplus", self.log, || {
            let l = match self.listing(ino) {
                Ok(l) => l,
                Err(e) => return reply.error(e),
            };
            for (i, e) in l.entries.iter().enumerate().skip(offset as usize) {
                let (attr, ttl) = match self.attr(e.ino) {
                    Ok(a) if e.name != b"." && e.name != b".." => (a, TTL),
                    Ok(a) => (a, Duration::ZERO),
                    // An entry whose metadata cannot be read is still listed, with
                    // attributes that expire at once (a size of 0 kept for a day would
                    // show the file empty): the next use looks it up, which reports the
                    // error.
                    Err(_) => (self.base_attr(e.ino, e.kind, 0), Duration::ZERO),
                };
                if reply.add(
                    INodeNo(e.ino),
                    i as u64 + 1,
                    OsStr::from_bytes(&e.name),
                    &ttl,
                    &attr,
                    Generation(0),
                ) {
                    break;
                }
            }
            reply.ok()
        })
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(self.statfs_blocks(), 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        guarded("getxattr", self.log, || match self.xattr_value(ino, name) {
            Ok(v) => reply_xattr(reply, size, &v),
            Err(e) => reply.error(e),
        })
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        guarded("listxattr", self.log, || match self.xattr_names(ino) {
            Ok(names) => {
                let mut data = Vec::new();
                for n in names {
                    data.extend_from_slice(n.as_bytes());
                    data.push(0);
                }
                reply_xattr(reply, size, &data)
            }
            Err(e) => reply.error(e),
        })
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        if mask.contains(fuser::AccessFlags::W_OK) {
            reply.error(Errno::EROFS)
        } else {
            reply.ok()
        }
    }

    // Everything that would change the image is refused (the mount is read-only too, so
    // the kernel refuses most of these before they get here).

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS)
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(names: &[&str]) -> Listing {
        Listing::new(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| Listed {
                    ino: 10 + i as u64,
                    kind: FileType::RegularFile,
                    name: n.as_bytes().to_vec(),
                })
                .collect(),
        )
    }

    #[test]
    fn errors_become_errno() {
        let cases = [
            (Error::NotFound("x".into()), libc::ENOENT),
            (Error::NotADirectory("x".into()), libc::ENOTDIR),
            (Error::IsADirectory("x".into()), libc::EISDIR),
            (
                Error::damaged_metadata("ext", Some(4096), "inode 12: bad"),
                libc::EUCLEAN,
            ),
            (Error::UnsupportedFeature("EFS".into()), libc::EOPNOTSUPP),
            (Error::corrupt("i", "chunk", 0, "bad"), libc::EIO),
            (Error::Damaged("p2: chunk".into()), libc::EIO),
            (Error::Ambiguous("a, A".into()), libc::EIO),
            (
                Error::io("i", "read", std::io::Error::from_raw_os_error(libc::EACCES)),
                libc::EACCES,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(errno(&e).code(), want, "{e}");
        }
    }

    #[test]
    fn listing_finds_exact_names_only() {
        let l = listing(&[".", "..", "b", "A", "a", "ab", "b"]);
        assert_eq!(l.find(b"A"), Some(13));
        assert_eq!(l.find(b"a"), Some(14));
        assert_eq!(l.find(b"ab"), Some(15));
        // The first of a name listed twice, as a scan of the directory would find.
        assert_eq!(l.find(b"b"), Some(12));
        for missing in [&b"B"[..], b"", b"aa", b"c", b"0", b".", b".."] {
            assert_eq!(
                l.find(missing),
                None,
                "{:?}",
                String::from_utf8_lossy(missing)
            );
        }
    }
}
