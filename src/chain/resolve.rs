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
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Where to look for parents besides the path hint and the image's own directory.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    pub parent_dirs: Vec<PathBuf>,
}

/// Opens `path` and its ancestors; returns them full image first.
pub fn resolve(path: &Path, opts: &ResolveOptions) -> Result<Vec<Image>> {
    let mut chain = vec![Image::open(path)?];
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
        let parent = find_parent(child, opts)?;
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
    Ok(())
}

/// The directory holding `path` ("." for a bare file name).
pub fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `*.strata` files in `dir`, sorted by name (unreadable directories give none).
pub fn images_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == EXTENSION) && p.is_file())
        .collect();
    v.sort();
    v
}

/// Reads just the header of `path`, or None if it is not a readable image header.
pub fn peek_header(path: &Path) -> Option<Header> {
    let f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; HEADER_SIZE];
    crate::blockdev::file::read_exact_at(&f, &mut buf, 0).ok()?;
    Header::decode(&buf, true).ok()
}

fn find_parent(child: &Image, opts: &ResolveOptions) -> Result<Image> {
    let h = child.header();
    let (want, digest) = (h.parent_uuid, h.parent_index_digest);
    let child_dir = dir_of(child.path());
    let mut candidates = Vec::new();
    if !h.parent_hint.is_empty() {
        candidates.push(child_dir.join(&h.parent_hint));
    }
    let mut dirs = vec![child_dir.clone()];
    dirs.extend(opts.parent_dirs.iter().cloned());
    for d in &dirs {
        candidates.extend(images_in(d));
    }
    let me = std::fs::canonicalize(child.path()).ok();
    let mut tried = HashSet::new();
    let mut impostor: Option<(PathBuf, String)> = None;
    for cand in candidates {
        let Ok(canon) = std::fs::canonicalize(&cand) else {
            continue;
        };
        if Some(&canon) == me.as_ref() || !tried.insert(canon) {
            continue;
        }
        match peek_header(&cand) {
            Some(ph) if ph.image_uuid == want => {}
            _ => continue,
        }
        match Image::open(&cand) {
            Ok(img) if img.answers_to(want, &digest) => return Ok(img),
            Ok(img) => {
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
            Err(e) => {
                impostor.get_or_insert((cand, format!("it cannot be used: {e}")));
            }
        }
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
