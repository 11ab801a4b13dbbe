//! LZNT1, the compression NTFS uses for files in compressed folders ([MS-XCA] 2.5).
//!
//! A compressed stream is a sequence of chunks, each standing for 4096 bytes of data: a
//! 2-byte header (bits 0-11: chunk bytes after the header minus 1; bit 15: compressed),
//! then either the 4096 bytes as stored, or groups of a flag byte and eight tokens: a
//! literal byte (flag bit 0) or a 2-byte back reference (flag bit 1) whose split between
//! offset and length bits depends on how far into the chunk the output is. A header of 0
//! ends the stream. A chunk that decompresses to less than 4096 bytes is followed by zeros,
//! as ntfs-3g and Windows read it.

/// Bytes of data one chunk stands for.
pub const CHUNK: usize = 4096;

/// Decompresses `src` into at most `limit` bytes (the rest of `limit`, if the stream ends
/// early, is not filled: the caller pads with zeros).
///
/// # Errors
///
/// A message naming the byte offset in `src` when the stream is malformed: a chunk longer
/// than its data, a back reference before the chunk's start.
pub fn decompress(src: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out: Vec<u8> = Vec::with_capacity(limit);
    let mut i = 0usize;
    while i + 2 <= src.len() && out.len() < limit {
        let h = u16::from_le_bytes([src[i], src[i + 1]]);
        if h == 0 {
            break;
        }
        let start = i + 2;
        let end = start + usize::from(h & 0x0FFF) + 1;
        if end > src.len() {
            return Err(format!(
                "LZNT1 chunk at byte {i} needs {} bytes, {} are left",
                end - start,
                src.len() - start
            ));
        }
        let chunk_start = out.len();
        if h & 0x8000 == 0 {
            out.extend_from_slice(&src[start..end]);
        } else {
            let mut j = start;
            'chunk: while j < end {
                let flags = src[j];
                j += 1;
                for bit in 0..8 {
                    if j >= end {
                        break 'chunk;
                    }
                    if flags >> bit & 1 == 0 {
                        out.push(src[j]);
                        j += 1;
                        continue;
                    }
                    if j + 2 > end {
                        return Err(format!("LZNT1 back reference cut short at byte {j}"));
                    }
                    let t = usize::from(u16::from_le_bytes([src[j], src[j + 1]]));
                    j += 2;
                    let pos = out.len() - chunk_start;
                    let mut len_bits = 12;
                    let mut p = pos.wrapping_sub(1);
                    if pos == 0 {
                        return Err(format!(
                            "LZNT1 back reference at byte {} with no data before it",
                            j - 2
                        ));
                    }
                    while p >= 0x10 {
                        p >>= 1;
                        len_bits -= 1;
                    }
                    let offset = (t >> len_bits) + 1;
                    let len = (t & ((1 << len_bits) - 1)) + 3;
                    if offset > pos {
                        return Err(format!(
                            "LZNT1 back reference at byte {} reaches {offset} bytes back, {pos} are in the chunk",
                            j - 2
                        ));
                    }
                    if pos + len > CHUNK {
                        return Err(format!(
                            "LZNT1 chunk at byte {i} decompresses past 4096 bytes"
                        ));
                    }
                    for _ in 0..len {
                        let b = out[out.len() - offset];
                        out.push(b);
                    }
                }
            }
        }
        if out.len() - chunk_start > CHUNK {
            return Err(format!(
                "LZNT1 chunk at byte {i} holds more than 4096 bytes"
            ));
        }
        // A short chunk stands for a whole 4096 bytes; the rest is zeros.
        out.resize(chunk_start + CHUNK, 0);
        i = end;
    }
    out.truncate(limit);
    Ok(out)
}

#[cfg(test)]
// Test inputs are built from bits and small counters cut down on purpose.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn chunk(compressed: bool, data: &[u8]) -> Vec<u8> {
        let h = (data.len() as u16 - 1) | if compressed { 0xB000 } else { 0x3000 };
        let mut v = h.to_le_bytes().to_vec();
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn literals_and_back_references() {
        // "abc" then a reference 3 back, 6 long: "abcabcabc".
        let src = chunk(true, &[0b0000_1000, b'a', b'b', b'c', 0x03, 0x20]);
        let out = decompress(&src, 9).unwrap();
        assert_eq!(out, b"abcabcabc");
        // The chunk stands for 4096 bytes: zeros after the data.
        let out = decompress(&src, 5000).unwrap();
        assert_eq!(out.len(), 4096);
        assert_eq!(&out[..9], b"abcabcabc");
        assert!(out[9..].iter().all(|&b| b == 0));
    }

    #[test]
    fn offset_bits_grow_with_position() {
        // 17 literals, then a reference at position 17: 11 length bits, so offset 17 length 3
        // is ((17 - 1) << 11) | 0.
        let lit: Vec<u8> = (b'A'..=b'Q').collect();
        let mut data = Vec::new();
        let mut tokens: Vec<Vec<u8>> = lit.iter().map(|&b| vec![b]).collect();
        tokens.push((16u16 << 11).to_le_bytes().to_vec());
        for group in tokens.chunks(8) {
            let mut flags = 0u8;
            for (k, t) in group.iter().enumerate() {
                if t.len() == 2 {
                    flags |= 1 << k;
                }
            }
            data.push(flags);
            for t in group {
                data.extend_from_slice(t);
            }
        }
        let out = decompress(&chunk(true, &data), 20).unwrap();
        assert_eq!(&out[..], b"ABCDEFGHIJKLMNOPQABC");
    }

    #[test]
    fn stored_chunks_and_end_marker() {
        let raw: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let mut src = chunk(false, &raw);
        src.extend_from_slice(&chunk(true, &[0, b'x', b'y']));
        src.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
        let out = decompress(&src, 3 * 4096).unwrap();
        assert_eq!(&out[..4096], &raw[..]);
        assert_eq!(&out[4096..4098], b"xy");
        assert_eq!(out.len(), 2 * 4096);
    }

    #[test]
    fn damaged_streams_are_errors() {
        assert!(decompress(&[0x05, 0xB0, 0x08, b'a'], 100).is_err());
        // A reference before any data.
        assert!(decompress(&chunk(true, &[0x01, 0x00, 0x00]), 100).is_err());
        // A reference further back than the chunk's data.
        assert!(decompress(&chunk(true, &[0x02, b'a', 0x00, 0x50]), 100).is_err());
    }
}
