//! OS mount front-ends over [`crate::vfs`]. Their sources live in `platform/` at the top
//! of the repository and are compiled into the strata crate (`#[path]` in `src/lib.rs`):
//! a separate crate depending on strata could not be a dependency of the strata binary.

pub mod dokan;
#[cfg(target_os = "linux")]
pub mod fuse;
