//! A point's catalog: every entry of every filesystem strata can read in one image, with a
//! content identity per file, so that `find`, `history` and `diff` answer from a few
//! megabytes instead of walking every point's filesystems.
//!
//! - [`build`] walks a chain point and computes the identities, mostly from the image's
//!   block hashes (no file data is read for whole blocks).
//! - This module holds the model and its byte encoding (docs/FORMAT.md, "Catalog
//!   section"); [`crate::container::catalog`] stores the bytes in the image.
//! - [`query`] opens the points of a chain or a directory, with their catalogs (or a walk
//!   when an image has none), and answers the three questions.

// Decodes bytes read from disk: no silent truncating `as` on them.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

pub mod build;
pub mod delta;
pub mod query;

use crate::container::catalog::{load, CatalogError};
use crate::container::reader::Image;
use crate::fs::browse::{NodeKind, Time};
use compact_str::CompactString;
use std::sync::Arc;

/// What one catalog holds: the filesystems of one chain point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// The image's block size: content identities are taken over pieces of this size, so
    /// only identities of equal block size compare.
    pub block_size: u32,
    pub volumes: Vec<Volume>,
}

/// One filesystem: a partition (`p2`) or the bare volume (`""`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// `p1`, `p2`… as `strata ls` names it; empty for a bare filesystem.
    pub name: String,
    /// Filesystem type (`ntfs`, `ext4`…).
    pub fs: String,
    /// Entry 0 is the root directory; every other entry's parent comes before it.
    pub entries: Vec<Entry>,
}

/// A content identity: 16 bytes of BLAKE3 (see [`build`]).
pub type ContentId = [u8; 16];

/// One name in a filesystem (a file with several hard links has one entry per name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Index of the directory holding it; [`ROOT_PARENT`] for the root.
    pub parent: u32,
    /// The name as `strata ls` shows it (empty for the root).
    pub name: CompactString,
    pub kind: NodeKind,
    pub size: u64,
    pub allocated: Option<u64>,
    /// Inode or MFT record number.
    pub ino: Option<u64>,
    pub nlink: Option<u32>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<Time>,
    pub ctime: Option<Time>,
    pub atime: Option<Time>,
    pub crtime: Option<Time>,
    /// Content identity: regular files (main data), symbolic links (target).
    pub id: Option<ContentId>,
    /// Named streams (NTFS).
    pub streams: Vec<StreamEntry>,
    /// The entry could not be read completely (its metadata, its listing or its content
    /// identity): damage or a feature strata does not read.
    pub unreadable: bool,
}

impl Entry {
    /// An entry with none of the optional fields.
    pub fn bare(parent: u32, name: &str, kind: NodeKind, size: u64) -> Entry {
        Entry {
            parent,
            name: name.into(),
            kind,
            size,
            allocated: None,
            ino: None,
            nlink: None,
            mode: None,
            uid: None,
            gid: None,
            mtime: None,
            ctime: None,
            atime: None,
            crtime: None,
            id: None,
            streams: Vec::new(),
            unreadable: false,
        }
    }
}

/// A named stream of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub name: CompactString,
    pub size: u64,
    pub id: Option<ContentId>,
}

/// The parent of the root entry.
pub const ROOT_PARENT: u32 = u32::MAX;

/// A catalog as an image stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Whole(Catalog),
    /// A change to the catalog of the image's parent ([`delta`]).
    Delta(delta::Delta),
}

/// The catalog `image` holds, decoded: `Ok(None)` when it has none, `Err(why)` inside when
/// its section or its contents are damaged; the outer error when the image cannot be read.
pub fn stored(image: &Image) -> crate::error::Result<Result<Option<Stored>, String>> {
    match load(image) {
        Ok(None) => Ok(Ok(None)),
        Ok(Some(raw)) if raw.starts_with(&crate::container::catalog::DELTA_MAGIC) => {
            Ok(delta::Delta::decode(&raw)
                .map(|d| Some(Stored::Delta(d)))
                .map_err(|e| format!("catalog: {e}")))
        }
        Ok(Some(raw)) => Ok(Catalog::decode(&raw)
            .map(|c| Some(Stored::Whole(c)))
            .map_err(|e| format!("catalog: {e}"))),
        Err(CatalogError::Damaged(why)) => Ok(Err(why)),
        Err(CatalogError::Io(e)) => Err(e),
    }
}

