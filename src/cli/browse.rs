//! `strata ls`, `cat` and `cp`: files inside an image, through [`crate::vfs::Vfs`].

use super::xattr;
use crate::chain::ResolveOptions;
use crate::error::{Error, Result};
use crate::point::open_vfs;
use crate::progress::{check_interrupt, Progress};
use crate::vfs::path::escape_name;
use crate::vfs::{Case, FileSystem, Metadata, NodeId, NodeKind, Target, Time, Vfs};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Files larger than this get a progress bar while they are copied.
const PROGRESS_MIN_BYTES: u64 = 64 << 20;
/// Read size for `cat` and `cp`.
const BUF_BYTES: usize = 1 << 20;

/// Default ceiling of decompressed data browsing and mounts keep in memory
/// (`--cache-size`).
pub const DEFAULT_BROWSE_CACHE_BYTES: u64 = 128 << 20;

/// The memory ceiling option of the browsing commands and `mount`.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// Most decompressed data kept in memory, e.g. 64M, 1G (default 128M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: Option<u64>,
}

impl CacheArgs {
    /// The ceiling in bytes.
    pub fn bytes(&self) -> u64 {
        self.cache_size.unwrap_or(DEFAULT_BROWSE_CACHE_BYTES)
    }
}

/// Smallest `--cache-size`: a few chunks, so that reads do not decompress a chunk per
/// block.
const MIN_CACHE_BYTES: u64 = 8 << 20;

/// Parses a `--cache-size` ([`parse_bytes`]), at least [`MIN_CACHE_BYTES`].
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let bytes = parse_bytes(s)?;
    if bytes < MIN_CACHE_BYTES {
        return Err("below the minimum of 8M".into());
    }
    Ok(bytes)
}

/// Parses a size (clap names the argument and its value in the message): bytes, or a number with K, M, G or T (powers of 1024; `MiB`, `MB`, `m`
/// alike). Hand-written: a dozen lines, where a crate would add a dependency for one flag.
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| "not a size (e.g. 256M)".to_string())?;
    let shift = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches('b')
        .trim_end_matches('i')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err("unknown unit (use K, M, G or T)".into()),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| "too large".to_string())
}

/// Options of `strata ls`.
pub struct LsOptions {
    pub long: bool,
    pub recursive: bool,
    pub json: bool,
    /// Where to look for parent images.
    pub resolve: ResolveOptions,
    /// Ceiling of decompressed data kept in memory.
    pub cache_bytes: u64,
}

/// A partition directory at the top of a listing.
struct MountInfo {
    number: u32,
    /// Filesystem name (empty when none was recognised).
    fs: String,
    label: String,
    /// Why its files cannot be listed.
    error: Option<String>,
    /// The error is a failure ([`unreadable`]), not a partition with nothing to browse.
    failed: bool,
}

/// True when the partition of `m` holds a filesystem strata should read but cannot (damage,
/// or a filesystem that fails to open); false for one that reads, and for one holding
/// nothing strata browses (swap, an encrypted volume, no filesystem).
fn unreadable(m: &crate::vfs::Mount) -> bool {
    use crate::fs::FsKind;
    m.fs.is_err()
        && (m.damaged
            || !matches!(
                m.kind,
                None | Some(FsKind::Swap | FsKind::Luks | FsKind::BitLocker)
            ))
}

/// One listed entry.
struct Entry {
    /// Full path from the top, `/`-separated.
    path: String,
    name: String,
    meta: Metadata,
    target: Option<String>,
    /// For a partition directory: what it holds.
    mount: Option<MountInfo>,
    /// Extended attributes: (name with namespace, value).
    xattrs: Vec<(String, Vec<u8>)>,
}

pub(super) fn fmt_time(t: Option<Time>) -> String {
    match t {
        Some(t) if t.secs >= 0 => humantime::format_rfc3339_seconds(t.to_system()).to_string(),
        Some(t) => format!("@{}", t.secs),
        None => "-".into(),
    }
}

