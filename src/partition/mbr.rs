//! MS-DOS (MBR) partition tables with extended and logical partitions.
//!
//! Logical partitions live in an extended partition as a chain of EBRs (extended boot
//! records): each EBR holds one logical partition (its start relative to the EBR) and a
//! link to the next EBR (relative to the start of the extended partition). The chain must
//! stay inside the extended partition and never visit an EBR twice.

use super::{Partition, PartitionTable, Scheme};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::le::LeFields;

/// Longest EBR chain followed: far beyond real disks, it bounds work on corrupt input.
const MAX_LOGICAL: usize = 1024;

/// One 16-byte partition entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Boot indicator (0x80: active).
    pub boot: u8,
    /// Partition type byte.
    pub kind: u8,
    /// First sector, relative to the table's base (the disk, or the extended partition).
    pub start_lba: u32,
    /// Length in sectors.
    pub sectors: u32,
}

impl Entry {
    fn is_used(&self) -> bool {
        self.kind != 0 && self.sectors != 0
    }

    fn is_extended(&self) -> bool {
        matches!(self.kind, 0x05 | 0x0F | 0x85)
    }
}

/// A parsed MBR (or EBR) sector.
#[derive(Debug, Clone)]
pub struct Mbr {
    /// The disk signature (bytes 440..444).
    pub disk_id: u32,
    /// The four primary entries.
    pub entries: [Entry; 4],
}

impl Mbr {
    /// Parses a sector ending in 55 AA whose entries have valid boot flags; None otherwise.
    pub fn parse(sector: &[u8]) -> Option<Mbr> {
        if sector.len() < 512 || sector[510] != 0x55 || sector[511] != 0xAA {
            return None;
        }
        let f = LeFields(sector);
        let entry = |i: usize| {
            let o = 446 + 16 * i;
            Entry {
                boot: f.u8(o),
                kind: f.u8(o + 4),
                start_lba: f.u32(o + 8),
                sectors: f.u32(o + 12),
            }
        };
        let entries = [entry(0), entry(1), entry(2), entry(3)];
        if entries.iter().any(|e| e.boot != 0 && e.boot != 0x80) {
            return None;
        }
        Some(Mbr {
            disk_id: f.u32(440),
            entries,
        })
    }

    /// A GPT protective MBR (an entry of type 0xEE).
    pub fn is_protective(&self) -> bool {
        self.entries.iter().any(|e| e.kind == 0xEE)
    }

    /// At least one used entry.
    pub fn has_partitions(&self) -> bool {
        self.entries.iter().any(|e| e.is_used() && e.start_lba > 0)
    }
}

fn bad(what: String) -> Error {
    Error::Invalid(format!("MBR partition table: {what}"))
}

/// Reads the partitions of `mbr` (sector 0 of `dev`), following the EBR chain.
pub fn read(dev: &dyn BlockDev, ss: u32, mbr: &Mbr) -> Result<PartitionTable> {
    let ss64 = u64::from(ss);
    let sectors = dev.len() / ss64;
    let mut partitions = Vec::new();
    let mut extended = None;
    for (i, e) in mbr.entries.iter().enumerate() {
        if !e.is_used() {
            continue;
        }
        let (start, len) = (u64::from(e.start_lba), u64::from(e.sectors));
        if start == 0 || start + len > sectors {
            return Err(bad(format!(
                "partition {} (sectors {start}+{len}) does not fit in {sectors} sectors",
                i + 1
            )));
        }
        if e.is_extended() {
            if extended.is_some() {
                return Err(bad("more than one extended partition".into()));
            }
            extended = Some((start, len));
            continue;
        }
        // At most four primary entries.
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        partitions.push(partition(number, start, len, e.kind, ss64));
    }
    if let Some((ext_start, ext_len)) = extended {
        let mut ebr = ext_start;
        let mut seen = std::collections::BTreeSet::new();
        let mut sector = vec![0u8; ss as usize];
        let mut number = 5;
        loop {
            if !seen.insert(ebr) || seen.len() > MAX_LOGICAL {
                return Err(bad(format!("the EBR chain loops (at sector {ebr})")));
            }
            dev.read_at(ebr * ss64, &mut sector)?;
            let Some(m) = Mbr::parse(&sector) else {
                return Err(bad(format!("no EBR signature at sector {ebr}")));
            };
            let (part, link) = (m.entries[0], m.entries[1]);
            if part.is_used() {
                let start = ebr + u64::from(part.start_lba);
                let len = u64::from(part.sectors);
                if part.start_lba == 0 || start + len > ext_start + ext_len {
                    return Err(bad(format!(
                        "logical partition {number} (sectors {start}+{len}) is not inside \
                         the extended partition"
                    )));
                }
                partitions.push(partition(number, start, len, part.kind, ss64));
                number += 1;
            }
            if !link.is_used() {
                break;
            }
            let next = ext_start + u64::from(link.start_lba);
            if link.start_lba == 0 || next >= ext_start + ext_len {
                return Err(bad(format!(
                    "EBR at sector {ebr} links outside the extended partition"
                )));
            }
            ebr = next;
        }
    }
    Ok(PartitionTable {
        scheme: Scheme::Mbr,
        sector_size: ss,
        disk_id: format!("0x{:08x}", mbr.disk_id),
        partitions,
        warnings: Vec::new(),
    })
}

