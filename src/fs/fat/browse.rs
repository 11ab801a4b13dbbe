//! FAT12/16/32, read directly: boot sector (parsed once, in [`super::Bpb`]), FAT chains,
//! directory entries with their long (VFAT) names.
//!
//! Strata reads FAT itself rather than through the `fatfs` crate: the crate refuses volumes
//! Windows and Linux read (a FAT32 layout with a FAT12-sized cluster count, a sector count
//! in the 64-bit field, a missing or damaged FSInfo sector, no backup boot sector), wants
//! writable storage and a lock around every call, trusts cluster numbers read from disk,
//! and returns zeros or a short file where a cluster chain is damaged. Reading needs only
//! the FAT and the directory entries; nothing here ever writes.
//!
//! Node ids: a directory is known by its first cluster (so a directory that links back to
//! one of its parents has that parent's id, and walks see the loop), a file by the byte
//! offset of its directory entry. Times are stored in local time without a zone; they are
//! read as UTC, as mtools does with `TZ=UTC`. Access dates are never updated.

use super::Bpb;
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fs::browse::{DirEntry, FileSystem, Metadata, NodeId, NodeKind, PartDev, Time};
use crate::fs::{corrupt, FsKind};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// A FAT directory holds at most 65536 entries of 32 bytes: the most read of one.
const MAX_DIR_BYTES: u64 = 65536 * 32;
/// Bytes of FAT read at a time while a chain is walked.
const FAT_WINDOW: u64 = 16 << 10;

/// Short (8.3) names are stored in an OEM code page. Code page 850 is what mtools and
/// Western-European DOS and Windows use; bytes 0x80-0xFF decode through this table.
const CP850_HIGH: [char; 128] = [
    '\u{00C7}', '\u{00FC}', '\u{00E9}', '\u{00E2}', '\u{00E4}', '\u{00E0}', '\u{00E5}', '\u{00E7}',
    '\u{00EA}', '\u{00EB}', '\u{00E8}', '\u{00EF}', '\u{00EE}', '\u{00EC}', '\u{00C4}', '\u{00C5}',
    '\u{00C9}', '\u{00E6}', '\u{00C6}', '\u{00F4}', '\u{00F6}', '\u{00F2}', '\u{00FB}', '\u{00F9}',
    '\u{00FF}', '\u{00D6}', '\u{00DC}', '\u{00F8}', '\u{00A3}', '\u{00D8}', '\u{00D7}', '\u{0192}',
    '\u{00E1}', '\u{00ED}', '\u{00F3}', '\u{00FA}', '\u{00F1}', '\u{00D1}', '\u{00AA}', '\u{00BA}',
    '\u{00BF}', '\u{00AE}', '\u{00AC}', '\u{00BD}', '\u{00BC}', '\u{00A1}', '\u{00AB}', '\u{00BB}',
    '\u{2591}', '\u{2592}', '\u{2593}', '\u{2502}', '\u{2524}', '\u{00C1}', '\u{00C2}', '\u{00C0}',
    '\u{00A9}', '\u{2563}', '\u{2551}', '\u{2557}', '\u{255D}', '\u{00A2}', '\u{00A5}', '\u{2510}',
    '\u{2514}', '\u{2534}', '\u{252C}', '\u{251C}', '\u{2500}', '\u{253C}', '\u{00E3}', '\u{00C3}',
    '\u{255A}', '\u{2554}', '\u{2569}', '\u{2566}', '\u{2560}', '\u{2550}', '\u{256C}', '\u{00A4}',
    '\u{00F0}', '\u{00D0}', '\u{00CA}', '\u{00CB}', '\u{00C8}', '\u{0131}', '\u{00CD}', '\u{00CE}',
    '\u{00CF}', '\u{2518}', '\u{250C}', '\u{2588}', '\u{2584}', '\u{00A6}', '\u{00CC}', '\u{2580}',
    '\u{00D3}', '\u{00DF}', '\u{00D4}', '\u{00D2}', '\u{00F5}', '\u{00D5}', '\u{00B5}', '\u{00FE}',
    '\u{00DE}', '\u{00DA}', '\u{00DB}', '\u{00D9}', '\u{00FD}', '\u{00DD}', '\u{00AF}', '\u{00B4}',
    '\u{00AD}', '\u{00B1}', '\u{2017}', '\u{00BE}', '\u{00B6}', '\u{00A7}', '\u{00F7}', '\u{00B8}',
    '\u{00B0}', '\u{00A8}', '\u{00B7}', '\u{00B9}', '\u{00B3}', '\u{00B2}', '\u{25A0}', '\u{00A0}',
];

