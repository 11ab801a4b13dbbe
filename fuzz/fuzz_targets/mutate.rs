//! Structure-aware mutations for the filesystem targets: find an on-disk structure in the
//! input (NTFS FILE and INDX records, their attribute and index headers; ext superblocks,
//! group descriptors, inodes, extent headers and directory entries; FAT and exFAT boot
//! sectors and directory entries; MBR partition entries) and set one of its length,
//! offset, count or size fields to a value parsers get wrong (0, 1, the maximum, one off,
//! huge), keeping the checks that would otherwise reject the input at once valid: NTFS
//! update-sequence fixups are re-applied, the ext superblock checksum and the exFAT entry
//! set checksum recomputed. Random byte mutations rarely get past those checks or hit a
//! length field; these do every time. Half the time, and when no structure is found, the
//! default mutator runs.
//!
//! Written here rather than taken from a crate: no fuzzing crate knows these formats.
#![allow(dead_code)]

/// A small deterministic generator (xorshift), seeded by libFuzzer so runs reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One field: byte offset in the input and width in bytes (1, 2, 4 or 8).
#[derive(Clone, Copy)]
struct Field {
    at: usize,
    width: usize,
}

/// What to redo after a field of a structure changed.
#[derive(Clone, Copy)]
enum Fixup {
    None,
    /// An NTFS multi-sector record at this offset: update sequence re-applied.
    Ntfs(usize),
    /// An ext superblock at this offset: crc32c recomputed when metadata_csum is on.
    ExtSuper(usize),
    /// An ext group descriptor (superblock, descriptor, group, descriptor size): its
    /// checksum recomputed under metadata_csum.
    ExtDesc(usize, usize, u32, usize),
    /// An ext inode (superblock, inode, inode number, inode size): likewise.
    ExtInode(usize, usize, u32, usize),
    /// An exFAT file entry set starting here: its checksum recomputed.
    ExfatSet(usize),
}

