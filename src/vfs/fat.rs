//! FAT12/16/32 through `fatfs`, on a storage adapter that refuses every write.
//!
//! `fatfs` wants `Read + Write + Seek` storage even to read, keeps it in a `RefCell` (not
//! `Sync`) and may write on unmount; here it sits behind a `Mutex`, and its storage is
//! a cursor over the partition whose `write` fails, so nothing can ever reach the image.
//! Access dates are not updated (`fatfs` leaves them alone unless asked).
//!
//! FAT has no inode numbers: node ids are synthesised, one per path seen, with the
//! directory entry's metadata captured when the name is first listed or looked up.
//! Times are stored in local time without a zone; they are read as UTC, as mtools does
//! with `TZ=UTC`.

use super::{DirEntry, FileSystem, Metadata, NodeId, NodeKind, PartDev, Time};
use crate::blockdev::window::{read_at_cursor, seek_cursor};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fs::FsKind;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;

/// Longest path listed (the Linux limit) and deepest directory (Windows paths of 260
/// characters allow about as many): beyond either a FAT tree is taken for a directory loop
/// even when its listings differ (a loop through a damaged chain of directories).
const MAX_PATH: usize = 4096;
const MAX_DEPTH: usize = 128;
/// Ancestors listing exactly like a directory that make it a loop.
const LOOP_REPEATS: usize = 4;
/// The partition as `fatfs` storage: reads and seeks; writes fail.
struct ReadOnlyIo {
    dev: PartDev,
    pos: u64,
}

impl Read for ReadOnlyIo {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        read_at_cursor(&self.dev, &mut self.pos, buf)
    }
}

impl std::io::Write for ReadOnlyIo {
    fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "images are read-only",
        ))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for ReadOnlyIo {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        seek_cursor(self.dev.len(), &mut self.pos, pos)
    }
}

type Fat = fatfs::FileSystem<ReadOnlyIo>;

/// Short (8.3) names are stored in an OEM code page. Code page 850 is what mtools and
/// Western-European DOS and Windows use; bytes 0x80-0xFF decode through this table
/// (`fatfs` alone would show them as U+FFFD).
#[derive(Debug)]
struct Cp850;

static CP850: Cp850 = Cp850;

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

impl fatfs::OemCpConverter for Cp850 {
    fn decode(&self, oem_char: u8) -> char {
        if oem_char < 0x80 {
            char::from(oem_char)
        } else {
            CP850_HIGH[usize::from(oem_char - 0x80)]
        }
    }

    fn encode(&self, uni_char: char) -> Option<u8> {
        if uni_char.is_ascii() {
            return Some(uni_char as u8);
        }
        CP850_HIGH
            .iter()
            .position(|&c| c == uni_char)
            .map(|i| 0x80 + i as u8)
    }
}

/// `fatfs::FileSystem` is not `Send` only because it holds `&'static dyn OemCpConverter`
/// and `&'static dyn TimeProvider` trait objects without a `Sync` bound. The ones used here
/// are [`Cp850`] and the crate's default time provider: stateless unit structs. Its `RefCell`s
/// are only reached through the `Mutex` in [`FatFs`], one thread at a time.
struct SendFat(Fat);

// SAFETY: see above: no state is shared between threads outside the Mutex.
unsafe impl Send for SendFat {}

struct Node {
    /// Path from the root, `/`-separated, without a leading `/` (root: empty).
    path: String,
    meta: Metadata,
}

#[derive(Default)]
struct Nodes {
    list: Vec<Node>,
    ids: HashMap<String, NodeId>,
}

/// A mounted FAT volume.
pub struct FatFs {
    kind: FsKind,
    fat: Mutex<SendFat>,
    nodes: Mutex<Nodes>,
    /// A digest of each directory listed (path -> names, kinds, sizes, times), to recognise
    /// a directory that lists exactly like one of its ancestors: a loop in damaged metadata.
    listings: Mutex<HashMap<String, u64>>,
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound(format!("{what}: no such file or directory"))
    } else {
        Error::Invalid(format!("FAT: {what}: {e}"))
    }
}

fn time(dt: fatfs::DateTime) -> Option<Time> {
    let t = &dt.time;
    civil(dt.date, [t.hour, t.min, t.sec, t.millis])
}

