//! ext2, ext3 and ext4: block group bitmaps.
//!
//! Field names follow the kernel's `struct ext4_super_block` and `struct ext4_group_desc`
//! (fs/ext4/ext4.h), at their hex offsets. Handled: 32- and 64-bit group descriptors,
//! flex_bg (bitmaps of one group stored in another), BLOCK_UNINIT groups (no bitmap on
//! disk; their use is computed as the kernel does), sparse_super and sparse_super2 backup
//! placement, meta_bg, and metadata_csum bitmap checksums. The journal is an inode whose
//! blocks are marked in the bitmaps like any file's, so it is kept.
//!
//! A filesystem whose journal needs recovery (mounted, or not cleanly unmounted) is not
//! mapped: its journal may hold allocations the bitmaps do not show yet.
//!
//! Every value read from disk is checked before use: block numbers against the block
//! count, the block count against the device. A bitmap that fails its checksum, disagrees
//! with its group's free count, or leaves the group's own metadata unmarked is reported as
//! corrupt.

pub mod browse;
pub mod inode;
mod journal;
mod meta;
mod names;

use super::{corrupt, cstr, FsKind, Probe};
use crate::blockdev::BlockDev;
use crate::error::Result;
use crate::le::LeFields;
use crate::ranges::Ranges;
pub use meta::metadata;

const EXT4_SUPER_MAGIC: u16 = 0xEF53;
// s_feature_compat
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
// s_feature_incompat
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
// s_feature_ro_compat
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_HUGE_FILE: u32 = 0x8;
const RO_COMPAT_GDT_CSUM: u32 = 0x10;
const RO_COMPAT_BIGALLOC: u32 = 0x200;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
// bg_flags
const EXT4_BG_INODE_UNINIT: u16 = 0x1;
const EXT4_BG_BLOCK_UNINIT: u16 = 0x2;

/// The superblock fields used here.
#[derive(Debug, Clone)]
struct Super {
    s_blocks_count: u64,
    s_first_data_block: u32,
    block_size: u64,
    s_blocks_per_group: u32,
    s_feature_compat: u32,
    s_feature_incompat: u32,
    s_feature_ro_compat: u32,
    s_uuid: [u8; 16],
    s_volume_name: String,
    s_reserved_gdt_blocks: u16,
    desc_size: u64,
    s_first_meta_bg: u32,
    s_backup_bgs: [u32; 2],
    s_checksum_seed: u32,
    s_inodes_per_group: u32,
    inode_size: u64,
    s_log_cluster_size: u32,
}

fn read_super(dev: &dyn BlockDev) -> Result<Option<Super>> {
    if dev.len() < 2048 {
        return Ok(None);
    }
    let mut sb = [0u8; 1024];
    dev.read_at(1024, &mut sb)?;
    let f = LeFields(&sb);
    if f.u16(0x38) != EXT4_SUPER_MAGIC {
        return Ok(None);
    }
    let s_log_block_size = f.u32(0x18);
    if s_log_block_size > 6 {
        return Err(corrupt("ext", 1024 + 0x18, "block size above 64 KiB"));
    }
    let incompat = f.u32(0x60);
    let bits64 = incompat & INCOMPAT_64BIT != 0;
    let hi = if bits64 { u64::from(f.u32(0x150)) } else { 0 };
    let desc_size = if bits64 { u64::from(f.u16(0xFE)) } else { 32 };
    if bits64 && (!(64..=1024).contains(&desc_size) || !desc_size.is_power_of_two()) {
        return Err(corrupt(
            "ext",
            1024 + 0xFE,
            format!("group descriptor size {desc_size}"),
        ));
    }
    Ok(Some(Super {
        s_blocks_count: u64::from(f.u32(0x4)) | hi << 32,
        s_first_data_block: f.u32(0x14),
        block_size: 1024 << s_log_block_size,
        s_blocks_per_group: f.u32(0x20),
        s_feature_compat: f.u32(0x5C),
        s_feature_incompat: incompat,
        s_feature_ro_compat: f.u32(0x64),
        s_uuid: f.bytes(0x68),
        s_volume_name: cstr(&sb[0x78..0x88]),
        s_reserved_gdt_blocks: f.u16(0xCE),
        desc_size,
        s_first_meta_bg: f.u32(0x104),
        s_backup_bgs: [f.u32(0x24C), f.u32(0x250)],
        s_checksum_seed: f.u32(0x270),
        s_inodes_per_group: f.u32(0x28),
        s_log_cluster_size: f.u32(0x1C),
        inode_size: if f.u32(0x4C) == 0 {
            128
        } else {
            u64::from(f.u16(0x58))
        },
    }))
}

