//! What the Dokan front-end decides without the driver: Windows paths and stream names,
//! mount points, attributes and FILETIMEs of [`Metadata`], the NTSTATUS for a strata error,
//! and which open requests a read-only volume refuses. Pure functions, so they are tested
//! on every system (and under wine in CI).

use crate::error::Error;
use crate::vfs::{Metadata, NodeKind, Time};

/// NTSTATUS values the front-end returns (ntstatus.h).
pub mod status {
    pub const SUCCESS: i32 = 0;
    pub const BUFFER_OVERFLOW: i32 = 0x8000_0005_u32 as i32;
    pub const NOT_IMPLEMENTED: i32 = 0xC000_0002_u32 as i32;
    pub const INVALID_PARAMETER: i32 = 0xC000_000D_u32 as i32;
    pub const ACCESS_DENIED: i32 = 0xC000_0022_u32 as i32;
    pub const OBJECT_NAME_INVALID: i32 = 0xC000_0033_u32 as i32;
    pub const OBJECT_NAME_NOT_FOUND: i32 = 0xC000_0034_u32 as i32;
    pub const OBJECT_NAME_COLLISION: i32 = 0xC000_0035_u32 as i32;
    pub const OBJECT_PATH_NOT_FOUND: i32 = 0xC000_003A_u32 as i32;
    pub const MEDIA_WRITE_PROTECTED: i32 = 0xC000_00A2_u32 as i32;
    pub const FILE_IS_A_DIRECTORY: i32 = 0xC000_00BA_u32 as i32;
    pub const NOT_SUPPORTED: i32 = 0xC000_00BB_u32 as i32;
    pub const INTERNAL_ERROR: i32 = 0xC000_00E5_u32 as i32;
    pub const FILE_CORRUPT_ERROR: i32 = 0xC000_0102_u32 as i32;
    pub const NOT_A_DIRECTORY: i32 = 0xC000_0103_u32 as i32;
    pub const CANCELLED: i32 = 0xC000_0120_u32 as i32;
    pub const IO_DEVICE_ERROR: i32 = 0xC000_0185_u32 as i32;
}

/// The NTSTATUS a Windows program sees for a strata error: the one place a kind becomes
/// an NTSTATUS.
pub fn status_of(e: &Error) -> i32 {
    match e {
        Error::NotFound(_) => status::OBJECT_NAME_NOT_FOUND,
        Error::NotADirectory(_) => status::NOT_A_DIRECTORY,
        Error::IsADirectory(_) => status::FILE_IS_A_DIRECTORY,
        // Damaged image data and damaged filesystem metadata alike: what NTFS itself
        // answers for a damaged structure.
        Error::Corrupt { .. }
        | Error::Incomplete { .. }
        | Error::BrokenChain { .. }
        | Error::Damaged(_)
        | Error::DamagedMetadata { .. } => status::FILE_CORRUPT_ERROR,
        // Contents strata does not decode (EFS, WIMBoot), a newer image format.
        Error::Unsupported { .. } | Error::UnsupportedFeature(_) => status::NOT_SUPPORTED,
        // A request that does not apply (the target of something that is not a link, a
        // partition with no filesystem strata reads): refused.
        Error::Invalid(_) => status::ACCESS_DENIED,
        Error::Interrupted => status::CANCELLED,
        // An encrypted image whose key was not given.
        Error::Key { .. } => status::ACCESS_DENIED,
        // Several names differ from the one asked only in case: it names none of them.
        Error::Ambiguous(_) => status::OBJECT_NAME_COLLISION,
        _ => status::IO_DEVICE_ERROR,
    }
}

/// A Dokan file name split into the components of its path and the stream it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinPath {
    /// Path components below the mount point's root (empty for the root).
    pub components: Vec<String>,
    /// The named stream (`file.txt:Zone.Identifier`), or `""` for the main contents.
    pub stream: String,
}