fn partition(number: u32, start: u64, len: u64, kind: u8, ss: u64) -> Partition {
    Partition {
        number,
        start: start * ss,
        len: len * ss,
        type_id: format!("0x{kind:02x}"),
        type_name: type_name(kind).to_string(),
        name: String::new(),
    }
}

/// Readable names of common MBR type bytes.
pub fn type_name(kind: u8) -> &'static str {
    match kind {
        0x01 => "FAT12",
        0x04 | 0x06 | 0x0E => "FAT16",
        0x07 => "NTFS/exFAT/HPFS",
        0x0B | 0x0C => "FAT32",
        0x27 => "Windows recovery",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x8E => "Linux LVM",
        0xA5 => "FreeBSD",
        0xAF => "Apple HFS",
        0xEE => "GPT protective",
        0xEF => "EFI system",
        0xFD => "Linux RAID",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::window::MemDev;

    fn entry(sector: &mut [u8], slot: usize, kind: u8, start: u32, len: u32) {
        let o = 446 + 16 * slot;
        sector[o + 4] = kind;
        sector[o + 8..o + 12].copy_from_slice(&start.to_le_bytes());
        sector[o + 12..o + 16].copy_from_slice(&len.to_le_bytes());
    }

    /// A 64-sector disk: p1 at 2+8, extended at 16+48 with logicals at 18+6 and 34+10.
    fn disk() -> Vec<u8> {
        let mut d = vec![0u8; 64 * 512];
        for s in [0usize, 16, 32] {
            d[s * 512 + 510] = 0x55;
            d[s * 512 + 511] = 0xAA;
        }
        entry(&mut d[..512], 0, 0x83, 2, 8);
        entry(&mut d[..512], 1, 0x05, 16, 48);
        entry(&mut d[16 * 512..17 * 512], 0, 0x07, 2, 6);
        entry(&mut d[16 * 512..17 * 512], 1, 0x05, 16, 16);
        entry(&mut d[32 * 512..33 * 512], 0, 0x0C, 2, 10);
        d
    }

    fn read_disk(d: Vec<u8>) -> Result<PartitionTable> {
        let m = Mbr::parse(&d[..512]).unwrap();
        read(&MemDev(d), 512, &m)
    }

    #[test]
    fn logical_partitions_follow_the_ebr_chain() {
        let t = read_disk(disk()).unwrap();
        let got: Vec<_> = t
            .partitions
            .iter()
            .map(|p| (p.number, p.start / 512, p.len / 512, p.type_id.as_str()))
            .collect();
        assert_eq!(
            got,
            [(1, 2, 8, "0x83"), (5, 18, 6, "0x07"), (6, 34, 10, "0x0c")]
        );
    }

    #[test]
    fn damaged_chains_are_errors() {
        // The second EBR links back to the first.
        let mut d = disk();
        entry(&mut d[32 * 512..33 * 512], 1, 0x05, 0, 16);
        d[32 * 512 + 446 + 16 + 8..][..4].copy_from_slice(&16u32.to_le_bytes());
        assert!(read_disk(d).unwrap_err().to_string().contains("loops"));
        // A logical partition past the end of the extended one.
        let mut d = disk();
        entry(&mut d[32 * 512..33 * 512], 0, 0x0C, 2, 100);
        assert!(read_disk(d).is_err());
        // A missing EBR signature.
        let mut d = disk();
        d[32 * 512 + 510] = 0;
        assert!(read_disk(d).unwrap_err().to_string().contains("EBR"));
        // A primary partition past the end of the disk.
        let mut d = disk();
        entry(&mut d[..512], 0, 0x83, 2, 1000);
        assert!(read_disk(d).is_err());
    }
}
