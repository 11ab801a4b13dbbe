//! What `ext4-view` 1.0 does not expose, read directly: inode numbers (through directory
//! entries), link counts, block counts and extended attributes; and, because the crate
//! finds an inode only by walking its path again, listings, metadata and file contents.
//!
//! The crate keeps its inodes, directory entries and block maps private, so this small
//! reader finds an inode from the group descriptors ([`crate::fs::ext::inode_geometry`]),
//! maps a directory's blocks (extent trees, or the block maps of ext2/3), and lists its
//! entries linearly (hashed directories keep every entry in linear leaf blocks; their
//! index blocks look like empty entries).
//!
//! Extended attributes live after `i_extra_isize` in the inode (magic 0xEA020000) and in
//! the block `i_file_acl` (32-byte header, same magic). POSIX ACLs are stored compactly and given here in the form
//! `getfattr` shows (version 2, 8-byte entries).

use super::{Metadata, NodeKind, PartDev, Time};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fs::ext::InodeGeometry;
use crate::le::LeFields;

const XATTR_MAGIC: u32 = 0xEA02_0000;
/// `i_blocks` counts filesystem blocks rather than 512-byte sectors (with `huge_file`).
const HUGE_FILE_FL: u32 = 0x0004_0000;
const EXTENTS_FL: u32 = 0x0008_0000;
/// fscrypt: names and contents are ciphertext.
const ENCRYPT_FL: u32 = 0x0000_0800;
const INLINE_DATA_FL: u32 = 0x1000_0000;
const EXTENT_MAGIC: u16 = 0xF30A;
/// Deepest extent tree the kernel builds (and more than enough for a sane one).
const MAX_DEPTH: u16 = 5;

fn corrupt(ino: u64, what: impl std::fmt::Display) -> Error {
    crate::fs::corrupt("ext", 0, format!("inode {ino}: {what}"))
}

/// Inodes of one ext filesystem.
pub struct Inodes {
    dev: PartDev,
    g: InodeGeometry,
}

/// One data run of a file: first logical block, block count, first physical block.
pub type Run = (u64, u64, u64);

impl Inodes {
    pub fn open(dev: PartDev) -> Result<Inodes> {
        let g = crate::fs::ext::inode_geometry(&dev)?;
        Ok(Inodes { dev, g })
    }

    /// The raw inode `ino` (`inode size` bytes).
    pub fn inode(&self, ino: u64) -> Result<Vec<u8>> {
        let i = ino
            .checked_sub(1)
            .ok_or_else(|| corrupt(ino, "no such inode"))?;
        let table = self
            .g
            .inode_tables
            .get((i / self.g.inodes_per_group) as usize)
            .ok_or_else(|| corrupt(ino, "past the last group"))?;
        let at = table * self.g.block_size + (i % self.g.inodes_per_group) * self.g.inode_size;
        let mut buf = vec![0u8; self.g.inode_size as usize];
        self.dev.read_at(at, &mut buf)?;
        Ok(buf)
    }

    /// Number of names (hard links) of an inode.
    pub fn nlink(inode: &[u8]) -> u32 {
        u32::from(LeFields(inode).u16(0x1A))
    }

    /// Size in bytes of an inode's data (`i_size`, 64 bits).
    fn size(inode: &[u8]) -> u64 {
        let f = LeFields(inode);
        u64::from(f.u32(0x4)) | u64::from(f.u32(0x6C)) << 32
    }

