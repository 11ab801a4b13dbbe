//! The image header: the first 4096 bytes of every image (docs/FORMAT.md, "Header").

use crate::le::{LeFields, LeWriter};
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

/// Size of the header region; chunk data starts right after it.
pub const HEADER_SIZE: usize = 4096;
/// First bytes of every image. The high bit and the trailing newline catch text-mode
/// transfers, as PNG's signature does.
pub const MAGIC: [u8; 8] = *b"\x89STRATA\n";
/// The format generation this build writes and reads.
pub const MAJOR_VERSION: u16 = 1;
/// Minor versions only add compatible fields.
pub const MINOR_VERSION: u16 = 0;
/// Incompatible feature bits this build understands.
pub const KNOWN_INCOMPAT: u64 = super::crypto::FEATURE_ENCRYPTED;
/// Where variable-length strings start.
const STRINGS_OFFSET: usize = 144;
/// Where the header checksum sits (last 8 bytes of the region).
const CHECKSUM_OFFSET: usize = HEADER_SIZE - 8;
/// Room for the source description and parent hint together.
pub const MAX_STRINGS: usize = CHECKSUM_OFFSET - STRINGS_OFFSET;
/// Room for them in an encrypted image (the sealed source included), before the
/// encryption fields.
pub const MAX_STRINGS_SEALED: usize = super::crypto::PARAMS_OFFSET - STRINGS_OFFSET;

/// What an image holds relative to other images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// Every block of the disk: unmapped blocks are zeros.
    Full,
    /// Blocks changed since a full image.
    Differential,
    /// Blocks changed since any earlier image.
    Incremental,
}

impl ImageKind {
    /// The word for it in messages: "full", "differential" or "incremental".
    pub fn name(self) -> &'static str {
        match self {
            ImageKind::Full => "full",
            ImageKind::Differential => "differential",
            ImageKind::Incremental => "incremental",
        }
    }

    fn code(self) -> u8 {
        match self {
            ImageKind::Full => 0,
            ImageKind::Differential => 1,
            ImageKind::Incremental => 2,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => ImageKind::Full,
            1 => ImageKind::Differential,
            2 => ImageKind::Incremental,
            _ => return None,
        })
    }
}

/// How the source was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    /// Every sector was read (all-zero blocks are still not stored).
    Clone,
    /// Only the blocks that the filesystems use were read.
    UsedBlocks,
}

/// The decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Minor format version (readers accept any within the major version).
    pub minor_version: u16,
    /// Features a reader must know to read the image.
    pub incompat_features: u64,
    /// Features a reader may ignore.
    pub compat_features: u64,
    /// This image's identity.
    pub image_uuid: Uuid,
    /// Nil for a full image.
    pub parent_uuid: Uuid,
    /// blake3 of the parent's index; zero for a full image.
    pub parent_index_digest: [u8; 32],
    /// Creation time: seconds since 1970-01-01 UTC.
    pub created_unix: i64,
    /// Creation time: nanoseconds within the second.
    pub created_nanos: u32,
    /// Sector size of the source disk in bytes.
    pub sector_size: u32,
    /// Size of the source disk in bytes.
    pub disk_size: u64,
    /// Size of the blocks the index and the block hashes count in bytes.
    pub block_size: u32,
    /// Uncompressed size of a full chunk in bytes.
    pub chunk_size: u32,
    /// Full or incremental.
    pub kind: ImageKind,
    /// Every block, or only the ones the filesystems use.
    pub content: Content,
    /// Compression method of the image (1 = zstd); chunks may still be stored raw.
    pub compression: u8,
    /// zstd level the image was written with.
    pub compression_level: i8,
    /// The source device or file, as given to `create`.
    pub source: String,
    /// Where the parent image was (a path hint for finding it again).
    pub parent_hint: String,
    /// The encryption fields of an encrypted image. Its `source` is then empty until the
    /// image is unlocked.
    pub encryption: Option<Encryption>,
}

/// The clear fields of an encrypted image (docs/FORMAT.md, "Encryption").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    /// Names the chain's master key.
    pub key_id: [u8; 16],
    /// Random per image: the image key is derived from the master key, it and the UUID.
    pub salt: [u8; 32],
    /// The source description, sealed (written by the image writer).
    pub sealed_source: Vec<u8>,
    /// The key slots (not covered by the header checksum: they change in place).
    pub slots: super::crypto::KeySlots,
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The magic is wrong: not a strata image.
    NotAnImage(String),
    /// A newer major version or unknown incompatible feature.
    Unsupported(String),
    /// Magic and version are fine but a field is impossible or the checksum fails.
    Corrupt {
        /// Byte offset of the field in the header.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
}

