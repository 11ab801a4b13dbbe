//! ext inodes read directly: inode numbers (through directory entries), link counts,
//! block counts, extended attributes, listings, metadata, symbolic links and file
//! contents.
//!
//! This small
//! reader finds an inode from the group descriptors ([`crate::fs::ext::inode_geometry`]),
//! maps a directory's blocks (extent trees, or the block maps of ext2/3), and lists its
//! entries linearly (hashed directories keep every entry in linear leaf blocks; their
//! index blocks look like empty entries).
//!
//! Extended attributes live after `i_extra_isize` in the inode (magic 0xEA020000) and in
//! the block `i_file_acl` (32-byte header, same magic). POSIX ACLs are stored compactly and given here in the form
//! `getfattr` shows (version 2, 8-byte entries).

use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fs::browse::{Metadata, NodeKind, PartDev, Time};
use crate::fs::ext::journal::Replayed;
use crate::fs::ext::InodeGeometry;
use crate::le::LeFields;
use std::collections::HashSet;

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

/// Damage found in inode `ino`, at byte `at` of the partition where known.
fn corrupt_at(ino: u64, at: u64, what: impl std::fmt::Display) -> Error {
    crate::fs::corrupt("ext", at, format!("inode {ino}: {what}"))
}

/// Damage found in inode `ino` where the inode itself cannot be placed.
fn corrupt(ino: u64, what: impl std::fmt::Display) -> Error {
    Error::damaged_metadata("ext", None, format_args!("inode {ino}: {what}"))
}

/// Logical blocks an extent can address (32-bit block numbers).
const MAX_LBLK: u64 = 1 << 32;
/// `ee_len` above this marks an unwritten (preallocated) extent of `ee_len - 32768` blocks.
const INIT_MAX_LEN: u16 = 32768;

/// Inodes of one ext filesystem.
pub struct Inodes {
    /// The partition, with the journal applied when it needs recovery.
    dev: Replayed,
    g: InodeGeometry,
}

/// Longest symlink target: the kernel stores at most one block, and PATH_MAX is 4096.
const MAX_LINK: u64 = 4096;
/// Largest extended attribute value the kernel writes (XATTR_SIZE_MAX).
const MAX_XATTR: u64 = 65536;
/// The inode holds an attribute value (`ea_inode`).
const EA_INODE_FL: u32 = 0x0020_0000;
/// Bytes of data an inline-data inode holds in `i_block`.
const INLINE_IBLOCK: usize = 60;

/// State of one extent tree walk.
struct Walk<'a> {
    ino: u64,
    /// First logical block after the last extent seen.
    next: u64,
    /// Tree blocks read so far.
    seen: HashSet<u64>,
    out: &'a mut Vec<Run>,
}

/// State of one block map walk.
struct BlockMap<'a> {
    ino: u64,
    /// Logical blocks past the file's size are not mapped.
    limit: u64,
    /// Map blocks read so far.
    seen: HashSet<u64>,
    out: &'a mut Vec<Run>,
}

/// One data run of a file: first logical block, block count, first physical block.
pub type Run = (u64, u64, u64);

impl Inodes {
    /// Reads the inode geometry of `dev`, replaying the journal when it needs recovery.
    pub fn open(dev: PartDev) -> Result<Inodes> {
        let g = crate::fs::ext::inode_geometry(&dev)?;
        let blocks_count = g.blocks_count;
        // The journal's own inode and blocks are read as they are, as the kernel reads
        // them before recovery.
        let raw = Inodes {
            dev: Replayed::plain(dev.clone()),
            g,
        };
        let mut sb = [0u8; 1024];
        dev.read_at(1024, &mut sb)?;
        let dev = super::journal::replay(dev, &raw, &sb, blocks_count)?;
        if dev.replaced() == 0 {
            return Ok(Inodes { dev, g: raw.g });
        }
        // The journal may hold the superblock and group descriptors too.
        let g = crate::fs::ext::inode_geometry(&dev)?;
        Ok(Inodes { dev, g })
    }

    /// The inode geometry.
    pub fn geometry(&self) -> &crate::fs::ext::InodeGeometry {
        &self.g
    }

    /// The partition, as the journal leaves it.
    pub fn device(&self) -> &dyn BlockDev {
        &self.dev
    }

