//! NTFS through the `ntfs` crate: one parsed [`Ntfs`] shared by every thread, and a fresh
//! cursor over the partition for every call (the crate keeps no reader of its own).
//!
//! Node ids are file record numbers (the root directory is record 5). Like ntfs-3g, the
//! metadata files (records 0 to 15: `$MFT`, `$Bitmap`…) are not listed, DOS 8.3 names are
//! hidden behind their long names, times come from `$STANDARD_INFORMATION`, and named
//! `$DATA` attributes are offered as streams. Symbolic links and junctions are shown as
//! symbolic links; other reparse points as [`NodeKind::Reparse`] (directories as
//! directories: OneDrive's cloud folders keep their children in their own index).
//!
//! Directory indexes are walked here, not with the crate's iterator: a lookup reads only the
//! index nodes that can hold its name, finds every entry equal to it ignoring case (the
//! crate's finder returns the first), and a node reached twice is damage. Bytes past a
//! value's initialized size read as zeros (the crate ignores that size).
//!
//! The crate returns the stored bytes of LZNT1-compressed files: those are decompressed
//! here ([`super::compress::lznt1`]). For files compressed by WOF (CompactOS) it returns the zeros of
//! their sparse unnamed data: they are decoded from their `WofCompressedData` stream
//! ([`super::compress::wof`]), which is then not listed as a stream. EFS files hold ciphertext and
//! are refused with a message rather than read wrongly.

mod index;
mod value;

use super::compress::{lznt1, wof};
use crate::blockdev::window::{read_at_cursor, seek_cursor};
use crate::blockdev::BlockDev;
use crate::cache::Units;
use crate::error::{contain_panics, Error, Result};
use crate::fs::browse::{
    Case, Changes, DataMap, DirEntry, FileSystem, Metadata, NodeId, NodeKind, PartDev, Stream, Time,
};
use crate::fs::FsKind;
use ntfs::attribute_value::NtfsAttributeValue;
use ntfs::structured_values::{NtfsFileAttributeFlags, NtfsFileNamespace};
use ntfs::UpcaseOrd;
use ntfs::{Ntfs, NtfsAttributeFlags, NtfsAttributeType, NtfsFile};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::io::SeekFrom;
use std::sync::Arc;
use value::{Stored, Value};

/// Record number of the root directory.
const ROOT: u64 = 5;
/// Record of `$Extend`, the directory of the newer metadata files.
const EXTEND: u64 = 11;
/// Records below this are metadata files, hidden from listings.
const FIRST_USER_RECORD: u64 = 16;

const TAG_MOUNT_POINT: u32 = 0xA000_0003;
const TAG_SYMLINK: u32 = 0xA000_000C;
/// Start of an Interix symbolic link's data.
const INTERIX_LINK: &[u8] = b"IntxLNK\x01";

fn err(e: ntfs::NtfsError) -> Error {
    super::err(e)
}

/// Damaged metadata in `file`, named with its file record's byte offset on the volume.
fn damaged_in(file: &NtfsFile, what: impl std::fmt::Display) -> Error {
    Error::damaged_metadata(
        "NTFS",
        file.position().value().map(|p| p.get()),
        format_args!("record {}: {what}", file.file_record_number()),
    )
}

/// Damaged metadata of record `node` whose byte offset is not at hand.
fn damaged(node: u64, what: impl std::fmt::Display) -> Error {
    Error::damaged_metadata("NTFS", None, format_args!("record {node}: {what}"))
}

/// A mounted NTFS volume.
pub struct NtfsFs {
    dev: PartDev,
    ntfs: Ntfs,
    /// File records that straddle two `$MFT` data runs: position of their first part ->
    /// the (position, length) pieces that make the record.
    stitched: HashMap<u64, Vec<(u64, u64)>>,
    /// Decoded compression units and WOF chunks, so that small reads (a mount's) decode
    /// each unit once; kept in the cache of whatever the volume is read from.
    units: Units,
    /// The data runs of the streams read last, by (record, stream): a file read in many
    /// small reads (a mount's, a copy's) rebuilt its run list from its file records on
    /// every read, which for a file of thousands of runs over several records cost more
    /// than the read.
    values: quick_cache::sync::Cache<(NodeId, Box<str>), Arc<Value>, ValueBytes>,
}

/// Weighs a kept value by about the memory it takes, so that the bound is one of memory.
#[derive(Clone)]
struct ValueBytes;

