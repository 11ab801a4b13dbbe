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

/// Marks a new output file sparse, so that ranges never written take no space and read as
/// zeros. Files on Linux filesystems are sparse already; NTFS files only after
/// FSCTL_SET_SPARSE (without it, writing far into a restored disk file first fills
/// everything before it with zeros). A filesystem without sparse files (FAT) refuses,
/// and the file is simply written in full.
pub fn make_sparse(file: &File) -> io::Result<()> {
    #[cfg(windows)]
    {
        windows::set_sparse(file)
    }
    #[cfg(not(windows))]
    {
        let _ = file;
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
    /// Every read of the handle must start and end on a multiple of this, into memory
    /// aligned to it (Windows disk and volume handles); 1 for everything else.
    align: u32,
}

/// True for a Windows device path: `\\.\PhysicalDrive0`, `\\.\C:`, `\\?\Volume{…}` (no
/// trailing `\`) and `\\?\GLOBALROOT\Device\…` (a shadow copy). Such paths name a
/// disk or volume, not a file, and `std::fs::metadata` cannot describe them. Checked by
/// text, so it can be tested on every system.
pub fn is_windows_device_path(path: &str) -> bool {
    let p = path.replace('/', "\\");
    let lower = p.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("\\\\.\\") {
        return !rest.is_empty() && !rest.contains('\\');
    }
    if let Some(rest) = lower.strip_prefix("\\\\?\\") {
        return rest.starts_with("globalroot\\device\\")
            || (rest.starts_with("volume{") && !rest.ends_with('\\'));
    }
    false
}

/// The sector-aligned span that covers `len` bytes at `offset`: its start and length.
/// `end_limit` (the device length) caps the end, so the span never reaches past the device
/// (whose length is a whole number of its own sectors).
pub fn aligned_span(offset: u64, len: usize, align: u32, end_limit: u64) -> (u64, usize) {
    let a = u64::from(align.max(1));
    let start = offset / a * a;
    let end = (offset + len as u64).div_ceil(a) * a;
    let end = end.min(end_limit.max(offset + len as u64));
    (start, (end - start) as usize)
}

/// Reads `buf.len()` bytes at `offset` through `read`, which only accepts spans aligned to
/// `align` (offset, length and memory address), as Windows disk and volume handles do.
/// Aligned requests go straight through; others are read into an aligned bounce buffer
/// and copied.
pub fn read_aligned(
    read: impl Fn(&mut [u8], u64) -> io::Result<()>,
    offset: u64,
    buf: &mut [u8],
    align: u32,
    dev_len: u64,
) -> io::Result<()> {
    let a = align.max(1) as usize;
    if offset.is_multiple_of(a as u64)
        && buf.len().is_multiple_of(a)
        && (buf.as_ptr() as usize).is_multiple_of(a)
    {
        return read(buf, offset);
    }
    let (start, span) = aligned_span(offset, buf.len(), align, dev_len);
    let mut bounce = vec![0u8; span + a];
    let aligned = aligned_part(&mut bounce, span, a);
    read(aligned, start)?;
    let from = (offset - start) as usize;
    buf.copy_from_slice(&aligned[from..from + buf.len()]);
    Ok(())
}

/// The `len` bytes of `bounce` (`len + align` long) that start at an `align`ed address: a
/// Vec gives no alignment guarantee beyond its element's.
fn aligned_part(bounce: &mut [u8], len: usize, align: usize) -> &mut [u8] {
    let skew = (align - bounce.as_ptr() as usize % align) % align;
    &mut bounce[skew..skew + len]
}

/// Writes `buf` at `offset` through `write`, which only accepts memory aligned to `align`
/// (Windows disk handles); `offset` and the length must already be multiples of it (a
/// restore writes whole blocks, and disks hold whole sectors).
pub fn write_aligned(
    write: impl Fn(&[u8], u64) -> io::Result<()>,
    offset: u64,
    buf: &[u8],
    align: u32,
) -> io::Result<()> {
    let a = align.max(1) as usize;
    if !offset.is_multiple_of(a as u64) || !buf.len().is_multiple_of(a) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "write of {} bytes at {offset} is not aligned to the {a}-byte sectors",
                buf.len()
            ),
        ));
    }
    if (buf.as_ptr() as usize).is_multiple_of(a) {
        return write(buf, offset);
    }
    let mut bounce = vec![0u8; buf.len() + a];
    let aligned = aligned_part(&mut bounce, buf.len(), a);
    aligned.copy_from_slice(buf);
    write(aligned, offset)
}