    /// The metadata of raw inode `ino`, as the kernel's `stat` gives it.
    pub fn metadata(&self, ino: u64, inode: &[u8]) -> Metadata {
        let f = LeFields(inode);
        let mode = f.u16(0);
        let kind = match mode & 0xF000 {
            0x4000 => NodeKind::Dir,
            0xA000 => NodeKind::Symlink,
            0x6000 => NodeKind::Block,
            0x2000 => NodeKind::Char,
            0x1000 => NodeKind::Fifo,
            0xC000 => NodeKind::Socket,
            _ => NodeKind::File,
        };
        let size = match kind {
            NodeKind::File | NodeKind::Symlink => Self::size(inode),
            _ => 0,
        };
        // The extra fields (nanoseconds, epoch bits, creation time) exist when the inode's
        // extra size covers them.
        let extra_end = if inode.len() > 0x82 {
            (128 + usize::from(f.u16(0x80))).min(inode.len())
        } else {
            128
        };
        let extra = |at: usize| (at + 4 <= extra_end).then(|| f.u32(at));
        // Seconds are signed 32-bit, extended by the low two bits of the extra field.
        let time = |at: usize, extra_at: usize| {
            let x = extra(extra_at);
            Some(Time {
                secs: i64::from(f.u32(at) as i32) + (i64::from(x.unwrap_or(0) & 3) << 32),
                nanos: x.map_or(0, |x| x >> 2),
            })
        };
        let mut m = Metadata::new(kind, size);
        m.atime = time(0x08, 0x8C);
        m.ctime = time(0x0C, 0x84);
        m.mtime = time(0x10, 0x88);
        m.crtime = extra(0x90).and_then(|_| time(0x90, 0x94));
        m.mode = Some(u32::from(mode & 0o7777));
        m.uid = Some(u32::from(f.u16(0x2)) | u32::from(f.u16(0x78)) << 16);
        m.gid = Some(u32::from(f.u16(0x18)) | u32::from(f.u16(0x7A)) << 16);
        m.nlink = Some(Self::nlink(inode));
        m.ino = Some(ino);
        let mut blocks = u64::from(f.u32(0x1C));
        if self.g.huge_file {
            blocks |= u64::from(f.u16(0x74)) << 32;
            if f.u32(0x20) & HUGE_FILE_FL != 0 {
                blocks = blocks.saturating_mul(self.g.block_size / 512);
            }
        }
        // Saturating: a damaged count must not overflow.
        m.allocated = Some(blocks.saturating_mul(512));
        m
    }

    fn block(&self, ino: u64, b: u64) -> Result<Vec<u8>> {
        if b == 0 || b >= self.g.blocks_count {
            return Err(corrupt(ino, format!("block {b} out of range")));
        }
        let mut buf = vec![0u8; self.g.block_size as usize];
        self.dev.read_at(b * self.g.block_size, &mut buf)?;
        Ok(buf)
    }

    /// The data runs of inode `ino` (holes left out), in logical order. Encrypted data
    /// is refused: without the key it would be ciphertext.
    pub fn runs(&self, ino: u64, inode: &[u8]) -> Result<Vec<Run>> {
        let f = LeFields(inode);
        let flags = f.u32(0x20);
        if flags & ENCRYPT_FL != 0 {
            return Err(Error::Invalid(format!(
                "ext: inode {ino} is encrypted (fscrypt); it cannot be read without its key"
            )));
        }
        if flags & INLINE_DATA_FL != 0 {
            return Err(Error::Invalid(format!(
                "ext: inode {ino}: inline data cannot be read yet"
            )));
        }
        let mut out = Vec::new();
        if flags & EXTENTS_FL != 0 {
            self.extents(ino, &inode[0x28..0x28 + 60], MAX_DEPTH, &mut out)?;
        } else {
            let mut lblk = 0u64;
            for k in 0..15 {
                let b = u64::from(f.u32(0x28 + 4 * k));
                let level = k.saturating_sub(11) as u32;
                let span = (self.g.block_size / 4).pow(level);
                if b != 0 {
                    self.mapped(ino, b, level, lblk, &mut out)?;
                }
                lblk += span;
            }
        }
        Ok(out)
    }

    /// Walks one extent node (the 60 bytes in the inode, or a tree block).
    fn extents(&self, ino: u64, node: &[u8], depth_left: u16, out: &mut Vec<Run>) -> Result<()> {
        let f = LeFields(node);
        let (entries, depth) = (usize::from(f.u16(2)), f.u16(6));
        if f.u16(0) != EXTENT_MAGIC || depth > depth_left || 12 + 12 * entries > node.len() {
            return Err(corrupt(ino, "bad extent tree"));
        }
        for e in 0..entries {
            let at = 12 + 12 * e;
            let lblk = u64::from(f.u32(at));
            if depth == 0 {
                let len = u64::from(f.u16(at + 4));
                // Longer than 32768: not yet written (reads as zeros); not mapped here.
                if len <= 32768 {
                    let start = u64::from(f.u32(at + 8)) | u64::from(f.u16(at + 6)) << 32;
                    out.push((lblk, len, start));
                }
            } else {
                let leaf = u64::from(f.u32(at + 4)) | u64::from(f.u16(at + 8)) << 32;
                let b = self.block(ino, leaf)?;
                self.extents(ino, &b, depth - 1, out)?;
            }
        }
        Ok(())
    }