/// A structure found in the input: the fields worth mutating and the fixup to redo.
struct Found {
    fields: Vec<Field>,
    fixup: Fixup,
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn fields(base: usize, list: &[(usize, usize)]) -> Vec<Field> {
    list.iter()
        .map(|&(off, width)| Field {
            at: base + off,
            width,
        })
        .collect()
}

/// Most structures collected per kind, so that a large input costs little time.
const MAX_PER_KIND: usize = 64;

/// Every structure recognised in `d`.
fn find(d: &[u8]) -> Vec<Found> {
    let mut out = Vec::new();
    ntfs(d, &mut out);
    ext(d, &mut out);
    fat(d, &mut out);
    exfat(d, &mut out);
    mbr(d, &mut out);
    out
}

/// NTFS FILE and INDX records at 512-byte boundaries, with their attribute headers
/// (FILE) and index header (INDX).
fn ntfs(d: &[u8], out: &mut Vec<Found>) {
    let (mut files, mut indx) = (0, 0);
    for at in (0..d.len().saturating_sub(48)).step_by(512) {
        let sig = &d[at..at + 4];
        let is_file = sig == b"FILE";
        if !(is_file || sig == b"INDX") {
            continue;
        }
        let n = if is_file { &mut files } else { &mut indx };
        if *n >= MAX_PER_KIND {
            continue;
        }
        *n += 1;
        let fix = Fixup::Ntfs(at);
        if is_file {
            // Header: update sequence, sequence number, link count, first attribute,
            // flags, bytes in use, bytes allocated, base record, next attribute id.
            out.push(Found {
                fields: fields(
                    at,
                    &[
                        (4, 2),
                        (6, 2),
                        (16, 2),
                        (18, 2),
                        (20, 2),
                        (22, 2),
                        (24, 4),
                        (28, 4),
                        (32, 8),
                        (40, 2),
                    ],
                ),
                fixup: fix,
            });
            // Attribute headers, walked by their lengths.
            let size = u32_at(d, at + 28).unwrap_or(1024).clamp(256, 4096) as usize;
            let mut a = at + usize::from(u16_at(d, at + 20).unwrap_or(0));
            while a + 24 <= (at + size).min(d.len()) {
                let (Some(ty), Some(len)) = (u32_at(d, a), u32_at(d, a + 4)) else {
                    break;
                };
                if ty == 0xFFFF_FFFF || len < 24 || len % 8 != 0 {
                    break;
                }
                let common = [(0, 4), (4, 4), (8, 1), (9, 1), (10, 2), (12, 2), (14, 2)];
                let mut f = fields(a, &common);
                if d[a + 8] == 0 {
                    // Resident: value length and offset.
                    f.extend(fields(a, &[(16, 4), (20, 2)]));
                } else {
                    // Non-resident: VCN range, mapping pairs offset, compression unit,
                    // allocated, data and initialized sizes.
                    f.extend(fields(
                        a,
                        &[
                            (16, 8),
                            (24, 8),
                            (32, 2),
                            (34, 2),
                            (40, 8),
                            (48, 8),
                            (56, 8),
                        ],
                    ));
                    // The first mapping pair's header byte (sizes of length and offset).
                    if let Some(mp) = u16_at(d, a + 32) {
                        f.push(Field {
                            at: a + usize::from(mp),
                            width: 1,
                        });
                    }
                }
                f.retain(|x| x.at + x.width <= d.len());
                out.push(Found {
                    fields: f,
                    fixup: fix,
                });
                a += len as usize;
            }
        } else {
            // INDX: update sequence, VCN, then the index header: entries offset, index
            // length, allocated length; the first entry's length and key length.
            let mut f = fields(
                at,
                &[(4, 2), (6, 2), (16, 8), (24, 4), (28, 4), (32, 4), (36, 1)],
            );
            if let Some(e) = u32_at(d, at + 24) {
                let e = at + 24 + e as usize;
                f.extend(fields(e, &[(0, 8), (8, 2), (10, 2), (12, 2)]));
            }
            f.retain(|x| x.at + x.width <= d.len());
            out.push(Found {
                fields: f,
                fixup: fix,
            });
        }
    }
}

/// The record at `at` with its update sequence undone (true bytes back at each
/// sector's end); returns the sector count, or None when the header is implausible.
fn ntfs_unfix(d: &mut [u8], at: usize) -> Option<usize> {
    let (ofs, count) = (
        usize::from(u16_at(d, at + 4)?),
        usize::from(u16_at(d, at + 6)?),
    );
    if count < 2 || count > 9 || at + ofs + 2 * count > d.len() || at + (count - 1) * 512 > d.len()
    {
        return None;
    }
    let usn = [d[at + ofs], d[at + ofs + 1]];
    for i in 1..count {
        let end = at + i * 512 - 2;
        if d[end..end + 2] != usn {
            return None; // not applied (or damaged): leave it alone
        }
        let (a, b) = (d[at + ofs + 2 * i], d[at + ofs + 2 * i + 1]);
        d[end] = a;
        d[end + 1] = b;
    }
    Some(count)
}

/// Re-applies the update sequence of the record at `at` (the inverse of [`ntfs_unfix`]),
/// with the header as it was when it was undone (`ofs`, `count`).
fn ntfs_refix(d: &mut [u8], at: usize, ofs: usize, count: usize) {
    let usn = [d[at + ofs], d[at + ofs + 1]];
    for i in 1..count {
        let end = at + i * 512 - 2;
        d[at + ofs + 2 * i] = d[end];
        d[at + ofs + 2 * i + 1] = d[end + 1];
        d[end] = usn[0];
        d[end + 1] = usn[1];
    }
}

/// ext superblocks (magic 0xEF53 at 0x38 of a 1 KiB-aligned block), the group
/// descriptors and first inodes after the primary, extent headers (0xF30A) and
/// directory blocks (found by their `.` entry).
fn ext(d: &[u8], out: &mut Vec<Found>) {
    let mut supers = 0;
    for at in (1024..d.len().saturating_sub(1024)).step_by(1024) {
        if u16_at(d, at + 0x38) != Some(0xEF53) || supers >= 8 {
            continue;
        }
        supers += 1;
        out.push(Found {
            fields: fields(
                at,
                &[
                    (0, 4),
                    (4, 4),
                    (0x14, 4),
                    (0x18, 4),
                    (0x20, 4),
                    (0x28, 4),
                    (0x4C, 4),
                    (0x54, 4),
                    (0x58, 2),
                    (0x5C, 4),
                    (0x60, 4),
                    (0x64, 4),
                    (0xFE, 2),
                    (0x150, 4),
                    (0x174, 1),
                ],
            ),
            fixup: Fixup::ExtSuper(at),
        });
        if at != 1024 {
            continue;
        }
        // The primary's group descriptors and inode table.
        let log = u32_at(d, at + 0x18).unwrap_or(0);
        if log > 6 {
            continue;
        }
        let bs = 1024usize << log;
        let incompat = u32_at(d, at + 0x60).unwrap_or(0);
        let ds = if incompat & 0x80 != 0 {
            usize::from(u16_at(d, at + 0xFE).unwrap_or(32)).clamp(32, 1024)
        } else {
            32
        };
        let first = u32_at(d, at + 0x14).unwrap_or(0) as usize;
        let gdt = (first + 1) * bs;
        for g in 0..8 {
            let a = gdt + g * ds;
            if a + ds > d.len() {
                break;
            }
            out.push(Found {
                fields: fields(
                    a,
                    &[
                        (0, 4),
                        (4, 4),
                        (8, 4),
                        (0x0C, 2),
                        (0x0E, 2),
                        (0x10, 2),
                        (0x12, 2),
                        (0x1C, 2),
                    ],
                ),
                fixup: Fixup::ExtDesc(at, a, g as u32, ds),
            });
        }
        let isz = match u32_at(d, at + 0x4C) {
            Some(0) => 128,
            _ => usize::from(u16_at(d, at + 0x58).unwrap_or(128)).clamp(128, 1024),
        };
        if let Some(t) = u32_at(d, gdt + 8) {
            for i in 0..16 {
                let a = t as usize * bs + i * isz;
                if a + 128 > d.len() {
                    break;
                }
                // Mode, size, links, blocks, flags, the first block pointers, size high.
                out.push(Found {
                    fields: fields(
                        a,
                        &[
                            (0, 2),
                            (4, 4),
                            (0x1A, 2),
                            (0x1C, 4),
                            (0x20, 4),
                            (0x28, 4),
                            (0x2C, 4),
                            (0x6C, 4),
                        ],
                    ),
                    fixup: Fixup::ExtInode(at, a, i as u32 + 1, isz),
                });
            }
        }
    }
    // Extent headers wherever they are (inodes, tree blocks), with their first entries.
    let mut n = 0;
    for at in (0..d.len().saturating_sub(12)).step_by(4) {
        if n >= MAX_PER_KIND {
            break;
        }
        if u16_at(d, at) != Some(0xF30A) || u16_at(d, at + 4).is_none_or(|m| m == 0 || m > 340) {
            continue;
        }
        n += 1;
        let mut f = fields(at, &[(2, 2), (4, 2), (6, 2)]);
        for e in 0..2 {
            f.extend(fields(at + 12 + 12 * e, &[(0, 4), (4, 2), (6, 2), (8, 4)]));
        }
        f.retain(|x| x.at + x.width <= d.len());
        out.push(Found {
            fields: f,
            fixup: Fixup::None,
        });
    }
    // Directory blocks: `.` (rec_len 12, name_len 1, type 2) then `..`.
    let mut n = 0;
    for at in (0..d.len().saturating_sub(24)).step_by(1024) {
        if n >= MAX_PER_KIND || d[at + 4..at + 9] != [12, 0, 1, 2, b'.'] {
            continue;
        }
        n += 1;
        let mut f = Vec::new();
        let mut e = at;
        for _ in 0..8 {
            let Some(rec) = u16_at(d, e + 4) else { break };
            f.extend(fields(e, &[(0, 4), (4, 2), (6, 1), (7, 1)]));
            if rec < 12 || e + usize::from(rec) + 8 > d.len() {
                break;
            }
            e += usize::from(rec);
        }
        out.push(Found {
            fields: f,
            fixup: Fixup::None,
        });
    }
}

/// FAT boot sectors (offset 0 and 512-byte boundaries with the 0x55AA signature and a
/// jump) and short directory entries (plausible names and attributes, 32-byte aligned).
fn fat(d: &[u8], out: &mut Vec<Found>) {
    let mut boots = 0;
    for at in (0..d.len().saturating_sub(512)).step_by(512) {
        if boots >= 8 || d[at + 510..at + 512] != [0x55, 0xAA] || !matches!(d[at], 0xEB | 0xE9) {
            continue;
        }
        if &d[at + 3..at + 11] == b"EXFAT   " || &d[at + 3..at + 11] == b"NTFS    " {
            continue;
        }
        boots += 1;
        out.push(Found {
            fields: fields(
                at,
                &[
                    (11, 2),
                    (13, 1),
                    (14, 2),
                    (16, 1),
                    (17, 2),
                    (19, 2),
                    (21, 1),
                    (22, 2),
                    (32, 4),
                    (36, 4),
                    (44, 4),
                    (48, 2),
                    (50, 2),
                ],
            ),
            fixup: Fixup::None,
        });
    }
    let mut n = 0;
    for at in (0..d.len().saturating_sub(32)).step_by(32) {
        if n >= MAX_PER_KIND {
            break;
        }
        let e = &d[at..at + 32];
        let name_ok =
            e[0] > 0x20 && e[0] != 0xE5 && e[..11].iter().all(|&c| (0x20..0x7F).contains(&c));
        let attr = e[11];
        if !name_ok || attr & 0xC0 != 0 || attr == 0x0F || e[12] & 0xE7 != 0 {
            continue;
        }
        n += 1;
        // Attributes, first cluster (high and low), size.
        out.push(Found {
            fields: fields(at, &[(11, 1), (20, 2), (26, 2), (28, 4)]),
            fixup: Fixup::None,
        });
    }
}

/// exFAT boot sectors and file entry sets (0x85 followed by a stream extension 0xC0).
fn exfat(d: &[u8], out: &mut Vec<Found>) {
    for at in (0..d.len().saturating_sub(512)).step_by(512).take(64) {
        if &d[at + 3..at + 11] == b"EXFAT   " {
            out.push(Found {
                fields: fields(
                    at,
                    &[
                        (0x48, 8),
                        (0x50, 4),
                        (0x54, 4),
                        (0x58, 4),
                        (0x5C, 4),
                        (0x60, 4),
                        (0x6C, 1),
                        (0x6D, 1),
                        (0x6E, 1),
                    ],
                ),
                fixup: Fixup::None,
            });
        }
    }
    let mut n = 0;
    for at in (0..d.len().saturating_sub(64)).step_by(32) {
        if n >= MAX_PER_KIND {
            break;
        }
        if d[at] == 0x81 || d[at] == 0x82 {
            // Allocation bitmap and up-case table entries: first cluster, length.
            out.push(Found {
                fields: fields(at, &[(1, 1), (20, 4), (24, 8)]),
                fixup: Fixup::None,
            });
            n += 1;
            continue;
        }
        if d[at] != 0x85 || d[at + 32] != 0xC0 {
            continue;
        }
        n += 1;
        // File: secondary count, attributes; stream: flags, name length, valid data
        // length, first cluster, data length.
        let mut f = fields(at, &[(1, 1), (4, 2)]);
        f.extend(fields(at + 32, &[(1, 1), (3, 1), (8, 8), (20, 4), (24, 8)]));
        out.push(Found {
            fields: f,
            fixup: Fixup::ExfatSet(at),
        });
    }
}

/// The four MBR partition entries: type, start, size.
fn mbr(d: &[u8], out: &mut Vec<Found>) {
    if d.len() >= 512 && d[510..512] == [0x55, 0xAA] {
        for i in 0..4 {
            out.push(Found {
                fields: fields(446 + 16 * i, &[(4, 1), (8, 4), (12, 4)]),
                fixup: Fixup::None,
            });
        }
    }
}

/// A value for a field of `width` bytes that held `old`, in an input of `len` bytes.
fn interesting(rng: &mut Rng, width: usize, old: u64, len: usize) -> u64 {
    let max = if width == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    let v = match rng.below(14) {
        0 => 0,
        1 => 1,
        2 => max,
        3 => max - 1,
        4 => max >> 1,
        5 => (max >> 1) + 1,
        6 => old.wrapping_add(1),
        7 => old.wrapping_sub(1),
        8 => old.wrapping_mul(2),
        9 => old / 2,
        10 => len as u64,
        11 => (len as u64) / 512,
        12 => 1u64 << rng.below(8 * width),
        _ => rng.next(),
    };
    v & max
}

fn get(d: &[u8], f: Field) -> u64 {
    let mut b = [0u8; 8];
    b[..f.width].copy_from_slice(&d[f.at..f.at + f.width]);
    u64::from_le_bytes(b)
}

fn put(d: &mut [u8], f: Field, v: u64) {
    d[f.at..f.at + f.width].copy_from_slice(&v.to_le_bytes()[..f.width]);
}

/// The exFAT entry set checksum (section 6.3.3 of the specification).
fn exfat_set_checksum(d: &mut [u8], at: usize) {
    let n = usize::from(d[at + 1]) + 1;
    if at + 32 * n > d.len() {
        return;
    }
    let mut c: u16 = 0;
    for (i, &b) in d[at..at + 32 * n].iter().enumerate() {
        if i == 2 || i == 3 {
            continue;
        }
        c = (c << 15 | c >> 1).wrapping_add(u16::from(b));
    }
    d[at + 2..at + 4].copy_from_slice(&c.to_le_bytes());
}

/// The ext superblock checksum, when the metadata_csum feature is on.
fn ext_super_checksum(d: &mut [u8], at: usize) {
    if at + 1024 > d.len() || u32_at(d, at + 0x64).unwrap_or(0) & 0x400 == 0 {
        return;
    }
    // The kernel's crc32c(~0, ...) has no final inversion; the crate's has.
    let c = !crc32c::crc32c(&d[at..at + 0x3FC]);
    d[at + 0x3FC..at + 0x400].copy_from_slice(&c.to_le_bytes());
}

/// The kernel's `crc32c(seed, data)`: no inversion on entry or exit (the crate's has both).
fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// The metadata checksum seed of the ext superblock at `sb`, when metadata_csum is on.
fn ext_csum_seed(d: &[u8], sb: usize) -> Option<u32> {
    if u32_at(d, sb + 0x64)? & 0x400 == 0 {
        return None;
    }
    if u32_at(d, sb + 0x60)? & 0x2000 != 0 {
        return u32_at(d, sb + 0x270);
    }
    Some(crc32c_raw(!0, d.get(sb + 0x68..sb + 0x78)?))
}

/// A group descriptor's checksum (`ext4_group_desc_csum`): group number, then the
/// descriptor with its checksum field as zeros; the low 16 bits are kept.
pub fn ext_desc_checksum(d: &mut [u8], sb: usize, at: usize, group: u32, size: usize) {
    let Some(seed) = ext_csum_seed(d, sb) else {
        return;
    };
    if at + size > d.len() {
        return;
    }
    let mut desc = d[at..at + size].to_vec();
    desc[0x1E..0x20].fill(0);
    let c = crc32c_raw(crc32c_raw(seed, &group.to_le_bytes()), &desc);
    d[at + 0x1E..at + 0x20].copy_from_slice(&(c as u16).to_le_bytes());
}

/// An inode's checksum (`ext4_inode_csum`): inode number, generation, then the inode
/// with both checksum halves as zeros; the high half only when the extra space holds it.
pub fn ext_inode_checksum(d: &mut [u8], sb: usize, at: usize, ino: u32, size: usize) {
    let Some(seed) = ext_csum_seed(d, sb) else {
        return;
    };
    if at + size > d.len() {
        return;
    }
    let hi = size >= 0x84 && u16_at(d, at + 0x80).is_some_and(|x| x >= 4);
    let mut inode = d[at..at + size].to_vec();
    inode[0x7C..0x7E].fill(0);
    if hi {
        inode[0x82..0x84].fill(0);
    }
    let c = crc32c_raw(seed, &ino.to_le_bytes());
    let c = crc32c_raw(c, &inode[0x64..0x68]);
    let c = crc32c_raw(c, &inode);
    d[at + 0x7C..at + 0x7E].copy_from_slice(&(c as u16).to_le_bytes());
    if hi {
        d[at + 0x82..at + 0x84].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
    }
}

/// The mutator: a structure-aware change half the time, else libFuzzer's own.
pub fn mutate(data: &mut [u8], size: usize, max_size: usize, seed: u32) -> usize {
    let mut rng = Rng(u64::from(seed) << 1 | 1);
    rng.next();
    if rng.below(2) == 0 {
        let d = &mut data[..size];
        let found = find(d);
        if !found.is_empty() {
            let s = &found[rng.below(found.len())];
            if !s.fields.is_empty() {
                // Up to three fields of the structure at once: lengths and offsets
                // often have to be wrong together to reach a deeper check.
                let fix = match s.fixup {
                    Fixup::Ntfs(at) => ntfs_unfix(d, at)
                        .map(|count| (at, usize::from(u16_at(d, at + 4).unwrap_or(0)), count)),
                    _ => None,
                };
                for _ in 0..1 + rng.below(3) {
                    let f = s.fields[rng.below(s.fields.len())];
                    let v = interesting(&mut rng, f.width, get(d, f), size);
                    put(d, f, v);
                }
                match (s.fixup, fix) {
                    (Fixup::Ntfs(_), Some((at, ofs, count))) => {
                        if at + ofs + 2 * count <= d.len() {
                            ntfs_refix(d, at, ofs, count);
                        }
                    }
                    (Fixup::ExtSuper(at), _) => ext_super_checksum(d, at),
                    (Fixup::ExtDesc(sb, at, g, n), _) => ext_desc_checksum(d, sb, at, g, n),
                    (Fixup::ExtInode(sb, at, ino, n), _) => ext_inode_checksum(d, sb, at, ino, n),
                    (Fixup::ExfatSet(at), _) => exfat_set_checksum(d, at),
                    _ => {}
                }
                return size;
            }
        }
    }
    libfuzzer_sys::fuzzer_mutate(data, size, max_size)
}
