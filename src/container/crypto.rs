//! Encrypted images (docs/FORMAT.md, "Encryption"): the chain's master key, the key slots
//! that hold it wrapped under passphrases or key files, and the per-image key that seals
//! chunks, the block-hash table, the index, the catalog and the source description.
//!
//! Everything is sealed with AES-256-GCM from RustCrypto (`aes-gcm`): with the AES and
//! carry-less multiply instructions of current x86 and ARM processors it runs at over
//! 2 GB/s per core here, twice XChaCha20-Poly1305, and reads must stay within 10% of an
//! unencrypted image. Its 96-bit nonces are random, under a key derived for each image
//! (so no nonce is ever shared with another image of the chain), and an image holds at
//! most 2^32 chunks: the chance that two seals of one image share a nonce stays below
//! 2^-33 at that bound and below 2^-49 at 2^24 chunks (16 TiB of 1 MiB chunks).

use crate::le::{LeFields, LeWriter};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;
use zeroize::Zeroizing;

/// The incompatible feature bit of an encrypted image.
pub const FEATURE_ENCRYPTED: u64 = 1;
/// Cipher code of AES-256-GCM, the only one.
pub const CIPHER_AES256_GCM: u8 = 1;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of an authentication tag.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a plaintext: the nonce before it, the tag after it.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Block hashes sealed together in one segment of an encrypted block-hash table.
pub const HASH_SEGMENT_ENTRIES: u64 = 4096;

/// Where the header's encryption fields start (cipher, key id, image salt).
pub const PARAMS_OFFSET: usize = 960;
/// Where the key-slot area starts; the header checksum does not cover it, so slots can
/// change without changing the index digest that children name.
pub const SLOTS_OFFSET: usize = 1024;
/// The two copies of the key-slot area (one is rewritten while the other stays valid).
pub const SLOT_COPY_OFFSETS: [usize; 2] = [1024, 2560];
/// Bytes of one copy of the key-slot area.
pub const SLOT_COPY_SIZE: usize = 24 + MAX_SLOTS * SLOT_SIZE + 8;
/// Key slots an image holds at most.
pub const MAX_SLOTS: usize = 8;
/// Bytes of one key slot.
pub const SLOT_SIZE: usize = 128;
/// `STRAKEYS`.
pub const SLOTS_MAGIC: [u8; 8] = *b"STRAKEYS";

/// Argon2id cost a reader accepts at most from a slot, so a hostile image cannot make an
/// unlock allocate or run without bound: 1 GiB of memory, 16 passes, 8 lanes.
pub const MAX_KDF_MEMORY_KIB: u32 = 1 << 20;
/// See [`MAX_KDF_MEMORY_KIB`].
pub const MAX_KDF_PASSES: u32 = 16;
/// See [`MAX_KDF_MEMORY_KIB`].
pub const MAX_KDF_LANES: u32 = 8;
/// Default Argon2id cost of a new passphrase slot: 256 MiB, 3 passes, one lane, about
/// 0.75 s on the 2-core machine of docs/PERFORMANCE.md.
pub const DEFAULT_KDF: KdfCost = KdfCost {
    memory_kib: 256 * 1024,
    passes: 3,
    lanes: 1,
};

/// Fresh random bytes from the operating system.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS generator failing is not something to work around: no key may come without it.
    getrandom::fill(&mut b).expect("the operating system's random generator failed");
    b
}

/// The random key of a chain. Every image of the chain is sealed with keys derived from it.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// A new random key.
    pub fn generate() -> MasterKey {
        MasterKey(Zeroizing::new(random()))
    }

    /// The key's public name, stored in clear in every image it seals: tells a reader
    /// which unlocked key fits, and that a parent belongs to the same chain key.
    pub fn key_id(&self) -> [u8; 16] {
        let full = blake3::derive_key("strata 2026-12 key id", &self.0[..]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&full[..16]);
        id
    }

    /// The key that seals one image (its random `salt` is in the header).
    pub fn image_key(&self, uuid: Uuid, salt: &[u8; 32]) -> ImageKey {
        let mut material = Zeroizing::new([0u8; 80]);
        material[..32].copy_from_slice(&self.0[..]);
        material[32..64].copy_from_slice(salt);
        material[64..].copy_from_slice(uuid.as_bytes());
        let key = Zeroizing::new(blake3::derive_key(
            "strata 2026-12 image key",
            &material[..],
        ));
        ImageKey {
            cipher: Aes256Gcm::new(&(*key).into()),
            uuid,
        }
    }
}