/// Sets `key` (seconds) and `key_nsec` in `o` when `t` is known.
pub(super) fn json_time(
    o: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    t: Option<Time>,
) {
    if let Some(t) = t {
        o.insert(key.into(), t.secs.into());
        o.insert(format!("{key}_nsec"), t.nanos.into());
    }
}

impl Entry {
    fn json(&self) -> serde_json::Value {
        let m = &self.meta;
        let mut o = serde_json::json!({
            "path": self.path,
            "type": m.kind,
            "size": m.size,
        });
        let obj = o.as_object_mut().expect("object");
        for (k, t) in [
            ("mtime", m.mtime),
            ("atime", m.atime),
            ("ctime", m.ctime),
            ("crtime", m.crtime),
        ] {
            json_time(obj, k, t);
        }
        for (k, v) in [
            ("mode", m.mode),
            ("uid", m.uid),
            ("gid", m.gid),
            ("nlink", m.nlink),
        ] {
            if let Some(v) = v {
                obj.insert(k.into(), v.into());
            }
        }
        for (k, v) in [("ino", m.ino), ("allocated", m.allocated)] {
            if let Some(v) = v {
                obj.insert(k.into(), v.into());
            }
        }
        if let Some(t) = &self.target {
            obj.insert("target".into(), t.clone().into());
        }
        if !m.streams.is_empty() {
            obj.insert(
                "streams".into(),
                serde_json::to_value(&m.streams).expect("serialisable"),
            );
        }
        if !self.xattrs.is_empty() {
            // Values in hex, as `getfattr -e hex` gives them.
            let x: serde_json::Map<String, serde_json::Value> = self
                .xattrs
                .iter()
                .map(|(n, v)| {
                    let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
                    (n.clone(), format!("0x{hex}").into())
                })
                .collect();
            obj.insert("xattrs".into(), x.into());
        }
        if let Some(mi) = &self.mount {
            obj.insert("partition".into(), mi.number.into());
            obj.insert("filesystem".into(), mi.fs.clone().into());
            obj.insert("label".into(), mi.label.clone().into());
            if let Some(why) = &mi.error {
                obj.insert("error".into(), why.clone().into());
            }
        }
        o
    }

    fn text(&self, long: bool, full: bool) -> String {
        let shown = if full { &self.path } else { &self.name };
        if !long {
            return shown.clone();
        }
        let m = &self.meta;
        let mut line = format!(
            "{} {:>12} {:>20} {}",
            m.kind.letter(),
            m.size,
            fmt_time(m.mtime),
            shown
        );
        if let Some(t) = &self.target {
            line.push_str(&format!(" -> {t}"));
        }
        if let Some(mi) = &self.mount {
            let mut what = mi.fs.clone();
            if !mi.label.is_empty() {
                what.push_str(&format!(" \"{}\"", mi.label));
            }
            if let Some(why) = &mi.error {
                if !what.is_empty() {
                    what.push_str(": ");
                }
                if mi.failed {
                    what.push_str("cannot be read: ");
                }
                what.push_str(why);
            }
            line.push_str(&format!("  [{what}]"));
        }
        for s in &m.streams {
            line.push_str(&format!("\n{:>36} {}:{}", s.size, shown, s.name));
        }
        for (n, v) in &self.xattrs {
            line.push_str(&format!("\n{:>36} {} [{n}]", v.len(), shown));
        }
        line
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn entry(fs: &dyn FileSystem, path: String, name: String, node: NodeId) -> Result<Entry> {
    let meta = fs.metadata(node)?;
    let target = if meta.kind == NodeKind::Symlink {
        Some(fs.read_link(node)?)
    } else {
        None
    };
    let mut xattrs = Vec::new();
    for n in fs.xattr_names(node)? {
        let v = fs.xattr(node, &n)?;
        xattrs.push((n, v));
    }
    Ok(Entry {
        path,
        name,
        meta,
        target,
        mount: None,
        xattrs,
    })
}

struct Lister<'a> {
    opts: &'a LsOptions,
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    failed: bool,
    /// Some of the failures were damage in the image.
    damaged: bool,
    /// Directories being listed, root first (see [`enter`]).
    ancestors: Vec<NodeId>,
}

/// Longest path walked by `ls -R` and `cp -r`. Linux paths end at 4096 bytes; a longer one
/// in an image means a damaged directory that contains itself under another node id.
const MAX_PATH: usize = 4096;

/// The first `n` bytes of `s` (fewer at a character boundary): paths of a loop are long.
fn clip(s: &str, n: usize) -> &str {
    let cut = (0..=n.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..cut]
}

/// Checks that walking into directory `node` at `path` ends: refused when `node` is one of
/// the `ancestors` (a directory loop in damaged metadata) or the path grows past
/// [`MAX_PATH`] (a loop the filesystem gives fresh node ids to).
fn enter(fs: &dyn FileSystem, ancestors: &[NodeId], path: &str, node: NodeId) -> Result<()> {
    if ancestors.contains(&node) || path.len() > MAX_PATH {
        return Err(Error::damaged_metadata(
            fs.kind().name(),
            None,
            format_args!(
                "{}: directory loops back to one of its parents; not entered",
                clip(path, 200)
            ),
        ));
    }
    Ok(())
}

impl Lister<'_> {
    fn emit(&mut self, e: &Entry) -> Result<()> {
        let line = if self.opts.json {
            e.json().to_string()
        } else {
            e.text(self.opts.long, self.opts.recursive)
        };
        writeln!(self.out, "{line}").map_err(|err| Error::io("stdout", "cannot write", err))
    }

