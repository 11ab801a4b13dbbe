//! The used-block map of a whole disk: its partition table, the filesystem in each
//! partition, and the byte ranges an image has to hold.
//!
//! What is kept:
//!
//! - everything outside partitions: the MBR, the GPT headers and entry arrays (the backup
//!   at the disk's end too), EBRs, gaps between partitions;
//! - in a partition with a recognised filesystem, the ranges its allocation map marks as
//!   used, plus anything between the end of the filesystem and the end of the partition;
//! - in a partition with no recognised filesystem, or an encrypted one, every block.
//!
//! A damaged allocation map or partition table never makes an image smaller: the partition
//! (or, for a table, the whole disk) falls back to every block, the reason is kept in the
//! report, and a warning is returned for the caller to print. See docs/ARCHITECTURE.md.

use crate::blockdev::window::Window;
use crate::blockdev::BlockDev;
use crate::fs::{self, FsOptions};
use crate::partition::{self, PartitionTable, Scheme};
use crate::ranges::Ranges;
use crate::units::short_bytes;
use serde::Serialize;

/// How a partition is imaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", content = "reason", rename_all = "snake_case")]
pub enum Imaging {
    /// Only the blocks the filesystem uses.
    UsedBlocks,
    /// Every block, for the reason given.
    EveryBlock(String),
}

impl std::fmt::Display for Imaging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Imaging::UsedBlocks => write!(f, "used blocks"),
            Imaging::EveryBlock(r) => write!(f, "every block: {r}"),
        }
    }
}

/// One partition (or the whole device when it has no table) and its filesystem.
#[derive(Debug, Clone, Serialize)]
pub struct PartReport {
    /// Partition number; 0 for a device without a partition table.
    pub number: u32,
    pub start: u64,
    pub len: u64,
    pub type_name: String,
    pub name: String,
    /// Filesystem type, or None when unrecognised.
    pub fs: Option<String>,
    pub label: String,
    /// Bytes the filesystem spans (0 when unrecognised).
    pub fs_size: u64,
    /// Bytes kept inside the partition.
    pub used_bytes: u64,
    pub imaging: Imaging,
    /// Files whose contents were left out, with their allocated bytes.
    pub skipped: Vec<(String, u64)>,
}

/// The map of a disk.
#[derive(Debug, Clone, Serialize)]
pub struct DiskMap {
    /// The table, or None when it could not be read (see `table_error`).
    pub table: Option<PartitionTable>,
    pub table_error: Option<String>,
    pub partitions: Vec<PartReport>,
    /// Absolute byte ranges to image, sorted.
    #[serde(skip)]
    pub ranges: Ranges,
    /// Problems worked around by imaging more (damaged maps or tables).
    pub warnings: Vec<String>,
}

/// Maps `dev`. Never fails: whatever cannot be understood is imaged whole.
pub fn map_disk(dev: &dyn BlockDev, sector_size: u32, opts: &FsOptions) -> DiskMap {
    let all = Ranges::from_unsorted(vec![(0, dev.len())]);
    let table = match partition_table(dev, sector_size) {
        Ok(t) => t,
        Err(e) => {
            let reason = format!("partition table unreadable: {e}");
            return DiskMap {
                table: None,
                table_error: Some(e.to_string()),
                partitions: Vec::new(),
                ranges: all,
                warnings: vec![format!("{reason}; imaging every block of the disk")],
            };
        }
    };
    let mut warnings: Vec<String> = table.warnings.clone();
    let mut reports = Vec::new();
    let mut keep = Ranges::new();
    let parts: Vec<(u32, u64, u64, String, String)> = if table.scheme == Scheme::None {
        vec![(0, 0, dev.len(), String::new(), String::new())]
    } else {
        table
            .partitions
            .iter()
            .map(|p| {
                (
                    p.number,
                    p.start,
                    p.len,
                    p.type_name.clone(),
                    p.name.clone(),
                )
            })
            .collect()
    };
    let mut inside = Ranges::new();
    for (number, start, len, type_name, name) in parts {
        let end = start.saturating_add(len).min(dev.len());
        inside.push(start.min(end), end);
        let (report, used) = map_partition(dev, number, start, end - start.min(end), opts);
        if let Imaging::EveryBlock(reason) = &report.imaging {
            let expected = match report.fs.as_deref() {
                None => reason == "no filesystem recognised",
                Some(fs) => matches!(fs, "LUKS" | "BitLocker"),
            };
            if !expected {
                let what = if number == 0 {
                    "the filesystem".to_string()
                } else {
                    format!("partition {number}")
                };
                warnings.push(format!("{what}: {reason}; imaging every block of it"));
            }
        }
        keep = keep.union(&used);
        reports.push(PartReport {
            type_name,
            name,
            ..report
        });
    }
    let outside = inside.complement(dev.len());
    DiskMap {
        table: (table.scheme != Scheme::None).then_some(table),
        table_error: None,
        partitions: reports,
        ranges: keep.union(&outside),
        warnings,
    }
}

