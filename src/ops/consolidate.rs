//! `strata consolidate`: merges an image into its parent, or writes a synthetic full image
//! of any chain point.
//!
//! Merging keeps the chain point and drops the parent's point: the image's file is replaced
//! by one that holds the parent's and its own changes, needs only the grandparent, and
//! answers to the old image's identity (so the image's own children still find it). The new
//! file is written beside the old one, verified, compared block by block with the chain,
//! and renamed over it; only then is the parent removed (unless other images still need it).
//! A kill at any moment leaves either the old chain or the new one, both complete.

use super::pipeline;
use crate::atomic_file::{partial_path, AtomicFile};
use crate::chain::{resolve, Chain, ResolveOptions};
use crate::container::header::{Header, ImageKind};
use crate::container::index::{Alias, ExtentKind};
use crate::container::reader::Image;
use crate::container::writer::ImageWriter;
use crate::error::{Error, Result};
use crate::progress::{check_interrupt, Progress};
use crate::storage::{s3, Output};
use std::path::{Path, PathBuf};
use std::time::Instant;
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

/// What to consolidate.
#[derive(Debug, Clone)]
pub struct ConsolidateOptions {
    /// The chain point to keep.
    pub image: PathBuf,
    /// Write a synthetic full image of the point here instead of merging in place.
    pub full_output: Option<PathBuf>,
    /// Replace an existing `full_output`.
    pub force: bool,
    /// Keep the parent file even when nothing needs it any more.
    pub keep_parent: bool,
    pub level: i32,
    pub threads: usize,
    pub progress: bool,
    pub resolve: ResolveOptions,
}

/// What `consolidate` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsolidateSummary {
    /// The file written.
    pub image: PathBuf,
    pub kind: ImageKind,
    /// Images whose blocks were merged into it.
    pub merged: Vec<PathBuf>,
    /// Parent files removed afterwards.
    pub removed: Vec<PathBuf>,
    /// Parent files kept, and why.
    pub kept: Vec<(PathBuf, String)>,
    pub image_bytes: u64,
    pub seconds: f64,
}

