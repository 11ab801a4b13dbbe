//! NTFS through the `ntfs` crate: one parsed [`Ntfs`] shared by every thread, and a fresh
//! cursor over the partition for every call (the crate keeps no reader of its own).
//!
//! Node ids are file record numbers (the root directory is record 5). Like ntfs-3g, the
//! metadata files (records 0 to 15: `$MFT`, `$Bitmap`…) are not listed, DOS 8.3 names are
//! hidden behind their long names, times come from `$STANDARD_INFORMATION`, and named
//! `$DATA` attributes are offered as streams. Symbolic links and junctions are shown as
//! symbolic links; other reparse points as [`NodeKind::Reparse`].
//!
//! The crate returns the stored bytes of LZNT1-compressed files: those are decompressed
//! here ([`super::lznt1`]). For files compressed by WOF (CompactOS) it returns the zeros of
//! their sparse unnamed data: they are decoded from their `WofCompressedData` stream
//! ([`super::wof`]), which is then not listed as a stream. EFS files hold ciphertext and
//! are refused with a message rather than read wrongly.

use super::{lznt1, wof};
use super::{DirEntry, FileSystem, Metadata, NodeId, NodeKind, PartDev, Stream, Time};
use crate::blockdev::window::{read_at_cursor, seek_cursor};
use crate::blockdev::BlockDev;
use crate::error::{contain_panics, Error, Result};
use crate::fs::FsKind;
use ntfs::attribute_value::NtfsAttributeValue;
use ntfs::indexes::NtfsFileNameIndex;
use ntfs::structured_values::{NtfsFileAttributeFlags, NtfsFileName, NtfsFileNamespace};
use ntfs::{Ntfs, NtfsAttributeFlags, NtfsAttributeType, NtfsFile, NtfsReadSeek};
use std::collections::HashMap;
use std::io::SeekFrom;
use std::sync::{Arc, Mutex};

/// Record number of the root directory.
const ROOT: u64 = 5;
/// Records below this are metadata files, hidden from listings.
const FIRST_USER_RECORD: u64 = 16;

const TAG_MOUNT_POINT: u32 = 0xA000_0003;
const TAG_SYMLINK: u32 = 0xA000_000C;
/// Start of an Interix symbolic link's data.
const INTERIX_LINK: &[u8] = b"IntxLNK\x01";

fn err(e: ntfs::NtfsError) -> Error {
    Error::Invalid(format!("NTFS: {e}"))
}

/// A mounted NTFS volume.
pub struct NtfsFs {
    dev: PartDev,
    ntfs: Ntfs,
    /// File records that straddle two `$MFT` data runs: position of their first part ->
    /// the (position, length) pieces that make the record.
    stitched: HashMap<u64, Vec<(u64, u64)>>,
    /// Decompressed LZNT1 units, so that small reads (a mount's) decompress each unit once.
    units: Mutex<UnitCache>,
}

/// Bytes of decompressed units kept by one volume.
pub const UNIT_CACHE_BYTES: usize = 32 << 20;

type UnitKey = (NodeId, String, u64);

/// A least-recently-used cache bounded by the bytes it holds.
struct UnitCache {
    lru: lru::LruCache<UnitKey, Arc<Vec<u8>>>,
    bytes: usize,
    max: usize,
}

impl UnitCache {
    fn new(max: usize) -> UnitCache {
        UnitCache {
            lru: lru::LruCache::unbounded(),
            bytes: 0,
            max,
        }
    }

    fn get(&mut self, k: &UnitKey) -> Option<Arc<Vec<u8>>> {
        self.lru.get(k).cloned()
    }

    fn put(&mut self, k: UnitKey, v: Arc<Vec<u8>>) {
        self.bytes += v.len();
        if let Some(old) = self.lru.put(k, v) {
            self.bytes -= old.len();
        }
        while self.bytes > self.max {
            match self.lru.pop_lru() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }
}

/// A `Read + Seek` cursor over the partition for the ntfs crate, which reads a file record
/// as `record size` contiguous bytes from where its first byte lies. That is wrong for a
/// record split over two `$MFT` data runs (clusters smaller than records: 512-byte
/// clusters); such reads are served from the record's pieces instead.
struct Cursor<'a> {
    dev: &'a PartDev,
    pos: u64,
    stitched: Option<&'a HashMap<u64, Vec<(u64, u64)>>>,
}