    /// Filesystem blocks the journal replaces (0 when it needed no recovery).
    pub fn replaced(&self) -> usize {
        self.dev.replaced()
    }

    /// Block size of the filesystem.
    pub fn block_size(&self) -> u64 {
        self.g.block_size
    }

    /// Bytes at `at` of the partition (as the journal leaves them).
    pub fn read_raw(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        self.dev.read_at(at, buf)
    }

    /// Byte offset of inode `ino` on the partition.
    fn inode_at(&self, ino: u64) -> Result<u64> {
        let i = ino
            .checked_sub(1)
            .ok_or_else(|| corrupt(ino, "no such inode"))?;
        let table = self
            .g
            .inode_tables
            .get(usize::try_from(i / self.g.inodes_per_group).unwrap_or(usize::MAX))
            .ok_or_else(|| corrupt(ino, "past the last group"))?;
        table
            .checked_mul(self.g.block_size)
            .and_then(|t| t.checked_add((i % self.g.inodes_per_group) * self.g.inode_size))
            .ok_or_else(|| corrupt(ino, format!("inode table at block {table}")))
    }

    /// Damage found in inode `ino`, named with the inode's own byte offset.
    fn damaged(&self, ino: u64, what: impl std::fmt::Display) -> Error {
        let at = self.inode_at(ino).ok();
        Error::damaged_metadata("ext", at, format_args!("inode {ino}: {what}"))
    }

