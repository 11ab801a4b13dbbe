//! What a mount shows, as a `fuser::Filesystem`: the files of an image (one directory per
//! partition, or one filesystem) or, with `--raw`, the disk and its partitions as files.
//!
//! Every request runs under `catch_unwind`: a bug in an adapter fails that request with EIO
//! (fuser replies EIO for a reply dropped unanswered) and the mount keeps serving.

use crate::blockdev::BlockDev;
use crate::error::Error;
use crate::vfs::{FileSystem, Metadata, NodeId, NodeKind, Vfs};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, KernelConfig,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
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

/// Directory listings kept (see `ImageFs::dirs`).
const LISTINGS: usize = 16;
/// Largest extended attribute value Linux passes (XATTR_SIZE_MAX).
const XATTR_MAX: u64 = 65536;
/// Prefix under which NTFS alternate data streams appear, as with ntfs-3g's
/// `streams_interface=xattr`.
const STREAM_PREFIX: &str = "user.";

/// What the mount shows.
pub enum View {
    /// The files: every partition as `p1`, `p2`… at the top, or (`single`) one mount's
    /// filesystem as the root.
    Files { vfs: Vfs, single: Option<usize> },
    /// The disk and its partitions as read-only files (`disk.img`, `p1.img`…).
    Raw(Vec<(String, Arc<dyn BlockDev>)>),
}

impl View {
    /// Starts the chain's prefetch threads (after the fork of a background mount).
    pub fn start_prefetch(&self) {
        match self {
            View::Files { vfs, .. } => vfs.start_prefetch(),
            View::Raw(files) => files.iter().for_each(|(_, d)| d.start_prefetch()),
        }
    }
}

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

/// The mounted image.
pub struct ImageFs {
    view: View,
    uid: u32,
    gid: u32,
    /// Listings of the directories read last, by inode, so that a large directory read in
    /// several requests is listed once. (No per-open state: opendir is not used.)
    dirs: Mutex<lru::LruCache<u64, Arc<Vec<Listed>>>>,
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

/// The errno a strata error stands for.
fn errno(e: &Error) -> Errno {
    match e {
        Error::NotFound(_) => Errno::ENOENT,
        Error::Io { source, .. } => source.raw_os_error().map_or(Errno::EIO, Errno::from_i32),
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
            dirs: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(LISTINGS).expect("non-zero"),
            )),
            logged: Mutex::new(HashSet::new()),
            log,
            no_open: false,
            no_opendir: false,
        }
    }

    /// Logs an error once per distinct message and turns it into an errno.
    fn fail(&self, e: Error) -> Errno {
        if !matches!(e, Error::NotFound(_)) {
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
        vfs.fs(mount).map_err(|_| Errno::EIO)
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
                            node: vfs.fs(*m).map_err(|_| Errno::EIO)?.root(),
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
            Node::Top => Ok(self.base_attr(ino, FileType::Directory, 0)),
            Node::Raw(i) => {
                let View::Raw(files) = &self.view else {
                    return Err(Errno::ENOENT);
                };
                Ok(self.base_attr(ino, FileType::RegularFile, files[i].1.len()))
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
                    self.ino(m, vfs.fs(m).map_err(|_| Errno::EIO)?.root())
                }
            },
            Node::Raw(_) => Err(Errno::ENOTDIR),
            Node::Fs { mount, node } => {
                let fs = self.fs(mount)?;
                let child = fs.lookup(node, name).map_err(|e| self.fail(e))?;
                self.ino(mount, child)
            }
        }
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
    fn listing(&self, ino: INodeNo) -> Res<Arc<Vec<Listed>>> {
        let lock = || self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = lock().get(&ino.0) {
            return Ok(l.clone());
        }
        let l = Arc::new(self.list(ino)?);
        lock().put(ino.0, l.clone());
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
        // directory, and cached symlink targets; each only if the kernel offers it.
        for flag in [
            F::FUSE_DO_READDIRPLUS,
            F::FUSE_READDIRPLUS_AUTO,
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
            for (i, e) in l.iter().enumerate().skip(offset as usize) {
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
            for (i, e) in l.iter().enumerate().skip(offset as usize) {
                let attr = match self.attr(e.ino) {
                    Ok(a) => a,
                    // An entry whose metadata cannot be read is still listed; a lookup
                    // of it will report the error.
                    Err(_) => self.base_attr(e.ino, e.kind, 0),
                };
                let ttl = if e.name == b"." || e.name == b".." {
                    Duration::ZERO
                } else {
                    TTL
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