impl<'a> Cursor<'a> {
    fn new(dev: &'a PartDev) -> Cursor<'a> {
        Cursor {
            dev,
            pos: 0,
            stitched: None,
        }
    }
}

impl std::io::Read for Cursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(pieces) = self.stitched.and_then(|m| m.get(&self.pos)) {
            let total: u64 = pieces.iter().map(|p| p.1).sum();
            if buf.len() as u64 == total {
                let mut at = 0usize;
                for &(pos, len) in pieces {
                    self.dev.read_at(pos, &mut buf[at..at + len as usize])?;
                    at += len as usize;
                }
                self.pos += total;
                return Ok(buf.len());
            }
        }
        read_at_cursor(self.dev, &mut self.pos, buf)
    }
}

impl std::io::Seek for Cursor<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        seek_cursor(self.dev.len(), &mut self.pos, pos)
    }
}

/// Records of `$MFT` that straddle a boundary between two of its data runs.
fn straddling_records(ntfs: &Ntfs, c: &mut Cursor) -> Result<HashMap<u64, Vec<(u64, u64)>>> {
    let mut out = HashMap::new();
    let rs = u64::from(ntfs.file_record_size());
    let mft = ntfs.file(c, 0).map_err(err)?;
    let Some(item) = mft.data(c, "") else {
        return Ok(out);
    };
    let item = item.map_err(err)?;
    let attr = item.to_attribute().map_err(err)?;
    let NtfsAttributeValue::NonResident(v) = attr.value(c).map_err(err)? else {
        return Ok(out);
    };
    // (first byte in the $MFT stream, length, position on the volume)
    let mut runs = Vec::new();
    let mut at = 0u64;
    for r in v.data_runs() {
        let r = r.map_err(err)?;
        let len = r.allocated_size();
        if let Some(p) = r.data_position().value() {
            runs.push((at, len, p.get()));
        }
        at += len;
    }
    for w in runs.windows(2) {
        let ((a_start, a_len, a_pos), (b_start, _, b_pos)) = (w[0], w[1]);
        let boundary = a_start + a_len;
        if boundary % rs == 0 || b_start != boundary {
            continue;
        }
        let rec = boundary - boundary % rs;
        let first = boundary - rec;
        out.insert(
            a_pos + (rec - a_start),
            vec![(a_pos + (rec - a_start), first), (b_pos, rs - first)],
        );
    }
    Ok(out)
}

impl NtfsFs {
    /// Parses the boot sector and the upcase table (for case-insensitive lookups).
    pub fn open(dev: PartDev) -> Result<NtfsFs> {
        let (ntfs, stitched) = contain_panics("NTFS", || {
            let mut c = Cursor::new(&dev);
            let mut ntfs = Ntfs::new(&mut c).map_err(err)?;
            let stitched = straddling_records(&ntfs, &mut c)?;
            c.stitched = Some(&stitched);
            ntfs.read_upcase_table(&mut c).map_err(err)?;
            Ok((ntfs, stitched))
        })?;
        Ok(NtfsFs {
            dev,
            ntfs,
            stitched,
            units: Mutex::new(UnitCache::new(UNIT_CACHE_BYTES)),
        })
    }

