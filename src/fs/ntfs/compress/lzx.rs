//! LZX as Windows uses it for WOF (CompactOS) compressed files: each 32 KiB chunk is one
//! independent LZX stream with a 32 KiB window, in the variant WIM archives use.
//!
//! Written here rather than taken from the `lzxd` crate, which decodes the LZXD variant
//! of cabinet files ([MS-PATCH]): there the stream starts with an E8 flag and a 32-bit
//! translation size, and every block header holds a 24-bit size. The WIM/WOF variant has
//! no stream header, always undoes E8 translation with a file size of 12 000 000 (only
//! when the main code can produce 0xE8 bytes or an uncompressed block was seen), and
//! gives a block's size as one bit (1: 32 768 bytes) or that bit and 16 bits.
//!
//! The bit stream is 16-bit little-endian words read from their most significant bit.
//! Bits are addressed by their position in the input, so that aligning for an
//! uncompressed block (to the next word; a whole word when already aligned) follows the
//! format rather than how much a reader buffered.

use super::huffman::Code;

/// Offset slots for a 32 KiB window.
const SLOTS: usize = 30;
/// Main code: 256 literals and 8 length headers per offset slot.
const MAIN_SYMS: usize = 256 + SLOTS * 8;
/// Length code: match lengths 9..=257.
const LEN_SYMS: usize = 249;
const PRE_SYMS: usize = 20;
const ALIGNED_SYMS: usize = 8;
/// A block header's size bit set means this many bytes.
const DEFAULT_BLOCK: usize = 32768;
/// The file size E8 translation assumes in WIM and WOF data.
const E8_FILE_SIZE: i32 = 12_000_000;

const SLOT_BASE: [u32; SLOTS] = [
    0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536,
    2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576,
];
const SLOT_BITS: [u32; SLOTS] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Bits of the input addressed by position; words past the end read as zeros.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn word(&self, i: usize) -> u32 {
        let b = |j: usize| u32::from(self.data.get(j).copied().unwrap_or(0));
        b(2 * i) | b(2 * i + 1) << 8
    }

    /// The next `n` (at most 16) bits without consuming them.
    fn peek(&self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let w = self.pos / 16;
        let v = (self.word(w) << 16) | self.word(w + 1);
        (v << (self.pos % 16)) >> (32 - n)
    }

    fn read(&mut self, n: u32) -> u32 {
        let v = self.peek(n);
        self.pos += n as usize;
        v
    }

    /// Decodes one symbol of `code`.
    fn decode(&mut self, code: &Code) -> Result<usize, String> {
        let (sym, len) = code.decode(self.peek(16))?;
        self.pos += len as usize;
        Ok(sym)
    }

    /// True once more bits were consumed than the input holds.
    fn overrun(&self) -> bool {
        self.pos > self.data.len().div_ceil(2) * 16
    }
}

/// Reads code lengths `lens` as deltas from their previous values, through a pretree.
fn read_lens(bits: &mut Bits, lens: &mut [u8]) -> Result<(), String> {
    let mut pre = [0u8; PRE_SYMS];
    for l in &mut pre {
        *l = u8::try_from(bits.read(4)).map_err(|e| e.to_string())?;
    }
    let pre = Code::new(&pre)?;
    let delta = |old: u8, sym: usize| u8::try_from((17 + usize::from(old) - sym) % 17);
    let mut i = 0;
    while i < lens.len() {
        let sym = bits.decode(&pre)?;
        let (run, value) = match sym {
            0..=16 => (1, delta(lens[i], sym).map_err(|e| e.to_string())?),
            17 => (4 + bits.read(4) as usize, 0),
            18 => (20 + bits.read(5) as usize, 0),
            _ => {
                let run = 4 + bits.read(1) as usize;
                let sym = bits.decode(&pre)?;
                if sym > 16 {
                    return Err("invalid code length run".into());
                }
                (run, delta(lens[i], sym).map_err(|e| e.to_string())?)
            }
        };
        // A run past the end is invalid data; what it would overwrite is left alone.
        let end = (i + run).min(lens.len());
        lens[i..end].fill(value);
        i += run;
    }
    Ok(())
}

/// Undoes the x86 CALL translation on a decoded chunk.
fn undo_e8(out: &mut [u8]) {
    if out.len() <= 10 {
        return;
    }
    let mut i = 0;
    while i < out.len() - 10 {
        if out[i] != 0xE8 {
            i += 1;
            continue;
        }
        let Ok(pos) = i32::try_from(i) else {
            break;
        };
        let abs = i32::from_le_bytes([out[i + 1], out[i + 2], out[i + 3], out[i + 4]]);
        let rel = if abs >= 0 {
            (abs < E8_FILE_SIZE).then(|| abs - pos)
        } else {
            (abs >= -pos).then(|| abs + E8_FILE_SIZE)
        };
        if let Some(rel) = rel {
            out[i + 1..i + 5].copy_from_slice(&rel.to_le_bytes());
        }
        i += 5;
    }
}