/// What a sealed piece is: part of its associated data, so a piece moved to another role,
/// position or image does not open.
#[derive(Debug, Clone, Copy)]
pub enum Piece {
    /// Chunk number `index` (the index, which is sealed too, says where its record is).
    Chunk {
        /// The chunk's number in the chunk table.
        index: u32,
    },
    /// Segment `n` of the block-hash table.
    HashSegment(u64),
    /// The catalog section's payload, with the section header's method and uncompressed
    /// length (in clear, so bound here).
    Catalog {
        /// 0 raw, 1 zstd.
        method: u8,
        /// Bytes once opened and decompressed.
        raw_len: u64,
    },
    /// The source description in the header.
    Source,
}

/// The sealing key of one image (shared by the writer's compression workers).
pub struct ImageKey {
    cipher: Aes256Gcm,
    uuid: Uuid,
}

/// A sealed piece failed authentication: it was changed, damaged, or sealed elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAuthentic;

impl ImageKey {
    fn associated(&self, piece: Piece) -> [u8; 37] {
        let mut ad = [0u8; 37];
        ad[..16].copy_from_slice(self.uuid.as_bytes());
        let mut w = LeWriter(&mut ad[16..]);
        match piece {
            Piece::Chunk { index } => {
                w.u8(0, 1);
                w.u64(1, u64::from(index));
            }
            Piece::HashSegment(n) => {
                w.u8(0, 2);
                w.u64(1, n);
            }
            Piece::Catalog { method, raw_len } => {
                w.u8(0, 3);
                w.u64(1, raw_len);
                w.u64(9, u64::from(method));
            }
            Piece::Source => w.u8(0, 4),
        }
        ad
    }

    /// Seals `plain` as `piece`: nonce, ciphertext, tag.
    pub fn seal(&self, piece: Piece, plain: &[u8]) -> Vec<u8> {
        self.seal_with(&self.associated(piece), plain)
    }

    /// Opens what [`ImageKey::seal`] sealed as `piece`.
    pub fn open(&self, piece: Piece, sealed: &[u8]) -> Result<Vec<u8>, NotAuthentic> {
        self.open_with(&self.associated(piece), sealed)
    }

