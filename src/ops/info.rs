//! `strata info`: what an image is and holds.

use crate::chain::ResolveOptions;
use crate::container::header::{Content, ImageKind};
use crate::container::index::{ExtentKind, Method};
use crate::container::reader::Image;
use crate::error::Result;
pub use crate::units::{human_bytes, short_bytes};
use std::fmt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Everything `info` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageInfo {
    pub image: PathBuf,
    pub format_version: String,
    pub uuid: Uuid,
    pub kind: ImageKind,
    pub content: Content,
    /// RFC 3339, UTC.
    pub created: String,
    pub source: String,
    pub disk_bytes: u64,
    pub sector_size: u32,
    pub block_size: u32,
    pub chunk_size: u32,
    pub compression: String,
    /// How the image is encrypted (None: it is not).
    pub encryption: Option<EncryptionInfo>,
    pub parent_uuid: Option<Uuid>,
    pub parent_hint: Option<String>,
    /// Uncompressed bytes stored.
    pub data_bytes: u64,
    /// Size of the image file.
    pub image_bytes: u64,
    /// Compression ratio, `data_bytes / image_bytes`: the data stored (uncompressed) over
    /// the image file's size, as `create` shows it.
    pub compression_ratio: f64,
    /// Share of the disk held as data.
    pub data_fraction: f64,
    pub chunks: u64,
    pub chunks_stored_raw: u64,
    pub extents: u64,
    pub unreadable_bytes: u64,
    /// Disk byte ranges `[start, end)` the source could not be read at (they read as zeros).
    pub unreadable: Vec<(u64, u64)>,
    /// blake3 of the index, hex: what child images record to name this one.
    pub index_digest: String,
    /// Earlier identities this image answers to (after consolidation).
    pub aliases: Vec<Uuid>,
    /// The catalog of files the image holds (None: it has none).
    pub catalog: Option<CatalogInfo>,
    /// The chain this image is the top of, full image first (children only).
    pub chain: Vec<ChainEntry>,
    /// Why the chain could not be resolved, if it could not.
    pub chain_error: Option<String>,
    /// Partition table and filesystems, read from the image itself (full images only).
    pub layout: Option<crate::layout::DiskMap>,
}

/// What `info` says of an encrypted image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncryptionInfo {
    /// "AES-256-GCM".
    pub cipher: &'static str,
    /// Names the chain's master key, hex.
    pub key_id: String,
    /// Passphrases and key files that open it.
    pub key_slots: usize,
}

/// What `info` says of an image's catalog.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CatalogInfo {
    /// Bytes the catalog section takes in the image.
    pub bytes: u64,
    /// Entries listed (every name in every filesystem).
    pub entries: u64,
    pub filesystems: u64,
    /// Why it cannot be used (find, history and diff then walk the image).
    pub error: Option<String>,
}

fn catalog_info(img: &crate::container::reader::Image) -> Result<Option<CatalogInfo>> {
    let idx = img.index();
    if idx.catalog_offset == 0 {
        return Ok(None);
    }
    let mut c = CatalogInfo {
        bytes: idx.block_hashes_offset - idx.catalog_offset,
        entries: 0,
        filesystems: 0,
        error: None,
    };
    match crate::catalog::stored(img)? {
        Ok(Some(crate::catalog::Stored::Whole(cat))) => {
            c.filesystems = cat.volumes.len() as u64;
            c.entries = cat.volumes.iter().map(|v| v.entries.len() as u64).sum();
        }
        Ok(Some(crate::catalog::Stored::Delta(d))) => {
            c.filesystems = d.volumes.len() as u64;
            c.entries = d.entry_count();
        }
        Ok(None) => {}
        Err(e) => c.error = Some(e),
    }
    Ok(Some(c))
}

/// One image of a chain, as `info` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainEntry {
    pub image: PathBuf,
    pub uuid: Uuid,
    pub kind: ImageKind,
    pub created: String,
    pub image_bytes: u64,
    pub data_bytes: u64,
    pub parent: Option<PathBuf>,
}

fn created_text(h: &crate::container::header::Header) -> String {
    rfc3339(h.created_unix, h.created_nanos)
}