    fn warn(&mut self, path: &str, e: &Error) {
        let path = clip(path, 300);
        eprintln!("strata: {path}: {e}");
        self.note(e);
    }

    /// Reports `e`, which names its own subject.
    fn fail(&mut self, e: &Error) {
        eprintln!("strata: {e}");
        self.note(e);
    }

    fn note(&mut self, e: &Error) {
        self.failed = true;
        self.damaged |= e.is_integrity_failure();
    }

    /// Lists the children of directory `node` at `path`.
    fn dir(&mut self, fs: &dyn FileSystem, path: &str, node: NodeId) -> Result<()> {
        if let Err(e) = enter(fs, &self.ancestors, path, node) {
            self.warn(path, &e);
            return Ok(());
        }
        let mut children = match fs.read_dir(node) {
            Ok(c) => c,
            Err(e) => {
                self.warn(path, &e);
                return Ok(());
            }
        };
        self.ancestors.push(node);
        children.sort_by(|a, b| a.name.cmp(&b.name));
        for c in children {
            check_interrupt()?;
            let p = join(path, &c.name);
            match entry(fs, p.clone(), c.name.clone(), c.node) {
                Ok(e) => {
                    self.emit(&e)?;
                    if self.opts.recursive && e.meta.kind == NodeKind::Dir {
                        self.dir(fs, &p, c.node)?;
                    }
                }
                Err(e) => self.warn(&p, &e),
            }
        }
        self.ancestors.pop();
        Ok(())
    }
}