    /// Opens what [`ImageKey::seal`] sealed as `piece` where it lies, without a copy:
    /// the plaintext is the returned part of `sealed`.
    pub fn open_in_place<'a>(
        &self,
        piece: Piece,
        sealed: &'a mut [u8],
    ) -> Result<&'a [u8], NotAuthentic> {
        open_in_place(&self.cipher, &self.associated(piece), sealed)
    }

    /// Opens what [`ImageKey::seal`] sealed as `piece` into `out`, which must be exactly as
    /// long as the plaintext: one pass over the bytes where opening in place and copying
    /// out would take two. `sealed` is left as it was.
    pub fn open_into(
        &self,
        piece: Piece,
        sealed: &[u8],
        out: &mut [u8],
    ) -> Result<(), NotAuthentic> {
        let Some(body_len) = sealed.len().checked_sub(SEAL_OVERHEAD) else {
            return Err(NotAuthentic);
        };
        if body_len != out.len() {
            return Err(NotAuthentic);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(body_len);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        let tag: [u8; TAG_LEN] = tag.try_into().expect("split at TAG_LEN");
        let buf = aes_gcm::aead::inout::InOutBuf::new(body, out).map_err(|_| NotAuthentic)?;
        self.cipher
            .decrypt_inout_detached(&nonce.into(), &self.associated(piece), buf, &tag.into())
            .map_err(|_| NotAuthentic)
    }

    /// Seals the index, bound to the header region it belongs to (bytes 0..1024, which
    /// hold the image's identity, its parent, its geometry and its encryption fields).
    pub fn seal_index(&self, header_region: &[u8], plain: &[u8]) -> Vec<u8> {
        self.seal_with(header_region, plain)
    }

    /// Opens an index sealed by [`ImageKey::seal_index`].
    pub fn open_index(&self, header_region: &[u8], sealed: &[u8]) -> Result<Vec<u8>, NotAuthentic> {
        self.open_with(header_region, sealed)
    }

    fn seal_with(&self, ad: &[u8], plain: &[u8]) -> Vec<u8> {
        seal(&self.cipher, ad, plain)
    }

    fn open_with(&self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, NotAuthentic> {
        open(&self.cipher, ad, sealed)
    }
}

fn seal(cipher: &Aes256Gcm, ad: &[u8], plain: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = random();
    let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = cipher
        .encrypt_inout_detached(&nonce.into(), ad, (&mut out[NONCE_LEN..]).into())
        // Only refused beyond 64 GiB per message; pieces are at most 1 GiB.
        .expect("piece within AES-GCM's message limit");
    out.extend_from_slice(&tag);
    out
}

/// Opens `sealed` (nonce, ciphertext, tag) where it lies: the plaintext is the returned
/// part of it.
fn open_in_place<'a>(
    cipher: &Aes256Gcm,
    ad: &[u8],
    sealed: &'a mut [u8],
) -> Result<&'a [u8], NotAuthentic> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(NotAuthentic);
    }
    let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
    let body_len = rest.len() - TAG_LEN;
    let (body, tag) = rest.split_at_mut(body_len);
    let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().expect("split at NONCE_LEN");
    let tag: [u8; TAG_LEN] = (&*tag).try_into().expect("split at TAG_LEN");
    cipher
        .decrypt_inout_detached(&nonce.into(), ad, (&mut *body).into(), &tag.into())
        .map_err(|_| NotAuthentic)?;
    Ok(body)
}

/// Opens `sealed` into a new buffer.
fn open(cipher: &Aes256Gcm, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, NotAuthentic> {
    let mut out = sealed.to_vec();
    let len = open_in_place(cipher, ad, &mut out)?.len();
    out.truncate(NONCE_LEN + len);
    out.drain(..NONCE_LEN);
    Ok(out)
}

/// Stored bytes of a block-hash table of `count` entries (sealed in segments when
/// `sealed`), or None when that overflows.
pub fn hash_table_len(count: u64, sealed: bool) -> Option<u64> {
    let plain = count.checked_mul(8)?;
    if !sealed {
        return Some(plain);
    }
    let segments = count.div_ceil(HASH_SEGMENT_ENTRIES);
    plain.checked_add(segments.checked_mul(SEAL_OVERHEAD as u64)?)
}

/// The Argon2id cost of a passphrase slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KdfCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub passes: u32,
    /// Lanes (parallelism).
    pub lanes: u32,
}

/// What unlocks a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A passphrase, through Argon2id at this cost.
    Passphrase(KdfCost),
    /// The bytes of a key file, through BLAKE3 (a key file holds random bytes, so it
    /// needs no slow derivation).
    KeyFile,
}

/// A secret given by the user.
pub enum Secret {
    /// A passphrase (UTF-8 bytes as typed, without the line ending).
    Passphrase(Zeroizing<Vec<u8>>),
    /// The whole contents of a key file.
    KeyFile(Zeroizing<Vec<u8>>),
}

impl Secret {
    /// "passphrase" or "key file", for messages.
    pub fn what(&self) -> &'static str {
        match self {
            Secret::Passphrase(_) => "passphrase",
            Secret::KeyFile(_) => "key file",
        }
    }
}

/// One key slot: the master key wrapped under a key derived from a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    /// What unlocks it.
    pub kind: SlotKind,
    /// When it was added (seconds since 1970).
    pub created_unix: i64,
    salt: [u8; 32],
    sealed: [u8; SEAL_OVERHEAD + 32],
}

/// Why a key-slot area cannot be used.
pub type SlotError = String;

