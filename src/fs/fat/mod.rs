//! FAT12, FAT16 and FAT32: the file allocation table.
//!
//! Used: the reserved sectors (boot sector, FSInfo, backup boot sector), every FAT, the
//! fixed root directory of FAT12/16, and each cluster whose FAT entry is not zero (free)
//! and not the bad-cluster mark. The first FAT is the one read. The type is decided by the
//! BPB layout and the cluster count, never by the label strings.

pub mod browse;

use super::{corrupt, cstr, FsKind, Probe};
use crate::blockdev::BlockDev;
use crate::error::Result;
use crate::le::LeFields;
use crate::ranges::Ranges;

/// Geometry from the BIOS parameter block: parsed here only, for the used blocks and for
/// browsing.
#[derive(Debug, Clone)]
pub(crate) struct Bpb {
    pub bytes_per_sector: u64,
    pub sectors_per_cluster: u64,
    pub reserved: u64,
    pub fats: u64,
    pub fat_sectors: u64,
    /// Entries of the fixed root directory (FAT12/16).
    pub root_entries: u64,
    pub root_dir_sectors: u64,
    pub total_sectors: u64,
    pub media: u8,
    pub kind: FsKind,
    pub clusters: u64,
    pub label: String,
    /// First cluster of the root directory (FAT32 layout; 0 for a fixed root directory).
    pub root_cluster: u32,
    /// The FAT that is read: the first, unless a FAT32 volume says mirroring is off and
    /// names another.
    pub active_fat: u64,
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
        // Both counts zero in the FAT32 layout: the 64-bit count in the 8 bytes at 0x52
        // that otherwise hold the "FAT32   " type string (DR-DOS 7.07's extension for
        // volumes past 2^32 sectors; Linux, mtools, fsck.fat and The Sleuth Kit refuse such
        // a volume). Only with the extended boot signature 0x29 that makes 0x52 part of
        // the boot record.
        let total32 = u64::from(f.u32(32));
        let fat32_layout = f.u16(22) == 0;
        let total_sectors = if total16 != 0 {
            total16
        } else if total32 != 0 || !fat32_layout || f.u8(66) != 0x29 {
            total32
        } else {
            f.u64(0x52)
        };
        let fat_sectors = if fat16 != 0 {
            fat16
        } else {
            u64::from(f.u32(36))
        };
        if sectors_per_cluster == 0 || fat_sectors == 0 || total_sectors == 0 {
            return None;
        }
        // Sizes in bytes must fit 64 bits (a 64-bit sector count could overflow them).
        total_sectors.checked_mul(bytes_per_sector)?;
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
        let ext_flags = f.u16(40);
        let active_fat = if kind == FsKind::Fat32 && ext_flags & 0x80 != 0 {
            u64::from(ext_flags & 15)
        } else {
            0
        };
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
            root_entries,
            root_cluster: if kind == FsKind::Fat32 { f.u32(44) } else { 0 },
            active_fat,
        })
    }

    /// Reads and checks the boot sector of `dev`: the volume fits the device, the data
    /// region starts inside it, and the FAT read can hold an entry for every cluster.
    pub(crate) fn read(dev: &dyn BlockDev) -> Result<Bpb> {
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
        if b.fat_bytes() > b.fat_sectors * b.bytes_per_sector {
            return Err(corrupt(
                "FAT",
                22,
                format!(
                    "a FAT of {} sectors is too small for {} clusters",
                    b.fat_sectors, b.clusters
                ),
            ));
        }
        if b.active_fat >= b.fats {
            return Err(corrupt(
                "FAT",
                40,
                format!("the active FAT is number {} of {}", b.active_fat, b.fats),
            ));
        }
        Ok(b)
    }

    /// Bytes of FAT that hold the entries of every cluster (and the two reserved ones).
    pub fn fat_bytes(&self) -> u64 {
        let entries = self.clusters + 2;
        match self.kind {
            FsKind::Fat12 => (entries * 3).div_ceil(2),
            FsKind::Fat16 => entries * 2,
            _ => entries * 4,
        }
    }

    /// Byte offset of the FAT that is read.
    pub fn fat_at(&self) -> u64 {
        (self.reserved + self.active_fat * self.fat_sectors) * self.bytes_per_sector
    }

    /// Byte offset of the fixed root directory (FAT12/16).
    pub fn root_dir_at(&self) -> u64 {
        (self.reserved + self.fats * self.fat_sectors) * self.bytes_per_sector
    }

    pub fn data_start(&self) -> u64 {
        (self.reserved + self.fats * self.fat_sectors + self.root_dir_sectors)
            * self.bytes_per_sector
    }

    pub fn cluster_bytes(&self) -> u64 {
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
    let b = Bpb::read(dev)?;
    let entries = b.clusters + 2;
    let fat_bytes = b.fat_bytes();
    let fat_at = b.fat_at();
    // The FAT is read a window at a time: a FAT32 FAT reaches 1 GiB (2^28 entries), and
    // a damaged count of FAT sectors must not cost memory either.
    let mut fat = FatWindow {
        dev,
        at: fat_at,
        len: fat_bytes,
        start: 0,
        buf: Vec::new(),
    };
    let mut entry = |c: u64| -> Result<u32> {
        Ok(match b.kind {
            FsKind::Fat12 => {
                let v = fat.bytes(c + c / 2, 2)?;
                let v = u16::from_le_bytes([v[0], v[1]]);
                u32::from(if c & 1 == 0 { v & 0xFFF } else { v >> 4 })
            }
            FsKind::Fat16 => {
                let v = fat.bytes(2 * c, 2)?;
                u32::from(u16::from_le_bytes([v[0], v[1]]))
            }
            _ => LeFields(fat.bytes(4 * c, 4)?).u32(0) & 0x0FFF_FFFF,
        })
    };
    let (bad, reserved_min) = match b.kind {
        FsKind::Fat12 => (0xFF7, 0xFF0),
        FsKind::Fat16 => (0xFFF7, 0xFFF0),
        _ => (0x0FFF_FFF7, 0x0FFF_FFF0),
    };
    let entry0 = entry(0)?;
    if entry0 & 0xFF != u32::from(b.media) {
        return Err(corrupt(
            "FAT",
            fat_at,
            format!(
                "FAT entry 0 ({entry0:#x}) does not repeat the media byte {:#x}",
                b.media
            ),
        ));
    }
    let mut used = Ranges::new();
    used.push(0, b.data_start());
    let cb = b.cluster_bytes();
    let mut run: Option<u64> = None;
    for c in 2..entries {
        let e = entry(c)?;
        let in_use = e != 0 && e != bad;
        if in_use && (e == 1 || (u64::from(e) >= entries && e < reserved_min)) {
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

/// Bytes of the FAT read at once by [`FatWindow`].
const FAT_WINDOW: u64 = 1 << 20;

/// The FAT of a volume, read [`FAT_WINDOW`] bytes at a time as entries are asked for in
/// order.
struct FatWindow<'a> {
    dev: &'a dyn BlockDev,
    /// Where the FAT starts on `dev`, and its length in bytes.
    at: u64,
    len: u64,
    /// FAT byte offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
}

impl FatWindow<'_> {
    /// `n` bytes at FAT byte offset `o` (the caller keeps `o + n` within the FAT).
    fn bytes(&mut self, o: u64, n: usize) -> Result<&[u8]> {
        let end = o + n as u64;
        if o < self.start || end > self.start + self.buf.len() as u64 {
            let want = FAT_WINDOW.max(n as u64).min(self.len - o);
            self.buf.resize(crate::le::usize_of(want)?, 0);
            self.dev.read_at(self.at + o, &mut self.buf)?;
            self.start = o;
        }
        let from = crate::le::usize_of(o - self.start)?;
        Ok(&self.buf[from..from + n])
    }
}
