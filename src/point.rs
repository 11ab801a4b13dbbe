//! A point in time of a backup, opened for reading: the image and its ancestors as one
//! device (a [`Chain`]), its partition table ([`crate::layout::partition_table`]) and the
//! filesystems in it ([`Vfs`]), or what a mount shows of it ([`View`]).
//!
//! The CLI (`ls`, `cat`, `cp`, `mount`), the mount front-ends (FUSE, Dokan) and any later
//! one open images here, so that they all see the same partitions and share one memory
//! ceiling the same way. Nothing here knows about a command line.

use crate::blockdev::BlockDev;
use crate::chain::{Chain, ResolveOptions};
use crate::error::{Error, Result};
use crate::vfs::{PartDev, Vfs};
use std::path::Path;
use std::sync::Arc;

/// glibc gives each thread its own malloc arena, and a chunk freed by another thread
/// stays in its arena: with a mount's workers and the prefetch threads, a mount peaked at
/// 197 MiB for a 128 MiB cache, 131 MiB with two arenas. Set before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Opens the chain of `image` for browsing or mounting, which read it on several threads
/// (hence two malloc arenas only), with a ceiling of `cache_bytes` of decoded data (the
/// chunks, and the units of the filesystems opened by [`vfs_of`]).
/// Prefetching is not started: a front-end that forks starts it afterwards
/// ([`Chain::enable_prefetch`]).
pub fn open_chain(image: &Path, resolve: &ResolveOptions, cache_bytes: u64) -> Result<Arc<Chain>> {
    limit_malloc_arenas();
    let chain = Chain::open_with_cache(image, resolve, cache_bytes)?;
    Ok(Arc::new(chain))
}

/// The filesystems of `chain`, which keep what they decode (NTFS compressed files) in the
/// chain's cache: one ceiling for the chunks and the decoded units.
pub fn vfs_of(chain: &Arc<Chain>) -> Result<Vfs> {
    Vfs::open(chain.clone(), chain.sector_size(), chain.cache())
}

/// Opens the files of `image` for reading in this process (`ls`, `cat`, `cp`): the chain,
/// its filesystems ([`vfs_of`]), and the prefetch threads.
pub fn open_vfs(image: &Path, resolve: &ResolveOptions, cache_bytes: u64) -> Result<Vfs> {
    let chain = open_chain(image, resolve, cache_bytes)?;
    let vfs = vfs_of(&chain)?;
    chain.enable_prefetch();
    Ok(vfs)
}

/// What a mount shows. Decided by [`View::files`] and [`View::raw`] for every front-end.
pub enum View {
    /// The files: every partition as `p1`, `p2`… at the top, or (`single`) one mount's
    /// filesystem as the root (`--partition N`, or a bare filesystem).
    Files { vfs: Vfs, single: Option<usize> },
    /// The disk and its partitions as read-only files (`disk.img`, `p1.img`…), or
    /// partition N alone (`--raw --partition N`).
    Raw(Vec<(String, Arc<dyn BlockDev>)>),
}

/// The error for a partition number the device does not have.
fn no_partition(vfs_bare: bool, n: u32) -> Error {
    if vfs_bare {
        Error::NotFound(format!(
            "no partition {n}: the disk is one filesystem without a partition table \
             (mount it without --partition)"
        ))
    } else {
        Error::NotFound(format!("no partition {n}"))
    }
}

impl View {
    /// The files of `vfs`: partition `partition` (numbered as `strata ls` shows them) as
    /// the root, or every partition. A bare filesystem is the root, and has no partition
    /// numbers: `--partition` is refused there. A partition whose filesystem cannot be
    /// read is refused with the reason.
    pub fn files(vfs: Vfs, partition: Option<u32>) -> Result<View> {
        let single = match partition {
            Some(n) => {
                let i = vfs
                    .mounts()
                    .iter()
                    .position(|m| m.number == n && !vfs.is_bare())
                    .ok_or_else(|| no_partition(vfs.is_bare(), n))?;
                vfs.fs(i)?;
                Some(i)
            }
            None if vfs.is_bare() => {
                vfs.fs(0)?;
                Some(0)
            }
            None => None,
        };
        Ok(View::Files { vfs, single })
    }

    /// The raw bytes of `dev` (sectors of `sector_size`): `disk.img` and a `pN.img` per
    /// partition, or `pN.img` alone for `partition` N. The table is read as `ls` and `info`
    /// read it ([`crate::layout::partition_table`]).
    pub fn raw(dev: Arc<dyn BlockDev>, sector_size: u32, partition: Option<u32>) -> Result<View> {
        let table = crate::layout::partition_table(&*dev, sector_size)?;
        let bare = table.scheme == crate::partition::Scheme::None;
        let mut files: Vec<(String, Arc<dyn BlockDev>)> = Vec::new();
        if partition.is_none() {
            files.push(("disk.img".into(), dev.clone()));
        }
        for p in &table.partitions {
            if partition.is_some_and(|n| n != p.number) {
                continue;
            }
            let part = PartDev::new(dev.clone(), p.start, p.len)?;
            files.push((format!("p{}.img", p.number), Arc::new(part)));
        }
        match partition {
            Some(n) if files.is_empty() => Err(no_partition(bare, n)),
            _ => Ok(View::Raw(files)),
        }
    }
}

/// Opens what a mount of `image` shows (`partition`, `raw`: see [`View::files`] and
/// [`View::raw`]), with the chain it reads. Prefetching is left to the caller, after any
/// fork ([`Chain::enable_prefetch`]). Errors name the image.
pub fn open_view(
    image: &Path,
    resolve: &ResolveOptions,
    cache_bytes: u64,
    partition: Option<u32>,
    raw: bool,
) -> Result<(View, Arc<Chain>)> {
    let chain = open_chain(image, resolve, cache_bytes)?;
    let view = if raw {
        View::raw(chain.clone(), chain.sector_size(), partition)
    } else {
        vfs_of(&chain).and_then(|vfs| View::files(vfs, partition))
    };
    let view = view.map_err(|e| match e {
        Error::NotFound(m) => Error::NotFound(format!(
            "{}: {m} (see `strata ls {}`)",
            image.display(),
            image.display()
        )),
        e => e,
    })?;
    Ok((view, chain))
}