/// Whole catalogs of a few images, by image id, so that points of one chain opened one
/// after the other each apply only their own change.
#[derive(Default)]
pub struct Recent(std::sync::Mutex<std::collections::VecDeque<([u8; 16], Arc<Catalog>)>>);

/// Catalogs [`Recent`] keeps: a few times the threads that open points.
const RECENT: usize = 8;

impl Recent {
    pub(crate) fn get(&self, id: &[u8; 16]) -> Option<Arc<Catalog>> {
        let q = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.iter().find(|(i, _)| i == id).map(|(_, c)| c.clone())
    }

    fn put(&self, id: [u8; 16], c: Arc<Catalog>) {
        let mut q = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= RECENT {
            q.pop_front();
        }
        q.push_back((id, c));
    }
}

/// A point's whole catalog and the changes it was stored through (see [`resolved`]), or
/// None, or why it cannot be had.
pub type Resolved = Result<Option<(Arc<Catalog>, u32)>, String>;

/// The whole catalog of the point `layers` ends at (its chain's images, full first), and
/// how many changes it was stored through (0: stored whole): a catalog stored as a change
/// is applied to its parent's, which must be the layer below it. `Ok(None)` when the top
/// image has no catalog; `Err(why)` inside when it or one it depends on is damaged or
/// missing.
pub fn resolved(layers: &[Image], recent: Option<&Recent>) -> crate::error::Result<Resolved> {
    if layers.is_empty() {
        return Ok(Ok(None));
    }
    let top_at = layers.len() - 1;
    // The changes down to a whole catalog (or one already at hand), top first.
    let mut changes = Vec::new();
    let mut at = top_at;
    let base = loop {
        let image = &layers[at];
        let id = *image.header().image_uuid.as_bytes();
        if let Some(c) = recent.and_then(|r| r.get(&id)) {
            break c;
        }
        let d = match stored(image)? {
            Ok(Some(Stored::Whole(c))) => break Arc::new(c),
            Ok(Some(Stored::Delta(d))) => d,
            Ok(None) if at < top_at => {
                return Ok(Err(format!(
                    "catalog: it changes the catalog of {}, which has none",
                    image.path().display()
                )))
            }
            Ok(None) => return Ok(Ok(None)),
            Err(why) if at < top_at => {
                return Ok(Err(format!(
                    "catalog: it changes the catalog of {}, which is damaged ({why})",
                    image.path().display()
                )))
            }
            Err(why) => return Ok(Err(why)),
        };
        let below = at.checked_sub(1).map(|b| &layers[b]);
        match below {
            Some(b) if *b.header().image_uuid.as_bytes() == d.base => {}
            _ => {
                return Ok(Err(
                    "catalog: it changes the catalog of an image that is not its parent".into(),
                ))
            }
        }
        changes.push((id, d));
        at -= 1;
    };
    // (A catalog found at hand for the top has no depth here: the depth only steers
    // writers, which keep none at hand.)
    let depth = changes.first().map_or(0, |(_, d)| d.depth);
    let mut c = base;
    for (id, d) in changes.into_iter().rev() {
        c = match applied(d, &c, id, recent) {
            Ok(next) => next,
            Err(why) => return Ok(Err(why)),
        };
    }
    Ok(Ok(Some((c, depth))))
}