    /// A cursor over the partition for one call.
    fn cursor(&self) -> Cursor<'_> {
        Cursor {
            dev: &self.dev,
            pos: 0,
            stitched: Some(&self.stitched),
        }
    }

    fn file<'n>(&'n self, c: &mut Cursor, node: NodeId) -> Result<NtfsFile<'n>> {
        self.ntfs.file(c, node).map_err(err)
    }

    /// The reparse point data of a file, if it has one.
    fn reparse(&self, c: &mut Cursor, file: &NtfsFile) -> Result<Option<Vec<u8>>> {
        let mut attrs = file.attributes();
        while let Some(item) = attrs.next(c) {
            let item = item.map_err(err)?;
            let a = item.to_attribute().map_err(err)?;
            if a.ty().map_err(err)? != NtfsAttributeType::ReparsePoint {
                continue;
            }
            let len = a.value_length().min(16 * 1024) as usize;
            let mut v = a.value(c).map_err(err)?;
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                let n = v.read(c, &mut buf[done..]).map_err(err)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            buf.truncate(done);
            return Ok(Some(buf));
        }
        Ok(None)
    }

    fn kind_of(&self, c: &mut Cursor, file: &NtfsFile) -> Result<NodeKind> {
        let info = file.info().map_err(err)?;
        if info
            .file_attributes()
            .contains(NtfsFileAttributeFlags::REPARSE_POINT)
        {
            if let Some(r) = self.reparse(c, file)? {
                let tag = r
                    .get(..4)
                    .map_or(0, |t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]));
                match tag {
                    TAG_SYMLINK | TAG_MOUNT_POINT => return Ok(NodeKind::Symlink),
                    // WOF-compressed files are ordinary files.
                    wof::TAG => {}
                    _ if file.is_directory() => return Ok(NodeKind::Dir),
                    _ => return Ok(NodeKind::Reparse),
                }
            }
        }
        if file.is_directory() {
            return Ok(NodeKind::Dir);
        }
        if info
            .file_attributes()
            .contains(NtfsFileAttributeFlags::SYSTEM)
            && self.interix_link(c, file)?.is_some()
        {
            return Ok(NodeKind::Symlink);
        }
        Ok(NodeKind::File)
    }

    /// The target of an Interix symbolic link: a system file holding `IntxLNK\1` and the
    /// target in UTF-16. This is how ntfs-3g stores the links made through it.
    fn interix_link(&self, c: &mut Cursor, file: &NtfsFile) -> Result<Option<String>> {
        let Some(item) = file.data(c, "") else {
            return Ok(None);
        };
        let item = item.map_err(err)?;
        let attr = item.to_attribute().map_err(err)?;
        let len = attr.value_length();
        if !(8..=8 + 2 * 4096).contains(&len) || len % 2 != 0 {
            return Ok(None);
        }
        let mut v = attr.value(c).map_err(err)?;
        let mut buf = vec![0u8; len as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = v.read(c, &mut buf[done..]).map_err(err)?;
            if n == 0 {
                return Ok(None);
            }
            done += n;
        }
        if !buf.starts_with(INTERIX_LINK) {
            return Ok(None);
        }
        let units: Vec<u16> = buf[8..]
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        Ok(Some(String::from_utf16_lossy(&units)))
    }

    /// Number of parent directories between `node` and the root.
    fn depth(&self, c: &mut Cursor, node: NodeId) -> Result<usize> {
        let mut depth = 0usize;
        let mut cur = node;
        while cur != ROOT && depth < 4096 {
            let file = self.file(c, cur)?;
            let name = file
                .name(c, None, None)
                .ok_or_else(|| Error::Invalid(format!("NTFS: record {cur} has no name")))?
                .map_err(err)?;
            cur = name.parent_directory_reference().file_record_number();
            depth += 1;
        }
        Ok(depth.saturating_sub(1))
    }

    fn link_target(&self, c: &mut Cursor, node: NodeId) -> Result<String> {
        let file = self.file(c, node)?;
        let Some(r) = self.reparse(c, &file)? else {
            if let Some(t) = self.interix_link(c, &file)? {
                return Ok(t);
            }
            return Err(Error::Invalid(format!(
                "NTFS record {node}: not a symbolic link"
            )));
        };
        let u16at = |o: usize| {
            r.get(o..o + 2)
                .map_or(0, |b| u16::from_le_bytes([b[0], b[1]])) as usize
        };
        let tag = r
            .get(..4)
            .map_or(0, |t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]));
        let (buf_start, relative) = match tag {
            TAG_SYMLINK => {
                let flags = r
                    .get(16..20)
                    .map_or(0, |t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]));
                (20, flags & 1 == 1)
            }
            TAG_MOUNT_POINT => (16, false),
            _ => {
                return Err(Error::Invalid(format!(
                    "NTFS record {node}: reparse point {tag:#010x} is not a symbolic link"
                )))
            }
        };
        let (sub_off, sub_len) = (u16at(8), u16at(10));
        let start = buf_start + sub_off;
        let bytes = r.get(start..start + sub_len).ok_or_else(|| {
            crate::fs::corrupt("NTFS", 0, format!("record {node}: reparse data too short"))
        })?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        let target = String::from_utf16_lossy(&units);
        if relative {
            return Ok(target.replace('\\', "/"));
        }
        // "\??\C:\dir\file": a path on some volume. Made relative to this one, as
        // ntfs-3g does, so that it resolves inside a copy or a mount of the volume.
        let t = target.strip_prefix("\\??\\").unwrap_or(&target);
        let b = t.as_bytes();
        if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
            let rest = t[2..].trim_start_matches('\\').replace('\\', "/");
            let up = "../".repeat(self.depth(c, node)?);
            let rel = format!("{up}{rest}");
            return Ok(if rel.is_empty() { ".".into() } else { rel });
        }
        Ok(t.replace('\\', "/"))
    }
}

/// Offsets in a non-resident attribute record: the first VCN this piece maps, the bytes
/// allocated to the value, and (compressed or sparse values only) the bytes of it stored.
const NR_LOWEST_VCN: usize = 0x10;
const NR_ALLOCATED: usize = 0x28;
const NR_COMPRESSED: usize = 0x40;

impl NtfsFs {
    /// Bytes `node` takes on disk as ntfs-3g gives them in `st_blocks`: those of the
    /// `$INDEX_ALLOCATION` of a directory (none when its index fits in its file record),
    /// of the unnamed `$DATA` of anything else.
    fn allocated(&self, c: &mut Cursor, file: &NtfsFile, kind: NodeKind) -> Result<u64> {
        let (ty, name) = if kind == NodeKind::Dir {
            (NtfsAttributeType::IndexAllocation, "$I30")
        } else {
            (NtfsAttributeType::Data, "")
        };
        Ok(self.first_piece(c, file, ty, name)?.unwrap_or(0))
    }

