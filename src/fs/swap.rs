//! Linux swap: only the header page is used; the rest is scratch space.

use super::{cstr, FsKind, Probe};
use crate::blockdev::BlockDev;
use crate::error::Result;
use crate::le::LeFields;
use crate::ranges::Ranges;

/// The page sizes a swap header may be written for.
const PAGE_SIZES: [u64; 4] = [4096, 8192, 16384, 65536];

fn page_size(dev: &dyn BlockDev) -> Result<Option<u64>> {
    for ps in PAGE_SIZES {
        if dev.len() < ps {
            break;
        }
        let mut sig = [0u8; 10];
        dev.read_at(ps - 10, &mut sig)?;
        if &sig == b"SWAPSPACE2" || &sig == b"SWAP-SPACE" {
            return Ok(Some(ps));
        }
    }
    Ok(None)
}

/// Recognises a swap area by the signature at the end of its first page.
pub fn probe(dev: &dyn BlockDev) -> Result<Option<Probe>> {
    let Some(ps) = page_size(dev)? else {
        return Ok(None);
    };
    let mut h = [0u8; 1024];
    dev.read_at(1024, &mut h)?;
    let f = LeFields(&h);
    // struct swap_header_v1_2: version, last_page, nr_badpages, sws_uuid, sws_volume.
    let last_page = u64::from(f.u32(4));
    Ok(Some(Probe {
        kind: FsKind::Swap,
        label: cstr(&h[28..44]),
        size: ((last_page + 1) * ps).min(dev.len()),
    }))
}

/// The header page.
pub fn used(dev: &dyn BlockDev) -> Result<Ranges> {
    let ps = page_size(dev)?.unwrap_or(4096);
    Ok(Ranges::from_unsorted(vec![(0, ps.min(dev.len()))]))
}
