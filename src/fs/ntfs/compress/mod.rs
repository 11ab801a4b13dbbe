//! NTFS's compressed data: LZNT1 ([`lznt1`], the compression flag of an attribute) and
//! files compressed by Windows' overlay filter, WOF/CompactOS ([`wof`]), with the
//! XPRESS ([`xpress`]) and LZX ([`lzx`]) codecs and their Huffman codes ([`huffman`]).

pub mod huffman;
pub mod lznt1;
pub mod lzx;
pub mod wof;
pub mod xpress;