    /// The bytes attribute `ty` named `name` of `file` takes, read from its first piece
    /// (the only one that records the value's sizes), in `file` itself or in an extension
    /// record its `$ATTRIBUTE_LIST` names.
    fn first_piece(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        ty: NtfsAttributeType,
        name: &str,
    ) -> Result<Option<u64>> {
        for e in self.list_entries(c, file)? {
            if e.ty().map_err(err)? == ty
                && e.name().to_string_lossy() == name
                && e.lowest_vcn().value() == 0
                && e.base_file_reference().file_record_number() != file.file_record_number()
            {
                let ext = e.to_file(&self.ntfs, c).map_err(err)?;
                let a = e.to_attribute(&ext).map_err(err)?;
                return self.piece_bytes(c, &ext, &a);
            }
        }
        for a in file.attributes_raw() {
            let a = a.map_err(err)?;
            if a.ty().map_err(err)? == ty && a.name().map_err(err)?.to_string_lossy() == name {
                if let Some(n) = self.piece_bytes(c, file, &a)? {
                    return Ok(Some(n));
                }
            }
        }
        Ok(None)
    }

    /// What ntfs-3g counts for attribute `a` of `file`: a resident value's length rounded
    /// up to 8 bytes; for a non-resident one the bytes stored when it is compressed or
    /// sparse, else the bytes allocated. None for a piece that does not start the value.
    fn piece_bytes(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        a: &ntfs::NtfsAttribute,
    ) -> Result<Option<u64>> {
        if a.is_resident() {
            return Ok(Some(a.value_length().div_ceil(8) * 8));
        }
        // The ntfs crate reads the allocated and compressed sizes of a non-resident
        // attribute but makes neither public (only the data runs, whose sum is not the
        // compressed size ntfs-3g reports), so they are read from the file record here.
        let record = self.record(c, file)?;
        let at = (a.position().value().map_or(0, |p| p.get()))
            .checked_sub(file.position().value().map_or(0, |p| p.get()))
            .map(|d| d as usize);
        let field = |off: usize| {
            at.and_then(|at| record.get(at + off..at + off + 8))
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(|| {
                    crate::fs::corrupt(
                        "NTFS",
                        0,
                        format!(
                            "record {}: attribute runs past the record",
                            file.file_record_number()
                        ),
                    )
                })
        };
        if field(NR_LOWEST_VCN)? != 0 {
            return Ok(None);
        }
        let packed = NtfsAttributeFlags::COMPRESSED | NtfsAttributeFlags::SPARSE;
        field(if a.flags().intersects(packed) {
            NR_COMPRESSED
        } else {
            NR_ALLOCATED
        })
        .map(Some)
    }

    /// The file record of `file` as the volume holds it, with its update sequence
    /// (the last two bytes of every 512) put back as the crate does when it reads it.
    fn record(&self, c: &mut Cursor, file: &NtfsFile) -> Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let pos = file.position().value().map_or(0, |p| p.get());
        let mut rec = vec![0u8; self.ntfs.file_record_size() as usize];
        c.seek(SeekFrom::Start(pos))
            .and_then(|_| c.read_exact(&mut rec))
            .map_err(|e| Error::Invalid(format!("NTFS: record at byte {pos}: {e}")))?;
        let f = crate::le::LeFields(&rec);
        let (usa, count) = (usize::from(f.u16(4)), usize::from(f.u16(6)));
        for i in 1..count {
            let (end, src) = (i * 512, usa + 2 * i);
            if end > rec.len() || src + 2 > rec.len() {
                break;
            }
            let fix = [rec[src], rec[src + 1]];
            rec[end - 2..end].copy_from_slice(&fix);
        }
        Ok(rec)
    }
}

