//! `strata verify`: re-checks the header, index digest, block-hash table, catalog and every
//! chunk.

use crate::container::reader::Image;
use crate::error::Result;
use crate::progress::{check_interrupt, Progress};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// One thing found wrong.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// What is damaged: "header", "block-hash table", "chunk 12", …
    pub what: String,
    /// Disk byte ranges `[start, end)` whose data is affected (empty for metadata).
    pub disk_ranges: Vec<(u64, u64)>,
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub image: PathBuf,
    pub kind: crate::container::header::ImageKind,
    pub chunks: u64,
    /// Uncompressed bytes checked.
    pub data_bytes: u64,
    /// Bytes of image file read.
    pub image_bytes: u64,
    pub seconds: f64,
    pub problems: Vec<Problem>,
    /// Files of the image's point in time that damaged chunks made unreadable (top image
    /// of a chain only; filled when some chunk is damaged).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged_files: Vec<crate::vfs::scan::Unreadable>,
    /// Why the files could not be looked at, when chunks are damaged but the filesystems
    /// could not be walked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_note: Option<String>,
    /// Disk byte ranges the source could not be read at when the image was made
    /// (`create --skip-bad-sectors`): not damage of the image, but data it does not have.
    pub unreadable: Vec<(u64, u64)>,
}

impl VerifyReport {
    /// True when nothing was found wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies `path`. Damage to the trailer or index (which locate everything else) is an
/// error; damage to the header, the block-hash table or chunks is reported and checking
/// goes on, so one run lists everything that is lost.
pub fn verify(path: &Path, threads: usize, progress: bool) -> Result<VerifyReport> {
    verify_opened(Image::open_for_verify(path)?, threads, progress)
}

/// [`verify`] of a writer's own `.partial` output, before it is renamed.
pub fn verify_unfinished(path: &Path, threads: usize) -> Result<VerifyReport> {
    verify_opened(Image::open_unfinished(path)?, threads, false)
}

fn verify_opened(
    (image, header_problem): (Image, Option<crate::container::reader::HeaderProblem>),
    threads: usize,
    progress: bool,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let path = image.path().to_path_buf();
    let path = path.as_path();
    let mut problems = Vec::new();
    if let Some(p) = header_problem {
        problems.push(Problem {
            what: "header".into(),
            disk_ranges: Vec::new(),
            detail: p,
        });
    }
    let table_ok = match image.check_block_hash_table() {
        Ok(()) => true,
        Err(e) if e.is_integrity_failure() => {
            problems.push(Problem {
                what: "block-hash table".into(),
                disk_ranges: Vec::new(),
                detail: e.to_string(),
            });
            false
        }
        Err(e) => return Err(e),
    };
    // A damaged catalog loses no data (find, history and diff walk the image instead),
    // but the file is damaged there all the same.
    if let Err(why) = crate::catalog::stored(&image)? {
        problems.push(Problem {
            what: "catalog".into(),
            disk_ranges: Vec::new(),
            detail: format!("{why} (no data is lost: find, history and diff walk the image)"),
        });
    }
    let index = image.index();
    let bs = image.header().block_size;
    let first_hash = index.first_block_hashes(bs);
    let total: u64 = index.chunks.iter().map(|c| u64::from(c.raw_len)).sum();
    let bar = Progress::new(total, "verifying", progress);
    let next = AtomicUsize::new(0);
    let found = Mutex::new(Vec::new());
    let fatal = Mutex::new(None);
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for _ in 0..threads.max(1) {
            workers.push(s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= index.chunks.len() || check_interrupt().is_err() {
                    return;
                }
                let entry = &index.chunks[i];
                let fault = match image.load_chunk(i as u32) {
                    Ok(data) if table_ok => {
                        let n = u64::from(entry.raw_len / bs);
                        match image.block_hashes(first_hash[i], n) {
                            Ok(hashes) => data
                                .chunks_exact(bs as usize)
                                .zip(&hashes)
                                .position(|(b, &h)| xxhash_rust::xxh3::xxh3_64(b) != h)
                                .map(|k| format!("block {k} does not match its block hash")),
                            Err(e) => {
                                fatal.lock().expect("lock").get_or_insert(e);
                                return;
                            }
                        }
                    }
                    Ok(_) => None,
                    Err(crate::container::reader::ChunkLoadError::Fault(f)) => Some(f.to_string()),
                    Err(crate::container::reader::ChunkLoadError::Io(e)) => {
                        fatal.lock().expect("lock").get_or_insert(crate::Error::io(
                            path,
                            "cannot read",
                            e,
                        ));
                        return;
                    }
                };
                if let Some(detail) = fault {
                    found.lock().expect("lock").push((
                        i,
                        Problem {
                            what: format!("chunk {i} at byte {}", entry.offset),
                            disk_ranges: image.chunk_disk_ranges(i as u32),
                            detail,
                        },
                    ));
                }
                bar.inc(u64::from(entry.raw_len));
            }));
        }
        crate::threads::join_all(workers);
    });
    bar.finish();
    check_interrupt()?;
    if let Some(e) = fatal.into_inner().expect("lock") {
        return Err(e);
    }
    let mut found = found.into_inner().expect("lock");
    found.sort_by_key(|(i, _)| *i);
    problems.extend(found.into_iter().map(|(_, p)| p));
    Ok(VerifyReport {
        image: path.to_path_buf(),
        kind: image.header().kind,
        chunks: index.chunks.len() as u64,
        data_bytes: total,
        image_bytes: image.file_len(),
        seconds: started.elapsed().as_secs_f64(),
        problems,
        damaged_files: Vec::new(),
        files_note: None,
        unreadable: super::info::unreadable_ranges(
            index,
            image.header().block_size,
            image.header().disk_size,
        ),
    })
}

/// Verifies `path` and, for a child image, every ancestor and the links between them.
/// Reports come top image first. When the image itself is damaged its ancestors are not
/// looked at (its parent reference cannot be trusted). When chunks are damaged, the files
/// of `path`'s point in time are read to name those that were lost (in the top report).
pub fn verify_chain(
    path: &Path,
    threads: usize,
    progress: bool,
    opts: &crate::chain::ResolveOptions,
) -> Result<Vec<VerifyReport>> {
    let mut reports = vec![verify(path, threads, progress)?];
    if reports[0].ok() && reports[0].kind != crate::container::header::ImageKind::Full {
        let layers = crate::chain::resolve::resolve(path, opts)?;
        for l in layers[..layers.len() - 1].iter().rev() {
            reports.push(verify(l.path(), threads, progress)?);
        }
    }
    let chunk_damage = reports
        .iter()
        .any(|r| r.problems.iter().any(|p| !p.disk_ranges.is_empty()));
    if chunk_damage {
        let files = crate::chain::Chain::open(path, opts)
            .and_then(|c| crate::vfs::scan::damaged_files(std::sync::Arc::new(c)));
        match files {
            Ok(f) => reports[0].damaged_files = f,
            Err(crate::Error::Interrupted) => return Err(crate::Error::Interrupted),
            Err(e) => reports[0].files_note = Some(format!("files not checked: {e}")),
        }
    }
    Ok(reports)
}
