//! exFAT, read directly (no crate): boot sector, FAT chains, directory entry sets.
//!
//! A file is a set of directory entries: a File entry (0x85: attributes, times), a Stream
//! Extension (0xC0: first cluster, lengths, whether the clusters are contiguous) and File
//! Name entries (0xC1: 15 UTF-16 units each). Data is either contiguous from its first
//! cluster (NoFatChain) or follows the FAT; bytes past the valid data length read as zeros.
//! Node ids are synthesised (root 1). Names are compared as exFAT compares them: each
//! UTF-16 unit mapped through the volume's up-case table (entry 0x82 of the root
//! directory; runs of units that map to themselves are stored as 0xFFFF and a count).

use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fs::browse::{DirEntry, FileSystem, Metadata, NodeId, NodeKind, PartDev, Time};
use crate::fs::{corrupt, FsKind};
use std::collections::HashMap;
use std::sync::Mutex;

/// Largest directory read: the specification's limit (directories are small; this bounds
/// damaged ones, and so the memory one listing takes).
const MAX_DIR_BYTES: u64 = 256 << 20;
/// The root directory's length (not stored: it ends with its cluster chain).
const ROOT_LEN: u64 = u64::MAX;

/// Clusters of a file as runs (first, count), shared by its readers.
type Runs = std::sync::Arc<Vec<(u32, u32)>>;

#[derive(Clone, Copy)]
struct Data {
    first: u32,
    /// Bytes allocated to the file.
    len: u64,
    /// Bytes written; the rest reads as zeros.
    valid: u64,
    contiguous: bool,
}

struct Node {
    path: String,
    meta: Metadata,
    data: Data,
}

/// A mounted exFAT volume.
pub struct ExfatFs {
    dev: PartDev,
    fat: u64,
    heap: u64,
    cluster: u64,
    clusters: u64,
    nodes: Mutex<(Vec<Node>, HashMap<String, NodeId>)>,
    /// Each file's clusters as runs, found on its first read.
    runs: Mutex<HashMap<NodeId, Runs>>,
    /// The up-case table, read on the first lookup.
    upcase: std::sync::OnceLock<Vec<u16>>,
}

fn u16at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// An exFAT timestamp (DOS date and time, 10 ms increments, UTC offset) as UTC.
fn time(ts: u32, ms10: u8, utc: u8) -> Option<Time> {
    let (y, m, d) = (
        i64::from(ts >> 25) + 1980,
        i64::from(ts >> 21 & 15),
        i64::from(ts >> 16 & 31),
    );
    if !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let mut secs = days * 86_400
        + i64::from(ts >> 11 & 31) * 3600
        + i64::from(ts >> 5 & 63) * 60
        + i64::from(ts & 31) * 2
        + i64::from(ms10 / 100);
    if utc & 0x80 != 0 {
        // Signed 7-bit count of 15-minute steps east of UTC.
        let q = i64::from((utc << 1).cast_signed() >> 1);
        secs -= q * 15 * 60;
    }
    Some(Time {
        secs,
        nanos: u32::from(ms10 % 100) * 10_000_000,
    })
}

/// The up-case table as stored (little-endian units; 0xFFFF, n: the next n units map to
/// themselves) as one entry per unit.
fn expand_upcase(raw: &[u8]) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    let mut units = raw
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]));
    while let Some(u) = units.next() {
        if u == 0xFFFF {
            let n = units.next().unwrap_or(0);
            for _ in 0..n {
                let Ok(same) = u16::try_from(out.len()) else {
                    break;
                };
                out.push(same);
            }
        } else if out.len() <= usize::from(u16::MAX) {
            out.push(u);
        }
    }
    out
}

/// `name`'s UTF-16 units through the up-case `table` (units past its end stay).
fn upcased(table: &[u16], name: &str) -> Vec<u16> {
    name.encode_utf16()
        .map(|u| table.get(usize::from(u)).copied().unwrap_or(u))
        .collect()
}

