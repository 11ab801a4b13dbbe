//! Where NTFS keeps what a directory walk reads: the `$MFT` (every file record) and the
//! index blocks (`$INDEX_ALLOCATION` of `$I30`) of every directory. `create` packs these
//! clusters into chunks of their own (see `crate::fs::ext::metadata` for the why).
//!
//! A placement hint only: a cluster left out here is still imaged, among the file data,
//! so a record that cannot be read is skipped, not reported.

use super::err;
use crate::blockdev::window::Cursor;
use crate::blockdev::BlockDev;
use crate::error::Result;
use crate::ranges::Ranges;
use ntfs::attribute_value::NtfsAttributeValue;
use ntfs::{Ntfs, NtfsAttributeType, NtfsReadSeek};

/// File record flags (offset 0x16 of a record): in use, and a directory.
const RECORD_IN_USE: u16 = 0x1;
const RECORD_IS_DIRECTORY: u16 = 0x2;
/// Bytes of `$MFT` read at a time.
const PIECE: usize = 1 << 20;

/// Byte ranges (relative to the volume's start) of the `$MFT` and of every directory's
/// index blocks on the NTFS volume `dev`.
pub fn metadata(dev: &dyn BlockDev) -> Result<Ranges> {
    crate::error::contain_panics("NTFS", || scan(dev))
}

/// Adds the clusters of a non-resident attribute value to `out`.
pub(super) fn runs_into(value: NtfsAttributeValue, end: u64, out: &mut Vec<(u64, u64)>) {
    let NtfsAttributeValue::NonResident(v) = value else {
        return;
    };
    for run in v.data_runs().flatten() {
        if let Some(p) = run.data_position().value() {
            let start = p.get().min(end);
            out.push((start, start.saturating_add(run.allocated_size()).min(end)));
        }
    }
}

fn scan(dev: &dyn BlockDev) -> Result<Ranges> {
    let mut c = Cursor::new(dev);
    let fs = Ntfs::new(&mut c).map_err(err)?;
    let end = fs.size().min(dev.len());
    let mut out = Vec::new();
    let mft = fs.file(&mut c, 0).map_err(err)?;
    let item = mft
        .data(&mut c, "")
        .ok_or_else(|| crate::fs::corrupt("NTFS", 0, "$MFT has no $DATA attribute"))?
        .map_err(err)?;
    let attr = item.to_attribute().map_err(err)?;
    let mut value = attr.value(&mut c).map_err(err)?;
    let mft_len = value.len();
    runs_into(attr.value(&mut c).map_err(err)?, end, &mut out);

    // Directories, from the flags of each record read in bulk; only theirs are parsed.
    let rs = fs.file_record_size() as usize;
    let mut piece = vec![0u8; PIECE - PIECE % rs.max(1)];
    let mut record = 0u64;
    let mut dirs = Vec::new();
    let mut done = 0u64;
    while done < mft_len && rs >= 512 {
        let want = crate::le::clamp_len(mft_len - done, piece.len());
        let mut got = 0;
        while got < want {
            let n = value.read(&mut c, &mut piece[got..want]).map_err(err)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        for r in piece[..got - got % rs].chunks_exact(rs) {
            let flags = u16::from_le_bytes([r[0x16], r[0x17]]);
            if r.starts_with(b"FILE")
                && flags & (RECORD_IN_USE | RECORD_IS_DIRECTORY)
                    == RECORD_IN_USE | RECORD_IS_DIRECTORY
            {
                dirs.push(record);
            }
            record += 1;
        }
        if got < want {
            break;
        }
        done += got as u64;
    }
    for n in dirs {
        let Ok(file) = fs.file(&mut c, n) else {
            continue;
        };
        let mut attrs = file.attributes();
        while let Some(Ok(item)) = attrs.next(&mut c) {
            let Ok(a) = item.to_attribute() else { continue };
            if a.ty().ok() != Some(NtfsAttributeType::IndexAllocation) {
                continue;
            }
            if let Ok(v) = a.value(&mut c) {
                runs_into(v, end, &mut out);
            }
        }
    }
    Ok(Ranges::from_unsorted(out))
}
