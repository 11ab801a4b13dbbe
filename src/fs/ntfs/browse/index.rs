//! Directory index nodes (`$INDEX_ROOT` and the `INDX` records of `$INDEX_ALLOCATION`)
//! parsed from their bytes.
//!
//! The ntfs crate reads index records only through its own view of `$INDEX_ALLOCATION`,
//! which is wrong when that attribute is split over several file records (see [`super::value`]):
//! ntfs-3g does that to any big directory on a fragmented volume. So the records are read
//! here through the value put together from all pieces, and their entries parsed here too.

use super::value::Value;
use super::{damaged, undo_fixups, NtfsFs};
use crate::error::Result;
use crate::le::LeFields;
use nt_string::u16strle::U16StrLe;
use ntfs::structured_values::NtfsFileAttributeFlags;

/// Namespace of a DOS 8.3 alias (a second name for a file that also has a long one).
pub(super) const NAMESPACE_DOS: u8 = 2;

/// Where the `$FILE_NAME` key keeps its fields.
const KEY_ATTRIBUTES: usize = 0x38;
const KEY_NAME_LEN: usize = 0x40;
const KEY_NAMESPACE: usize = 0x41;
const KEY_NAME: usize = 0x42;

/// The file attribute flag `$FILE_NAME` keys use for directories.
const DUP_DIRECTORY: u32 = 0x1000_0000;

/// Entry flags: a subnode VCN ends the entry; the entry ends the node (it has no key).
const ENTRY_SUBNODE: u16 = 0x1;
const ENTRY_LAST: u16 = 0x2;

/// The `$FILE_NAME` key of an index entry.
#[derive(Clone, Debug)]
pub(super) struct Key {
    /// The name in UTF-16LE, as stored.
    name: Vec<u8>,
    pub namespace: u8,
    attributes: u32,
}

impl Key {
    pub fn name(&self) -> U16StrLe<'_> {
        U16StrLe(&self.name)
    }

    pub fn is_directory(&self) -> bool {
        self.attributes & DUP_DIRECTORY != 0
    }

    pub fn file_attributes(&self) -> NtfsFileAttributeFlags {
        NtfsFileAttributeFlags::from_bits_truncate(self.attributes)
    }
}

/// One entry of an index node.
pub(super) struct Entry {
    /// File record the entry names.
    pub record: u64,
    /// VCN of the node holding the keys before this one.
    pub subnode: Option<u64>,
    /// None for the node's last entry, which only points at a subnode.
    pub key: Option<Key>,
}

/// The entries of the index node whose index header starts at `header` of `node`. `dir`
/// names the directory in errors.
pub(super) fn entries(node: &[u8], header: usize, dir: u64) -> Result<Vec<Entry>> {
    let bad = |what: &str| damaged(dir, format!("directory index: {what}"));
    let f = LeFields(node);
    if header + 16 > node.len() {
        return Err(bad("node too short"));
    }
    let first = header + crate::le::clamp_len(u64::from(f.u32(header)), node.len());
    let end =
        (header + crate::le::clamp_len(u64::from(f.u32(header + 4)), node.len())).min(node.len());
    let mut out = Vec::new();
    let mut at = first;
    loop {
        if at + 16 > end {
            return Err(bad("entries run past their node"));
        }
        let len = usize::from(f.u16(at + 8));
        let key_len = usize::from(f.u16(at + 10));
        let flags = f.u16(at + 12);
        let sub_len = if flags & ENTRY_SUBNODE != 0 { 8 } else { 0 };
        if len < 16 + sub_len || at + len > end || 16 + key_len + sub_len > len {
            return Err(bad("entry of a bad length"));
        }
        let subnode = (sub_len > 0).then(|| f.u64(at + len - 8));
        if flags & ENTRY_LAST != 0 {
            out.push(Entry {
                record: 0,
                subnode,
                key: None,
            });
            return Ok(out);
        }
        let key = &node[at + 16..at + 16 + key_len];
        if key.len() < KEY_NAME {
            return Err(bad("file name key too short"));
        }
        let name_len = 2 * usize::from(key[KEY_NAME_LEN]);
        let name = key
            .get(KEY_NAME..KEY_NAME + name_len)
            .ok_or_else(|| bad("file name runs past its key"))?;
        out.push(Entry {
            record: f.u64(at) & 0xFFFF_FFFF_FFFF,
            subnode,
            key: Some(Key {
                name: name.to_vec(),
                namespace: key[KEY_NAMESPACE],
                attributes: LeFields(key).u32(KEY_ATTRIBUTES),
            }),
        });
        at += len;
    }
}

/// An `$INDEX_ROOT` value: the size of the directory's index records, and its root node
/// (entries after the 16-byte root header).
pub(super) fn root(value: &[u8], dir: u64) -> Result<(u32, Vec<Entry>)> {
    if value.len() < 32 {
        return Err(damaged(dir, "directory index root too short"));
    }
    let record_size = LeFields(value).u32(8);
    Ok((record_size, entries(value, 16, dir)?))
}