/// `path` (resolved to `target`) spelt as the filesystem stores its names, where lookups
/// ignore case (NTFS, FAT): `ls` and `cp` show and create the names on disk, not the typed
/// ones. Absolute, without `.`, `..` (applied, stopping at the top) or repeated slashes;
/// the top is `/`.
fn stored_path(vfs: &Vfs, path: &str, target: &Target) -> Result<String> {
    let Target::Node { mount, .. } = *target else {
        return Ok("/".into());
    };
    let parts = crate::vfs::path::components(path);
    let rest = if vfs.is_bare() {
        &parts[..]
    } else {
        &parts[1..]
    };
    let fs = vfs.fs(mount)?;
    let mut out = if vfs.is_bare() {
        String::new()
    } else {
        format!("/{}", vfs.mounts()[mount].name)
    };
    let mut node = fs.root();
    for typed in rest {
        let child = fs.lookup(node, typed, Case::Insensitive)?;
        let listing = fs.read_dir(node)?;
        // The typed name itself when stored so, else the one name (of possibly several
        // hard links) that matches it apart from case.
        let name = listing
            .iter()
            .find(|e| e.node == child && e.name == *typed)
            .or_else(|| {
                listing
                    .iter()
                    .find(|e| e.node == child && e.name.to_lowercase() == typed.to_lowercase())
            })
            .map_or(*typed, |e| e.name.as_str());
        out.push('/');
        out.push_str(name);
        node = child;
    }
    Ok(if out.is_empty() { "/".into() } else { out })
}

/// Splits `PATH:stream` when `PATH` alone does not exist.
fn resolve_stream(vfs: &Vfs, path: &str) -> Result<(Target, String)> {
    match vfs.resolve(path) {
        Ok(t) => Ok((t, String::new())),
        Err(Error::NotFound(m)) => {
            let last = path.rsplit('/').next().unwrap_or(path);
            match last.rfind(':') {
                Some(i) if i > 0 => {
                    let cut = path.len() - last.len() + i;
                    let t = vfs.resolve(&path[..cut])?;
                    Ok((t, path[cut + 1..].to_string()))
                }
                _ => Err(Error::NotFound(m)),
            }
        }
        Err(e) => Err(e),
    }
}

/// `strata ls`. Returns the exit code: 0, or when some entries could not be read (they are
/// reported on stderr and the rest is listed) 1, or [`super::EXIT_INTEGRITY`] when damage in
/// the image was the cause.
pub fn ls(image: &Path, path: &str, opts: &LsOptions) -> Result<u8> {
    let vfs = open_vfs(image, &opts.resolve, opts.cache_bytes)?;
    let mut l = Lister {
        opts,
        out: std::io::BufWriter::new(std::io::stdout().lock()),
        failed: false,
        damaged: false,
        ancestors: Vec::new(),
    };
    let target = vfs.resolve(path)?;
    let norm = stored_path(&vfs, path, &target)?;
    match target {
        Target::Top => {
            for (i, m) in vfs.mounts().iter().enumerate() {
                let fs = vfs.fs(i);
                let mut meta = fs
                    .as_ref()
                    .ok()
                    .and_then(|fs| fs.metadata(fs.root()).ok())
                    .unwrap_or_else(|| Metadata::new(NodeKind::Dir, 0));
                meta.size = 0;
                let e = Entry {
                    path: format!("/{}", m.name),
                    name: m.name.clone(),
                    meta,
                    target: None,
                    xattrs: Vec::new(),
                    mount: Some(MountInfo {
                        number: m.number,
                        fs: m.kind.map_or("", |k| k.name()).to_string(),
                        label: m.label.clone(),
                        error: m.fs.as_ref().err().cloned(),
                        failed: unreadable(m),
                    }),
                };
                l.emit(&e)?;
                match fs {
                    Ok(fs) if opts.recursive => l.dir(&**fs, &e.path, fs.root())?,
                    Ok(_) => {}
                    // Damage, or a filesystem that failed to open, is an error; a partition
                    // holding nothing strata browses (swap, encrypted, no filesystem) is
                    // only listed.
                    Err(err) if unreadable(m) => l.fail(&err),
                    Err(_) => {}
                }
            }
        }
        Target::Node { mount, node } => {
            let fs = vfs.fs(mount)?;
            let e = entry(
                &**fs,
                norm.clone(),
                norm.rsplit('/').next().unwrap_or("").to_string(),
                node,
            )?;
            if e.meta.kind == NodeKind::Dir {
                l.dir(&**fs, norm.trim_end_matches('/'), node)?;
            } else {
                l.emit(&e)?;
            }
        }
    }
    l.out
        .flush()
        .map_err(|e| Error::io("stdout", "cannot write", e))?;
    Ok(if l.damaged {
        super::EXIT_INTEGRITY
    } else {
        u8::from(l.failed)
    })
}

