//! NTFS: the `$Bitmap` file (record 6), read through the `ntfs` crate.
//!
//! Besides the clusters `$Bitmap` marks, the boot sector and everything after the last
//! cluster of the volume (where the backup boot sector lives, in the partition's last
//! sector) are used. `pagefile.sys`, `hiberfil.sys` and `swapfile.sys` in the root
//! directory are left out unless asked for: Windows recreates them, and backup tools for
//! Windows skip them too. Their clusters then read as zeros.

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

fn err(e: ntfs::NtfsError) -> crate::Error {
    crate::Error::Invalid(format!("NTFS: {e}"))
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
            return Err(crate::Error::Invalid(
                "NTFS: the volume is marked dirty (in use, or not cleanly unmounted), so \
                 $Bitmap may be out of date"
                    .into(),
            ));
        }
    }

    // $Bitmap: one bit per cluster.
    let bitmap_file = fs.file(&mut c, BITMAP_RECORD).map_err(err)?;
    let item = bitmap_file
        .data(&mut c, "")
        .ok_or_else(|| corrupt("NTFS", 0, "$Bitmap has no $DATA attribute"))?
        .map_err(err)?;
    let attr = item.to_attribute().map_err(err)?;
    let mut value = attr.value(&mut c).map_err(err)?;
    let want = clusters.div_ceil(8);
    if value.len() < want || value.len() > want.saturating_add(1 << 20) {
        return Err(corrupt(
            "NTFS",
            0,
            format!(
                "$Bitmap holds {} bytes for {clusters} clusters",
                value.len()
            ),
        ));
    }
    let mut bitmap = vec![0u8; want as usize];
    let mut done = 0;
    while done < bitmap.len() {
        let n = value.read(&mut c, &mut bitmap[done..]).map_err(err)?;
        if n == 0 {
            return Err(corrupt("NTFS", 0, "$Bitmap ends early"));
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
                return Err(corrupt(
                    "NTFS",
                    0,
                    format!("$Bitmap does not mark the {what} (cluster {lcn}) as used"),
                ));
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
