//! `strata create`: reads a source and writes a full, differential or incremental image
//! through the chunk pipeline ([`super::pipeline`]).
//!
//! For a child image every block read is hashed and compared with the block hash the
//! parent point records for it; only blocks that differ are compressed and stored, blocks
//! that became zero are recorded as zero runs, and everything else is left to the parent.

use super::pipeline::{self, Packer};
use crate::atomic_file::AtomicFile;
use crate::blockdev::file::{DevKind, FileDev};
use crate::blockdev::{is_zero, BlockDev};
use crate::catalog::build::{BuildStats, Builder, Previous};
use crate::chain::{resolve, BlockState, Chain, ResolveOptions};
use crate::container::header::{Header, ImageKind, MINOR_VERSION};
use crate::container::index::ExtentKind;
use crate::container::reader::Image;
use crate::container::writer::ImageWriter;
use crate::container::{DEFAULT_BLOCK_SIZE, DEFAULT_CHUNK_SIZE};
use crate::error::{Error, Result};
use crate::progress::{check_interrupt, Progress};
use crate::ranges::Ranges;
use crate::storage::Output;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64;

/// What to image and how.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub source: PathBuf,
    pub dest: PathBuf,
    /// zstd level (1..=22).
    pub level: i32,
    /// Compression workers (at least 1).
    pub threads: usize,
    pub force: bool,
    /// Store every sector rather than only the blocks the filesystems use.
    pub clone: bool,
    /// Keep the contents of pagefile.sys, hiberfil.sys and swapfile.sys (NTFS).
    pub keep_pagefile: bool,
    /// Logical sector size of a raw disk file (files carry none of their own).
    pub sector_size: Option<u32>,
    /// Fixed image UUID, for reproducible images.
    pub uuid: Option<Uuid>,
    /// Make a child image of this parent instead of a full image.
    pub parent: Option<ParentSpec>,
    /// Where else to look for the parent's own ancestors.
    pub resolve: ResolveOptions,
    pub chunk_size: u32,
    pub progress: bool,
    /// Image around source sectors that cannot be read: record their blocks as unreadable
    /// (they read as zeros) instead of failing.
    pub skip_bad_sectors: bool,
    /// Store a catalog of the filesystems' entries in the image ([`crate::catalog`]).
    pub catalog: bool,
    /// Encrypt a new chain: its key slots, whose master key is in the
    /// [`keyring`](crate::container::keyring). A child of an encrypted image is
    /// encrypted with its parent's key without it.
    pub encrypt: Option<NewKey>,
}

/// The key of a new encrypted chain.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Names the master key (which is in the keyring).
    pub key_id: [u8; 16],
    /// Its first key slots.
    pub slots: crate::container::crypto::KeySlots,
}

/// The encryption fields of a new image: a new chain's key, or its parent's.
fn encryption_of(
    opts: &CreateOptions,
    parent: Option<&Chain>,
) -> Result<Option<crate::container::header::Encryption>> {
    use crate::container::crypto::random;
    use crate::container::header::Encryption;
    let inherited = parent.and_then(|c| c.top().header().encryption.clone());
    match (inherited, &opts.encrypt) {
        (Some(e), _) => Ok(Some(Encryption {
            salt: random(),
            sealed_source: Vec::new(),
            ..e
        })),
        (None, Some(_)) if parent.is_some() => Err(Error::Invalid(format!(
            "{}: the parent is not encrypted, and a chain has one key: start a new chain \
             with a full image to encrypt",
            parent.expect("checked").top().path().display()
        ))),
        (None, Some(new)) => Ok(Some(Encryption {
            key_id: new.key_id,
            salt: random(),
            sealed_source: Vec::new(),
            slots: new.slots.clone(),
        })),
        (None, None) => Ok(None),
    }
}