/// A date and `[hour, minute, second, millisecond]`, read as UTC.
fn civil(date: fatfs::Date, hmsm: [u16; 4]) -> Option<Time> {
    let (y, m, d) = (
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
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
        nanos: (ms.clamp(0, 999) * 1_000_000) as u32,
    })
}

/// Metadata of entry `e` on a volume of `cluster`-byte clusters.
fn meta_of(e: &fatfs::DirEntry<ReadOnlyIo>, cluster: u64) -> Metadata {
    let kind = if e.is_dir() {
        NodeKind::Dir
    } else {
        NodeKind::File
    };
    let mut m = Metadata::new(kind, if e.is_dir() { 0 } else { e.len() });
    // A file holds whole clusters; a directory's chain is not known without walking it.
    if !e.is_dir() {
        m.allocated = Some(e.len().div_ceil(cluster) * cluster);
    }
    m.mtime = time(e.modified());
    m.crtime = time(e.created());
    m.atime = civil(e.accessed(), [0; 4]);
    m.nlink = Some(1);
    m
}

impl FatFs {
    /// Mounts the volume (reads the boot sector and FSInfo only).
    pub fn open(dev: PartDev, kind: FsKind) -> Result<FatFs> {
        let io = ReadOnlyIo { dev, pos: 0 };
        let fat = fatfs::FileSystem::new(io, fatfs::FsOptions::new().oem_cp_converter(&CP850))
            .map_err(|e| Error::Invalid(format!("FAT: cannot mount: {e}")))?;
        let mut nodes = Nodes::default();
        nodes.list.push(Node {
            path: String::new(),
            meta: Metadata::new(NodeKind::Dir, 0),
        });
        nodes.ids.insert(String::new(), 1);
        Ok(FatFs {
            kind,
            fat: Mutex::new(SendFat(fat)),
            nodes: Mutex::new(nodes),
            listings: Mutex::new(HashMap::new()),
        })
    }

    fn node_path(&self, node: NodeId) -> Result<(String, Metadata)> {
        let nodes = self.nodes.lock().expect("not poisoned");
        node.checked_sub(1)
            .and_then(|i| nodes.list.get(i as usize))
            .map(|n| (n.path.clone(), n.meta.clone()))
            .ok_or_else(|| Error::NotFound(format!("FAT: no node {node}")))
    }

    fn register(&self, path: String, meta: Metadata) -> NodeId {
        let mut nodes = self.nodes.lock().expect("not poisoned");
        if let Some(&id) = nodes.ids.get(&path) {
            return id;
        }
        nodes.list.push(Node {
            path: path.clone(),
            meta,
        });
        let id = nodes.list.len() as NodeId;
        nodes.ids.insert(path, id);
        id
    }

    /// Runs `f` on the mounted volume. `fatfs` trusts cluster numbers read from disk (a
    /// damaged directory entry or FAT naming cluster 0 or 1 makes it subtract past zero and
    /// panic in a checked build): a panic is reported as damage. Its state is read-only and
    /// the next call starts afresh from the root directory.
    fn with_fat<T>(&self, path: &str, f: impl FnOnce(&SendFat) -> Result<T>) -> Result<T> {
        let fat = self.fat.lock().unwrap_or_else(|p| p.into_inner());
        crate::error::contain_panics(format_args!("FAT: {path}"), || f(&fat))
    }

    /// Entries of the directory at `path`: (name, metadata).
    fn list(&self, path: &str) -> Result<Vec<(String, Metadata)>> {
        let list = self.with_fat(path, |fat| Self::list_in(fat, path))?;
        // Node ids are paths, so a directory that contains itself would otherwise only
        // show as an ever deeper path, each step walked again from the root.
        // Nested directories of one name made within FAT's 2-second time resolution list
        // alike too, so only a listing repeated by several ancestors counts as a loop.
        let digest = list_digest(&list);
        let mut seen = self.listings.lock().unwrap_or_else(|p| p.into_inner());
        let ancestors = std::iter::successors(Some(path), |p| {
            (!p.is_empty()).then(|| p.rfind('/').map_or("", |i| &p[..i]))
        })
        .skip(1);
        let repeats = ancestors.filter(|a| seen.get(*a) == Some(&digest)).count();
        if repeats >= LOOP_REPEATS {
            return Err(loop_error(path));
        }
        seen.insert(path.to_string(), digest);
        Ok(list)
    }

