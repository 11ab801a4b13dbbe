//! `strata create`: reads a source and writes an image through a
//! read → compress (N workers) → ordered write pipeline.
//!
//! The reader thread alone decides how blocks are grouped into chunks, and chunks are
//! written in that order, so the image bytes do not depend on the number of threads.

use crate::atomic_file::AtomicFile;
use crate::blockdev::file::{DevKind, FileDev};
use crate::blockdev::{is_zero, BlockDev};
use crate::container::chunk::SealedChunk;
use crate::container::header::{Header, ImageKind, MINOR_VERSION};
use crate::container::writer::ImageWriter;
use crate::container::{DEFAULT_BLOCK_SIZE, DEFAULT_CHUNK_SIZE};
use crate::error::{Error, Result};
use crate::progress::{check_interrupt, Progress};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

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
    pub chunk_size: u32,
    pub progress: bool,
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
            chunk_size: DEFAULT_CHUNK_SIZE,
            progress: false,
        }
    }
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
    /// `bytes_read / image_bytes`.
    pub ratio: f64,
    pub chunks: u64,
    pub seconds: f64,
}

struct Job {
    seq: u64,
    raw: Vec<u8>,
    blocks: Vec<u64>,
}

struct Sealed {
    seq: u64,
    chunk: std::io::Result<SealedChunk>,
    blocks: Vec<u64>,
}

