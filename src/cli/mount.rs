//! `strata mount` and `strata unmount`: the arguments, and the hand-over to the mount
//! front-end of this system (Dokan on Windows, in `platform/dokan`).

use crate::error::{Error, Result};
use std::path::PathBuf;

/// Arguments of `strata mount`.
#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// The image file (any point of a chain).
    pub image: PathBuf,
    /// Where to show it: on Windows a free drive letter (`X:`) or an empty folder.
    pub mountpoint: String,
    /// Show only this partition's filesystem (numbered as `strata ls IMAGE` shows them).
    #[arg(long, value_name = "N")]
    pub partition: Option<u32>,
    /// Show the disk (or with --partition the partition) as one raw file instead of files.
    #[arg(long)]
    pub raw: bool,
    /// Stay in the foreground until unmounted (on Windows strata always does: the volume
    /// lives as long as the command; Ctrl-C or `strata unmount` ends it).
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Make the volume visible to every user session, not only the current one.
    #[arg(long)]
    pub allow_other: bool,
    /// Also look for parent images in DIR (repeatable).
    #[arg(long, value_name = "DIR")]
    pub parent_dir: Vec<PathBuf>,
}

/// Arguments of `strata unmount`.
#[derive(Debug, clap::Args)]
pub struct UnmountArgs {
    /// The drive letter or folder given to `strata mount`.
    pub mountpoint: String,
}

/// Mounts an image read-only and serves it until it is unmounted.
pub fn mount(a: MountArgs) -> Result<()> {
    #[cfg(windows)]
    {
        use crate::platform::dokan::{check_installed, mount, names, tree::Tree, MountOptions};
        let mount_point = names::mount_point(&a.mountpoint).map_err(Error::Invalid)?;
        check_installed()?;
        let resolve = crate::chain::ResolveOptions {
            parent_dirs: a.parent_dir.clone(),
        };
        let dev = super::open_point(&a.image, &resolve)?;
        let tree = if a.raw {
            raw_tree(dev, a.partition)?
        } else {
            Tree::new(crate::vfs::Vfs::open(dev)?, a.partition)?
        };
        let announce = format!(
            "strata: {} mounted read-only at {}",
            a.image.display(),
            mount_point.trim_end_matches('\\')
        );
        mount(
            tree,
            &MountOptions {
                mount_point,
                allow_other: a.allow_other,
                announce,
            },
        )
    }
    #[cfg(not(windows))]
    {
        Err(Error::Invalid(format!(
            "{}: mounting is not available in this build for this system",
            a.image.display()
        )))
    }
}

/// The `--raw` tree: the disk as `disk.img`, or partition N as `pN.img`.
#[cfg(windows)]
fn raw_tree(
    dev: std::sync::Arc<dyn crate::blockdev::BlockDev>,
    partition: Option<u32>,
) -> Result<crate::platform::dokan::tree::Tree> {
    use crate::platform::dokan::tree::Tree;
    let Some(n) = partition else {
        return Ok(Tree::Raw(dev, "disk.img".into()));
    };
    let table = crate::partition::probe(&*dev, 512)?;
    let p = table
        .partitions
        .iter()
        .find(|p| p.number == n)
        .ok_or_else(|| Error::Invalid(format!("there is no partition {n}")))?;
    let part = crate::vfs::PartDev::new(dev.clone(), p.start, p.len)?;
    Ok(Tree::Raw(std::sync::Arc::new(part), format!("p{n}.img")))
}

/// Unmounts what `strata mount` mounted.
pub fn unmount(a: UnmountArgs) -> Result<()> {
    #[cfg(windows)]
    {
        crate::platform::dokan::unmount(&a.mountpoint)
    }
    #[cfg(not(windows))]
    {
        Err(Error::Invalid(format!(
            "{}: mounting is not available in this build for this system",
            a.mountpoint
        )))
    }
}
