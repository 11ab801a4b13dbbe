//! FAT12/16/32 and exFAT volumes read through `strata cat`, `cp` and `mount`, compared with
//! independent readers (mtools, fsck.fat, exfat-fuse, fsck.exfat, The Sleuth Kit), on
//! volumes shaped as other systems leave them, and volumes at two points of a backup chain.
#![cfg(unix)]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `strata cat IMAGE PATH`: its stdout (it must succeed).
fn cat(img: &Path, path: &str) -> Vec<u8> {
    let o = run(&[&"cat", &img, &path]);
    assert!(
        o.status.success(),
        "cat {path}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Reads `files` through a `strata mount` of `img`.
fn read_through_mount(img: &Path, dir: &Path, files: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mnt = dir.join("strata-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    ok(run(&[&"mount", &img, &mnt]));
    assert!(is_mounted(&mnt));
    let got = std::panic::catch_unwind(|| {
        files
            .iter()
            .map(|f| (f.to_string(), std::fs::read(mnt.join(f)).unwrap()))
            .collect()
    });
    ok(run(&[&"unmount", &mnt]));
    got.unwrap()
}

/// The entry-set checksum of an exFAT directory entry set (every byte of every entry except
/// the checksum field itself, bytes 2 and 3 of the first entry).
fn exfat_set_checksum(set: &[u8]) -> u16 {
    let mut c = 0u16;
    for (i, &b) in set.iter().enumerate() {
        if i == 2 || i == 3 {
            continue;
        }
        c = c.rotate_right(1).wrapping_add(u16::from(b));
    }
    c
}

/// Byte offsets of the File entry (0x85) of each name in the exFAT root directory of `vol`.
fn exfat_root_sets(vol: &[u8]) -> BTreeMap<String, usize> {
    let (bps, spc) = (vol[0x6C], vol[0x6D]);
    let cluster = 1usize << (bps + spc);
    let heap = (u32::from_le_bytes(vol[0x58..0x5C].try_into().unwrap()) as usize) << bps;
    let root = u32::from_le_bytes(vol[0x60..0x64].try_into().unwrap()) as usize;
    let at = heap + (root - 2) * cluster;
    let mut out = BTreeMap::new();
    let mut i = at;
    while i < at + cluster && vol[i] != 0 {
        if vol[i] == 0x85 {
            let n = usize::from(vol[i + 1]);
            let len = usize::from(vol[i + 32 + 3]);
            let units: Vec<u16> = (0..n - 1)
                .flat_map(|k| {
                    let e = i + 64 + 32 * k;
                    (0..15).map(move |j| e + 2 + 2 * j)
                })
                .map(|o| u16::from_le_bytes([vol[o], vol[o + 1]]))
                .take(len)
                .collect();
            out.insert(String::from_utf16(&units).unwrap(), i);
            i += 32 * (n + 1);
        } else {
            i += 32;
        }
    }
    out
}

/// exFAT files whose valid data length is below their size. Windows leaves them behind for
/// preallocated files (`SetFileValidData`, `SetEndOfFile` past the end, downloads in
/// progress); exfat-fuse and the Linux kernel write zeros up to the size instead, so no
/// Linux tool writes one: the stream extension's ValidDataLength is lowered here, with the
/// entry set's checksum recomputed, over clusters that hold the old, non-zero data. Bytes
/// from the valid data length to the size must read as zeros (exFAT specification 7.6.4).
/// fsck.exfat accepts the edited volume. exfat-fuse 1.3 and The Sleuth Kit 4.12 both return
/// the stale cluster contents there; strata's `cat`, `cp` and mount return zeros.
#[test]
fn exfat_bytes_past_the_valid_data_length_read_as_zeros() {
    if !require_root("exfat_bytes_past_the_valid_data_length_read_as_zeros") {
        return;
    }
    let dir = tempdir();
    let vol = dir.path().join("vdl.exfat");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    sh("mkfs.exfat", &[vol.to_str().unwrap()]);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let dev = Loop::attach(&vol, 512, false);
    sh("mount.exfat-fuse", &[&dev.0, mnt.to_str().unwrap()]);
    // `whole.bin` is contiguous (NoFatChain); `chained.bin` and `spacer.bin` are written in
    // turns so that `chained.bin`'s clusters are not contiguous and follow the FAT.
    let made = std::panic::catch_unwind(|| {
        python(
            "data = bytes((i * 7 + 1) % 251 + 1 for i in range(300000))\n\
             open('whole.bin', 'wb').write(data[:20000])\n\
             open('zeroed.bin', 'wb').write(data[:9000])\n\
             a, b = open('chained.bin', 'wb'), open('spacer.bin', 'wb')\n\
             for k in range(8):\n\
             \x20   a.write(data[k * 5000:(k + 1) * 5000]); a.flush()\n\
             \x20   b.write(b'S' * 5000); b.flush()\n\
             a.close(); b.close()",
            &mnt,
            &[],
        )
    });
    sh("umount", &[mnt.to_str().unwrap()]);
    drop(dev);
    made.unwrap();
    // (name, new valid data length): inside a cluster, on a cluster boundary, zero.
    let cuts = [
        ("whole.bin", 5000u64),
        ("chained.bin", 8192),
        ("zeroed.bin", 0),
    ];
    let mut bytes = std::fs::read(&vol).unwrap();
    let sets = exfat_root_sets(&bytes);
    for (name, valid) in cuts {
        let at = sets[name];
        let n = usize::from(bytes[at + 1]) + 1;
        assert_eq!(bytes[at + 32], 0xC0, "{name}: stream extension");
        let chained = name == "chained.bin";
        assert_eq!(bytes[at + 33] & 2 == 0, chained, "{name}: NoFatChain");
        bytes[at + 32 + 8..at + 32 + 16].copy_from_slice(&valid.to_le_bytes());
        let sum = exfat_set_checksum(&bytes[at..at + 32 * n]);
        bytes[at + 2..at + 4].copy_from_slice(&sum.to_le_bytes());
    }
    std::fs::write(&vol, &bytes).unwrap();
    sh("fsck.exfat", &["-n", vol.to_str().unwrap()]);

    // What exfat-fuse reads now: the right bytes up to the valid data length (and, past it,
    // the stale ones: not used as the reference there).
    let ro = Loop::attach(&vol, 512, true);
    sh(
        "mount.exfat-fuse",
        &["-o", "ro", &ro.0, mnt.to_str().unwrap()],
    );
    let fuse: std::thread::Result<BTreeMap<&str, Vec<u8>>> = std::panic::catch_unwind(|| {
        cuts.iter()
            .map(|(n, _)| (*n, std::fs::read(mnt.join(n)).unwrap()))
            .collect()
    });
    sh("umount", &[mnt.to_str().unwrap()]);
    drop(ro);
    let fuse = fuse.unwrap();
    let want: BTreeMap<&str, Vec<u8>> = cuts
        .iter()
        .map(|&(n, valid)| {
            let mut d = fuse[n].clone();
            assert!(
                d[valid as usize..].iter().any(|&b| b != 0),
                "{n}: stale data"
            );
            d[valid as usize..].fill(0);
            (n, d)
        })
        .collect();
    let img = image_of(&vol, dir.path());
    let out = dir.path().join("cp");
    ok(run(&[&"cp", &"-r", &"-q", &img, &"/", &out]));
    let mounted = read_through_mount(&img, dir.path(), &cuts.map(|c| c.0));
    for (name, valid) in cuts {
        let w = &want[name];
        assert_eq!(
            cat(&img, &format!("/{name}")),
            *w,
            "cat {name} (valid {valid})"
        );
        assert_eq!(std::fs::read(out.join(name)).unwrap(), *w, "cp {name}");
        assert_eq!(mounted[name], *w, "mount {name}");
    }
    // The files left alone read as exfat-fuse reads them.
    assert_eq!(
        cat(&img, "/spacer.bin"),
        std::fs::read(out.join("spacer.bin")).unwrap()
    );
    assert_eq!(cat(&img, "/spacer.bin"), vec![b'S'; 40000]);
}

/// Runs an mtools command (`MTOOLS_SKIP_CHECK=1`, `TZ=UTC`); returns whether it succeeded.
fn mtools(args: &[&str]) -> bool {
    Command::new(args[0])
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("TZ", "UTC")
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("mtools is needed for this test: {e}"))
        .status
        .success()
}

/// Copies everything on the FAT volume `vol` out with mtools into `dir/name`.
fn mtools_copy(vol: &str, dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir(&out).unwrap();
    assert!(
        mtools(&[
            "mcopy",
            "-i",
            vol,
            "-s",
            "-m",
            "-n",
            "-p",
            "-Q",
            "::/",
            out.to_str().unwrap()
        ]),
        "mcopy out of {vol}"
    );
    out
}

/// `strata cp -r` of the whole volume image `img` into `dir/name`.
fn strata_copy(img: &Path, dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    ok(run(&[&"cp", &"-r", &"-q", &img, &"/", &out]));
    out
}

/// A tree of files to put on test volumes: long and Unicode names, an 8.3 name in lower
/// case (stored as a short name with Windows NT's lower-case flags), an empty file, files
/// of many clusters, a subdirectory. Times are set so that they are compared too.
fn fat_tree(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir(&tree).unwrap();
    python(
        r#"
import os
os.makedirs('Sub dir/deeper')
open('readme.txt', 'w').write('lower-case short name\n')
open('MIXED.Txt', 'w').write('mixed\n')
open('A long file name with spaces.bin', 'wb').write(bytes((i * 31 + 7) & 255 for i in range(70000)))
open('données été.txt', 'w').write('accents\n')
open('empty', 'w').close()
open('Sub dir/deeper/inner file.dat', 'wb').write(bytes((i * 13) & 255 for i in range(9000)))
for i in range(40):
    open('Sub dir/entry number %02d.txt' % i, 'w').write(str(i) * (i * 50 + 1))
t = 1500000000
for root, dirs, files in os.walk('.', topdown=False):
    for n in files + dirs:
        os.utime(os.path.join(root, n), (t, t)); t += 2
"#,
        &tree,
        &[],
    );
    tree
}

/// Copies `tree`'s entries into the root of the FAT volume `vol` with mtools.
fn mtools_fill(vol: &str, tree: &Path) {
    let mut args: Vec<String> = vec![
        "mcopy".into(),
        "-i".into(),
        vol.into(),
        "-s".into(),
        "-m".into(),
    ];
    for e in std::fs::read_dir(tree).unwrap() {
        args.push(e.unwrap().path().to_str().unwrap().to_string());
    }
    args.push("::/".into());
    assert!(
        mtools(&args.iter().map(String::as_str).collect::<Vec<_>>()),
        "mcopy into {vol}"
    );
}

/// Little-endian field writes into a boot sector copy.
fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// FAT volumes that are valid but unusual, made by mkfs.fat and, where it has no option
/// for them, by editing the boot sector as other systems write it, then filled by mtools:
/// every file reads as mtools reads it (names, sizes, times and sha256), and fsck.fat
/// finds nothing wrong (but the missing hints it would recreate).
#[test]
fn unusual_fat_volumes_read_as_mtools_reads_them() {
    // (name, size, mkfs.fat options, edit of the empty volume before it is filled)
    type Edit = fn(&mut Vec<u8>);
    let variants: [(&str, u64, &[&str], Edit); 6] = [
        (
            "fat16 with 1024-byte sectors",
            16 << 20,
            &["-F", "16", "-S", "1024"],
            |_| {},
        ),
        (
            "fat32 with 4096-byte sectors",
            300 << 20,
            &["-F", "32", "-S", "4096"],
            |_| {},
        ),
        // Media byte 0xF0 (removable media) on a fixed volume, in the BPB and the FATs.
        ("fat32 with media byte 0xF0", 40 << 20, &["-F", "32"], |d| {
            let (rs, fats, fsz) = (
                u16::from_le_bytes([d[14], d[15]]) as usize * 512,
                d[16] as usize,
                u32::from_le_bytes(d[36..40].try_into().unwrap()) as usize * 512,
            );
            d[21] = 0xF0;
            for k in 0..fats {
                d[rs + k * fsz] = 0xF0;
            }
            let bk = u16::from_le_bytes([d[50], d[51]]) as usize * 512;
            d.copy_within(0..512, bk);
        }),
        // No FSInfo sector (BPB_FSInfo 0, the old one wiped) and no backup boot sector
        // (BPB_BkBootSec 0): both only hints, that Linux and mtools do without (`fatfs`
        // refused the volume: it read the boot sector as FSInfo and found no signature).
        (
            "fat32 without FSInfo or backup boot sector",
            40 << 20,
            &["-F", "32"],
            |d| {
                let fsinfo = u16::from_le_bytes([d[48], d[49]]) as usize * 512;
                d[fsinfo..fsinfo + 512].fill(0);
                put(d, 48, &0u16.to_le_bytes());
                let bk = u16::from_le_bytes([d[50], d[51]]) as usize * 512;
                d[bk..bk + 512].fill(0);
                put(d, 50, &0u16.to_le_bytes());
            },
        ),
        // The root directory moved from cluster 2 to cluster 7 (formatters that reserve the
        // first clusters put it elsewhere; the BPB says where).
        (
            "fat32 with its root directory at cluster 7",
            40 << 20,
            &["-F", "32"],
            |d| {
                let bps = 512usize;
                let rs = u16::from_le_bytes([d[14], d[15]]) as usize * bps;
                let fats = d[16] as usize;
                let fsz = u32::from_le_bytes(d[36..40].try_into().unwrap()) as usize * bps;
                let data = rs + fats * fsz;
                let cb = d[13] as usize * bps;
                let (old, new) = (2usize, 7usize);
                d.copy_within(data..data + cb, data + (new - old) * cb);
                d[data..data + cb].fill(0);
                for k in 0..fats {
                    let f = rs + k * fsz;
                    put(d, f + 4 * old, &0u32.to_le_bytes());
                    put(d, f + 4 * new, &0x0FFF_FFFFu32.to_le_bytes());
                }
                put(d, 44, &(new as u32).to_le_bytes());
                let bk = u16::from_le_bytes([d[50], d[51]]) as usize * bps;
                d.copy_within(0..512, bk);
            },
        ),
        (
            "fat12 with 4096-byte sectors",
            8 << 20,
            &["-F", "12", "-S", "4096"],
            |_| {},
        ),
    ];
    let dir = tempdir();
    let tree = fat_tree(dir.path());
    for (k, (name, size, opts, edit)) in variants.into_iter().enumerate() {
        let vol = dir.path().join(format!("v{k}.fat"));
        std::fs::File::create(&vol).unwrap().set_len(size).unwrap();
        let v = vol.to_str().unwrap();
        let mut args = opts.to_vec();
        args.extend(["-n", "ODD", v]);
        sh("mkfs.fat", &args);
        let mut bytes = std::fs::read(&vol).unwrap();
        edit(&mut bytes);
        std::fs::write(&vol, &bytes).unwrap();
        mtools_fill(v, &tree);
        let fsck = Command::new("fsck.fat").args(["-n", v]).output().unwrap();
        let report = String::from_utf8_lossy(&fsck.stdout);
        // fsck.fat offers to recreate a missing backup boot sector and FSInfo sector (exit
        // 1) and finds nothing else wrong.
        let hints_only = report.contains("no backup boot sector")
            && !report.contains("Orphaned")
            && !report.contains("Unable")
            && !report.contains("wrong");
        assert!(
            fsck.status.success() || (k == 3 && hints_only),
            "{name}: fsck.fat: {report}"
        );
        let reference = mtools_copy(v, dir.path(), &format!("mtools{k}"));
        assert!(
            walk_tree(&reference).len() > 40,
            "{name}: mtools copied too little"
        );
        let img = image_of(&vol, dir.path());
        let out = strata_copy(&img, dir.path(), &format!("strata{k}"));
        assert_eq!(walk_tree(&reference), walk_tree(&out), "{name}");
    }
}

/// A FAT32 volume whose 16- and 32-bit total-sector fields are both 0, the count being in
/// the 64-bit field at 0x52 (where the "FAT32   " type string usually is): DR-DOS 7.07's
/// extension for volumes of more than 2^32 sectors. No Linux tool writes one, and mtools,
/// fsck.fat and The Sleuth Kit refuse it, so the volume is filled by mtools first and its
/// files copied out as the reference; then only the boot sector fields change (in the
/// backup boot sector too). strata reads every file as mtools read it before.
#[test]
fn fat32_with_a_64_bit_sector_count() {
    let dir = tempdir();
    let tree = fat_tree(dir.path());
    let vol = dir.path().join("big.fat");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let v = vol.to_str().unwrap();
    sh("mkfs.fat", &["-F", "32", "-n", "WIDE", v]);
    mtools_fill(v, &tree);
    let reference = mtools_copy(v, dir.path(), "mtools");
    let mut bytes = std::fs::read(&vol).unwrap();
    let total = u32::from_le_bytes(bytes[32..36].try_into().unwrap());
    assert_eq!((bytes[19], bytes[20], bytes[66]), (0, 0, 0x29));
    put(&mut bytes, 32, &0u32.to_le_bytes());
    put(&mut bytes, 0x52, &u64::from(total).to_le_bytes());
    let bk = usize::from(u16::from_le_bytes([bytes[50], bytes[51]])) * 512;
    bytes.copy_within(0..512, bk);
    std::fs::write(&vol, &bytes).unwrap();
    assert!(!mtools(&["mdir", "-i", v, "::/"]), "mtools now refuses it");
    let img = image_of(&vol, dir.path());
    let out = strata_copy(&img, dir.path(), "strata");
    assert!(walk_tree(&reference).len() > 40);
    assert_eq!(walk_tree(&reference), walk_tree(&out));
}

/// Writes files into the FAT32 volume at argv[1] directly (argv[2]: the files' directory):
/// long-name entries with their checksum, a lower-case 8.3 name, a subdirectory, chains
/// with gaps. For a layout mtools cannot write.
const FAT32_WRITER: &str = r#"
import struct, sys
p, src = sys.argv[1], sys.argv[2]
d = bytearray(open(p, 'rb').read())
bps = struct.unpack_from('<H', d, 11)[0]; spc = d[13]
rs = struct.unpack_from('<H', d, 14)[0]; nf = d[16]
fsz = struct.unpack_from('<I', d, 36)[0]; root = struct.unpack_from('<I', d, 44)[0]
cb = bps * spc; fat = rs * bps; data = (rs + nf * fsz) * bps
def at(c): return data + (c - 2) * cb
def setfat(c, v):
    for k in range(nf): struct.pack_into('<I', d, fat + k * fsz * bps + 4 * c, v)
nxt = [root + 1]
def alloc(n, gap):
    cs = []
    for i in range(n):
        cs.append(nxt[0]); nxt[0] += 1 + gap
    for a, b in zip(cs, cs[1:]): setfat(a, b)
    setfat(cs[-1], 0x0FFFFFFF)
    return cs
def put(cs, data):
    for i, c in enumerate(cs):
        chunk = data[i * cb:(i + 1) * cb]; d[at(c):at(c) + len(chunk)] = chunk
def lfn(name, short):
    chk = 0
    for b in short: chk = (((chk & 1) << 7) + (chk >> 1) + b) & 0xFF
    u = name.encode('utf-16-le'); units = [u[i:i + 2] for i in range(0, len(u), 2)]
    n = (len(units) + 12) // 13
    units += [b'\0\0'] if len(units) % 13 else []
    units += [b'\xff\xff'] * (13 * n - len(units))
    out = []
    for k in range(n, 0, -1):
        part = units[(k - 1) * 13:k * 13]
        e = bytearray(32); e[0] = k | (0x40 if k == n else 0); e[11] = 0x0F; e[13] = chk
        e[1:11] = b''.join(part[0:5]); e[14:26] = b''.join(part[5:11]); e[28:32] = b''.join(part[11:13])
        out.append(bytes(e))
    return out
def entry(short, attr, first, size, lcase=0):
    e = bytearray(32); e[0:11] = short; e[11] = attr; e[12] = lcase
    date = ((2021 - 1980) << 9) | (6 << 5) | 15; time = (10 << 11) | (20 << 5) | 15
    struct.pack_into('<HHHHHHHI', e, 14, time, date, date, first >> 16, time, date, first & 0xFFFF, size)
    return bytes(e)
def file(name, short, body, gap, lcase=0):
    cs = alloc(max(1, -(-len(body) // cb)), gap) if body else [0]
    if body: put(cs, body)
    return (lfn(name, short) if name else []) + [entry(short, 0x20, cs[0], len(body), lcase)]
def fill(c, ents):
    o = at(c)
    while d[o] != 0: o += 32
    for e in ents: d[o:o + 32] = e; o += 32
body = lambda n: open(src + '/' + n, 'rb').read()
sub = alloc(1, 0)[0]
d[at(sub):at(sub) + cb] = bytes(cb)
fill(sub, [entry(b'.          ', 0x10, sub, 0), entry(b'..         ', 0x10, 0, 0)]
     + file('inner file.dat', b'INNERF~1DAT', body('inner file.dat'), 2))
fill(root, file(None, b'README  TXT', body('readme.txt'), 0, 0x18)
     + file('A long file name.bin', b'ALONGF~1BIN', body('A long file name.bin'), 1)
     + file(None, b'EMPTY      ', b'', 0, 0x08)
     + lfn('Sub dir', b'SUBDIR~1   ') + [entry(b'SUBDIR~1   ', 0x10, sub, 0)])
# The free count is now unknown.
struct.pack_into('<I', d, struct.unpack_from('<H', d, 48)[0] * bps + 488, 0xFFFFFFFF)
open(p, 'wb').write(d)
"#;

/// A FAT32 layout (BPB_FATSz16 = 0, the FAT size in BPB_FATSz32, 32-bit FAT entries) with
/// 2048-byte sectors and 3028 clusters, a count in FAT12's range: mkfs.fat makes it
/// (`-F 32 -S 2048`) with a warning, and Windows and Linux decide the FAT type by the BPB
/// layout, not the count, and read it. mtools decides by the count and cannot add files to
/// it ("No directory slots"), so the files are written into the directory entries and
/// the FAT here; fsck.fat -n finds the result consistent, and The Sleuth Kit (told it is
/// FAT32) lists and reads it: strata lists and reads every file as TSK does.
#[test]
fn fat32_layout_with_a_fat12_cluster_count() {
    let dir = tempdir();
    let vol = dir.path().join("small.fat");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(6 << 20)
        .unwrap();
    let v = vol.to_str().unwrap();
    sh(
        "mkfs.fat",
        &["-F", "32", "-S", "2048", "-s", "1", "-n", "SMALL", v],
    );
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let files: [(&str, Vec<u8>); 4] = [
        ("readme.txt", b"lower-case short name\n".to_vec()),
        ("A long file name.bin", noise(9000, 1)),
        ("inner file.dat", text(5000, 2)),
        ("empty", Vec::new()),
    ];
    for (n, b) in &files {
        std::fs::write(src.join(n), b).unwrap();
    }
    python(FAT32_WRITER, dir.path(), &[&vol, &src]);
    let fsck = sh("fsck.fat", &["-n", v]);
    // Root, subdirectory and 1 + 5 + 3 clusters of data: nothing lost or cross-linked.
    assert!(fsck.contains(" 11/3028 clusters"), "{fsck}");
    // The Sleuth Kit's listing: "r/r 6:\tpath" lines.
    let fls = sh("fls", &["-f", "fat32", "-r", "-p", v]);
    let tsk: BTreeMap<String, String> = fls
        .lines()
        .filter(|l| !l.contains('$') && !l.contains("Volume Label"))
        .map(|l| {
            let (head, path) = l.split_once('\t').unwrap();
            let inode = head
                .split_whitespace()
                .nth(1)
                .unwrap()
                .trim_end_matches(':');
            (format!("/{path}"), inode.to_string())
        })
        .collect();
    let want: Vec<&str> = vec![
        "/A long file name.bin",
        "/Sub dir",
        "/Sub dir/inner file.dat",
        "/empty",
        "/readme.txt",
    ];
    assert_eq!(
        tsk.keys().map(String::as_str).collect::<Vec<_>>(),
        want,
        "{fls}"
    );
    let img = image_of(&vol, dir.path());
    let ls = ok(run(&[&"ls", &"-R", &img, &"/"]));
    let listed: Vec<&str> = ls.lines().map(|l| l.trim_end_matches('/')).collect();
    assert_eq!(listed, want, "{ls}");
    for (path, inode) in &tsk {
        if path == "/Sub dir" {
            continue;
        }
        let icat = Command::new("icat")
            .args(["-f", "fat32", v, inode])
            .output()
            .unwrap();
        assert!(icat.status.success());
        let name = path.rsplit('/').next().unwrap();
        let written = &files.iter().find(|f| f.0 == name).unwrap().1;
        assert_eq!(icat.stdout, *written, "TSK {path}");
        assert_eq!(cat(&img, path), *written, "strata {path}");
    }
    let out = strata_copy(&img, dir.path(), "strata");
    assert_eq!(
        std::fs::read(out.join("Sub dir/inner file.dat")).unwrap(),
        files[2].1
    );
}

/// embedded-sdmmc's SD-card disk (an MBR with a FAT16 and a FAT32 partition, written by
/// macOS and Linux, a 64 MiB file, a non-ASCII long name) and rust-fatfs's FAT12 and FAT16
/// volumes: every file of every partition reads as mtools reads it.
#[test]
fn third_party_fat_images_match_mtools() {
    // (image, [(byte offset of the volume, strata's path of it)])
    let images: [(&str, &[(u64, &str)]); 3] = [
        (
            "embedded-sdmmc/disk.img.zst",
            &[(2048 * 512, "/p1"), (264_192 * 512, "/p2")],
        ),
        ("rust-fatfs/fat12.img.zst", &[(0, "/")]),
        ("rust-fatfs/fat16.img.zst", &[(0, "/")]),
    ];
    for (rel, parts) in images {
        let dir = tempdir();
        let disk = third_party(rel, dir.path());
        let img = image_of(&disk, dir.path());
        for (k, (offset, root)) in parts.iter().enumerate() {
            let vol = format!("{}@@{offset}", disk.display());
            let reference = mtools_copy(&vol, dir.path(), &format!("mtools{k}"));
            let out = dir.path().join(format!("strata{k}"));
            ok(run(&[&"cp", &"-r", &"-q", &img, root, &out]));
            let want = walk_tree(&reference);
            assert!(want.len() >= 4, "{rel} {root}: {want:?}");
            assert_eq!(want, walk_tree(&out), "{rel} {root}");
        }
    }
}

/// Damaged FAT chains on a volume mtools filled: a chain cut short (its second cluster
/// marked end-of-chain), a chain that comes back to its first cluster, and a chain that
/// runs into a free cluster. fsck.fat -n reports each; strata's `cat` fails with an error
/// naming the damage instead of returning zeros or repeated bytes, and the other files
/// still read as mtools reads them.
#[test]
fn damaged_fat_chains_are_errors_not_data() {
    let dir = tempdir();
    let vol = dir.path().join("damaged.fat");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let v = vol.to_str().unwrap();
    sh("mkfs.fat", &["-F", "16", "-s", "1", "-n", "CHAINS", v]);
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for (k, name) in ["cut.bin", "loop.bin", "free.bin", "intact.bin"]
        .iter()
        .enumerate()
    {
        std::fs::write(src.join(name), noise(4000, k as u64 + 1)).unwrap();
        let f = src.join(name);
        assert!(mtools(&["mcopy", "-i", v, f.to_str().unwrap(), "::/"]));
    }
    let reference = mtools_copy(v, dir.path(), "mtools");
    // First clusters, from mtools (`mshowfat`: "::/cut.bin <3-10>").
    let first = |name: &str| -> u64 {
        let o = Command::new("mshowfat")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-i", v, &format!("::/{name}")])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        let range = s.split('<').nth(1).unwrap_or_else(|| panic!("{s}"));
        range
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut bytes = std::fs::read(&vol).unwrap();
    let fat_at = usize::from(u16::from_le_bytes([bytes[14], bytes[15]])) * 512;
    let fat_len = usize::from(u16::from_le_bytes([bytes[22], bytes[23]])) * 512;
    let mut set = |c: u64, v: u16| {
        for copy in 0..2 {
            let at = fat_at + copy * fat_len + 2 * c as usize;
            bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    };
    let (cut, looped, free) = (first("cut.bin"), first("loop.bin"), first("free.bin"));
    set(cut + 1, 0xFFFF);
    set(looped + 2, looped as u16);
    set(free + 3, 0);
    std::fs::write(&vol, &bytes).unwrap();
    let fsck = Command::new("fsck.fat").args(["-n", v]).output().unwrap();
    assert!(!fsck.status.success(), "fsck.fat finds the damage");
    let img = image_of(&vol, dir.path());
    for name in ["cut.bin", "loop.bin", "free.bin"] {
        let (code, out, err) = outcome(&run(&[&"cat", &img, &format!("/{name}")]));
        assert_ne!(code, 0, "{name}: read {} bytes", out.len());
        assert!(
            err.contains("FAT") && err.contains("cluster"),
            "{name}: {err}"
        );
    }
    assert_eq!(
        cat(&img, "/intact.bin"),
        std::fs::read(reference.join("intact.bin")).unwrap()
    );
}

/// exFAT files whose FAT chain is damaged (one cut short, one that comes back to its first
/// cluster), on a volume filled through exfat-fuse: fsck.exfat reports each, and strata's
/// `cat` fails with an error instead of returning a short file or repeated clusters.
#[test]
fn exfat_damaged_chains_are_errors_not_data() {
    if !require_root("exfat_damaged_chains_are_errors_not_data") {
        return;
    }
    let dir = tempdir();
    let vol = dir.path().join("chains.exfat");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    sh("mkfs.exfat", &[vol.to_str().unwrap()]);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let dev = Loop::attach(&vol, 512, false);
    sh("mount.exfat-fuse", &[&dev.0, mnt.to_str().unwrap()]);
    // Written in turns, so that each file's clusters alternate and follow the FAT.
    let made = std::panic::catch_unwind(|| {
        python(
            "fs = [open(n, 'wb') for n in ('cut.bin', 'loop.bin', 'intact.bin')]\n\
             for k in range(6):\n\
             \x20   for i, f in enumerate(fs):\n\
             \x20       f.write(bytes([65 + i + k]) * 4096); f.flush()\n\
             for f in fs: f.close()",
            &mnt,
            &[],
        )
    });
    sh("umount", &[mnt.to_str().unwrap()]);
    drop(dev);
    made.unwrap();
    let mut bytes = std::fs::read(&vol).unwrap();
    let sets = exfat_root_sets(&bytes);
    let fat = (u32::from_le_bytes(bytes[0x50..0x54].try_into().unwrap()) as usize) << bytes[0x6C];
    let first = |b: &[u8], name: &str| {
        let st = sets[name] + 32;
        assert_eq!(b[st + 1] & 2, 0, "{name} follows the FAT");
        u32::from_le_bytes(b[st + 20..st + 24].try_into().unwrap()) as usize
    };
    let next = |b: &[u8], c: usize| {
        u32::from_le_bytes(b[fat + 4 * c..fat + 4 * c + 4].try_into().unwrap()) as usize
    };
    let cut = first(&bytes, "cut.bin");
    let second = next(&bytes, cut);
    bytes[fat + 4 * second..fat + 4 * second + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let looped = first(&bytes, "loop.bin");
    let third = next(&bytes, next(&bytes, looped));
    bytes[fat + 4 * third..fat + 4 * third + 4].copy_from_slice(&(looped as u32).to_le_bytes());
    std::fs::write(&vol, &bytes).unwrap();
    let fsck = Command::new("fsck.exfat")
        .args(["-n", vol.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!fsck.status.success(), "fsck.exfat finds the damage");
    let img = image_of(&vol, dir.path());
    for name in ["cut.bin", "loop.bin"] {
        let (code, out, err) = outcome(&run(&[&"cat", &img, &format!("/{name}")]));
        assert_ne!(code, 0, "{name}: read {} bytes", out.len());
        assert!(
            err.contains("exFAT") && err.contains("chain"),
            "{name}: {err}"
        );
    }
    let intact: Vec<u8> = (0..6u8).flat_map(|k| vec![67 + k; 4096]).collect();
    assert_eq!(cat(&img, "/intact.bin"), intact);
}

#[test]
fn fat_images_match_mtools() {
    for (rel, root) in [
        ("rust-fatfs/fat12.img.zst", "/"),
        ("rust-fatfs/fat16.img.zst", "/"),
    ] {
        let dir = tempdir();
        let raw = third_party(rel, dir.path());
        let img = image_of(&raw, dir.path());
        // mtools is the reference: copy everything out with it, then compare.
        let reference = dir.path().join("mtools");
        std::fs::create_dir(&reference).unwrap();
        let o = std::process::Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .env("TZ", "UTC")
            .args([
                "-i",
                raw.to_str().unwrap(),
                "-s",
                "-m",
                "-n",
                "-p",
                "-Q",
                "::/",
            ])
            .arg(&reference)
            .output()
            .expect("mtools is needed for this test");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = dir.path().join("strata");
        ok(run(&[&"cp", &"-r", &"-q", &img, &root, &out]));
        assert_eq!(walk_tree(&reference), walk_tree(&out), "{rel}");
    }
}

/// FAT12, FAT16 and FAT32 made by mkfs.fat and filled with mtools (long and Unicode
/// names, deep trees, a 1000-file directory), at two points (files deleted, changed and
/// added with mtools in between): each image reads exactly as mtools reads the disk.
#[test]
fn fat_volumes_at_two_points_match_mtools() {
    if !require_root("fat_volumes_at_two_points_match_mtools") {
        return;
    }
    for (fat, size) in [("12", 4u64 << 20), ("16", 32 << 20), ("32", 64 << 20)] {
        let dir = tempdir();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        let o = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                r#"
import os, sys
os.chdir(sys.argv[1])
os.makedirs('Dokumente/Übersicht 2024/very long directory name number one')
open('Dokumente/Übersicht 2024/very long directory name number one/a file with a long name.txt', 'w').write('x' * 5000)
open('README.TXT', 'w').write('readme\n')
open('données.bin', 'wb').write(bytes(i & 255 for i in range(70000)))
open('empty', 'w').close()
os.mkdir('many')
for i in range(1000):
    open('many/file number %04d.txt' % i, 'w').write(str(i))
t = 1500000000
for root, dirs, files in os.walk('.', topdown=False):
    for n in files + dirs:
        os.utime(os.path.join(root, n), (t, t)); t += 2
"#,
            )
            .arg(&tree)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let vol = dir.path().join("vol.fat");
        std::fs::File::create(&vol).unwrap().set_len(size).unwrap();
        sh(
            "mkfs.fat",
            &["-F", fat, "-n", "POINTS", vol.to_str().unwrap()],
        );
        let mtools = |args: &[&str]| {
            let o = std::process::Command::new(args[0])
                .env("MTOOLS_SKIP_CHECK", "1")
                .env("TZ", "UTC")
                .args(&args[1..])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        let v = vol.to_str().unwrap();
        let mut copy_in: Vec<String> = vec![
            "mcopy".into(),
            "-i".into(),
            v.into(),
            "-s".into(),
            "-m".into(),
        ];
        for e in std::fs::read_dir(&tree).unwrap() {
            copy_in.push(e.unwrap().path().to_str().unwrap().to_string());
        }
        copy_in.push("::/".into());
        mtools(&copy_in.iter().map(String::as_str).collect::<Vec<_>>());
        for point in ["a", "b"] {
            if point == "b" {
                mtools(&["mdel", "-i", v, "::/README.TXT"]);
                mtools(&["mdeltree", "-i", v, "::/Dokumente"]);
                for i in (0..1000).step_by(5) {
                    mtools(&["mdel", "-i", v, &format!("::/many/file number {i:04}.txt")]);
                }
                let new = dir.path().join("added later.txt");
                std::fs::write(&new, b"second point\n").unwrap();
                mtools(&["mcopy", "-i", v, "-m", new.to_str().unwrap(), "::/"]);
            }
            let (disk, manifest) = disk_and_manifest(&vol, dir.path(), point);
            assert!(
                manifest.lines().count() > 10,
                "FAT{fat}: manifest too short"
            );
            let img = image_of(&disk, dir.path());
            compare_with_manifest(&img, &manifest, &["p1"]);
        }
    }
}

/// exFAT (obhq/exfat's image): names, types, sizes, contents and times as its listing.
#[test]
fn exfat_volume() {
    let dir = tempdir();
    let raw = third_party("obhq-exfat/exfat.img.zst", dir.path());
    let img = image_of(&raw, dir.path());
    let (seen, clean) = ls_tree(&img, "/");
    assert!(clean);
    let got: Vec<_> = seen
        .iter()
        .map(|(p, s)| (p.as_str(), s.kind.as_str(), s.size, s.mtime))
        .collect();
    // 2023-03-06 13:03:18, 13:03:18 and 13:03:06 UTC.
    assert_eq!(
        got,
        [
            ("/dir1", "dir", 0, 1678107798),
            ("/dir1/file2", "file", 13, 1678107798),
            ("/file1", "file", 13, 1678107786)
        ]
    );
    for (path, want) in [
        ("/file1", "Test file 1.\n"),
        ("/DIR1/File2", "Test file 2.\n"),
    ] {
        let o = run(&[&"cat", &img, &path]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{path}");
    }
    let out = dir.path().join("out");
    ok(run(&[&"cp", &"-r", &"-q", &img, &"/", &out]));
    assert_eq!(
        std::fs::read_to_string(out.join("dir1/file2")).unwrap(),
        "Test file 2.\n"
    );
}

/// Names are looked up as exFAT compares them, through the volume's up-case table: the
/// same names are found (and not found) as through exfat-fuse on a volume mkfs.exfat made.
#[test]
fn exfat_lookups_follow_the_upcase_table() {
    if !require_root("exfat_lookups_follow_the_upcase_table") {
        return;
    }
    let dir = tempdir();
    let vol = dir.path().join("vol.exfat");
    std::fs::File::create(&vol)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    sh("mkfs.exfat", &[vol.to_str().unwrap()]);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let dev = Loop::attach(&vol, 512, false);
    sh("mount.exfat-fuse", &[&dev.0, mnt.to_str().unwrap()]);
    let names = ["É.TXT", "\u{212A}.txt", "K.TXT", "ÜNÏ/Σ", "ünï/σ", "ß"];
    let made = std::panic::catch_unwind(|| {
        python(
            "import os\nopen('é.txt', 'w').write('e\\n')\nopen('k.txt', 'w').write('k\\n')\n\
             os.mkdir('Ünï')\nopen('Ünï/σ', 'w').write('s\\n')\nopen('SS', 'w').write('ss\\n')",
            &mnt,
            &[],
        );
        names.map(|n| mnt.join(n).exists())
    });
    sh("umount", &[mnt.to_str().unwrap()]);
    drop(dev);
    let found = made.unwrap();
    assert_eq!(found, [true, false, true, true, true, false], "exfat-fuse");
    let img = image_of(&vol, dir.path());
    for (name, want) in names.iter().zip(found) {
        let o = run(&[&"cat", &img, &format!("/{name}")]);
        assert_eq!(o.status.success(), want, "{name}");
    }
}
