//! What `create` reads: the source's data ranges (holes of sparse files left out),
//! narrowed to the blocks the filesystems use unless every sector is asked for.

use crate::blockdev::file::FileDev;
use crate::container::header::Content;
use crate::fs::FsOptions;
use crate::layout::{map_disk, DiskMap};
use crate::ranges::Ranges;

/// The byte ranges to read and what the image will claim to hold.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Sorted, disjoint byte ranges of the source.
    pub ranges: Vec<(u64, u64)>,
    pub content: Content,
    /// The disk map, when used blocks were looked for.
    pub map: Option<DiskMap>,
}

/// Plans the read of `src`: with `clone` every sector (sparse-file holes excepted),
/// otherwise only the used blocks found by [`map_disk`].
pub fn plan(src: &FileDev, clone: bool, fs_opts: &FsOptions) -> Plan {
    let data = Ranges::from_unsorted(src.data_ranges());
    if clone {
        return Plan {
            ranges: data.as_slice().to_vec(),
            content: Content::Clone,
            map: None,
        };
    }
    let map = map_disk(src, src.sector_size(), fs_opts);
    Plan {
        ranges: data.intersect(&map.ranges).as_slice().to_vec(),
        content: Content::UsedBlocks,
        map: Some(map),
    }
}
