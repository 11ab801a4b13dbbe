//! strata: block-level disk backup images that open like a drive.
//!
//! # From the top
//!
//! ```text
//! platform       mount front-ends (Dokan on Windows), sources in platform/
//! cli            strata create / info / verify / restore / demo / ls / cat / cp / mount
//!  ├ vfs         files inside an image: one FileSystem interface, Vfs of all partitions
//!  └ ops         the operations: create (pipeline), restore, verify, info
//!     └ layout     used-block map of a disk: table + filesystems -> ranges to image
//!        └ fs        filesystems (NTFS, ext2/3/4, FAT, exFAT, swap): probe, used ranges
//!           └ partition  GPT and MBR tables
//!              └ container  the .strata format: header, chunk records, index, trailer
//!                 └ blockdev  BlockDev: a read-only device read by byte position; Window
//! ```
//!
//! Layers depend downwards only. A [`blockdev::BlockDev`] is the one read interface:
//! sources ([`blockdev::file::FileDev`]) and images ([`container::reader::Image`]) both
//! implement it, so partitions and filesystems can later sit on either.
//!
//! The on-disk format is specified in `docs/FORMAT.md`.

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod atomic_file;
pub mod blockdev;
pub mod chain;
pub mod cli;
pub mod container;
pub mod error;
pub mod fs;
pub mod layout;
pub mod le;
pub mod ops;
pub mod partition;
pub mod progress;
pub mod ranges;
pub mod units;
pub mod vfs;

#[path = "../platform/mod.rs"]
pub mod platform;

pub use error::{Error, Result};
