//! Files and block devices as [`BlockDev`]s: the sources of `create` and the files
//! images are read from.

use super::BlockDev;
use crate::error::{Error, Result};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Reads exactly `buf.len()` bytes at `offset`, without moving a shared file position
/// (so threads can share the handle).
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut done, mut buf) = (0u64, buf);
        while !buf.is_empty() {
            match file.seek_read(buf, offset + done) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    done += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Writes all of `buf` at `offset` (positioned, like [`read_exact_at`]).
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.write_all_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut done, mut buf) = (0u64, buf);
        while !buf.is_empty() {
            match file.seek_write(buf, offset + done) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    done += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The error for a file that cannot be opened: "does not exist" in the same words on
/// every system, otherwise the system's own reason.
pub fn open_error(path: &Path, what: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::Invalid(format!("{}: {what} does not exist", path.display()))
    } else {
        Error::io(
            path,
            if what == "image" {
                "cannot open image"
            } else {
                "cannot open source"
            },
            e,
        )
    }
}

/// What kind of object a [`FileDev`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevKind {
    /// A regular file holding a raw disk or partition.
    RegularFile,
    /// A block device (whole disk or partition).
    BlockDevice,
}

/// A disk, partition or raw disk file opened read-only.
#[derive(Debug)]
pub struct FileDev {
    file: File,
    path: PathBuf,
    len: u64,
    sector_size: u32,
    kind: DevKind,
}

impl FileDev {
    /// Opens `path` read-only. Directories and other non-disk objects are refused with a
    /// message saying what they are.
    pub fn open(path: &Path) -> Result<FileDev> {
        let meta = std::fs::metadata(path).map_err(|e| open_error(path, "source", e))?;
        if meta.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: is a directory, not a disk, partition or disk image file",
                path.display()
            )));
        }
        let kind = if meta.is_file() {
            DevKind::RegularFile
        } else if is_block_device(&meta) {
            DevKind::BlockDevice
        } else {
            return Err(Error::Invalid(format!(
                "{}: is not a disk, partition or regular file",
                path.display()
            )));
        };
        let file = File::open(path).map_err(|e| open_error(path, "source", e))?;
        let (len, sector_size) = match kind {
            DevKind::RegularFile => (meta.len(), 512),
            DevKind::BlockDevice => device_geometry(&file)
                .map_err(|e| Error::io(path, "cannot read the device size", e))?,
        };
        Ok(FileDev {
            file,
            path: path.to_path_buf(),
            len,
            sector_size,
            kind,
        })
    }

    /// The logical sector size (512 for regular files unless overridden).
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    /// Overrides the sector size of a raw disk file (a file carries none of its own).
    pub fn set_sector_size(&mut self, size: u32) {
        self.sector_size = size;
    }

    /// File or block device.
    pub fn kind(&self) -> DevKind {
        self.kind
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open handle.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Byte ranges that may hold data. For a sparse regular file the holes are left out
    /// (SEEK_DATA/SEEK_HOLE), so an 8 GiB mostly-empty disk file is not read byte by byte;
    /// everywhere else this is the whole device.
    pub fn data_ranges(&self) -> Vec<(u64, u64)> {
        #[cfg(target_os = "linux")]
        if self.kind == DevKind::RegularFile {
            if let Some(r) = sparse_data_ranges(&self.file, self.len) {
                return r;
            }
        }
        if self.len == 0 {
            Vec::new()
        } else {
            vec![(0, self.len)]
        }
    }
}

impl BlockDev for FileDev {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(Error::Invalid(format!(
                "{}: read of {} bytes at {offset} is past the end ({} bytes)",
                self.path.display(),
                buf.len(),
                self.len
            )));
        }
        read_exact_at(&self.file, buf, offset).map_err(|e| {
            Error::Invalid(format!(
                "{}: cannot read {} bytes at byte {offset}: {e}",
                self.path.display(),
                buf.len()
            ))
        })
    }
}

#[cfg(unix)]
fn is_block_device(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_block_device()
}

#[cfg(not(unix))]
fn is_block_device(_meta: &std::fs::Metadata) -> bool {
    false
}

/// Size in bytes and logical sector size of a block device.
#[cfg(target_os = "linux")]
fn device_geometry(file: &File) -> io::Result<(u64, u32)> {
    use std::os::unix::io::AsRawFd;
    // _IOR(0x12, 114, size_t) and _IO(0x12, 104) from <linux/fs.h>.
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    const BLKSSZGET: libc::c_ulong = 0x1268;
    let mut size: u64 = 0;
    let mut ssz: libc::c_int = 0;
    // SAFETY: both ioctls write one integer of the given type into the pointed-to value.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(file.as_raw_fd(), BLKSSZGET as _, &mut ssz) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((size, u32::try_from(ssz).unwrap_or(512)))
}

#[cfg(not(target_os = "linux"))]
fn device_geometry(file: &File) -> io::Result<(u64, u32)> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    Ok((f.seek(SeekFrom::End(0))?, 512))
}

/// Data ranges of a sparse file, or None when the filesystem cannot tell.
#[cfg(target_os = "linux")]
fn sparse_data_ranges(file: &File, len: u64) -> Option<Vec<(u64, u64)>> {
    use std::os::unix::io::AsRawFd;
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: u64 = 0;
    while pos < len {
        // SAFETY: lseek on a valid descriptor; it does not touch memory.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            // ENXIO: no data after pos. Anything else: the filesystem does not support it.
            return (err.raw_os_error() == Some(libc::ENXIO)).then_some(out);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return None;
        }
        let (start, end) = (data as u64, (hole as u64).min(len));
        if end > start {
            out.push((start, end));
        }
        pos = end.max(start + 1);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn sparse_file_reports_only_its_data() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.as_file_mut().set_len(64 << 20).unwrap();
        f.seek(SeekFrom::Start(32 << 20)).unwrap();
        f.write_all(&[1u8; 4096]).unwrap();
        f.flush().unwrap();
        let dev = FileDev::open(f.path()).unwrap();
        let ranges = dev.data_ranges();
        assert!(ranges
            .iter()
            .any(|&(a, b)| a <= 32 << 20 && b >= (32 << 20) + 4096));
        // Only Linux reports holes (SEEK_DATA); elsewhere the whole file is read.
        #[cfg(target_os = "linux")]
        {
            let total: u64 = ranges.iter().map(|(a, b)| b - a).sum();
            assert!(total < 64 << 20, "holes were not skipped: {ranges:?}");
        }
        let mut buf = [0u8; 8];
        dev.read_at(32 << 20, &mut buf).unwrap();
        assert_eq!(buf, [1u8; 8]);
        assert!(dev.read_at((64 << 20) - 4, &mut buf).is_err());
    }

    #[test]
    fn directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = FileDev::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }
}