    /// Adds the blocks an ext2/3 block-map entry `b` of `level` (0: data block, 1:
    /// indirect…) covers from logical block `lblk`.
    fn mapped(&self, ino: u64, b: u64, level: u32, lblk: u64, out: &mut Vec<Run>) -> Result<()> {
        if level == 0 {
            match out.last_mut() {
                Some((l, n, p)) if *l + *n == lblk && *p + *n == b => *n += 1,
                _ => out.push((lblk, 1, b)),
            }
            return Ok(());
        }
        let per = self.g.block_size / 4;
        let span = per.pow(level - 1);
        let blk = self.block(ino, b)?;
        for (k, e) in blk.chunks_exact(4).enumerate() {
            let e = u64::from(u32::from_le_bytes([e[0], e[1], e[2], e[3]]));
            if e != 0 {
                self.mapped(ino, e, level - 1, lblk + k as u64 * span, out)?;
            }
        }
        Ok(())
    }

    /// Reads a file's bytes from `offset` into `buf` through its `runs`: holes (and
    /// unwritten extents, left out of the runs) read as zeros. The caller keeps `buf`
    /// within the file's size.
    pub fn read(&self, runs: &[Run], offset: u64, buf: &mut [u8]) -> Result<()> {
        let bs = self.g.block_size;
        let end = offset + buf.len() as u64;
        // First run that ends after `offset`.
        let first = runs.partition_point(|&(l, n, _)| (l + n) * bs <= offset);
        let mut done = offset;
        for &(lblk, n, start) in &runs[first..] {
            let (a, b) = ((lblk * bs).max(offset), ((lblk + n) * bs).min(end));
            if a >= end {
                break;
            }
            if start.checked_add(n).is_none_or(|e| e > self.g.blocks_count) {
                return Err(corrupt(
                    0,
                    format!("data run at block {start} out of range"),
                ));
            }
            buf[(done - offset) as usize..(a - offset) as usize].fill(0);
            let at = start * bs + (a - lblk * bs);
            self.dev
                .read_at(at, &mut buf[(a - offset) as usize..(b - offset) as usize])?;
            done = b;
        }
        buf[(done - offset) as usize..].fill(0);
        Ok(())
    }

    /// The entries of directory `ino` but `.` and `..`: (name, inode number). Read a block
    /// at a time through the directory's own block map, so that a damaged size costs no
    /// memory (holes, which a directory should not have, are skipped).
    pub fn dir_entries(&self, ino: u64) -> Result<Vec<(Vec<u8>, u64)>> {
        let inode = self.inode(ino)?;
        let size = Self::size(&inode);
        let bs = self.g.block_size;
        let mut out = Vec::new();
        for (lblk, n, start) in self.runs(ino, &inode)? {
            for k in 0..n {
                if (lblk + k) * bs >= size {
                    break;
                }
                let block = self.block(ino, start + k)?;
                let mut at = 0usize;
                while at + 8 <= block.len() {
                    let e = LeFields(&block[at..]);
                    let (child, rec_len, name_len) =
                        (e.u32(0), usize::from(e.u16(4)), usize::from(block[at + 6]));
                    if rec_len < 8 || at + rec_len > block.len() || 8 + name_len > rec_len {
                        return Err(corrupt(ino, format!("bad directory entry at {at}")));
                    }
                    let name = &block[at + 8..at + 8 + name_len];
                    if child != 0 && name != b"." && name != b".." {
                        out.push((name.to_vec(), u64::from(child)));
                    }
                    at += rec_len;
                }
            }
        }
        Ok(out)
    }

    /// Extended attributes of inode `ino`: (full name, value), in-inode ones first.
    pub fn xattrs(&self, ino: u64, inode: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        let f = LeFields(inode);
        if inode.len() > 0x84 {
            let start = 128 + usize::from(f.u16(0x80));
            if start + 4 <= inode.len() && f.u32(start) == XATTR_MAGIC {
                let region = &inode[start + 4..];
                self.xattr_entries(ino, region, 0, region, &mut out)?;
            }
        }
        let acl = u64::from(f.u32(0x68)) | u64::from(f.u16(0x76)) << 32;
        if acl != 0 {
            let b = self.block(ino, acl)?;
            if LeFields(&b).u32(0) != XATTR_MAGIC {
                return Err(corrupt(ino, format!("attribute block {acl} has no magic")));
            }
            self.xattr_entries(ino, &b, 32, &b, &mut out)?;
        }
        Ok(out)
    }