/// A time in seconds since 1970 as RFC 3339 UTC, to the second.
pub fn rfc3339(unix: i64, nanos: u32) -> String {
    let t = std::time::UNIX_EPOCH
        + std::time::Duration::new(unix.max(0).cast_unsigned(), nanos.min(999_999_999));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The images of a resolved chain, as `info` lists them.
pub fn chain_entries(layers: &[Image]) -> Vec<ChainEntry> {
    layers
        .iter()
        .enumerate()
        .map(|(i, img)| ChainEntry {
            image: img.path().to_path_buf(),
            uuid: img.header().image_uuid,
            kind: img.header().kind,
            created: created_text(img.header()),
            image_bytes: img.file_len(),
            data_bytes: img
                .index()
                .chunks
                .iter()
                .map(|c| u64::from(c.raw_len))
                .sum(),
            parent: i.checked_sub(1).map(|p| layers[p].path().to_path_buf()),
        })
        .collect()
}

/// Reads the facts of an image and, for a child, of its chain.
pub fn info(path: &Path, opts: &ResolveOptions) -> Result<ImageInfo> {
    // The partition table and filesystems are probed from the chain point itself.
    // A full image is a chain of one: its disk is read through the chain too.
    let (point, chain, chain_error, layout) = match crate::chain::resolve::resolve(path, opts) {
        Ok(layers) => {
            let full = layers.len() == 1;
            let entries = if full {
                Vec::new()
            } else {
                chain_entries(&layers)
            };
            let point = crate::chain::Chain::from_layers(layers)?;
            let layout = image_layout(&point, point.top().header());
            (Some(point), entries, None, Some(layout))
        }
        Err(e) => (None, Vec::new(), Some(e.to_string()), None),
    };
    // The image itself: the chain's top, or opened alone when its chain cannot be (an
    // image in a bucket opened twice cost its opening requests twice).
    let alone;
    let img = match &point {
        Some(p) => p.top(),
        None => {
            alone = Image::open(path)?;
            &alone
        }
    };
    let h = img.header();
    let idx = img.index();
    let data_bytes: u64 = idx.chunks.iter().map(|c| u64::from(c.raw_len)).sum();
    let unreadable_ranges = unreadable_ranges(img.index(), h.block_size, h.disk_size);
    let unreadable: u64 = unreadable_ranges.iter().map(|(a, b)| b - a).sum();
    Ok(ImageInfo {
        layout,
        image: path.to_path_buf(),
        format_version: format!(
            "{}.{}",
            crate::container::header::MAJOR_VERSION,
            h.minor_version
        ),
        uuid: h.image_uuid,
        kind: h.kind,
        content: h.content,
        created: created_text(h),
        source: h.source.clone(),
        disk_bytes: h.disk_size,
        sector_size: h.sector_size,
        block_size: h.block_size,
        chunk_size: h.chunk_size,
        compression: format!("zstd level {}", h.compression_level),
        encryption: h.encryption.as_ref().map(|e| EncryptionInfo {
            cipher: "AES-256-GCM",
            key_id: e.key_id.iter().map(|b| format!("{b:02x}")).collect(),
            key_slots: e.slots.slots.len(),
        }),
        parent_uuid: (!h.parent_uuid.is_nil()).then_some(h.parent_uuid),
        parent_hint: (!h.parent_hint.is_empty()).then(|| h.parent_hint.clone()),
        data_bytes,
        image_bytes: img.file_len(),
        compression_ratio: super::ratio(data_bytes, img.file_len()),
        data_fraction: super::ratio(data_bytes.min(h.disk_size), h.disk_size),
        chunks: idx.chunks.len() as u64,
        chunks_stored_raw: idx
            .chunks
            .iter()
            .filter(|c| c.method == Method::Raw)
            .count() as u64,
        extents: idx.extents.len() as u64,
        unreadable_bytes: unreadable,
        unreadable: unreadable_ranges,
        index_digest: img
            .trailer()
            .index_digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        aliases: idx.aliases.iter().map(|a| a.uuid).collect(),
        catalog: catalog_info(img)?,
        chain,
        chain_error,
    })
}

/// The backup sets found in a directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DirInfo {
    pub dir: PathBuf,
    pub sets: Vec<BackupSet>,
    /// Images whose chain cannot be resolved, with the reason.
    pub broken: Vec<(PathBuf, String)>,
}

/// A full image and every image in the directory that builds on it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupSet {
    pub source: String,
    pub disk_bytes: u64,
    /// Base first, then children ordered by creation time.
    pub images: Vec<ChainEntry>,
}

