//! `strata mount` and `strata unmount`: arguments, and the front-end of this system.

use super::ChainArgs;
use crate::cli::browse::CacheArgs;
use crate::error::Result;
use std::path::PathBuf;

/// Arguments of `strata mount`.
#[derive(Debug, clap::Args)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub struct MountArgs {
    /// The image file (any point of a chain).
    pub image: PathBuf,
    /// An existing directory to show the image's files in.
    pub mountpoint: PathBuf,
    /// Mount only partition N (numbered as `strata ls` shows them) as the root.
    #[arg(long, value_name = "N")]
    pub partition: Option<u32>,
    /// Show the disk and each partition as read-only files (disk.img, p1.img…) instead
    /// of their contents.
    #[arg(long)]
    pub raw: bool,
    /// Stay attached and serve until Ctrl-C or SIGTERM (which unmount).
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Let other users see the files (for non-root users, needs user_allow_other in
    /// /etc/fuse.conf).
    #[arg(long)]
    pub allow_other: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub chain: ChainArgs,
}

/// Arguments of `strata unmount`.
#[derive(Debug, clap::Args)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub struct UnmountArgs {
    /// Where the image is mounted.
    pub mountpoint: PathBuf,
}

/// `strata mount`.
#[cfg(target_os = "linux")]
pub fn mount(a: MountArgs) -> Result<()> {
    crate::fuse::mount(&crate::fuse::MountOptions {
        image: a.image,
        mountpoint: a.mountpoint,
        partition: a.partition,
        raw: a.raw,
        foreground: a.foreground,
        allow_other: a.allow_other,
        cache_bytes: a.cache.bytes(),
        resolve: a.chain.resolve(),
    })
}

/// `strata unmount`.
#[cfg(target_os = "linux")]
pub fn unmount(a: UnmountArgs) -> Result<()> {
    crate::fuse::unmount(&a.mountpoint)
}

#[cfg(not(target_os = "linux"))]
fn unsupported() -> crate::error::Error {
    crate::error::Error::Invalid(
        "mounting images is not supported on this system yet (use strata ls, cat and cp)".into(),
    )
}

/// `strata mount`.
#[cfg(not(target_os = "linux"))]
pub fn mount(a: MountArgs) -> Result<()> {
    let _ = a;
    Err(unsupported())
}

/// `strata unmount`.
#[cfg(not(target_os = "linux"))]
pub fn unmount(a: UnmountArgs) -> Result<()> {
    let _ = a;
    Err(unsupported())
}