/// The partition table of `dev`, as every command sees it (`create` and `info` through
/// [`map_disk`], `ls`, `cat`, `cp` and `mount` through [`crate::vfs::Vfs::open`]):
/// [`partition::probe`] with `sector_size` (the image header's, or the source's), then the
/// fix-ups a table alone cannot tell: an MBR behind a boot sector's BPB, and an MBR written
/// with 4096-byte sectors on a device that does not say so.
pub fn partition_table(dev: &dyn BlockDev, sector_size: u32) -> crate::Result<PartitionTable> {
    let table = partition::probe(dev, sector_size)?;
    Ok(mbr_sector_size(
        dev,
        mbr_behind_boot_sector(dev, sector_size, table),
    ))
}

/// Sector 0 of a bare FAT or NTFS volume ends in 55 AA like an MBR, so `partition::probe`
/// takes a sector with a boot-sector BPB for a volume. Some MBRs carry a BPB too (boot
/// loaders copy one there): when the entries of such a sector form a valid table whose
/// partitions hold filesystems, and the volume reading does not give a usable map, it is a
/// partitioned disk.
fn mbr_behind_boot_sector(
    dev: &dyn BlockDev,
    sector_size: u32,
    table: PartitionTable,
) -> PartitionTable {
    if table.scheme != Scheme::None || dev.len() < 512 {
        return table;
    }
    let mut s0 = [0u8; 512];
    if dev.read_at(0, &mut s0).is_err() {
        return table;
    }
    let Some(m) = partition::mbr::Mbr::parse(&s0) else {
        return table;
    };
    if !m.has_partitions() {
        return table;
    }
    let Ok(t) = partition::mbr::read(dev, sector_size, &m) else {
        return table;
    };
    let holds_fs = t.partitions.iter().any(|p| {
        Window::new(dev, p.start, p.len)
            .ok()
            .and_then(|w| fs::probe(&w).ok().flatten())
            .is_some()
    });
    let volume_maps = fs::probe(dev)
        .ok()
        .flatten()
        .is_some_and(|p| fs::used(dev, &p, &FsOptions::default()).is_ok());
    if holds_fs && !volume_maps {
        t
    } else {
        table
    }
}

/// An MBR does not say its sector size, and a raw disk file does not either: when an MBR
/// read with 512-byte sectors shows no filesystem where its partitions start, but does with
/// 4096-byte sectors, the disk has 4096-byte sectors. (GPT finds its own: `partition::probe`
/// looks for the header at both.)
fn mbr_sector_size(dev: &dyn BlockDev, table: PartitionTable) -> PartitionTable {
    let recognised = |t: &PartitionTable| {
        t.partitions
            .iter()
            .filter(|p| {
                Window::new(dev, p.start, p.len)
                    .ok()
                    .and_then(|w| fs::probe(&w).ok().flatten())
                    .is_some()
            })
            .count()
    };
    if table.scheme != Scheme::Mbr || table.sector_size != 512 || recognised(&table) > 0 {
        return table;
    }
    match partition::probe(dev, 4096) {
        Ok(t) if t.scheme == Scheme::Mbr && recognised(&t) > 0 => t,
        _ => table,
    }
}

