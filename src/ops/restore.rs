//! `strata restore`: writes the disk as it was at any chain point to a block device or a
//! file.
//!
//! Chunks (of whichever image in the chain holds them) are loaded and checked by worker
//! threads and written in the order the merged map first needs them. A file
//! target is written as `TARGET.partial`, sparse where the disk is zero, and renamed when
//! complete; a device target is written in place and its unstored ranges are zeroed.

use crate::atomic_file::AtomicFile;
use crate::blockdev::file::write_all_at;
use crate::chain::{Chain, ResolveOptions};
use crate::container::index::ExtentKind;
use crate::error::{Error, Result};
use crate::progress::{check_interrupt, Progress};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// What to restore where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub image: PathBuf,
    pub target: PathBuf,
    pub force: bool,
    pub threads: usize,
    pub progress: bool,
    pub resolve: ResolveOptions,
}

/// What `restore` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreSummary {
    pub image: PathBuf,
    pub target: PathBuf,
    pub disk_bytes: u64,
    /// Bytes of stored data written (the rest is zeros: holes or zeroed ranges).
    pub data_bytes: u64,
    pub seconds: f64,
}

/// Restores `opts.image` to `opts.target`.
pub fn restore(opts: &RestoreOptions) -> Result<RestoreSummary> {
    let started = Instant::now();
    let chain = Chain::open(&opts.image, &opts.resolve)?;
    if super::layer_named(chain.layers(), &opts.target).is_some() {
        return Err(Error::Invalid(format!(
            "{}: the target is the image itself or one of its parents",
            opts.target.display()
        )));
    }
    let image = &chain;
    let disk = chain.top().header().disk_size;
    let is_device = is_block_device(&opts.target);
    if !is_device {
        let found = std::fs::metadata(&opts.target);
        if let Some(kind) = found
            .ok()
            .and_then(|m| crate::atomic_file::special_kind(&m.file_type()))
        {
            return Err(Error::Invalid(format!(
                "{}: is {kind}; restore writes to a regular file or a block device only",
                opts.target.display()
            )));
        }
    }
    let progress = Progress::new(disk, "restoring", opts.progress);
    let result = if is_device {
        let dev = open_device(&opts.target, disk)?;
        let data = write_chunks(image, &dev, &opts.target, true, opts.threads, &progress)?;
        zero_unstored(image, &dev, &opts.target, &progress)?;
        dev.sync_all()
            .map_err(|e| Error::io(&opts.target, "cannot flush", e))?;
        data
    } else {
        let mut out = AtomicFile::create(&opts.target, opts.force)?;
        let file = out.take();
        let partial = out.partial_path().to_path_buf();
        // Where sparse files cannot be had (FAT), the file is written in full instead.
        let _ = crate::blockdev::file::make_sparse(&file);
        // A fresh file of the disk's size: every unwritten range is a hole that reads as zeros.
        file.set_len(disk)
            .map_err(|e| Error::io(&partial, "cannot size the output", e))?;
        let data = write_chunks(image, &file, &partial, false, opts.threads, &progress)?;
        out.commit(file)?;
        data
    };
    progress.finish();
    Ok(RestoreSummary {
        image: opts.image.clone(),
        target: opts.target.clone(),
        disk_bytes: disk,
        data_bytes: result,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn is_block_device(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
    }
    #[cfg(windows)]
    {
        p.to_str()
            .is_some_and(crate::blockdev::file::is_windows_device_path)
    }
}

/// Opens a Windows disk (`\\.\PhysicalDrive1`) for writing, refusing one that is too
/// small. Windows itself refuses writes inside volumes that are mounted: the disk must be
/// offline (or hold no volumes).
#[cfg(windows)]
fn open_device(path: &Path, disk: u64) -> Result<File> {
    use crate::blockdev::file::windows;
    let dev = windows::open_shared(path, true).map_err(|e| windows::device_error(path, e))?;
    let size =
        windows::length(&dev).map_err(|e| Error::io(path, "cannot read the device size", e))?;
    check_size(path, size, disk)?;
    Ok(dev)
}

fn check_size(path: &Path, size: u64, disk: u64) -> Result<()> {
    if size < disk {
        return Err(Error::Invalid(format!(
            "{}: the target is {size} bytes, smaller than the imaged disk ({disk} bytes)",
            path.display()
        )));
    }
    Ok(())
}

/// Writes restored bytes at `pos`. Windows disk handles take only sector-aligned memory.
fn write_out(out: &File, buf: &[u8], pos: u64, device: bool) -> std::io::Result<()> {
    if cfg!(windows) && device {
        crate::blockdev::file::write_aligned(|b, at| write_all_at(out, b, at), pos, buf, 512)
    } else {
        write_all_at(out, buf, pos)
    }
}

/// Opens a device for writing, refusing one that is in use or too small.
#[cfg(unix)]
fn open_device(path: &Path, disk: u64) -> Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_EXCL on a block device fails with EBUSY while it is mounted or otherwise claimed.
        o.custom_flags(libc::O_EXCL);
    }
    let dev = o.open(path).map_err(|e| {
        if e.raw_os_error() == Some(16) {
            Error::Invalid(format!(
                "{}: the device is in use (mounted or claimed); unmount it first",
                path.display()
            ))
        } else {
            Error::io(path, "cannot open the target device", e)
        }
    })?;
    let size = {
        use std::io::{Seek, SeekFrom};
        (&dev)
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io(path, "cannot read the device size", e))?
    };
    check_size(path, size, disk)?;
    Ok(dev)
}

/// Chunks a restore worker takes at once when they are small: up to this many bytes…
const BATCH_BYTES: u64 = 1 << 20;
/// …or this many chunks.
const BATCH_CHUNKS: usize = 64;