/// Splits a path as Dokan passes it (`\dir\file.txt`, `\dir\file.txt:stream`,
/// `\dir\file.txt:stream:$DATA`, `\dir\file.txt::$DATA`, `\dir::$INDEX_ALLOCATION`).
/// A stream type other than `$DATA` (or `$INDEX_ALLOCATION` for the main stream of a
/// directory), a stream on a middle component, or a stream on the root is invalid.
pub fn parse_path(path: &str) -> Result<WinPath, i32> {
    let mut components: Vec<String> = path
        .split(['\\', '/'])
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    if components[..components.len().saturating_sub(1)]
        .iter()
        .any(|c| c.contains(':'))
    {
        return Err(status::OBJECT_NAME_INVALID);
    }
    let mut stream = String::new();
    if let Some(last) = components.last_mut() {
        if let Some((name, rest)) = last.split_once(':') {
            let (s, kind) = rest.split_once(':').unwrap_or((rest, ""));
            let kind_ok = kind.is_empty()
                || kind.eq_ignore_ascii_case("$DATA")
                || (s.is_empty() && kind.eq_ignore_ascii_case("$INDEX_ALLOCATION"));
            if name.is_empty() || !kind_ok || s.contains(':') {
                return Err(status::OBJECT_NAME_INVALID);
            }
            stream = s.to_string();
            *last = name.to_string();
        }
    }
    Ok(WinPath { components, stream })
}

/// A stream's name as FindStreams reports it: `::$DATA` for the main contents,
/// `:name:$DATA` for a named stream.
pub fn stream_entry_name(stream: &str) -> String {
    format!(":{stream}:$DATA")
}

/// Names compare as Windows compares them on a case-insensitive volume.
pub fn same_name(a: &str, b: &str) -> bool {
    a == b
        || a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
}

/// A mount point as given on the command line: a drive letter (`X:`, `X`, `X:\`) becomes
/// `X:\`; anything else must be an absolute folder path (`C:\mnt\backup`), returned as
/// given without a trailing `\`.
pub fn mount_point(arg: &str) -> Result<String, String> {
    let a = arg.trim();
    let letter = |c: char| c.is_ascii_alphabetic();
    let mut chars = a.chars();
    match (chars.next(), chars.as_str()) {
        (Some(c), "" | ":" | ":\\" | ":/") if letter(c) => {
            return Ok(format!("{}:\\", c.to_ascii_uppercase()))
        }
        _ => {}
    }
    let bytes = a.as_bytes();
    let absolute = bytes.len() > 3
        && letter(bytes[0] as char)
        && bytes[1] == b':'
        && (bytes[2] == b'\\' || bytes[2] == b'/');
    if !absolute {
        return Err(format!(
            "{arg}: a mount point is a drive letter (X:) or an absolute path to an empty \
             folder (C:\\mnt\\backup)"
        ));
    }
    Ok(a.trim_end_matches(['\\', '/']).replace('/', "\\"))
}

/// File attribute bits (winnt.h).
pub mod attr {
    pub const READONLY: u32 = 0x1;
    pub const SYSTEM: u32 = 0x4;
    pub const DIRECTORY: u32 = 0x10;
    pub const REPARSE_POINT: u32 = 0x400;
}

/// The reparse tag a Windows program sees for a symbolic link (IO_REPARSE_TAG_SYMLINK).
pub const REPARSE_TAG_SYMLINK: u32 = 0xA000_000C;

/// Windows attributes of a node on the read-only volume: directories are directories;
/// files are read-only; links and other reparse points carry FILE_ATTRIBUTE_REPARSE_POINT
/// (their contents read as the link target); device nodes, FIFOs and sockets are system
/// files that cannot be read.
pub fn attributes(m: &Metadata) -> u32 {
    match m.kind {
        NodeKind::Dir => attr::DIRECTORY,
        NodeKind::File => attr::READONLY,
        NodeKind::Symlink | NodeKind::Reparse => attr::READONLY | attr::REPARSE_POINT,
        NodeKind::Block | NodeKind::Char | NodeKind::Fifo | NodeKind::Socket => {
            attr::READONLY | attr::SYSTEM
        }
    }
}

/// The reparse tag of a node (WIN32_FIND_DATA's dwReserved0), 0 for none.
pub fn reparse_tag(m: &Metadata) -> u32 {
    match m.kind {
        NodeKind::Symlink => REPARSE_TAG_SYMLINK,
        _ => 0,
    }
}

/// 100 ns intervals from 1601-01-01 to 1970-01-01.
const FILETIME_UNIX_EPOCH: u64 = 116_444_736_000_000_000;

/// A [`Time`] as a FILETIME value (100 ns intervals since 1601-01-01 UTC); 0 (no time) for
/// none or a time before 1601.
pub fn filetime(t: Option<Time>) -> u64 {
    let Some(t) = t else { return 0 };
    let ticks = i128::from(t.secs) * 10_000_000 + i128::from(t.nanos / 100);
    u64::try_from(ticks + i128::from(FILETIME_UNIX_EPOCH)).unwrap_or(0)
}