impl ExfatFs {
    /// Reads the boot sector (parsed and checked by [`super::Boot::read`]).
    pub fn open(dev: PartDev) -> Result<ExfatFs> {
        let b = super::Boot::read(&dev)?;
        let root_cluster = b.root_cluster;
        let fs = ExfatFs {
            fat: b.fat_offset * b.sector,
            heap: b.heap_offset * b.sector,
            cluster: b.cluster,
            clusters: b.clusters,
            dev,
            nodes: Mutex::new((Vec::new(), HashMap::new())),
            runs: Mutex::new(HashMap::new()),
            upcase: std::sync::OnceLock::new(),
        };
        let root = Node {
            path: String::new(),
            meta: Metadata::new(NodeKind::Dir, 0),
            data: Data {
                first: root_cluster,
                len: ROOT_LEN,
                valid: ROOT_LEN,
                contiguous: false,
            },
        };
        let mut n = fs.nodes.lock().expect("not poisoned");
        n.0.push(root);
        n.1.insert(String::new(), 1);
        drop(n);
        Ok(fs)
    }

    fn cluster_pos(&self, c: u32) -> Result<u64> {
        if c < 2 || u64::from(c) >= self.clusters + 2 {
            return Err(corrupt(
                "exFAT",
                self.fat,
                format!("cluster {c} is outside the heap"),
            ));
        }
        Ok(self.heap + (u64::from(c) - 2) * self.cluster)
    }

    fn next_cluster(&self, c: u32) -> Result<Option<u32>> {
        let mut e = [0u8; 4];
        self.dev.read_at(self.fat + 4 * u64::from(c), &mut e)?;
        Ok(match u32::from_le_bytes(e) {
            0xFFFF_FFFF => None,
            n => Some(n),
        })
    }

    /// The error for a FAT chain that ends before `d`'s length: damage, never zeros.
    fn short_chain(&self, d: Data) -> Error {
        corrupt(
            "exFAT",
            self.fat + 4 * u64::from(d.first),
            format!(
                "the cluster chain from cluster {} ends before the data's {} bytes",
                d.first, d.len
            ),
        )
    }

    /// The clusters holding `d`'s bytes, as runs (first, count). Data longer than the heap,
    /// a chain that ends early, leaves the heap or comes back on itself is damage.
    fn runs(&self, d: Data) -> Result<Vec<(u32, u32)>> {
        if d.len > self.clusters * self.cluster {
            return Err(corrupt(
                "exFAT",
                self.fat,
                format!(
                    "data of {} bytes in a heap of {} clusters",
                    d.len, self.clusters
                ),
            ));
        }
        // At most the heap's cluster count (checked above), so below 2^32.
        let need = u32::try_from(d.len.div_ceil(self.cluster))
            .map_err(|_| corrupt("exFAT", self.fat, "a chain longer than the cluster heap"))?;
        if need == 0 {
            return Ok(Vec::new());
        }
        if d.contiguous {
            let last = u64::from(d.first) + u64::from(need) - 1;
            if d.first < 2 || last >= self.clusters + 2 {
                return Err(corrupt(
                    "exFAT",
                    self.fat,
                    format!(
                        "{} contiguous clusters from cluster {} leave the heap",
                        need, d.first
                    ),
                ));
            }
            return Ok(vec![(d.first, need)]);
        }
        let mut runs: Vec<(u32, u32)> = Vec::new();
        let mut c = d.first;
        for i in 0..need {
            self.cluster_pos(c)?;
            match runs.last_mut() {
                Some((s, n)) if s.checked_add(*n) == Some(c) => *n += 1,
                _ => runs.push((c, 1)),
            }
            if i + 1 < need {
                c = self.next_cluster(c)?.ok_or_else(|| self.short_chain(d))?;
            }
        }
        let mut sorted = runs.clone();
        sorted.sort_unstable();
        if sorted
            .windows(2)
            .any(|w| u64::from(w[0].0) + u64::from(w[0].1) > u64::from(w[1].0))
        {
            return Err(corrupt(
                "exFAT",
                self.fat + 4 * u64::from(d.first),
                format!(
                    "the cluster chain from cluster {} comes back on itself",
                    d.first
                ),
            ));
        }
        Ok(runs)
    }