    fn list_in(fat: &SendFat, path: &str) -> Result<Vec<(String, Metadata)>> {
        // Node ids here are paths, so a directory that contains itself (damaged metadata)
        // shows only as a path that keeps growing; every call walks it from the root.
        if path.len() > MAX_PATH || path.split('/').count() > MAX_DEPTH {
            return Err(loop_error(path));
        }
        let root = fat.0.root_dir();
        let dir = if path.is_empty() {
            root
        } else {
            root.open_dir(path).map_err(|e| io_err(path, e))?
        };
        let mut out = Vec::new();
        for (i, e) in dir.iter().enumerate() {
            // A FAT directory holds at most 65536 entries; more means its cluster chain
            // loops, which fatfs would follow for ever.
            if i >= 65536 {
                return Err(Error::Invalid(format!(
                    "FAT: {path}: directory has more than 65536 entries (its cluster chain loops)"
                )));
            }
            let e = e.map_err(|e| io_err(path, e))?;
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            out.push((name, meta_of(&e, u64::from(fat.0.cluster_size()))));
        }
        Ok(out)
    }

    fn join(dir: &str, name: &str) -> String {
        if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        }
    }
}

/// The error for a directory that loops back to one of its parents.
fn loop_error(path: &str) -> Error {
    let shown: String = path.chars().take(200).collect();
    Error::Invalid(format!(
        "FAT: {shown}: directory loops back to one of its parents (damaged metadata)"
    ))
}

/// xxh3 of a directory listing: every name, kind, size and time, in order.
fn list_digest(list: &[(String, Metadata)]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (name, m) in list {
        h.update(name.as_bytes());
        h.update(&[0, m.kind.letter() as u8]);
        h.update(&m.size.to_le_bytes());
        for t in [m.mtime, m.atime, m.crtime] {
            let (s, n) = t.map_or((0, 0), |t| (t.secs, t.nanos));
            h.update(&s.to_le_bytes());
            h.update(&n.to_le_bytes());
        }
    }
    h.digest()
}

impl FileSystem for FatFs {
    fn kind(&self) -> FsKind {
        self.kind
    }

    fn root(&self) -> NodeId {
        1
    }

    fn lookup(&self, dir: NodeId, name: &str) -> Result<NodeId> {
        let (path, _) = self.node_path(dir)?;
        let found = self
            .list(&path)?
            .into_iter()
            .find(|(n, _)| n == name || n.to_lowercase() == name.to_lowercase());
        match found {
            Some((n, meta)) => Ok(self.register(Self::join(&path, &n), meta)),
            None => Err(Error::NotFound(format!(
                "{name}: no such file or directory"
            ))),
        }
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let (path, meta) = self.node_path(dir)?;
        if meta.kind != NodeKind::Dir {
            return Err(Error::Invalid(format!("{path}: not a directory")));
        }
        Ok(self
            .list(&path)?
            .into_iter()
            .map(|(name, meta)| {
                let kind = meta.kind;
                let node = self.register(Self::join(&path, &name), meta);
                DirEntry { name, node, kind }
            })
            .collect())
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        Ok(self.node_path(node)?.1)
    }

    fn read_at(&self, node: NodeId, stream: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if !stream.is_empty() {
            return Err(Error::NotFound(format!(
                "FAT files have no named streams ({stream})"
            )));
        }
        let (path, meta) = self.node_path(node)?;
        if meta.kind != NodeKind::File {
            return Err(Error::Invalid(format!("{path}: is a directory")));
        }
        if offset >= meta.size {
            return Ok(0);
        }
        self.with_fat(&path, |fat| {
            let mut f = fat
                .0
                .root_dir()
                .open_file(&path)
                .map_err(|e| io_err(&path, e))?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| io_err(&path, e))?;
            let mut done = 0;
            while done < buf.len() {
                let n = f.read(&mut buf[done..]).map_err(|e| io_err(&path, e))?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            Ok(done)
        })
    }

    fn read_link(&self, node: NodeId) -> Result<String> {
        let (path, _) = self.node_path(node)?;
        Err(Error::Invalid(format!("{path}: FAT has no symbolic links")))
    }
}