    /// The raw inode `ino` (`inode size` bytes).
    pub fn inode(&self, ino: u64) -> Result<Vec<u8>> {
        let at = self.inode_at(ino)?;
        let mut buf = vec![0u8; crate::le::usize_of(self.g.inode_size)?];
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
                // Seconds are a signed 32-bit count, extended by two epoch bits.
                secs: i64::from(f.u32(at).cast_signed()) + (i64::from(x.unwrap_or(0) & 3) << 32),
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
            return Err(self.damaged(ino, format!("block {b} out of range")));
        }
        let mut buf = vec![0u8; crate::le::usize_of(self.g.block_size)?];
        self.dev.read_at(b * self.g.block_size, &mut buf)?;
        Ok(buf)
    }

    /// The data runs of inode `ino` (holes left out), in logical order. Encrypted data
    /// is refused: without the key it would be ciphertext.
    pub fn runs(&self, ino: u64, inode: &[u8]) -> Result<Vec<Run>> {
        self.runs_and_map_blocks(ino, inode).map(|(runs, _)| runs)
    }

    /// As [`Inodes::runs`], with the blocks that map them: extent tree nodes or indirect
    /// blocks (unordered).
    pub fn runs_and_map_blocks(&self, ino: u64, inode: &[u8]) -> Result<(Vec<Run>, Vec<u64>)> {
        let f = LeFields(inode);
        let flags = f.u32(0x20);
        if flags & ENCRYPT_FL != 0 {
            return Err(Error::UnsupportedFeature(format!(
                "ext: inode {ino} is encrypted (fscrypt); it cannot be read without its key"
            )));
        }
        if flags & INLINE_DATA_FL != 0 {
            // Read by `inline_data`; no blocks.
            return Ok((Vec::new(), Vec::new()));
        }
        let mut out = Vec::new();
        let seen = if flags & EXTENTS_FL != 0 {
            let root = self.inode_at(ino)? + 0x28;
            let mut walk = Walk {
                ino,
                next: 0,
                seen: HashSet::new(),
                out: &mut out,
            };
            self.extents(&mut walk, &inode[0x28..0x28 + 60], root, None)?;
            walk.seen
        } else {
            // As the kernel, map only the blocks within the file's size: entries past it
            // are never read (and, damaged, could only cost work).
            let mut map = BlockMap {
                ino,
                limit: Self::size(inode).div_ceil(self.g.block_size),
                seen: HashSet::new(),
                out: &mut out,
            };
            let mut lblk = 0u64;
            for k in 0..15u32 {
                let b = u64::from(f.u32(0x28 + 4 * k as usize));
                let level = k.saturating_sub(11);
                let span = (self.g.block_size / 4).pow(level);
                if b != 0 && lblk < map.limit {
                    self.mapped(&mut map, b, level, lblk)?;
                }
                lblk += span;
            }
            map.seen
        };
        Ok((out, seen.into_iter().collect()))
    }

    /// Walks one extent node (the 60 bytes in the inode, or a tree block) found at byte
    /// `at`; `depth` is what its parent says it must be (none for the root). As the kernel
    /// does, entries must not exceed the node's maximum nor its maximum the node's space,
    /// ranges must be in order without overlap, and blocks must lie in the filesystem;
    /// each tree block is read once, so a damaged tree cannot loop or multiply work.
    fn extents(&self, w: &mut Walk, node: &[u8], at: u64, depth: Option<u16>) -> Result<()> {
        let ino = w.ino;
        let f = LeFields(node);
        let (entries, max, d) = (f.u16(2), f.u16(4), f.u16(6));
        let bad = |what: String| corrupt_at(ino, at, format!("extent node: {what}"));
        if f.u16(0) != EXTENT_MAGIC {
            return Err(bad(format!("no magic (0x{:04x})", f.u16(0))));
        }
        if entries > max || 12 + 12 * usize::from(max) > node.len() {
            return Err(bad(format!(
                "{entries} entries, room for {max}, {} bytes",
                node.len()
            )));
        }
        if depth.is_some_and(|want| want != d) || d > MAX_DEPTH {
            return Err(bad(format!("depth {d}, expected {depth:?}")));
        }
        if d > 0 && entries == 0 && depth.is_some() {
            return Err(bad("an index node without entries".into()));
        }
        let mut prev_index: Option<u64> = None;
        for e in 0..usize::from(entries) {
            let o = 12 + 12 * e;
            let e_at = at + o as u64;
            let lblk = u64::from(f.u32(o));
            if d == 0 {
                let raw = f.u16(o + 4);
                let (len, unwritten) = if raw > INIT_MAX_LEN {
                    (u64::from(raw - INIT_MAX_LEN), true)
                } else {
                    (u64::from(raw), false)
                };
                let start = u64::from(f.u32(o + 8)) | u64::from(f.u16(o + 6)) << 32;
                if len == 0 || lblk < w.next || lblk + len > MAX_LBLK {
                    return Err(corrupt_at(
                        ino,
                        e_at,
                        format!(
                            "extent of {len} blocks at logical block {lblk} \
                             (overlaps, out of order or empty; next free logical block {})",
                            w.next
                        ),
                    ));
                }
                if start == 0 || start.saturating_add(len) > self.g.blocks_count {
                    return Err(corrupt_at(
                        ino,
                        e_at,
                        format!(
                            "extent of {len} blocks at block {start} is outside the \
                             filesystem ({} blocks)",
                            self.g.blocks_count
                        ),
                    ));
                }
                w.next = lblk + len;
                // Unwritten extents read as zeros, whatever their blocks hold: not mapped.
                if !unwritten {
                    w.out.push((lblk, len, start));
                }
            } else {
                let leaf = u64::from(f.u32(o + 4)) | u64::from(f.u16(o + 8)) << 32;
                if prev_index.is_some_and(|p| lblk <= p) || lblk < w.next {
                    return Err(corrupt_at(
                        ino,
                        e_at,
                        format!("index entry for logical block {lblk} out of order"),
                    ));
                }
                prev_index = Some(lblk);
                if !w.seen.insert(leaf) {
                    return Err(corrupt_at(
                        ino,
                        e_at,
                        format!("extent tree block {leaf} is reached twice"),
                    ));
                }
                let b = self.block(ino, leaf)?;
                self.extents(w, &b, leaf * self.g.block_size, Some(d - 1))?;
            }
        }
        Ok(())
    }

    /// Adds the blocks an ext2/3 block-map entry `b` of `level` (0: data block, 1:
    /// indirect…) covers from logical block `lblk`. Each map block is read once, so a
    /// damaged map that points many times at one block cannot multiply the work.
    fn mapped(&self, m: &mut BlockMap, b: u64, level: u32, lblk: u64) -> Result<()> {
        let ino = m.ino;
        if b >= self.g.blocks_count {
            return Err(self.damaged(
                ino,
                format!(
                    "block {b} (logical block {lblk}) is outside the filesystem ({} blocks)",
                    self.g.blocks_count
                ),
            ));
        }
        if level == 0 {
            match m.out.last_mut() {
                Some((l, n, p)) if *l + *n == lblk && *p + *n == b => *n += 1,
                _ => m.out.push((lblk, 1, b)),
            }
            return Ok(());
        }
        if !m.seen.insert(b) {
            return Err(self.damaged(ino, format!("block map block {b} is reached twice")));
        }
        let per = self.g.block_size / 4;
        let span = per.pow(level - 1);
        let blk = self.block(ino, b)?;
        for (k, e) in blk.chunks_exact(4).enumerate() {
            let e = u64::from(u32::from_le_bytes([e[0], e[1], e[2], e[3]]));
            let at = lblk + k as u64 * span;
            if at >= m.limit {
                break;
            }
            if e != 0 {
                self.mapped(m, e, level - 1, at)?;
            }
        }
        Ok(())
    }

    /// Reads a file's bytes from `offset` into `buf` through its `runs`: holes (and
    /// unwritten extents, left out of the runs) read as zeros. The caller keeps `buf`
    /// within the file's size.
    pub fn read(&self, ino: u64, runs: &[Run], offset: u64, buf: &mut [u8]) -> Result<()> {
        let bs = self.g.block_size;
        let (len, end) = (buf.len(), offset + buf.len() as u64);
        // First run that ends after `offset`.
        let first = runs.partition_point(|&(l, n, _)| (l + n) * bs <= offset);
        let mut done = offset;
        for &(lblk, n, start) in &runs[first..] {
            let (a, b) = ((lblk * bs).max(offset), ((lblk + n) * bs).min(end));
            if a >= end {
                break;
            }
            // `runs` checked this already; a wrong order here would be a wrong byte.
            if a < done || start.checked_add(n).is_none_or(|e| e > self.g.blocks_count) {
                return Err(self.damaged(
                    ino,
                    format!("data run at block {start} out of range or order"),
                ));
            }
            buf[crate::le::clamp_len(done - offset, len)..crate::le::clamp_len(a - offset, len)]
                .fill(0);
            let at = start * bs + (a - lblk * bs);
            self.dev.read_at(
                at,
                &mut buf
                    [crate::le::clamp_len(a - offset, len)..crate::le::clamp_len(b - offset, len)],
            )?;
            done = b;
        }
        buf[crate::le::clamp_len(done - offset, len)..].fill(0);
        Ok(())
    }

    /// The entries of directory `ino` but `.` and `..`: (name, inode number). Read a block
    /// at a time through the directory's own block map, so that a damaged size costs no
    /// memory (holes, which a directory should not have, are skipped).
    pub fn dir_entries(&self, ino: u64) -> Result<Vec<(Vec<u8>, u64)>> {
        Ok(self
            .typed_dir_entries(ino)?
            .into_iter()
            .map(|(name, child, _)| (name, child))
            .collect())
    }

    /// [`Inodes::dir_entries`] with each entry's file type byte (`EXT4_FT_*`; 0 where the
    /// filesystem has no `filetype` feature).
    pub fn typed_dir_entries(&self, ino: u64) -> Result<Vec<(Vec<u8>, u64, u8)>> {
        let inode = self.inode(ino)?;
        // A file's contents are not directory records.
        if LeFields(&inode).u16(0) & 0xF000 != 0x4000 {
            return Err(Error::NotADirectory(format!(
                "ext: inode {ino} is not a directory"
            )));
        }
        let size = Self::size(&inode);
        let bs = self.g.block_size;
        let mut out = Vec::new();
        if Self::is_inline(&inode) {
            // The parent's number, then entries to the end of `i_block`, then entries
            // filling the `system.data` attribute; no `.` or `..` entries.
            let at = self.inode_at(ino)? + 0x28;
            self.dir_records(ino, &inode[0x2C..0x28 + INLINE_IBLOCK], at + 4, &mut out)?;
            if let Some(rest) = self.inline_tail(ino, &inode)? {
                self.dir_records(ino, &rest, at, &mut out)?;
            }
            return Ok(out);
        }
        for (lblk, n, start) in self.runs(ino, &inode)? {
            for k in 0..n {
                if (lblk + k) * bs >= size {
                    break;
                }
                let block = self.block(ino, start + k)?;
                let mut at = 0usize;
                while at + 8 <= block.len() {
                    let e = LeFields(&block[at..]);
                    let (child, mut rec_len, name_len) =
                        (e.u32(0), usize::from(e.u16(4)), usize::from(block[at + 6]));
                    // With 64 KiB blocks a whole-block record does not fit 16 bits.
                    if bs == 65536 && (rec_len == 0 || rec_len == 65535) {
                        rec_len = 65536;
                    }
                    if rec_len < 8
                        || rec_len % 4 != 0
                        || at + rec_len > block.len()
                        || 8 + name_len > rec_len
                    {
                        return Err(corrupt_at(
                            ino,
                            (start + k) * bs + at as u64,
                            format!(
                                "directory entry of {rec_len} bytes, name of {name_len} \
                                 bytes, at byte {at} of its block"
                            ),
                        ));
                    }
                    let name = &block[at + 8..at + 8 + name_len];
                    if child != 0 && name != b"." && name != b".." {
                        out.push((
                            name.to_vec(),
                            u64::from(child),
                            self.file_type(block[at + 7]),
                        ));
                    }
                    at += rec_len;
                }
            }
        }
        Ok(out)
    }

    /// A directory entry's file type byte, or 0 where the filesystem has none (there the
    /// byte is the high byte of a 16-bit name length).
    fn file_type(&self, byte: u8) -> u8 {
        if self.g.filetype {
            byte
        } else {
            0
        }
    }

    /// Directory records filling `area` (an inline directory's), found at byte `at`.
    fn dir_records(
        &self,
        ino: u64,
        area: &[u8],
        at: u64,
        out: &mut Vec<(Vec<u8>, u64, u8)>,
    ) -> Result<()> {
        let mut o = 0usize;
        while o + 8 <= area.len() {
            let e = LeFields(&area[o..]);
            let (child, rec_len, name_len) =
                (e.u32(0), usize::from(e.u16(4)), usize::from(area[o + 6]));
            if rec_len < 8 || rec_len % 4 != 0 || o + rec_len > area.len() || 8 + name_len > rec_len
            {
                return Err(corrupt_at(
                    ino,
                    at + o as u64,
                    format!("inline directory entry of {rec_len} bytes, name of {name_len}"),
                ));
            }
            if child != 0 {
                out.push((
                    area[o + 8..o + 8 + name_len].to_vec(),
                    u64::from(child),
                    self.file_type(area[o + 7]),
                ));
            }
            o += rec_len;
        }
        Ok(())
    }

    /// The inode keeps its data in itself (`inline_data`).
    pub fn is_inline(inode: &[u8]) -> bool {
        LeFields(inode).u32(0x20) & INLINE_DATA_FL != 0
    }

    /// The part of an inline-data inode's data past `i_block`: the `system.data`
    /// attribute in the inode (none when it is empty or absent).
    fn inline_tail(&self, ino: u64, inode: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .all_xattrs(ino, inode)?
            .into_iter()
            .find(|(n, _)| n == "system.data")
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty()))
    }

    /// The data of an inline-data inode: `size` bytes from `i_block` and then its
    /// `system.data` attribute. The size is checked against what the two can hold
    /// before anything is allocated.
    pub fn inline_data(&self, ino: u64, inode: &[u8]) -> Result<Vec<u8>> {
        let size = Self::size(inode);
        let room = self.g.inode_size.saturating_sub(128) + INLINE_IBLOCK as u64;
        if size > room {
            return Err(corrupt_at(
                ino,
                self.inode_at(ino)? + 4,
                format!(
                    "inline data of {size} bytes in a {}-byte inode",
                    self.g.inode_size
                ),
            ));
        }
        let size = crate::le::usize_of(size)?;
        let mut out = inode[0x28..0x28 + size.min(INLINE_IBLOCK)].to_vec();
        if size > INLINE_IBLOCK {
            let rest = self.inline_tail(ino, inode)?.unwrap_or_default();
            let want = size - INLINE_IBLOCK;
            let more = rest.get(..want).ok_or_else(|| {
                self.damaged(
                    ino,
                    format!(
                        "inline data of {size} bytes, but only {} stored",
                        INLINE_IBLOCK + rest.len()
                    ),
                )
            })?;
            out.extend_from_slice(more);
        }
        Ok(out)
    }

    /// The target of symlink `ino`, read as the kernel reads it: in `i_block` (a fast
    /// symlink: no blocks but an attribute block), inline data, or its one data block. A
    /// size past one block or PATH_MAX is damage, refused before anything is allocated.
    pub fn link_target(&self, ino: u64, inode: &[u8]) -> Result<Vec<u8>> {
        let f = LeFields(inode);
        let size = Self::size(inode);
        let max = self.g.block_size.min(MAX_LINK);
        if size > max {
            return Err(corrupt_at(
                ino,
                self.inode_at(ino)? + 4,
                format!("symlink target of {size} bytes (at most {max})"),
            ));
        }
        let flags = f.u32(0x20);
        if flags & ENCRYPT_FL != 0 {
            return Err(Error::UnsupportedFeature(format!(
                "ext: inode {ino}: the symlink target is encrypted (fscrypt); it cannot be \
                 read without its key"
            )));
        }
        if Self::is_inline(inode) {
            return self.inline_data(ino, inode);
        }
        let blocks = self.metadata(ino, inode).allocated.unwrap_or(0) / 512;
        let acl = u64::from(f.u32(0x68)) | u64::from(f.u16(0x76)) << 32;
        let ea_blocks = if acl != 0 {
            self.g.cluster_size / 512
        } else {
            0
        };
        if blocks == ea_blocks {
            // Fast symlink: the target is in `i_block`, which holds 60 bytes.
            let n = crate::le::usize_of(size)?;
            return inode
                .get(0x28..0x28 + n)
                .filter(|_| n < INLINE_IBLOCK)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| self.damaged(ino, format!("fast symlink of {size} bytes")));
        }
        let runs = self.runs(ino, inode)?;
        let mut out = vec![0u8; crate::le::usize_of(size)?];
        self.read(ino, &runs, 0, &mut out)?;
        Ok(out)
    }

    /// Extended attributes of inode `ino` as `getfattr` lists them: (full name, value),
    /// in-inode ones first; `system.data` (inline data) is not one.
    pub fn xattrs(&self, ino: u64, inode: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut all = self.all_xattrs(ino, inode)?;
        all.retain(|(n, _)| n != "system.data");
        Ok(all)
    }

    /// Every extended attribute of inode `ino`.
    fn all_xattrs(&self, ino: u64, inode: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
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
                return Err(corrupt_at(
                    ino,
                    acl.saturating_mul(self.g.block_size),
                    format!("attribute block {acl} has no magic"),
                ));
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
                .ok_or_else(|| self.damaged(ino, "attribute name past its area"))?;
            let value = if inum != 0 {
                self.ea_inode_value(ino, u64::from(inum), size as u64)?
            } else {
                base.get(offs..offs + size)
                    .ok_or_else(|| self.damaged(ino, "attribute value past its area"))?
                    .to_vec()
            };
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
                    acl_to_xattr(&value).ok_or_else(|| self.damaged(ino, "malformed ACL"))?
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

impl Inodes {
    /// An attribute value of inode `ino` of `size` bytes kept in inode `inum` of its own
    /// (`ea_inode`, for values too large for the inode and the attribute block). The size
    /// is bounded by the largest value the kernel writes before anything is allocated.
    fn ea_inode_value(&self, ino: u64, inum: u64, size: u64) -> Result<Vec<u8>> {
        if size > MAX_XATTR {
            return Err(self.damaged(
                ino,
                format!("attribute value of {size} bytes in inode {inum}"),
            ));
        }
        let vi = self.inode(inum)?;
        if LeFields(&vi).u32(0x20) & EA_INODE_FL == 0 || Self::size(&vi) != size {
            return Err(self.damaged(
                ino,
                format!(
                    "attribute value inode {inum} is not one, or holds {} bytes, not {size}",
                    Self::size(&vi)
                ),
            ));
        }
        let runs = self.runs(inum, &vi)?;
        let mut v = vec![0u8; crate::le::usize_of(size)?];
        self.read(inum, &runs, 0, &mut v)?;
        Ok(v)
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