/// The catalog of image `id`, whose stored change `d` is applied over `base` (its
/// parent's), kept in `recent` for the points that follow.
pub fn applied(
    d: delta::Delta,
    base: &Catalog,
    id: [u8; 16],
    recent: Option<&Recent>,
) -> Result<Arc<Catalog>, String> {
    let c = Arc::new(d.apply(base).map_err(|why| format!("catalog: {why}"))?);
    if let Some(r) = recent {
        r.put(id, c.clone());
    }
    Ok(c)
}

impl Volume {
    /// The path of entry `i` as `strata ls` prints it: `/p2/dir/name` (`/dir/name` on a
    /// bare filesystem), computed with `paths` holding the paths of the entries before it.
    fn path_of(&self, i: usize, paths: &[String]) -> String {
        let e = &self.entries[i];
        match usize::try_from(e.parent).ok().and_then(|p| paths.get(p)) {
            Some(parent) if parent.ends_with('/') => format!("{parent}{}", e.name),
            Some(parent) => format!("{parent}/{}", e.name),
            None if self.name.is_empty() => "/".into(),
            None => format!("/{}", self.name),
        }
    }

    /// The path of entry `i`, built by walking up its parents.
    pub fn path(&self, i: usize) -> String {
        let mut names = Vec::new();
        let mut at = i;
        // Parents precede children (checked when decoded), so this ends at the root.
        while let Some(e) = self.entries.get(at).filter(|_| at != 0) {
            names.push(e.name.as_str());
            at = usize::try_from(e.parent).unwrap_or(0).min(at - 1);
        }
        let mut p = if self.name.is_empty() {
            String::new()
        } else {
            format!("/{}", self.name)
        };
        for n in names.iter().rev() {
            p.push('/');
            p.push_str(n);
        }
        if p.is_empty() {
            p.push('/');
        }
        p
    }

    /// Every entry's path, in entry order.
    pub fn paths(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(self.entries.len());
        for i in 0..self.entries.len() {
            let p = self.path_of(i, &out);
            out.push(p);
        }
        out
    }
}

const KINDS: [NodeKind; 8] = [
    NodeKind::File,
    NodeKind::Dir,
    NodeKind::Symlink,
    NodeKind::Block,
    NodeKind::Char,
    NodeKind::Fifo,
    NodeKind::Socket,
    NodeKind::Reparse,
];

fn kind_code(k: NodeKind) -> u8 {
    KINDS
        .iter()
        .position(|&x| x == k)
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or(0)
}

// Presence bits of an entry's optional fields.
const F_ALLOCATED: u16 = 1;
const F_INO: u16 = 1 << 1;
const F_NLINK: u16 = 1 << 2;
const F_MODE: u16 = 1 << 3;
const F_UID: u16 = 1 << 4;
const F_GID: u16 = 1 << 5;
const F_MTIME: u16 = 1 << 6;
const F_CTIME: u16 = 1 << 7;
const F_ATIME: u16 = 1 << 8;
const F_CRTIME: u16 = 1 << 9;
const F_ID: u16 = 1 << 10;
const F_UNREADABLE: u16 = 1 << 11;
const F_KNOWN: u16 = (1 << 12) - 1;

/// Little-endian writer of the encoding.
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(s.as_bytes());
    }
    fn time(&mut self, t: Time) {
        self.u64(t.secs.cast_unsigned());
        self.u32(t.nanos);
    }
}

/// Little-endian reader of the encoding: every read is bounds-checked.
struct In<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(format!("ends inside a field at byte {}", self.at));
        };
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn str(&mut self) -> Result<CompactString, String> {
        let n = usize::try_from(self.u32()?).map_err(|e| e.to_string())?;
        let at = self.at;
        std::str::from_utf8(self.take(n)?)
            .map(CompactString::from)
            .map_err(|_| format!("name at byte {at} is not UTF-8"))
    }
    fn time(&mut self) -> Result<Time, String> {
        let secs = self.u64()?.cast_signed();
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(format!("impossible nanoseconds {nanos}"));
        }
        Ok(Time { secs, nanos })
    }
    fn id(&mut self) -> Result<ContentId, String> {
        Ok(self.take(16)?.try_into().expect("16"))
    }
    /// A count of items of at least `min` bytes each, checked against what is left so
    /// that a damaged count cannot reserve memory.
    fn count(&mut self, n: u64, min: usize) -> Result<usize, String> {
        let left = (self.buf.len() - self.at) / min.max(1);
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= left)
            .ok_or_else(|| {
                format!(
                    "{n} items cannot fit in the {} bytes left",
                    self.buf.len() - self.at
                )
            })
    }
}