/// `strata cat`: a file (or `PATH:stream`) to stdout.
pub fn cat(image: &Path, path: &str, resolve: &ResolveOptions, cache_bytes: u64) -> Result<()> {
    let vfs = open_vfs(image, resolve, cache_bytes)?;
    let (target, stream) = resolve_stream(&vfs, path)?;
    let Target::Node { mount, node } = target else {
        return Err(Error::IsADirectory(format!("{path}: is a directory")));
    };
    let fs = vfs.fs(mount)?;
    let meta = fs.metadata(node)?;
    match meta.kind {
        NodeKind::File | NodeKind::Reparse => {}
        NodeKind::Dir if !stream.is_empty() => {}
        NodeKind::Symlink => {
            return Err(Error::Invalid(format!(
                "{path}: is a symbolic link to {}",
                fs.read_link(node)?
            )))
        }
        NodeKind::Dir => {
            return Err(Error::IsADirectory(format!(
                "{path}: not a regular file (a directory)"
            )))
        }
        k => {
            return Err(Error::Invalid(format!(
                "{path}: not a regular file (a {})",
                k.noun()
            )))
        }
    }
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; BUF_BYTES];
    let mut pos = 0u64;
    loop {
        check_interrupt()?;
        let n = fs
            .read_at(node, &stream, pos, &mut buf)
            .map_err(|e| match e {
                // The filesystem knows the stream's name, not the file's.
                Error::NotFound(m) if !stream.is_empty() => {
                    let file = &path[..path.len() - stream.len() - 1];
                    Error::NotFound(format!("{file}: {m}"))
                }
                e => e,
            })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("stdout", "cannot write", e))?;
        pos += n as u64;
    }
    out.flush()
        .map_err(|e| Error::io("stdout", "cannot write", e))
}

/// Options of `strata cp`.
pub struct CpOptions {
    pub recursive: bool,
    pub force: bool,
    pub quiet: bool,
    /// Where to look for parent images.
    pub resolve: ResolveOptions,
    /// Ceiling of decompressed data kept in memory.
    pub cache_bytes: u64,
}

/// What `cp` did.
#[derive(Default)]
pub struct CpSummary {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub bytes: u64,
    /// Entries not copied on purpose (device nodes, FIFOs, sockets), with the reason.
    pub skipped: Vec<(String, String)>,
    /// Entries that could not be copied, with the error.
    pub failed: Vec<(String, String)>,
    /// Some of the failures were damage in the image (exit code 3).
    pub damaged: bool,
    /// Names that had to be escaped: (path in the image, name written).
    pub escaped: Vec<(String, String)>,
    /// Streams and extended attributes of copied entries that the destination did not
    /// take: (`PATH: stream NAME` or `PATH: attribute NAME`, why). The entry itself was
    /// copied.
    pub not_kept: Vec<(String, String)>,
}

struct Copier<'a> {
    opts: &'a CpOptions,
    sum: CpSummary,
    /// Directories being copied, outermost first (see [`enter`]).
    ancestors: Vec<NodeId>,
}

fn exists(p: &Path) -> Option<std::fs::Metadata> {
    std::fs::symlink_metadata(p).ok()
}

