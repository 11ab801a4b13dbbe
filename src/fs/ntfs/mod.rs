//! NTFS: the `$Bitmap` file (record 6), read through the `ntfs` crate.
//!
//! Besides the clusters `$Bitmap` marks, the boot sector and everything after the last
//! cluster of the volume (where the backup boot sector lives, in the partition's last
//! sector) are used. `pagefile.sys`, `hiberfil.sys` and `swapfile.sys` in the root
//! directory are left out unless asked for: Windows recreates them, and backup tools for
//! Windows skip them too. Their clusters then read as zeros.

pub mod browse;
pub mod compress;
mod meta;

pub use meta::metadata;

use super::{corrupt, FsKind, FsOptions, Probe, Usage};
use crate::blockdev::window::Cursor;
use crate::blockdev::BlockDev;
use crate::error::Result;
use crate::le::LeFields;
use crate::ranges::Ranges;
use ntfs::attribute_value::NtfsAttributeValue;
use ntfs::indexes::NtfsFileNameIndex;
use ntfs::{Ntfs, NtfsAttributeType, NtfsReadSeek};

/// Files whose contents are not imaged by default.
pub const SKIPPED_FILES: [&str; 3] = ["pagefile.sys", "hiberfil.sys", "swapfile.sys"];
/// `$Bitmap`'s file record number.
const BITMAP_RECORD: u64 = 6;

/// An `ntfs` crate error as a strata error: a read error of the image comes back as
/// itself (a damaged chunk stays an integrity failure); what the crate calls unsupported
/// is [`UnsupportedFeature`](crate::Error::UnsupportedFeature), a file where a directory
/// is needed [`NotADirectory`](crate::Error::NotADirectory), and everything else is
/// damaged metadata at the byte the crate names (its own text for a short read is Rust
/// debug output, so that one is put in words).
pub(crate) fn err(e: ntfs::NtfsError) -> crate::Error {
    use ntfs::NtfsError as E;
    let e = match e {
        E::Io(io) => {
            return match crate::Error::from_io(io) {
                Ok(inner) => inner,
                // Only the volume's own reader is under the crate: a short or refused
                // read there is a structure pointing outside the volume.
                Err(io) => crate::Error::damaged_metadata("NTFS", None, io),
            };
        }
        e => e,
    };
    let position = match &e {
        E::NotADirectory { position } => {
            return crate::Error::NotADirectory(format!(
                "NTFS: the file record at byte {} is not a directory",
                position.value().map_or(0, |p| p.get())
            ))
        }
        E::UnsupportedAttributeType { .. }
        | E::UnsupportedClusterSize { .. }
        | E::UnsupportedFileNamespace { .. }
        | E::UnsupportedSectorSize { .. } => {
            return crate::Error::UnsupportedFeature(format!("NTFS: {}", plain(&e.to_string())))
        }
        E::InvalidFileSignature {
            position, actual, ..
        }
        | E::InvalidIndexSignature {
            position, actual, ..
        } => {
            let what = if matches!(e, E::InvalidFileSignature { .. }) {
                "file record"
            } else {
                "index record"
            };
            return crate::Error::damaged_metadata(
                "NTFS",
                position.value().map(|p| p.get()),
                format_args!(
                    "{what} has signature \"{}\" instead of \"{}\"",
                    String::from_utf8_lossy(actual).escape_default(),
                    if what == "file record" {
                        "FILE"
                    } else {
                        "INDX"
                    }
                ),
            );
        }
        E::UpdateSequenceNumberMismatch { position, .. } => {
            return crate::Error::damaged_metadata(
                "NTFS",
                position.value().map(|p| p.get()),
                "a sector of the record does not end with its update sequence number \
                 (a torn write)",
            )
        }
        E::AttributeNotFound { position, .. }
        | E::AttributeOfDifferentType { position, .. }
        | E::InvalidAttributeLength { position, .. }
        | E::InvalidAttributeNameLength { position, .. }
        | E::InvalidAttributeNameOffset { position, .. }
        | E::InvalidByteCountInDataRunHeader { position, .. }
        | E::InvalidClusterCountInDataRunHeader { position, .. }
        | E::InvalidFileAllocatedSize { position, .. }
        | E::InvalidFileUsedSize { position, .. }
        | E::InvalidIndexAllocatedSize { position, .. }
        | E::InvalidIndexEntryDataRange { position, .. }
        | E::InvalidIndexEntrySize { position, .. }
        | E::InvalidIndexRootEntriesOffset { position, .. }
        | E::InvalidIndexRootUsedSize { position, .. }
        | E::InvalidIndexUsedSize { position, .. }
        | E::InvalidNonResidentValueDataRange { position, .. }
        | E::InvalidResidentAttributeValueLength { position, .. }
        | E::InvalidResidentAttributeValueOffset { position, .. }
        | E::InvalidStructuredValueSize { position, .. }
        | E::InvalidTwoByteSignature { position, .. }
        | E::InvalidUpdateSequenceCount { position, .. }
        | E::InvalidUpdateSequenceNumberRange { position, .. }
        | E::InvalidVcnInDataRunHeader { position, .. }
        | E::MissingIndexAllocation { position }
        | E::UnexpectedAttributeListAttribute { position }
        | E::UnexpectedNonResidentAttribute { position }
        | E::UnexpectedResidentAttribute { position }
        | E::UpdateSequenceArrayExceedsRecordSize { position, .. }
        | E::VcnMismatchInIndexAllocation { position, .. }
        | E::VcnOutOfBoundsInIndexAllocation { position, .. } => position.value().map(|p| p.get()),
        _ => None,
    };
    crate::Error::damaged_metadata("NTFS", position, plain(&e.to_string()))
}

