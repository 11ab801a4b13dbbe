//! `strata info`: what an image is and holds.

use crate::container::header::{Content, ImageKind};
use crate::container::index::{ExtentKind, Method};
use crate::container::reader::Image;
use crate::error::Result;
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
    pub parent_uuid: Option<Uuid>,
    pub parent_hint: Option<String>,
    /// Uncompressed bytes stored.
    pub data_bytes: u64,
    /// Size of the image file.
    pub image_bytes: u64,
    /// `data_bytes / image_bytes`.
    pub compression_ratio: f64,
    /// Share of the disk held as data.
    pub data_fraction: f64,
    pub chunks: u64,
    pub chunks_stored_raw: u64,
    pub extents: u64,
    pub unreadable_bytes: u64,
    /// blake3 of the index, hex: what child images record to name this one.
    pub index_digest: String,
    /// Partition table and filesystems, read from the image itself (full images only).
    pub layout: Option<crate::layout::DiskMap>,
}

/// Reads the facts of an image.
pub fn info(path: &Path) -> Result<ImageInfo> {
    let img = Image::open(path)?;
    let h = img.header();
    let idx = img.index();
    let bs = u64::from(h.block_size);
    let data_bytes: u64 = idx.chunks.iter().map(|c| u64::from(c.raw_len)).sum();
    let unreadable: u64 = idx
        .extents
        .iter()
        .filter(|e| e.kind == ExtentKind::Unreadable)
        .map(|e| u64::from(e.count) * bs)
        .sum();
    let created = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            h.created_unix.max(0) as u64,
            h.created_nanos.min(999_999_999),
        );
    let layout = (h.kind == ImageKind::Full).then(|| image_layout(&img));
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
        created: humantime::format_rfc3339_seconds(created).to_string(),
        source: h.source.clone(),
        disk_bytes: h.disk_size,
        sector_size: h.sector_size,
        block_size: h.block_size,
        chunk_size: h.chunk_size,
        compression: format!("zstd level {}", h.compression_level),
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
        index_digest: img
            .trailer()
            .index_digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}

/// The partition table and filesystems of a full image, probed from its own blocks. A
/// clone image holds every block of every partition.
fn image_layout(img: &Image) -> crate::layout::DiskMap {
    use crate::layout::Imaging;
    let h = img.header();
    let mut map = crate::layout::map_disk(img, h.sector_size, &Default::default());
    if h.content == Content::Clone {
        for p in &mut map.partitions {
            p.imaging = Imaging::EveryBlock("clone image (--clone)".into());
            p.skipped.clear();
        }
    }
    map
}

/// Bytes as "1.50 GiB (1610612736 bytes)".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.2} {} ({n} bytes)", UNITS[u])
    }
}

impl fmt::Display for ImageInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ImageKind::Full => "full",
            ImageKind::Differential => "differential",
            ImageKind::Incremental => "incremental",
        };
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
        writeln!(
            f,
            "data stored:  {} ({:.1}% of the disk)",
            human_bytes(self.data_bytes),
            self.data_fraction * 100.0
        )?;
        writeln!(f, "image size:   {}", human_bytes(self.image_bytes))?;
        writeln!(f, "ratio:        {:.2}:1", self.compression_ratio)?;
        writeln!(
            f,
            "chunks:       {} ({} stored uncompressed), {} extents",
            self.chunks, self.chunks_stored_raw, self.extents
        )?;
        if self.unreadable_bytes > 0 {
            writeln!(
                f,
                "unreadable:   {} (read as zeros)",
                human_bytes(self.unreadable_bytes)
            )?;
        }
        write!(f, "index digest: {}", self.index_digest)?;
        if let Some(l) = &self.layout {
            write!(f, "\n{l}")?;
        }
        Ok(())
    }
}
