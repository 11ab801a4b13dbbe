//! FAT12, FAT16 and FAT32: the file allocation table.
//!
//! Used: the reserved sectors (boot sector, FSInfo, backup boot sector), every FAT, the
//! fixed root directory of FAT12/16, and each cluster whose FAT entry is not zero (free)
//! and not the bad-cluster mark. The first FAT is the one read. The type is decided by the
//! BPB layout and the cluster count, never by the label strings.

use super::{corrupt, cstr, FsKind, Probe};
use crate::blockdev::BlockDev;
use crate::error::Result;
use crate::le::LeFields;
use crate::ranges::Ranges;

/// Geometry from the BIOS parameter block.
#[derive(Debug, Clone)]
struct Bpb {
    bytes_per_sector: u64,
    sectors_per_cluster: u64,
    reserved: u64,
    fats: u64,
    fat_sectors: u64,
    root_dir_sectors: u64,
    total_sectors: u64,
    media: u8,
    kind: FsKind,
    clusters: u64,
    label: String,
}

impl Bpb {
    fn parse(s: &[u8]) -> Option<Bpb> {
        if !crate::partition::looks_like_boot_sector(s)
            || s.get(3..11) == Some(b"NTFS    ")
            || s.get(3..11) == Some(b"EXFAT   ")
        {
            return None;
        }
        let f = LeFields(s);
        let bytes_per_sector = u64::from(f.u16(11));
        let sectors_per_cluster = u64::from(f.u8(13));
        let reserved = u64::from(f.u16(14));
        let fats = u64::from(f.u8(16));
        let root_entries = u64::from(f.u16(17));
        let total16 = u64::from(f.u16(19));
        let fat16 = u64::from(f.u16(22));
        let total_sectors = if total16 != 0 {
            total16
        } else {
            u64::from(f.u32(32))
        };
        let fat_sectors = if fat16 != 0 {
            fat16
        } else {
            u64::from(f.u32(36))
        };
        if sectors_per_cluster == 0 || fat_sectors == 0 || total_sectors == 0 {
            return None;
        }
        let root_dir_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
        let data_start = reserved + fats * fat_sectors + root_dir_sectors;
        let clusters = total_sectors.checked_sub(data_start)? / sectors_per_cluster;
        // A zero 16-bit FAT size means the FAT32 layout, whatever the cluster count (the
        // Linux driver decides so, and mkfs.fat makes small FAT32 volumes); otherwise the
        // cluster count decides between FAT12 and FAT16, as the specification says.
        let kind = if fat16 == 0 {
            FsKind::Fat32
        } else if clusters < 4085 {
            FsKind::Fat12
        } else {
            FsKind::Fat16
        };
        let label_at = if kind == FsKind::Fat32 { 71 } else { 43 };
        let mut label = cstr(s.get(label_at..label_at + 11).unwrap_or_default());
        if label == "NO NAME" {
            label.clear();
        }
        Some(Bpb {
            bytes_per_sector,
            sectors_per_cluster,
            reserved,
            fats,
            fat_sectors,
            root_dir_sectors,
            total_sectors,
            media: f.u8(21),
            kind,
            clusters,
            label,
        })
    }

    fn data_start(&self) -> u64 {
        (self.reserved + self.fats * self.fat_sectors + self.root_dir_sectors)
            * self.bytes_per_sector
    }

    fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * self.bytes_per_sector
    }
}

/// Recognises FAT12/16/32 from its boot sector.
pub fn probe(head: &[u8]) -> Option<Probe> {
    let b = Bpb::parse(head)?;
    Some(Probe {
        kind: b.kind,
        label: b.label.clone(),
        size: b.total_sectors * b.bytes_per_sector,
    })
}

/// Used ranges of the FAT volume on `dev`.
pub fn used(dev: &dyn BlockDev) -> Result<Ranges> {
    let mut head = [0u8; 512];
    dev.read_at(0, &mut head)?;
    let Some(b) = Bpb::parse(&head) else {
        return Err(corrupt("FAT", 0, "no valid boot sector"));
    };
    let size = b.total_sectors * b.bytes_per_sector;
    if size > dev.len() {
        return Err(corrupt(
            "FAT",
            19,
            format!("{size} bytes of volume in a {}-byte partition", dev.len()),
        ));
    }
    if b.data_start() > size {
        return Err(corrupt(
            "FAT",
            14,
            "reserved sectors, FATs and root directory overrun the volume",
        ));
    }
    // Entries 0 and 1 are reserved; clusters are numbered from 2.
    let entries = b.clusters + 2;
    let fat_bytes = match b.kind {
        FsKind::Fat12 => (entries * 3).div_ceil(2),
        FsKind::Fat16 => entries * 2,
        _ => entries * 4,
    };
    if fat_bytes > b.fat_sectors * b.bytes_per_sector {
        return Err(corrupt(
            "FAT",
            22,
            format!(
                "a FAT of {} sectors is too small for {} clusters",
                b.fat_sectors, b.clusters
            ),
        ));
    }
    let fat_at = b.reserved * b.bytes_per_sector;
    let mut fat = vec![0u8; fat_bytes as usize];
    dev.read_at(fat_at, &mut fat)?;
    let entry = |c: u64| -> u32 {
        match b.kind {
            FsKind::Fat12 => {
                let o = (c + c / 2) as usize;
                let v = u16::from_le_bytes([fat[o], fat[o + 1]]);
                u32::from(if c & 1 == 0 { v & 0xFFF } else { v >> 4 })
            }
            FsKind::Fat16 => u32::from(u16::from_le_bytes([
                fat[2 * c as usize],
                fat[2 * c as usize + 1],
            ])),
            _ => LeFields(&fat).u32(4 * c as usize) & 0x0FFF_FFFF,
        }
    };
    let (bad, reserved_min) = match b.kind {
        FsKind::Fat12 => (0xFF7, 0xFF0),
        FsKind::Fat16 => (0xFFF7, 0xFFF0),
        _ => (0x0FFF_FFF7, 0x0FFF_FFF0),
    };
    if entry(0) & 0xFF != u32::from(b.media) {
        return Err(corrupt(
            "FAT",
            fat_at,
            format!(
                "FAT entry 0 ({:#x}) does not repeat the media byte {:#x}",
                entry(0),
                b.media
            ),
        ));
    }
    let mut used = Ranges::new();
    used.push(0, b.data_start());
    let cb = b.cluster_bytes();
    let mut run: Option<u64> = None;
    for c in 2..entries {
        let e = entry(c);
        let in_use = e != 0 && e != bad;
        if in_use && (e == 1 || (e >= entries as u32 && e < reserved_min)) {
            return Err(corrupt(
                "FAT",
                fat_at,
                format!("cluster {c} links to cluster {e}, outside the volume"),
            ));
        }
        match (in_use, run) {
            (true, None) => run = Some(c),
            (false, Some(s)) => {
                used.push(b.data_start() + (s - 2) * cb, b.data_start() + (c - 2) * cb);
                run = None;
            }
            _ => {}
        }
    }
    if let Some(s) = run {
        used.push(
            b.data_start() + (s - 2) * cb,
            b.data_start() + (entries - 2) * cb,
        );
    }
    // Sectors after the last whole cluster: not part of any cluster, kept as they are.
    used.push(b.data_start() + b.clusters * cb, dev.len());
    Ok(used)
}