/// Loads chunks on worker threads and writes each one's extents, in the order the merged
/// map first needs them (disk order for a full image). Returns the data bytes written.
fn write_chunks(
    chain: &Chain,
    out: &File,
    out_path: &Path,
    device: bool,
    threads: usize,
    progress: &Progress,
) -> Result<u64> {
    let bs = u64::from(chain.block_size());
    let disk = chain.top().header().disk_size;
    let map = chain.map();
    // Runs per (layer, chunk), so each chunk is decompressed once.
    let mut order: Vec<(u16, u32)> = Vec::new();
    let mut runs: std::collections::HashMap<(u16, u32), Vec<usize>> = Default::default();
    for (i, e) in map.iter().enumerate() {
        if e.kind == ExtentKind::Data {
            runs.entry((e.layer, e.chunk))
                .or_insert_with(|| {
                    order.push((e.layer, e.chunk));
                    Vec::new()
                })
                .push(i);
        }
    }
    // Chunks from a bucket wait on the network more than on decompression.
    let threads = if chain.is_remote() {
        threads.max(crate::storage::REMOTE_READERS)
    } else {
        threads.max(1)
    };
    // From a bucket, chunks that follow each other in the order and in their image are
    // fetched together: one request for several, not one each.
    let (run_max, run_bytes) = if chain.is_remote() {
        (
            crate::storage::REMOTE_RUN_CHUNKS,
            crate::storage::REMOTE_RUN_BYTES,
        )
    } else {
        (1, 0)
    };
    let run_at = |i: usize| -> usize {
        let (layer, chunk) = order[i];
        let img = &chain.layers()[layer as usize];
        let most = img.run_len(chunk, run_max, run_bytes) as usize;
        let mut k = 1;
        while k < most && order.get(i + k) == Some(&(layer, chunk + k as u32)) {
            k += 1;
        }
        k
    };
    // Small chunks (the few blocks of each incremental of a long chain) are taken and
    // handed over several at a time: one at a time, passing each through the channel
    // cost more than loading it.
    let small_batch = |i: usize| -> usize {
        let mut bytes = 0u64;
        let mut k = 0;
        while let Some(&(layer, chunk)) = order.get(i + k) {
            let raw = chain.layers()[layer as usize].index().chunks[chunk as usize].raw_len;
            bytes += u64::from(raw);
            k += 1;
            if bytes >= BATCH_BYTES || k >= BATCH_CHUNKS {
                break;
            }
        }
        k.max(1)
    };
    let next = AtomicUsize::new(0);
    let (tx, rx) = crossbeam_channel::bounded(threads * 2);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (tx, next, order, run_at) = (tx.clone(), &next, &order, &run_at);
            s.spawn(move || loop {
                let i = next.load(Ordering::Relaxed);
                let Some(&(layer, chunk)) = order.get(i) else {
                    return;
                };
                let run = run_at(i);
                let k = if run > 1 { run } else { small_batch(i) };
                if next
                    .compare_exchange(i, i + k, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                let batch: Vec<_> = if run > 1 {
                    let img = &chain.layers()[layer as usize];
                    (i..)
                        .zip(img.load_run(chunk, k as u32))
                        .zip(chunk..)
                        .map(|((at, loaded), c)| (at, loaded.map_err(|e| img.chunk_error(c, e))))
                        .collect()
                } else {
                    (i..i + k)
                        .map(|at| {
                            let (layer, c) = order[at];
                            let img = &chain.layers()[layer as usize];
                            (at, img.load_chunk(c).map_err(|e| img.chunk_error(c, e)))
                        })
                        .collect()
                };
                if tx.send(batch).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut want = 0usize;
        let mut written = 0u64;
        let result = (|| {
            for batch in rx.iter() {
                pending.extend(batch);
                while let Some(loaded) = pending.remove(&want) {
                    check_interrupt()?;
                    let data = loaded?;
                    for &ei in &runs[&order[want]] {
                        let e = map[ei];
                        let pos = e.disk_block * bs;
                        let len = (u64::from(e.count) * bs).min(disk - pos) as usize;
                        let at = (u64::from(e.block_in_chunk) * bs) as usize;
                        write_out(out, &data[at..at + len], pos, device)
                            .map_err(|err| Error::io(out_path, "cannot write", err))?;
                        written += len as u64;
                        progress.inc(len as u64);
                    }
                    want += 1;
                }
            }
            Ok(written)
        })();
        // Stop the workers early on error: dropping the receiver fails their sends.
        drop(rx);
        result
    })
}

/// Writes zeros over every range the chain point does not store (device targets only: a
/// file target is created empty and its holes already read as zeros).
fn zero_unstored(chain: &Chain, dev: &File, path: &Path, progress: &Progress) -> Result<()> {
    let bs = u64::from(chain.block_size());
    let disk = chain.top().header().disk_size;
    let zeros = vec![0u8; 1 << 20];
    let mut gaps = Vec::new();
    let mut pos = 0u64;
    for e in chain.map() {
        let start = e.disk_block * bs;
        if e.kind == ExtentKind::Data {
            if start > pos {
                gaps.push((pos, start));
            }
            pos = (e.end() * bs).min(disk);
        }
    }
    if pos < disk {
        gaps.push((pos, disk));
    }
    for (mut a, b) in gaps {
        while a < b {
            check_interrupt()?;
            let n = (b - a).min(zeros.len() as u64) as usize;
            write_out(dev, &zeros[..n], a, true).map_err(|e| Error::io(path, "cannot write", e))?;
            progress.inc(n as u64);
            a += n as u64;
        }
    }
    Ok(())
}