impl KeySlot {
    /// A slot for `master` under `secret`, for the chain named `key_id`.
    pub fn new(master: &MasterKey, secret: &Secret, kdf: KdfCost, created_unix: i64) -> KeySlot {
        let kind = match secret {
            Secret::Passphrase(_) => SlotKind::Passphrase(kdf),
            Secret::KeyFile(_) => SlotKind::KeyFile,
        };
        let mut slot = KeySlot {
            kind,
            created_unix,
            salt: random(),
            sealed: [0; SEAL_OVERHEAD + 32],
        };
        let kek = slot
            .wrapping_key(secret)
            .expect("the slot kind was taken from the secret");
        let ad = slot.associated(&master.key_id());
        let sealed = seal(&kek, &ad, &master.0[..]);
        slot.sealed.copy_from_slice(&sealed);
        slot
    }

    /// The cipher that wraps the master key, derived from `secret`; None when the secret
    /// is of the other kind. Fails only for a KDF cost outside what a reader accepts.
    fn wrapping_key(&self, secret: &Secret) -> Option<Aes256Gcm> {
        let key = match (self.kind, secret) {
            (SlotKind::Passphrase(c), Secret::Passphrase(p)) => {
                let params = argon2::Params::new(c.memory_kib, c.passes, c.lanes, Some(32)).ok()?;
                let argon = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                );
                let mut out = Zeroizing::new([0u8; 32]);
                argon.hash_password_into(p, &self.salt, &mut out[..]).ok()?;
                out
            }
            (SlotKind::KeyFile, Secret::KeyFile(bytes)) => {
                let mut h = blake3::Hasher::new_derive_key("strata 2026-12 key file");
                h.update(&self.salt);
                h.update(bytes);
                Zeroizing::new(*h.finalize().as_bytes())
            }
            _ => return None,
        };
        Some(Aes256Gcm::new(&(*key).into()))
    }

    /// Bytes 0..56 of the encoded slot (kind, cost, time, salt) and the chain's key id:
    /// a slot whose fields were changed does not open.
    fn associated(&self, key_id: &[u8; 16]) -> Vec<u8> {
        let mut buf = [0u8; SLOT_SIZE];
        self.encode_into(&mut buf);
        let mut ad = b"strata key slot\0".to_vec();
        ad.extend_from_slice(key_id);
        ad.extend_from_slice(&buf[..56]);
        ad
    }

    /// True when `other` is this slot (the same random salt): slots copied between the
    /// images of a chain are matched this way, whatever their number.
    pub fn same_slot(&self, other: &KeySlot) -> bool {
        self.salt == other.salt
    }

    /// The master key, when `secret` opens this slot.
    pub fn unlock(&self, secret: &Secret, key_id: &[u8; 16]) -> Option<MasterKey> {
        let kek = self.wrapping_key(secret)?;
        let plain = Zeroizing::new(open(&kek, &self.associated(key_id), &self.sealed).ok()?);
        let key: [u8; 32] = plain.as_slice().try_into().ok()?;
        let master = MasterKey(Zeroizing::new(key));
        (master.key_id() == *key_id).then_some(master)
    }

    fn encode_into(&self, buf: &mut [u8]) {
        let mut w = LeWriter(buf);
        match self.kind {
            SlotKind::Passphrase(c) => {
                w.u8(0, 1);
                w.u32(4, c.memory_kib);
                w.u32(8, c.passes);
                w.u32(12, c.lanes);
            }
            SlotKind::KeyFile => w.u8(0, 2),
        }
        w.i64(16, self.created_unix);
        w.put(24, &self.salt);
        w.put(56, &self.sealed);
    }

    fn decode(buf: &[u8]) -> Result<Option<KeySlot>, SlotError> {
        let f = LeFields(buf);
        let kind = match f.u8(0) {
            0 => return Ok(None),
            1 => {
                let c = KdfCost {
                    memory_kib: f.u32(4),
                    passes: f.u32(8),
                    lanes: f.u32(12),
                };
                if c.memory_kib > MAX_KDF_MEMORY_KIB
                    || !(1..=MAX_KDF_PASSES).contains(&c.passes)
                    || !(1..=MAX_KDF_LANES).contains(&c.lanes)
                    || c.memory_kib < 8 * c.lanes
                {
                    return Err(format!(
                        "Argon2id cost {} KiB, {} passes, {} lanes is outside what strata \
                         accepts (at most {MAX_KDF_MEMORY_KIB} KiB, {MAX_KDF_PASSES} passes, \
                         {MAX_KDF_LANES} lanes)",
                        c.memory_kib, c.passes, c.lanes
                    ));
                }
                SlotKind::Passphrase(c)
            }
            2 => SlotKind::KeyFile,
            k => return Err(format!("unknown key slot kind {k}")),
        };
        Ok(Some(KeySlot {
            kind,
            created_unix: f.i64(16),
            salt: f.bytes(24),
            sealed: f.bytes(56),
        }))
    }
}

