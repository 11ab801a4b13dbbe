//! The Sleuth Kit as a second, independent reader of test disks: `mmls` for partition
//! tables, `fsstat` for the filesystem type, `fls` for listings, `tsk_recover` and `icat` for
//! contents. Its code shares nothing with strata's.

use super::{hex_sha, sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// One entry of a filesystem tree, as either reader shows it. Paths are keyed from the
/// filesystem's root (`/a/b`); a named NTFS stream is `/a/b:name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `f` file, `d` directory, `l` symbolic link, `s` named stream; other types as the
    /// reader names them.
    pub kind: char,
    /// Bytes of a file or stream; length of a link target; `None` for directories.
    pub size: Option<u64>,
    /// Modification time, whole seconds since the epoch (`None` for streams).
    pub mtime: Option<i64>,
    /// sha256 of a file's or stream's bytes, or a link's target; an error text when the
    /// reader could not read it; `None` for directories.
    pub content: Option<String>,
}

fn tool(cmd: &str) -> Command {
    let mut c = Command::new(cmd);
    // FAT times carry no zone: TSK reads them in TZ, strata as UTC.
    c.env("TZ", "UTC");
    c
}

fn output(c: &mut Command) -> std::process::Output {
    c.output()
        .unwrap_or_else(|e| panic!("{c:?}: {e} (The Sleuth Kit is needed for this test)"))
}

/// The partitions `mmls` finds in `disk`, as (start, length) in bytes; `None` when it finds
/// no partition table (a bare filesystem).
pub fn partitions(disk: &Path) -> Option<Vec<(u64, u64)>> {
    let o = output(tool("mmls").arg("-a").arg(disk));
    if !o.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let unit: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Units are in "))
        .and_then(|l| l.split('-').next())
        .and_then(|n| n.parse().ok())
        .expect("mmls names its unit");
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // `002:  000:000   0000002048   0000010239   0000008192   DOS FAT12 (0x01)`
        if f.len() >= 5 && f[0].ends_with(':') && f[0][..f[0].len() - 1].parse::<u32>().is_ok() {
            if f[1] == "Meta" || f[1].starts_with('-') {
                continue;
            }
            let start: u64 = f[2].parse().unwrap();
            let len: u64 = f[4].parse().unwrap();
            out.push((start * unit, len * unit));
        }
    }
    Some(out)
}

/// The filesystem type `fsstat` sees at byte `offset` of `disk` (`NTFS`, `FAT16`, `Ext4`,
/// `exFAT`...), or `None` when it sees none.
pub fn fs_type(disk: &Path, offset: u64) -> Option<String> {
    let o = output(tool("fsstat").args(sector_args(offset)).arg(disk));
    if !o.status.success() {
        return None;
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("File System Type: "))
        .map(|t| t.trim().to_string())
}

fn sector_args(offset: u64) -> Vec<String> {
    assert_eq!(offset % 512, 0, "partitions start on a 512-byte boundary");
    vec![
        "-b".into(),
        "512".into(),
        "-o".into(),
        (offset / 512).to_string(),
    ]
}

