//! What `create` reads: the source's data ranges (holes of sparse files left out),
//! narrowed to the blocks the filesystems use unless every sector is asked for.

use crate::blockdev::file::FileDev;
use crate::blockdev::window::Window;
use crate::blockdev::BlockDev;
use crate::container::header::Content;
use crate::fs::FsOptions;
use crate::layout::{map_disk, DiskMap, Imaging};
use crate::ranges::Ranges;
use std::sync::Arc;

/// The byte ranges to read and what the image will claim to hold.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Sorted, disjoint byte ranges of the source.
    pub ranges: Vec<(u64, u64)>,
    pub content: Content,
    /// The disk map, when used blocks were looked for.
    pub map: Option<DiskMap>,
    /// Byte ranges holding filesystem metadata (directories, inode tables): stored in
    /// chunks of their own. Empty with `clone` or where not known.
    pub meta: Ranges,
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
            meta: Ranges::new(),
        };
    }
    let map = map_disk(src, src.sector_size(), fs_opts);
    Plan {
        ranges: data.intersect(&map.ranges).as_slice().to_vec(),
        content: Content::UsedBlocks,
        meta: metadata(src, &map),
        map: Some(map),
    }
}

/// The metadata ranges (absolute) of the filesystems imaged by their used blocks. Only
/// where blocks are placed depends on this, not which are stored: anything that fails
/// here leaves the metadata among the file data, as every block was before.
fn metadata(src: &FileDev, map: &DiskMap) -> Ranges {
    // The filesystem readers keep their device (an `Arc`): a second handle on the source.
    let Ok(mut dev) = FileDev::open(src.path()) else {
        return Ranges::new();
    };
    dev.set_sector_size(src.sector_size());
    let dev: Arc<dyn BlockDev> = Arc::new(dev);
    let mut out = Ranges::new();
    for p in &map.partitions {
        if p.imaging != Imaging::UsedBlocks {
            continue;
        }
        let Ok(win) = Window::new(dev.clone(), p.start, p.len) else {
            continue;
        };
        let Ok(Some(probe)) = crate::fs::probe(&win) else {
            continue;
        };
        // A parser failure here must not stop the backup: the blocks are imaged anyway.
        let found =
            crate::error::contain_panics(probe.kind.name(), || crate::fs::metadata(win, &probe));
        if let Ok(r) = found {
            out = out.union(&r.clipped(p.len).shifted(p.start));
        }
    }
    out
}