/// Creation, last access and last write FILETIMEs of a node. A filesystem without a
/// creation or access time (FAT has no access time of day, ext2/3 no creation time) shows
/// the modification time there, as Windows drivers for those filesystems do.
pub fn times(m: &Metadata) -> (u64, u64, u64) {
    let write = filetime(m.mtime);
    let or_write = |t: Option<Time>| match filetime(t) {
        0 => write,
        v => v,
    };
    (or_write(m.crtime), or_write(m.atime), write)
}

/// Kernel create dispositions (wdm.h).
pub mod disposition {
    pub const SUPERSEDE: u32 = 0;
    pub const OPEN: u32 = 1;
    pub const CREATE: u32 = 2;
    pub const OPEN_IF: u32 = 3;
    pub const OVERWRITE: u32 = 4;
    pub const OVERWRITE_IF: u32 = 5;
}

/// Kernel create options (wdm.h).
pub mod create_option {
    pub const DIRECTORY_FILE: u32 = 0x1;
    pub const NON_DIRECTORY_FILE: u32 = 0x40;
    pub const DELETE_ON_CLOSE: u32 = 0x1000;
}

/// Access rights that would change the volume: write or append data, write extended
/// attributes or attributes, delete a child or the file, change its security, and the
/// generic write and all rights.
pub const WRITE_ACCESS: u32 =
    0x2 | 0x4 | 0x10 | 0x40 | 0x100 | 0x1_0000 | 0x4_0000 | 0x8_0000 | 0x1000_0000 | 0x4000_0000;

/// What an open request asks for, as Dokan passes it (kernel values).
#[derive(Debug, Clone, Copy)]
pub struct OpenRequest {
    pub desired_access: u32,
    pub disposition: u32,
    pub options: u32,
}

/// Decides an open request on the read-only volume. `found` is whether the object exists
/// and, if so, whether it is a directory; `parent_found` whether its directory exists.
/// Anything that would create, replace, write or delete is refused with
/// STATUS_MEDIA_WRITE_PROTECTED, as Windows does for write-protected media.
pub fn decide_open(req: OpenRequest, found: Option<bool>, parent_found: bool) -> Result<(), i32> {
    use disposition::*;
    let creating = matches!(req.disposition, SUPERSEDE | CREATE | OPEN_IF | OVERWRITE_IF);
    let Some(is_dir) = found else {
        return Err(if !parent_found {
            status::OBJECT_PATH_NOT_FOUND
        } else if creating {
            status::MEDIA_WRITE_PROTECTED
        } else {
            status::OBJECT_NAME_NOT_FOUND
        });
    };
    if req.disposition == CREATE {
        return Err(status::OBJECT_NAME_COLLISION);
    }
    if matches!(req.disposition, SUPERSEDE | OVERWRITE | OVERWRITE_IF)
        || req.options & create_option::DELETE_ON_CLOSE != 0
        || req.desired_access & WRITE_ACCESS != 0
    {
        return Err(status::MEDIA_WRITE_PROTECTED);
    }
    if is_dir && req.options & create_option::NON_DIRECTORY_FILE != 0 {
        return Err(status::FILE_IS_A_DIRECTORY);
    }
    if !is_dir && req.options & create_option::DIRECTORY_FILE != 0 {
        return Err(status::NOT_A_DIRECTORY);
    }
    Ok(())
}