impl quick_cache::Weighter<(NodeId, Box<str>), Arc<Value>> for ValueBytes {
    fn weight(&self, _key: &(NodeId, Box<str>), v: &Arc<Value>) -> u64 {
        64 + match &v.stored {
            Stored::Runs { runs, .. } => std::mem::size_of_val(runs.as_slice()),
            Stored::Resident(bytes) => bytes.len(),
        } as u64
    }
}

/// Bytes of values kept by [`NtfsFs`] over all its streams.
const KEPT_VALUE_BYTES: u64 = 8 << 20;

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
                    let len = crate::le::clamp_len(len, buf.len() - at);
                    self.dev.read_at(pos, &mut buf[at..at + len])?;
                    at += len;
                }
                self.pos += total;
                return Ok(buf.len());
            }
        }
        if self.pos >= self.dev.len() && !buf.is_empty() {
            // NTFS never reads past its volume: such a read means damaged metadata or a
            // truncated device, and the crate would take an empty read for the end of the
            // data (a file read as empty, without an error).
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "read at byte {} is past the end of the volume ({} bytes)",
                    self.pos,
                    self.dev.len()
                ),
            ));
        }
        read_at_cursor(self.dev, &mut self.pos, buf)
    }
}

impl std::io::Seek for Cursor<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        seek_cursor(self.dev.len(), &mut self.pos, pos)
    }
}

/// The `$MFT`'s data runs in file order: (first byte in the `$MFT` stream, length,
/// position on the volume); None when it has no non-resident `$DATA`.
fn mft_runs(ntfs: &Ntfs, c: &mut Cursor) -> Result<Option<Vec<(u64, u64, u64)>>> {
    let mft = ntfs.file(c, 0).map_err(err)?;
    let Some(item) = mft.data(c, "") else {
        return Ok(None);
    };
    let item = item.map_err(err)?;
    let attr = item.to_attribute().map_err(err)?;
    let NtfsAttributeValue::NonResident(v) = attr.value(c).map_err(err)? else {
        return Ok(None);
    };
    let mut runs = Vec::new();
    let mut at = 0u64;
    for r in v.data_runs() {
        let r = r.map_err(err)?;
        let len = r.allocated_size();
        if let Some(p) = r.data_position().value() {
            runs.push((at, len, p.get()));
        }
        at = at.saturating_add(len);
    }
    Ok(Some(runs))
}

