//! Little-endian field access for the on-disk structures.
//!
//! All strata structures are little-endian with fixed offsets; these helpers keep parsers
//! free of index arithmetic that could panic on short input (callers check lengths first,
//! and `get` bounds-checks again).

/// Reads fixed-offset little-endian fields from a byte slice.
#[derive(Clone, Copy)]
pub struct LeFields<'a>(pub &'a [u8]);

impl<'a> LeFields<'a> {
    fn array<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(off..off.saturating_add(N)) {
            out.copy_from_slice(src);
        }
        out
    }
    /// `u8` at `off` (0 when out of range).
    pub fn u8(&self, off: usize) -> u8 {
        self.array::<1>(off)[0]
    }
    /// `u16` at `off` (0 when out of range).
    pub fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.array(off))
    }
    /// `u32` at `off` (0 when out of range).
    pub fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.array(off))
    }
    /// `u64` at `off` (0 when out of range).
    pub fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.array(off))
    }
    /// `i64` at `off` (0 when out of range).
    pub fn i64(&self, off: usize) -> i64 {
        i64::from_le_bytes(self.array(off))
    }
    /// `N` raw bytes at `off` (zeros when out of range).
    pub fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        self.array(off)
    }
}

/// Writes fixed-offset little-endian fields into a byte buffer.
pub struct LeWriter<'a>(pub &'a mut [u8]);

impl LeWriter<'_> {
    /// Copies `v` to `off`. Panics if the buffer is too short: buffers are sized by the caller
    /// from the same layout constants, so that is a bug, not bad input.
    pub fn put(&mut self, off: usize, v: &[u8]) {
        self.0[off..off + v.len()].copy_from_slice(v);
    }
    /// Stores `v` at `off`.
    pub fn u8(&mut self, off: usize, v: u8) {
        self.put(off, &[v]);
    }
    /// Stores `v` at `off`.
    pub fn u16(&mut self, off: usize, v: u16) {
        self.put(off, &v.to_le_bytes());
    }
    /// Stores `v` at `off`.
    pub fn u32(&mut self, off: usize, v: u32) {
        self.put(off, &v.to_le_bytes());
    }
    /// Stores `v` at `off`.
    pub fn u64(&mut self, off: usize, v: u64) {
        self.put(off, &v.to_le_bytes());
    }
    /// Stores `v` at `off`.
    pub fn i64(&mut self, off: usize, v: i64) {
        self.put(off, &v.to_le_bytes());
    }
}

/// `n` as a `usize` (a length, or an index into memory). Callers have bounded `n` by what
/// they checked on disk, so this fails only on a 32-bit system for a value past its address
/// space: an error, never a silently truncated length.
pub fn usize_of(n: u64) -> crate::error::Result<usize> {
    usize::try_from(n).map_err(|_| {
        crate::error::Error::UnsupportedFeature(format!(
            "a structure of {n} bytes does not fit in this system's memory"
        ))
    })
}

/// The smaller of `n` and `cap`, as a `usize`: a length read from disk limited by a
/// buffer's, without a truncating cast.
pub fn clamp_len(n: u64, cap: usize) -> usize {
    usize::try_from(n).map_or(cap, |n| n.min(cap))
}