/// Decompresses one chunk into exactly `size` bytes (at most 32 KiB).
///
/// # Errors
///
/// A message saying what is wrong when the data is malformed: a bad Huffman code, a
/// match reaching before the chunk or past its end, input too short.
pub fn decompress(src: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let mut out: Vec<u8> = Vec::with_capacity(size);
    let mut bits = Bits { data: src, pos: 0 };
    let mut main_lens = [0u8; MAIN_SYMS];
    let mut len_lens = [0u8; LEN_SYMS];
    let mut recent = [1u32; 3];
    let mut e8 = false;
    while out.len() < size {
        let kind = bits.read(3);
        let block = if bits.read(1) == 1 {
            DEFAULT_BLOCK
        } else {
            bits.read(16) as usize
        };
        if block == 0 || block > size - out.len() {
            return Err(format!(
                "LZX block of {block} bytes where {} remain",
                size - out.len()
            ));
        }
        let end = out.len() + block;
        let aligned = match kind {
            1 => None,
            2 => {
                let mut lens = [0u8; ALIGNED_SYMS];
                for l in &mut lens {
                    *l = u8::try_from(bits.read(3)).map_err(|e| e.to_string())?;
                }
                Some(Code::new(&lens)?)
            }
            3 => {
                // Align to the next 16-bit word (a whole word when already aligned), then
                // three recent offsets and the bytes as they are.
                bits.pos = (bits.pos / 16 + 1) * 16;
                let at = bits.pos / 8;
                let raw = src
                    .get(at..at + 12 + block)
                    .ok_or("LZX uncompressed block past the end of the data")?;
                for (k, r) in recent.iter_mut().enumerate() {
                    let b = &raw[4 * k..4 * k + 4];
                    *r = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    if *r == 0 {
                        return Err("LZX recent offset of 0".into());
                    }
                }
                out.extend_from_slice(&raw[12..]);
                bits.pos = (at + 12 + block + (block & 1)) * 8;
                e8 = true;
                continue;
            }
            _ => return Err(format!("LZX block type {kind} is not valid")),
        };
        read_lens(&mut bits, &mut main_lens[..256])?;
        read_lens(&mut bits, &mut main_lens[256..])?;
        let main = Code::new(&main_lens)?;
        read_lens(&mut bits, &mut len_lens)?;
        let lens = Code::new(&len_lens)?;
        e8 |= main_lens[0xE8] != 0;
        while out.len() < end {
            let sym = bits.decode(&main)?;
            if let Ok(byte) = u8::try_from(sym) {
                out.push(byte);
                continue;
            }
            let sym = sym - 256;
            let (header, slot) = (sym % 8, sym / 8);
            let mut len = header + 2;
            if header == 7 {
                len += bits.decode(&lens)?;
            }
            let offset = if slot < 3 {
                recent.swap(slot, 0);
                recent[0]
            } else {
                let extra = SLOT_BITS[slot];
                let mut o = SLOT_BASE[slot];
                match &aligned {
                    Some(a) if extra >= 3 => {
                        o += bits.read(extra - 3) << 3;
                        o += u32::try_from(bits.decode(a)?).map_err(|e| e.to_string())?;
                    }
                    _ => o += bits.read(extra),
                }
                let o = o - 2;
                recent = [o, recent[0], recent[1]];
                o
            } as usize;
            if len > end - out.len() || offset == 0 || offset > out.len() {
                return Err(format!(
                    "LZX match (offset {offset}, length {len}) outside the chunk at byte {}",
                    out.len()
                ));
            }
            let from = out.len() - offset;
            for k in 0..len {
                out.push(out[from + k]);
            }
        }
        if bits.overrun() {
            return Err("LZX data ends early".into());
        }
    }
    if e8 {
        undo_e8(&mut out);
    }
    Ok(out)
}

#[cfg(test)]
// Test inputs are built from bits and small counters cut down on purpose.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    /// Writes bits as the format stores them: 16-bit little-endian words, high bit first.
    struct Writer {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }

    impl Writer {
        fn put(&mut self, v: u32, bits: u32) {
            for k in (0..bits).rev() {
                self.acc = self.acc << 1 | (v >> k & 1);
                self.n += 1;
                if self.n == 16 {
                    self.out.extend_from_slice(&(self.acc as u16).to_le_bytes());
                    self.acc = 0;
                    self.n = 0;
                }
            }
        }
    }

    #[test]
    fn uncompressed_block_with_e8_translation() {
        // A CALL at byte 0 whose target was stored absolute (100): after decoding it is
        // relative to its position again (100 - 0); one at byte 5 becomes 100 - 5.
        let mut data = vec![0xE8, 100, 0, 0, 0, 0xE8, 100, 0, 0, 0];
        data.extend_from_slice(b"twelve bytes!");
        let mut w = Writer {
            out: Vec::new(),
            acc: 0,
            n: 0,
        };
        w.put(3, 3);
        w.put(0, 1);
        w.put(data.len() as u32, 16);
        w.put(0, 12); // padding to the word
        for r in [1u32, 1, 1] {
            w.out.extend_from_slice(&r.to_le_bytes());
        }
        w.out.extend_from_slice(&data);
        w.out.push(0); // odd size: one byte of padding
        let got = decompress(&w.out, data.len()).unwrap();
        let mut want = data.clone();
        want[6..10].copy_from_slice(&95i32.to_le_bytes());
        assert_eq!(got, want);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for src in [
            &[][..],
            &[0xFF; 7][..],
            &[0x12, 0x34, 0x56][..],
            &[0; 64][..],
        ] {
            assert!(decompress(src, 4096).is_err(), "{src:?}");
        }
    }
}