/// Every allocated entry of the filesystem at byte `offset` of `disk`, as TSK reads it, with
/// the contents of every file, stream and link. `scratch` is an empty directory for
/// `tsk_recover`'s output.
///
/// Left out, as they are no user data: deleted entries, TSK's virtual files (`$MBR`,
/// `$FAT1`, `$OrphanFiles`...), volume label entries, NTFS metadata files (records 0-15 and
/// `$Extend`), exFAT's bitmap and upcase table, and NTFS `$FILE_NAME` pseudo-entries.
///
/// The bytes of the files in `unread` are not read (their content is `not read`).
pub fn tree(disk: &Path, offset: u64, scratch: &Path, unread: &[&str]) -> BTreeMap<String, Node> {
    let fs = fs_type(disk, offset).unwrap_or_default();
    let ntfs = fs == "NTFS";
    let exfat = fs == "exFAT";
    let o = output(
        tool("fls")
            .args(["-r", "-p", "-u", "-m", "/"])
            .args(sector_args(offset))
            .arg(disk),
    );
    assert!(
        o.status.success(),
        "fls at {offset}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Names that are not UTF-8 (encrypted ext names) are compared as U+FFFD, as strata
    // shows them.
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    // (path, kind, inode, size, mtime, link target)
    let mut entries = Vec::new();
    for line in text.lines() {
        // Body format: MD5|name|inode|mode|uid|gid|size|atime|mtime|ctime|crtime. The name
        // may hold '|', the nine fields after it cannot.
        let (_, rest) = line.split_once('|').unwrap();
        let mut f: Vec<&str> = rest.rsplitn(10, '|').collect();
        f.reverse();
        let (name, inode, mode, size, mtime) = (f[0], f[1], f[2], f[5], f[7]);
        let size: u64 = size.parse().unwrap();
        let mtime: i64 = mtime.parse().unwrap();
        // The type of the file itself (after the '/'), as strata's letters.
        let mut ty = match mode.chars().nth(2).unwrap() {
            'r' => 'f',
            t => t,
        };
        assert!(!name.ends_with(" (deleted)"), "fls -u listed {name}");
        if mode.starts_with(['v', 'V']) {
            continue;
        }
        let mut ino = inode.split('-');
        let inum: u64 = ino.next().unwrap().parse().unwrap();
        let attr_type = ino.next();
        if attr_type == Some("48") {
            continue;
        }
        let top = name.matches('/').count() == 1;
        if top && name.ends_with(" (Volume Label Entry)") {
            continue;
        }
        if ntfs && (inum < 16 || name == "/$Extend" || name.starts_with("/$Extend/")) {
            continue;
        }
        if exfat && top && ["/$ALLOC_BITMAP", "/$UPCASE_TABLE"].contains(&name) {
            continue;
        }
        if name.ends_with("/.") || name.ends_with("/..") {
            continue;
        }
        let mut path = name.to_string();
        let mut target = None;
        // fls shows a fast symlink (its target in the inode) as `name -> target`, the
        // target `size` bytes long; icat reads such a link as zeros, so the listing's target
        // is taken. Slow symlinks are listed by name alone and read with icat.
        let arrow = path
            .len()
            .checked_sub(size as usize + 4)
            .filter(|&cut| path.is_char_boundary(cut) && path[cut..].starts_with(" -> "));
        if let (Some(cut), 'l') = (arrow, ty) {
            target = Some(path[cut + 4..].to_string());
            path.truncate(cut);
        }
        if ntfs && path.rsplit('/').next().unwrap().contains(':') {
            ty = 's';
            // A directory's named stream is listed twice: `/dir:name` and, under the
            // directory's `.` entry, `/dir/.:name`.
            if path.contains("/.:") {
                continue;
            }
        }
        entries.push((path, ty, inode.to_string(), size, mtime, target));
    }

    // Regular files in bulk through tsk_recover (one process); anything it did not write
    // (empty files, streams, links) through icat.
    // (tsk_recover reads every file, so not when some must stay unread.)
    if unread.is_empty() {
        let o = output(
            tool("tsk_recover")
                .arg("-a")
                .args(sector_args(offset))
                .arg(disk)
                .arg(scratch),
        );
        assert!(
            o.status.success(),
            "tsk_recover: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let mut out = BTreeMap::new();
    for (path, mut kind, inode, mut size, mtime, target) in entries {
        let recovered = scratch.join(path.trim_start_matches('/'));
        if let Some(t) = (ntfs && kind == 'f')
            .then(|| interix_target(&recovered, size))
            .flatten()
        {
            (kind, size) = ('l', t.len() as u64);
            let node = Node {
                kind,
                size: Some(size),
                mtime: Some(mtime),
                content: Some(hex_sha(t.as_bytes())),
            };
            assert!(
                out.insert(path.clone(), node).is_none(),
                "fls: {path} twice"
            );
            continue;
        }
        let content = match kind {
            'd' => None,
            _ if unread.contains(&path.as_str()) => Some("not read".to_string()),
            'l' if target.is_some() => target.map(|t| hex_sha(t.as_bytes())),
            'f' if std::fs::symlink_metadata(&recovered)
                .is_ok_and(|m| m.is_file() && m.len() == size) =>
            {
                Some(sha256(&recovered))
            }
            'f' | 's' | 'l' => Some(icat(disk, offset, &inode)),
            _ => None,
        };
        let node = Node {
            kind,
            size: (kind != 'd').then_some(size),
            mtime: (kind != 's').then_some(mtime),
            content,
        };
        // Hard links and case-insensitive lookups aside, one path names one entry.
        assert!(
            out.insert(path.clone(), node).is_none(),
            "fls: {path} twice"
        );
    }
    out
}

/// sha256 of what `icat` reads of `inode` (`N` or `N-TYPE-ID`), or its error.
pub fn icat(disk: &Path, offset: u64, inode: &str) -> String {
    let o = output(tool("icat").args(sector_args(offset)).arg(disk).arg(inode));
    if o.status.success() {
        hex_sha(&o.stdout)
    } else {
        format!("icat error: {}", String::from_utf8_lossy(&o.stderr).trim())
    }
}

/// The target of an Interix symbolic link (ntfs-3g's and Services for Unix's format: a file
/// holding `IntxLNK\1` and the target in UTF-16LE), which TSK shows as the regular file it
/// is stored as; `None` for any other file. `recovered` is tsk_recover's copy of the file.
fn interix_target(recovered: &Path, size: u64) -> Option<String> {
    const MAGIC: &[u8] = b"IntxLNK\x01";
    if size <= MAGIC.len() as u64 || size > 8 + 2 * 4096 || !size.is_multiple_of(2) {
        return None;
    }
    let data = std::fs::read(recovered).ok()?;
    let units: Vec<u16> = data
        .strip_prefix(MAGIC)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}