impl CreateOptions {
    /// Defaults for everything but the paths.
    pub fn new(source: impl Into<PathBuf>, dest: impl Into<PathBuf>) -> CreateOptions {
        CreateOptions {
            source: source.into(),
            dest: dest.into(),
            level: 3,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            force: false,
            clone: false,
            keep_pagefile: false,
            sector_size: None,
            uuid: None,
            parent: None,
            resolve: ResolveOptions::default(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            progress: false,
            skip_bad_sectors: false,
            catalog: true,
            encrypt: None,
        }
    }
}

/// The parent of a child image.
#[derive(Debug, Clone)]
pub enum ParentSpec {
    /// Changes since this image (any point of a chain).
    Incremental(PathBuf),
    /// Changes since the full image at the base of this image's chain.
    Differential(PathBuf),
}

/// What `create` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreateSummary {
    pub image: PathBuf,
    pub uuid: Uuid,
    pub source: String,
    pub disk_bytes: u64,
    /// Bytes actually read from the source (holes of sparse files are not read).
    pub bytes_read: u64,
    /// Uncompressed bytes stored (non-zero blocks).
    pub data_bytes: u64,
    /// Size of the image file.
    pub image_bytes: u64,
    /// Compression ratio, `data_bytes / image_bytes`: the data stored (uncompressed)
    /// over the image file's size, as `info` shows it.
    pub ratio: f64,
    pub chunks: u64,
    pub seconds: f64,
    /// "full", "differential" or "incremental".
    pub kind: ImageKind,
    /// Blocks found unchanged since the parent (children only).
    pub unchanged_bytes: u64,
    /// The parent image (children only).
    pub parent: Option<PathBuf>,
    /// Disk byte ranges that could not be read (`--skip-bad-sectors`); they read as zeros.
    pub unreadable: Vec<(u64, u64)>,
    /// Bytes of the image taken by its catalog (0: none).
    pub catalog_bytes: u64,
    /// Entries in the catalog, and how many of them were read from the filesystems (the
    /// others were taken from the parent's catalog, nothing under them having changed).
    pub catalog_entries: u64,
    pub catalog_entries_read: u64,
}

/// Creation time: `SOURCE_DATE_EPOCH` when set (reproducible images), else now.
pub(crate) fn creation_time() -> (i64, u32) {
    if let Some(s) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
    {
        return (s, 0);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_secs() as i64, now.subsec_nanos())
}

