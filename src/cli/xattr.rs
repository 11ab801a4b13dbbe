//! Writing what a copied file carries besides its contents: NTFS alternate data streams
//! and extended attributes, on the system `cp` runs on.
//!
//! On Linux both become extended attributes: a stream `s` as `user.s`, the way ntfs-3g
//! shows streams (`streams_interface=xattr`, its default), and `user.*` attributes as they
//! are. On Windows a stream is written as the stream `FILE:s` of the copy; extended
//! attributes are not kept there.

use std::path::Path;

/// Largest value Linux takes for one extended attribute (`XATTR_SIZE_MAX`).
pub const MAX_VALUE: u64 = 65536;

/// Why a destination refused an attribute, in words a user can act on.
pub fn refusal(e: &std::io::Error) -> String {
    #[cfg(unix)]
    match e.raw_os_error() {
        Some(libc::ENOTSUP) => {
            return "the destination does not support extended attributes".into()
        }
        Some(libc::ENOSPC) | Some(libc::E2BIG) | Some(libc::ERANGE) => {
            return format!("too large for an extended attribute on the destination ({e})")
        }
        _ => {}
    }
    format!("the destination refused it ({e})")
}

/// Sets extended attribute `name` (with its namespace: `user.x`) of `path` to `value`.
#[cfg(target_os = "linux")]
pub fn set(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    // SAFETY: both strings are NUL-terminated and `value` is valid for its length; the
    // call only reads them.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Extended attributes are only written on Linux.
#[cfg(not(target_os = "linux"))]
pub fn set(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let _ = (path, name, value);
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "extended attributes are not kept on this system",
    ))
}

/// Where the stream `name` of the copy at `path` is written, when streams are files of
/// their own (Windows: `path:name`).
#[cfg(windows)]
pub fn stream_path(path: &Path, name: &str) -> Option<std::path::PathBuf> {
    let mut s = path.as_os_str().to_owned();
    s.push(":");
    s.push(name);
    Some(s.into())
}

/// Streams are written as extended attributes here.
#[cfg(not(windows))]
pub fn stream_path(path: &Path, name: &str) -> Option<std::path::PathBuf> {
    let _ = (path, name);
    None
}
