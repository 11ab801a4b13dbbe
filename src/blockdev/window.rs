//! A window onto part of a device: a partition, seen as a device of its own.

use super::BlockDev;
use crate::error::{Error, Result};
use std::io::SeekFrom;
use std::ops::Deref;

/// Bytes `[start, start + len)` of `dev`, read as a device starting at 0.
///
/// Bounds are checked once at construction (the window must lie inside the device) and on
/// every read (a read past the window's end is an error, never a read of the bytes after it).
/// `D` is any handle to the device: a reference for a short look (partition probing), an
/// `Arc` for a window that lives on its own (a mounted filesystem).
#[derive(Clone, Copy)]
pub struct Window<D> {
    dev: D,
    start: u64,
    len: u64,
}

impl<D> Window<D>
where
    D: Deref,
    D::Target: BlockDev,
{
    /// A window of `len` bytes at `start`; refused when it does not fit in `dev`.
    pub fn new(dev: D, start: u64, len: u64) -> Result<Window<D>> {
        match start.checked_add(len) {
            Some(end) if end <= dev.len() => Ok(Window { dev, start, len }),
            _ => Err(Error::Invalid(format!(
                "window of {len} bytes at byte {start} does not fit in a device of {} bytes",
                dev.len()
            ))),
        }
    }

    /// Where the window starts on the underlying device.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl<D> BlockDev for Window<D>
where
    D: Deref + Send + Sync,
    D::Target: BlockDev,
{
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(Error::Invalid(format!(
                "read of {} bytes at {offset} is past the end of a {}-byte partition",
                buf.len(),
                self.len
            )));
        }
        // start + offset <= start + len, which was checked in `new`.
        self.dev.read_at(self.start + offset, buf)
    }

    fn created(&self) -> Option<crate::fs::browse::Time> {
        self.dev.created()
    }
}

/// A [`std::io::Read`] + [`std::io::Seek`] cursor over a device, for parsers that want one
/// (the `ntfs` crate). Writes are not offered.
pub struct Cursor<'d> {
    dev: &'d dyn BlockDev,
    pos: u64,
}

impl<'d> Cursor<'d> {
    /// A cursor at byte 0.
    pub fn new(dev: &'d dyn BlockDev) -> Cursor<'d> {
        Cursor { dev, pos: 0 }
    }
}

impl std::io::Read for Cursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        read_at_cursor(self.dev, &mut self.pos, buf)
    }
}

impl std::io::Seek for Cursor<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        seek_cursor(self.dev.len(), &mut self.pos, pos)
    }
}

/// `Read::read` for a cursor at `*pos` over `dev`: reads what is left up to `buf.len()`
/// bytes and moves the cursor. Shared by every `Read` adapter over a device.
pub fn read_at_cursor(dev: &dyn BlockDev, pos: &mut u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let left = dev.len().saturating_sub(*pos);
    let n = (buf.len() as u64).min(left) as usize;
    if n == 0 {
        return Ok(0);
    }
    dev.read_at(*pos, &mut buf[..n])?;
    *pos += n as u64;
    Ok(n)
}

/// `Seek::seek` for a cursor at `*pos` over a device of `len` bytes.
pub fn seek_cursor(len: u64, pos: &mut u64, to: SeekFrom) -> std::io::Result<u64> {
    let new = match to {
        SeekFrom::Start(p) => Some(p),
        SeekFrom::End(d) => len.checked_add_signed(d),
        SeekFrom::Current(d) => pos.checked_add_signed(d),
    }
    .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before byte 0"))?;
    *pos = new;
    Ok(new)
}

/// A device held in memory (tests and small images).
pub struct MemDev(pub Vec<u8>);

impl BlockDev for MemDev {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).ok();
        let src = start
            .and_then(|s| s.checked_add(buf.len()).map(|e| (s, e)))
            .and_then(|(s, e)| self.0.get(s..e));
        match src {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(Error::Invalid(format!(
                "read of {} bytes at {offset} is past the end ({} bytes)",
                buf.len(),
                self.0.len()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    #[test]
    fn window_checks_bounds() {
        let dev = MemDev((0..=255u8).collect());
        assert!(Window::new(&dev, 200, 57).is_err());
        assert!(Window::new(&dev, u64::MAX, 2).is_err());
        let w = Window::new(&dev, 16, 32).unwrap();
        let mut b = [0u8; 4];
        w.read_at(28, &mut b).unwrap();
        assert_eq!(b, [44, 45, 46, 47]);
        assert!(w.read_at(29, &mut b).is_err());
        assert!(w.read_at(u64::MAX - 1, &mut b).is_err());
    }

    #[test]
    fn cursor_reads_and_seeks() {
        let dev = MemDev((0..100u8).collect());
        let mut c = Cursor::new(&dev);
        c.seek(SeekFrom::End(-3)).unwrap();
        let mut v = Vec::new();
        c.read_to_end(&mut v).unwrap();
        assert_eq!(v, [97, 98, 99]);
        assert!(c.seek(SeekFrom::Current(-200)).is_err());
    }
}
