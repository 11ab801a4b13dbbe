//! The jbd2 journal of a filesystem that needs recovery, applied in memory.
//!
//! An image of a running server, or of a disk after a crash, has the `needs_recovery`
//! flag: metadata (and, with `data=journal`, file data) committed to the journal has not
//! been written to its home blocks yet, so reading the home blocks would give stale
//! directories, inodes and bytes. The kernel replays the journal at mount; here the
//! replay is a map from each filesystem block to its newest committed copy in the
//! journal, consulted under every read ([`Replayed`]); the device is never written.
//!
//! Recovery follows the kernel's `fs/jbd2/recovery.c`: from `s_start` with sequence
//! `s_sequence`, each transaction is a run of descriptor blocks (tags naming the home
//! block of each following log block), revoke blocks and a commit block; the scan stops at
//! the first block whose magic or sequence does not match, and a transaction without a
//! valid commit block is not applied. Revoke records cancel copies of a block from their
//! own and earlier transactions. Checksums (v2, v3) of descriptor and commit blocks end
//! the scan where they fail (the kernel then refuses to mount; e2fsck, with the same
//! recovery code, applies the transactions before it, and that is what is read here); a
//! data block whose tag checksum fails is not applied, as the kernel skips it. Journal superblocks v1 and v2, tag formats with and without 64-bit
//! block numbers and checksums, escaped blocks and sequence wrap are handled. Not
//! handled, and refused with an error naming it: an external journal device (not in the
//! image), fast commits (`fast_commit`, a second log format), and v1 transaction
//! checksums (`JBD2_FEATURE_COMPAT_CHECKSUM`, crc32 of whole transactions) are not
//! verified (such transactions are applied when their commit block is present, as the
//! kernel does for synchronous commits).
//!
//! Written here because no maintained crate exposes a jbd2 replay over an arbitrary
//! reader; `ext4-view` keeps its own private.

use super::inode::{Inodes, Run};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fs::browse::PartDev;
use std::collections::HashMap;
use std::sync::Arc;

const JBD2_MAGIC: u32 = 0xC03B_3998;
const DESCRIPTOR: u32 = 1;
const COMMIT: u32 = 2;
const SUPERBLOCK_V1: u32 = 3;
const SUPERBLOCK_V2: u32 = 4;
const REVOKE: u32 = 5;
// Journal s_feature_incompat.
const INCOMPAT_REVOKE: u32 = 0x1;
const INCOMPAT_64BIT: u32 = 0x2;
const INCOMPAT_ASYNC_COMMIT: u32 = 0x4;
const INCOMPAT_CSUM_V2: u32 = 0x8;
const INCOMPAT_CSUM_V3: u32 = 0x10;
const INCOMPAT_FAST_COMMIT: u32 = 0x20;
// Tag flags.
const FLAG_ESCAPE: u32 = 0x1;
const FLAG_SAME_UUID: u32 = 0x2;
const FLAG_LAST_TAG: u32 = 0x8;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Damaged journal metadata at byte `at` of the volume (where known).
fn bad(at: Option<u64>, what: impl std::fmt::Display) -> Error {
    Error::damaged_metadata("ext", at, format_args!("journal: {what}"))
}

/// Where the newest committed copy of a filesystem block lies.
#[derive(Clone, Copy, Debug)]
struct Copy {
    /// Byte offset of the copy on the partition.
    at: u64,
    /// The block began with the journal magic, which the journal stores as zeros.
    escaped: bool,
}

/// The partition as the kernel sees it after replaying the journal.
#[derive(Clone)]
pub struct Replayed {
    raw: PartDev,
    block_size: u64,
    copies: Arc<HashMap<u64, Copy>>,
}

impl Replayed {
    /// The partition as it is, with no journal applied.
    pub fn plain(raw: PartDev) -> Replayed {
        Replayed {
            raw,
            block_size: 4096,
            copies: Arc::new(HashMap::new()),
        }
    }

    /// Number of filesystem blocks the journal replaces.
    pub fn replaced(&self) -> usize {
        self.copies.len()
    }
}

