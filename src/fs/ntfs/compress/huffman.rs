//! Canonical Huffman codes as LZX and XPRESS store them: codes assigned in order of
//! length, then symbol value, read from the most significant bit.

/// A canonical Huffman code of at most 16-bit codes, decoded by walking the code lengths
/// (as zlib's `puff` does): WOF chunks are small (4 to 32 KiB), so building lookup tables
/// for each would cost more than it saves.
pub struct Code {
    /// Number of codes of each length 0..=16.
    counts: [u16; 17],
    /// Symbols ordered by code length, then value.
    symbols: Vec<u16>,
}

impl Code {
    /// The code with these code lengths (0: symbol unused).
    ///
    /// # Errors
    ///
    /// When the lengths over-subscribe the code space (incomplete codes are accepted:
    /// decoding fails only if the data uses a missing code).
    pub fn new(lens: &[u8]) -> Result<Code, String> {
        let mut counts = [0u16; 17];
        for &l in lens {
            let l = usize::from(l);
            if l > 16 {
                return Err(format!("Huffman code length {l} is over 16"));
            }
            counts[l] += 1;
        }
        counts[0] = 0;
        let mut left = 1i32;
        for &c in &counts[1..] {
            left = left * 2 - i32::from(c);
            if left < 0 {
                return Err("over-subscribed Huffman code".into());
            }
        }
        let mut symbols = Vec::with_capacity(lens.len());
        for len in 1..=16u8 {
            for (s, &l) in lens.iter().enumerate() {
                if l == len {
                    symbols.push(
                        u16::try_from(s).map_err(|_| "too many Huffman symbols".to_string())?,
                    );
                }
            }
        }
        Ok(Code { counts, symbols })
    }

    /// The symbol whose code starts `next` (the next 16 bits of input, first bit highest),
    /// and its code length.
    ///
    /// # Errors
    ///
    /// When no code matches (an incomplete code used where it has no symbol).
    pub fn decode(&self, next: u32) -> Result<(usize, u32), String> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..=16u32 {
            code |= i32::from((next >> (16 - len)) & 1 == 1);
            let count = i32::from(self.counts[len as usize]);
            if code - first < count {
                let sym = usize::try_from(index + code - first)
                    .ok()
                    .and_then(|i| self.symbols.get(i))
                    .ok_or("invalid Huffman code in the data")?;
                return Ok((usize::from(*sym), len));
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err("invalid Huffman code in the data".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_assigned_by_length_then_symbol() {
        // Lengths A=2 B=1 C=3 D=3: B=0, A=10, C=110, D=111.
        let c = Code::new(&[2, 1, 3, 3]).unwrap();
        assert_eq!(c.decode(0b0 << 15).unwrap(), (1, 1));
        assert_eq!(c.decode(0b10 << 14).unwrap(), (0, 2));
        assert_eq!(c.decode(0b110 << 13).unwrap(), (2, 3));
        assert_eq!(c.decode(0b111 << 13).unwrap(), (3, 3));
        assert!(Code::new(&[1, 1, 1]).is_err());
        // Incomplete: only "0" is a code.
        assert!(Code::new(&[1]).unwrap().decode(0x8000).is_err());
    }
}
