//! Where an ext filesystem keeps what a directory walk reads: the superblock and group
//! descriptor copies, the bitmaps, the in-use part of each inode table, and the blocks of
//! every directory and long symbolic link. `create` packs these blocks into chunks of
//! their own, so that browsing a mounted image decompresses metadata, not file contents
//! that happen to lie next to a directory block.
//!
//! This is a placement hint only: a block left out here is still imaged (with the file
//! data around it), so an inode that cannot be read is skipped, not reported.

use super::inode::{Inodes, Run};
use super::{read_descs, read_super, EXT4_BG_INODE_UNINIT, RO_COMPAT_GDT_CSUM};
use super::{RO_COMPAT_BIGALLOC, RO_COMPAT_METADATA_CSUM};
use crate::error::Result;
use crate::fs::browse::PartDev;
use crate::fs::corrupt;
use crate::le::LeFields;
use crate::ranges::Ranges;

/// Bytes of inode table read at a time.
const TABLE_PIECE: u64 = 1 << 20;

/// Byte ranges (relative to the filesystem's start) of the ext filesystem's metadata on
/// `dev`, as described in the module comment.
pub fn metadata(dev: PartDev) -> Result<Ranges> {
    let Some(s) = read_super(&dev)? else {
        return Err(corrupt("ext", 1024, "no superblock magic"));
    };
    if s.s_feature_ro_compat & RO_COMPAT_BIGALLOC != 0 {
        return Ok(Ranges::new());
    }
    let descs = read_descs(&dev, &s)?;
    let inodes = Inodes::open(dev.clone())?;
    let bs = s.block_size;
    let blocks = s.s_blocks_count;
    let ipg = u64::from(s.s_inodes_per_group);
    let isz = s.inode_size;
    let uninit_allowed =
        s.s_feature_ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM) != 0;
    let mut out = Vec::new();
    let mut add = |first: u64, n: u64| {
        let end = first.saturating_add(n).min(blocks);
        if first < end {
            out.push((first * bs, end * bs));
        }
    };
    add(0, 1); // boot block and superblock (1 KiB blocks: block 0 is the boot block)
    let mut piece = Vec::new();
    for (g, d) in descs.iter().enumerate() {
        let g = g as u64;
        add(s.group_first_block(g), s.base_meta_blocks(g));
        add(d.block_bitmap, 1);
        add(d.inode_bitmap, 1);
        let in_use = if !uninit_allowed {
            ipg
        } else if d.flags & EXT4_BG_INODE_UNINIT != 0 {
            0
        } else {
            ipg.saturating_sub(d.itable_unused)
        };
        let table_bytes = in_use * isz;
        add(d.inode_table, table_bytes.div_ceil(bs));
        if d.inode_table.saturating_add(table_bytes.div_ceil(bs)) > blocks {
            continue; // a damaged descriptor: used() reports it
        }
        let mut done = 0;
        while done < table_bytes {
            let n = (table_bytes - done).min(TABLE_PIECE);
            piece.resize(n as usize, 0);
            inodes.read_raw(d.inode_table * bs + done, &mut piece)?;
            for (i, raw) in piece.chunks_exact(crate::le::usize_of(isz)?).enumerate() {
                let ino = g * ipg + (done / isz) + i as u64 + 1;
                let (runs, map_blocks) = walk_blocks(&inodes, ino, raw);
                for (_, count, phys) in runs {
                    add(phys, count);
                }
                for b in map_blocks {
                    add(b, 1);
                }
            }
            done += n;
        }
    }
    Ok(Ranges::from_unsorted(out))
}

/// The blocks a walk reads of inode `ino`, data runs and the blocks that map them: those
/// of a directory or of a symbolic link whose target does not fit in the inode; none for
/// anything else or a damaged inode.
fn walk_blocks(inodes: &Inodes, ino: u64, raw: &[u8]) -> (Vec<Run>, Vec<u64>) {
    let f = LeFields(raw);
    if Inodes::nlink(raw) == 0 {
        return Default::default();
    }
    let size = u64::from(f.u32(0x4)) | u64::from(f.u32(0x6C)) << 32;
    let wanted = match f.u16(0) & 0xF000 {
        0x4000 => true,
        // A target shorter than i_block's 60 bytes is kept in the inode itself.
        0xA000 => size >= 60,
        _ => false,
    };
    if !wanted {
        return Default::default();
    }
    inodes.runs_and_map_blocks(ino, raw).unwrap_or_default()
}