/// Recognises ext2/3/4 from the superblock.
pub fn probe(dev: &dyn BlockDev) -> Result<Option<Probe>> {
    let Some(s) = read_super(dev)? else {
        return Ok(None);
    };
    let modern = INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG;
    let kind = if s.s_feature_incompat & modern != 0
        || s.s_feature_ro_compat & (RO_COMPAT_HUGE_FILE | RO_COMPAT_METADATA_CSUM) != 0
    {
        FsKind::Ext4
    } else if s.s_feature_compat & COMPAT_HAS_JOURNAL != 0 {
        FsKind::Ext3
    } else {
        FsKind::Ext2
    };
    Ok(Some(Probe {
        kind,
        label: s.s_volume_name.clone(),
        size: s.s_blocks_count.saturating_mul(s.block_size),
    }))
}

/// Castagnoli CRC as the kernel's `crc32c()` computes it: no final inversion, the caller's
/// seed as the initial value. The crate's function inverts on entry and exit; undo both.
fn crc32c_raw(crc: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!crc, data)
}

fn is_power_of(mut n: u64, base: u64) -> bool {
    while n > 1 && n.checked_rem(base) == Some(0) {
        n /= base;
    }
    n == 1
}

impl Super {
    fn cluster_size(&self) -> u64 {
        if self.s_feature_ro_compat & RO_COMPAT_BIGALLOC != 0 {
            1024 << self.s_log_cluster_size.min(30)
        } else {
            self.block_size
        }
    }

    fn groups(&self) -> u64 {
        (self.s_blocks_count - u64::from(self.s_first_data_block))
            .div_ceil(u64::from(self.s_blocks_per_group))
    }

    /// `ext4_bg_has_super`.
    fn has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if self.s_feature_compat & COMPAT_SPARSE_SUPER2 != 0 {
            return self.s_backup_bgs.iter().any(|&b| u64::from(b) == g);
        }
        if self.s_feature_ro_compat & RO_COMPAT_SPARSE_SUPER == 0 {
            return true;
        }
        g == 1 || is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7)
    }

    fn descs_per_block(&self) -> u64 {
        self.block_size / self.desc_size
    }

    fn group_first_block(&self, g: u64) -> u64 {
        u64::from(self.s_first_data_block) + g * u64::from(self.s_blocks_per_group)
    }

    fn meta_bg(&self) -> bool {
        self.s_feature_incompat & INCOMPAT_META_BG != 0
    }

    /// Block holding group-descriptor block `i` (`descriptor_loc` in the kernel).
    fn desc_block(&self, i: u64) -> u64 {
        if self.meta_bg() && i >= u64::from(self.s_first_meta_bg) {
            let g = i * self.descs_per_block();
            self.group_first_block(g) + u64::from(self.has_super(g))
        } else {
            u64::from(self.s_first_data_block) + 1 + i
        }
    }

    /// Blocks at the start of group `g` used by the superblock backup and the group
    /// descriptor table (with its reserved growth blocks): `ext4_num_base_meta_blocks`.
    fn base_meta_blocks(&self, g: u64) -> u64 {
        let gdt_blocks = self.groups().div_ceil(self.descs_per_block());
        let mut n = u64::from(self.has_super(g));
        if !self.meta_bg() || g < u64::from(self.s_first_meta_bg) * self.descs_per_block() {
            if n > 0 {
                let old = if self.meta_bg() {
                    gdt_blocks.min(u64::from(self.s_first_meta_bg))
                } else {
                    gdt_blocks
                };
                n += old + u64::from(self.s_reserved_gdt_blocks);
            }
        } else {
            let i = g % self.descs_per_block();
            if i == 0 || i == 1 || i == self.descs_per_block() - 1 {
                n += 1;
            }
        }
        n
    }
}

