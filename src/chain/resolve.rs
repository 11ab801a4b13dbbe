//! Finding an image's ancestors: by the path hint it recorded, then by UUID among the
//! `*.strata` files of its directory and of any `--parent-dir`.
//!
//! A parent is accepted only if its UUID and index digest are the ones the child recorded
//! (or it took that identity over by consolidation), it images the same disk geometry, and
//! it does not close a cycle.

use crate::container::header::{Header, ImageKind, HEADER_SIZE};
use crate::container::reader::Image;
use crate::container::EXTENSION;
use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Where to look for parents besides the path hint and the image's own directory.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    pub parent_dirs: Vec<PathBuf>,
}

/// Opens `path` and its ancestors; returns them full image first.
pub fn resolve(path: &Path, opts: &ResolveOptions) -> Result<Vec<Image>> {
    let mut chain = vec![Image::open(path)?];
    let mut dirs = DirCache::default();
    // The canonical path of the child being resolved: the parent found for one link is
    // the child of the next, so each image's path is resolved once.
    let mut me = crate::storage::canonical(path);
    let mut seen = HashSet::new();
    seen.insert(chain[0].header().image_uuid);
    loop {
        let child = chain.last().expect("non-empty");
        if child.header().kind == ImageKind::Full {
            break;
        }
        if chain.len() >= super::MAX_CHAIN_LEN {
            return Err(Error::BrokenChain {
                path: path.into(),
                detail: format!("chain is longer than {} images", super::MAX_CHAIN_LEN),
            });
        }
        let (parent, canon) = find_parent(child, me.as_ref(), opts, &mut dirs)?;
        me = Some(canon);
        check_link(child, &parent)?;
        if !seen.insert(parent.header().image_uuid) {
            return Err(Error::BrokenChain {
                path: child.path().into(),
                detail: format!(
                    "the chain loops: parent {} ({}) is already in it",
                    parent.header().image_uuid,
                    parent.path().display()
                ),
            });
        }
        chain.push(parent);
    }
    chain.reverse();
    Ok(chain)
}

/// Checks that `parent` can serve as `child`'s parent (identity already matched).
pub fn check_link(child: &Image, parent: &Image) -> Result<()> {
    let (c, p) = (child.header(), parent.header());
    if c.disk_size != p.disk_size || c.sector_size != p.sector_size || c.block_size != p.block_size
    {
        return Err(Error::BrokenChain {
            path: child.path().into(),
            detail: format!(
                "parent {} images another disk ({} bytes, {}-byte sectors, {}-byte blocks; \
                 this image: {} bytes, {}-byte sectors, {}-byte blocks)",
                parent.path().display(),
                p.disk_size,
                p.sector_size,
                p.block_size,
                c.disk_size,
                c.sector_size,
                c.block_size
            ),
        });
    }
    if c.kind == ImageKind::Differential && p.kind != ImageKind::Full {
        return Err(Error::BrokenChain {
            path: child.path().into(),
            detail: format!(
                "is a differential image but its parent {} is not a full image",
                parent.path().display()
            ),
        });
    }
    same_key(child.path(), c, parent.path(), p)
}

/// A chain has one key: strata writes a child with its parent's key. A child in clear (or
/// under another key) over an encrypted parent could be written by anyone who only holds
/// the files, and would lay their blocks over the real ones, so it is refused.
pub fn same_key(
    child: &Path,
    c: &crate::container::header::Header,
    parent: &Path,
    p: &crate::container::header::Header,
) -> Result<()> {
    let key = |h: &crate::container::header::Header| h.encryption.as_ref().map(|e| e.key_id);
    if key(c) != key(p) {
        let what = |h: &crate::container::header::Header| {
            if h.encryption.is_some() {
                "encrypted"
            } else {
                "not encrypted"
            }
        };
        return Err(Error::BrokenChain {
            path: child.into(),
            detail: format!(
                "is {} and its parent {} is {}{}: a chain has one key, so this image was not \
                 made from that parent by strata",
                what(c),
                parent.display(),
                what(p),
                if c.encryption.is_some() && p.encryption.is_some() {
                    " under another key"
                } else {
                    ""
                }
            ),
        });
    }
    Ok(())
}