impl HeaderError {
    /// The crate's error for the header of the image at `path`.
    pub fn at(self, path: &std::path::Path) -> crate::error::Error {
        use crate::error::Error;
        match self {
            HeaderError::NotAnImage(reason) => Error::NotAnImage {
                path: path.into(),
                reason,
            },
            HeaderError::Unsupported(detail) => Error::Unsupported {
                path: path.into(),
                detail,
            },
            HeaderError::Corrupt { offset, detail } => {
                Error::corrupt(path, "header", offset, detail)
            }
        }
    }
}

impl Header {
    /// Encodes the header into its 4096-byte region, checksum included.
    ///
    /// Panics if the strings exceed [`MAX_STRINGS`]; [`Header::fit_strings`] trims them first.
    // HEADER_SIZE is 4096 and the string lengths are checked below: no cast truncates.
    #[allow(clippy::cast_possible_truncation)]
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_SIZE];
        let mut w = LeWriter(&mut buf);
        w.put(0, &MAGIC);
        w.u16(8, MAJOR_VERSION);
        w.u16(10, self.minor_version);
        w.u32(12, HEADER_SIZE as u32);
        w.u64(16, self.incompat_features);
        w.u64(24, self.compat_features);
        w.put(32, self.image_uuid.as_bytes());
        w.put(48, self.parent_uuid.as_bytes());
        w.put(64, &self.parent_index_digest);
        w.i64(96, self.created_unix);
        w.u32(104, self.created_nanos);
        w.u32(108, self.sector_size);
        w.u64(112, self.disk_size);
        w.u32(120, self.block_size);
        w.u32(124, self.chunk_size);
        w.u8(128, self.kind.code());
        w.u8(
            129,
            match self.content {
                Content::Clone => 0,
                Content::UsedBlocks => 1,
            },
        );
        w.u8(130, self.compression);
        w.u8(131, self.compression_level.cast_unsigned());
        let (s, p) = match &self.encryption {
            Some(e) => (e.sealed_source.as_slice(), self.parent_hint.as_bytes()),
            None => (self.source.as_bytes(), self.parent_hint.as_bytes()),
        };
        let room = if self.encryption.is_some() {
            MAX_STRINGS_SEALED
        } else {
            MAX_STRINGS
        };
        assert!(s.len() + p.len() <= room, "header strings too long");
        w.u16(132, s.len() as u16);
        w.u16(134, p.len() as u16);
        w.put(STRINGS_OFFSET, s);
        w.put(STRINGS_OFFSET + s.len(), p);
        if let Some(e) = &self.encryption {
            use super::crypto::{CIPHER_AES256_GCM, FEATURE_ENCRYPTED, PARAMS_OFFSET};
            w.u64(16, self.incompat_features | FEATURE_ENCRYPTED);
            w.u8(PARAMS_OFFSET, CIPHER_AES256_GCM);
            w.put(PARAMS_OFFSET + 8, &e.key_id);
            w.put(PARAMS_OFFSET + 24, &e.salt);
            // Both copies, so that one damaged copy still leaves the key reachable.
            for at in super::crypto::SLOT_COPY_OFFSETS {
                w.put(at, &e.slots.encode());
            }
        }
        let sum = Header::compute_checksum(&buf);
        LeWriter(&mut buf).u64(CHECKSUM_OFFSET, sum);
        buf
    }

    /// The checksum of a header region: xxh3-64 of bytes 0..4088, with the key-slot area
    /// (1024..4088) taken as zeros in an encrypted image.
    pub fn compute_checksum(buf: &[u8]) -> u64 {
        let encrypted = LeFields(buf).u64(16) & super::crypto::FEATURE_ENCRYPTED != 0;
        if !encrypted {
            return xxh3_64(&buf[..CHECKSUM_OFFSET]);
        }
        let mut copy = buf[..CHECKSUM_OFFSET].to_vec();
        copy[super::crypto::SLOTS_OFFSET..].fill(0);
        xxh3_64(&copy)
    }

    /// Trims the source description so that both strings fit the header region
    /// (the parent hint is a path and is kept whole when possible).
    pub fn fit_strings(&mut self) {
        let total = if self.encryption.is_some() {
            MAX_STRINGS_SEALED - super::crypto::SEAL_OVERHEAD
        } else {
            MAX_STRINGS
        };
        if self.parent_hint.len() > total {
            // Only a hint: resolution also looks beside the image and in --parent-dir.
            self.parent_hint.clear();
        }
        let room = total.saturating_sub(self.parent_hint.len());
        if self.source.len() > room {
            let mut cut = room;
            while !self.source.is_char_boundary(cut) {
                cut -= 1;
            }
            self.source.truncate(cut);
        }
    }

    /// The header checksum as stored (last 8 bytes of the region).
    pub fn stored_checksum(buf: &[u8]) -> u64 {
        LeFields(buf).u64(CHECKSUM_OFFSET)
    }

    /// Decodes and validates a header region.
    ///
    /// With `check_sum` false a checksum mismatch is tolerated (used by `verify`, which
    /// reports it and still checks the chunks).
    pub fn decode(buf: &[u8], check_sum: bool) -> Result<Header, HeaderError> {
        if buf.len() < 8 || buf[..8] != MAGIC {
            return Err(HeaderError::NotAnImage(
                "no strata signature at byte 0".into(),
            ));
        }
        if buf.len() < HEADER_SIZE {
            return Err(HeaderError::Corrupt {
                offset: buf.len() as u64,
                detail: format!(
                    "file ends inside the {HEADER_SIZE}-byte header ({} bytes)",
                    buf.len()
                ),
            });
        }
        let f = LeFields(buf);
        let major = f.u16(8);
        if major != MAJOR_VERSION {
            return Err(HeaderError::Unsupported(format!(
                "format version {major}.{} (this strata reads version {MAJOR_VERSION}.x; \
                 a newer strata is needed)",
                f.u16(10)
            )));
        }
        let corrupt = |offset: u64, detail: String| Err(HeaderError::Corrupt { offset, detail });
        let sum = Header::compute_checksum(buf);
        let stored = f.u64(CHECKSUM_OFFSET);
        if check_sum && sum != stored {
            return corrupt(
                CHECKSUM_OFFSET as u64,
                format!("header checksum mismatch (stored {stored:016x}, computed {sum:016x})"),
            );
        }
        let header_size = f.u32(12);
        if header_size as usize != HEADER_SIZE {
            return corrupt(
                12,
                format!("header size {header_size}, expected {HEADER_SIZE}"),
            );
        }
        let incompat = f.u64(16);
        if incompat & !KNOWN_INCOMPAT != 0 {
            return Err(HeaderError::Unsupported(format!(
                "incompatible feature bits {:#x} (a newer strata is needed)",
                incompat & !KNOWN_INCOMPAT
            )));
        }
        let sector_size = f.u32(108);
        if !(512..=65536).contains(&sector_size) || !sector_size.is_power_of_two() {
            return corrupt(108, format!("impossible sector size {sector_size}"));
        }
        let block_size = f.u32(120);
        if !(512..=1 << 20).contains(&block_size) || !block_size.is_power_of_two() {
            return corrupt(120, format!("impossible block size {block_size}"));
        }
        let chunk_size = f.u32(124);
        if chunk_size < block_size
            || chunk_size > super::MAX_CHUNK_SIZE
            || chunk_size % block_size != 0
        {
            return corrupt(124, format!("impossible chunk size {chunk_size}"));
        }
        let kind = ImageKind::from_code(f.u8(128)).ok_or_else(|| HeaderError::Corrupt {
            offset: 128,
            detail: format!("unknown image kind {}", f.u8(128)),
        })?;
        let content = match f.u8(129) {
            0 => Content::Clone,
            1 => Content::UsedBlocks,
            c => return corrupt(129, format!("unknown content code {c}")),
        };
        let compression = f.u8(130);
        if compression > 1 {
            return Err(HeaderError::Unsupported(format!(
                "compression method {compression}"
            )));
        }
        let (slen, plen) = (f.u16(132) as usize, f.u16(134) as usize);
        let encrypted = incompat & super::crypto::FEATURE_ENCRYPTED != 0;
        let room = if encrypted {
            MAX_STRINGS_SEALED
        } else {
            MAX_STRINGS
        };
        if slen + plen > room {
            return corrupt(
                132,
                format!("string lengths {slen}+{plen} exceed the header"),
            );
        }
        let text = |off: usize, len: usize| {
            String::from_utf8(buf[off..off + len].to_vec()).map_err(|_| HeaderError::Corrupt {
                offset: off as u64,
                detail: "string is not UTF-8".into(),
            })
        };
        let (source, encryption) = if encrypted {
            (String::new(), Some(Header::decode_encryption(buf, slen)?))
        } else {
            (text(STRINGS_OFFSET, slen)?, None)
        };
        let parent_hint = text(STRINGS_OFFSET + slen, plen)?;
        let parent_uuid = Uuid::from_bytes(f.bytes(48));
        if (kind == ImageKind::Full) != parent_uuid.is_nil() {
            return corrupt(
                48,
                format!("a {} image with parent {parent_uuid}", kind.name()),
            );
        }
        Ok(Header {
            minor_version: f.u16(10),
            incompat_features: incompat,
            compat_features: f.u64(24),
            image_uuid: Uuid::from_bytes(f.bytes(32)),
            parent_uuid,
            parent_index_digest: f.bytes(64),
            created_unix: f.i64(96),
            created_nanos: f.u32(104),
            sector_size,
            disk_size: f.u64(112),
            block_size,
            chunk_size,
            kind,
            content,
            compression,
            compression_level: f.u8(131).cast_signed(),
            source,
            parent_hint,
            encryption,
        })
    }

    fn decode_encryption(buf: &[u8], slen: usize) -> Result<Encryption, HeaderError> {
        use super::crypto::{KeySlots, CIPHER_AES256_GCM, PARAMS_OFFSET};
        let f = LeFields(buf);
        let cipher = f.u8(PARAMS_OFFSET);
        if cipher != CIPHER_AES256_GCM {
            return Err(HeaderError::Unsupported(format!(
                "cipher {cipher} (a newer strata is needed)"
            )));
        }
        let (slots, _) = KeySlots::decode(buf).map_err(|detail| HeaderError::Corrupt {
            offset: super::crypto::SLOTS_OFFSET as u64,
            detail,
        })?;
        Ok(Encryption {
            key_id: f.bytes(PARAMS_OFFSET + 8),
            salt: f.bytes(PARAMS_OFFSET + 24),
            sealed_source: buf[STRINGS_OFFSET..STRINGS_OFFSET + slen].to_vec(),
            slots,
        })
    }

    /// Number of blocks covering the disk (the last one may be partial).
    pub fn block_count(&self) -> u64 {
        self.disk_size.div_ceil(u64::from(self.block_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            minor_version: MINOR_VERSION,
            incompat_features: 0,
            compat_features: 0,
            image_uuid: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            parent_uuid: Uuid::nil(),
            parent_index_digest: [0; 32],
            created_unix: 1_700_000_000,
            created_nanos: 5,
            sector_size: 512,
            disk_size: 10 << 20,
            block_size: 4096,
            chunk_size: 1 << 20,
            kind: ImageKind::Full,
            content: Content::Clone,
            compression: 1,
            compression_level: 3,
            source: "file /tmp/disk.img".into(),
            parent_hint: String::new(),
            encryption: None,
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let buf = h.encode();
        assert_eq!(buf.len(), HEADER_SIZE);
        assert_eq!(Header::decode(&buf, true).unwrap(), h);
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let buf = sample().encode();
        for i in 0..HEADER_SIZE {
            let mut b = buf.clone();
            b[i] ^= 0x40;
            assert!(Header::decode(&b, true).is_err(), "flip at {i} not caught");
        }
    }

    #[test]
    fn newer_major_version_is_unsupported() {
        let mut buf = sample().encode();
        LeWriter(&mut buf).u16(8, 2);
        assert!(matches!(
            Header::decode(&buf, false),
            Err(HeaderError::Unsupported(_))
        ));
    }

    #[test]
    fn long_source_is_trimmed_on_a_char_boundary() {
        let mut h = sample();
        h.source = "é".repeat(MAX_STRINGS);
        h.fit_strings();
        assert!(h.source.len() <= MAX_STRINGS);
        assert_eq!(Header::decode(&h.encode(), true).unwrap().source, h.source);
    }
}
