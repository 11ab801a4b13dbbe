//! Attribute values put together from every piece of an attribute, wherever the pieces lie.
//!
//! A non-resident value whose run list outgrows its file record is split into pieces, each
//! mapping a range of VCNs, kept in extension records that the base record's
//! `$ATTRIBUTE_LIST` names (ntfs-3g keeps the first piece in the base record itself). The
//! ntfs crate joins pieces only when their list entries carry the same instance number
//! (instance numbers are only unique within one record) and skips list entries that point
//! at the base record, so for such a file it returns a later piece, which records no sizes
//! and reads as empty, or one piece of several. Here every attribute is found through the
//! list when there is one: its pieces in VCN order, sizes from the first piece, and a
//! range that no piece maps is damage, never zeros.

use super::{damaged_in, err, nr_field, runs_of, Cursor, NtfsFs, Run};
use super::{NR_ALLOCATED, NR_COMPRESSED, NR_INITIALIZED, NR_LOWEST_VCN};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use ntfs::attribute_value::NtfsAttributeValue;
use ntfs::structured_values::{NtfsAttributeListEntry, NtfsFileName};
use ntfs::{NtfsAttribute, NtfsAttributeFlags, NtfsAttributeType, NtfsFile, NtfsReadSeek};

/// Entries beyond which an `$ATTRIBUTE_LIST` is refused as damaged. Windows keeps a list
/// under 256 KiB, which is about 8,000 entries.
const MAX_LIST_ENTRIES: usize = 1 << 16;

/// Data runs beyond which one value is refused (48 MiB of run list; a file of 1 TiB in
/// 1 MiB fragments has a million runs).
const MAX_RUNS: usize = 1 << 21;

/// Where one piece of an attribute is: an entry of the base record's `$ATTRIBUTE_LIST`, or
/// the n-th attribute of the base record when it has no list.
enum Place {
    Listed(Box<NtfsAttributeListEntry>),
    Raw(usize),
}

/// One attribute of a file: its type, its name, and its pieces in VCN order (a resident
/// attribute has one).
pub(super) struct Attr {
    pub ty: NtfsAttributeType,
    pub name: String,
    pieces: Vec<Place>,
}

/// An attribute's value as the first piece describes it, and where its bytes are.
pub(super) struct Value {
    pub flags: NtfsAttributeFlags,
    /// Bytes of the value.
    pub size: u64,
    pub stored: Stored,
}

pub(super) enum Stored {
    /// The bytes themselves, kept in the file record.
    Resident(Vec<u8>),
    /// Clusters mapped by data runs, in VCN order from VCN 0 and without gaps; bytes at and
    /// past `initialized` read as zeros.
    Runs { initialized: u64, runs: Vec<Run> },
}