struct Desc {
    block_bitmap: u64,
    inode_bitmap: u64,
    inode_table: u64,
    free_blocks: u64,
    flags: u16,
    bitmap_csum: u32,
    /// Inodes at the end of the group's table never used (`bg_itable_unused`).
    itable_unused: u64,
}

/// The group descriptors of every group.
fn read_descs(dev: &dyn BlockDev, s: &Super) -> Result<Vec<Desc>> {
    let bs = s.block_size;
    let groups = s.groups();
    let gdt_blocks = groups.div_ceil(s.descs_per_block());
    // Grows with the descriptors actually read, not with a count read from disk.
    let mut descs = Vec::with_capacity(crate::le::clamp_len(groups, 1 << 16));
    let mut block = vec![0u8; crate::le::usize_of(bs)?];
    for i in 0..gdt_blocks {
        let at = s.desc_block(i);
        if at >= s.s_blocks_count {
            return Err(corrupt(
                "ext",
                1024,
                format!("descriptor block {at} out of range"),
            ));
        }
        dev.read_at(at * bs, &mut block)?;
        for d in block.chunks_exact(crate::le::usize_of(s.desc_size)?) {
            if descs.len() as u64 == groups {
                break;
            }
            let f = LeFields(d);
            let hi = |off: usize| {
                if s.desc_size >= 64 {
                    u64::from(f.u32(off)) << 32
                } else {
                    0
                }
            };
            let csum_hi = if s.desc_size >= 0x3C {
                u32::from(f.u16(0x38)) << 16
            } else {
                0
            };
            let hi16 = |off: usize| {
                if s.desc_size >= 64 {
                    u64::from(f.u16(off)) << 16
                } else {
                    0
                }
            };
            let free_hi = hi16(0x2C);
            descs.push(Desc {
                block_bitmap: u64::from(f.u32(0x0)) | hi(0x20),
                inode_bitmap: u64::from(f.u32(0x4)) | hi(0x24),
                inode_table: u64::from(f.u32(0x8)) | hi(0x28),
                free_blocks: u64::from(f.u16(0xC)) | free_hi,
                flags: f.u16(0x12),
                bitmap_csum: u32::from(f.u16(0x18)) | csum_hi,
                itable_unused: u64::from(f.u16(0x1C)) | hi16(0x32),
            });
        }
    }

    Ok(descs)
}

/// Where the inodes of an ext filesystem lie: what a reader of single inodes needs.
pub struct InodeGeometry {
    /// Bytes per block.
    pub block_size: u64,
    /// Blocks in the filesystem.
    pub blocks_count: u64,
    /// Bytes per inode record.
    pub inode_size: u64,
    /// Inodes in each block group.
    pub inodes_per_group: u64,
    /// First block of each group's inode table.
    pub inode_tables: Vec<u64>,
    /// `huge_file`: block counts of inodes may be in filesystem blocks and 48 bits wide.
    pub huge_file: bool,
    /// Bytes of an allocation cluster (the block size but with `bigalloc`).
    pub cluster_size: u64,
    /// `filetype`: directory entries say what kind of node each names.
    pub filetype: bool,
}

/// The inode geometry of the ext filesystem on `dev`.
pub fn inode_geometry(dev: &dyn BlockDev) -> Result<InodeGeometry> {
    let Some(s) = read_super(dev)? else {
        return Err(corrupt("ext", 1024, "no superblock magic"));
    };
    if s.s_blocks_per_group == 0 || s.s_inodes_per_group == 0 || s.inode_size < 128 {
        return Err(corrupt("ext", 1024, "zero blocks or inodes per group"));
    }
    // Browsing tolerates a filesystem a little larger than its device (a partition cut
    // short), but not a group count the device could never hold: it sizes the tables.
    let dev_groups = (dev.len() / s.block_size).div_ceil(u64::from(s.s_blocks_per_group));
    if s.s_blocks_count <= u64::from(s.s_first_data_block) || s.groups() > dev_groups + 1 {
        return Err(corrupt(
            "ext",
            1024 + 4,
            format!(
                "{} blocks (first data block {}) do not fit a {}-byte device",
                s.s_blocks_count,
                s.s_first_data_block,
                dev.len()
            ),
        ));
    }
    let descs = read_descs(dev, &s)?;
    Ok(InodeGeometry {
        block_size: s.block_size,
        blocks_count: s.s_blocks_count,
        inode_size: s.inode_size,
        inodes_per_group: u64::from(s.s_inodes_per_group),
        inode_tables: descs.iter().map(|d| d.inode_table).collect(),
        huge_file: s.s_feature_ro_compat & RO_COMPAT_HUGE_FILE != 0,
        cluster_size: s.cluster_size(),
        filetype: s.s_feature_incompat & INCOMPAT_FILETYPE != 0,
    })
}

