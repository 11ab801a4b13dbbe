//! exFAT: the allocation bitmap, found through the root directory.
//!
//! Used: the boot region and its backup, the FAT (everything before the cluster heap), and
//! each cluster set in the allocation bitmap. The root directory and the bitmap are
//! followed through the FAT, as the specification requires for both.

pub mod browse;

use super::{corrupt, FsKind, Probe};
use crate::blockdev::BlockDev;
use crate::error::Result;
use crate::le::LeFields;
use crate::ranges::Ranges;

/// Largest root directory followed (it is usually one cluster).
const MAX_ROOT_BYTES: u64 = 64 << 20;

/// The boot sector's geometry: parsed here only, for the used blocks and for browsing.
pub(crate) struct Boot {
    /// Bytes per sector.
    pub sector: u64,
    pub volume_sectors: u64,
    /// Sectors from the volume start to the first FAT.
    pub fat_offset: u64,
    /// Sectors from the volume start to the cluster heap.
    pub heap_offset: u64,
    /// Clusters in the heap (numbered from 2).
    pub clusters: u64,
    pub root_cluster: u32,
    /// Bytes per cluster.
    pub cluster: u64,
}

/// The boot sector `s`, when it is exFAT's and its sector and cluster shifts are in range
/// (a sector of 512 to 4096 bytes, a cluster of at most 32 MiB, as the specification allows).
pub(crate) fn parse(s: &[u8]) -> Option<Boot> {
    if s.get(3..11) != Some(b"EXFAT   ") {
        return None;
    }
    let f = LeFields(s);
    let bps_shift = f.u8(0x6C);
    let spc_shift = f.u8(0x6D);
    if !(9..=12).contains(&bps_shift) || u32::from(bps_shift) + u32::from(spc_shift) > 25 {
        return None;
    }
    let sector = 1u64 << bps_shift;
    Some(Boot {
        sector,
        volume_sectors: f.u64(0x48),
        fat_offset: u64::from(f.u32(0x50)),
        heap_offset: u64::from(f.u32(0x58)),
        clusters: u64::from(f.u32(0x5C)),
        root_cluster: f.u32(0x60),
        cluster: sector << spc_shift,
    })
}

impl Boot {
    /// Reads and checks the boot sector of `dev`: the FAT lies before the cluster heap and
    /// the heap within the device, so every cluster number below `clusters + 2` is readable.
    pub(crate) fn read(dev: &dyn BlockDev) -> Result<Boot> {
        let mut head = [0u8; 512];
        dev.read_at(0, &mut head)?;
        let Some(b) = parse(&head) else {
            return Err(corrupt("exFAT", 0, "no valid boot sector"));
        };
        let heap_end = b
            .clusters
            .checked_mul(b.cluster)
            .and_then(|n| n.checked_add(b.heap_offset * b.sector));
        if heap_end.is_none_or(|e| e > dev.len()) || b.fat_offset >= b.heap_offset {
            return Err(corrupt(
                "exFAT",
                0x58,
                "the cluster heap does not fit in the partition",
            ));
        }
        // The FAT holds an entry for each cluster, before the heap.
        if (b.fat_offset * b.sector).saturating_add(4 * (b.clusters + 2)) > b.heap_offset * b.sector
        {
            return Err(corrupt(
                "exFAT",
                0x50,
                format!("the FAT cannot hold {} clusters", b.clusters),
            ));
        }
        Ok(b)
    }

    fn cluster_pos(&self, c: u32) -> u64 {
        self.heap_offset * self.sector + (u64::from(c) - 2) * self.cluster
    }

    fn valid(&self, c: u32) -> bool {
        c >= 2 && u64::from(c) < self.clusters + 2
    }