impl BlockDev for Replayed {
    fn len(&self) -> u64 {
        self.raw.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if self.copies.is_empty() {
            return self.raw.read_at(offset, buf);
        }
        let bs = self.block_size;
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| Error::Invalid("read past the end of the device".into()))?;
        let mut pos = offset;
        while pos < end {
            let block = pos / bs;
            let block_end = (block + 1).saturating_mul(bs).min(end);
            let n = buf.len();
            let into = &mut buf[crate::le::clamp_len(pos - offset, n)
                ..crate::le::clamp_len(block_end - offset, n)];
            match self.copies.get(&block) {
                Some(c) => {
                    let mut b = vec![0u8; crate::le::usize_of(bs)?];
                    self.raw.read_at(c.at, &mut b)?;
                    if c.escaped {
                        b[..4].copy_from_slice(&JBD2_MAGIC.to_be_bytes());
                    }
                    let from = crate::le::usize_of(pos - block * bs)?;
                    into.copy_from_slice(&b[from..from + into.len()]);
                    pos = block_end;
                }
                None => {
                    // Read on up to the next replaced block in one go.
                    let mut stop = block_end;
                    while stop < end && !self.copies.contains_key(&(stop / bs)) {
                        stop = (stop / bs + 1).saturating_mul(bs).min(end);
                    }
                    self.raw.read_at(
                        pos,
                        &mut buf[crate::le::clamp_len(pos - offset, n)
                            ..crate::le::clamp_len(stop - offset, n)],
                    )?;
                    pos = stop;
                }
            }
        }
        Ok(())
    }
}

/// One committed transaction: (home block, copy) for each tag, and the blocks it revokes.
struct Transaction {
    seq: u32,
    blocks: Vec<(u64, u64, bool, u32)>,
}

/// Journal geometry and features.
struct Journal<'a> {
    inodes: &'a Inodes,
    runs: Vec<Run>,
    bs: u64,
    first: u64,
    last: u64,
    incompat: u32,
    seed: u32,
}

impl Journal<'_> {
    fn csum(&self) -> bool {
        self.incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) != 0
    }

    /// Byte offset on the partition of journal block `j`.
    fn at(&self, j: u64) -> Result<u64> {
        let i = self.runs.partition_point(|&(l, n, _)| l + n <= j);
        match self.runs.get(i) {
            Some(&(l, _, p)) if l <= j => Ok((p + j - l) * self.bs),
            _ => Err(bad(None, format!("block {j} is not mapped"))),
        }
    }

    fn block(&self, j: u64) -> Result<Vec<u8>> {
        let mut b = vec![0u8; crate::le::usize_of(self.bs)?];
        self.inodes.read_raw(self.at(j)?, &mut b)?;
        Ok(b)
    }

    fn wrap(&self, j: u64) -> u64 {
        if j >= self.last {
            j - (self.last - self.first)
        } else {
            j
        }
    }

    /// Bytes of one descriptor tag.
    fn tag_bytes(&self) -> usize {
        if self.incompat & INCOMPAT_CSUM_V3 != 0 {
            return 16;
        }
        let mut sz = 12;
        if self.incompat & INCOMPAT_CSUM_V2 != 0 {
            sz += 2;
        }
        if self.incompat & INCOMPAT_64BIT == 0 {
            sz -= 4;
        }
        sz
    }

    /// Checksum of a descriptor or revoke block (its last 4 bytes hold it).
    fn tail_ok(&self, b: &[u8]) -> bool {
        if !self.csum() {
            return true;
        }
        let n = b.len();
        let mut c = b.to_vec();
        c[n - 4..].fill(0);
        super::crc32c_raw(self.seed, &c) == be32(b, n - 4)
    }
}