fn cp850(b: u8) -> char {
    if b < 0x80 {
        char::from(b)
    } else {
        CP850_HIGH[usize::from(b - 0x80)]
    }
}

/// What a node is found by: a directory by its first cluster (the fixed root directory of
/// FAT12/16 by 0), a file by the byte offset of its directory entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Dir(u32),
    Entry(u64),
}

struct Node {
    meta: Metadata,
    first: u32,
    /// Byte offset of the directory entry (0 for the root).
    entry_at: u64,
    /// The clusters of a file's data as runs (first, count), found on the first read.
    runs: OnceLock<Vec<(u32, u32)>>,
}

/// One entry of a directory as read from disk.
struct Raw {
    name: String,
    meta: Metadata,
    first: u32,
    at: u64,
}

/// A mounted FAT volume.
pub struct FatFs {
    kind: FsKind,
    dev: PartDev,
    b: Bpb,
    nodes: Mutex<(Vec<Node>, HashMap<Key, NodeId>)>,
}

/// A DOS date and `[hour, minute, second, millisecond]`, read as UTC; None for a date that
/// is not one (0 where nothing was stored).
fn civil(date: u16, hmsm: [u16; 4]) -> Option<Time> {
    let (y, m, d) = (
        1980 + i64::from(date >> 9),
        i64::from(date >> 5 & 15),
        i64::from(date & 31),
    );
    if !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let [h, mi, s, ms] = hmsm.map(i64::from);
    Some(Time {
        secs: days * 86_400 + h * 3600 + mi * 60 + s,
        nanos: u32::try_from(ms.clamp(0, 999) * 1_000_000).unwrap_or(0),
    })
}

/// A DOS date and time with a count of 10 ms (0-199) added.
fn dos_time(date: u16, time: u16, centis: u8) -> Option<Time> {
    let c = u16::from(centis.min(199));
    civil(
        date,
        [
            time >> 11,
            time >> 5 & 63,
            (time & 31) * 2 + c / 100,
            c % 100 * 10,
        ],
    )
}

/// The checksum of a short name that its long-name entries repeat.
fn short_checksum(name: &[u8]) -> u8 {
    name.iter()
        .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b))
}