/// Runs a consolidation.
pub fn consolidate(opts: &ConsolidateOptions) -> Result<ConsolidateSummary> {
    let started = Instant::now();
    let chain = Chain::open(&opts.image, &opts.resolve)?;
    let layers = chain.layers();
    let top = layers.len() - 1;
    let top_img = chain.top();
    let (lo, target, force) = match &opts.full_output {
        Some(out) => {
            if let Some(l) = super::layer_named(layers, out) {
                return Err(Error::Invalid(format!(
                    "{}: is part of the chain ({}); choose another output",
                    out.display(),
                    l.path().display()
                )));
            }
            (0, out.clone(), opts.force)
        }
        None if top == 0 => {
            return Err(Error::Invalid(format!(
                "{}: is a full image, there is no parent to merge it into \
                 (use --full OUT for a copy)",
                opts.image.display()
            )))
        }
        None => (top - 1, top_img.path().to_path_buf(), true),
    };
    let in_place = opts.full_output.is_none();
    let kind = match lo {
        0 => ImageKind::Full,
        1 => ImageKind::Differential,
        _ => ImageKind::Incremental,
    };
    let th = top_img.header();
    let (parent_uuid, parent_index_digest, parent_hint) = match lo.checked_sub(1) {
        None => (Uuid::nil(), [0; 32], String::new()),
        Some(p) => (
            layers[p].header().image_uuid,
            layers[p].trailer().index_digest,
            super::create::path_hint(layers[p].path(), &target),
        ),
    };
    let mut aliases = Vec::new();
    if in_place {
        aliases.push(Alias {
            uuid: th.image_uuid,
            index_digest: top_img.trailer().index_digest,
        });
        aliases.extend(top_img.index().aliases.iter().copied());
    }
    let mut header = Header {
        image_uuid: if in_place {
            th.image_uuid
        } else {
            Uuid::new_v4()
        },
        parent_uuid,
        parent_index_digest,
        kind,
        compression: 1,
        compression_level: opts.level as i8,
        parent_hint,
        // A fresh salt: the new file gets its own image key even where it keeps the UUID.
        encryption: th
            .encryption
            .clone()
            .map(|e| crate::container::header::Encryption {
                salt: crate::container::crypto::random(),
                ..e
            }),
        ..th.clone()
    };
    header.fit_strings();

    let merged = Chain::merge(layers, lo, top);
    // A file is written under its `.partial` name and renamed into place; an object is
    // uploaded under its `.partial` name, checked, and copied into place on the server.
    let remote = crate::storage::is_remote(&target);
    if remote && !force && s3::exists_url(&target)? {
        return Err(Error::Invalid(format!(
            "{}: already exists; use --force to replace it",
            target.display()
        )));
    }
    let written = partial_path(&target);
    let (mut local, output) = if remote {
        let upload = s3::Upload::create(&written, true)?;
        (None, Output::Upload(Box::new(upload)))
    } else {
        let mut out = AtomicFile::create(&target, force)?;
        let file = out.take();
        (Some(out), Output::File(file))
    };
    let mut writer = ImageWriter::new(output, &written, header)?;
    let bs = chain.block_size() as usize;
    let data_bytes: u64 = merged
        .iter()
        .filter(|e| e.kind == ExtentKind::Data)
        .map(|e| u64::from(e.count) * bs as u64)
        .sum();
    let progress = Progress::new(data_bytes, "merging", opts.progress);
    let copied = pipeline::run(&mut writer, opts.threads, opts.level, |packer| {
        for e in merged.iter().filter(|e| e.kind == ExtentKind::Data) {
            check_interrupt()?;
            let chunk = chain.chunk(e.layer, e.chunk)?;
            // Filesystem metadata stays in chunks of its own.
            let meta = chain.layers()[e.layer as usize].is_metadata_chunk(e.chunk);
            for i in 0..e.count {
                let at = (e.block_in_chunk + i) as usize * bs;
                let data = &chunk[at..at + bs];
                let (block, hash) = (e.disk_block + u64::from(i), xxh3_64(data));
                let pushed = if meta {
                    packer.push_meta(block, data, hash)
                } else {
                    packer.push(block, data, hash)
                };
                if !pushed {
                    return Ok(());
                }
            }
            progress.inc(u64::from(e.count) * bs as u64);
        }
        Ok(())
    });
    progress.finish();
    copied?;
    for e in &merged {
        match e.kind {
            ExtentKind::Data => {}
            // In a full image unmapped blocks already read as zeros.
            ExtentKind::Zero if kind == ImageKind::Full => {}
            k => writer.add_extent(e.disk_block, e.count, k),
        }
    }
    writer.set_aliases(aliases);
    let header_bytes = writer.header().encode();
    writer.hold_tail()?;
    let (output, _, mut summary) = writer.finish()?;
    // The merged image is the top image's point: its catalog describes it unchanged,
    // stored whole (it may have been a change to a catalog merged away here).
    let catalog = match crate::catalog::resolved(chain.layers(), None) {
        Ok(Ok(Some((c, _)))) => Some(c.encode()),
        _ => None,
    };
    let merged_paths: Vec<PathBuf> = layers[lo..]
        .iter()
        .map(|l| l.path().to_path_buf())
        .collect();
    let parent = (
        layers[lo].path().to_path_buf(),
        layers[lo].header().image_uuid,
    );
    match (output, local.take()) {
        (Output::File(mut file), Some(out)) => {
            if let Some(raw) = catalog {
                summary.file_bytes = crate::container::catalog::attach(&mut file, &written, &raw)?;
            }
            file.sync_all()
                .map_err(|e| Error::io(&written, "cannot flush output to disk", e))?;
            check_written(&chain, lo, &written, opts.threads)?;
            // Every image of the chain is closed before its file is replaced or removed:
            // Windows refuses to rename over, or delete, a file this process still has open.
            drop(chain);
            out.commit(file)?;
        }
        (Output::Upload(mut upload), _) => {
            if let Some(raw) = catalog {
                let image = super::staged_image(&upload, &header_bytes, &written)?;
                summary.file_bytes = super::upload_catalog(&mut upload, &image, &raw)?;
            }
            upload.complete()?;
            if let Err(e) = check_written(&chain, lo, &written, opts.threads) {
                let _ = s3::delete(&written);
                return Err(e);
            }
            drop(chain);
            s3::copy(&written, &target)?;
            s3::delete(&written)?;
        }
        (Output::File(_), None) => unreachable!("a file is written through an AtomicFile"),
    }

    let mut removed = Vec::new();
    let mut kept = Vec::new();
    if in_place {
        let (parent, parent_uuid) = parent;
        match still_needed(&parent, parent_uuid, &target, &opts.resolve) {
            _ if opts.keep_parent => kept.push((parent, "--keep-parent".into())),
            Ok(Some(user)) => kept.push((parent, format!("{} still builds on it", user.display()))),
            Err(e) => kept.push((
                parent,
                format!("could not check that no other image builds on it: {e}"),
            )),
            Ok(None) => {
                if crate::storage::is_remote(&parent) {
                    s3::delete(&parent)?;
                } else {
                    std::fs::remove_file(&parent)
                        .map_err(|e| Error::io(&parent, "cannot remove the merged parent", e))?;
                }
                removed.push(parent);
            }
        }
    }
    Ok(ConsolidateSummary {
        image: target,
        kind,
        merged: merged_paths,
        removed,
        kept,
        image_bytes: summary.file_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Verifies the new file and checks that, on top of the layers below `lo`, it reads exactly
/// like the chain point: same block hash or zero for every block.
fn check_written(chain: &Chain, lo: usize, written: &Path, threads: usize) -> Result<()> {
    let report = super::verify::verify_unfinished(written, threads)?;
    if let Some(p) = report.problems.first() {
        return Err(Error::corrupt(
            written,
            "consolidated image",
            0,
            format!("fails verification: {}: {}", p.what, p.detail),
        ));
    }
    let mut layers = Vec::new();
    for l in &chain.layers()[..lo] {
        layers.push(Image::open(l.path())?);
    }
    layers.push(Image::open_unfinished(written)?.0);
    let fresh = Chain::from_layers(layers)?;
    let blocks = chain.top().header().block_count();
    let step = 1u64 << 20;
    let mut b = 0;
    while b < blocks {
        let n = step.min(blocks - b);
        if fresh.block_states(b, n)? != chain.block_states(b, n)? {
            return Err(Error::corrupt(
                written,
                "consolidated image",
                0,
                format!("differs from the chain point in blocks {b}..{}", b + n),
            ));
        }
        b += n;
    }
    Ok(())
}

/// Another image (besides `replaced`) in the parent's directory or the search directories
/// whose parent is `parent`, if any. A directory that cannot be listed or an image whose
/// header cannot be read is an error: the parent may still be needed.
fn still_needed(
    parent: &Path,
    uuid: Uuid,
    replaced: &Path,
    opts: &ResolveOptions,
) -> Result<Option<PathBuf>> {
    let mut dirs = vec![resolve::dir_of(parent), resolve::dir_of(replaced)];
    dirs.extend(opts.parent_dirs.iter().cloned());
    dirs.dedup();
    for dir in &dirs {
        for p in crate::storage::files_in(dir, crate::container::EXTENSION)? {
            if super::same_file(&p, replaced)
                || super::same_file(&p, parent)
                || p == partial_path(replaced)
            {
                continue;
            }
            if resolve::read_header(&p)?.is_some_and(|h| h.parent_uuid == uuid) {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}