/// Lists the backup sets in `dir` (every `*.strata` file, grouped by the full image its
/// chain starts from).
pub fn dir_info(dir: &Path, opts: &ResolveOptions) -> Result<DirInfo> {
    let mut sets: Vec<(PathBuf, BackupSet)> = Vec::new();
    let mut broken = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let paths = crate::storage::files_in(dir, crate::container::EXTENSION)?;
    // Newest first: a chain resolved from its top lists every image below it, and those
    // need no resolution of their own (resolving each image of a 1,000-point chain on its
    // own opened half a million files). Images are known by their canonical path.
    let canon = |p: &Path| crate::storage::canonical(p).unwrap_or_else(|| p.to_path_buf());
    let mut order: Vec<(i64, u32, &PathBuf)> = paths
        .iter()
        .map(|p| {
            let h = crate::chain::resolve::peek_header(p);
            let t = h
                .as_ref()
                .map_or((i64::MAX, 0), |h| (h.created_unix, h.created_nanos));
            (t.0, t.1, p)
        })
        .collect();
    order.sort_by(|a, b| b.cmp(a));
    // Canonical path of each listed image -> the base of the chain it was listed in.
    let mut base_of: std::collections::HashMap<PathBuf, PathBuf> = Default::default();
    let mut chains: Vec<(PathBuf, Vec<ChainEntry>, crate::container::header::Header)> = Vec::new();
    for (_, _, path) in order {
        if base_of.contains_key(&canon(path)) {
            continue;
        }
        let layers = match crate::chain::resolve::resolve(path, opts) {
            Ok(l) => l,
            Err(e) => {
                broken.push((path.clone(), e.to_string()));
                continue;
            }
        };
        let base = layers[0].path().to_path_buf();
        for l in &layers {
            base_of.insert(canon(l.path()), base.clone());
        }
        chains.push((base, chain_entries(&layers), layers[0].header().clone()));
    }
    broken.sort();
    // Sets in the order their first image comes by name, as `ls` would list the files.
    for p in &paths {
        let Some(base) = base_of.get(&canon(p)) else {
            continue;
        };
        if sets.iter().any(|(b, _)| b == base) {
            continue;
        }
        let h = &chains
            .iter()
            .find(|(b, _, _)| b == base)
            .expect("resolved")
            .2;
        sets.push((
            base.clone(),
            BackupSet {
                source: h.source.clone(),
                disk_bytes: h.disk_size,
                images: Vec::new(),
            },
        ));
    }
    for (base, entries, _) in chains {
        let at = sets
            .iter()
            .position(|(b, _)| *b == base)
            .expect("every base has a set");
        for e in entries {
            if seen.insert(e.image.clone()) {
                sets[at].1.images.push(e);
            }
        }
    }
    let mut sets: Vec<BackupSet> = sets.into_iter().map(|(_, s)| s).collect();
    for s in &mut sets {
        // The full image first, then by time (ties by name, so the order is stable).
        s.images.sort_by(|a, b| {
            (a.kind != ImageKind::Full, &a.created, &a.image).cmp(&(
                b.kind != ImageKind::Full,
                &b.created,
                &b.image,
            ))
        });
    }
    Ok(DirInfo {
        dir: dir.to_path_buf(),
        sets,
        broken,
    })
}

fn kind_name(k: ImageKind) -> &'static str {
    k.name()
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn chain_lines(f: &mut fmt::Formatter<'_>, entries: &[ChainEntry]) -> fmt::Result {
    for e in entries {
        write!(
            f,
            "\n  {}  {:<12}  {:>12}  {}",
            e.created,
            kind_name(e.kind),
            short_bytes(e.image_bytes),
            file_name(&e.image)
        )?;
        if let Some(p) = &e.parent {
            write!(f, "  (parent {})", file_name(p))?;
        }
    }
    Ok(())
}

impl fmt::Display for DirInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.dir.display(),
            crate::units::count(self.sets.len() as u64, "backup set", "backup sets")
        )?;
        for s in &self.sets {
            write!(
                f,
                "\n\nset: {} ({}), {}",
                s.source,
                short_bytes(s.disk_bytes),
                crate::units::count(s.images.len() as u64, "image", "images")
            )?;
            chain_lines(f, &s.images)?;
        }
        for (p, why) in &self.broken {
            write!(f, "\n\nunusable: {}: {why}", file_name(p))?;
        }
        Ok(())
    }
}

/// The partition table and filesystems of a full image, probed from its own blocks. A
/// clone image holds every block of every partition.
fn image_layout(
    dev: &dyn crate::blockdev::BlockDev,
    h: &crate::container::header::Header,
) -> crate::layout::DiskMap {
    use crate::layout::Imaging;
    let mut map = crate::layout::map_disk(dev, h.sector_size, &Default::default());
    if h.content == Content::Clone {
        for p in &mut map.partitions {
            p.imaging = Imaging::EveryBlock("clone image (--clone)".into());
            p.skipped.clear();
        }
    }
    map
}