    /// Reads `buf.len()` bytes of `d`, held in `runs`, from `offset`. Bytes past the valid
    /// data length are zeros, whatever the clusters hold.
    fn read_data(
        &self,
        d: Data,
        runs: &[(u32, u32)],
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let end = d.len.min(offset.saturating_add(buf.len() as u64));
        if offset >= end {
            return Ok(0);
        }
        let want = crate::le::clamp_len(end - offset, buf.len());
        // Read from disk only up to the valid data length.
        let stored = crate::le::clamp_len(d.valid.min(end).saturating_sub(offset), want);
        buf[stored..want].fill(0);
        let mut done = 0usize;
        let mut skip = offset / self.cluster;
        for &(start, count) in runs {
            if done == stored {
                break;
            }
            if skip >= u64::from(count) {
                skip -= u64::from(count);
                continue;
            }
            let within = (offset + done as u64) % self.cluster;
            let from = self.cluster_pos(start)? + skip * self.cluster + within;
            let run_bytes = (u64::from(count) - skip) * self.cluster - within;
            let n = crate::le::clamp_len(run_bytes, stored - done);
            self.dev.read_at(from, &mut buf[done..done + n])?;
            done += n;
            skip = 0;
        }
        if done < stored {
            return Err(self.short_chain(d));
        }
        Ok(want)
    }

    fn node(&self, id: NodeId) -> Result<(String, Metadata, Data)> {
        let n = self.nodes.lock().expect("not poisoned");
        id.checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| n.0.get(i))
            .map(|n| (n.path.clone(), n.meta.clone(), n.data))
            .ok_or_else(|| Error::NotFound(format!("exFAT: no node {id}")))
    }

    /// The directory entries of directory data `d`, up to the end marker. The root
    /// directory's length is not recorded anywhere: it ends with its cluster chain.
    fn raw_entries(&self, d: Data) -> Result<Vec<u8>> {
        let root = d.len == ROOT_LEN;
        let limit = d.len.min(MAX_DIR_BYTES);
        let mut raw = Vec::new();
        let mut buf = vec![0u8; crate::le::usize_of(self.cluster)?];
        let (mut c, mut off) = (d.first, 0u64);
        while off < limit {
            let n = crate::le::clamp_len(limit - off, buf.len());
            self.dev.read_at(self.cluster_pos(c)?, &mut buf[..n])?;
            for e in buf[..n].chunks_exact(32) {
                if e[0] == 0 {
                    return Ok(raw);
                }
                raw.extend_from_slice(e);
            }
            off += n as u64;
            if off >= limit {
                break;
            }
            c = if d.contiguous {
                c.checked_add(1)
                    .ok_or_else(|| corrupt("exFAT", self.fat, "cluster number overflows"))?
            } else {
                match self.next_cluster(c)? {
                    Some(n) => n,
                    None if root => break,
                    None => return Err(self.short_chain(d)),
                }
            };
        }
        Ok(raw)
    }

    /// The up-case table (an empty one, mapping every unit to itself, when the volume has
    /// none).
    fn upcase(&self) -> Result<&[u16]> {
        if let Some(t) = self.upcase.get() {
            return Ok(t);
        }
        let root = self.node(1)?.2;
        let mut table = Vec::new();
        if let Some(e) = self
            .raw_entries(root)?
            .chunks_exact(32)
            .find(|e| e[0] == 0x82)
        {
            let len = u64::from_le_bytes(e[24..32].try_into().expect("8 bytes")).min(1 << 17);
            let d = Data {
                first: u32at(e, 20),
                len,
                valid: len,
                contiguous: false,
            };
            let mut raw = vec![0u8; len as usize];
            let n = self.read_data(d, &self.runs(d)?, 0, &mut raw)?;
            table = expand_upcase(&raw[..n]);
        }
        Ok(self.upcase.get_or_init(|| table))
    }

    fn list(&self, d: Data) -> Result<Vec<(String, Metadata, Data)>> {
        let raw = self.raw_entries(d)?;
        let mut out = Vec::new();
        let mut i = 0;
        while i + 32 <= raw.len() {
            let e = &raw[i..i + 32];
            if e[0] != 0x85 {
                i += 32;
                continue;
            }
            let secondary = usize::from(e[1]);
            let set = raw.get(i..i + 32 * (secondary + 1));
            i += 32;
            let Some(set) = set else { break };
            let st = &set[32..64.min(set.len())];
            if secondary < 2 || st.len() < 32 || st[0] != 0xC0 {
                continue;
            }
            let attrs = u16at(e, 4);
            let name_len = usize::from(st[3]);
            let mut units = Vec::with_capacity(name_len);
            for ne in set[64..].chunks_exact(32).filter(|n| n[0] == 0xC1) {
                for k in 0..15 {
                    if units.len() < name_len {
                        units.push(u16at(ne, 2 + 2 * k));
                    }
                }
            }
            let name = String::from_utf16_lossy(&units);
            let data = Data {
                first: u32at(st, 20),
                len: u64at(st, 24),
                valid: u64at(st, 8),
                contiguous: st[1] & 2 != 0,
            };
            let dir = attrs & 0x10 != 0;
            let mut m = Metadata::new(
                if dir { NodeKind::Dir } else { NodeKind::File },
                if dir { 0 } else { data.len },
            );
            m.crtime = time(u32at(e, 8), e[20], e[22]);
            m.mtime = time(u32at(e, 12), e[21], e[23]);
            m.atime = time(u32at(e, 16), 0, e[24]);
            // Whole clusters, as exfat-fuse counts them (a directory's length is its own).
            // Saturates: a damaged length near 2^64 must not overflow.
            m.allocated = Some(data.len.div_ceil(self.cluster).saturating_mul(self.cluster));
            m.nlink = Some(1);
            i += 32 * secondary;
            out.push((name, m, data));
        }
        Ok(out)
    }

    fn register(&self, path: String, meta: Metadata, data: Data) -> NodeId {
        let mut n = self.nodes.lock().expect("not poisoned");
        if let Some(&id) = n.1.get(&path) {
            return id;
        }
        n.0.push(Node {
            path: path.clone(),
            meta,
            data,
        });
        let id = n.0.len() as NodeId;
        n.1.insert(path, id);
        id
    }
}