/// Byte ranges of the ext filesystem's own structures on `dev`: superblock and group
/// descriptor copies with their reserved growth blocks, bitmaps, and whole inode tables.
/// A change there changes no entry but through the inodes in the tables.
pub fn structure(dev: &dyn BlockDev) -> Result<Ranges> {
    let Some(s) = read_super(dev)? else {
        return Err(corrupt("ext", 1024, "no superblock magic"));
    };
    let descs = read_descs(dev, &s)?;
    let bs = s.block_size;
    let table = (u64::from(s.s_inodes_per_group) * s.inode_size).div_ceil(bs);
    let mut out = vec![(0, bs.max(2048))];
    let mut add = |first: u64, n: u64| {
        let end = first.saturating_add(n).min(s.s_blocks_count);
        if first < end {
            out.push((first * bs, end * bs));
        }
    };
    for (g, d) in descs.iter().enumerate() {
        let g = g as u64;
        add(s.group_first_block(g), s.base_meta_blocks(g));
        add(d.block_bitmap, 1);
        add(d.inode_bitmap, 1);
        add(d.inode_table, table);
    }
    Ok(Ranges::from_unsorted(out))
}

/// Used byte ranges of the ext filesystem on `dev`.
pub fn used(dev: &dyn BlockDev) -> Result<Ranges> {
    let Some(s) = read_super(dev)? else {
        return Err(corrupt("ext", 1024, "no superblock magic"));
    };
    let bs = s.block_size;
    if s.s_feature_ro_compat & RO_COMPAT_BIGALLOC != 0 {
        return Err(crate::Error::UnsupportedFeature(
            "ext: bigalloc (cluster bitmaps) is not supported".into(),
        ));
    }
    if s.s_feature_incompat & INCOMPAT_RECOVER != 0 {
        // Transactions in the journal may allocate blocks that the on-disk bitmaps still
        // show as free; replaying them after a restore would point at zeros.
        return Err(crate::Error::UnsupportedFeature(
            "ext: the journal needs recovery (mounted, or not cleanly unmounted), so the \
             block bitmaps may be out of date"
                .into(),
        ));
    }
    if s.s_feature_incompat & INCOMPAT_JOURNAL_DEV != 0 {
        return Err(crate::Error::UnsupportedFeature(
            "ext: this is an external journal device".into(),
        ));
    }
    let bpg = u64::from(s.s_blocks_per_group);
    if bpg == 0 || bpg > bs * 8 || bpg % 8 != 0 {
        return Err(corrupt(
            "ext",
            1024 + 0x20,
            format!("{bpg} blocks per group with {bs}-byte blocks"),
        ));
    }
    let fs_bytes = s.s_blocks_count.checked_mul(bs);
    if fs_bytes.is_none_or(|b| b > dev.len()) || s.s_blocks_count <= u64::from(s.s_first_data_block)
    {
        return Err(corrupt(
            "ext",
            1024 + 0x4,
            format!(
                "{} blocks of {bs} bytes do not fit in {} bytes",
                s.s_blocks_count,
                dev.len()
            ),
        ));
    }
    let dpb = s.descs_per_block();

    let descs = read_descs(dev, &s)?;

    let csum = s.s_feature_ro_compat & RO_COMPAT_METADATA_CSUM != 0;
    let uninit_allowed =
        s.s_feature_ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM) != 0;
    let seed = if s.s_feature_incompat & INCOMPAT_CSUM_SEED != 0 {
        s.s_checksum_seed
    } else {
        crc32c_raw(!0, &s.s_uuid)
    };
    let inode_table_blocks = (u64::from(s.s_inodes_per_group) * s.inode_size).div_ceil(bs);

    let mut used = Ranges::new();
    // The boot block and the superblock, whatever the block size.
    used.push(0, 2048);
    // Group metadata wherever it lies (flex_bg puts it in other groups): always used.
    let mut meta = Vec::with_capacity(descs.len() * 3);
    for (g, d) in descs.iter().enumerate() {
        for (what, b, n) in [
            ("block bitmap", d.block_bitmap, 1),
            ("inode bitmap", d.inode_bitmap, 1),
            ("inode table", d.inode_table, inode_table_blocks),
        ] {
            if b < u64::from(s.s_first_data_block)
                || b.checked_add(n).is_none_or(|e| e > s.s_blocks_count)
            {
                return Err(corrupt(
                    "ext",
                    s.desc_block(g as u64 / dpb) * bs,
                    format!("group {g}: {what} at block {b} is out of range"),
                ));
            }
            meta.push((b * bs, (b + n) * bs));
        }
    }
    let meta = Ranges::from_unsorted(meta);

    let mut bitmap = vec![0u8; crate::le::usize_of(bs)?];
    for (g, d) in descs.iter().enumerate() {
        let g = g as u64;
        let first = s.group_first_block(g);
        let blocks = bpg.min(s.s_blocks_count - first);
        let base_meta = s.base_meta_blocks(g).min(blocks);
        if uninit_allowed && d.flags & EXT4_BG_BLOCK_UNINIT != 0 {
            // No bitmap on disk: the kernel builds one holding the base metadata and any
            // of this group's own bitmaps and table inside it (covered by `meta`).
            used.push(first * bs, (first + base_meta) * bs);
            continue;
        }
        let at = d.block_bitmap * bs;
        dev.read_at(at, &mut bitmap)?;
        if csum {
            let c = crc32c_raw(seed, &bitmap[..(bpg / 8) as usize]);
            let want = if s.desc_size >= 0x3C { c } else { c & 0xFFFF };
            if want != d.bitmap_csum {
                return Err(corrupt(
                    "ext",
                    at,
                    format!("group {g}: block bitmap checksum mismatch"),
                ));
            }
        }
        let whole = (blocks / 8) as usize;
        let set: u64 = bitmap[..whole]
            .iter()
            .map(|b| u64::from(b.count_ones()))
            .sum::<u64>()
            + (whole as u64 * 8..blocks)
                .filter(|&i| bitmap[(i / 8) as usize] >> (i % 8) & 1 == 1)
                .count() as u64;
        let free = blocks - set;
        if free != d.free_blocks {
            return Err(corrupt(
                "ext",
                at,
                format!(
                    "group {g}: block bitmap has {free} free blocks, the descriptor says {}",
                    d.free_blocks
                ),
            ));
        }
        if base_meta > 0 && bitmap[0] & 1 == 0 {
            return Err(corrupt(
                "ext",
                at,
                format!("group {g}: block bitmap does not mark the superblock or descriptors"),
            ));
        }
        used.add_bitmap(&bitmap, blocks, first * bs, bs);
    }
    Ok(used.union(&meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_reference() {
        // crc32c("123456789") = 0xE3069283 with the usual inversions.
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn sparse_super_groups() {
        let s = Super {
            s_blocks_count: 1 << 20,
            s_first_data_block: 0,
            block_size: 4096,
            s_blocks_per_group: 32768,
            s_feature_compat: 0,
            s_feature_incompat: 0,
            s_feature_ro_compat: RO_COMPAT_SPARSE_SUPER,
            s_uuid: [0; 16],
            s_volume_name: String::new(),
            s_reserved_gdt_blocks: 0,
            desc_size: 32,
            s_first_meta_bg: 0,
            s_backup_bgs: [0; 2],
            s_checksum_seed: 0,
            s_inodes_per_group: 8192,
            inode_size: 256,
            s_log_cluster_size: 0,
        };
        let with: Vec<u64> = (0..30).filter(|&g| s.has_super(g)).collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27]);
    }
}