/// The copies to apply for the filesystem on `raw` (read through `inodes`, which reads the
/// partition as it is), or none when it does not need recovery.
pub fn replay(raw: PartDev, inodes: &Inodes, sb: &[u8], blocks_count: u64) -> Result<Replayed> {
    let f = crate::le::LeFields(sb);
    let (compat, incompat) = (f.u32(0x5C), f.u32(0x60));
    let mut plain = Replayed::plain(raw);
    if compat & super::COMPAT_HAS_JOURNAL == 0 || incompat & super::INCOMPAT_RECOVER == 0 {
        return Ok(plain);
    }
    let jnum = u64::from(f.u32(0xE0));
    if jnum == 0 {
        return Err(Error::UnsupportedFeature(
            "ext: the filesystem needs recovery from an external journal device, which is \
             not part of this image; its metadata may be out of date, so it is not read"
                .into(),
        ));
    }
    let jinode = inodes.inode(jnum)?;
    let runs = inodes.runs(jnum, &jinode)?;
    let bs = inodes.block_size();
    plain.block_size = bs;
    let mut j = Journal {
        inodes,
        runs,
        bs,
        first: 0,
        last: 0,
        incompat: 0,
        seed: 0,
    };
    let js = j.block(0)?;
    let js_at = j.at(0).ok();
    let (magic, kind) = (be32(&js, 0), be32(&js, 4));
    if magic != JBD2_MAGIC || !(kind == SUPERBLOCK_V1 || kind == SUPERBLOCK_V2) {
        return Err(bad(
            js_at,
            format!("inode {jnum}: no journal superblock (magic {magic:#x}, type {kind})"),
        ));
    }
    let (jbs, maxlen, first, seq, start) = (
        u64::from(be32(&js, 0xC)),
        u64::from(be32(&js, 0x10)),
        u64::from(be32(&js, 0x14)),
        be32(&js, 0x18),
        u64::from(be32(&js, 0x1C)),
    );
    let jlen = j.runs.last().map_or(0, |r| r.0 + r.1);
    if jbs != bs || first == 0 || first >= maxlen || maxlen > jlen {
        return Err(bad(
            js_at,
            format!(
                "superblock: block size {jbs} (filesystem {bs}), first block {first}, \
                 {maxlen} blocks"
            ),
        ));
    }
    if kind == SUPERBLOCK_V2 {
        j.incompat = be32(&js, 0x28);
        let known = INCOMPAT_REVOKE
            | INCOMPAT_64BIT
            | INCOMPAT_ASYNC_COMMIT
            | INCOMPAT_CSUM_V2
            | INCOMPAT_CSUM_V3;
        if j.incompat & INCOMPAT_FAST_COMMIT != 0 {
            return Err(Error::UnsupportedFeature(
                "ext: the filesystem needs recovery from a journal with fast commits \
                 (fast_commit), which strata cannot replay yet; its metadata may be out of \
                 date, so it is not read"
                    .into(),
            ));
        }
        if j.incompat & !known != 0 {
            return Err(Error::UnsupportedFeature(format!(
                "ext: the filesystem needs recovery from a journal with unknown features \
                 ({:#x}); it is not read",
                j.incompat & !known
            )));
        }
        if j.csum() {
            let mut c = js[..1024].to_vec();
            c[0xFC..0x100].fill(0);
            if super::crc32c_raw(!0, &c) != be32(&js, 0xFC) {
                return Err(bad(js_at, "superblock checksum mismatch"));
            }
            j.seed = super::crc32c_raw(!0, &js[0x30..0x40]);
        }
    }
    (j.first, j.last) = (first, maxlen);
    if start == 0 {
        // Nothing left to replay.
        return Ok(plain);
    }
    if start < first || start >= maxlen {
        return Err(bad(js_at, format!("start block {start}")));
    }

    // Scan: the committed transactions, and the revoke records (block -> newest sequence).
    let mut done: Vec<Transaction> = Vec::new();
    let mut revoked: HashMap<u64, u32> = HashMap::new();
    let mut pending = Transaction {
        seq,
        blocks: Vec::new(),
    };
    let mut pending_revokes: Vec<u64> = Vec::new();
    let mut at = start;
    // Each journal block is visited at most once per pass around the log.
    let mut budget = maxlen - first;
    let tag_bytes = j.tag_bytes();
    let tail = if j.csum() { 4 } else { 0 };
    let bits64 = j.incompat & INCOMPAT_64BIT != 0;
    loop {
        if budget == 0 {
            break;
        }
        budget -= 1;
        let b = j.block(at)?;
        let here = j.at(at).ok();
        if be32(&b, 0) != JBD2_MAGIC || be32(&b, 8) != pending.seq {
            break;
        }
        at = j.wrap(at + 1);
        match be32(&b, 4) {
            DESCRIPTOR => {
                if !j.tail_ok(&b) {
                    break;
                }
                let mut t = 12;
                let mut ok = true;
                while t + tag_bytes <= b.len() - tail {
                    let lo = u64::from(be32(&b, t));
                    let (flags, hi, sum) = if j.incompat & INCOMPAT_CSUM_V3 != 0 {
                        (be32(&b, t + 4), be32(&b, t + 8), be32(&b, t + 12))
                    } else {
                        (
                            u32::from(be16(&b, t + 6)),
                            if bits64 { be32(&b, t + 8) } else { 0 },
                            u32::from(be16(&b, t + 4)),
                        )
                    };
                    let home = lo | if bits64 { u64::from(hi) << 32 } else { 0 };
                    if budget == 0 {
                        ok = false;
                        break;
                    }
                    budget -= 1;
                    pending
                        .blocks
                        .push((home, at, flags & FLAG_ESCAPE != 0, sum));
                    at = j.wrap(at + 1);
                    t += tag_bytes;
                    if flags & FLAG_SAME_UUID == 0 {
                        t += 16;
                    }
                    if flags & FLAG_LAST_TAG != 0 {
                        break;
                    }
                }
                if !ok {
                    break;
                }
            }
            REVOKE => {
                if !j.tail_ok(&b) {
                    return Err(bad(
                        here,
                        format!(
                            "revoke block of transaction {} fails its checksum",
                            pending.seq
                        ),
                    ));
                }
                let count = be32(&b, 12) as usize;
                if count < 16 || count > b.len() - tail {
                    return Err(bad(here, format!("revoke block of {count} bytes")));
                }
                let rec = if bits64 { 8 } else { 4 };
                let mut r = 16;
                while r + rec <= count {
                    let blk = if bits64 {
                        u64::from(be32(&b, r)) << 32 | u64::from(be32(&b, r + 4))
                    } else {
                        u64::from(be32(&b, r))
                    };
                    pending_revokes.push(blk);
                    r += rec;
                }
            }
            COMMIT => {
                if j.csum() {
                    let mut c = b.clone();
                    c[16..20].fill(0);
                    if super::crc32c_raw(j.seed, &c) != be32(&b, 16) {
                        break;
                    }
                }
                for blk in pending_revokes.drain(..) {
                    let e = revoked.entry(blk).or_insert(pending.seq);
                    // The newest revoking transaction counts (sequence numbers wrap).
                    if pending.seq.wrapping_sub(*e).cast_signed() > 0 {
                        *e = pending.seq;
                    }
                }
                let next = pending.seq.wrapping_add(1);
                done.push(std::mem::replace(
                    &mut pending,
                    Transaction {
                        seq: next,
                        blocks: Vec::new(),
                    },
                ));
            }
            _ => break,
        }
    }

    // Replay, oldest first, so the newest copy of each block wins.
    let mut copies = HashMap::new();
    for t in &done {
        for &(home, jblk, escaped, sum) in &t.blocks {
            // Revoked by this or a later transaction.
            if revoked
                .get(&home)
                .is_some_and(|&r| r.wrapping_sub(t.seq).cast_signed() >= 0)
            {
                continue;
            }
            if home >= blocks_count {
                return Err(bad(
                    j.at(jblk).ok(),
                    format!(
                        "transaction {} writes block {home}, past the filesystem's \
                         {blocks_count}",
                        t.seq
                    ),
                ));
            }
            if j.csum() {
                let data = j.block(jblk)?;
                let c = super::crc32c_raw(j.seed, &t.seq.to_be_bytes());
                let c = super::crc32c_raw(c, &data);
                let good = if j.incompat & INCOMPAT_CSUM_V3 != 0 {
                    c == sum
                } else {
                    c & 0xFFFF == sum
                };
                if !good {
                    continue;
                }
            }
            copies.insert(
                home,
                Copy {
                    at: j.at(jblk)?,
                    escaped,
                },
            );
        }
    }
    plain.copies = Arc::new(copies);
    Ok(plain)
}
