//! The `.strata` image container (docs/FORMAT.md).
//!
//! An image is a 4096-byte [`header`], then chunk records ([`chunk`]), then the block-hash
//! table, then the [`index`], then a 64-byte trailer that locates the index. Readers start
//! from the trailer: an image whose creation did not finish has none and is refused.
//! [`writer::ImageWriter`] appends chunks in disk order; [`reader::Image`] opens, checks
//! and reads an image.

// On-disk parsers: every item documented, and no silent truncating or sign-changing `as`
// on values read from disk (a checked conversion with an error instead).
#![warn(
    missing_docs,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

pub mod catalog;
pub mod chunk;
pub mod crypto;
pub mod header;
pub mod index;
pub mod keyring;
pub mod reader;
pub mod writer;

/// Largest uncompressed chunk any reader accepts (bounds memory per read).
pub const MAX_CHUNK_SIZE: u32 = 64 << 20;
/// Default uncompressed chunk size: large enough to compress within ~1% of a whole-stream
/// zstd, small enough that a random 4 KiB read decompresses about a millisecond of data.
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
/// Default block size: the granularity of the index and of change detection.
pub const DEFAULT_BLOCK_SIZE: u32 = 4096;
/// Conventional file extension.
pub const EXTENSION: &str = "strata";
