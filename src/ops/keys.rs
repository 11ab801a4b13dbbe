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
    if crate::storage::is_dir(target) {
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
    if crate::storage::is_remote(path) {
        // An object cannot be changed in part: its slots would need the whole image
        // uploaded again.
        return Err(Error::Invalid(format!(
            "{}: the key slots of an image in a bucket cannot be changed in place; change \
             them in a local copy and upload that",
            path.display()
        )));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| crate::blockdev::file::open_error(path, "image", e))?;
    let mut buf = vec![0u8; HEADER_SIZE];
    crate::blockdev::file::read_exact_at(&file, &mut buf, 0)
        .map_err(|e| Error::io(path, "cannot read the header of", e))?;
    let header = Header::decode(&buf, true).map_err(|e| e.at(path))?;
    if header.encryption.is_none() {
        return Err(not_encrypted(path));
    }
    Ok((file, buf, header))
}

fn not_encrypted(path: &Path) -> Error {
    Error::Invalid(format!("{}: the image is not encrypted", path.display()))
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
        .map(|p| {
            let (blob, _) = crate::storage::Blob::open(p)?;
            let mut buf = vec![0u8; HEADER_SIZE];
            blob.read_exact_at(&mut buf, 0)
                .map_err(|e| Error::io(p, "cannot read the header of", e))?;
            let header = Header::decode(&buf, true).map_err(|e| e.at(p))?;
            if header.encryption.is_none() {
                return Err(not_encrypted(p));
            }
            Ok(describe(p, &header))
        })
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

/// An image a key command changes, read and locked.
struct Target {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    slots: KeySlots,
}

/// Images a key command left alone, and why.
type Skipped = Vec<(PathBuf, String)>;

/// What a key command did: the images changed, and those left alone with the reason.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Images whose slots were rewritten.
    pub changed: Vec<PathBuf>,
    /// Images not touched, and why.
    pub skipped: Skipped,
}

/// The images `target` names that share one chain key, each locked against another key
/// command, and the master key (unlocked once). In a directory, images in clear or under
/// another key are skipped; a single image must be encrypted.
fn gather(target: &Path) -> Result<(Vec<Target>, MasterKey, Skipped)> {
    let paths = targets(target)?;
    let single = paths.len() == 1 && !crate::storage::is_dir(target);
    let mut skipped = Vec::new();
    let mut chosen: Vec<Target> = Vec::new();
    let mut key: Option<([u8; 16], MasterKey)> = None;
    for path in paths {
        let (file, buf, header) = match read_header(&path) {
            Ok(t) => t,
            Err(e) if !single => {
                skipped.push((path, e.to_string()));
                continue;
            }
            Err(e) => return Err(e),
        };
        let e = header.encryption.expect("checked by read_header");
        match &key {
            None => {
                let master = keyring::unlock(&path, &e.key_id, &e.slots)?;
                key = Some((e.key_id, master));
            }
            Some((id, _)) if *id != e.key_id => {
                skipped.push((path, "another chain's key".into()));
                continue;
            }
            Some(_) => {}
        }
        // Two key commands at once would each write slots the other did not see.
        file.try_lock().map_err(|_| {
            Error::Invalid(format!(
                "{}: another command is changing its key slots",
                path.display()
            ))
        })?;
        chosen.push(Target {
            path,
            file,
            buf,
            slots: e.slots,
        });
    }
    let Some((_, master)) = key else {
        return Err(Error::Invalid(format!(
            "{}: no encrypted image here",
            target.display()
        )));
    };
    Ok((chosen, master, skipped))
}

fn next_generation(t: &Target) -> Result<u64> {
    t.slots.generation.checked_add(1).ok_or_else(|| {
        Error::corrupt(
            &t.path,
            "key slots",
            1024,
            "the slot generation cannot grow",
        )
    })
}

/// `key add`: a slot for `secret` in every image `target` names that shares the first
/// one's key (unlocked with the keys given). Checks every image before changing any.
pub fn add(target: &Path, secret: &Secret, kdf: KdfCost) -> Result<Outcome> {
    let now = crate::ops::create::creation_time().0;
    let (mut targets, master, skipped) = gather(target)?;
    for t in &targets {
        if t.slots.slots.len() >= MAX_SLOTS {
            return Err(Error::Invalid(format!(
                "{}: all {MAX_SLOTS} key slots are in use; remove one first (nothing was \
                 changed)",
                t.path.display()
            )));
        }
        next_generation(t)?;
    }
    // One new slot, the same in every image, so that `key remove` finds it everywhere.
    let slot = KeySlot::new(&master, secret, kdf, now);
    let mut out = Outcome {
        skipped,
        ..Outcome::default()
    };
    for t in &mut targets {
        let mut slots = t.slots.clone();
        slots.slots.push(slot.clone());
        slots.generation = next_generation(t)?;
        write_slots(&mut t.file, &t.path, &t.buf, &slots)?;
        out.changed.push(t.path.clone());
    }
    Ok(out)
}

/// `key remove`: slot `slot` as `key list` numbers it in the first image `target` names,
/// removed from every image that holds that same slot (and shares its key), after
/// unlocking with the keys given. An image whose only slot it is keeps it, and nothing
/// is changed.
pub fn remove(target: &Path, slot: usize) -> Result<Outcome> {
    let (mut targets, _, mut skipped) = gather(target)?;
    let first = &targets[0];
    let Some(gone) = first.slots.slots.get(slot).cloned() else {
        return Err(Error::Invalid(format!(
            "{}: there is no key slot {slot} (`strata key list` shows them)",
            first.path.display()
        )));
    };
    let mut work = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let Some(at) = t.slots.slots.iter().position(|s| s.same_slot(&gone)) else {
            skipped.push((t.path.clone(), "does not hold that slot".into()));
            continue;
        };
        if t.slots.slots.len() == 1 {
            return Err(Error::Invalid(format!(
                "{}: slot {at} is its last one; add another key first, or the image can \
                 never be opened again (nothing was changed)",
                t.path.display()
            )));
        }
        next_generation(t)?;
        work.push((i, at));
    }
    let mut out = Outcome {
        skipped,
        ..Outcome::default()
    };
    for (i, at) in work {
        let t = &mut targets[i];
        let mut slots = t.slots.clone();
        slots.slots.remove(at);
        slots.generation = next_generation(t)?;
        write_slots(&mut t.file, &t.path, &t.buf, &slots)?;
        out.changed.push(t.path.clone());
    }
    Ok(out)
}