    /// Reads a cluster chain through the FAT, up to `max` bytes; with `dir`, only up to
    /// the cluster holding the end-of-directory entry (type 0), where callers stop
    /// reading anyway: a damaged chain that loops then costs one cluster, not `max`.
    fn chain(&self, dev: &dyn BlockDev, first: u32, max: u64, dir: bool) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut c = first;
        let mut buf = vec![0u8; crate::le::usize_of(self.cluster)?];
        while (out.len() as u64) < max {
            if !self.valid(c) {
                return Err(corrupt(
                    "exFAT",
                    self.fat_offset * self.sector,
                    format!("cluster chain reaches cluster {c}"),
                ));
            }
            dev.read_at(self.cluster_pos(c), &mut buf)?;
            out.extend_from_slice(&buf);
            if dir && buf.chunks_exact(32).any(|e| e[0] == 0) {
                break;
            }
            let mut e = [0u8; 4];
            dev.read_at(self.fat_offset * self.sector + 4 * u64::from(c), &mut e)?;
            match u32::from_le_bytes(e) {
                0xFFFF_FFFF => break,
                // A chain without FAT entries (NoFatChain) is contiguous.
                0 => c += 1,
                n => c = n,
            }
        }
        out.truncate(crate::le::clamp_len(max, out.len()));
        Ok(out)
    }

    fn root(&self, dev: &dyn BlockDev) -> Result<Vec<u8>> {
        self.chain(dev, self.root_cluster, MAX_ROOT_BYTES, true)
    }
}

/// Recognises exFAT; reads the label from the root directory.
pub fn probe(dev: &dyn BlockDev, head: &[u8]) -> Result<Option<Probe>> {
    let Some(b) = parse(head) else {
        return Ok(None);
    };
    let mut label = String::new();
    if let Ok(root) = b.root(dev) {
        for e in root.chunks_exact(32) {
            match e[0] {
                0x00 => break,
                0x83 => {
                    let n = usize::from(e[1]).min(11);
                    let units: Vec<u16> = e[2..2 + 2 * n]
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    label = String::from_utf16_lossy(&units);
                    break;
                }
                _ => {}
            }
        }
    }
    Ok(Some(Probe {
        kind: FsKind::Exfat,
        label,
        size: b.volume_sectors.saturating_mul(b.sector),
    }))
}

/// Used ranges of the exFAT volume on `dev`.
pub fn used(dev: &dyn BlockDev) -> Result<Ranges> {
    let b = Boot::read(dev)?;
    let root = b.root(dev)?;
    let bitmap_entry = root
        .chunks_exact(32)
        .take_while(|e| e[0] != 0)
        .find(|e| e[0] == 0x81 && e[1] & 1 == 0)
        .ok_or_else(|| {
            corrupt(
                "exFAT",
                b.cluster_pos(b.root_cluster),
                "no allocation bitmap entry in the root directory",
            )
        })?;
    let f = LeFields(bitmap_entry);
    let (first, len) = (f.u32(20), f.u64(24));
    if len < b.clusters.div_ceil(8) || len > b.clusters.div_ceil(8) + b.cluster {
        return Err(corrupt(
            "exFAT",
            b.cluster_pos(b.root_cluster),
            format!(
                "allocation bitmap of {len} bytes for {} clusters",
                b.clusters
            ),
        ));
    }
    let bitmap = b.chain(dev, first, len, false)?;
    if (bitmap.len() as u64) < b.clusters.div_ceil(8) {
        return Err(corrupt(
            "exFAT",
            b.cluster_pos(first),
            "the allocation bitmap ends early",
        ));
    }
    let bit = |c: u32| {
        let i = u64::from(c - 2);
        bitmap[(i / 8) as usize] >> (i % 8) & 1 == 1
    };
    for (what, c) in [
        ("allocation bitmap", first),
        ("root directory", b.root_cluster),
    ] {
        if !bit(c) {
            return Err(corrupt(
                "exFAT",
                b.cluster_pos(first),
                format!("the bitmap does not mark the {what} (cluster {c}) as used"),
            ));
        }
    }
    let mut used = Ranges::new();
    let heap = b.heap_offset * b.sector;
    used.push(0, heap);
    used.add_bitmap(&bitmap, b.clusters, heap, b.cluster);
    used.push(heap + b.clusters * b.cluster, dev.len());
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shifts whose sum overflows a byte are refused, not added (once a browsing panic).
    #[test]
    fn boot_shifts_are_checked_without_overflow() {
        let mut s = [0u8; 512];
        s[3..11].copy_from_slice(b"EXFAT   ");
        s[0x6C] = 12;
        s[0x6D] = 250;
        assert!(parse(&s).is_none());
        s[0x6D] = 14;
        assert!(parse(&s).is_none());
        s[0x6D] = 13;
        assert_eq!(parse(&s).map(|b| b.cluster), Some(32 << 20));
        s[0x6D] = 3;
        assert_eq!(parse(&s).map(|b| b.cluster), Some(32768));
    }
}