/// Records of `$MFT` that straddle a boundary between two of its data runs.
fn straddling_records(ntfs: &Ntfs, c: &mut Cursor) -> Result<HashMap<u64, Vec<(u64, u64)>>> {
    let mut out = HashMap::new();
    let rs = u64::from(ntfs.file_record_size());
    let Some(runs) = mft_runs(ntfs, c)? else {
        return Ok(out);
    };
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
    /// Parses the boot sector and the upcase table (for case-insensitive lookups). Decoded
    /// units are kept in `units`.
    pub fn open(dev: PartDev, units: Units) -> Result<NtfsFs> {
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
            units,
            values: quick_cache::sync::Cache::with_weighter(64, KEPT_VALUE_BYTES, ValueBytes),
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

    /// The reparse point data of a file, if it has one (its first 16 KiB, the most
    /// Windows stores).
    fn reparse(&self, c: &mut Cursor, file: &NtfsFile) -> Result<Option<Vec<u8>>> {
        let Some(attr) = self.find_attr(c, file, NtfsAttributeType::ReparsePoint, "")? else {
            return Ok(None);
        };
        let v = self.value(c, file, &attr)?;
        let mut buf = vec![0u8; crate::le::clamp_len(v.size, 16 * 1024)];
        let n = self.read_value(&v, 0, &mut buf)?;
        buf.truncate(n);
        Ok(Some(buf))
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
        let Some(attr) = self.find_attr(c, file, NtfsAttributeType::Data, "")? else {
            return Ok(None);
        };
        let (len, flags, _) = self.header(c, file, &attr)?;
        let packed = NtfsAttributeFlags::COMPRESSED | NtfsAttributeFlags::ENCRYPTED;
        if !(8..=8 + 2 * 4096).contains(&len) || len % 2 != 0 || flags.intersects(packed) {
            return Ok(None);
        }
        let v = self.value(c, file, &attr)?;
        let mut buf = vec![0u8; crate::le::usize_of(len)?];
        if self.read_value(&v, 0, &mut buf)? != buf.len() {
            return Ok(None);
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
                .ok_or_else(|| damaged_in(&file, "has no name"))?
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
        let bytes = r
            .get(start..start + sub_len)
            .ok_or_else(|| damaged_in(&file, "reparse data too short"))?;
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

/// Puts back the last two bytes of every 512 of a file or index record from its update
/// sequence array, checking that each held the sequence number (a sector that missed the
/// last write holds an older one).
fn undo_fixups(rec: &mut [u8]) -> std::result::Result<(), &'static str> {
    let f = crate::le::LeFields(rec);
    let (usa, count) = (usize::from(f.u16(4)), usize::from(f.u16(6)));
    if count == 0 || usa + 2 * count > rec.len() || (count - 1) * 512 > rec.len() {
        return Err("bad update sequence");
    }
    let seq = [rec[usa], rec[usa + 1]];
    for i in 1..count {
        let (end, src) = (i * 512, usa + 2 * i);
        if rec[end - 2..end] != seq {
            return Err("torn write (update sequence mismatch)");
        }
        let fix = [rec[src], rec[src + 1]];
        rec[end - 2..end].copy_from_slice(&fix);
    }
    Ok(())
}

/// Offsets in a non-resident attribute record: the first VCN this piece maps, the bytes
/// allocated to the value, and (compressed or sparse values only) the bytes of it stored.
const NR_LOWEST_VCN: usize = 0x10;
const NR_ALLOCATED: usize = 0x28;
const NR_COMPRESSED: usize = 0x40;
/// The initialized size (valid data length): bytes of the value past it read as zeros
/// whatever its clusters hold.
const NR_INITIALIZED: usize = 0x38;

/// The 8-byte field at `off` of non-resident attribute `a`, read from `record`, the file
/// record of `file` that holds it.
fn nr_field(record: &[u8], file: &NtfsFile, a: &ntfs::NtfsAttribute, off: usize) -> Result<u64> {
    let at = (a.position().value().map_or(0, |p| p.get()))
        .checked_sub(file.position().value().map_or(0, |p| p.get()))
        .and_then(|d| usize::try_from(d).ok());
    at.and_then(|at| record.get(at.checked_add(off)?..at.checked_add(off + 8)?))
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| damaged_in(file, "attribute runs past the record"))
}

impl NtfsFs {
    /// Bytes `node` takes on disk as ntfs-3g gives them in `st_blocks`: those of the
    /// `$INDEX_ALLOCATION` of a directory (none when its index fits in its file record),
    /// of the unnamed `$DATA` of anything else.
    /// `attrs` are those of `file`, as [`NtfsFs::attrs`] gives them.
    fn allocated(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        attrs: &[value::Attr],
        kind: NodeKind,
    ) -> Result<u64> {
        let (ty, name) = if kind == NodeKind::Dir {
            (NtfsAttributeType::IndexAllocation, "$I30")
        } else {
            (NtfsAttributeType::Data, "")
        };
        match value::pick(attrs, ty, name) {
            Some(i) => self.attr_bytes(c, file, &attrs[i]),
            None => Ok(0),
        }
    }

    /// The file record of `file` as the volume holds it, with its update sequence
    /// (the last two bytes of every 512) put back as the crate does when it reads it.
    fn record(&self, c: &mut Cursor, file: &NtfsFile) -> Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let pos = file.position().value().map_or(0, |p| p.get());
        let mut rec = vec![0u8; self.ntfs.file_record_size() as usize];
        c.seek(SeekFrom::Start(pos))
            .and_then(|_| c.read_exact(&mut rec))
            .map_err(|e| {
                Error::from_io(e).unwrap_or_else(|e| {
                    Error::damaged_metadata("NTFS", Some(pos), format_args!("file record: {e}"))
                })
            })?;
        undo_fixups(&mut rec).map_err(|e| damaged_in(file, e))?;
        Ok(rec)
    }
}

impl NtfsFs {
    /// Reads `$DATA` attribute `stream` of `file` (record `node`), of value `v`. Bytes at
    /// and past the attribute's initialized size read as zeros, as in ntfs-3g and Windows
    /// (the clusters there may hold old data of other files, on a volume where a file was
    /// preallocated or is being downloaded). Returns every byte `buf` can take up to the
    /// value's end, or an error: never fewer.
    fn read_data(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        v: &Value,
        (node, stream): (NodeId, &str),
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        if v.flags.contains(NtfsAttributeFlags::ENCRYPTED) {
            return Err(Error::UnsupportedFeature(format!(
                "NTFS record {node}: EFS-encrypted; its contents cannot be read without the \
                 owner's key"
            )));
        }
        // A WOF file's unnamed data is a placeholder: its contents come from another
        // stream, whose own initialized size applies when it is read.
        if stream.is_empty() {
            if let Some(r) = self.wof_reparse(c, file)? {
                return self.read_wof(c, file, node, &r, v.size, offset, buf);
            }
        }
        let Stored::Runs { initialized, runs } = &v.stored else {
            // A resident value is never stored compressed, whatever its flag says.
            return self.read_value(v, offset, buf);
        };
        if v.flags.contains(NtfsAttributeFlags::COMPRESSED) {
            let cs = u64::from(self.ntfs.cluster_size());
            // Windows compresses only on volumes with clusters up to 4 KiB; a larger
            // unit is damage, and refusing it bounds a unit's buffer to 1 MiB.
            if cs > MAX_COMPRESSED_CLUSTER {
                return Err(damaged_in(
                    file,
                    format!(
                        "compressed, but clusters of {cs} bytes are too large for NTFS \
                         compression"
                    ),
                ));
            }
            let n = self.read_compressed(runs, v.size, (node, stream), offset, buf)?;
            let zero_from = crate::le::clamp_len(initialized.saturating_sub(offset), n);
            buf[zero_from..n].fill(0);
            return Ok(n);
        }
        self.read_value(v, offset, buf)
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
        match self.find_attr(c, file, NtfsAttributeType::Data, name)? {
            Some(a) => Ok(Some(self.header(c, file, &a)?.0)),
            None => Ok(None),
        }
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
                return Err(damaged(node, format!("stream {name} ends early")));
            }
            done += n;
        }
        Ok(())
    }

    /// Reads a file compressed by WOF ([`wof`]): `size` bytes, decoded a chunk at a time
    /// from its `WofCompressedData` stream (decoded chunks kept in the cache).
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
        let alg = wof::parse_reparse(reparse).map_err(|e| {
            Error::UnsupportedFeature(format!(
                "NTFS record {node}: compressed by Windows (WOF): {e}"
            ))
        })?;
        if offset >= size {
            return Ok(0);
        }
        let stored = self.stream_len(c, file, wof::STREAM)?.ok_or_else(|| {
            damaged_in(
                file,
                format!(
                    "compressed by Windows (WOF), but its {} stream is missing",
                    wof::STREAM
                ),
            )
        })?;
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
        let (at, len, plain) =
            loc.map_err(|e| damaged(node, format!("compressed by Windows (WOF): {e}")))?;
        let mut raw = vec![0u8; crate::le::usize_of(len)?];
        self.read_exact_stream(node, wof::STREAM, at, &mut raw)?;
        if raw.len() == plain {
            return Ok(raw);
        }
        alg.decompress(&raw, plain)
            .map_err(|e| damaged(node, format!("compressed by Windows (WOF): chunk {i}: {e}")))
    }
}