/// Smallest encoded entry: parent, name length, kind, flags, size, stream count.
const MIN_ENTRY: usize = 4 + 4 + 1 + 2 + 8 + 2;

impl Catalog {
    /// The bytes stored in an image (docs/FORMAT.md, "Catalog section").
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Out(Vec::new());
        o.u32(self.block_size);
        o.u32(u32::try_from(self.volumes.len()).unwrap_or(u32::MAX));
        for v in &self.volumes {
            o.str(&v.name);
            o.str(&v.fs);
            o.u64(v.entries.len() as u64);
            for e in &v.entries {
                put_entry(&mut o, e);
            }
        }
        o.0
    }

    /// Decodes and checks a catalog: every parent precedes its child and is a directory.
    pub fn decode(buf: &[u8]) -> Result<Catalog, String> {
        let mut r = In { buf, at: 0 };
        let block_size = r.u32()?;
        let n = r.u32()?;
        let n = r.count(u64::from(n), 16)?;
        let mut volumes = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.str()?.into_string();
            let fs = r.str()?.into_string();
            volumes.push(Volume {
                name,
                fs,
                entries: get_entries(&mut r)?,
            });
        }
        if r.at != buf.len() {
            return Err(format!("{} bytes follow the last volume", buf.len() - r.at));
        }
        let catalog = Catalog {
            block_size,
            volumes,
        };
        catalog.check()?;
        Ok(catalog)
    }

    /// Checks what every reader relies on: each volume's first entry is its root, every
    /// other entry's parent precedes it and is a directory, and the paths stay within a
    /// bound of the names' bytes (a damaged catalog of deeply nested names would make
    /// building them quadratic; real trees keep their paths well under it).
    pub fn check(&self) -> Result<(), String> {
        let mut check = Check::default();
        for v in &self.volumes {
            check.whole(v)?;
        }
        check.finish()
    }
}

/// [`Catalog::check`] one entry at a time, so that a catalog being built is checked as its
/// entries are pushed rather than in a second pass over them.
#[derive(Default)]
pub(crate) struct Check {
    /// Bytes of the names and of the smallest encoded entries so far.
    names: u64,
    /// Bytes of the paths so far.
    path_bytes: u64,
}

/// The checks of one volume's entries (see [`Check`]).
pub(crate) struct TreeCheck {
    /// The length of each entry's path so far.
    path_len: Vec<u64>,
    names: u64,
    path_bytes: u64,
}

impl Check {
    pub(crate) fn volume(&self) -> TreeCheck {
        TreeCheck {
            path_len: Vec::new(),
            names: 0,
            path_bytes: 0,
        }
    }

    /// Checks every entry of `v`.
    pub(crate) fn whole(&mut self, v: &Volume) -> Result<(), String> {
        let mut tree = self.volume();
        for e in &v.entries {
            tree.push(&v.entries, e)?;
        }
        self.add(tree);
        Ok(())
    }

    pub(crate) fn add(&mut self, t: TreeCheck) {
        self.names += t.names;
        self.path_bytes += t.path_bytes;
    }

    /// The bound on paths, over all the volumes added (a deeply nested damaged catalog
    /// would make building its paths quadratic; real trees keep well under it).
    pub(crate) fn finish(&self) -> Result<(), String> {
        let max_path_bytes = self.names.saturating_mul(8) + (1 << 20);
        if self.path_bytes > max_path_bytes {
            return Err(format!("paths add up to more than {max_path_bytes} bytes"));
        }
        Ok(())
    }
}