impl fmt::Display for ImageInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.name();
        let content = match self.content {
            Content::Clone => "clone (every sector read; zero blocks not stored)",
            Content::UsedBlocks => "used blocks only",
        };
        writeln!(f, "image:        {}", self.image.display())?;
        writeln!(f, "format:       strata {}", self.format_version)?;
        writeln!(f, "uuid:         {}", self.uuid)?;
        writeln!(f, "type:         {kind}, {content}")?;
        writeln!(f, "created:      {}", self.created)?;
        writeln!(f, "source:       {}", self.source)?;
        if let Some(p) = &self.parent_uuid {
            writeln!(
                f,
                "parent:       {p} ({})",
                self.parent_hint.as_deref().unwrap_or("no path hint")
            )?;
        }
        writeln!(f, "disk size:    {}", human_bytes(self.disk_bytes))?;
        writeln!(
            f,
            "geometry:     {}-byte sectors, {}-byte blocks, {} chunks",
            self.sector_size,
            self.block_size,
            human_bytes(u64::from(self.chunk_size))
        )?;
        writeln!(f, "compression:  {}", self.compression)?;
        if let Some(e) = &self.encryption {
            writeln!(
                f,
                "encryption:   {}, key {}, {} key slot{}",
                e.cipher,
                e.key_id,
                e.key_slots,
                if e.key_slots == 1 { "" } else { "s" }
            )?;
        }
        writeln!(
            f,
            "data stored:  {}, {:.1}% of the disk",
            human_bytes(self.data_bytes),
            self.data_fraction * 100.0
        )?;
        writeln!(f, "image size:   {}", human_bytes(self.image_bytes))?;
        writeln!(
            f,
            "ratio:        {:.2}:1 (data stored / image size)",
            self.compression_ratio
        )?;
        writeln!(
            f,
            "chunks:       {} ({} stored uncompressed), {} extents",
            self.chunks, self.chunks_stored_raw, self.extents
        )?;
        if self.unreadable_bytes > 0 {
            writeln!(
                f,
                "unreadable:   {} at disk bytes {} (the source could not be read there; read \
                 as zeros)",
                human_bytes(self.unreadable_bytes),
                ranges_text(&self.unreadable)
            )?;
        }
        match &self.catalog {
            Some(CatalogInfo { error: Some(e), .. }) => writeln!(
                f,
                "catalog:      damaged ({e}); find, history and diff walk the image instead"
            )?,
            Some(c) => writeln!(
                f,
                "catalog:      {} in {}, {}",
                crate::units::count(c.entries, "entry", "entries"),
                crate::units::count(c.filesystems, "filesystem", "filesystems"),
                human_bytes(c.bytes)
            )?,
            None => writeln!(
                f,
                "catalog:      none (find, history and diff walk the image)"
            )?,
        }
        write!(f, "index digest: {}", self.index_digest)?;
        if !self.aliases.is_empty() {
            write!(
                f,
                "\nreplaces:     {}, consolidated",
                crate::units::count(self.aliases.len() as u64, "earlier image", "earlier images")
            )?;
        }
        if !self.chain.is_empty() {
            write!(f, "\nchain:        {} images, full first", self.chain.len())?;
            chain_lines(f, &self.chain)?;
        }
        if let Some(e) = &self.chain_error {
            write!(f, "\nchain:        cannot be resolved: {e}")?;
        }
        if let Some(l) = &self.layout {
            write!(f, "\n{l}")?;
        }
        Ok(())
    }
}

/// Disk byte ranges of an image's unreadable extents (sectors `create --skip-bad-sectors`
/// could not read), merged where they touch.
pub fn unreadable_ranges(
    idx: &crate::container::index::Index,
    block_size: u32,
    disk_size: u64,
) -> Vec<(u64, u64)> {
    let bs = u64::from(block_size);
    let mut out: Vec<(u64, u64)> = Vec::new();
    for e in idx
        .extents
        .iter()
        .filter(|e| e.kind == ExtentKind::Unreadable)
    {
        let (a, b) = (
            e.disk_block * bs,
            ((e.disk_block + u64::from(e.count)) * bs).min(disk_size),
        );
        match out.last_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ => out.push((a, b)),
        }
    }
    out
}

/// Byte ranges as `a-b, c-d` (the first eight, then how many more).
pub fn ranges_text(ranges: &[(u64, u64)]) -> String {
    let mut t: Vec<String> = ranges
        .iter()
        .take(8)
        .map(|(a, b)| format!("{a}-{b}"))
        .collect();
    if ranges.len() > 8 {
        t.push(format!("and {} more ranges", ranges.len() - 8));
    }
    t.join(", ")
}
