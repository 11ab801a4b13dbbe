//! strata: block-level disk backup images that open like a drive.
//!
//! # From the top
//!
//! ```text
//! cli, platform  strata's commands; the mount front-ends (FUSE, Dokan) in platform/;
//!  │ serve        the web front-end, `strata serve`
//!  └ point        opening a point in time: chain -> partitions -> filesystems, and what a
//!                 mount shows; every front-end opens images here
//!     ├ ops         the operations: create (pipeline), restore, verify, info, consolidate
//!     ├ catalog     a point's entries with content identities; find, history, diff
//!     └ vfs         files inside an image: Vfs of all partitions, paths, the damage scan
//!        └ layout     the partition table as every command reads it; used-block map
//!           └ fs        one folder per filesystem (ntfs, ext, fat, exfat): probe, used
//!              │        ranges, browsing; the FileSystem trait in fs/browse.rs
//!              └ partition  GPT and MBR tables
//!                 └ chain      an image and its parents as one disk: the merged map, its
//!                    │         cache, prefetch
//!                    └ container  the .strata format: header, chunk records, index, trailer
//!                       ├ blockdev  BlockDev: a read-only device read by byte position
//!                       └ cache     the one byte-bounded cache of decoded data: a chain's
//!                                   chunks and its filesystems' decoded units
//! ```
//!
//! Layers depend downwards only. A [`blockdev::BlockDev`] is the one read interface:
//! sources ([`blockdev::file::FileDev`]), chain points ([`chain::Chain`], a full image being
//! a chain of one) and partition windows implement it, so partitions and filesystems sit
//! on a disk and on an image alike.
//!
//! [`Error`] sorts failures by what happened: a damaged image, damaged filesystem
//! metadata (naming the byte offset), a feature strata does not read, the wrong kind of
//! node, a missing name. The CLI's exit code, FUSE's errno and Dokan's NTSTATUS each map
//! the kinds in one function (docs/ARCHITECTURE.md, "Errors").
//!
//! The on-disk format is specified in `docs/FORMAT.md`.

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod atomic_file;
pub mod blockdev;
pub mod cache;
pub mod catalog;
pub mod chain;
pub mod cli;
pub mod container;
pub mod error;
pub mod fs;
pub mod layout;
pub mod le;
pub mod open_files;
pub mod ops;
pub mod partition;
pub mod point;
pub mod progress;
pub mod ranges;
pub mod serve;
pub mod storage;
pub mod threads;
pub mod units;
pub mod vfs;

#[path = "../platform/mod.rs"]
pub mod platform;

pub use error::{Error, Result};
