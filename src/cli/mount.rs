//! `strata mount` and `strata unmount`: the arguments, and the hand-over to the mount
//! front-end of this system (FUSE on Linux in `platform/fuse`, Dokan on Windows in
//! `platform/dokan`).

use super::ChainArgs;
use crate::cli::browse::CacheArgs;
#[cfg(not(target_os = "linux"))]
use crate::error::Error;
use crate::error::Result;
use std::path::PathBuf;

/// Arguments of `strata mount`.
#[derive(Debug, clap::Args)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub struct MountArgs {
    /// The image file (any point of a chain).
    pub image: PathBuf,
    /// Where to show it: an existing directory (Linux); a free drive letter (`X:`) or an
    /// empty folder (Windows).
    pub mountpoint: PathBuf,
    /// Mount only partition N (numbered as `strata ls` shows them) as the root.
    #[arg(long, value_name = "N")]
    pub partition: Option<u32>,
    /// Show the disk and its partitions as read-only files (disk.img, p1.img…) instead
    /// of their contents.
    #[arg(long)]
    pub raw: bool,
    /// Stay attached and serve until Ctrl-C or SIGTERM, which unmount (Windows always
    /// does).
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Let other users see the files (Linux, for non-root users: needs user_allow_other in
    /// /etc/fuse.conf; Windows: every user session).
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
    /// Where the image is mounted (directory, or drive letter on Windows).
    pub mountpoint: PathBuf,
}

/// `strata mount`.
#[cfg(target_os = "linux")]
pub fn mount(a: MountArgs) -> Result<()> {
    use crate::platform::fuse;
    fuse::mount(&fuse::MountOptions {
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
    crate::platform::fuse::unmount(&a.mountpoint)
}

/// `strata mount`: serves the volume until it is unmounted.
#[cfg(windows)]
pub fn mount(a: MountArgs) -> Result<()> {
    use crate::platform::dokan::{check_installed, mount, names, tree::Tree, MountOptions};
    let mount_point =
        names::mount_point(&a.mountpoint.to_string_lossy()).map_err(Error::Invalid)?;
    check_installed()?;
    let (view, chain) = crate::point::open_view(
        &a.image,
        &a.chain.resolve(),
        a.cache.bytes(),
        a.partition,
        a.raw,
    )?;
    chain.enable_prefetch();
    let tree = Tree::new(view);
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

/// `strata unmount`.
#[cfg(windows)]
pub fn unmount(a: UnmountArgs) -> Result<()> {
    crate::platform::dokan::unmount(&a.mountpoint.to_string_lossy())
}

#[cfg(not(any(target_os = "linux", windows)))]
fn unsupported(what: &std::path::Path) -> Error {
    Error::Invalid(format!(
        "{}: mounting is not available on this system (use strata ls, cat and cp)",
        what.display()
    ))
}

/// `strata mount`.
#[cfg(not(any(target_os = "linux", windows)))]
pub fn mount(a: MountArgs) -> Result<()> {
    Err(unsupported(&a.image))
}

/// `strata unmount`.
#[cfg(not(any(target_os = "linux", windows)))]
pub fn unmount(a: UnmountArgs) -> Result<()> {
    Err(unsupported(&a.mountpoint))
}