/// Images `opts.source` into `opts.dest`.
pub fn create(opts: &CreateOptions) -> Result<CreateSummary> {
    let started = Instant::now();
    if !(1..=22).contains(&opts.level) {
        return Err(Error::Invalid(format!(
            "compression level {} is out of range (1-22)",
            opts.level
        )));
    }
    let max = crate::container::MAX_CHUNK_SIZE;
    if opts.chunk_size < 4096 || opts.chunk_size > max || !opts.chunk_size.is_power_of_two() {
        return Err(Error::Invalid(format!(
            "chunk size {} is not a power of two from 4096 to {max}",
            opts.chunk_size
        )));
    }
    let mut src = FileDev::open(&opts.source)?;
    if let Some(ss) = opts.sector_size {
        if !(512..=65536).contains(&ss) || !ss.is_power_of_two() {
            return Err(Error::Invalid(format!(
                "sector size {ss} is not a power of two between 512 and 65536"
            )));
        }
        if src.kind() == DevKind::BlockDevice && ss != src.sector_size() {
            return Err(Error::Invalid(format!(
                "{}: the device has {}-byte sectors; --sector-size {ss} does not apply",
                opts.source.display(),
                src.sector_size()
            )));
        }
        src.set_sector_size(ss);
    }
    if src.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: is empty (0 bytes); there is nothing to image",
            opts.source.display()
        )));
    }
    if super::same_file(&opts.source, &opts.dest)
        || super::same_file(&opts.source, &crate::atomic_file::partial_path(&opts.dest))
    {
        return Err(Error::Invalid(format!(
            "{}: the output would overwrite the source",
            opts.dest.display()
        )));
    }
    let parent = match &opts.parent {
        None => None,
        Some(ParentSpec::Incremental(p)) => Some(Chain::open(p, &opts.resolve)?),
        Some(ParentSpec::Differential(p)) => {
            let mut layers = resolve::resolve(p, &opts.resolve)?;
            layers.truncate(1);
            Some(Chain::from_layers(layers)?)
        }
    };
    if let Some(chain) = &parent {
        let ph = chain.top().header();
        if ph.disk_size != src.len() || ph.sector_size != src.sector_size() {
            return Err(Error::Invalid(format!(
                "{}: images a disk of {} bytes with {}-byte sectors, but {} has {} bytes with \
                 {}-byte sectors: not the same disk",
                chain.top().path().display(),
                ph.disk_size,
                ph.sector_size,
                opts.source.display(),
                src.len(),
                src.sector_size()
            )));
        }
        if super::layer_named(chain.layers(), &opts.dest).is_some() {
            return Err(Error::Invalid(format!(
                "{}: is part of the parent chain and cannot be replaced by its own child",
                opts.dest.display()
            )));
        }
    }
    let block_size = match &parent {
        Some(c) => c.block_size(),
        None => DEFAULT_BLOCK_SIZE.max(src.sector_size()),
    };
    let chunk_size = opts.chunk_size.max(block_size) / block_size * block_size;
    // Used-block map (or every sector with --clone); see ops/plan.rs.
    let plan = super::plan::plan(
        &src,
        opts.clone,
        &crate::fs::FsOptions {
            keep_pagefile: opts.keep_pagefile,
        },
    );
    for w in plan.map.iter().flat_map(|m| &m.warnings) {
        eprintln!("strata: warning: {w}");
    }
    let (created_unix, created_nanos) = creation_time();
    let canonical = std::fs::canonicalize(&opts.source).unwrap_or_else(|_| opts.source.clone());
    let (kind, parent_uuid, parent_index_digest, parent_hint) = match &parent {
        None => (ImageKind::Full, Uuid::nil(), [0; 32], String::new()),
        Some(chain) => (
            match opts.parent {
                Some(ParentSpec::Differential(_)) => ImageKind::Differential,
                _ => ImageKind::Incremental,
            },
            chain.top().header().image_uuid,
            chain.top().trailer().index_digest,
            path_hint(chain.top().path(), &opts.dest),
        ),
    };
    let mut header = Header {
        minor_version: MINOR_VERSION,
        incompat_features: 0,
        compat_features: 0,
        image_uuid: opts.uuid.unwrap_or_else(Uuid::new_v4),
        parent_uuid,
        parent_index_digest,
        created_unix,
        created_nanos,
        sector_size: src.sector_size(),
        disk_size: src.len(),
        block_size,
        chunk_size,
        kind,
        content: plan.content,
        compression: 1,
        compression_level: opts.level as i8,
        source: format!(
            "{} {}",
            match src.kind() {
                DevKind::BlockDevice => "block device",
                DevKind::RegularFile => "file",
            },
            canonical.display()
        ),
        parent_hint,
        encryption: encryption_of(opts, parent.as_ref())?,
    };
    header.fit_strings();
    let source_desc = header.source.clone();
    let uuid = header.image_uuid;

    // A file is written under its `.partial` name and renamed; an object is uploaded and
    // appears when the upload completes.
    let (mut local, output) = if crate::storage::is_remote(&opts.dest) {
        let upload = crate::storage::s3::Upload::create(&opts.dest, opts.force)?;
        (None, Output::Upload(Box::new(upload)))
    } else {
        let mut out = AtomicFile::create(&opts.dest, opts.force)?;
        let file = out.take();
        (Some(out), Output::File(file))
    };
    let written = local
        .as_ref()
        .map_or(opts.dest.clone(), |o| o.partial_path().to_path_buf());
    let mut writer = ImageWriter::new(output, &written, header)?;
    let progress = Progress::new(src.len(), "imaging", opts.progress);
    let (outcome, parent_catalog) = std::thread::scope(|s| {
        // The parent's catalog (decoded, and rebuilt through the changes it may be stored
        // as) is needed only once the image is written: it is made while the source is
        // read, which leaves a core free in an incremental of few changes.
        let resolving = parent.as_ref().filter(|_| opts.catalog).map(|chain| {
            let layers = chain.layers();
            s.spawn(move || crate::catalog::resolved(layers, None))
        });
        let outcome = pipeline::run(&mut writer, opts.threads, opts.level, |packer| {
            read_source(
                &src,
                &plan.ranges,
                &Reading {
                    block_size,
                    chunk_size,
                    skip_bad: opts.skip_bad_sectors,
                    meta: plan.meta.as_slice(),
                },
                parent.as_ref(),
                packer,
                &progress,
            )
        });
        let parent_catalog = resolving.map(crate::threads::join);
        (outcome, parent_catalog)
    });
    progress.finish();
    let outcome = outcome?;
    for (runs, kind) in [
        (&outcome.zero_runs, ExtentKind::Zero),
        (&outcome.unreadable, ExtentKind::Unreadable),
    ] {
        for &(start, end) in runs {
            let mut b = start;
            while b < end {
                let n = (end - b).min(u64::from(u32::MAX)) as u32;
                writer.add_extent(b, n, kind);
                b += u64::from(n);
            }
        }
    }
    let bs = u64::from(block_size);
    let unreadable: Vec<(u64, u64)> = outcome
        .unreadable
        .iter()
        .map(|&(a, b)| (a * bs, (b * bs).min(src.len())))
        .collect();
    let bytes_read = outcome.bytes_read;
    let header_bytes = writer.header().encode();
    writer.hold_tail()?;
    let (output, _trailer, mut summary) = writer.finish()?;
    let disk_bytes = src.len();
    let mut catalog_bytes = 0;
    let mut catalog_stats = BuildStats::default();
    let used = plan.map.as_ref().map(|m| m.ranges.clone());
    let src = Arc::new(src);
    let parent_path = parent.as_ref().map(|c| c.top().path().to_path_buf());
    // The layers under the new point, for its catalog.
    let below = parent.map(Chain::into_layers).unwrap_or_default();
    match (output, local.take()) {
        (Output::File(mut file), Some(out)) => {
            if opts.catalog {
                let catalog = Image::open_unfinished(&written).and_then(|(image, _)| {
                    catalog_of(below, parent_catalog, image, src, false, used)
                });
                if let Some((raw, stats)) = catalog_or_warning(catalog)? {
                    catalog_stats = stats;
                    let before = summary.file_bytes;
                    summary.file_bytes =
                        crate::container::catalog::attach(&mut file, &written, &raw)?;
                    catalog_bytes = summary.file_bytes - before;
                }
            }
            out.commit(file)?;
        }
        (Output::Upload(mut upload), _) => {
            if opts.catalog {
                // What follows the chunk records is held locally: the catalog is built
                // through the image as it will read, with its chunks taken from the source.
                let image = super::staged_image(&upload, &header_bytes, &opts.dest)?;
                let catalog = super::staged_image(&upload, &header_bytes, &opts.dest)
                    .and_then(|i| catalog_of(below, parent_catalog, i, src, true, used));
                if let Some((raw, stats)) = catalog_or_warning(catalog)? {
                    catalog_stats = stats;
                    let before = summary.file_bytes;
                    summary.file_bytes = super::upload_catalog(&mut upload, &image, &raw)?;
                    catalog_bytes = summary.file_bytes - before;
                }
            }
            upload.complete()?;
        }
        (Output::File(_), None) => unreachable!("a file is written through an AtomicFile"),
    }
    Ok(CreateSummary {
        image: opts.dest.clone(),
        uuid,
        source: source_desc,
        disk_bytes,
        bytes_read,
        data_bytes: summary.data_bytes,
        image_bytes: summary.file_bytes,
        ratio: super::ratio(summary.data_bytes, summary.file_bytes),
        chunks: summary.chunks,
        seconds: started.elapsed().as_secs_f64(),
        kind,
        unchanged_bytes: outcome.unchanged_blocks * u64::from(block_size),
        parent: parent_path,
        unreadable,
        catalog_bytes,
        catalog_entries: catalog_stats.entries,
        catalog_entries_read: catalog_stats.read,
    })
}

