//! What damage costs in files: every file of a [`Vfs`] read to its end, and the ones that
//! cannot be read listed with the reason.
//!
//! `verify` uses it when it finds damaged chunks, so a user learns which files were lost
//! rather than only which disk bytes. Reading the files is the one way that holds for every
//! filesystem (the [`FileSystem`] interface does not expose where a file's data lies), and it
//! also catches files that cannot be found any more because a directory lay in a damaged
//! chunk. Only failures caused by damage count (the device is watched for reads that fail an
//! integrity check): a file strata cannot decode for another reason is not lost.

use super::{FileSystem, NodeId, NodeKind, Vfs};
use crate::blockdev::BlockDev;
use crate::chain::Chain;
use crate::error::{Error, Result};
use crate::progress::check_interrupt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A device that remembers whether a read failed an integrity check (a damaged chunk).
pub struct Watched {
    dev: Arc<dyn BlockDev>,
    fault: AtomicBool,
}

impl Watched {
    /// Watches `dev`.
    pub fn new(dev: Arc<dyn BlockDev>) -> Arc<Watched> {
        Arc::new(Watched {
            dev,
            fault: AtomicBool::new(false),
        })
    }

    /// True when a read failed an integrity check since the last call.
    fn take_fault(&self) -> bool {
        self.fault.swap(false, Ordering::Relaxed)
    }
}

impl BlockDev for Watched {
    fn len(&self) -> u64 {
        self.dev.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let r = self.dev.read_at(offset, buf);
        if r.as_ref().is_err_and(Error::is_integrity_failure) {
            self.fault.store(true, Ordering::Relaxed);
        }
        r
    }
}

/// A file or directory that cannot be read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unreadable {
    /// Path as `strata ls` shows it (`/p2/dir/file`; `:stream` for an NTFS stream).
    pub path: String,
    /// Why, as the read reported it.
    pub error: String,
}

/// Opens the filesystems of `chain` and lists what damage made unreadable (see [`walk`]).
pub fn damaged_files(chain: Arc<Chain>) -> Result<Vec<Unreadable>> {
    let (sector_size, cache) = (chain.sector_size(), chain.cache().clone());
    let watch = Watched::new(chain);
    match Vfs::open(watch.clone(), sector_size, &cache) {
        Ok(vfs) => walk(&vfs, &watch),
        // The partition table itself lies in a damaged chunk: every file is lost to browsing.
        Err(e) if watch.take_fault() => Ok(vec![Unreadable {
            path: "/".into(),
            error: format!("partition table cannot be read: {e}"),
        }]),
        Err(e) => Err(e),
    }
}

/// Walks every filesystem of `vfs` (opened on `watch`), lists every directory and reads
/// every file and stream to the end. Returns what failed because of damage. A directory
/// that loops back to one of its ancestors is reported and not entered again.
pub fn walk(vfs: &Vfs, watch: &Watched) -> Result<Vec<Unreadable>> {
    let mut out = Vec::new();
    // A fault while the filesystems were opened (damage in a boot sector or superblock).
    let open_fault = watch.take_fault();
    for m in vfs.mounts() {
        let top = if m.name.is_empty() {
            String::new()
        } else {
            format!("/{}", m.name)
        };
        match &m.fs {
            Ok(fs) => {
                let mut walk = Walk {
                    fs: &**fs,
                    watch,
                    out: &mut out,
                    seen: HashSet::new(),
                    ancestors: Vec::new(),
                    buf: vec![0u8; 1 << 20],
                };
                walk.dir(&top, fs.root())?;
            }
            // A filesystem that no longer opens or is no longer recognised because of damage:
            // all of it is lost to browsing.
            Err(why) if open_fault && m.kind.is_none_or(browsable) => out.push(Unreadable {
                path: if top.is_empty() { "/".into() } else { top },
                error: why.clone(),
            }),
            Err(_) => {}
        }
    }
    Ok(out)
}

/// Filesystems strata can browse (others fail to open whatever their state).
fn browsable(k: crate::fs::FsKind) -> bool {
    use crate::fs::FsKind::*;
    matches!(k, Ntfs | Ext2 | Ext3 | Ext4 | Fat12 | Fat16 | Fat32 | Exfat)
}

struct Walk<'a> {
    fs: &'a dyn FileSystem,
    watch: &'a Watched,
    out: &'a mut Vec<Unreadable>,
    /// Directories already walked (a damaged volume may list one twice).
    seen: HashSet<NodeId>,
    /// Directories from the root to the current one, to recognise a cycle.
    ancestors: Vec<NodeId>,
    buf: Vec<u8>,
}

impl Walk<'_> {
    /// Records `path` as lost when damage caused the failure `e`; an interruption stops
    /// the walk.
    fn fail(&mut self, path: &str, e: Error) -> Result<()> {
        if matches!(e, Error::Interrupted) {
            return Err(e);
        }
        if self.watch.take_fault() {
            self.lost(path, e);
        }
        Ok(())
    }

    fn lost(&mut self, path: &str, e: impl std::fmt::Display) {
        self.out.push(Unreadable {
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            error: e.to_string(),
        });
    }

    fn dir(&mut self, path: &str, node: NodeId) -> Result<()> {
        // A loop the filesystem gives fresh node ids to shows as an ever longer path.
        if self.ancestors.contains(&node) || path.len() > 4096 {
            self.lost(
                path,
                "directory loops back to one of its parents (damaged metadata)",
            );
            return Ok(());
        }
        if !self.seen.insert(node) {
            return Ok(());
        }
        let list = match self.fs.read_dir(node) {
            Ok(l) => l,
            Err(e) => return self.fail(path, e),
        };
        self.ancestors.push(node);
        for e in list {
            check_interrupt()?;
            let p = format!("{path}/{}", e.name);
            let meta = match self.fs.metadata(e.node) {
                Ok(m) => m,
                Err(err) => {
                    self.fail(&p, err)?;
                    continue;
                }
            };
            match meta.kind {
                NodeKind::Dir => self.dir(&p, e.node)?,
                NodeKind::Symlink => {
                    if let Err(err) = self.fs.read_link(e.node) {
                        self.fail(&p, err)?;
                    }
                }
                NodeKind::File | NodeKind::Reparse => {
                    let streams = std::iter::once(String::new())
                        .chain(meta.streams.iter().map(|s| s.name.clone()));
                    for s in streams {
                        if let Err(err) = self.read_to_end(e.node, &s) {
                            let shown = if s.is_empty() {
                                p.clone()
                            } else {
                                format!("{p}:{s}")
                            };
                            self.fail(&shown, err)?;
                        }
                    }
                }
                NodeKind::Block | NodeKind::Char | NodeKind::Fifo | NodeKind::Socket => {}
            }
        }
        self.ancestors.pop();
        Ok(())
    }

    fn read_to_end(&mut self, node: NodeId, stream: &str) -> Result<()> {
        let mut off = 0u64;
        loop {
            check_interrupt()?;
            match self.fs.read_at(node, stream, off, &mut self.buf)? {
                0 => return Ok(()),
                n => off += n as u64,
            }
        }
    }
}