impl Copier<'_> {
    /// Notes that `src` could not be copied.
    fn fail(&mut self, src: String, e: &Error) {
        self.sum.damaged |= e.is_integrity_failure();
        self.sum.failed.push((src, e.to_string()));
    }

    /// Makes room for a new non-directory at `dest`: refused when something is there,
    /// unless `--force` (then a file or link is removed; a directory never is).
    fn make_room(&self, dest: &Path) -> Result<()> {
        let Some(m) = exists(dest) else { return Ok(()) };
        if !self.opts.force {
            return Err(Error::Invalid(format!(
                "{}: already exists (use --force to replace it)",
                dest.display()
            )));
        }
        if m.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: is a directory, not replaced",
                dest.display()
            )));
        }
        if let Some(kind) = crate::atomic_file::special_kind(&m.file_type()) {
            return Err(Error::Invalid(format!(
                "{}: is {kind}, never replaced (not even with --force)",
                dest.display()
            )));
        }
        std::fs::remove_file(dest).map_err(|e| Error::io(dest, "cannot replace", e))
    }

    fn copy(&mut self, fs: &dyn FileSystem, src: &str, node: NodeId, dest: &Path) -> Result<()> {
        check_interrupt()?;
        let meta = fs.metadata(node)?;
        match meta.kind {
            NodeKind::Dir => self.copy_dir(fs, src, node, &meta, dest),
            NodeKind::File => self.copy_file(fs, src, node, &meta, dest),
            NodeKind::Symlink => {
                let target = fs.read_link(node)?;
                self.make_room(dest)?;
                make_symlink(&target, dest)?;
                set_link_mtime(dest, meta.mtime);
                self.sum.links += 1;
                Ok(())
            }
            k => {
                self.sum
                    .skipped
                    .push((src.to_string(), format!("a {} is not copied", k.noun())));
                Ok(())
            }
        }
    }

    fn copy_dir(
        &mut self,
        fs: &dyn FileSystem,
        src: &str,
        node: NodeId,
        meta: &Metadata,
        dest: &Path,
    ) -> Result<()> {
        if !self.opts.recursive {
            return Err(Error::IsADirectory(format!(
                "{src}: is a directory (use -r to copy it)"
            )));
        }
        // The destination path is the longer one: checking it stops a loop before the
        // system refuses the path.
        enter(fs, &self.ancestors, &dest.to_string_lossy(), node)?;
        match exists(dest) {
            Some(m) if m.is_dir() => {}
            Some(_) => {
                self.make_room(dest)?;
                std::fs::create_dir(dest).map_err(|e| Error::io(dest, "cannot create", e))?;
            }
            None => std::fs::create_dir(dest).map_err(|e| Error::io(dest, "cannot create", e))?,
        }
        self.sum.dirs += 1;
        self.copy_extras(fs, src, node, meta, dest)?;
        let mut children = fs.read_dir(node)?;
        children.sort_by(|a, b| a.name.cmp(&b.name));
        self.ancestors.push(node);
        for c in children {
            let child_src = join(src, &c.name);
            let safe = escape_name(&c.name);
            if safe != c.name {
                self.sum
                    .escaped
                    .push((child_src.clone(), safe.clone().into_owned()));
            }
            let child_dest = dest.join(&*safe);
            if let Err(e) = self.copy(fs, &child_src, c.node, &child_dest) {
                if matches!(e, Error::Interrupted) {
                    return Err(e);
                }
                self.fail(child_src, &e);
            }
        }
        self.ancestors.pop();
        set_mtime(dest, meta.mtime);
        Ok(())
    }

    fn copy_file(
        &mut self,
        fs: &dyn FileSystem,
        src: &str,
        node: NodeId,
        meta: &Metadata,
        dest: &Path,
    ) -> Result<()> {
        self.make_room(dest)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|e| Error::io(dest, "cannot create", e))?;
        let bar = Progress::new(
            meta.size,
            "copy",
            !self.opts.quiet && meta.size >= PROGRESS_MIN_BYTES,
        );
        let r = write_contents(fs, node, "", &mut f, &bar);
        bar.finish();
        match r {
            Ok(n) => {
                drop(f);
                self.copy_extras(fs, src, node, meta, dest)?;
                set_mtime(dest, meta.mtime);
                self.sum.files += 1;
                self.sum.bytes += n;
                Ok(())
            }
            Err(e) => {
                // Never leave a file with wrong or partial contents behind.
                drop(f);
                let _ = std::fs::remove_file(dest);
                Err(e)
            }
        }
    }
}

