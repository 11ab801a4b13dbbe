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
    /// False when only the stored bytes were checked: an encrypted image without its key.
    pub content_checked: bool,
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
    let threads = if image.is_remote() {
        threads.max(crate::storage::REMOTE_READERS)
    } else {
        threads.max(1)
    };
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for _ in 0..threads {
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
        content_checked: true,
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

/// [`verify_chain`] of an encrypted chain without its key: for each image, what can be
/// checked without opening anything sealed (header and trailer checksums, the index
/// digest, every chunk record's stored-bytes checksum, the catalog section's checksums and
/// the block-hash table's length), and each child's parent found by UUID and index digest.
/// The reports say the content was not checked.
pub fn verify_stored_chain(
    path: &Path,
    opts: &crate::chain::ResolveOptions,
) -> Result<Vec<VerifyReport>> {
    let mut reports = Vec::new();
    let mut at = path.to_path_buf();
    let mut seen = std::collections::HashSet::new();
    loop {
        let (report, header) = verify_stored(&at)?;
        let ok = report.ok();
        reports.push(report);
        if !ok || header.kind == crate::container::header::ImageKind::Full {
            return Ok(reports);
        }
        seen.insert(header.image_uuid);
        let parent = stored_parent(&at, &header, opts)?;
        if !seen.insert(header.parent_uuid) || seen.len() > crate::chain::MAX_CHAIN_LEN {
            return Err(crate::Error::BrokenChain {
                path: at,
                detail: format!(
                    "the chain loops or is longer than {} images: parent {} is already in it",
                    crate::chain::MAX_CHAIN_LEN,
                    header.parent_uuid
                ),
            });
        }
        at = parent;
    }
}

/// The parent of `child` among its hint and the images beside it and in `opts.dirs`,
/// checked by UUID and by the index digest its trailer records.
fn stored_parent(
    child: &Path,
    header: &crate::container::header::Header,
    opts: &crate::chain::ResolveOptions,
) -> Result<PathBuf> {
    use crate::chain::resolve::{dir_of, images_in, peek_header};
    let dir = dir_of(child);
    let mut candidates = vec![dir.join(&header.parent_hint)];
    candidates.extend(images_in(&dir));
    for d in &opts.parent_dirs {
        candidates.extend(images_in(d));
    }
    let me = std::fs::canonicalize(child).ok();
    for c in candidates {
        if me.is_some() && std::fs::canonicalize(&c).ok() == me {
            continue;
        }
        let Some(ph) = peek_header(&c) else {
            continue;
        };
        let fits = ph.image_uuid == header.parent_uuid
            && read_trailer(&c).is_ok_and(|t| t.index_digest == header.parent_index_digest);
        if fits {
            crate::chain::resolve::same_key(child, header, &c, &ph)?;
            return Ok(c);
        }
    }
    Err(crate::Error::MissingParent {
        path: child.to_path_buf(),
        detail: format!(
            "parent {} not found (looked at {} and the images beside it; without the key, \
             a consolidated parent's earlier identities cannot be read)",
            header.parent_uuid, header.parent_hint
        ),
    })
}

fn read_trailer(path: &Path) -> Result<crate::container::index::Trailer> {
    use crate::container::index::{Trailer, TRAILER_SIZE};
    let (file, len) = crate::storage::Blob::open(path)?;
    let mut tail = [0u8; TRAILER_SIZE];
    if len < TRAILER_SIZE as u64 {
        return Err(crate::Error::Incomplete {
            path: path.into(),
            reason: "no trailer".into(),
        });
    }
    file.read_exact_at(&mut tail, len - TRAILER_SIZE as u64)
        .map_err(|e| crate::Error::io(path, "cannot read", e))?;
    Trailer::decode(&tail).map_err(|reason| crate::Error::Incomplete {
        path: path.into(),
        reason: format!("no trailer ({reason})"),
    })
}

/// Checks what an encrypted image stores without its key. See [`verify_stored_chain`].
fn verify_stored(path: &Path) -> Result<(VerifyReport, crate::container::header::Header)> {
    use crate::container::chunk::{CHUNK_MAGIC, CHUNK_RECORD_HEADER};
    use crate::container::crypto::{hash_table_len, HASH_SEGMENT_ENTRIES, SEAL_OVERHEAD};
    use crate::container::header::{Header, HEADER_SIZE};
    use crate::le::LeFields;
    use xxhash_rust::xxh3::xxh3_64;
    let started = Instant::now();
    let io = |e| crate::Error::io(path, "cannot read", e);
    let (file, file_len) = crate::storage::Blob::open(path)?;
    let mut head = vec![0u8; HEADER_SIZE.min(usize::try_from(file_len).unwrap_or(HEADER_SIZE))];
    file.read_exact_at(&mut head, 0).map_err(io)?;
    let header = Header::decode(&head, false).map_err(|e| e.at(path))?;
    let mut problems = Vec::new();
    let mut problem = |what: String, detail: String| {
        problems.push(Problem {
            what,
            disk_ranges: Vec::new(),
            detail,
        });
    };
    if Header::compute_checksum(&head) != Header::stored_checksum(&head) {
        problem("header".into(), "checksum mismatch".into());
    }
    let trailer = read_trailer(path)?;
    let index_end = trailer.index_offset.checked_add(trailer.index_length);
    if trailer.index_offset < HEADER_SIZE as u64 || index_end != Some(file_len - 64) {
        return Err(crate::Error::corrupt(
            path,
            "trailer",
            file_len - 64,
            "the index it names does not end where the trailer starts",
        ));
    }
    let mut index = vec![0u8; crate::le::usize_of(trailer.index_length)?];
    file.read_exact_at(&mut index, trailer.index_offset)
        .map_err(io)?;
    if *blake3::hash(&index).as_bytes() != trailer.index_digest {
        problem("index".into(), "digest mismatch".into());
    }
    // The chunk records, one after the other from the header on.
    let limit = u64::from(crate::container::MAX_CHUNK_SIZE) + 65536 + SEAL_OVERHEAD as u64;
    let (mut pos, mut chunks, mut data_bytes) = (HEADER_SIZE as u64, 0u64, 0u64);
    let mut rec = [0u8; CHUNK_RECORD_HEADER];
    let mut payload = Vec::new();
    while pos + CHUNK_RECORD_HEADER as u64 <= trailer.index_offset {
        file.read_exact_at(&mut rec, pos).map_err(io)?;
        if rec[..4] != CHUNK_MAGIC {
            break;
        }
        check_interrupt()?;
        let f = LeFields(&rec);
        let stored = u64::from(f.u32(8));
        let end = pos + CHUNK_RECORD_HEADER as u64 + stored;
        if stored > limit || end > trailer.index_offset {
            problem(
                format!("chunk {chunks} at byte {pos}"),
                format!("record header: impossible stored length {stored}"),
            );
            break;
        }
        payload.resize(crate::le::usize_of(stored)?, 0);
        file.read_exact_at(&mut payload, pos + CHUNK_RECORD_HEADER as u64)
            .map_err(io)?;
        let computed = xxh3_64(&payload);
        if computed != f.u64(16) {
            problem(
                format!("chunk {chunks} at byte {pos}"),
                format!(
                    "stored-bytes checksum mismatch (expected {:016x}, computed {computed:016x})",
                    f.u64(16)
                ),
            );
        }
        chunks += 1;
        data_bytes += u64::from(f.u32(12));
        pos = end;
    }
    // Then the catalog section, if any, and the sealed block-hash table up to the index.
    let mut sect = [0u8; 64];
    if pos + 64 <= trailer.index_offset {
        file.read_exact_at(&mut sect, pos).map_err(io)?;
        if sect[..8] == crate::container::catalog::SECTION_MAGIC {
            let f = LeFields(&sect);
            let stored = f.u64(16);
            if f.u64(48) != xxh3_64(&sect[..48]) {
                problem("catalog".into(), "section header checksum mismatch".into());
            } else if stored > trailer.index_offset - pos - 64 {
                problem("catalog".into(), format!("impossible length {stored}"));
            } else {
                payload.resize(crate::le::usize_of(stored)?, 0);
                file.read_exact_at(&mut payload, pos + 64).map_err(io)?;
                if xxh3_64(&payload) != f.u64(32) {
                    problem("catalog".into(), "payload checksum mismatch".into());
                }
                pos += 64 + stored;
            }
        }
    }
    let table = trailer.index_offset.saturating_sub(pos);
    let segment = HASH_SEGMENT_ENTRIES * 8 + SEAL_OVERHEAD as u64;
    let entries = table
        .div_ceil(segment)
        .checked_mul(SEAL_OVERHEAD as u64)
        .and_then(|o| table.checked_sub(o))
        .map(|b| b / 8);
    if entries.and_then(|n| hash_table_len(n, true)) != Some(table) {
        problem(
            format!("chunk records (from byte {pos})"),
            format!(
                "the {table} bytes before the index are no sealed block-hash table: a chunk \
                 record there is damaged"
            ),
        );
    }
    let report = VerifyReport {
        image: path.to_path_buf(),
        kind: header.kind,
        chunks,
        data_bytes,
        image_bytes: file_len,
        seconds: started.elapsed().as_secs_f64(),
        problems,
        damaged_files: Vec::new(),
        files_note: None,
        unreadable: Vec::new(),
        content_checked: false,
    };
    Ok((report, header))
}