/// The short name of entry `e` as mtools and Linux show it: code page 850, the base and
/// extension lower-cased where Windows NT's flags (byte 12: 0x08, 0x10) say so. Only
/// ASCII letters are lower-cased, as mtools does.
fn short_name(e: &[u8]) -> String {
    let part = |bytes: &[u8], lower: bool| -> String {
        let end = bytes.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
        bytes[..end]
            .iter()
            .map(|&b| {
                let c = cp850(b);
                if lower {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect()
    };
    let mut base = [0u8; 8];
    base.copy_from_slice(&e[..8]);
    // 0x05 stands for a first byte 0xE5 (which itself marks a deleted entry).
    if base[0] == 0x05 {
        base[0] = 0xE5;
    }
    let mut name = part(&base, e[12] & 0x08 != 0);
    let ext = part(&e[8..11], e[12] & 0x10 != 0);
    if !ext.is_empty() {
        name.push('.');
        name.push_str(&ext);
    }
    name
}

/// Long-name entries collected before the short entry they belong to.
#[derive(Default)]
struct Lfn {
    /// 13 UTF-16 units per entry, by sequence number - 1.
    parts: Vec<[u16; 13]>,
    /// The sequence number the next entry must carry (0: complete).
    next: u8,
    checksum: u8,
    active: bool,
}

impl Lfn {
    fn add(&mut self, e: &[u8]) {
        let ord = e[0] & 0x1F;
        if e[0] & 0x40 != 0 {
            // The last part comes first; at most 20 parts make the 255-unit limit.
            *self = Lfn::default();
            if ord == 0 || ord > 20 {
                return;
            }
            self.parts = vec![[0u16; 13]; usize::from(ord)];
            self.next = ord;
            self.checksum = e[13];
            self.active = true;
        }
        if !self.active || ord != self.next || ord == 0 || e[13] != self.checksum {
            self.active = false;
            return;
        }
        let units = &mut self.parts[usize::from(ord) - 1];
        for (k, o) in (1..11)
            .step_by(2)
            .chain((14..26).step_by(2))
            .chain((28..32).step_by(2))
            .enumerate()
        {
            units[k] = u16::from_le_bytes([e[o], e[o + 1]]);
        }
        self.next -= 1;
    }

    /// The long name, when a complete one belongs to short entry `e`.
    fn take(&mut self, e: &[u8]) -> Option<String> {
        let lfn = std::mem::take(self);
        if !lfn.active || lfn.next != 0 || lfn.checksum != short_checksum(&e[..11]) {
            return None;
        }
        let units: Vec<u16> = lfn
            .parts
            .iter()
            .flatten()
            .copied()
            .take_while(|&u| u != 0)
            .collect();
        (!units.is_empty()).then(|| String::from_utf16_lossy(&units))
    }
}

impl FatFs {
    /// Mounts the volume (reads the boot sector only).
    pub fn open(dev: PartDev, kind: FsKind) -> Result<FatFs> {
        let b = Bpb::read(&dev)?;
        let root = Node {
            meta: Metadata::new(NodeKind::Dir, 0),
            first: b.root_cluster,
            entry_at: 0,
            runs: OnceLock::new(),
        };
        let mut ids = HashMap::new();
        ids.insert(Key::Dir(b.root_cluster), 1);
        Ok(FatFs {
            kind,
            dev,
            b,
            nodes: Mutex::new((vec![root], ids)),
        })
    }

    fn node<T>(&self, id: NodeId, f: impl FnOnce(&Node) -> T) -> Result<T> {
        let n = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        id.checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| n.0.get(i))
            .map(f)
            .ok_or_else(|| Error::NotFound(format!("FAT: no node {id}")))
    }

    fn register(&self, r: Raw) -> NodeId {
        let key = if r.meta.kind == NodeKind::Dir {
            Key::Dir(r.first)
        } else {
            Key::Entry(r.at)
        };
        let mut n = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&id) = n.1.get(&key) {
            return id;
        }
        n.0.push(Node {
            meta: r.meta,
            first: r.first,
            entry_at: r.at,
            runs: OnceLock::new(),
        });
        let id = n.0.len() as NodeId;
        n.1.insert(key, id);
        id
    }

    fn valid(&self, c: u32) -> bool {
        c >= 2 && u64::from(c) < self.b.clusters + 2
    }

    fn cluster_at(&self, c: u32) -> u64 {
        self.b.data_start() + (u64::from(c) - 2) * self.b.cluster_bytes()
    }

    /// The FAT entry of cluster `c` (a valid cluster), through `win`: a window of the FAT
    /// (its offset in the FAT and its bytes) reused while a chain is walked.
    fn fat_entry(&self, c: u32, win: &mut (u64, Vec<u8>)) -> Result<u32> {
        let c = u64::from(c);
        let (off, len) = match self.b.kind {
            FsKind::Fat12 => (c + c / 2, 2usize),
            FsKind::Fat16 => (2 * c, 2),
            _ => (4 * c, 4),
        };
        if off < win.0 || off + len as u64 > win.0 + win.1.len() as u64 {
            let n = FAT_WINDOW.min(self.b.fat_bytes() - off);
            win.0 = off;
            win.1.resize(crate::le::usize_of(n)?, 0);
            self.dev.read_at(self.b.fat_at() + off, &mut win.1)?;
        }
        let i = crate::le::usize_of(off - win.0)?;
        let v = &win.1[i..i + len];
        Ok(match self.b.kind {
            FsKind::Fat12 => {
                let v = u16::from_le_bytes([v[0], v[1]]);
                u32::from(if c & 1 == 0 { v & 0xFFF } else { v >> 4 })
            }
            FsKind::Fat16 => u32::from(u16::from_le_bytes([v[0], v[1]])),
            _ => u32::from_le_bytes([v[0], v[1], v[2], v[3]]) & 0x0FFF_FFFF,
        })
    }

    /// The cluster after `c` in its chain: None at the end-of-chain mark; a free, bad,
    /// reserved or out-of-range entry is damage.
    fn next_cluster(&self, c: u32, win: &mut (u64, Vec<u8>)) -> Result<Option<u32>> {
        let e = self.fat_entry(c, win)?;
        let eoc = match self.b.kind {
            FsKind::Fat12 => 0xFF8,
            FsKind::Fat16 => 0xFFF8,
            _ => 0x0FFF_FFF8,
        };
        if e >= eoc {
            return Ok(None);
        }
        if !self.valid(e) {
            return Err(corrupt(
                "FAT",
                self.b.fat_at(),
                format!("cluster {c} links to {e:#x}, which is not a cluster of the volume"),
            ));
        }
        Ok(Some(e))
    }

    /// The bytes of the directory starting at cluster `first` (0: the fixed root directory),
    /// up to its end-of-directory entry.
    fn dir_bytes(&self, first: u32, what: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if first == 0 && self.b.kind != FsKind::Fat32 {
            out.resize(crate::le::usize_of(self.b.root_entries * 32)?, 0);
            self.dev.read_at(self.b.root_dir_at(), &mut out)?;
            return Ok(out);
        }
        if !self.valid(first) {
            return Err(corrupt(
                "FAT",
                self.b.data_start(),
                format!("{what}: directory starts at cluster {first}, outside the volume"),
            ));
        }
        let cb = self.b.cluster_bytes();
        let mut win = (0, Vec::new());
        let mut c = first;
        loop {
            if out.len() as u64 + cb > MAX_DIR_BYTES.max(cb) {
                return Err(corrupt(
                    "FAT",
                    self.cluster_at(first),
                    format!(
                        "{what}: directory has more than 65536 entries (its cluster chain loops)"
                    ),
                ));
            }
            let at = out.len();
            out.resize(at + crate::le::usize_of(cb)?, 0);
            self.dev.read_at(self.cluster_at(c), &mut out[at..])?;
            if out[at..].chunks_exact(32).any(|e| e[0] == 0) {
                return Ok(out);
            }
            match self.next_cluster(c, &mut win)? {
                Some(n) => c = n,
                None => return Ok(out),
            }
        }
    }

    /// The byte offset on the volume of byte `i` of directory `first`'s data.
    fn entry_offset(&self, first: u32, i: usize, chain: &[u32]) -> u64 {
        if first == 0 && self.b.kind != FsKind::Fat32 {
            return self.b.root_dir_at() + i as u64;
        }
        let (cb, i) = (self.b.cluster_bytes(), i as u64);
        usize::try_from(i / cb)
            .ok()
            .and_then(|k| chain.get(k))
            .map_or(0, |&c| self.cluster_at(c) + i % cb)
    }

    /// The clusters of directory `first` in order (as far as [`Self::dir_bytes`] read).
    fn dir_chain(&self, first: u32, bytes: usize) -> Result<Vec<u32>> {
        let mut chain = Vec::new();
        if first == 0 && self.b.kind != FsKind::Fat32 {
            return Ok(chain);
        }
        let cb = crate::le::usize_of(self.b.cluster_bytes())?;
        let mut win = (0, Vec::new());
        let mut c = first;
        while chain.len() * cb < bytes {
            chain.push(c);
            match self.next_cluster(c, &mut win)? {
                Some(n) => c = n,
                None => break,
            }
        }
        Ok(chain)
    }

    /// Entries of the directory starting at cluster `first`, without deleted entries,
    /// volume labels, `.` and `..`.
    fn list(&self, dir_first: u32, what: &str) -> Result<Vec<Raw>> {
        let bytes = self.dir_bytes(dir_first, what)?;
        let chain = self.dir_chain(dir_first, bytes.len())?;
        let cb = self.b.cluster_bytes();
        let fat32 = self.b.kind == FsKind::Fat32;
        let mut out = Vec::new();
        let mut lfn = Lfn::default();
        for (k, e) in bytes.chunks_exact(32).enumerate() {
            match e[0] {
                0 => break,
                0xE5 => {
                    lfn = Lfn::default();
                    continue;
                }
                _ => {}
            }
            let attr = e[11];
            if attr & 0x3F == 0x0F {
                lfn.add(e);
                continue;
            }
            let long = lfn.take(e);
            // Volume label (not a file), `.` and `..`.
            if attr & 0x08 != 0 || e[0] == b'.' {
                continue;
            }
            let name = long.unwrap_or_else(|| short_name(e));
            let hi = if fat32 {
                u32::from(u16::from_le_bytes([e[20], e[21]])) << 16
            } else {
                0
            };
            let first = hi | u32::from(u16::from_le_bytes([e[26], e[27]]));
            let dir = attr & 0x10 != 0;
            let size = if dir {
                0
            } else {
                u64::from(u32::from_le_bytes([e[28], e[29], e[30], e[31]]))
            };
            let mut m = Metadata::new(if dir { NodeKind::Dir } else { NodeKind::File }, size);
            let word = |o: usize| u16::from_le_bytes([e[o], e[o + 1]]);
            m.mtime = dos_time(word(24), word(22), 0);
            m.crtime = dos_time(word(16), word(14), e[13]);
            m.atime = civil(word(18), [0; 4]);
            // A file holds whole clusters; a directory's chain is not known without walking it.
            if !dir {
                m.allocated = Some(size.div_ceil(cb) * cb);
            }
            m.nlink = Some(1);
            out.push(Raw {
                name,
                meta: m,
                first,
                at: self.entry_offset(dir_first, 32 * k, &chain),
            });
        }
        Ok(out)
    }

    /// The clusters holding the `size` bytes of the data from cluster `first`, as runs. A
    /// chain that ends before the size, leaves the volume or comes back on itself is damage.
    fn runs(&self, first: u32, size: u64, at: u64) -> Result<Vec<(u32, u32)>> {
        let cb = self.b.cluster_bytes();
        let need = size.div_ceil(cb);
        let damage = |what: String| corrupt("FAT", at, what);
        if need > self.b.clusters {
            return Err(damage(format!(
                "a file of {size} bytes on a volume of {} clusters",
                self.b.clusters
            )));
        }
        if need == 0 {
            return Ok(Vec::new());
        }
        if !self.valid(first) {
            return Err(damage(format!(
                "the data starts at cluster {first}, outside the volume"
            )));
        }
        let mut runs: Vec<(u32, u32)> = Vec::new();
        let mut win = (0, Vec::new());
        let mut c = first;
        for i in 0..need {
            match runs.last_mut() {
                Some((s, n)) if s.checked_add(*n) == Some(c) => *n += 1,
                _ => runs.push((c, 1)),
            }
            if i + 1 == need {
                break;
            }
            c = self.next_cluster(c, &mut win)?.ok_or_else(|| {
                damage(format!(
                    "the cluster chain ends after {} of the {need} clusters the size needs",
                    i + 1
                ))
            })?;
        }
        let mut sorted = runs.clone();
        sorted.sort_unstable();
        if sorted
            .windows(2)
            .any(|w| u64::from(w[0].0) + u64::from(w[0].1) > u64::from(w[1].0))
        {
            return Err(damage("the cluster chain comes back on itself".into()));
        }
        Ok(runs)
    }
}

impl FileSystem for FatFs {
    fn kind(&self) -> FsKind {
        self.kind
    }

    fn root(&self) -> NodeId {
        1
    }

    fn lookup(&self, dir: NodeId, name: &str, _case: crate::fs::browse::Case) -> Result<NodeId> {
        let (first, kind) = self.node(dir, |n| (n.first, n.meta.kind))?;
        if kind != NodeKind::Dir {
            return Err(Error::NotADirectory(format!(
                "{name}: its parent is not a directory"
            )));
        }
        let list = self.list(first, name)?;
        // FAT names are unique ignoring case (the kernel and Windows look them up so, in
        // either mode). An exact match first; otherwise the one that matches without case;
        // two such (damaged or hostile metadata) are never picked between silently.
        let found = match list.iter().position(|r| r.name == name) {
            Some(i) => Some(i),
            None => {
                let want = name.to_lowercase();
                let hits: Vec<usize> = (0..list.len())
                    .filter(|&i| list[i].name.to_lowercase() == want)
                    .collect();
                if hits.len() > 1 {
                    let names: Vec<&str> = hits.iter().map(|&i| list[i].name.as_str()).collect();
                    return Err(Error::Ambiguous(format!(
                        "{name} is ambiguous: {} differ only in case",
                        names.join(", ")
                    )));
                }
                hits.first().copied()
            }
        };
        match found {
            Some(i) => Ok(self.register(list.into_iter().nth(i).expect("found"))),
            None => Err(Error::NotFound(format!(
                "{name}: no such file or directory"
            ))),
        }
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let (first, kind, at) = self.node(dir, |n| (n.first, n.meta.kind, n.entry_at))?;
        if kind != NodeKind::Dir {
            return Err(Error::NotADirectory(format!(
                "FAT: the entry at byte {at} is not a directory"
            )));
        }
        Ok(self
            .list(first, &format!("directory at cluster {first}"))?
            .into_iter()
            .map(|r| {
                let (name, kind) = (r.name.clone(), r.meta.kind);
                DirEntry {
                    name,
                    node: self.register(r),
                    kind,
                }
            })
            .collect())
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        self.node(node, |n| n.meta.clone())
    }

    fn read_at(&self, node: NodeId, stream: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if !stream.is_empty() {
            return Err(Error::NotFound(format!(
                "FAT files have no named streams ({stream})"
            )));
        }
        let (meta, first, at) = self.node(node, |n| (n.meta.clone(), n.first, n.entry_at))?;
        if meta.kind != NodeKind::File {
            return Err(Error::IsADirectory(if at == 0 {
                "FAT: the root directory is not a file".to_string()
            } else {
                format!("FAT: the entry at byte {at} is a directory")
            }));
        }
        if offset >= meta.size || buf.is_empty() {
            return Ok(0);
        }
        let runs = match self.node(node, |n| n.runs.get().cloned())? {
            Some(r) => r,
            None => {
                let r = self.runs(first, meta.size, at)?;
                self.node(node, |n| n.runs.get_or_init(|| r).clone())?
            }
        };
        let cb = self.b.cluster_bytes();
        let want = crate::le::clamp_len(meta.size - offset, buf.len());
        let mut done = 0;
        let mut skip = offset / cb;
        for &(start, count) in &runs {
            if done == want {
                break;
            }
            if skip >= u64::from(count) {
                skip -= u64::from(count);
                continue;
            }
            let run_bytes = (u64::from(count) - skip) * cb;
            let within = (offset + done as u64) % cb;
            let from = self.cluster_at(start) + skip * cb + within;
            let n = crate::le::clamp_len(run_bytes - within, want - done);
            self.dev.read_at(from, &mut buf[done..done + n])?;
            done += n;
            skip = 0;
        }
        Ok(done)
    }

    fn read_link(&self, node: NodeId) -> Result<String> {
        Err(Error::Invalid(format!(
            "node {node}: FAT has no symbolic links"
        )))
    }
}

#[cfg(test)]
// Test inputs are built from bits and small counters cut down on purpose.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn short_names_and_checksums() {
        let mut e = [b' '; 32];
        e[..11].copy_from_slice(b"README  TXT");
        e[12] = 0;
        assert_eq!(short_name(&e), "README.TXT");
        e[12] = 0x08;
        assert_eq!(short_name(&e), "readme.TXT");
        e[12] = 0x18;
        assert_eq!(short_name(&e), "readme.txt");
        e[..11].copy_from_slice(b"\x05\x82T     A  ");
        e[12] = 0x08;
        assert_eq!(short_name(&e), "\u{00D5}\u{00E9}t.A");
        // The checksum of the example in Microsoft's specification's style: any change of
        // a byte changes it.
        assert_ne!(
            short_checksum(b"README  TXT"),
            short_checksum(b"README  TXU")
        );
    }

    /// Long-name entries for `name` belonging to short name `short`, last part first.
    fn lfn_entries(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
        let mut units: Vec<u16> = name.encode_utf16().collect();
        let n = units.len().div_ceil(13);
        if !units.len().is_multiple_of(13) {
            units.push(0);
        }
        units.resize(13 * n, 0xFFFF);
        (1..=n)
            .rev()
            .map(|k| {
                let mut e = [0u8; 32];
                e[0] = k as u8 | if k == n { 0x40 } else { 0 };
                e[11] = 0x0F;
                e[13] = short_checksum(short);
                let offsets = (1..11).step_by(2).chain((14..26).step_by(2));
                for (u, o) in units[13 * (k - 1)..13 * k]
                    .iter()
                    .zip(offsets.chain((28..32).step_by(2)))
                {
                    e[o..o + 2].copy_from_slice(&u.to_le_bytes());
                }
                e
            })
            .collect()
    }

    fn long_name(entries: &[[u8; 32]], short: &[u8; 11]) -> Option<String> {
        let mut lfn = Lfn::default();
        for e in entries {
            lfn.add(e);
        }
        let mut s = [b' '; 32];
        s[..11].copy_from_slice(short);
        lfn.take(&s)
    }

    #[test]
    fn long_names_need_order_and_checksum() {
        let short = b"ALONGN~1TXT";
        let name = "A long name, longer than 26 units.txt";
        let good = lfn_entries(name, short);
        assert_eq!(good.len(), 3);
        assert_eq!(long_name(&good, short).as_deref(), Some(name));
        // Another short entry (its checksum differs): the long name is an orphan.
        assert_eq!(long_name(&good, b"ALONGN~2TXT"), None);
        // A part missing or out of order.
        assert_eq!(long_name(&[good[0], good[2]], short), None);
        assert_eq!(long_name(&[good[1], good[0], good[2]], short), None);
        // Exactly 13 units: no terminator.
        let exact = lfn_entries("thirteen unit", b"THIRTE~1   ");
        assert_eq!(
            long_name(&exact, b"THIRTE~1   ").as_deref(),
            Some("thirteen unit")
        );
    }

    #[test]
    fn dos_times() {
        // 2024-02-29 13:45:58.37
        let date = (44 << 9) | (2 << 5) | 29;
        let time = (13 << 11) | (45 << 5) | 29;
        let t = dos_time(date, time, 37).unwrap();
        assert_eq!((t.secs, t.nanos), (1_709_214_358, 370_000_000));
        assert!(civil(0, [0; 4]).is_none());
    }
}
