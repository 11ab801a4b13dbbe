//! `strata key`: list, add and remove the key slots of encrypted images.
//!
//! A slot change rewrites only the header's key-slot area, which no checksum or digest
//! that children depend on covers, so no data is rewritten and every chain stays whole.
//! The area has two copies: the new slots go to the copy not in use (with a higher
//! generation), are synced, and then overwrite the other copy too, so a crash at any point
//! leaves one valid copy, and a removed slot leaves no copy behind.

use crate::container::crypto::{
    KdfCost, KeySlot, KeySlots, MasterKey, Secret, SlotKind, MAX_SLOTS, SLOT_COPY_OFFSETS,
};
use crate::container::header::{Header, HEADER_SIZE};
use crate::container::keyring;
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One slot as `key list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotInfo {
    /// Its number (what `key remove` takes).
    pub slot: usize,
    /// "passphrase" or "key file".
    pub kind: &'static str,
    /// Argon2id cost of a passphrase slot.
    pub kdf: Option<KdfCost>,
    /// When it was added, RFC 3339 UTC.
    pub added: String,
}

/// The key slots of one image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSlots {
    /// The image file.
    pub image: PathBuf,
    /// The chain key's id, hex.
    pub key_id: String,
    /// Its slots.
    pub slots: Vec<SlotInfo>,
}

/// The image files `target` names: itself, or the images in a directory.
pub fn targets(target: &Path) -> Result<Vec<PathBuf>> {
    if target.is_dir() {
        let all = crate::chain::resolve::images_in(target);
        if all.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no .strata images in this directory",
                target.display()
            )));
        }
        Ok(all)
    } else {
        Ok(vec![target.to_path_buf()])
    }
}

fn read_header(path: &Path) -> Result<(File, Vec<u8>, Header)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| crate::blockdev::file::open_error(path, "image", e))?;
    let mut buf = vec![0u8; HEADER_SIZE];
    crate::blockdev::file::read_exact_at(&file, &mut buf, 0)
        .map_err(|e| Error::io(path, "cannot read the header of", e))?;
    let header = Header::decode(&buf, true).map_err(|e| match e {
        crate::container::header::HeaderError::NotAnImage(reason) => Error::NotAnImage {
            path: path.into(),
            reason,
        },
        crate::container::header::HeaderError::Unsupported(detail) => Error::Unsupported {
            path: path.into(),
            detail,
        },
        crate::container::header::HeaderError::Corrupt { offset, detail } => {
            Error::corrupt(path, "header", offset, detail)
        }
    })?;
    if header.encryption.is_none() {
        return Err(Error::Invalid(format!(
            "{}: the image is not encrypted",
            path.display()
        )));
    }
    Ok((file, buf, header))
}

fn describe(path: &Path, header: &Header) -> ImageSlots {
    let e = header.encryption.as_ref().expect("checked by read_header");
    ImageSlots {
        image: path.to_path_buf(),
        key_id: e.key_id.iter().map(|b| format!("{b:02x}")).collect(),
        slots: e
            .slots
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| SlotInfo {
                slot: i,
                kind: match s.kind {
                    SlotKind::Passphrase(_) => "passphrase",
                    SlotKind::KeyFile => "key file",
                },
                kdf: match s.kind {
                    SlotKind::Passphrase(c) => Some(c),
                    SlotKind::KeyFile => None,
                },
                added: crate::ops::info::rfc3339(s.created_unix, 0),
            })
            .collect(),
    }
}

/// `key list`: the slots of each image (no key needed: slots are in clear).
pub fn list(target: &Path) -> Result<Vec<ImageSlots>> {
    targets(target)?
        .iter()
        .map(|p| read_header(p).map(|(_, _, h)| describe(p, &h)))
        .collect()
}

/// Writes `slots` to both copies of the area: first the one not in use, then the other.
fn write_slots(file: &mut File, path: &Path, buf: &[u8], slots: &KeySlots) -> Result<()> {
    let (_, in_use) =
        KeySlots::decode(buf).map_err(|d| Error::corrupt(path, "key slots", 1024, d))?;
    let io = |e| Error::io(path, "cannot write the key slots of", e);
    for copy in [1 - in_use, in_use] {
        file.seek(SeekFrom::Start(SLOT_COPY_OFFSETS[copy] as u64))
            .map_err(io)?;
        file.write_all(&slots.encode()).map_err(io)?;
        file.sync_data().map_err(io)?;
    }
    Ok(())
}

fn unlock(path: &Path, header: &Header) -> Result<MasterKey> {
    let e = header.encryption.as_ref().expect("checked by read_header");
    keyring::unlock(path, &e.key_id, &e.slots)
}

/// `key add`: a slot for `secret` in every image `target` names (each unlocked with the
/// keys given). Returns the images changed.
pub fn add(target: &Path, secret: &Secret, kdf: KdfCost) -> Result<Vec<PathBuf>> {
    let now = crate::ops::create::creation_time().0;
    let mut changed = Vec::new();
    for path in targets(target)? {
        let (mut file, buf, header) = read_header(&path)?;
        let master = unlock(&path, &header)?;
        let mut slots = header.encryption.expect("checked").slots;
        if slots.slots.len() >= MAX_SLOTS {
            return Err(Error::Invalid(format!(
                "{}: all {MAX_SLOTS} key slots are in use; remove one first",
                path.display()
            )));
        }
        slots.slots.push(KeySlot::new(&master, secret, kdf, now));
        slots.generation += 1;
        write_slots(&mut file, &path, &buf, &slots)?;
        changed.push(path);
    }
    Ok(changed)
}

/// `key remove`: slot `slot` of every image `target` names, after unlocking each with
/// the keys given (so that only a key holder removes one). The last slot stays.
pub fn remove(target: &Path, slot: usize) -> Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    for path in targets(target)? {
        let (mut file, buf, header) = read_header(&path)?;
        unlock(&path, &header)?;
        let mut slots = header.encryption.expect("checked").slots;
        if slot >= slots.slots.len() {
            return Err(Error::Invalid(format!(
                "{}: there is no key slot {slot} (`strata key list` shows them)",
                path.display()
            )));
        }
        if slots.slots.len() == 1 {
            return Err(Error::Invalid(format!(
                "{}: slot {slot} is the last one; add another key first, or the image \
                 can never be opened again",
                path.display()
            )));
        }
        slots.slots.remove(slot);
        slots.generation += 1;
        write_slots(&mut file, &path, &buf, &slots)?;
        changed.push(path);
    }
    Ok(changed)
}