impl FileDev {
    /// Opens `path` read-only. Directories and other non-disk objects are refused with a
    /// message saying what they are. On Windows, device paths (`\\.\PhysicalDrive0`,
    /// `\\.\C:`, a shadow copy's `\\?\GLOBALROOT\Device\…`) open the disk or volume.
    pub fn open(path: &Path) -> Result<FileDev> {
        #[cfg(windows)]
        if path.to_str().is_some_and(is_windows_device_path) {
            return windows::open_device(path);
        }
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
            align: 1,
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
        let read = |b: &mut [u8], at: u64| read_exact_at(&self.file, b, at);
        let r = if self.align > 1 {
            read_aligned(read, offset, buf, self.align, self.len)
        } else {
            read(buf, offset)
        };
        r.map_err(|e| {
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

/// Windows disks, volumes and shadow copies as sources.
#[cfg(windows)]
pub mod windows {
    use super::{open_error, DevKind, FileDev};
    use crate::error::{Error, Result};
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::windows::fs::OpenOptionsExt;
    use std::os::windows::io::AsRawHandle;
    use std::path::Path;
    use windows_sys::Win32::Storage::FileSystem::{FILE_SHARE_READ, FILE_SHARE_WRITE};
    use windows_sys::Win32::System::Ioctl::{
        DISK_GEOMETRY, FSCTL_SET_SPARSE, GET_LENGTH_INFORMATION, IOCTL_DISK_GET_DRIVE_GEOMETRY,
        IOCTL_DISK_GET_LENGTH_INFO,
    };
    use windows_sys::Win32::System::IO::DeviceIoControl;

    /// Opens a disk, volume or shadow copy read-only. Others keep reading and writing it
    /// (a mounted volume stays in use), hence FILE_SHARE_READ | FILE_SHARE_WRITE; it is
    /// never opened for writing here.
    pub fn open_device(path: &Path) -> Result<FileDev> {
        let file = open_shared(path, false).map_err(|e| device_error(path, e))?;
        let len = length(&file).map_err(|e| Error::io(path, "cannot read the device size", e))?;
        // The geometry gives the logical sector size; devices that have none (some shadow
        // copies) are read in 4 KiB-aligned spans, a multiple of every sector size.
        let (sector_size, align) = match sector_size(&file) {
            Some(ss) => (ss, ss),
            None => (512, 4096),
        };
        Ok(FileDev {
            file,
            path: path.to_path_buf(),
            len,
            sector_size,
            kind: DevKind::BlockDevice,
            align,
        })
    }

    /// Opens a device path with read and write sharing; `write` asks for write access too.
    pub fn open_shared(path: &Path, write: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(write)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
            .open(path)
    }

    /// The error for a device that cannot be opened, with the usual cause spelled out.
    pub fn device_error(path: &Path, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::PermissionDenied {
            Error::Invalid(format!(
                "{}: access denied: reading disks and volumes needs an administrator \
                 command prompt",
                path.display()
            ))
        } else {
            open_error(path, "source", e)
        }
    }

    /// One DeviceIoControl call without input that fills `out` (`()` for none).
    fn ioctl<T>(file: &File, code: u32, out: &mut T) -> io::Result<()> {
        let mut got = 0u32;
        let size = std::mem::size_of::<T>();
        let ptr = if size == 0 {
            std::ptr::null_mut()
        } else {
            (out as *mut T).cast()
        };
        // SAFETY: the handle is open for the call's duration, `out` is valid for writes of
        // size_of::<T>() bytes (or null when there is no output), and no overlapped I/O is
        // requested.
        let ok = unsafe {
            DeviceIoControl(
                file.as_raw_handle(),
                code,
                std::ptr::null(),
                0,
                ptr,
                size as u32,
                &mut got,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Marks a file sparse (FSCTL_SET_SPARSE without input: set).
    pub fn set_sparse(file: &File) -> io::Result<()> {
        ioctl(file, FSCTL_SET_SPARSE, &mut ())
    }

    /// Length in bytes of a disk or volume (IOCTL_DISK_GET_LENGTH_INFO).
    pub fn length(file: &File) -> io::Result<u64> {
        let mut info = GET_LENGTH_INFORMATION { Length: 0 };
        ioctl(file, IOCTL_DISK_GET_LENGTH_INFO, &mut info)?;
        Ok(info.Length as u64)
    }

    /// Logical sector size (IOCTL_DISK_GET_DRIVE_GEOMETRY), when the device reports one.
    fn sector_size(file: &File) -> Option<u32> {
        // SAFETY: DISK_GEOMETRY is plain data; all zeros is a valid value.
        let mut g: DISK_GEOMETRY = unsafe { std::mem::zeroed() };
        ioctl(file, IOCTL_DISK_GET_DRIVE_GEOMETRY, &mut g).ok()?;
        let ss = g.BytesPerSector;
        (ss.is_power_of_two() && (512..=65536).contains(&ss)).then_some(ss)
    }
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
    fn windows_device_paths_are_told_from_files() {
        for p in [
            r"\\.\PhysicalDrive0",
            r"\\.\physicaldrive12",
            r"\\.\C:",
            r"//./D:",
            r"\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy3",
            r"\\?\globalroot\device\harddiskvolume2",
            r"\\?\Volume{4c1b02c1-d990-11dc-99ae-806e6f6e6963}",
        ] {
            assert!(is_windows_device_path(p), "{p}");
        }
        for p in [
            r"C:\disk.img",
            r"\\?\C:\images\disk.img",
            r"\\.\C:\disk.img",
            r"\\?\Volume{4c1b02c1-d990-11dc-99ae-806e6f6e6963}\",
            r"\\server\share\disk.img",
            r"\\.\",
            "/dev/sda",
            "disk.img",
        ] {
            assert!(!is_windows_device_path(p), "{p}");
        }
    }

    #[test]
    fn aligned_spans_cover_the_request_and_stay_on_the_device() {
        assert_eq!(aligned_span(0, 512, 512, 1 << 20), (0, 512));
        assert_eq!(aligned_span(1, 10, 512, 1 << 20), (0, 512));
        assert_eq!(aligned_span(510, 4, 512, 1 << 20), (0, 1024));
        assert_eq!(aligned_span(4096 + 100, 5000, 4096, 1 << 20), (4096, 8192));
        // Near the end of a device whose length is not a multiple of the alignment.
        assert_eq!(aligned_span(10_000, 200, 4096, 10_240), (8192, 2048));
        for align in [512u32, 4096] {
            for (off, len) in [(0u64, 1usize), (511, 2), (4095, 8193), (12345, 678)] {
                let (start, span) = aligned_span(off, len, align, u64::MAX);
                assert_eq!(start % u64::from(align), 0);
                assert_eq!(span % align as usize, 0);
                assert!(start <= off && start + span as u64 >= off + len as u64);
            }
        }
    }

    /// Every read the device sees is aligned (offset, length and address), whatever the
    /// request, and the bytes returned are the requested ones.
    #[test]
    fn unaligned_reads_go_through_an_aligned_bounce_buffer() {
        let disk: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for align in [512u32, 4096] {
            let calls = std::cell::Cell::new(0);
            let device = |b: &mut [u8], at: u64| -> io::Result<()> {
                let a = align as usize;
                assert_eq!(at % a as u64, 0, "offset {at}");
                assert_eq!(b.len() % a, 0, "length {}", b.len());
                assert_eq!(b.as_ptr() as usize % a, 0, "address");
                b.copy_from_slice(&disk[at as usize..at as usize + b.len()]);
                calls.set(calls.get() + 1);
                Ok(())
            };
            for (off, len) in [(0u64, 512usize), (1, 1), (511, 2), (4000, 9000), (65535, 1)] {
                let mut buf = vec![0u8; len + 1];
                // An odd address, on purpose.
                let buf = &mut buf[1..];
                read_aligned(device, off, buf, align, disk.len() as u64).unwrap();
                assert_eq!(buf, &disk[off as usize..off as usize + len], "{off}+{len}");
            }
            assert_eq!(calls.get(), 5);
        }
    }

    #[test]
    fn device_writes_use_aligned_memory_and_refuse_unaligned_spans() {
        let disk = std::cell::RefCell::new(vec![0u8; 16384]);
        let device = |b: &[u8], at: u64| -> io::Result<()> {
            assert_eq!(b.as_ptr() as usize % 512, 0, "address");
            disk.borrow_mut()[at as usize..at as usize + b.len()].copy_from_slice(b);
            Ok(())
        };
        let data = noise(4097);
        write_aligned(device, 1024, &data[1..], 512).unwrap();
        assert_eq!(&disk.borrow()[1024..1024 + 4096], &data[1..]);
        assert!(write_aligned(device, 100, &data[..512], 512).is_err());
        assert!(write_aligned(device, 512, &data[..100], 512).is_err());
    }

    fn noise(n: usize) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    /// An output marked sparse is written at its end without filling what lies before.
    #[test]
    fn sparse_outputs_are_written_at_their_end() {
        let f = tempfile::NamedTempFile::new().unwrap();
        make_sparse(f.as_file()).unwrap();
        let len = 8u64 << 30;
        f.as_file().set_len(len).unwrap();
        write_all_at(f.as_file(), b"end", len - 3).unwrap();
        let mut buf = [1u8; 3];
        read_exact_at(f.as_file(), &mut buf, 4 << 30).unwrap();
        assert_eq!(buf, [0; 3]);
        read_exact_at(f.as_file(), &mut buf, len - 3).unwrap();
        assert_eq!(&buf, b"end");
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            assert!(f.as_file().metadata().unwrap().blocks() < 1024);
        }
    }

    #[test]
    fn directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = FileDev::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }
}