/// The encoded catalog (None: no filesystem to list) of the point just written, `image`,
/// on top of the parent chain's layers `below` (none for a full image), walked through the
/// image with `src` read where it agrees with it ([`crate::catalog::build`]); with
/// `only_source`, every byte of the point comes from `src` (the image's chunks cannot be
/// read while it is uploaded). Where the parent has a catalog (`parent_catalog`, see
/// [`crate::catalog::resolved`]), entries under which nothing changed are taken from it;
/// `used` (disk byte ranges the filesystems use) says which changed blocks matter.
fn catalog_of(
    mut layers: Vec<Image>,
    parent_catalog: Option<Result<crate::catalog::Resolved>>,
    image: Image,
    src: Arc<FileDev>,
    only_source: bool,
    used: Option<Ranges>,
) -> Result<Option<(Vec<u8>, BuildStats)>> {
    let previous = match parent_catalog {
        Some(Ok(Ok(Some((catalog, depth))))) => {
            let bs = u64::from(image.header().block_size);
            let changed = image
                .index()
                .extents
                .iter()
                .map(|e| (e.disk_block * bs, e.end() * bs))
                .collect();
            let parent = layers.last().map(|l| *l.header().image_uuid.as_bytes());
            parent.map(|image| Previous {
                catalog,
                image,
                depth,
                changed: Ranges::from_unsorted(changed),
                used,
            })
        }
        // Without one the point is walked whole (and its catalog stored whole).
        _ => None,
    };
    layers.push(image);
    let chain = Arc::new(Chain::from_layers(layers)?);
    let mut builder = if only_source {
        Builder::from_source_only(chain, src)
    } else {
        Builder::new(chain, Some(src))
    };
    if let Some(p) = previous {
        builder = builder.with_previous(p);
    }
    let built = builder.build_with_stats()?;
    // A disk with no filesystem strata reads has nothing to list.
    if built.catalog.volumes.is_empty() {
        return Ok(None);
    }
    let raw = built.change.unwrap_or_else(|| built.catalog.encode());
    Ok(Some((raw, built.stats)))
}

