//! Filesystems: recognising them and reading which of their blocks are in use.
//!
//! Each module offers `probe(dev) -> Option<Probe>` (type, label, size, from the boot or
//! superblock only) and `used(dev, ...) -> Result<Ranges>`: the byte ranges, relative to the
//! start of the filesystem, that hold metadata or data. Everything else is free space and
//! need not be imaged. Parsers check every on-disk value before using it as an offset or a
//! size; damaged metadata gives a [`DamagedMetadata`](crate::Error::DamagedMetadata) error
//! naming the byte offset, never a panic and never a silently smaller set of ranges.

// On-disk parsers: every item documented, and no silent truncating or sign-changing `as`
// on values read from disk (a checked conversion with an error instead).
#![warn(
    missing_docs,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

pub mod browse;
pub mod exfat;
pub mod ext;
pub mod fat;
pub mod ntfs;
pub mod swap;

use crate::blockdev::BlockDev;
use crate::error::Result;
use crate::ranges::Ranges;
use serde::Serialize;

/// Filesystem types strata recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    /// NTFS.
    Ntfs,
    /// ext2.
    Ext2,
    /// ext3 (ext2 with a journal).
    Ext3,
    /// ext4.
    Ext4,
    /// FAT12.
    Fat12,
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
    /// exFAT.
    Exfat,
    /// A Linux swap area.
    Swap,
    /// LUKS-encrypted volume.
    Luks,
    /// BitLocker-encrypted volume.
    BitLocker,
}

impl FsKind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ntfs => "NTFS",
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Fat12 => "FAT12",
            FsKind::Fat16 => "FAT16",
            FsKind::Fat32 => "FAT32",
            FsKind::Exfat => "exFAT",
            FsKind::Swap => "Linux swap",
            FsKind::Luks => "LUKS",
            FsKind::BitLocker => "BitLocker",
        }
    }
}

/// What a probe learns from the first sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The filesystem found.
    pub kind: FsKind,
    /// Its volume label (empty when it has none).
    pub label: String,
    /// Bytes the filesystem spans from its start (may be less than its partition).
    pub size: u64,
}

/// Choices that change which blocks count as used.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsOptions {
    /// Keep the contents of `pagefile.sys`, `hiberfil.sys` and `swapfile.sys` (NTFS).
    pub keep_pagefile: bool,
}

/// Used ranges of one filesystem, and what was left out on purpose.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Byte ranges relative to the start of the filesystem.
    pub used: Ranges,
    /// Files whose contents were left out, with their allocated bytes.
    pub skipped: Vec<(String, u64)>,
}

/// Recognises the filesystem on `dev` (a partition or a bare volume).
pub fn probe(dev: &dyn BlockDev) -> Result<Option<Probe>> {
    let mut head = vec![0u8; crate::le::clamp_len(dev.len(), 4096)];
    dev.read_at(0, &mut head)?;
    if head.starts_with(b"LUKS\xba\xbe") {
        let label = if head.get(6..8) == Some(&[0, 2]) {
            cstr(head.get(24..72).unwrap_or_default())
        } else {
            String::new()
        };
        return Ok(Some(Probe {
            kind: FsKind::Luks,
            label,
            size: dev.len(),
        }));
    }
    if head.get(3..11) == Some(b"-FVE-FS-") {
        return Ok(Some(Probe {
            kind: FsKind::BitLocker,
            label: String::new(),
            size: dev.len(),
        }));
    }
    if let Some(p) = ntfs::probe(dev, &head) {
        return Ok(Some(p));
    }
    if let Some(p) = exfat::probe(dev, &head)? {
        return Ok(Some(p));
    }
    // ext keeps its first 1 KiB free and FAT puts its boot sector there: a volume with both
    // signatures was reformatted without wiping, and which one is current cannot be told.
    let (ext, fat) = (ext::probe(dev)?, fat::probe(&head));
    match (ext, fat) {
        (Some(e), Some(f)) => Err(crate::Error::Invalid(format!(
            "both {} and {} signatures: cannot tell which filesystem is current",
            e.kind.name(),
            f.kind.name()
        ))),
        (Some(p), None) | (None, Some(p)) => Ok(Some(p)),
        (None, None) => swap::probe(dev),
    }
}

/// Used ranges of the filesystem `p` found on `dev`. For encrypted volumes there is no map:
/// the caller images every block.
pub fn used(dev: &dyn BlockDev, p: &Probe, opts: &FsOptions) -> Result<Usage> {
    match p.kind {
        FsKind::Ntfs => ntfs::used(dev, opts),
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => Ok(Usage {
            used: ext::used(dev)?,
            skipped: Vec::new(),
        }),
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => Ok(Usage {
            used: fat::used(dev)?,
            skipped: Vec::new(),
        }),
        FsKind::Exfat => Ok(Usage {
            used: exfat::used(dev)?,
            skipped: Vec::new(),
        }),
        FsKind::Swap => Ok(Usage {
            used: swap::used(dev)?,
            skipped: Vec::new(),
        }),
        FsKind::Luks | FsKind::BitLocker => Ok(Usage {
            used: Ranges::from_unsorted(vec![(0, dev.len())]),
            skipped: Vec::new(),
        }),
    }
}

/// Byte ranges (relative to the filesystem's start) holding the metadata a directory walk
/// reads (ext: group metadata, inode tables, directories; NTFS: `$MFT` and index blocks),
/// for `create` to pack apart from file contents. Empty for filesystems where this is not known.
pub fn metadata(dev: browse::PartDev, p: &Probe) -> Result<Ranges> {
    match p.kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => ext::metadata(dev),
        FsKind::Ntfs => ntfs::metadata(&dev),
        _ => Ok(Ranges::new()),
    }
}

/// A filesystem structure failed a check: the error every parser here returns for bad
/// metadata, naming the filesystem, the byte offset (from the start of the volume) and
/// what was wrong.
pub fn corrupt(fs: &'static str, offset: u64, detail: impl std::fmt::Display) -> crate::Error {
    crate::Error::damaged_metadata(fs, Some(offset), detail)
}

/// A NUL-terminated (or full) byte string, lossily decoded and trimmed.
pub fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim().to_string()
}