/// The key slots of an image, and the generation of the copy they were read from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeySlots {
    /// Raised by one each time the slots are rewritten; the copy with the higher valid
    /// generation wins.
    pub generation: u64,
    /// The slots in use, in slot order.
    pub slots: Vec<KeySlot>,
}

impl KeySlots {
    /// One copy of the area, [`SLOT_COPY_SIZE`] bytes.
    // At most MAX_SLOTS (8) slots: the count fits any integer.
    #[allow(clippy::cast_possible_truncation)]
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.slots.len() <= MAX_SLOTS, "too many key slots");
        let mut buf = vec![0u8; SLOT_COPY_SIZE];
        let mut w = LeWriter(&mut buf);
        w.put(0, &SLOTS_MAGIC);
        w.u64(8, self.generation);
        w.u32(16, self.slots.len() as u32);
        for (i, s) in self.slots.iter().enumerate() {
            let at = 24 + i * SLOT_SIZE;
            s.encode_into(&mut buf[at..at + SLOT_SIZE]);
        }
        let sum = xxh3_64(&buf[..SLOT_COPY_SIZE - 8]);
        LeWriter(&mut buf).u64(SLOT_COPY_SIZE - 8, sum);
        buf
    }

    fn decode_copy(buf: &[u8]) -> Result<KeySlots, SlotError> {
        let f = LeFields(buf);
        if buf[..8] != SLOTS_MAGIC {
            return Err("no key-slot signature".into());
        }
        if xxh3_64(&buf[..SLOT_COPY_SIZE - 8]) != f.u64(SLOT_COPY_SIZE - 8) {
            return Err("key-slot checksum mismatch".into());
        }
        let count = f.u32(16) as usize;
        if count == 0 || count > MAX_SLOTS {
            return Err(format!("{count} key slots (1 to {MAX_SLOTS} expected)"));
        }
        let mut slots = Vec::with_capacity(count);
        for i in 0..count {
            let at = 24 + i * SLOT_SIZE;
            match KeySlot::decode(&buf[at..at + SLOT_SIZE])? {
                Some(s) => slots.push(s),
                None => return Err(format!("key slot {i} is empty")),
            }
        }
        Ok(KeySlots {
            generation: f.u64(8),
            slots,
        })
    }

    /// The valid copy with the higher generation from a 4096-byte header, and which copy
    /// it is (0 or 1).
    pub fn decode(header: &[u8]) -> Result<(KeySlots, usize), SlotError> {
        let mut best: Option<(KeySlots, usize)> = None;
        let mut why = Vec::new();
        for (i, &at) in SLOT_COPY_OFFSETS.iter().enumerate() {
            match KeySlots::decode_copy(&header[at..at + SLOT_COPY_SIZE]) {
                Ok(s) if best.as_ref().is_none_or(|b| s.generation > b.0.generation) => {
                    best = Some((s, i));
                }
                Ok(_) => {}
                Err(e) => why.push(format!("copy {}: {e}", i + 1)),
            }
        }
        best.ok_or_else(|| format!("no usable key slots ({})", why.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfCost {
        KdfCost {
            memory_kib: 64,
            passes: 1,
            lanes: 1,
        }
    }

    #[test]
    fn sealed_pieces_open_only_in_their_place() {
        let m = MasterKey::generate();
        let uuid = Uuid::from_bytes([7; 16]);
        let salt = [1u8; 32];
        let k = m.image_key(uuid, &salt);
        let piece = Piece::Chunk { index: 3 };
        let s = k.seal(piece, b"hello");
        assert_eq!(s.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(k.open(piece, &s).unwrap(), b"hello");
        let moved = Piece::Chunk { index: 4 };
        assert_eq!(k.open(moved, &s), Err(NotAuthentic));
        let other = m.image_key(Uuid::from_bytes([8; 16]), &salt);
        assert_eq!(other.open(piece, &s), Err(NotAuthentic));
        for i in 0..s.len() {
            let mut bad = s.clone();
            bad[i] ^= 1;
            assert_eq!(k.open(piece, &bad), Err(NotAuthentic), "flip at {i}");
        }
        // Two seals of the same bytes differ (random nonces).
        assert_ne!(k.seal(piece, b"hello"), s);
    }

    #[test]
    fn slots_unlock_with_their_secret_only() {
        let m = MasterKey::generate();
        let pass = Secret::Passphrase(Zeroizing::new(b"correct horse".to_vec()));
        let file = Secret::KeyFile(Zeroizing::new(vec![9u8; 64]));
        let slots = KeySlots {
            generation: 5,
            slots: vec![
                KeySlot::new(&m, &pass, cheap(), 1),
                KeySlot::new(&m, &file, cheap(), 2),
            ],
        };
        let mut header = vec![0u8; 4096];
        header[SLOT_COPY_OFFSETS[0]..SLOT_COPY_OFFSETS[0] + SLOT_COPY_SIZE]
            .copy_from_slice(&slots.encode());
        let (back, copy) = KeySlots::decode(&header).unwrap();
        assert_eq!((back.clone(), copy), (slots, 0));
        let id = m.key_id();
        let got = back.slots[0].unlock(&pass, &id).unwrap();
        assert_eq!(got.key_id(), id);
        assert!(back.slots[1].unlock(&file, &id).is_some());
        assert!(back.slots[0].unlock(&file, &id).is_none());
        let wrong = Secret::Passphrase(Zeroizing::new(b"correct horsf".to_vec()));
        assert!(back.slots[0].unlock(&wrong, &id).is_none());
        // A newer valid second copy wins; a damaged one is ignored.
        let newer = KeySlots {
            generation: 6,
            slots: vec![back.slots[1].clone()],
        };
        let mut h2 = header.clone();
        h2[SLOT_COPY_OFFSETS[1]..SLOT_COPY_OFFSETS[1] + SLOT_COPY_SIZE]
            .copy_from_slice(&newer.encode());
        assert_eq!(KeySlots::decode(&h2).unwrap().1, 1);
        h2[SLOT_COPY_OFFSETS[1] + 30] ^= 1;
        assert_eq!(KeySlots::decode(&h2).unwrap().1, 0);
        // A hostile KDF cost is refused before any allocation.
        let mut h3 = header.clone();
        let at = SLOT_COPY_OFFSETS[0] + 24 + 4;
        h3[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let sum = xxh3_64(&h3[SLOT_COPY_OFFSETS[0]..SLOT_COPY_OFFSETS[0] + SLOT_COPY_SIZE - 8]);
        let end = SLOT_COPY_OFFSETS[0] + SLOT_COPY_SIZE - 8;
        h3[end..end + 8].copy_from_slice(&sum.to_le_bytes());
        assert!(KeySlots::decode(&h3).unwrap_err().contains("Argon2id cost"));
    }

    #[test]
    fn hash_table_lengths() {
        assert_eq!(hash_table_len(10, false), Some(80));
        assert_eq!(hash_table_len(0, true), Some(0));
        assert_eq!(hash_table_len(1, true), Some(8 + 28));
        assert_eq!(hash_table_len(4097, true), Some(4097 * 8 + 56));
        assert_eq!(hash_table_len(u64::MAX, false), None);
    }
}