/// Stream name under which decoded WOF chunks are cached (no stream can have a `:`).
const WOF_KEY: &str = ":wof";

/// Largest cluster size a compressed value is read with (Windows: 4 KiB).
const MAX_COMPRESSED_CLUSTER: u64 = 64 * 1024;

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

    /// Reads `offset..` of data of `size` bytes made of units of `unit_bytes` each, which
    /// `load(u)` decodes (the last one may be shorter); decoded units are kept in the
    /// cache under `(node, key, u)`.
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
            let data = self.units.get_or_load(node, key, u, || load(u))?;
            let from = crate::le::clamp_len(pos - u * unit_bytes, data.len());
            let n = crate::le::clamp_len(end - pos, data.len() - from);
            if n == 0 {
                return Err(damaged(node, format!("compression unit {u} decodes short")));
            }
            let at = crate::le::clamp_len(pos - offset, buf.len());
            buf[at..at + n].copy_from_slice(&data[from..from + n]);
            pos += n as u64;
        }
        Ok(crate::le::clamp_len(end - offset, buf.len()))
    }

    /// The data of compression unit `u`.
    fn unit(&self, runs: &[Run], u: u64, cs: u64) -> Result<Vec<u8>> {
        let first = u * UNIT_CLUSTERS;
        let last = first + UNIT_CLUSTERS;
        let unit_bytes = crate::le::usize_of(UNIT_CLUSTERS * cs)?;
        let mut stored = Vec::with_capacity(unit_bytes);
        let mut allocated = 0;
        for &(start, n, at) in runs {
            let (a, b) = (start.max(first), (start + n).min(last));
            if a >= b {
                continue;
            }
            if let Some(at) = at {
                let mut piece = vec![0u8; crate::le::usize_of((b - a) * cs)?];
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
            lznt1::decompress(&stored, unit_bytes).map_err(|e| {
                Error::damaged_metadata("NTFS", None, format_args!("compression unit {u}: {e}"))
            })?
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

/// Levels of a directory's index B-tree followed before it is taken as damaged (a
/// B-tree of 4 KiB nodes holding a million names is 4 levels deep).
const MAX_INDEX_DEPTH: usize = 32;

/// An entry found by [`NtfsFs::index_entries`]: its name as stored, its record, and its key.
type Match = (String, u64, index::Key);

impl NtfsFs {
    /// The entries of directory `file`'s `$I30` index in index order, DOS 8.3 aliases and
    /// metadata files (but the root) left out; with `name`, only those equal to it ignoring
    /// case (through the volume's upcase table). The index is collated ignoring case, so
    /// such entries sit next to each other in the B-tree: only the nodes on the way to them
    /// are read, not the whole directory.
    ///
    /// The B-tree is walked here rather than with the ntfs crate's iterator, which follows
    /// a damaged index whose subnodes loop forever.
    fn index_entries(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        name: Option<&str>,
    ) -> Result<Vec<Match>> {
        if !file.is_directory() {
            return Err(Error::NotADirectory(format!(
                "NTFS record {}: not a directory",
                file.file_record_number()
            )));
        }
        let record = file.file_record_number();
        let (mut root, mut alloc) = (None, None);
        for a in self.attrs(c, file)? {
            match a.ty {
                NtfsAttributeType::IndexRoot if a.name == "$I30" => root = Some(a),
                NtfsAttributeType::IndexAllocation if a.name == "$I30" => alloc = Some(a),
                _ => {}
            }
        }
        let root = root.ok_or_else(|| damaged_in(file, "directory without an index"))?;
        let root = self.value(c, file, &root)?;
        let Stored::Resident(root) = &root.stored else {
            return Err(damaged_in(file, "directory index root not in its record"));
        };
        let (record_size, root) = index::root(root, record)?;
        let alloc = match alloc {
            Some(a) => Some(self.value(c, file, &a)?),
            None => None,
        };
        let walk = IndexWalk {
            fs: self,
            alloc: alloc.as_ref(),
            record_size,
            record,
            name,
        };
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        walk.node(root, 0, &mut out, &mut seen)?;
        Ok(out)
    }
}

/// The search of one name in one directory's index B-tree.
struct IndexWalk<'a> {
    fs: &'a NtfsFs,
    alloc: Option<&'a Value>,
    record_size: u32,
    record: u64,
    name: Option<&'a str>,
}

impl IndexWalk<'_> {
    /// Collects into `out` the matching entries of one node and of the subnodes that may
    /// hold more: entries are sorted, and an entry's subnode holds the keys between it and
    /// the entry before it. `seen` holds the subnodes read so far: in a B-tree each is
    /// reached once, so a damaged index whose subnodes loop is refused rather than walked
    /// again and again.
    fn node(
        &self,
        entries: Vec<index::Entry>,
        depth: usize,
        out: &mut Vec<Match>,
        seen: &mut HashSet<u64>,
    ) -> Result<()> {
        if depth > MAX_INDEX_DEPTH {
            return Err(damaged(
                self.record,
                format!("directory index deeper than {MAX_INDEX_DEPTH} levels"),
            ));
        }
        for e in entries {
            let order = match (&e.key, self.name) {
                (Some(k), Some(name)) => name.upcase_cmp(&self.fs.ntfs, &k.name()),
                (Some(_), None) => Ordering::Equal,
                (None, _) => Ordering::Less,
            };
            if order == Ordering::Greater {
                continue;
            }
            if let Some(vcn) = e.subnode {
                if !seen.insert(vcn) {
                    return Err(damaged(
                        self.record,
                        format!("directory index node {vcn} is reached twice"),
                    ));
                }
                let alloc = self
                    .alloc
                    .ok_or_else(|| damaged(self.record, "index subnode without an allocation"))?;
                let sub = self
                    .fs
                    .index_record(alloc, self.record_size, vcn, self.record)?;
                let sub = index::entries(&sub, INDX_HEADER, self.record)?;
                self.node(sub, depth + 1, out, seen)?;
            }
            let Some(key) = e.key else { break };
            if order == Ordering::Less {
                break;
            }
            if e.record < FIRST_USER_RECORD && e.record != ROOT {
                continue;
            }
            // A DOS 8.3 alias is hidden as in listings: it must not make its own long
            // name ambiguous.
            if key.namespace != index::NAMESPACE_DOS {
                out.push((key.name().to_string_lossy(), e.record, key));
            }
        }
        Ok(())
    }
}

/// Where the index header starts in an `INDX` record.
const INDX_HEADER: usize = 0x18;

impl FileSystem for NtfsFs {
    fn kind(&self) -> FsKind {
        FsKind::Ntfs
    }

    fn root(&self) -> NodeId {
        ROOT
    }

    fn lookup(&self, dir: NodeId, name: &str, case: Case) -> Result<NodeId> {
        contain_panics("NTFS", || {
            let mut c = self.cursor();
            let file = self.file(&mut c, dir)?;
            let found = self.index_entries(&mut c, &file, Some(name))?;
            let exact = found
                .iter()
                .find(|m| m.0.encode_utf16().eq(name.encode_utf16()));
            if let Some(m) = exact {
                return Ok(m.1);
            }
            let missing = || Error::NotFound(format!("{name}: no such file or directory"));
            if case == Case::Exact {
                return Err(missing());
            }
            let mut records: Vec<u64> = found.iter().map(|m| m.1).collect();
            records.sort_unstable();
            records.dedup();
            match records[..] {
                [] => Err(missing()),
                [one] => Ok(one),
                _ => {
                    let names: Vec<&str> = found.iter().map(|m| m.0.as_str()).collect();
                    Err(Error::Ambiguous(format!(
                        "{name} is ambiguous: {} differ only in case",
                        names.join(", ")
                    )))
                }
            }
        })
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        contain_panics("NTFS", || {
            let mut c = self.cursor();
            let file = self.file(&mut c, dir)?;
            let mut raw = self.index_entries(&mut c, &file, None)?;
            raw.retain(|e| e.1 >= FIRST_USER_RECORD);
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
        })
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
            let attrs = self.attrs(&mut c, &file)?;
            for attr in &attrs {
                match attr.ty {
                    NtfsAttributeType::FileName => {
                        let n = self.file_name(&mut c, &file, attr)?;
                        if n.namespace() != NtfsFileNamespace::Dos {
                            links += 1;
                        }
                    }
                    NtfsAttributeType::Data => {
                        let size = self.header(&mut c, &file, attr)?.0;
                        if !attr.name.is_empty() {
                            m.streams.push(Stream {
                                name: attr.name.clone(),
                                size,
                            });
                        } else if kind == NodeKind::File || kind == NodeKind::Reparse {
                            m.size = size;
                        }
                    }
                    _ => {}
                }
            }
            m.nlink = Some(links.max(1));
            m.ino = Some(node);
            m.allocated = Some(self.allocated(&mut c, &file, &attrs, kind)?);
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
                return Err(Error::IsADirectory(format!(
                    "NTFS record {node}: is a directory"
                )));
            }
            let key = (node, Box::<str>::from(stream));
            let v = match self.values.get(&key) {
                Some(v) => v,
                None => {
                    let Some(attr) =
                        self.find_attr(&mut c, &file, NtfsAttributeType::Data, stream)?
                    else {
                        if stream.is_empty() {
                            // No unnamed data: the size shown is 0 too.
                            return Ok(0);
                        }
                        return Err(Error::NotFound(format!("no stream named {stream}")));
                    };
                    let v = Arc::new(self.value(&mut c, &file, &attr)?);
                    self.values.insert(key, v.clone());
                    v
                }
            };
            self.read_data(&mut c, &file, &v, (node, stream), offset, buf)
        })
    }

    fn changes(&self, changed: &crate::ranges::Ranges) -> Result<Option<Changes>> {
        contain_panics("NTFS", || {
            let mut c = self.cursor();
            let end = self.dev.len();
            let Some(runs) = mft_runs(&self.ntfs, &mut c)? else {
                return Ok(None);
            };
            let rs = u64::from(self.ntfs.file_record_size()).max(512);
            // The metadata files (records 0-23, reserved ones included) and those under
            // $Extend (the change journal, quotas, object ids) change their contents
            // without their records.
            let mut nodes: HashSet<NodeId> = (0..24).collect();
            if let Ok(f) = self.file(&mut c, EXTEND) {
                for (_, record, _) in self.index_entries(&mut c, &f, None)? {
                    nodes.insert(record);
                }
            }
            let mut head = [0u8; 0x28];
            for &(mft_at, len, vol_at) in &runs {
                let piece = crate::ranges::Ranges::from_unsorted(vec![(
                    vol_at,
                    vol_at.saturating_add(len).min(end),
                )]);
                for &(a, b) in changed.intersect(&piece).as_slice() {
                    let first = (a - vol_at + mft_at) / rs;
                    let last = (b - vol_at + mft_at).div_ceil(rs);
                    for r in first..last {
                        // An extension record changes its base record's file.
                        let pos = vol_at + (r * rs).saturating_sub(mft_at);
                        let base = match self.dev.read_at(pos, &mut head) {
                            Ok(()) if head.starts_with(b"FILE") => {
                                u64::from_le_bytes(head[0x20..0x28].try_into().expect("8"))
                                    & 0xFFFF_FFFF_FFFF
                            }
                            _ => 0,
                        };
                        nodes.insert(if base != 0 { base } else { r });
                    }
                }
            }
            Ok(Some(Changes {
                nodes,
                explained: crate::ranges::Ranges::new(),
            }))
        })
    }

    fn footprint(&self, node: NodeId) -> Result<crate::ranges::Ranges> {
        contain_panics("NTFS", || {
            let mut c = self.cursor();
            let end = self.dev.len();
            let file = self.file(&mut c, node)?;
            let mut out = Vec::new();
            // Every non-resident attribute (those an attribute list names in extension
            // records too), and the attribute list itself, which is not among them.
            for a in file.attributes_raw() {
                let a = a.map_err(err)?;
                if a.is_resident() || a.ty().ok() != Some(NtfsAttributeType::AttributeList) {
                    continue;
                }
                super::meta::runs_into(a.value(&mut c).map_err(err)?, end, &mut out);
            }
            let mut attrs = file.attributes();
            while let Some(item) = attrs.next(&mut c) {
                let a = item.map_err(err)?;
                let a = a.to_attribute().map_err(err)?;
                if a.is_resident() {
                    continue;
                }
                super::meta::runs_into(a.value(&mut c).map_err(err)?, end, &mut out);
            }
            Ok(crate::ranges::Ranges::from_unsorted(out))
        })
    }

    fn data_map(&self, node: NodeId, stream: &str) -> Result<Option<DataMap>> {
        contain_panics("NTFS", || {
            let mut c = self.cursor();
            let file = self.file(&mut c, node)?;
            if file.is_directory() && stream.is_empty() {
                return Ok(None);
            }
            let Some(attr) = self.find_attr(&mut c, &file, NtfsAttributeType::Data, stream)? else {
                return Ok(None);
            };
            let v = self.value(&mut c, &file, &attr)?;
            if v.flags
                .intersects(NtfsAttributeFlags::ENCRYPTED | NtfsAttributeFlags::COMPRESSED)
                || (stream.is_empty() && self.wof_reparse(&mut c, &file)?.is_some())
            {
                return Ok(None);
            }
            let Stored::Runs { initialized, runs } = &v.stored else {
                return Ok(None);
            };
            let cs = u64::from(self.ntfs.cluster_size());
            Ok(Some(DataMap {
                runs: runs
                    .iter()
                    .filter_map(|&(vcn, n, at)| {
                        Some((vcn.saturating_mul(cs), at?, n.saturating_mul(cs)))
                    })
                    .collect(),
                valid: (*initialized).min(v.size),
            }))
        })
    }

    fn read_link(&self, node: NodeId) -> Result<String> {
        contain_panics("NTFS", || {
            let mut c = self.cursor();
            self.link_target(&mut c, node)
        })
    }
}