/// The report and absolute used ranges of one partition.
fn map_partition(
    dev: &dyn BlockDev,
    number: u32,
    start: u64,
    len: u64,
    opts: &FsOptions,
) -> (PartReport, Ranges) {
    let every = Ranges::from_unsorted(vec![(start, start + len)]);
    let mut report = PartReport {
        number,
        start,
        len,
        type_name: String::new(),
        name: String::new(),
        fs: None,
        label: String::new(),
        fs_size: 0,
        used_bytes: len,
        imaging: Imaging::EveryBlock(String::new()),
        skipped: Vec::new(),
    };
    let win = match Window::new(dev, start, len) {
        Ok(w) => w,
        Err(e) => {
            report.imaging = Imaging::EveryBlock(e.to_string());
            return (report, every);
        }
    };
    let probe = match fs::probe(&win) {
        Ok(Some(p)) => p,
        Ok(None) => {
            report.imaging = Imaging::EveryBlock("no filesystem recognised".into());
            return (report, every);
        }
        Err(e) => {
            report.imaging = Imaging::EveryBlock(format!("filesystem not identified: {e}"));
            return (report, every);
        }
    };
    report.fs = Some(probe.kind.name().to_string());
    report.label = probe.label.clone();
    report.fs_size = probe.size;
    if matches!(probe.kind, fs::FsKind::Luks | fs::FsKind::BitLocker) {
        report.imaging = Imaging::EveryBlock(format!(
            "encrypted ({}): used blocks cannot be told from free ones",
            probe.kind.name()
        ));
        return (report, every);
    }
    // The parsers check what they read, and a bug in one (or in the `ntfs` crate) must
    // still not stop a backup: a panic counts as a damaged map.
    let usage = crate::error::contain_panics(
        format_args!(
            "{}: the allocation map could not be read",
            probe.kind.name()
        ),
        || fs::used(&win, &probe, opts),
    );
    match usage {
        Ok(usage) => {
            // The partition beyond the end of the filesystem is not the filesystem's.
            let used = usage
                .used
                .union(&Ranges::from_unsorted(vec![(probe.size.min(len), len)]))
                .clipped(len);
            report.used_bytes = used.total();
            report.imaging = Imaging::UsedBlocks;
            report.skipped = usage.skipped;
            (report, used.shifted(start))
        }
        Err(e) => {
            report.imaging = Imaging::EveryBlock(e.to_string());
            (report, every)
        }
    }
}

impl std::fmt::Display for DiskMap {
    /// The partition table and one line per partition, as `strata info` prints them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.table, &self.table_error) {
            (_, Some(e)) => write!(f, "table:        unreadable ({e}); every block imaged")?,
            (Some(t), None) => write!(
                f,
                "table:        {}, {}-byte sectors, disk id {}, {}",
                match t.scheme {
                    Scheme::Gpt => "GPT",
                    Scheme::Mbr => "MBR",
                    Scheme::None => "none",
                },
                t.sector_size,
                t.disk_id,
                crate::units::count(t.partitions.len() as u64, "partition", "partitions")
            )?,
            (None, None) => write!(f, "table:        none (a bare volume)")?,
        }
        for w in self.table.iter().flat_map(|t| &t.warnings) {
            write!(f, "\n  warning: {w}")?;
        }
        for p in &self.partitions {
            let fs = p.fs.as_deref().unwrap_or("unknown");
            let mut label = if p.label.is_empty() {
                String::new()
            } else {
                format!(" \"{}\"", p.label)
            };
            if p.fs.is_some() && p.fs_size > 0 {
                label.push_str(&format!(" ({})", short_bytes(p.fs_size)));
            }
            let kind = if p.type_name.is_empty() {
                String::new()
            } else if p.name.is_empty() {
                format!(" [{}]", p.type_name)
            } else {
                format!(" [{}, \"{}\"]", p.type_name, p.name)
            };
            write!(
                f,
                "\n  {:>2}: {} at {}{kind}: {fs}{label}, used {} ({})",
                p.number,
                short_bytes(p.len),
                p.start,
                short_bytes(p.used_bytes),
                p.imaging
            )?;
            for (name, bytes) in &p.skipped {
                write!(f, "\n      left out: {name} ({})", short_bytes(*bytes))?;
            }
        }
        Ok(())
    }
}