/// A string as a NUL-terminated UTF-16 buffer for Windows.
pub fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Copies `s` into a fixed UTF-16 field, truncated to fit, NUL-terminated.
pub fn copy_wide(s: &str, field: &mut [u16]) {
    let n = field.len().saturating_sub(1);
    let mut i = 0;
    for u in s.encode_utf16().take(n) {
        field[i] = u;
        i += 1;
    }
    if let Some(z) = field.get_mut(i) {
        *z = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_streams_and_stream_types() {
        let p = |s: &str| parse_path(s);
        let wp = |c: &[&str], s: &str| {
            Ok(WinPath {
                components: c.iter().map(|c| c.to_string()).collect(),
                stream: s.to_string(),
            })
        };
        assert_eq!(p("\\"), wp(&[], ""));
        assert_eq!(p("\\p2\\Users\\anna"), wp(&["p2", "Users", "anna"], ""));
        assert_eq!(
            p("\\p2\\notes.txt:Zone.Identifier"),
            wp(&["p2", "notes.txt"], "Zone.Identifier")
        );
        assert_eq!(
            p("\\p2\\notes.txt:Zone.Identifier:$DATA"),
            wp(&["p2", "notes.txt"], "Zone.Identifier")
        );
        assert_eq!(p("\\p2\\notes.txt::$DATA"), wp(&["p2", "notes.txt"], ""));
        assert_eq!(p("\\p2\\dir::$INDEX_ALLOCATION"), wp(&["p2", "dir"], ""));
        assert_eq!(p("\\p2\\a.txt:s:$data"), wp(&["p2", "a.txt"], "s"));
        for bad in [
            "\\p2\\a.txt:s:$INDEX_ALLOCATION",
            "\\p2\\a.txt:s:$EA",
            "\\p2\\a:b\\c",
            "\\:stream",
            "\\p2\\a.txt:s:$DATA:x",
        ] {
            assert_eq!(p(bad), Err(status::OBJECT_NAME_INVALID), "{bad}");
        }
        assert_eq!(stream_entry_name(""), "::$DATA");
        assert_eq!(
            stream_entry_name("Zone.Identifier"),
            ":Zone.Identifier:$DATA"
        );
    }

    #[test]
    fn names_compare_case_insensitively_in_unicode() {
        assert!(same_name("Dokumente", "DOKUMENTE"));
        assert!(same_name("vacances été", "VACANCES ÉTÉ"));
        assert!(same_name("список дел.png", "СПИСОК ДЕЛ.PNG"));
        assert!(!same_name("a.txt", "a.txt "));
        assert!(!same_name("résumé", "resume"));
    }

    #[test]
    fn mount_points() {
        for ok in ["x:", "X", "X:\\", "x:/"] {
            assert_eq!(mount_point(ok).as_deref(), Ok("X:\\"), "{ok}");
        }
        assert_eq!(
            mount_point("C:\\mnt\\backup\\").as_deref(),
            Ok("C:\\mnt\\backup")
        );
        assert_eq!(mount_point("D:/mnt/b").as_deref(), Ok("D:\\mnt\\b"));
        for bad in [
            "",
            "1:",
            "XY:",
            "mnt\\backup",
            "\\mnt",
            "/mnt/backup",
            "C:dir",
        ] {
            assert!(mount_point(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn attributes_and_reparse_tags() {
        let m = |k| Metadata::new(k, 5);
        assert_eq!(attributes(&m(NodeKind::Dir)), attr::DIRECTORY);
        assert_eq!(attributes(&m(NodeKind::File)), attr::READONLY);
        assert_eq!(
            attributes(&m(NodeKind::Symlink)),
            attr::READONLY | attr::REPARSE_POINT
        );
        assert_eq!(reparse_tag(&m(NodeKind::Symlink)), REPARSE_TAG_SYMLINK);
        assert_eq!(
            attributes(&m(NodeKind::Reparse)) & attr::REPARSE_POINT,
            attr::REPARSE_POINT
        );
        assert_eq!(reparse_tag(&m(NodeKind::File)), 0);
        assert_eq!(
            attributes(&m(NodeKind::Fifo)),
            attr::READONLY | attr::SYSTEM
        );
    }

    #[test]
    fn filetimes_round_trip_with_ntfs_timestamps() {
        // An NTFS timestamp read into a Time gives back the same FILETIME.
        for nt in [
            116_444_736_000_000_000u64,
            132_537_600_001_234_567,
            1,
            0x01D9_0000_0000_0000,
        ] {
            assert_eq!(filetime(Some(Time::from_nt(nt))), nt, "{nt}");
        }
        assert_eq!(filetime(None), 0);
        assert_eq!(
            filetime(Some(Time { secs: 0, nanos: 0 })),
            FILETIME_UNIX_EPOCH
        );
        // Before 1601: no time rather than a wrapped one.
        assert_eq!(
            filetime(Some(Time {
                secs: -11_644_473_601,
                nanos: 0
            })),
            0
        );
        // 2021-01-01T00:00:00.5Z
        assert_eq!(
            filetime(Some(Time {
                secs: 1_609_459_200,
                nanos: 500_000_000
            })),
            132_539_328_005_000_000
        );
        let mut m = Metadata::new(NodeKind::File, 0);
        m.mtime = Some(Time { secs: 10, nanos: 0 });
        m.atime = Some(Time { secs: 5, nanos: 0 });
        let (c, a, w) = times(&m);
        assert_eq!((c, a), (w, filetime(m.atime)));
    }

    #[test]
    fn errors_become_ntstatus() {
        assert_eq!(
            status_of(&Error::NotFound("x".into())),
            status::OBJECT_NAME_NOT_FOUND
        );
        assert_eq!(
            status_of(&Error::corrupt("i", "chunk", 0, "bad")),
            status::FILE_CORRUPT_ERROR
        );
        assert_eq!(
            status_of(&Error::Damaged("p2: chunk".into())),
            status::FILE_CORRUPT_ERROR
        );
        assert_eq!(
            status_of(&Error::damaged_metadata("NTFS", Some(4096), "record 5")),
            status::FILE_CORRUPT_ERROR
        );
        assert_eq!(
            status_of(&Error::UnsupportedFeature("EFS".into())),
            status::NOT_SUPPORTED
        );
        assert_eq!(
            status_of(&Error::NotADirectory("x".into())),
            status::NOT_A_DIRECTORY
        );
        assert_eq!(
            status_of(&Error::IsADirectory("x".into())),
            status::FILE_IS_A_DIRECTORY
        );
        assert_eq!(
            status_of(&Error::Ambiguous("a, A".into())),
            status::OBJECT_NAME_COLLISION
        );
        assert_eq!(
            status_of(&Error::Invalid("no link".into())),
            status::ACCESS_DENIED
        );
        assert_eq!(
            status_of(&Error::io("i", "read", std::io::Error::other("x"))),
            status::IO_DEVICE_ERROR
        );
    }

    #[test]
    fn writes_creates_and_deletes_are_refused() {
        use create_option::*;
        use disposition::*;
        let req = |desired_access, disposition, options| OpenRequest {
            desired_access,
            disposition,
            options,
        };
        const READ: u32 = 0x0012_0089; // FILE_GENERIC_READ
        const WRITE: u32 = 0x0012_0116; // FILE_GENERIC_WRITE
        let file = Some(false);
        let dir = Some(true);
        assert_eq!(decide_open(req(READ, OPEN, 0), file, true), Ok(()));
        assert_eq!(decide_open(req(READ, OPEN_IF, 0), file, true), Ok(()));
        assert_eq!(
            decide_open(req(READ, OPEN, DIRECTORY_FILE), dir, true),
            Ok(())
        );
        // MAXIMUM_ALLOWED asks for nothing in particular: granted read-only.
        assert_eq!(decide_open(req(0x0200_0000, OPEN, 0), file, true), Ok(()));
        let wp = Err(status::MEDIA_WRITE_PROTECTED);
        assert_eq!(decide_open(req(WRITE, OPEN, 0), file, true), wp);
        assert_eq!(decide_open(req(0x4000_0000, OPEN, 0), file, true), wp);
        assert_eq!(decide_open(req(0x0001_0000, OPEN, 0), file, true), wp); // DELETE
        assert_eq!(
            decide_open(req(READ, OPEN, DELETE_ON_CLOSE), file, true),
            wp
        );
        for d in [SUPERSEDE, OVERWRITE, OVERWRITE_IF] {
            assert_eq!(decide_open(req(READ, d, 0), file, true), wp, "{d}");
        }
        for d in [SUPERSEDE, CREATE, OPEN_IF, OVERWRITE_IF] {
            assert_eq!(decide_open(req(WRITE, d, 0), None, true), wp, "{d}");
        }
        assert_eq!(
            decide_open(req(WRITE, CREATE, 0), file, true),
            Err(status::OBJECT_NAME_COLLISION)
        );
        assert_eq!(
            decide_open(req(READ, OPEN, 0), None, true),
            Err(status::OBJECT_NAME_NOT_FOUND)
        );
        assert_eq!(
            decide_open(req(READ, OPEN, 0), None, false),
            Err(status::OBJECT_PATH_NOT_FOUND)
        );
        assert_eq!(
            decide_open(req(READ, OPEN, NON_DIRECTORY_FILE), dir, true),
            Err(status::FILE_IS_A_DIRECTORY)
        );
        assert_eq!(
            decide_open(req(READ, OPEN, DIRECTORY_FILE), file, true),
            Err(status::NOT_A_DIRECTORY)
        );
    }

    #[test]
    fn wide_strings() {
        assert_eq!(wide("X:\\"), [88, 58, 92, 0]);
        let mut f = [0xFFFFu16; 4];
        copy_wide("strata", &mut f);
        assert_eq!(f, [115, 116, 114, 0]);
        let mut f = [0xFFFFu16; 8];
        copy_wide("é", &mut f);
        assert_eq!(&f[..2], &[0xE9, 0]);
    }
}
