//! Partition tables: GPT (primary or backup copy, behind a protective MBR) and MBR with
//! extended and logical partitions, on disks of any sector size.
//!
//! [`probe`] reads the table of a device. Both parsers are written here rather than taken
//! from the `gpt` and `mbrman` crates: those want a `Read + Seek (+ Write)` handle and stop at
//! the first inconsistency, while a backup tool has to read a table from any [`BlockDev`]
//! (a disk, an image), keep going with one good GPT copy, and know where every table
//! structure lies (EBRs in particular) so that none of it is left out of an image.

// On-disk parsers: every item documented, and no silent truncating or sign-changing `as`
// on values read from disk (a checked conversion with an error instead).
#![warn(
    missing_docs,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

pub mod gpt;
pub mod mbr;

use crate::blockdev::BlockDev;
use crate::error::Result;
use serde::Serialize;

/// The kind of table found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// GUID partition table.
    Gpt,
    /// MS-DOS partition table.
    Mbr,
    /// No table: the device holds one filesystem (or nothing recognisable) from byte 0.
    None,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// 1-based number as Linux names it (`sda3`): the GPT entry index, the MBR slot, or 5
    /// and up for logical partitions.
    pub number: u32,
    /// First byte on the device.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// The type as stored: a GUID for GPT, `0x07` style for MBR.
    pub type_id: String,
    /// Readable type name ("Microsoft basic data", "Linux filesystem", ...).
    pub type_name: String,
    /// GPT partition name (empty for MBR).
    pub name: String,
}

impl Partition {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// What [`probe`] found.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionTable {
    /// GPT, MBR or none.
    pub scheme: Scheme,
    /// The sector size the table was read with.
    pub sector_size: u32,
    /// GPT disk GUID or MBR disk identifier.
    pub disk_id: String,
    /// Partitions in table order (logical partitions after the primaries).
    pub partitions: Vec<Partition>,
    /// Damage found and worked around, e.g. a bad primary GPT read from its backup.
    pub warnings: Vec<String>,
}

/// Reads the partition table of `dev`.
///
/// `sector_size` is the logical sector size of the disk. A GPT is also looked for at 4096
/// when 512 is given (raw disk files do not carry their sector size). A device whose first
/// sector is a filesystem boot sector, or that has no table, gives [`Scheme::None`].
///
/// # Errors
///
/// An `Invalid` error when a table is recognisable but unusable: a protective MBR whose two
/// GPT copies are both damaged, or an MBR whose partitions do not fit in the disk. Callers
/// decide what to do with the disk then (see `docs/ARCHITECTURE.md`).
pub fn probe(dev: &dyn BlockDev, sector_size: u32) -> Result<PartitionTable> {
    let mut sector0 = vec![0u8; 512];
    if dev.len() < 512 {
        return Ok(none(sector_size));
    }
    dev.read_at(0, &mut sector0)?;
    let mbr = mbr::Mbr::parse(&sector0);
    let protective = mbr.as_ref().is_some_and(|m| m.is_protective());
    // A GPT may be present with a damaged or missing protective MBR; look for it at either
    // sector size regardless.
    let mut sizes = vec![sector_size];
    if sector_size == 512 {
        sizes.push(4096);
    }
    let mut gpt_err = None;
    for &ss in &sizes {
        match gpt::read(dev, ss) {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(e) => {
                gpt_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = gpt_err {
        return Err(e);
    }
    if protective {
        return Err(crate::Error::Invalid(
            "the disk has a protective MBR but no readable GPT (primary and backup \
             headers both missing or damaged)"
                .into(),
        ));
    }
    if looks_like_boot_sector(&sector0) {
        return Ok(none(sector_size));
    }
    match mbr {
        Some(m) if m.has_partitions() => mbr::read(dev, sector_size, &m),
        _ => Ok(none(sector_size)),
    }
}

fn none(sector_size: u32) -> PartitionTable {
    PartitionTable {
        scheme: Scheme::None,
        sector_size,
        disk_id: String::new(),
        partitions: Vec::new(),
        warnings: Vec::new(),
    }
}

/// True when sector 0 is the boot sector of a filesystem (FAT, NTFS, exFAT): those end in
/// 55 AA like an MBR, and their BPB can look like partition entries.
pub fn looks_like_boot_sector(s: &[u8]) -> bool {
    let oem = s.get(3..11).unwrap_or_default();
    if oem == b"NTFS    " || oem == b"EXFAT   " {
        return true;
    }
    let f = crate::le::LeFields(s);
    let bps = f.u16(11);
    let spc = f.u8(13);
    let reserved = f.u16(14);
    let fats = f.u8(16);
    let jump = matches!(f.u8(0), 0xEB | 0xE9);
    let fat_sig = s.get(54..57) == Some(b"FAT") || s.get(82..87) == Some(b"FAT32");
    jump && (512..=4096).contains(&bps)
        && bps.is_power_of_two()
        && spc.is_power_of_two()
        && reserved > 0
        && (1..=2).contains(&fats)
        && (fat_sig || f.u8(21) >= 0xF0)
}