impl Copier<'_> {
    /// Gives the copy at `dest` of `node` its named streams (NTFS) and `user.*` extended
    /// attributes ([`xattr`]). What the destination refuses is noted in
    /// [`CpSummary::not_kept`]: the contents were copied, and one refused stream (a
    /// `Zone.Identifier` on a FAT stick) should not fail a whole tree. Attributes of other
    /// namespaces (`security.`, `trusted.`, `system.`) are not copied: they need
    /// privileges or mean something only on the system that made them.
    fn copy_extras(
        &mut self,
        fs: &dyn FileSystem,
        src: &str,
        node: NodeId,
        meta: &Metadata,
        dest: &Path,
    ) -> Result<()> {
        for s in &meta.streams {
            let what = format!("{src}: stream {}", s.name);
            if let Some(p) = xattr::stream_path(dest, &s.name) {
                let r = std::fs::File::create(&p)
                    .map_err(|e| Error::io(&p, "cannot create", e))
                    .and_then(|mut f| {
                        write_contents(fs, node, &s.name, &mut f, &Progress::new(0, "", false))
                    });
                if let Err(e) = r {
                    self.sum.not_kept.push((what, e.to_string()));
                }
                continue;
            }
            if s.size > xattr::MAX_VALUE {
                self.sum.not_kept.push((
                    what,
                    format!(
                        "{} bytes, more than an extended attribute holds ({} bytes)",
                        s.size,
                        xattr::MAX_VALUE
                    ),
                ));
                continue;
            }
            let value = Vfs::read_all(fs, node, &s.name)?;
            if let Err(e) = xattr::set(dest, &format!("user.{}", s.name), &value) {
                self.sum.not_kept.push((what, xattr::refusal(&e)));
            }
        }
        for name in fs.xattr_names(node)? {
            if !name.starts_with("user.") {
                continue;
            }
            let value = fs.xattr(node, &name)?;
            if let Err(e) = xattr::set(dest, &name, &value) {
                self.sum
                    .not_kept
                    .push((format!("{src}: attribute {name}"), xattr::refusal(&e)));
            }
        }
        Ok(())
    }
}

/// Copies a file's contents (or its named `stream`), leaving holes where the data is all
/// zeros.
fn write_contents(
    fs: &dyn FileSystem,
    node: NodeId,
    stream: &str,
    f: &mut std::fs::File,
    bar: &Progress,
) -> Result<u64> {
    use std::io::{Seek, SeekFrom};
    // Where sparse files cannot be had (FAT), the holes are written as zeros instead.
    let _ = crate::blockdev::file::make_sparse(f);
    let mut buf = vec![0u8; BUF_BYTES];
    let mut pos = 0u64;
    loop {
        check_interrupt()?;
        let n = fs.read_at(node, stream, pos, &mut buf)?;
        if n == 0 {
            break;
        }
        if crate::blockdev::is_zero(&buf[..n]) {
            f.seek(SeekFrom::Current(n as i64))
                .map_err(|e| Error::io("destination", "cannot seek", e))?;
        } else {
            f.write_all(&buf[..n])
                .map_err(|e| Error::io("destination", "cannot write", e))?;
        }
        pos += n as u64;
        bar.inc(n as u64);
    }
    f.set_len(pos)
        .map_err(|e| Error::io("destination", "cannot set length", e))?;
    Ok(pos)
}

fn set_mtime(p: &Path, t: Option<Time>) {
    let Some(t) = t else { return };
    if let Ok(f) = std::fs::File::open(p) {
        let _ = f.set_modified(t.to_system());
    }
}

/// Sets the modification time of a symbolic link itself (never of its target).
#[cfg(unix)]
fn set_link_mtime(p: &Path, t: Option<Time>) {
    use std::os::unix::ffi::OsStrExt;
    let Some(t) = t else { return };
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return;
    };
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: t.secs as libc::time_t,
            tv_nsec: t.nanos as libc::c_long,
        },
    ];
    // SAFETY: `c` is a valid NUL-terminated path and `times` holds two timespecs, as
    // utimensat requires; AT_SYMLINK_NOFOLLOW makes it act on the link itself.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        );
    }
}

