//! Dokan front-end (Windows): `strata mount IMAGE X:` shows a point in time of an image as
//! a read-only drive or folder, over the same filesystem layer as `ls`, `cat` and `cp`
//! ([`crate::vfs`]).
//!
//! - [`names`]: Windows paths, `file:stream` names, attributes, FILETIMEs, NTSTATUS
//!   values and the refusal of writes: pure functions, tested on every system.
//! - [`tree`]: what the volume shows (partitions as `p1`, `p2`…, one partition, or the
//!   raw disk as one file), with case-insensitive lookup: portable, tested on the sample
//!   disk.
//! - `ffi` and `serve` (Windows only): dokan2.dll bound at run time, and the callbacks.
//!
//! This source lives under `platform/` but is compiled into the strata crate
//! (`src/lib.rs`, `#[path]`): a separate crate that depends on strata could not be a
//! dependency of the strata binary.

pub mod names;
pub mod tree;

#[cfg(windows)]
mod ffi;
#[cfg(windows)]
mod serve;

#[cfg(windows)]
pub use serve::{check_installed, mount, unmount, MountOptions};
