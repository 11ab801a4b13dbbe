//! The read interface every layer speaks: a fixed-size device read by byte position.
//!
//! Sources (disks, partitions, raw files) and images both implement [`BlockDev`]; partition
//! windows and filesystems will sit on top of it. Reads take `&self` so one device can be
//! shared by many threads (mount front-ends serve reads concurrently).

pub mod file;
pub mod window;

use crate::error::Result;

/// A read-only device of fixed length.
pub trait BlockDev: Send + Sync {
    /// Length in bytes.
    fn len(&self) -> u64;

    /// True for a zero-length device.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills all of `buf` from `offset`. Implementations return an error (never short data)
    /// when `offset + buf.len()` is past [`BlockDev::len`] or the bytes cannot be read.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// When the device's contents were captured (an image's creation time), where known:
    /// the time front-ends give files that have none of their own, such as the disk file of
    /// a raw mount.
    fn created(&self) -> Option<crate::fs::browse::Time> {
        None
    }
}

/// True when every byte of `buf` is zero. Works on 64-byte lanes so the compiler
/// vectorises it: this runs over every byte a backup reads.
pub fn is_zero(buf: &[u8]) -> bool {
    let mut lanes = buf.chunks_exact(64);
    let whole = lanes
        .by_ref()
        .all(|lane| lane.iter().fold(0u8, |acc, &b| acc | b) == 0);
    whole && lanes.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_zero_checks_every_byte() {
        let mut buf = vec![0u8; 4096 + 17];
        assert!(super::is_zero(&buf));
        for i in [0, 63, 64, 4095, 4096, 4112] {
            buf[i] = 1;
            assert!(!super::is_zero(&buf), "byte {i}");
            buf[i] = 0;
        }
    }
}