/// The directory holding `path` ("." for a bare file name).
pub fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `*.strata` files (or objects) in `dir`, sorted by name (a directory or bucket prefix
/// that cannot be listed gives none).
pub fn images_in(dir: &Path) -> Vec<PathBuf> {
    crate::storage::files_in(dir, EXTENSION).unwrap_or_default()
}

/// Reads just the header of `path`, or None if it is not a readable image header.
pub fn peek_header(path: &Path) -> Option<Header> {
    read_header(path).ok().flatten()
}

/// Reads just the header of `path`: None when the file is no image (shorter than a header,
/// or no valid header), an error when it could not be read. Whoever decides that no image
/// builds on another must not take "could not read" for "no".
pub fn read_header(path: &Path) -> Result<Option<Header>> {
    let (f, len) = crate::storage::Blob::open(path)?;
    if len < HEADER_SIZE as u64 {
        return Ok(None);
    }
    let mut buf = vec![0u8; HEADER_SIZE];
    f.read_exact_at(&mut buf, 0)
        .map_err(|e| Error::io(path, "cannot read the header", e))?;
    Ok(Header::decode(&buf, true).ok())
}

/// The `*.strata` files of the directories searched so far, with the UUID in each header,
/// listed once per resolution: listing and reading every header again for each link made
/// opening a chain of n images in one directory cost n² file lookups (2 s at 1,000).
#[derive(Default)]
struct DirCache {
    dirs: HashMap<PathBuf, Vec<(PathBuf, Option<uuid::Uuid>)>>,
}

impl DirCache {
    /// Images in `dir` whose header names `uuid`, sorted by name.
    fn with_uuid(&mut self, dir: &Path, uuid: uuid::Uuid) -> Vec<PathBuf> {
        self.dirs
            .entry(dir.to_path_buf())
            .or_insert_with(|| {
                images_in(dir)
                    .into_iter()
                    .map(|p| {
                        let id = peek_header(&p).map(|h| h.image_uuid);
                        (p, id)
                    })
                    .collect()
            })
            .iter()
            .filter(|(_, id)| *id == Some(uuid))
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// The parent of `child` (whose canonical path is `me`), and its own canonical path.
fn find_parent(
    child: &Image,
    me: Option<&PathBuf>,
    opts: &ResolveOptions,
    cache: &mut DirCache,
) -> Result<(Image, PathBuf)> {
    let h = child.header();
    let (want, digest) = (h.parent_uuid, h.parent_index_digest);
    let child_dir = dir_of(child.path());
    let mut dirs = vec![child_dir.clone()];
    dirs.extend(opts.parent_dirs.iter().cloned());
    let mut tried = HashSet::new();
    let mut impostor: Option<(PathBuf, String)> = None;
    // The parent was found but cannot be used for its key: it could not be unlocked (exit
    // code 4), or it is under another key than this image (exit code 3).
    let mut refused: Option<Error> = None;
    // A candidate that is there but could not be opened (no permission, too many open
    // files): the likely parent, so its error, not "not found", when no other is found.
    let mut unopened: Option<Error> = None;
    // The hint alone first (the usual case, one file opened); the directories only when it
    // does not lead to the parent.
    let hint = (!h.parent_hint.is_empty()).then(|| {
        if crate::storage::is_remote(Path::new(&h.parent_hint)) {
            PathBuf::from(&h.parent_hint)
        } else {
            child_dir.join(&h.parent_hint)
        }
    });
    // Only a file whose header carries the wanted UUID counts (a wrong one is reported as
    // such); any other is passed over. Its header is read before the image is opened: an
    // image of another encrypted chain would otherwise ask for that chain's key.
    let mut try_one = |cand: PathBuf| -> Option<(Image, PathBuf)> {
        let canon = crate::storage::canonical(&cand)?;
        if Some(&canon) == me || !tried.insert(canon.clone()) {
            return None;
        }
        // The header alone says whether this is the parent, and whether it has this
        // image's key, before opening it would ask for a key.
        let mut accept = |ph: &Header| {
            if ph.image_uuid != want {
                return false;
            }
            if let Err(e) = same_key(child.path(), h, &cand, ph) {
                refused.get_or_insert(e);
                return false;
            }
            true
        };
        match Image::open_if(&cand, &mut accept) {
            Ok(None) => return None,
            Ok(Some(img)) if img.answers_to(want, &digest) => return Some((img, canon)),
            Ok(Some(img)) => {
                impostor.get_or_insert((
                    cand,
                    format!(
                        "its content differs from what this image was made from (index digest \
                         {}…, expected {}…): it was modified or replaced",
                        short_hex(&img.trailer().index_digest),
                        short_hex(&digest)
                    ),
                ));
            }
            Err(e @ Error::Key { .. }) => {
                refused.get_or_insert(e);
            }
            Err(e @ Error::Io { .. }) => {
                unopened.get_or_insert(e);
            }
            Err(e) => {
                impostor.get_or_insert((cand, format!("it cannot be used: {e}")));
            }
        }
        None
    };
    if let Some(found) = hint.and_then(&mut try_one) {
        return Ok(found);
    }
    for d in &dirs {
        for cand in cache.with_uuid(d, want) {
            if let Some(found) = try_one(cand) {
                return Ok(found);
            }
        }
    }
    if let Some(e) = refused.or(unopened) {
        return Err(e);
    }
    if let Some((p, why)) = impostor {
        return Err(Error::BrokenChain {
            path: child.path().into(),
            detail: format!("parent {want} was found at {}, but {why}", p.display()),
        });
    }
    let was = if h.parent_hint.is_empty() {
        String::new()
    } else {
        format!(" (was `{}`)", h.parent_hint)
    };
    let places: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(Error::MissingParent {
        path: child.path().into(),
        detail: format!(
            "needs parent image {want}{was}, not found in {}; use --parent-dir to say where it is",
            places.join(", ")
        ),
    })
}

/// First 8 bytes of a digest as hex.
pub fn short_hex(d: &[u8]) -> String {
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