impl NtfsFs {
    /// Every entry of `file`'s `$ATTRIBUTE_LIST` (none when it has no list).
    pub(super) fn list_entries(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
    ) -> Result<Vec<NtfsAttributeListEntry>> {
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
                if out.len() == MAX_LIST_ENTRIES {
                    return Err(damaged_in(
                        file,
                        format!("attribute list of over {MAX_LIST_ENTRIES} entries"),
                    ));
                }
                out.push(e.map_err(err)?);
            }
        }
        Ok(out)
    }

    /// The attributes of `file` (but its `$ATTRIBUTE_LIST`), each with all its pieces.
    pub(super) fn attrs(&self, c: &mut Cursor, file: &NtfsFile) -> Result<Vec<Attr>> {
        let mut out: Vec<Attr> = Vec::new();
        // A piece that does not start a value continues the last attribute of its type and
        // name: list entries, like attributes in a record, are sorted by type, name and VCN.
        let mut add = |ty, name: String, vcn: u64, place| {
            if vcn > 0 {
                if let Some(a) = out.iter_mut().rev().find(|a| a.ty == ty && a.name == name) {
                    a.pieces.push(place);
                    return;
                }
            }
            out.push(Attr {
                ty,
                name,
                pieces: vec![place],
            });
        };
        let entries = self.list_entries(c, file)?;
        if entries.is_empty() {
            let record = self.record(c, file)?;
            for (i, a) in file.attributes_raw().enumerate() {
                let a = a.map_err(err)?;
                let ty = a.ty().map_err(err)?;
                let name = a.name().map_err(err)?.to_string_lossy();
                let vcn = if a.is_resident() {
                    0
                } else {
                    nr_field(&record, file, &a, NR_LOWEST_VCN)?
                };
                add(ty, name, vcn, Place::Raw(i));
            }
        } else {
            for e in entries {
                let ty = e.ty().map_err(err)?;
                if ty == NtfsAttributeType::AttributeList {
                    continue;
                }
                let name = e.name().to_string_lossy();
                let vcn = u64::try_from(e.lowest_vcn().value())
                    .map_err(|_| damaged_in(file, "negative VCN in its attribute list"))?;
                add(ty, name, vcn, Place::Listed(Box::new(e)));
            }
        }
        Ok(out)
    }

    /// The attribute of type `ty` named `name` of `file` (see [`pick`]).
    pub(super) fn find_attr(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        ty: NtfsAttributeType,
        name: &str,
    ) -> Result<Option<Attr>> {
        let mut attrs = self.attrs(c, file)?;
        Ok(pick(&attrs, ty, name).map(|i| attrs.swap_remove(i)))
    }

    /// Calls `f` with piece `i` of `attr` of `file` and the file record that holds it.
    fn with_piece<R>(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        attr: &Attr,
        i: usize,
        f: impl FnOnce(&mut Cursor, &NtfsFile, &NtfsAttribute) -> Result<R>,
    ) -> Result<R> {
        match &attr.pieces[i] {
            Place::Raw(n) => {
                let a = file
                    .attributes_raw()
                    .nth(*n)
                    .ok_or_else(|| damaged_in(file, "attribute vanished"))?
                    .map_err(err)?;
                f(c, file, &a)
            }
            Place::Listed(e) => {
                if e.base_file_reference().file_record_number() == file.file_record_number() {
                    let a = e.to_attribute(file).map_err(err)?;
                    return f(c, file, &a);
                }
                let ext = e.to_file(&self.ntfs, c).map_err(err)?;
                let a = e.to_attribute(&ext).map_err(err)?;
                f(c, &ext, &a)
            }
        }
    }

    /// The size, flags and residency of `attr`, from its first piece.
    pub(super) fn header(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        attr: &Attr,
    ) -> Result<(u64, NtfsAttributeFlags, bool)> {
        self.with_piece(c, file, attr, 0, |_, _, a| {
            Ok((a.value_length(), a.flags(), a.is_resident()))
        })
    }

    /// The `$FILE_NAME` value of `attr`.
    pub(super) fn file_name(
        &self,
        c: &mut Cursor,
        file: &NtfsFile,
        attr: &Attr,
    ) -> Result<NtfsFileName> {
        self.with_piece(c, file, attr, 0, |c, _, a| {
            a.structured_value(c).map_err(err)
        })
    }

    /// What ntfs-3g counts in `st_blocks` for `attr`: a resident value's length rounded up
    /// to 8 bytes; for a non-resident one the bytes stored when it is compressed or sparse,
    /// else the bytes allocated.
    pub(super) fn attr_bytes(&self, c: &mut Cursor, file: &NtfsFile, attr: &Attr) -> Result<u64> {
        self.with_piece(c, file, attr, 0, |c, f, a| {
            if a.is_resident() {
                return Ok(a.value_length().div_ceil(8) * 8);
            }
            // The ntfs crate reads the allocated and compressed sizes of a non-resident
            // attribute but makes neither public, so they are read from the record here.
            let packed = NtfsAttributeFlags::COMPRESSED | NtfsAttributeFlags::SPARSE;
            let off = if a.flags().intersects(packed) {
                NR_COMPRESSED
            } else {
                NR_ALLOCATED
            };
            nr_field(&self.record(c, f)?, f, a, off)
        })
    }

    /// The value of `attr`: resident bytes, or the data runs of all its pieces joined.
    pub(super) fn value(&self, c: &mut Cursor, file: &NtfsFile, attr: &Attr) -> Result<Value> {
        let cs = u64::from(self.ntfs.cluster_size());
        let (size, flags, resident) = self.header(c, file, attr)?;
        if resident {
            if attr.pieces.len() > 1 {
                return Err(damaged_in(file, "resident attribute in several pieces"));
            }
            let bytes = self.with_piece(c, file, attr, 0, |c, _, a| {
                let mut v = a.value(c).map_err(err)?;
                // A resident value lies inside its file record.
                let cap = crate::le::clamp_len(size, self.ntfs.file_record_size() as usize);
                let mut buf = vec![0u8; cap];
                let mut done = 0;
                while done < cap {
                    let n = v.read(c, &mut buf[done..]).map_err(err)?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                buf.truncate(done);
                Ok(buf)
            })?;
            if bytes.len() as u64 != size {
                return Err(damaged_in(file, "resident value runs past its record"));
            }
            return Ok(Value {
                flags,
                size,
                stored: Stored::Resident(bytes),
            });
        }
        let mut runs: Vec<Run> = Vec::new();
        let mut initialized = 0;
        for i in 0..attr.pieces.len() {
            let (start, piece) = self.with_piece(c, file, attr, i, |c, f, a| {
                let record = self.record(c, f)?;
                let start = nr_field(&record, f, a, NR_LOWEST_VCN)?;
                if i == 0 {
                    initialized = nr_field(&record, f, a, NR_INITIALIZED)?;
                }
                match a.value(c).map_err(err)? {
                    NtfsAttributeValue::NonResident(v) => Ok((start, runs_of(&v, start, cs)?)),
                    _ => Err(damaged_in(f, "resident piece of a non-resident attribute")),
                }
            })?;
            let expected = runs.last().map_or(0, |&(v, n, _)| v + n);
            if start != expected {
                return Err(damaged_in(
                    file,
                    format!(
                        "attribute {:?} {:?}: a piece starts at cluster {start} where the one \
                         before ends at {expected}",
                        attr.ty, attr.name
                    ),
                ));
            }
            if runs.len() + piece.len() > MAX_RUNS {
                return Err(Error::UnsupportedFeature(format!(
                    "NTFS record {}: over {MAX_RUNS} data runs",
                    file.file_record_number()
                )));
            }
            runs.extend(piece);
        }
        let mapped = runs.last().map_or(0, |&(v, n, _)| v + n).saturating_mul(cs);
        // Compressed values map whole units, sparse or not, up to their size; others need
        // clusters up to their initialized size (past it they read as zeros).
        let packed = NtfsAttributeFlags::COMPRESSED | NtfsAttributeFlags::SPARSE;
        let needed = if flags.intersects(packed) {
            size
        } else {
            initialized.min(size)
        };
        if mapped < needed {
            return Err(damaged_in(
                file,
                format!(
                    "attribute {:?} {:?}: its data runs map {mapped} of its {needed} bytes",
                    attr.ty, attr.name
                ),
            ));
        }
        Ok(Value {
            flags,
            size,
            stored: Stored::Runs {
                initialized: initialized.min(size),
                runs,
            },
        })
    }

    /// Reads `offset..` of an uncompressed value into `buf`: the bytes `buf` can take up
    /// to the value's end, every one of them, or an error.
    pub(super) fn read_value(&self, v: &Value, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let end = v.size.min(offset.saturating_add(buf.len() as u64));
        if offset >= end {
            return Ok(0);
        }
        let want = crate::le::clamp_len(end - offset, buf.len());
        let buf = &mut buf[..want];
        match &v.stored {
            Stored::Resident(bytes) => {
                let from = crate::le::clamp_len(offset, bytes.len());
                buf.copy_from_slice(&bytes[from..from + want]);
            }
            Stored::Runs { initialized, runs } => {
                let cs = u64::from(self.ntfs.cluster_size());
                let valid_end = end.min(*initialized).max(offset);
                let valid = crate::le::clamp_len(valid_end - offset, want);
                buf[valid..].fill(0);
                read_runs(runs, cs, offset, &mut buf[..valid], |at, b| {
                    self.dev.read_at(at, b)
                })?;
            }
        }
        Ok(want)
    }
}