/// The catalog, or None with a warning when it could not be made (the image is complete
/// without one); an interruption stays an error.
fn catalog_or_warning<T>(catalog: Result<Option<T>>) -> Result<Option<T>> {
    match catalog {
        Ok(c) => Ok(c),
        Err(Error::Interrupted) => Err(Error::Interrupted),
        Err(e) => {
            eprintln!("strata: warning: the image has no catalog: {e}");
            Ok(None)
        }
    }
}

/// How to find `parent` from the directory `child` will be in: a relative path when one
/// exists (so a whole chain can be moved together), else the absolute path.
pub(crate) fn path_hint(parent: &Path, child: &Path) -> String {
    if crate::storage::is_remote(parent) || crate::storage::is_remote(child) {
        // Beside each other in one bucket prefix: the name; else the parent's full name (a
        // URL, or the absolute path of a local parent of an image in a bucket).
        if resolve::dir_of(parent) == resolve::dir_of(child) {
            if let Some(name) = parent.file_name() {
                return name.to_string_lossy().into_owned();
            }
        }
        let full = crate::storage::canonical(parent).unwrap_or_else(|| parent.to_path_buf());
        return full.to_string_lossy().into_owned();
    }
    let abs = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
    let dir = std::fs::canonicalize(resolve::dir_of(child)).unwrap_or_default();
    pathdiff::diff_paths(&abs, &dir)
        .unwrap_or(abs)
        .to_string_lossy()
        .into_owned()
}

/// What the producer saw.
struct ReadOutcome {
    bytes_read: u64,
    /// Block runs `[start, end)` that hold data in the parent but are zero now.
    zero_runs: Vec<(u64, u64)>,
    unchanged_blocks: u64,
    /// Block runs `[start, end)` holding a sector that could not be read (with
    /// `--skip-bad-sectors`).
    unreadable: Vec<(u64, u64)>,
}

fn add_run(runs: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    match runs.last_mut() {
        Some(last) if last.1 == start => last.1 = end,
        _ => runs.push((start, end)),
    }
}

/// How the source is read.
struct Reading<'a> {
    block_size: u32,
    /// Uncompressed bytes per chunk: also the size of one read.
    chunk_size: u32,
    /// Record unreadable sectors instead of failing (`--skip-bad-sectors`).
    skip_bad: bool,
    /// Sorted, disjoint byte ranges of filesystem metadata: packed apart from the rest.
    meta: &'a [(u64, u64)],
}

/// After `first_error` reading `buf` at `pos`: reads the piece again sector by sector to find
/// the sectors that fail. Without `skip`, the first one is the error (naming the source and
/// the sector's byte offset). With it, readable sectors are kept in `buf`, failing ones are
/// zero-filled and returned as byte ranges.
fn bad_sectors(
    src: &FileDev,
    pos: u64,
    buf: &mut [u8],
    first_error: Error,
    skip: bool,
) -> Result<Vec<(u64, u64)>> {
    if matches!(first_error, Error::Interrupted) {
        return Err(first_error);
    }
    let ss = src.sector_size() as usize;
    let mut bad: Vec<(u64, u64)> = Vec::new();
    for (i, sector) in buf.chunks_mut(ss).enumerate() {
        check_interrupt()?;
        let at = pos + (i * ss) as u64;
        if let Err(e) = src.read_at(at, sector) {
            if !skip {
                return Err(Error::Invalid(format!(
                    "{e} (the sector at byte {at} cannot be read; --skip-bad-sectors images \
                     around unreadable sectors)"
                )));
            }
            sector.fill(0);
            let end = at + sector.len() as u64;
            match bad.last_mut() {
                Some(last) if last.1 == at => last.1 = end,
                _ => bad.push((at, end)),
            }
        }
    }
    // Empty when the piece failed but every sector read on the second try (a transient
    // error): `buf` then holds all of it.
    Ok(bad)
}