impl FileSystem for ExfatFs {
    fn kind(&self) -> FsKind {
        FsKind::Exfat
    }

    fn root(&self) -> NodeId {
        1
    }

    fn lookup(&self, dir: NodeId, name: &str, _case: crate::fs::browse::Case) -> Result<NodeId> {
        let table = self.upcase()?;
        let want = upcased(table, name);
        self.read_dir(dir)?
            .into_iter()
            .find(|e| e.name == name || upcased(table, &e.name) == want)
            .map(|e| e.node)
            .ok_or_else(|| Error::NotFound(format!("{name}: no such file or directory")))
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let (path, meta, data) = self.node(dir)?;
        if meta.kind != NodeKind::Dir {
            return Err(Error::NotADirectory(format!("{path}: not a directory")));
        }
        Ok(self
            .list(data)?
            .into_iter()
            .map(|(name, meta, data)| {
                let kind = meta.kind;
                let node = self.register(format!("{path}/{name}"), meta, data);
                DirEntry { name, node, kind }
            })
            .collect())
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        Ok(self.node(node)?.1)
    }

    fn read_at(&self, node: NodeId, stream: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if !stream.is_empty() {
            return Err(Error::NotFound(format!(
                "exFAT files have no named streams ({stream})"
            )));
        }
        let (path, meta, data) = self.node(node)?;
        if meta.kind != NodeKind::File {
            return Err(Error::IsADirectory(format!("{path}: is a directory")));
        }
        if data.len == 0 {
            return Ok(0);
        }
        let cached = self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node)
            .cloned();
        let runs = match cached {
            Some(r) => r,
            None => {
                let r = std::sync::Arc::new(self.runs(data)?);
                self.runs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(node, r.clone());
                r
            }
        };
        self.read_data(data, &runs, offset, buf)
    }

    fn read_link(&self, node: NodeId) -> Result<String> {
        let (path, _, _) = self.node(node)?;
        Err(Error::Invalid(format!(
            "{path}: exFAT has no symbolic links"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upcase_table_runs_and_lookups() {
        // 'a'..'c' map to 'A'..'C'; the 97 units before them, and 'A'..'C' here, map to
        // themselves; nothing past.
        let mut raw = Vec::new();
        for u in [0xFFFFu16, 97, 65, 66, 67] {
            raw.extend_from_slice(&u.to_le_bytes());
        }
        let t = expand_upcase(&raw);
        assert_eq!(t.len(), 100);
        assert_eq!((t[65], t[97], t[99]), (65, 65, 67));
        assert_eq!(upcased(&t, "abC"), upcased(&t, "ABc"));
        // Outside the table nothing is folded: U+212A (Kelvin) is not 'k'.
        assert_ne!(upcased(&t, "\u{212A}"), upcased(&t, "k"));
    }
}