impl TreeCheck {
    /// Checks `e`, about to become entry `before.len()` after the entries `before`: the
    /// first is the root, every other entry's parent precedes it and is a directory.
    pub(crate) fn push(&mut self, before: &[Entry], e: &Entry) -> Result<(), String> {
        let i = self.path_len.len();
        let parent = e.parent;
        let ok = if i == 0 {
            parent == ROOT_PARENT
        } else {
            usize::try_from(parent)
                .ok()
                .filter(|&p| p < i)
                .and_then(|p| before.get(p))
                .is_some_and(|p| p.kind == NodeKind::Dir)
        };
        if !ok {
            return Err(format!("entry {i} has an impossible parent {parent}"));
        }
        let name = e.name.len() as u64;
        let len = usize::try_from(parent)
            .ok()
            .and_then(|p| self.path_len.get(p))
            .map_or(name + 4, |l| l + 1 + name);
        self.path_len.push(len);
        self.path_bytes += len;
        self.names += name + MIN_ENTRY as u64;
        Ok(())
    }
}

/// Writes one entry (docs/FORMAT.md, "Catalog section").
fn put_entry(o: &mut Out, e: &Entry) {
    o.u32(e.parent);
    o.str(&e.name);
    o.u8(kind_code(e.kind));
    let mut flags = 0;
    for (bit, on) in [
        (F_ALLOCATED, e.allocated.is_some()),
        (F_INO, e.ino.is_some()),
        (F_NLINK, e.nlink.is_some()),
        (F_MODE, e.mode.is_some()),
        (F_UID, e.uid.is_some()),
        (F_GID, e.gid.is_some()),
        (F_MTIME, e.mtime.is_some()),
        (F_CTIME, e.ctime.is_some()),
        (F_ATIME, e.atime.is_some()),
        (F_CRTIME, e.crtime.is_some()),
        (F_ID, e.id.is_some()),
        (F_UNREADABLE, e.unreadable),
    ] {
        if on {
            flags |= bit;
        }
    }
    o.u16(flags);
    o.u64(e.size);
    for v in [e.allocated, e.ino].into_iter().flatten() {
        o.u64(v);
    }
    for v in [e.nlink, e.mode, e.uid, e.gid].into_iter().flatten() {
        o.u32(v);
    }
    for t in [e.mtime, e.ctime, e.atime, e.crtime].into_iter().flatten() {
        o.time(t);
    }
    if let Some(id) = e.id {
        o.0.extend_from_slice(&id);
    }
    o.u16(u16::try_from(e.streams.len()).unwrap_or(u16::MAX));
    for s in e.streams.iter().take(usize::from(u16::MAX)) {
        o.str(&s.name);
        o.u64(s.size);
        match s.id {
            Some(id) => {
                o.u8(1);
                o.0.extend_from_slice(&id);
            }
            None => o.u8(0),
        }
    }
}

/// A count and that many entries (their tree is checked by [`Catalog::check`]).
fn get_entries(r: &mut In) -> Result<Vec<Entry>, String> {
    let count = r.u64()?;
    let count = r.count(count, MIN_ENTRY)?;
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        entries.push(get_entry(r, i)?);
    }
    Ok(entries)
}

