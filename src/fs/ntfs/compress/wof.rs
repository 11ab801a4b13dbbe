//! Files compressed by Windows' overlay filter (WOF: "CompactOS", `compact /exe`).
//!
//! Such a file carries a reparse point with tag `IO_REPARSE_TAG_WOF` whose data holds
//! `WOF_EXTERNAL_INFO` (version 1, provider 2 = a compressed file) and
//! `FILE_PROVIDER_EXTERNAL_INFO_V1` (version 1, algorithm). Its unnamed `$DATA` is sparse
//! and only gives the uncompressed size; the data is in the stream `WofCompressedData`:
//! a table of little-endian chunk offsets (one per chunk after the first, counted from
//! the end of the table; 4 bytes each, 8 when the file is 4 GiB or more), then the
//! chunks. Every chunk holds `chunk size` bytes of the file (the last one what remains)
//! and is decoded on its own; a chunk stored at its full size is stored as is.

use super::{lzx, xpress};

/// How a WOF-compressed file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// XPRESS with 4 KiB chunks.
    Xpress4k,
    /// LZX with 32 KiB chunks.
    Lzx,
    /// XPRESS with 8 KiB chunks.
    Xpress8k,
    /// XPRESS with 16 KiB chunks.
    Xpress16k,
}

impl Algorithm {
    /// Bytes of the file each chunk holds.
    pub fn chunk_size(self) -> u64 {
        match self {
            Algorithm::Xpress4k => 4096,
            Algorithm::Xpress8k => 8192,
            Algorithm::Xpress16k => 16384,
            Algorithm::Lzx => 32768,
        }
    }

    /// Decodes one chunk into exactly `size` bytes.
    pub fn decompress(self, src: &[u8], size: usize) -> Result<Vec<u8>, String> {
        let out = match self {
            Algorithm::Lzx => lzx::decompress(src, size)?,
            _ => xpress::decompress(src, size)?,
        };
        if out.len() != size {
            return Err(format!(
                "chunk decodes to {} bytes instead of {size}",
                out.len()
            ));
        }
        Ok(out)
    }
}

/// Reparse tag of WOF.
pub const TAG: u32 = 0x8000_0017;
/// The named stream holding the compressed data.
pub const STREAM: &str = "WofCompressedData";