    /// Entries starting at `at` of `area`; value offsets count from the start of `base`.
    fn xattr_entries(
        &self,
        ino: u64,
        area: &[u8],
        mut at: usize,
        base: &[u8],
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        while at + 16 <= area.len() && LeFields(&area[at..]).u32(0) != 0 {
            let e = LeFields(&area[at..]);
            let name_len = usize::from(area[at]);
            let index = area[at + 1];
            let (offs, inum, size) = (usize::from(e.u16(2)), e.u32(4), e.u32(8) as usize);
            let name = area
                .get(at + 16..at + 16 + name_len)
                .ok_or_else(|| corrupt(ino, "attribute name past its area"))?;
            if inum != 0 {
                // ea_inode: ext4-view refuses such filesystems, so this is never reached
                // through it.
                return Err(Error::Invalid(format!(
                    "ext: inode {ino}: attribute values in inodes of their own (ea_inode) \
                     are not read"
                )));
            }
            let value = base
                .get(offs..offs + size)
                .ok_or_else(|| corrupt(ino, "attribute value past its area"))?
                .to_vec();
            let name = String::from_utf8_lossy(name);
            let full = match index {
                1 => format!("user.{name}"),
                2 => "system.posix_acl_access".to_string(),
                3 => "system.posix_acl_default".to_string(),
                4 => format!("trusted.{name}"),
                6 => format!("security.{name}"),
                7 => format!("system.{name}"),
                8 => "system.richacl".to_string(),
                _ => String::new(),
            };
            if !full.is_empty() {
                let value = if index == 2 || index == 3 {
                    acl_to_xattr(&value).ok_or_else(|| corrupt(ino, "malformed ACL"))?
                } else {
                    value
                };
                out.push((full, value));
            }
            at += (16 + name_len).next_multiple_of(4);
        }
        Ok(())
    }
}

/// An ACL as ext4 stores it (version 1; 4-byte entries, 8 bytes for named users and
/// groups) in the form the kernel gives `getxattr` (version 2, every entry 8 bytes, with
/// id 0xFFFFFFFF where none is stored).
fn acl_to_xattr(v: &[u8]) -> Option<Vec<u8>> {
    const USER: u16 = 2;
    const GROUP: u16 = 8;
    if v.get(..4)? != 1u32.to_le_bytes() {
        return None;
    }
    let mut out = 2u32.to_le_bytes().to_vec();
    let mut at = 4;
    while at < v.len() {
        let tag = u16::from_le_bytes([*v.get(at)?, *v.get(at + 1)?]);
        let perm = v.get(at + 2..at + 4)?;
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(perm);
        if tag == USER || tag == GROUP {
            out.extend_from_slice(v.get(at + 4..at + 8)?);
            at += 8;
        } else {
            out.extend_from_slice(&u32::MAX.to_le_bytes());
            at += 4;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn acls_are_given_in_the_xattr_form() {
        // user::rw- user:1000:r-- group::r-- mask::r-- other::---
        let mut disk = 1u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [(1u16, 6u16, None), (2, 4, Some(1000u32)), (4, 4, None)] {
            disk.extend_from_slice(&tag.to_le_bytes());
            disk.extend_from_slice(&perm.to_le_bytes());
            if let Some(id) = id {
                disk.extend_from_slice(&id.to_le_bytes());
            }
        }
        let x = super::acl_to_xattr(&disk).unwrap();
        assert_eq!(x.len(), 4 + 3 * 8);
        assert_eq!(&x[..4], &2u32.to_le_bytes());
        assert_eq!(&x[8..12], &u32::MAX.to_le_bytes());
        assert_eq!(&x[16..20], &1000u32.to_le_bytes());
        assert!(super::acl_to_xattr(&[2, 0, 0, 0]).is_none());
        assert!(super::acl_to_xattr(&disk[..7]).is_none());
    }
}
