//! XPRESS with Huffman coding ([MS-XCA] 2.2.4), as WOF stores its 4, 8 and 16 KiB chunks.
//!
//! Written here rather than taken from the `xpress-huffman` crate (0.1.3), which stops
//! decoding once its input position reaches the end of the data while codes are still in
//! its bit buffer, and so returns chunks a few bytes short.
//!
//! A chunk is 256 bytes of code lengths (4 bits per symbol, 512 symbols: 256 literals and
//! 256 matches of 16 offset sizes × 16 length codes), then a bit stream of 16-bit
//! little-endian words read from their most significant bit; bytes that extend long match
//! lengths are taken from the input between those words.

use super::huffman::Code;

/// Output bytes one table covers; a WOF chunk is at most 16 KiB, so one table is all.
const BLOCK: usize = 65536;

/// The decoder state of [MS-XCA]: 32 bits read ahead, how many of them beyond 16 are
/// valid, and the next input byte.
struct Input<'a> {
    data: &'a [u8],
    next_bits: u32,
    extra: i32,
    at: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> Result<u32, String> {
        let b = self.data.get(self.at).ok_or("XPRESS data ends early")?;
        self.at += 1;
        Ok(u32::from(*b))
    }

    fn word(&mut self) -> u32 {
        let b = |j: usize| u32::from(self.data.get(j).copied().unwrap_or(0));
        let w = b(self.at) | b(self.at + 1) << 8;
        self.at += 2;
        w
    }

    fn consume(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.next_bits <<= n;
        // n is at most 16: the reinterpretation is exact.
        self.extra -= n.cast_signed();
        if self.extra < 0 {
            self.next_bits |= self.word() << -self.extra;
            self.extra += 16;
        }
    }
}

/// Decompresses one chunk into exactly `size` bytes (at most 64 KiB).
///
/// # Errors
///
/// A message saying what is wrong when the data is malformed: a short table, a bad code,
/// a match before the start or past the end of the chunk.
pub fn decompress(src: &[u8], size: usize) -> Result<Vec<u8>, String> {
    if size > BLOCK {
        return Err(format!("XPRESS chunk of {size} bytes is over 64 KiB"));
    }
    let table = src.get(..256).ok_or("XPRESS data shorter than its table")?;
    let lens: Vec<u8> = table.iter().flat_map(|b| [b & 15, b >> 4]).collect();
    let code = Code::new(&lens)?;
    let mut input = Input {
        data: src,
        next_bits: 0,
        extra: 16,
        at: 256,
    };
    input.next_bits = input.word() << 16;
    input.next_bits |= input.word();
    let mut out: Vec<u8> = Vec::with_capacity(size);
    while out.len() < size {
        if input.at > src.len() + 4 {
            return Err("XPRESS data ends early".into());
        }
        let (sym, bits) = code.decode(input.next_bits >> 16)?;
        input.consume(bits);
        if let Ok(byte) = u8::try_from(sym) {
            out.push(byte);
            continue;
        }
        let sym = sym - 256;
        let offset_bits = u32::try_from(sym >> 4).map_err(|e| e.to_string())?;
        let mut len = sym & 15;
        if len == 15 {
            len = input.byte()? as usize;
            if len == 255 {
                len = (input.byte()? | input.byte()? << 8) as usize;
                if len < 15 {
                    return Err("XPRESS match length under 15 in its long form".into());
                }
                len -= 15;
            }
            len += 15;
        }
        len += 3;
        let offset = if offset_bits == 0 {
            1
        } else {
            (1usize << offset_bits) + (input.next_bits >> (32 - offset_bits)) as usize
        };
        input.consume(offset_bits);
        if offset > out.len() || len > size - out.len() {
            return Err(format!(
                "XPRESS match (offset {offset}, length {len}) outside the chunk at byte {}",
                out.len()
            ));
        }
        let from = out.len() - offset;
        for k in 0..len {
            out.push(out[from + k]);
        }
    }
    Ok(out)
}

#[cfg(test)]
// Test inputs are built from bits and small counters cut down on purpose.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_a_match() {
        // Code lengths: 'a' (97) and 'b' (98) 2 bits; match symbol 256 + (offset bits 1
        // << 4) + length code 2 (length 5) 1 bit: codes '0' = match, '10' = a, '11' = b.
        let mut src = vec![0u8; 256];
        src[48] = 0x20; // symbol 97: high nibble of byte 48
        src[49] = 0x02; // symbol 98: low nibble of byte 49
        src[(256 + 16 + 2) / 2] = 0x01; // symbol 274: low nibble of byte 137
                                        // a b then match offset 2 (1 << 1 + bit 0) length 5 => "ababababa" ... then a.
                                        // Bits: 10 11 0 0 10 then padding.
        let bits: u32 = 0b1011_0010 << 24;
        src.extend_from_slice(&((bits >> 16) as u16).to_le_bytes());
        src.extend_from_slice(&(bits as u16).to_le_bytes());
        assert_eq!(decompress(&src, 8).unwrap(), b"abababaa");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let mut over = vec![0x11u8; 256]; // 512 one-bit codes
        over.extend_from_slice(&[0; 8]);
        for src in [&[][..], &[0u8; 300][..], &over[..]] {
            assert!(decompress(src, 4096).is_err());
        }
    }
}