/// Creation time: `SOURCE_DATE_EPOCH` when set (reproducible images), else now.
fn creation_time() -> (i64, u32) {
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
    let block_size = DEFAULT_BLOCK_SIZE.max(src.sector_size());
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
    let mut header = Header {
        minor_version: MINOR_VERSION,
        incompat_features: 0,
        compat_features: 0,
        image_uuid: opts.uuid.unwrap_or_else(Uuid::new_v4),
        parent_uuid: Uuid::nil(),
        parent_index_digest: [0; 32],
        created_unix,
        created_nanos,
        sector_size: src.sector_size(),
        disk_size: src.len(),
        block_size,
        chunk_size,
        kind: ImageKind::Full,
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
        parent_hint: String::new(),
    };
    header.fit_strings();
    let source_desc = header.source.clone();
    let uuid = header.image_uuid;

    let mut out = AtomicFile::create(&opts.dest, opts.force)?;
    let file = out.take();
    let mut writer = ImageWriter::new(file, out.partial_path(), header)?;
    let progress = Progress::new(src.len(), "imaging", opts.progress);
    let bytes_read = run_pipeline(&src, &plan.ranges, &mut writer, opts, &progress);
    progress.finish();
    let bytes_read = bytes_read?;
    let (file, _trailer, summary) = writer.finish()?;
    out.commit(file)?;
    Ok(CreateSummary {
        image: opts.dest.clone(),
        uuid,
        source: source_desc,
        disk_bytes: src.len(),
        bytes_read,
        data_bytes: summary.data_bytes,
        image_bytes: summary.file_bytes,
        ratio: super::ratio(bytes_read, summary.file_bytes),
        chunks: summary.chunks,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs the three stages; returns the number of bytes read from the source.
fn run_pipeline(
    src: &FileDev,
    ranges: &[(u64, u64)],
    writer: &mut ImageWriter,
    opts: &CreateOptions,
    progress: &Progress,
) -> Result<u64> {
    let threads = opts.threads.max(1);
    let (job_tx, job_rx) = bounded::<Job>(threads * 2);
    let (done_tx, done_rx) = bounded::<Sealed>(threads * 2);
    let block_size = writer.header().block_size as usize;
    let chunk_size = writer.header().chunk_size as usize;
    std::thread::scope(|s| {
        let reader = s.spawn(|| read_stage(src, ranges, block_size, chunk_size, job_tx, progress));
        let mut workers = Vec::new();
        for _ in 0..threads {
            let (rx, tx) = (job_rx.clone(), done_tx.clone());
            workers.push(s.spawn(move || compress_stage(rx, tx, block_size, opts.level)));
        }
        drop((job_rx, done_tx));
        let written = write_stage(done_rx, writer);
        // On a write error the receiver is gone, so workers and reader stop at their next
        // send; the write error is the one to report.
        let read = reader.join().expect("reader thread panicked");
        for w in workers {
            w.join().expect("compression thread panicked");
        }
        written?;
        read
    })
}

/// Reads `ranges` (sorted, disjoint) widened to whole blocks; the rest reads as zeros.
fn read_stage(
    src: &FileDev,
    ranges: &[(u64, u64)],
    block_size: usize,
    chunk_size: usize,
    jobs: Sender<Job>,
    progress: &Progress,
) -> Result<u64> {
    let bs = block_size as u64;
    let len = src.len();
    let mut buf = vec![0u8; chunk_size];
    let mut raw = Vec::with_capacity(chunk_size);
    let mut blocks = Vec::with_capacity(chunk_size / block_size);
    let mut seq = 0u64;
    let mut next_block = 0u64; // first block not yet read
    let mut bytes_read = 0u64;
    let mut send = |raw: &mut Vec<u8>, blocks: &mut Vec<u64>| -> bool {
        let job = Job {
            seq,
            raw: std::mem::replace(raw, Vec::with_capacity(chunk_size)),
            blocks: std::mem::replace(blocks, Vec::with_capacity(chunk_size / block_size)),
        };
        seq += 1;
        jobs.send(job).is_ok()
    };
    for &(start, end) in ranges {
        // Widen to whole blocks; ranges may share a block at their edges.
        let first = (start / bs).max(next_block);
        let last = end.div_ceil(bs);
        progress.inc(
            (first * bs)
                .min(len)
                .saturating_sub((next_block * bs).min(len)),
        );
        let mut block = first;
        while block < last {
            check_interrupt()?;
            let n_blocks = ((chunk_size as u64 / bs).min(last - block)) as usize;
            let pos = block * bs;
            let avail = ((len - pos) as usize).min(n_blocks * block_size);
            let piece = &mut buf[..n_blocks * block_size];
            src.read_at(pos, &mut piece[..avail])?;
            piece[avail..].fill(0); // the disk's last block may be partial
            bytes_read += avail as u64;
            for (i, b) in piece.chunks_exact(block_size).enumerate() {
                if is_zero(b) {
                    continue;
                }
                raw.extend_from_slice(b);
                blocks.push(block + i as u64);
                if raw.len() == chunk_size && !send(&mut raw, &mut blocks) {
                    return Ok(bytes_read); // the writer stopped; it reports why
                }
            }
            progress.inc(avail as u64);
            block += n_blocks as u64;
        }
        // Ranges may share a block: never step back over one already read.
        next_block = next_block.max(last);
    }
    progress.inc(len.saturating_sub((next_block * bs).min(len)));
    if !raw.is_empty() {
        send(&mut raw, &mut blocks);
    }
    Ok(bytes_read)
}

fn compress_stage(jobs: Receiver<Job>, done: Sender<Sealed>, block_size: usize, level: i32) {
    let mut compressor = match zstd::bulk::Compressor::new(level) {
        Ok(c) => Some(c),
        Err(e) => {
            // Report through the first job so the writer sees the failure in order.
            if let Ok(job) = jobs.recv() {
                let _ = done.send(Sealed {
                    seq: job.seq,
                    chunk: Err(e),
                    blocks: job.blocks,
                });
            }
            None
        }
    };
    let Some(compressor) = compressor.as_mut() else {
        return;
    };
    for job in jobs {
        let chunk = SealedChunk::seal(&job.raw, block_size, compressor);
        if done
            .send(Sealed {
                seq: job.seq,
                chunk,
                blocks: job.blocks,
            })
            .is_err()
        {
            return;
        }
    }
}

fn write_stage(done: Receiver<Sealed>, writer: &mut ImageWriter) -> Result<()> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    for sealed in done {
        pending.insert(sealed.seq, sealed);
        while let Some(s) = pending.remove(&next) {
            let chunk = s
                .chunk
                .map_err(|e| Error::io("zstd", "compression failed", e))?;
            writer.append(&chunk, &s.blocks)?;
            next += 1;
        }
    }
    Ok(())
}