impl NtfsFs {
    /// Named `$DATA` attributes that live in extension records, found by walking the
    /// `$ATTRIBUTE_LIST` directly. The ntfs crate's attribute iterator skips a stream whose
    /// list entry has the same type and instance number as the non-resident stream before
    /// it (instance numbers are only unique within one record), so such streams are looked
    /// up here. Only list entries that start a value (lowest VCN 0) are returned.
    fn listed_streams(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
    ) -> Result<Vec<ntfs::structured_values::NtfsAttributeListEntry>> {
        let mut out = Vec::new();
        for e in self.list_entries(c, file)? {
            if e.ty().map_err(err)? == NtfsAttributeType::Data
                && e.name_length() > 0
                && e.lowest_vcn().value() == 0
                && e.base_file_reference().file_record_number() != file.file_record_number()
            {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Every entry of `file`'s `$ATTRIBUTE_LIST` (none when it has no list).
    fn list_entries(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
    ) -> Result<Vec<ntfs::structured_values::NtfsAttributeListEntry>> {
        let mut out = Vec::new();
        for a in file.attributes_raw() {
            let a = a.map_err(err)?;
            if a.ty().map_err(err)? != NtfsAttributeType::AttributeList {
                continue;
            }
            let list: ntfs::structured_values::NtfsAttributeList =
                a.structured_value(c).map_err(err)?;
            let mut entries = list.entries();
            while let Some(e) = entries.next(c) {
                out.push(e.map_err(err)?);
            }
        }
        Ok(out)
    }

    /// Reads a `$DATA` attribute of `file` (record `node`).
    #[allow(clippy::too_many_arguments)]
    fn read_attr(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        attr: &ntfs::NtfsAttribute,
        node: NodeId,
        stream: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let flags = attr.flags();
        if flags.contains(NtfsAttributeFlags::ENCRYPTED) {
            return Err(Error::Invalid(format!(
                "NTFS record {node}: EFS-encrypted; its contents cannot be read without the \
                 owner's key"
            )));
        }
        // A resident value is never stored compressed, whatever its flag says.
        if flags.contains(NtfsAttributeFlags::COMPRESSED) && !attr.is_resident() {
            let cs = u64::from(self.ntfs.cluster_size());
            let (runs, size) = match attr.value(c).map_err(err)? {
                NtfsAttributeValue::NonResident(v) => (runs_of(&v, 0, cs)?, v.len()),
                NtfsAttributeValue::AttributeListNonResident(_) => {
                    self.listed_runs(c, file, stream, cs)?
                }
                NtfsAttributeValue::Resident(_) => unreachable!("checked above"),
            };
            return self.read_compressed(&runs, size, (node, stream), offset, buf);
        }
        if stream.is_empty() {
            if let Some(r) = self.wof_reparse(c, file)? {
                return self.read_wof(c, file, node, &r, attr.value_length(), offset, buf);
            }
        }
        let mut value = attr.value(c).map_err(err)?;
        if offset >= value.len() {
            return Ok(0);
        }
        value.seek(c, SeekFrom::Start(offset)).map_err(err)?;
        let mut done = 0;
        while done < buf.len() {
            let n = value.read(c, &mut buf[done..]).map_err(err)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }
}

impl NtfsFs {
    /// The reparse data of `file` when it is compressed by WOF.
    fn wof_reparse(&self, c: &mut Cursor, file: &NtfsFile) -> Result<Option<Vec<u8>>> {
        let info = file.info().map_err(err)?;
        if !info
            .file_attributes()
            .contains(NtfsFileAttributeFlags::REPARSE_POINT)
        {
            return Ok(None);
        }
        Ok(self
            .reparse(c, file)?
            .filter(|r| r.get(..4) == Some(&wof::TAG.to_le_bytes()[..])))
    }

    /// Length of the named stream `name` of `file`, wherever its attribute lives.
    fn stream_len(&self, c: &mut Cursor, file: &NtfsFile, name: &str) -> Result<Option<u64>> {
        if let Some(item) = file.data(c, name) {
            let item = item.map_err(err)?;
            let attr = item.to_attribute().map_err(err)?;
            return Ok(Some(attr.value_length()));
        }
        for e in self.listed_streams(c, file)? {
            if e.name().to_string_lossy().to_lowercase() == name.to_lowercase() {
                let ext = e.to_file(&self.ntfs, c).map_err(err)?;
                return Ok(Some(e.to_attribute(&ext).map_err(err)?.value_length()));
            }
        }
        Ok(None)
    }

    /// Fills `buf` from `offset` of stream `name` of `node`.
    fn read_exact_stream(
        &self,
        node: NodeId,
        name: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(node, name, offset + done as u64, &mut buf[done..])?;
            if n == 0 {
                return Err(crate::fs::corrupt(
                    "NTFS",
                    0,
                    format!("record {node}: stream {name} ends early"),
                ));
            }
            done += n;
        }
        Ok(())
    }

    /// Reads a file compressed by WOF ([`wof`]): `size` bytes, decoded a chunk at a time
    /// from its `WofCompressedData` stream (chunks kept in the unit cache).
    #[allow(clippy::too_many_arguments)]
    fn read_wof(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        node: NodeId,
        reparse: &[u8],
        size: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let bad = |e: String| {
            Error::Invalid(format!(
                "NTFS record {node}: compressed by Windows (WOF): {e}"
            ))
        };
        let alg = wof::parse_reparse(reparse).map_err(bad)?;
        if offset >= size {
            return Ok(0);
        }
        let stored = self
            .stream_len(c, file, wof::STREAM)?
            .ok_or_else(|| bad(format!("its {} stream is missing", wof::STREAM)))?;
        let cs = alg.chunk_size();
        self.read_units((node, WOF_KEY), cs, size, offset, buf, |i| {
            self.wof_chunk(node, alg, size, stored, i)
        })
    }

    /// Chunk `i` of a WOF-compressed file, decoded.
    fn wof_chunk(
        &self,
        node: NodeId,
        alg: wof::Algorithm,
        size: u64,
        stored: u64,
        i: u64,
    ) -> Result<Vec<u8>> {
        let mut io_err = None;
        let entry = |k: u64, width: usize| {
            let mut b = [0u8; 8];
            match self.read_exact_stream(node, wof::STREAM, k * width as u64, &mut b[..width]) {
                Ok(()) => Ok(u64::from_le_bytes(b)),
                Err(e) => {
                    let msg = e.to_string();
                    io_err = Some(e);
                    Err(msg)
                }
            }
        };
        let loc = wof::chunk_location(alg, size, stored, i, entry);
        if let Some(e) = io_err {
            return Err(e);
        }
        let (at, len, plain) = loc.map_err(|e| {
            Error::Invalid(format!(
                "NTFS record {node}: compressed by Windows (WOF): {e}"
            ))
        })?;
        let mut raw = vec![0u8; len as usize];
        self.read_exact_stream(node, wof::STREAM, at, &mut raw)?;
        if len as usize == plain {
            return Ok(raw);
        }
        alg.decompress(&raw, plain).map_err(|e| {
            Error::Invalid(format!(
                "NTFS record {node}: compressed by Windows (WOF): chunk {i}: {e}"
            ))
        })
    }
}

/// Stream name under which decoded WOF chunks are cached (no stream can have a `:`).
const WOF_KEY: &str = ":wof";

/// Clusters in a compression unit: NTFS compresses only with 2^4.
const UNIT_CLUSTERS: u64 = 16;

/// One data run: first cluster (VCN), cluster count, byte position on the volume (`None`
/// for a hole).
type Run = (u64, u64, Option<u64>);

impl NtfsFs {
    /// Reads an LZNT1-compressed value: it is stored in units of 16 clusters, each either
    /// all allocated (stored as is), all holes (zeros), or partly allocated (the allocated
    /// clusters hold the compressed unit).
    fn read_compressed(
        &self,
        runs: &[Run],
        size: u64,
        (node, stream): (NodeId, &str),
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let cs = u64::from(self.ntfs.cluster_size());
        self.read_units((node, stream), UNIT_CLUSTERS * cs, size, offset, buf, |u| {
            self.unit(runs, u, cs)
        })
    }

    /// The data runs of `$DATA` attribute `stream` of `file` when its pieces lie in several
    /// file records (listed in its `$ATTRIBUTE_LIST`), in VCN order, and its size (which
    /// only the first piece records).
    fn listed_runs(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        stream: &str,
        cs: u64,
    ) -> Result<(Vec<Run>, u64)> {
        let mut pieces: Vec<(u64, Vec<Run>)> = Vec::new();
        let mut size = 0;
        for e in self.list_entries(c, file)? {
            if e.ty().map_err(err)? != NtfsAttributeType::Data
                || e.name().to_string_lossy() != stream
            {
                continue;
            }
            let start = u64::try_from(e.lowest_vcn().value())
                .map_err(|_| Error::Invalid("NTFS: negative VCN in an attribute list".into()))?;
            let ext = e.to_file(&self.ntfs, c).map_err(err)?;
            let piece = e.to_attribute(&ext).map_err(err)?;
            if start == 0 {
                size = piece.value_length();
            }
            if let NtfsAttributeValue::NonResident(v) = piece.value(c).map_err(err)? {
                pieces.push((start, runs_of(&v, start, cs)?));
            }
        }
        pieces.sort_by_key(|p| p.0);
        Ok((pieces.into_iter().flat_map(|p| p.1).collect(), size))
    }

    /// Reads `offset..` of data of `size` bytes made of units of `unit_bytes` each, which
    /// `load(u)` decodes (the last one may be shorter); decoded units are kept in the
    /// volume's unit cache under `(node, key, u)`.
    fn read_units(
        &self,
        (node, key): (NodeId, &str),
        unit_bytes: u64,
        size: u64,
        offset: u64,
        buf: &mut [u8],
        load: impl Fn(u64) -> Result<Vec<u8>>,
    ) -> Result<usize> {
        let end = size.min(offset.saturating_add(buf.len() as u64));
        if offset >= end {
            return Ok(0);
        }
        let mut pos = offset;
        while pos < end {
            let u = pos / unit_bytes;
            let k = (node, key.to_string(), u);
            let cached = self.units.lock().expect("not poisoned").get(&k);
            let data = match cached {
                Some(d) => d,
                None => {
                    let d = Arc::new(load(u)?);
                    self.units.lock().expect("not poisoned").put(k, d.clone());
                    d
                }
            };
            let from = (pos - u * unit_bytes) as usize;
            let n = ((end - pos) as usize).min(data.len().saturating_sub(from));
            if n == 0 {
                return Err(crate::fs::corrupt(
                    "NTFS",
                    0,
                    format!("record {node}: unit {u} decodes short"),
                ));
            }
            let at = (pos - offset) as usize;
            buf[at..at + n].copy_from_slice(&data[from..from + n]);
            pos += n as u64;
        }
        Ok((end - offset) as usize)
    }

    /// The data of compression unit `u`.
    fn unit(&self, runs: &[Run], u: u64, cs: u64) -> Result<Vec<u8>> {
        let first = u * UNIT_CLUSTERS;
        let last = first + UNIT_CLUSTERS;
        let unit_bytes = (UNIT_CLUSTERS * cs) as usize;
        let mut stored = Vec::with_capacity(unit_bytes);
        let mut allocated = 0;
        for &(start, n, at) in runs {
            let (a, b) = (start.max(first), (start + n).min(last));
            if a >= b {
                continue;
            }
            if let Some(at) = at {
                let mut piece = vec![0u8; ((b - a) * cs) as usize];
                self.dev.read_at(at + (a - start) * cs, &mut piece)?;
                stored.extend_from_slice(&piece);
                allocated += b - a;
            }
        }
        let mut out = if allocated == 0 {
            Vec::new()
        } else if allocated == UNIT_CLUSTERS {
            stored
        } else {
            lznt1::decompress(&stored, unit_bytes)
                .map_err(|e| Error::Invalid(format!("NTFS: compression unit {u}: {e}")))?
        };
        out.resize(unit_bytes, 0);
        Ok(out)
    }
}

/// The data runs of one non-resident attribute (or piece of one) starting at VCN `vcn`.
fn runs_of(
    v: &ntfs::attribute_value::NtfsNonResidentAttributeValue,
    mut vcn: u64,
    cs: u64,
) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for r in v.data_runs() {
        let r = r.map_err(err)?;
        let n = r.allocated_size() / cs;
        runs.push((vcn, n, r.data_position().value().map(|p| p.get())));
        vcn += n;
    }
    Ok(runs)
}

fn time(t: ntfs::NtfsTime) -> Option<Time> {
    Some(Time::from_nt(t.nt_timestamp()))
}

impl FileSystem for NtfsFs {
    fn kind(&self) -> FsKind {
        FsKind::Ntfs
    }

    fn root(&self) -> NodeId {
        ROOT
    }

    fn lookup(&self, dir: NodeId, name: &str) -> Result<NodeId> {
        contain_panics("NTFS", || {
            let mut c = self.cursor();
            let file = self.file(&mut c, dir)?;
            let index = file.directory_index(&mut c).map_err(err)?;
            let mut finder = index.finder();
            let Some(entry) = NtfsFileNameIndex::find(&mut finder, &self.ntfs, &mut c, name) else {
                return Err(Error::NotFound(format!(
                    "{name}: no such file or directory"
                )));
            };
            let record = entry.map_err(err)?.file_reference().file_record_number();
            if record < FIRST_USER_RECORD && record != ROOT {
                return Err(Error::NotFound(format!(
                    "{name}: no such file or directory"
                )));
            }
            Ok(record)
        })
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let mut c = self.cursor();
        let file = self.file(&mut c, dir)?;
        let index = file.directory_index(&mut c).map_err(err)?;
        let mut entries = index.entries();
        let mut raw: Vec<(String, u64, NtfsFileName)> = Vec::new();
        while let Some(e) = entries.next(&mut c) {
            let e = e.map_err(err)?;
            let record = e.file_reference().file_record_number();
            let Some(key) = e.key() else { continue };
            let key = key.map_err(err)?;
            if key.namespace() == NtfsFileNamespace::Dos || record < FIRST_USER_RECORD {
                continue;
            }
            raw.push((key.name().to_string_lossy(), record, key));
        }
        drop(entries);
        let mut out = Vec::with_capacity(raw.len());
        for (name, record, key) in raw {
            let attrs = key.file_attributes();
            let kind = if attrs.contains(NtfsFileAttributeFlags::REPARSE_POINT)
                || (attrs.contains(NtfsFileAttributeFlags::SYSTEM) && !key.is_directory())
            {
                let f = self.file(&mut c, record)?;
                self.kind_of(&mut c, &f)?
            } else if key.is_directory() {
                NodeKind::Dir
            } else {
                NodeKind::File
            };
            out.push(DirEntry {
                name,
                node: record,
                kind,
            });
        }
        Ok(out)
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        contain_panics("NTFS", || {
            let mut c = self.cursor();
            let file = self.file(&mut c, node)?;
            let kind = self.kind_of(&mut c, &file)?;
            let info = file.info().map_err(err)?;
            let mut m = Metadata::new(kind, 0);
            m.mtime = time(info.modification_time());
            m.atime = time(info.access_time());
            m.ctime = time(info.mft_record_modification_time());
            m.crtime = time(info.creation_time());
            let mut links = 0u32;
            let mut attrs = file.attributes();
            while let Some(item) = attrs.next(&mut c) {
                let item = item.map_err(err)?;
                let a = item.to_attribute().map_err(err)?;
                match a.ty().map_err(err)? {
                    NtfsAttributeType::FileName => {
                        let n: NtfsFileName = a.structured_value(&mut c).map_err(err)?;
                        if n.namespace() != NtfsFileNamespace::Dos {
                            links += 1;
                        }
                    }
                    NtfsAttributeType::Data => {
                        let name = a.name().map_err(err)?;
                        if name.is_empty() {
                            if kind == NodeKind::File || kind == NodeKind::Reparse {
                                m.size = a.value_length();
                            }
                        } else {
                            m.streams.push(Stream {
                                name: name.to_string_lossy(),
                                size: a.value_length(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            for e in self.listed_streams(&mut c, &file)? {
                let name = e.name().to_string_lossy();
                if m.streams.iter().all(|s| s.name != name) {
                    let ext = e.to_file(&self.ntfs, &mut c).map_err(err)?;
                    let a = e.to_attribute(&ext).map_err(err)?;
                    m.streams.push(Stream {
                        name,
                        size: a.value_length(),
                    });
                }
            }
            m.nlink = Some(links.max(1));
            m.ino = Some(node);
            m.allocated = Some(self.allocated(&mut c, &file, kind)?);
            // The compressed data of a WOF file is how it is stored, not a stream of its own
            // (Windows does not list it either).
            if kind == NodeKind::File && self.wof_reparse(&mut c, &file)?.is_some() {
                m.streams
                    .retain(|s| !s.name.eq_ignore_ascii_case(wof::STREAM));
            }
            if kind == NodeKind::Symlink {
                m.size = self.link_target(&mut c, node)?.len() as u64;
            }
            Ok(m)
        })
    }

    fn read_at(&self, node: NodeId, stream: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        contain_panics("NTFS", || {
            let mut c = self.cursor();
            let file = self.file(&mut c, node)?;
            if file.is_directory() && stream.is_empty() {
                return Err(Error::Invalid(format!(
                    "NTFS record {node}: is a directory"
                )));
            }
            if let Some(item) = file.data(&mut c, stream) {
                let item = item.map_err(err)?;
                let attr = item.to_attribute().map_err(err)?;
                return self.read_attr(&mut c, &file, &attr, node, stream, offset, buf);
            }
            if stream.is_empty() {
                return Ok(0);
            }
            // A stream the crate's attribute walk misses (see `listed_streams`).
            for entry in self.listed_streams(&mut c, &file)? {
                if entry.name().to_string_lossy().to_lowercase() == stream.to_lowercase() {
                    let ext = entry.to_file(&self.ntfs, &mut c).map_err(err)?;
                    let attr = entry.to_attribute(&ext).map_err(err)?;
                    return self.read_attr(&mut c, &file, &attr, node, stream, offset, buf);
                }
            }
            Err(Error::NotFound(format!("no stream named {stream}")))
        })
    }

    fn read_link(&self, node: NodeId) -> Result<String> {
        contain_panics("NTFS", || {
            let mut c = self.cursor();
            self.link_target(&mut c, node)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_cache_stays_under_its_byte_ceiling() {
        let mut c = UnitCache::new(25);
        for u in 0..3 {
            c.put((1, String::new(), u), Arc::new(vec![0u8; 10]));
        }
        assert_eq!(c.bytes, 20);
        assert!(
            c.get(&(1, String::new(), 0)).is_none(),
            "the oldest unit goes first"
        );
        assert!(c.get(&(1, String::new(), 2)).is_some());
        // Replacing a unit does not count it twice.
        c.put((1, String::new(), 2), Arc::new(vec![0u8; 10]));
        assert_eq!(c.bytes, 20);
        c.put((2, "s".into(), 0), Arc::new(vec![0u8; 100]));
        assert_eq!(c.bytes, 0, "a unit larger than the ceiling is not kept");
    }
}