/// The crate's message without its hexadecimal " at byte position 0x…" (the error names
/// the offset itself), starting in lower case.
fn plain(msg: &str) -> String {
    let mut out = msg.to_string();
    if let Some(i) = out.find(" at byte position 0x") {
        let tail = &out[i + " at byte position 0x".len()..];
        let hex = tail.chars().take_while(char::is_ascii_hexdigit).count();
        out.replace_range(i..i + " at byte position 0x".len() + hex, "");
    }
    if out.starts_with("The ") {
        out.replace_range(..1, "t");
    }
    out
}

/// Recognises NTFS from its boot sector; reads the label from `$Volume`.
pub fn probe(dev: &dyn BlockDev, head: &[u8]) -> Option<Probe> {
    if head.get(3..11) != Some(b"NTFS    ") {
        return None;
    }
    let f = LeFields(head);
    let size = f.u64(40).saturating_mul(u64::from(f.u16(11)));
    let mut c = Cursor::new(dev);
    let label = crate::error::contain_panics("NTFS", || {
        Ok(Ntfs::new(&mut c)
            .ok()
            .and_then(|fs| fs.volume_name(&mut c))
            .and_then(|n| n.ok())
            .map(|n| n.name().to_string_lossy())
            .unwrap_or_default())
    })
    .unwrap_or_default();
    Some(Probe {
        kind: FsKind::Ntfs,
        label,
        size,
    })
}

/// Used ranges of the NTFS volume on `dev`.
pub fn used(dev: &dyn BlockDev, opts: &FsOptions) -> Result<Usage> {
    crate::error::contain_panics("NTFS", || used_map(dev, opts))
}

