//! exFAT: the allocation bitmap, found through the root directory.
//!
//! Used: the boot region and its backup, the FAT (everything before the cluster heap), and
//! each cluster set in the allocation bitmap. The root directory and the bitmap are
//! followed through the FAT, as the specification requires for both.

use super::{corrupt, FsKind, Probe};
use crate::blockdev::BlockDev;
use crate::error::Result;
use crate::le::LeFields;
use crate::ranges::Ranges;

/// Largest root directory followed (it is usually one cluster).
const MAX_ROOT_BYTES: u64 = 64 << 20;

struct Boot {
    sector: u64,
    volume_sectors: u64,
    fat_offset: u64,
    heap_offset: u64,
    clusters: u64,
    root_cluster: u32,
    cluster: u64,
}

fn parse(s: &[u8]) -> Option<Boot> {
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
    fn cluster_pos(&self, c: u32) -> u64 {
        self.heap_offset * self.sector + (u64::from(c) - 2) * self.cluster
    }

    fn valid(&self, c: u32) -> bool {
        c >= 2 && u64::from(c) < self.clusters + 2
    }

    /// Reads a cluster chain through the FAT, up to `max` bytes.
    fn chain(&self, dev: &dyn BlockDev, first: u32, max: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut c = first;
        let mut buf = vec![0u8; self.cluster as usize];
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
            let mut e = [0u8; 4];
            dev.read_at(self.fat_offset * self.sector + 4 * u64::from(c), &mut e)?;
            match u32::from_le_bytes(e) {
                0xFFFF_FFFF => break,
                // A chain without FAT entries (NoFatChain) is contiguous.
                0 => c += 1,
                n => c = n,
            }
        }
        out.truncate(max.min(out.len() as u64) as usize);
        Ok(out)
    }

    fn root(&self, dev: &dyn BlockDev) -> Result<Vec<u8>> {
        self.chain(dev, self.root_cluster, MAX_ROOT_BYTES)
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
    let bitmap = b.chain(dev, first, len)?;
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