#[cfg(not(unix))]
fn set_link_mtime(_p: &Path, _t: Option<Time>) {}

#[cfg(unix)]
fn make_symlink(target: &str, dest: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, dest).map_err(|e| Error::io(dest, "cannot create link", e))
}

#[cfg(not(unix))]
fn make_symlink(target: &str, dest: &Path) -> Result<()> {
    let _ = target;
    Err(Error::Invalid(format!(
        "{}: symbolic links are not created on this system",
        dest.display()
    )))
}

/// `strata cp`: copies files and trees out of an image into `dest`. When `dest` is an
/// existing directory (or several sources are given) each source goes inside it under its
/// own name; otherwise `dest` is the new name of the one source.
pub fn cp(image: &Path, sources: &[String], dest: &Path, opts: &CpOptions) -> Result<CpSummary> {
    let vfs = open_vfs(image, &opts.resolve, opts.cache_bytes)?;
    let into_dir = exists(dest).is_some_and(|m| m.is_dir()) || sources.len() > 1;
    if sources.len() > 1 && !exists(dest).is_some_and(|m| m.is_dir()) {
        return Err(Error::Invalid(format!(
            "{}: not a directory (several sources need an existing directory)",
            dest.display()
        )));
    }
    let mut c = Copier {
        opts,
        sum: CpSummary::default(),
        ancestors: Vec::new(),
    };
    for src in sources {
        let target = vfs.resolve(src)?;
        let norm = stored_path(&vfs, src, &target)?;
        let base = norm.rsplit('/').next().unwrap_or("");
        let target_path = |name: &str| -> PathBuf {
            if into_dir {
                dest.join(&*escape_name(name))
            } else {
                dest.to_path_buf()
            }
        };
        match target {
            Target::Top => {
                if !opts.recursive {
                    return Err(Error::IsADirectory(format!(
                        "{src}: is a directory (use -r to copy it)"
                    )));
                }
                let top = if into_dir {
                    dest.join("disk")
                } else {
                    dest.to_path_buf()
                };
                if exists(&top).is_none() {
                    std::fs::create_dir(&top).map_err(|e| Error::io(&top, "cannot create", e))?;
                }
                for (i, m) in vfs.mounts().iter().enumerate() {
                    match vfs.fs(i) {
                        Ok(fs) => c.copy(
                            &**fs,
                            &format!("/{}", m.name),
                            fs.root(),
                            &top.join(&m.name),
                        )?,
                        // Damage, or a filesystem that failed to open, fails the copy; a
                        // partition holding nothing strata browses is left out.
                        Err(e) if unreadable(m) => {
                            c.sum.damaged |= e.is_integrity_failure();
                            let why = m.fs.as_ref().err().cloned().unwrap_or_default();
                            c.sum.failed.push((format!("/{}", m.name), why));
                        }
                        Err(_) => {}
                    }
                }
            }
            Target::Node { mount, node } => {
                let fs = vfs.fs(mount)?;
                let name = if base.is_empty() {
                    vfs.mounts()[mount].name.clone()
                } else {
                    base.to_string()
                };
                let name = if name.is_empty() {
                    "volume".to_string()
                } else {
                    name
                };
                c.copy(&**fs, &norm, node, &target_path(&name))?;
            }
        }
    }
    Ok(c.sum)
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("16384K"), Ok(16 << 20));
        assert_eq!(parse_size(&(32u64 << 20).to_string()), Ok(32 << 20));
        assert!(parse_size("1M").unwrap_err().contains("minimum"));
        assert!(parse_size("12X").unwrap_err().contains("unit"));
        assert!(parse_size("big").is_err());
        assert!(parse_size("99999999999T")
            .unwrap_err()
            .contains("too large"));
    }
}