fn used_map(dev: &dyn BlockDev, opts: &FsOptions) -> Result<Usage> {
    let mut c = Cursor::new(dev);
    let mut fs = Ntfs::new(&mut c).map_err(err)?;
    let cs = u64::from(fs.cluster_size());
    if fs.size() > dev.len() {
        return Err(corrupt(
            "NTFS",
            40,
            format!(
                "the volume ({} bytes) is larger than its partition ({} bytes)",
                fs.size(),
                dev.len()
            ),
        ));
    }
    let clusters = fs.size() / cs;
    // A dirty volume may have $LogFile records whose allocations $Bitmap does not show yet.
    if let Ok(v) = fs.volume_info(&mut c) {
        if v.flags()
            .contains(ntfs::structured_values::NtfsVolumeFlags::IS_DIRTY)
        {
            return Err(crate::Error::UnsupportedFeature(
                "NTFS: the volume is marked dirty (in use, or not cleanly unmounted), so \
                 $Bitmap may be out of date"
                    .into(),
            ));
        }
    }

    // $Bitmap: one bit per cluster.
    let bitmap_file = fs.file(&mut c, BITMAP_RECORD).map_err(err)?;
    // Damage in $Bitmap is named with its file record's offset.
    let record_at = bitmap_file.position().value().map(|p| p.get());
    let damaged = |what: String| crate::Error::damaged_metadata("NTFS", record_at, what);
    let item = bitmap_file
        .data(&mut c, "")
        .ok_or_else(|| damaged("$Bitmap has no $DATA attribute".into()))?
        .map_err(err)?;
    let attr = item.to_attribute().map_err(err)?;
    let mut value = attr.value(&mut c).map_err(err)?;
    let want = clusters.div_ceil(8);
    if value.len() < want || value.len() > want.saturating_add(1 << 20) {
        return Err(damaged(format!(
            "$Bitmap holds {} bytes for {clusters} clusters",
            value.len()
        )));
    }
    let mut bitmap = vec![0u8; crate::le::usize_of(want)?];
    let mut done = 0;
    while done < bitmap.len() {
        let n = value.read(&mut c, &mut bitmap[done..]).map_err(err)?;
        if n == 0 {
            return Err(damaged("$Bitmap ends early".into()));
        }
        done += n;
    }
    let bit = |lcn: u64| bitmap[(lcn / 8) as usize] >> (lcn % 8) & 1 == 1;
    // The bitmap must mark what every NTFS volume uses: the boot cluster, the start of
    // $MFT, and its own first cluster. If not, it is not a bitmap to trust.
    let mft_lcn = fs.mft_position().value().map_or(0, |p| p.get()) / cs;
    let own_lcn = value_first_lcn(&attr, &mut c, cs);
    for (what, lcn) in [
        ("boot sector", Some(0)),
        ("$MFT", Some(mft_lcn)),
        ("$Bitmap", own_lcn),
    ] {
        if let Some(lcn) = lcn {
            if lcn >= clusters || !bit(lcn) {
                return Err(damaged(format!(
                    "$Bitmap does not mark the {what} (cluster {lcn}) as used"
                )));
            }
        }
    }
    let mut used = Ranges::new();
    used.push(0, cs.min(dev.len()));
    used.add_bitmap(&bitmap, clusters, 0, cs);
    // The backup boot sector and any slack after the last whole cluster.
    used.push(clusters * cs, dev.len());

    let mut skipped = Vec::new();
    if !opts.keep_pagefile {
        fs.read_upcase_table(&mut c).map_err(err)?;
        let mut skip = Ranges::new();
        let root = fs.root_directory(&mut c).map_err(err)?;
        let index = root.directory_index(&mut c).map_err(err)?;
        for name in SKIPPED_FILES {
            let mut finder = index.finder();
            let Some(entry) = NtfsFileNameIndex::find(&mut finder, &fs, &mut c, name) else {
                continue;
            };
            let file = entry.map_err(err)?.to_file(&fs, &mut c).map_err(err)?;
            let mut runs = Vec::new();
            let mut attrs = file.attributes();
            while let Some(item) = attrs.next(&mut c) {
                let item = item.map_err(err)?;
                let a = item.to_attribute().map_err(err)?;
                if a.ty().map_err(err)? != NtfsAttributeType::Data
                    || !a.name().map_err(err)?.is_empty()
                {
                    continue;
                }
                // Only a $DATA attribute in the file record itself is taken apart: one
                // spread over an attribute list is kept (rare for these files).
                if let NtfsAttributeValue::NonResident(v) = a.value(&mut c).map_err(err)? {
                    for run in v.data_runs() {
                        let run = run.map_err(err)?;
                        if let Some(p) = run.data_position().value() {
                            let start = p.get();
                            let end = start.saturating_add(run.allocated_size());
                            if end <= clusters * cs && start >= cs {
                                runs.push((start, end));
                            }
                        }
                    }
                }
                break;
            }
            let runs = Ranges::from_unsorted(runs);
            if runs.total() > 0 {
                skipped.push((name.to_string(), runs.total()));
                skip = skip.union(&runs);
            }
        }
        used = used.subtract(&skip);
    }
    Ok(Usage { used, skipped })
}

/// First cluster of a non-resident attribute value.
fn value_first_lcn(attr: &ntfs::NtfsAttribute, c: &mut Cursor, cs: u64) -> Option<u64> {
    match attr.value(c).ok()? {
        NtfsAttributeValue::NonResident(v) => v
            .data_runs()
            .next()?
            .ok()?
            .data_position()
            .value()
            .map(|p| p.get() / cs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_messages_lose_the_hex_position_the_error_names() {
        assert_eq!(
            plain("The NTFS Attribute at byte position 0x1c38 should be resident, but it is not"),
            "the NTFS Attribute should be resident, but it is not"
        );
        assert_eq!(plain("Lcn 5 is too big"), "Lcn 5 is too big");
        // An error without a position the crate can report keeps its words.
        let e = err(ntfs::NtfsError::InvalidSectorsPerCluster {
            sectors_per_cluster: 3,
        });
        assert!(
            matches!(&e, crate::Error::DamagedMetadata { offset: None, .. }),
            "{e:?}"
        );
        let e = err(ntfs::NtfsError::UnsupportedSectorSize {
            min: 512,
            max: 4096,
            actual: 8192,
        });
        assert!(matches!(e, crate::Error::UnsupportedFeature(_)), "{e:?}");
    }
}