/// Reads entry `i` (its number for messages).
fn get_entry(r: &mut In, i: usize) -> Result<Entry, String> {
    let parent = r.u32()?;
    let name = r.str()?;
    let code = r.u8()?;
    let kind = *KINDS
        .get(usize::from(code))
        .ok_or_else(|| format!("entry {i} has an unknown type {code}"))?;
    let flags = r.u16()?;
    if flags & !F_KNOWN != 0 {
        return Err(format!("entry {i} has unknown flags {flags:#x}"));
    }
    let has = |bit: u16| flags & bit != 0;
    let size = r.u64()?;
    let mut e = Entry::bare(parent, "", kind, size);
    (e.name, e.unreadable) = (name, has(F_UNREADABLE));
    if has(F_ALLOCATED) {
        e.allocated = Some(r.u64()?);
    }
    if has(F_INO) {
        e.ino = Some(r.u64()?);
    }
    for (bit, slot) in [
        (F_NLINK, &mut e.nlink),
        (F_MODE, &mut e.mode),
        (F_UID, &mut e.uid),
        (F_GID, &mut e.gid),
    ] {
        if has(bit) {
            *slot = Some(r.u32()?);
        }
    }
    for (bit, slot) in [
        (F_MTIME, &mut e.mtime),
        (F_CTIME, &mut e.ctime),
        (F_ATIME, &mut e.atime),
        (F_CRTIME, &mut e.crtime),
    ] {
        if has(bit) {
            *slot = Some(r.time()?);
        }
    }
    if has(F_ID) {
        e.id = Some(r.id()?);
    }
    let ns = r.u16()?;
    let ns = r.count(u64::from(ns), 4 + 8 + 1)?;
    for _ in 0..ns {
        let name = r.str()?;
        let size = r.u64()?;
        let id = match r.u8()? {
            0 => None,
            1 => Some(r.id()?),
            b => return Err(format!("entry {i}: a stream with flag {b}")),
        };
        e.streams.push(StreamEntry { name, size, id });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalog {
        let mut root = Entry::bare(ROOT_PARENT, "", NodeKind::Dir, 0);
        root.ino = Some(2);
        root.nlink = Some(3);
        root.mode = Some(0o755);
        root.uid = Some(0);
        root.gid = Some(0);
        root.mtime = Some(Time { secs: -5, nanos: 7 });
        let mut file = root.clone();
        file.parent = 0;
        file.name = "a\u{1}b.txt".into();
        file.kind = NodeKind::File;
        file.size = 12345;
        file.id = Some([9; 16]);
        file.streams = vec![StreamEntry {
            name: "s".into(),
            size: 3,
            id: Some([1; 16]),
        }];
        root.unreadable = true;
        Catalog {
            block_size: 4096,
            volumes: vec![Volume {
                name: "p1".into(),
                fs: "ntfs".into(),
                entries: vec![root, file],
            }],
        }
    }

    #[test]
    fn encoding_round_trips_and_paths_are_built() {
        let c = sample();
        let back = Catalog::decode(&c.encode()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.volumes[0].paths(), vec!["/p1", "/p1/a\u{1}b.txt"]);
    }

    #[test]
    fn every_truncation_and_many_flips_are_refused_or_decoded_without_panic() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Catalog::decode(&bytes[..n]).is_err(), "{n}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let _ = Catalog::decode(&b);
            }
        }
    }

    #[test]
    fn nested_names_cannot_make_paths_quadratic() {
        let mut c = sample();
        let v = &mut c.volumes[0];
        v.entries.truncate(1);
        for i in 0..20_000u32 {
            let mut e = v.entries[0].clone();
            e.parent = i;
            e.name = "d".repeat(40).into();
            v.entries.push(e);
        }
        let err = Catalog::decode(&c.encode()).unwrap_err();
        assert!(err.contains("paths add up"), "{err}");
        v_shallow(&mut c);
        assert!(Catalog::decode(&c.encode()).is_ok());
    }

    /// The same entries side by side under the root.
    fn v_shallow(c: &mut Catalog) {
        for e in c.volumes[0].entries.iter_mut().skip(1) {
            e.parent = 0;
        }
    }

    #[test]
    fn a_child_of_a_file_is_refused() {
        let mut c = sample();
        let mut e = c.volumes[0].entries[1].clone();
        e.parent = 1;
        c.volumes[0].entries.push(e);
        assert!(Catalog::decode(&c.encode()).is_err());
    }
}