/// Where in `attrs` the attribute of type `ty` named `name` is: one whose name is equal,
/// else one whose name differs only in case (NTFS compares attribute names ignoring case).
pub(super) fn pick(attrs: &[Attr], ty: NtfsAttributeType, name: &str) -> Option<usize> {
    let of_type = || attrs.iter().enumerate().filter(|(_, a)| a.ty == ty);
    let lower = name.to_lowercase();
    of_type()
        .find(|(_, a)| a.name == name)
        .or_else(|| of_type().find(|(_, a)| a.name.to_lowercase() == lower))
        .map(|(i, _)| i)
}

/// Fills `buf` with the bytes at `offset` of a value mapped by `runs` (clusters of `cs`
/// bytes), reading stored clusters with `read(position, buf)`; holes read as zeros. A
/// byte that no run maps is an error.
fn read_runs(
    runs: &[Run],
    cs: u64,
    offset: u64,
    buf: &mut [u8],
    mut read: impl FnMut(u64, &mut [u8]) -> Result<()>,
) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let pos = offset + done as u64;
        let vcn = pos / cs;
        // Runs are in VCN order without gaps: the one holding `vcn` is the last that
        // starts at or before it.
        let i = runs.partition_point(|&(start, _, _)| start <= vcn);
        let run = i.checked_sub(1).map(|i| runs[i]);
        let Some((start, n, at)) = run.filter(|&(s, n, _)| vcn < s + n) else {
            return Err(Error::damaged_metadata(
                "NTFS",
                None,
                format_args!("no data run maps byte {pos} of a value"),
            ));
        };
        let run_end = (start + n).saturating_mul(cs);
        let take = crate::le::clamp_len(run_end - pos, buf.len() - done);
        let piece = &mut buf[done..done + take];
        match at {
            Some(at) => read(at + (pos - start * cs), piece)?,
            None => piece.fill(0),
        }
        done += take;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device of 64 clusters of 4 bytes, each byte holding its cluster number.
    fn dev_read(at: u64, buf: &mut [u8]) -> Result<()> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = u8::try_from((at + i as u64) / 4).unwrap();
        }
        Ok(())
    }

    #[test]
    fn runs_are_read_across_pieces_and_holes() {
        // VCN 0-1 at cluster 10, 2-3 a hole, 4 at cluster 7.
        let runs = [(0, 2, Some(40)), (2, 2, None), (4, 1, Some(28))];
        let mut buf = [0xffu8; 20];
        read_runs(&runs, 4, 0, &mut buf, dev_read).unwrap();
        assert_eq!(
            buf,
            [10, 10, 10, 10, 11, 11, 11, 11, 0, 0, 0, 0, 0, 0, 0, 0, 7, 7, 7, 7]
        );
        let mut buf = [0xffu8; 3];
        read_runs(&runs, 4, 7, &mut buf, dev_read).unwrap();
        assert_eq!(buf, [11, 0, 0]);
    }

    #[test]
    fn bytes_no_run_maps_are_an_error() {
        let runs = [(0, 2, Some(40))];
        let mut buf = [0u8; 9];
        let e = read_runs(&runs, 4, 0, &mut buf, dev_read).unwrap_err();
        assert!(e.to_string().contains("no data run maps byte 8"), "{e}");
        // A run list that does not start at VCN 0.
        let runs = [(1, 2, Some(40))];
        let e = read_runs(&runs, 4, 0, &mut buf[..1], dev_read).unwrap_err();
        assert!(e.to_string().contains("byte 0"), "{e}");
    }
}