/// Reads `ranges` (sorted, disjoint byte ranges) widened to whole blocks, in 1-chunk pieces;
/// drops zero blocks and (for children) blocks whose hash matches the parent's, and packs
/// the rest. Blocks outside `ranges` read as zeros at this point.
fn read_source(
    src: &FileDev,
    ranges: &[(u64, u64)],
    how: &Reading<'_>,
    parent: Option<&Chain>,
    packer: &mut Packer,
    progress: &Progress,
) -> Result<ReadOutcome> {
    let Reading {
        block_size,
        chunk_size,
        skip_bad,
        meta,
    } = *how;
    // Blocks come in ascending order: the metadata range that may hold the next one.
    let mut meta_at = 0usize;
    let mut is_meta = |b: u64| {
        let pos = b * u64::from(block_size);
        while meta.get(meta_at).is_some_and(|&(_, end)| end <= pos) {
            meta_at += 1;
        }
        meta.get(meta_at)
            .is_some_and(|&(start, _)| start < pos + u64::from(block_size))
    };
    let bs = u64::from(block_size);
    let len = src.len();
    let total_blocks = len.div_ceil(bs);
    let per_piece = u64::from(chunk_size / block_size);
    let mut buf = vec![0u8; chunk_size as usize];
    let mut out = ReadOutcome {
        bytes_read: 0,
        zero_runs: Vec::new(),
        unchanged_blocks: 0,
        unreadable: Vec::new(),
    };
    let mut next_block = 0u64; // first block not yet accounted for
                               // Blocks not read (holes of a sparse source, free space) are zeros at this point: where
                               // the parent holds data there, record a zero run.
    let skip_to = |from: u64, to: u64, out: &mut ReadOutcome| {
        if let Some(p) = parent {
            for (a, b) in p.data_runs(from, to) {
                add_run(&mut out.zero_runs, a, b);
            }
        }
        progress.inc((to * bs).min(len).saturating_sub((from * bs).min(len)));
    };
    for &(start, end) in ranges {
        // Widen to whole blocks; ranges may share a block at their edges.
        let first = (start / bs).max(next_block);
        let last = end.div_ceil(bs);
        if first >= last {
            continue;
        }
        skip_to(next_block, first, &mut out);
        let mut block = first;
        while block < last {
            check_interrupt()?;
            let n_blocks = per_piece.min(last - block);
            let pos = block * bs;
            let avail = (len - pos).min(n_blocks * bs) as usize;
            let piece = &mut buf[..(n_blocks * bs) as usize];
            let bad = match src.read_at(pos, &mut piece[..avail]) {
                Ok(()) => Vec::new(),
                Err(e) => bad_sectors(src, pos, &mut piece[..avail], e, skip_bad)?,
            };
            piece[avail..].fill(0); // the disk's last block may be partial
            out.bytes_read += avail as u64;
            let states = match parent {
                Some(p) => Some(p.block_states(block, n_blocks)?),
                None => None,
            };
            for (i, data) in piece.chunks_exact(bs as usize).enumerate() {
                let b = block + i as u64;
                if bad.iter().any(|&(a, z)| a < (b + 1) * bs && b * bs < z) {
                    add_run(&mut out.unreadable, b, b + 1);
                    continue;
                }
                let was = states.as_ref().map(|s| s[i]);
                if is_zero(data) {
                    if matches!(was, Some(BlockState::Hash(_))) {
                        add_run(&mut out.zero_runs, b, b + 1);
                    }
                    continue;
                }
                let hash = xxh3_64(data);
                if was == Some(BlockState::Hash(hash)) {
                    out.unchanged_blocks += 1;
                    continue;
                }
                let pushed = if is_meta(b) {
                    packer.push_meta(b, data, hash)
                } else {
                    packer.push(b, data, hash)
                };
                if !pushed {
                    return Ok(out); // the writer stopped; it reports why
                }
            }
            progress.inc(avail as u64);
            block += n_blocks;
        }
        // Ranges may share a block: never step back over one already read.
        next_block = next_block.max(last);
    }
    skip_to(next_block, total_blocks, &mut out);
    Ok(out)
}