/// The algorithm a WOF reparse point (tag, length and reserved fields included) gives.
///
/// # Errors
///
/// Why the file cannot be read: another WOF provider (a file backed by a WIM archive
/// outside the volume, "WIMBoot"), or an unknown version or algorithm.
pub fn parse_reparse(r: &[u8]) -> Result<Algorithm, String> {
    let u32at = |o: usize| {
        r.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if u32at(0) != Some(TAG) {
        return Err("not a WOF reparse point".into());
    }
    match (u32at(8), u32at(12)) {
        (Some(1), Some(2)) => {}
        (Some(1), Some(1)) => {
            return Err("its data lives in a WIM archive outside the volume (WIMBoot)".into())
        }
        (v, p) => {
            return Err(format!(
                "unknown WOF version {} or provider {} in its reparse point",
                shown(v),
                shown(p)
            ))
        }
    }
    match (u32at(16), u32at(20)) {
        (Some(1), Some(0)) => Ok(Algorithm::Xpress4k),
        (Some(1), Some(1)) => Ok(Algorithm::Lzx),
        (Some(1), Some(2)) => Ok(Algorithm::Xpress8k),
        (Some(1), Some(3)) => Ok(Algorithm::Xpress16k),
        (v, a) => Err(format!(
            "unknown WOF file version {} or algorithm {} in its reparse point",
            shown(v),
            shown(a)
        )),
    }
}

/// A field of the reparse point for a message ("missing" past its end).
fn shown(v: Option<u32>) -> String {
    v.map_or_else(|| "missing".into(), |v| v.to_string())
}

/// Where chunk `i` of a file of `size` bytes lies in its `WofCompressedData` stream of
/// `stored` bytes: (first byte, stored length, bytes it decodes to). `entry(k)` reads
/// offset table entry `k`.
///
/// # Errors
///
/// A message when the table is inconsistent: offsets decreasing or past the stream, a
/// chunk stored larger than its data.
pub fn chunk_location(
    alg: Algorithm,
    size: u64,
    stored: u64,
    i: u64,
    mut entry: impl FnMut(u64, usize) -> Result<u64, String>,
) -> Result<(u64, u64, usize), String> {
    let cs = alg.chunk_size();
    let chunks = size.div_ceil(cs);
    let width = if size >= 1 << 32 { 8 } else { 4 };
    let table = (chunks - 1) * width as u64;
    if table > stored {
        return Err(format!(
            "its chunk table ({table} bytes) is longer than the compressed data ({stored})"
        ));
    }
    let data = stored - table;
    let start = if i == 0 { 0 } else { entry(i - 1, width)? };
    let end = if i + 1 == chunks {
        data
    } else {
        entry(i, width)?
    };
    let len = usize::try_from((size - i * cs).min(cs)).map_err(|e| e.to_string())?;
    if start > end || end > data || end - start > len as u64 {
        return Err(format!(
            "chunk {i} has offsets {start}..{end} outside the compressed data or larger \
             than its {len} bytes"
        ));
    }
    Ok((table + start, end - start, len))
}

#[cfg(test)]
// Test inputs are built from bits and small counters cut down on purpose.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn reparse_points_name_the_algorithm_or_why_not() {
        let rp = |provider: u32, alg: u32| {
            let mut v = TAG.to_le_bytes().to_vec();
            v.extend_from_slice(&[16, 0, 0, 0]); // data length, reserved
            for x in [1, provider, 1, alg] {
                v.extend_from_slice(&u32::to_le_bytes(x));
            }
            v
        };
        assert_eq!(parse_reparse(&rp(2, 1)), Ok(Algorithm::Lzx));
        assert_eq!(parse_reparse(&rp(2, 3)), Ok(Algorithm::Xpress16k));
        assert!(parse_reparse(&rp(1, 0)).unwrap_err().contains("WIMBoot"));
        assert!(parse_reparse(&rp(2, 9)).unwrap_err().contains("algorithm"));
        assert!(parse_reparse(&rp(2, 0)[..20]).is_err());
    }

    #[test]
    fn random_chunks_never_panic() {
        // Damaged data must give an error (or wrong bytes), never a panic or a hang.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..400 {
            let len = 1 + round * 7 % 1200;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            for alg in [Algorithm::Xpress4k, Algorithm::Lzx] {
                let _ = alg.decompress(&data, alg.chunk_size() as usize);
            }
            // A valid XPRESS table (512 codes of 9 bits) before the noise: symbols decode,
            // matches reach anywhere.
            let mut valid = vec![0x99u8; 256];
            valid.extend_from_slice(&data);
            let _ = Algorithm::Xpress16k.decompress(&valid, 16384);
        }
    }

    #[test]
    fn chunk_table_gives_offsets_after_the_table() {
        // 3 chunks of 4 KiB (the last one 100 bytes): two 4-byte entries.
        let table = [50u64, 4146];
        let e = |k: u64, w: usize| {
            assert_eq!(w, 4);
            Ok(table[k as usize])
        };
        let size = 8192 + 100;
        let stored = 8 + 4146 + 60;
        let a = Algorithm::Xpress4k;
        assert_eq!(chunk_location(a, size, stored, 0, e), Ok((8, 50, 4096)));
        assert_eq!(chunk_location(a, size, stored, 1, e), Ok((58, 4096, 4096)));
        assert_eq!(chunk_location(a, size, stored, 2, e), Ok((4154, 60, 100)));
        // A chunk that claims more bytes than it decodes to is refused.
        assert!(chunk_location(a, size, stored + 100, 2, e).is_err());
        // Files of 4 GiB and more have 8-byte entries.
        let big = |_: u64, w: usize| Ok(if w == 8 { 10 } else { 0 });
        assert_eq!(
            chunk_location(Algorithm::Lzx, 1 << 32, 1 << 21, 0, big)
                .unwrap()
                .0,
            8 * ((1 << 17) - 1)
        );
    }
}