impl NtfsFs {
    /// The index record at `vcn` of a directory's `$INDEX_ALLOCATION` value `alloc`, with
    /// records of `size` bytes, fixed up and checked: its signature, its update sequence and
    /// the VCN it records.
    pub(super) fn index_record(
        &self,
        alloc: &Value,
        size: u32,
        vcn: u64,
        dir: u64,
    ) -> Result<Vec<u8>> {
        let bad = |what: String| damaged(dir, format!("directory index record {vcn}: {what}"));
        // Windows' records are 4 KiB; the format allows up to 64 KiB.
        if !(512..=65536).contains(&size) || !size.is_power_of_two() {
            return Err(bad(format!("records of {size} bytes")));
        }
        let cs = self.ntfs.cluster_size();
        // VCNs count clusters, or 512-byte blocks when records are smaller than a cluster.
        let unit = if size >= cs { u64::from(cs) } else { 512 };
        let at = vcn
            .checked_mul(unit)
            .filter(|&at| at.saturating_add(u64::from(size)) <= alloc.size)
            .ok_or_else(|| bad("past the index allocation".into()))?;
        let mut rec = vec![0u8; crate::le::usize_of(u64::from(size))?];
        self.read_value(alloc, at, &mut rec)?;
        if &rec[..4] != b"INDX" {
            return Err(bad("no INDX signature".into()));
        }
        undo_fixups(&mut rec).map_err(|e| bad(e.into()))?;
        if LeFields(&rec).u64(0x10) != vcn {
            return Err(bad("records another VCN".into()));
        }
        Ok(rec)
    }
}

#[cfg(test)]
// The test builds nodes of a few short names, whose lengths fit any field.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    /// An index entry for `name` naming `record`, with `flags` and an optional subnode.
    fn entry(name: &str, record: u64, dir: bool, subnode: Option<u64>) -> Vec<u8> {
        let units: Vec<u8> = name.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        let mut key = vec![0u8; KEY_NAME];
        key[KEY_ATTRIBUTES..KEY_ATTRIBUTES + 4]
            .copy_from_slice(&(if dir { DUP_DIRECTORY } else { 0x20 }).to_le_bytes());
        key[KEY_NAME_LEN] = name.encode_utf16().count() as u8;
        key[KEY_NAMESPACE] = 1;
        key.extend_from_slice(&units);
        let sub = if subnode.is_some() { 8 } else { 0 };
        let len = (16 + key.len() + sub).div_ceil(8) * 8;
        let mut e = vec![0u8; len];
        e[..8].copy_from_slice(&record.to_le_bytes());
        e[8..10].copy_from_slice(&(len as u16).to_le_bytes());
        e[10..12].copy_from_slice(&(key.len() as u16).to_le_bytes());
        e[12..14].copy_from_slice(&(u16::from(subnode.is_some()) * ENTRY_SUBNODE).to_le_bytes());
        e[16..16 + key.len()].copy_from_slice(&key);
        if let Some(v) = subnode {
            e[len - 8..].copy_from_slice(&v.to_le_bytes());
        }
        e
    }

    fn node(entries: &[Vec<u8>], last_sub: Option<u64>) -> Vec<u8> {
        let mut body: Vec<u8> = entries.concat();
        let mut last = vec![0u8; if last_sub.is_some() { 24 } else { 16 }];
        let len = last.len() as u16;
        last[8..10].copy_from_slice(&len.to_le_bytes());
        let flags = ENTRY_LAST | if last_sub.is_some() { ENTRY_SUBNODE } else { 0 };
        last[12..14].copy_from_slice(&flags.to_le_bytes());
        if let Some(v) = last_sub {
            last[16..].copy_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&last);
        let mut n = vec![0u8; 16];
        n[0..4].copy_from_slice(&16u32.to_le_bytes());
        n[4..8].copy_from_slice(&(16 + body.len() as u32).to_le_bytes());
        n.extend_from_slice(&body);
        n
    }

    #[test]
    fn entries_keys_and_subnodes_are_parsed() {
        let n = node(
            &[
                entry("a.txt", 70, false, Some(3)),
                entry("Dir", 71, true, None),
            ],
            Some(9),
        );
        let e = entries(&n, 0, 5).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].record, 70);
        assert_eq!(e[0].subnode, Some(3));
        let k = e[0].key.as_ref().unwrap();
        assert_eq!(k.name().to_string_lossy(), "a.txt");
        assert!(!k.is_directory());
        assert!(e[1].key.as_ref().unwrap().is_directory());
        assert_eq!(e[1].subnode, None);
        assert!(e[2].key.is_none());
        assert_eq!(e[2].subnode, Some(9));
    }

    #[test]
    fn damaged_nodes_are_errors() {
        let good = node(&[entry("name", 80, false, None)], None);
        // Every truncation, and every length field set to each of a few bad values.
        for cut in 0..good.len() {
            let mut n = good.clone();
            n.truncate(cut);
            assert!(entries(&n, 0, 5).is_err(), "cut at {cut}");
        }
        for at in [4usize, 16 + 8, 16 + 10] {
            for v in [0u16, 1, 7, 0xffff] {
                let mut n = good.clone();
                n[at..at + 2].copy_from_slice(&v.to_le_bytes());
                let _ = entries(&n, 0, 5);
            }
        }
        let mut n = good.clone();
        n[16 + 16 + KEY_NAME_LEN] = 200;
        assert!(entries(&n, 0, 5).is_err());
    }
}
