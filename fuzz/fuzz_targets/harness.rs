//! The body of every fuzz target, one function each. `tests/fuzz_regressions.rs` includes
//! this file too and replays the seeds and every input that once failed through the same
//! functions, so a normal `cargo test` keeps them fixed.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use strata::blockdev::window::MemDev;
use strata::blockdev::BlockDev;
use strata::cache::Cache;
use strata::chain::{Chain, ResolveOptions};
use strata::vfs::{Case, FileSystem, NodeKind, Vfs};

/// Most bytes a target reads from one input: keeps an input that maps a huge disk from
/// turning into a timeout that says nothing.
pub const READ_BUDGET: u64 = 16 << 20;

/// Run once before fuzzing: libfuzzer's panic hook aborts on every panic, also on those
/// strata catches in third-party parsers and reports as damage; those must stay errors.
pub fn init() {
    strata::error::quiet_contained_panics();
}

/// A target's body: one input, checked by not panicking.
pub type Target = fn(&[u8]);

/// Targets by name, for the replay test.
pub const TARGETS: &[(&str, Target)] = &[
    ("container", container),
    ("chain", chain),
    ("partition", partition),
    ("used_ntfs", used_ntfs),
    ("used_ext", used_ext),
    ("used_fat", used_fat),
    ("used_exfat", used_exfat),
    ("vfs_walk", vfs_walk),
    ("vfs_cat", vfs_cat),
    ("catalog", catalog),
];

/// A catalog's uncompressed bytes (docs/FORMAT.md, "Catalog section"): decoded, and when
/// it decodes, every path built and the queries of `find`, `history` and `diff` run on it.
pub fn catalog(data: &[u8]) {
    use strata::catalog::query;
    // A catalog stored as a change: applied over a base of one directory of one file,
    // whatever it gives is then used as a whole catalog is.
    let c = if let Ok(d) = strata::catalog::delta::Delta::decode(data) {
        assert_eq!(
            strata::catalog::delta::Delta::decode(&d.encode()).as_ref(),
            Ok(&d)
        );
        match d.apply(&delta_base()) {
            Ok(c) => c,
            Err(_) => return,
        }
    } else {
        let Ok(c) = strata::catalog::Catalog::decode(data) else {
            return;
        };
        c
    };
    let paths = query::all_paths(&c);
    let point = query::Point {
        image: PathBuf::from("fuzz.strata"),
        created: strata::fs::browse::Time { secs: 0, nanos: 0 },
        catalog: std::sync::Arc::new(c.clone()),
    };
    let pattern = query::Pattern::new("*a*", true).expect("pattern");
    let _ = query::find(&point, &pattern, &query::Filter::default());
    if let Some(f) = paths.last() {
        let stamp = query::Stamp {
            image: point.image.clone(),
            created: point.created,
        };
        let _ = query::history(vec![(stamp, query::at_path(&point, &f.path))], &f.path);
    }
    let mut other = c.clone();
    if let Some(v) = other.volumes.first_mut() {
        v.entries.truncate(v.entries.len() / 2);
    }
    let _ = query::diff(&c, &other, "/");
    let _ = query::diff(&other, &c, "/");
    assert_eq!(
        strata::catalog::Catalog::decode(&c.encode()).as_ref(),
        Ok(&c)
    );
}

/// The base [`catalog`] applies changes over: volume `p1` (ext4) of a root, a directory
/// and a file in it.
fn delta_base() -> strata::catalog::Catalog {
    use strata::catalog::{Catalog, Entry, Volume, ROOT_PARENT};
    use strata::fs::browse::NodeKind;
    let e = |parent: u32, name: &str, kind: NodeKind, ino: u64| {
        let mut e = Entry::bare(parent, name, kind, ino * 10);
        e.ino = Some(ino);
        e
    };
    Catalog {
        block_size: 4096,
        volumes: vec![Volume {
            name: "p1".into(),
            fs: "ext4".into(),
            entries: vec![
                e(ROOT_PARENT, "", NodeKind::Dir, 2),
                e(0, "d", NodeKind::Dir, 11),
                e(1, "f", NodeKind::File, 12),
            ],
        }],
    }
}

/// A whole image file: header, trailer, index checks, then every chunk loaded (as `verify`
/// does), `info`, and every mapped byte read (as `restore` does).
pub fn container(data: &[u8]) {
    let dir = scratch();
    let path = dir.join("image.strata");
    std::fs::write(&path, data).expect("scratch write");
    let _ = strata::ops::verify::verify(&path, 1, false);
    let _ = strata::ops::info::info(&path, &ResolveOptions::default());
    read_chain(&path);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Chain resolution: two image files in one directory, a parent and a child whose
/// references are fuzzed, resolved, verified and read. Input: the parent's length (u32
/// little-endian), the parent, the child.
pub fn chain(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (parent, child) = rest.split_at(n);
    let dir = scratch();
    std::fs::write(dir.join("parent.strata"), parent).expect("scratch write");
    let top = dir.join("child.strata");
    std::fs::write(&top, child).expect("scratch write");
    read_chain(&top);
    let _ = strata::ops::verify::verify_chain(&top, 1, false, &ResolveOptions::default());
    let _ = strata::ops::info::dir_info(&dir, &ResolveOptions::default());
    let _ = std::fs::remove_dir_all(&dir);
}

fn read_chain(top: &std::path::Path) {
    if let Ok(chain) = Chain::open(top, &ResolveOptions::default()) {
        let bs = u64::from(chain.block_size());
        let runs: Vec<_> = chain
            .map()
            .iter()
            .map(|e| (e.disk_block * bs, e.end() * bs))
            .collect();
        read_ranges(&chain, runs.into_iter());
    }
}

/// GPT and MBR (logical partitions included) at both sector sizes, then the used-block
/// map of the whole disk. Every partition found must lie inside the disk.
pub fn partition(data: &[u8]) {
    let dev = MemDev(data.to_vec());
    for ss in [512, 4096] {
        if let Ok(t) = strata::partition::probe(&dev, ss) {
            for p in &t.partitions {
                let end = p.start.checked_add(p.len);
                assert!(
                    end.is_some_and(|e| e <= dev.len()),
                    "partition {p:?} outside the disk"
                );
            }
        }
    }
    let _ = strata::layout::map_disk(&dev, 512, &Default::default());
}

/// The NTFS used-block map ($Bitmap, boot sectors, page files) of a fuzzed volume.
pub fn used_ntfs(data: &[u8]) {
    let dev = MemDev(data.to_vec());
    let _ = strata::fs::probe(&dev);
    let _ = strata::fs::ntfs::used(&dev, &Default::default());
}

/// The ext2/3/4 used-block map (group descriptors and bitmaps) of a fuzzed volume.
pub fn used_ext(data: &[u8]) {
    let dev = MemDev(data.to_vec());
    let _ = strata::fs::probe(&dev);
    let _ = strata::fs::ext::used(&dev);
}

/// The FAT12/16/32 used-block map (the FAT) of a fuzzed volume.
pub fn used_fat(data: &[u8]) {
    let dev = MemDev(data.to_vec());
    let _ = strata::fs::probe(&dev);
    let _ = strata::fs::fat::used(&dev);
}

/// The exFAT used-block map (the allocation bitmap) of a fuzzed volume.
pub fn used_exfat(data: &[u8]) {
    let dev = MemDev(data.to_vec());
    let _ = strata::fs::probe(&dev);
    let _ = strata::fs::exfat::used(&dev);
}

/// The cache a fuzzed disk's filesystems keep decoded units in (no chain under them).
fn cache() -> Arc<Cache> {
    Arc::new(Cache::new(16 << 20, 64 << 10))
}

/// The whole browsing stack over a fuzzed disk: partition table, every filesystem opened,
/// every directory walked, every file and stream read.
pub fn vfs_walk(data: &[u8]) {
    walk(Arc::new(MemDev(data.to_vec())));
}

/// Most bytes [`vfs_cat`] reads from one input (each read twice): a huge sparse file
/// must not turn an input into a timeout.
pub const CAT_BUDGET: u64 = 8 << 20;

/// `cat` of every file and stream of every filesystem on a fuzzed disk, through `Vfs`
/// paths as the CLI resolves them. Each is read twice, front to back in 64 KiB reads and
/// then in odd-sized reads, and the two must agree: bytes that depend on how they are
/// asked for are wrong bytes. A read may fail, but may come up short only at the size the
/// metadata gives, and must give nothing past it.
pub fn vfs_cat(data: &[u8]) {
    let Ok(vfs) = Vfs::open(Arc::new(MemDev(data.to_vec())), 512, &cache()) else {
        return;
    };
    let mut budget = CAT_BUDGET;
    for (i, m) in vfs.mounts().iter().enumerate() {
        let Ok(fs) = vfs.fs(i) else { continue };
        let top = if vfs.is_bare() {
            String::new()
        } else {
            format!("/{}", m.name)
        };
        let mut todo = vec![(top, fs.root())];
        let mut seen = std::collections::HashSet::new();
        let mut entries = 10_000usize;
        while let Some((dir_path, dir)) = todo.pop() {
            if !seen.insert(dir) {
                continue;
            }
            let Ok(list) = fs.read_dir(dir) else { continue };
            for e in list {
                if entries == 0 || budget == 0 {
                    return;
                }
                entries -= 1;
                let path = format!("{dir_path}/{}", e.name);
                // By path, as `strata cat PATH` finds it; a name the walk listed but the
                // path does not reach (escaped or ambiguous names) is read by its node.
                let node = match vfs.resolve(&path) {
                    Ok(strata::vfs::Target::Node { node, .. }) => node,
                    _ => e.node,
                };
                let Ok(meta) = fs.metadata(node) else {
                    continue;
                };
                match meta.kind {
                    NodeKind::Dir => todo.push((path, node)),
                    NodeKind::File => {
                        let mut streams = vec![(String::new(), meta.size)];
                        streams.extend(meta.streams.iter().map(|s| (s.name.clone(), s.size)));
                        for (s, size) in streams {
                            cat_twice(&**fs, node, &s, size, &path, &mut budget);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Reads `stream` of `node` twice (see [`vfs_cat`]) within `budget`, checking that both
/// reads agree with each other and with `size`.
fn cat_twice(
    fs: &dyn FileSystem,
    node: strata::vfs::NodeId,
    stream: &str,
    size: u64,
    path: &str,
    budget: &mut u64,
) {
    let want = size.min(*budget / 2);
    let Some(first) = read_in(fs, node, stream, want, 64 << 10) else {
        return;
    };
    *budget = budget.saturating_sub(2 * first.len() as u64);
    if want == size {
        // Read to the end: exactly the size, then nothing.
        assert_eq!(
            first.len() as u64,
            size,
            "{path}:{stream}: read {} bytes of a {size}-byte stream without an error",
            first.len()
        );
        let mut b = [0u8; 16];
        if let Ok(n) = fs.read_at(node, stream, size, &mut b) {
            assert_eq!(n, 0, "{path}:{stream}: {n} bytes past the end ({size})");
        }
    }
    // Odd-sized reads from an odd offset, then the head on its own.
    let skip = (first.len() as u64).min(1);
    if let Some(second) = read_range(fs, node, stream, skip, first.len() as u64, 4093) {
        assert!(
            second == first[skip as usize..],
            "{path}:{stream}: the bytes differ between two reads"
        );
    }
}

/// The first `len` bytes of a stream, read in `chunk`-byte reads (None: a read failed).
fn read_in(
    fs: &dyn FileSystem,
    node: strata::vfs::NodeId,
    stream: &str,
    len: u64,
    chunk: usize,
) -> Option<Vec<u8>> {
    read_range(fs, node, stream, 0, len, chunk)
}

/// Bytes `from..to` of a stream, read in `chunk`-byte reads; fewer when it ends early
/// (None: a read failed).
fn read_range(
    fs: &dyn FileSystem,
    node: strata::vfs::NodeId,
    stream: &str,
    from: u64,
    to: u64,
    chunk: usize,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity((to - from) as usize);
    let mut buf = vec![0u8; chunk];
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(chunk as u64) as usize;
        let got = fs.read_at(node, stream, pos, &mut buf[..n]).ok()?;
        if got == 0 {
            break;
        }
        out.extend_from_slice(&buf[..got]);
        pos += got as u64;
    }
    Some(out)
}

/// A fresh scratch directory (on tmpfs when there is one); callers remove it.
pub fn scratch() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("strata-fuzz-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Reads the `runs` (disk byte ranges) of `dev` in 1 MiB pieces, up to [`READ_BUDGET`].
pub fn read_ranges(dev: &dyn BlockDev, runs: impl Iterator<Item = (u64, u64)>) {
    let mut left = READ_BUDGET;
    let mut buf = vec![0u8; 1 << 20];
    for (start, end) in runs {
        let mut pos = start;
        while pos < end.min(dev.len()) && left > 0 {
            let n = (end - pos).min(buf.len() as u64).min(left) as usize;
            let _ = dev.read_at(pos, &mut buf[..n]);
            pos += n as u64;
            left -= n as u64;
        }
    }
}

/// Opens every filesystem on `dev`, walks every directory and reads every file, within a
/// budget of entries and bytes. Nodes already seen are not walked again, so a directory
/// cycle ends the walk of that branch instead of looping. Returns how many files were read
/// to their end.
pub fn walk(dev: Arc<dyn BlockDev>) -> usize {
    let Ok(vfs) = Vfs::open(dev, 512, &cache()) else {
        return 0;
    };
    let mut files = 0;
    for (i, _) in vfs.mounts().iter().enumerate() {
        if let Ok(fs) = vfs.fs(i) {
            files += walk_fs(&**fs);
        }
    }
    files
}

fn walk_fs(fs: &dyn FileSystem) -> usize {
    let mut files = 0;
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![fs.root()];
    let mut bytes = READ_BUDGET;
    let mut entries = 10_000usize;
    let mut buf = vec![0u8; 64 << 10];
    while let Some(dir) = todo.pop() {
        if !seen.insert(dir) {
            continue;
        }
        let Ok(list) = fs.read_dir(dir) else { continue };
        for e in list {
            if entries == 0 {
                return files;
            }
            entries -= 1;
            let _ = fs.lookup(dir, &e.name, Case::Exact);
            let _ = fs.lookup(dir, &e.name, Case::Insensitive);
            let Ok(m) = fs.metadata(e.node) else { continue };
            match m.kind {
                NodeKind::Dir => todo.push(e.node),
                NodeKind::Symlink => {
                    let _ = fs.read_link(e.node);
                }
                _ => {
                    let mut streams = vec![String::new()];
                    streams.extend(m.streams.iter().map(|s| s.name.clone()));
                    for s in streams {
                        let mut off = 0u64;
                        while bytes > 0 {
                            match fs.read_at(e.node, &s, off, &mut buf) {
                                Ok(n) if n > 0 => {
                                    off += n as u64;
                                    bytes = bytes.saturating_sub(n as u64);
                                }
                                Ok(_) => {
                                    files += 1;
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    if let Ok(names) = fs.xattr_names(e.node) {
                        for n in names {
                            let _ = fs.xattr(e.node, &n);
                        }
                    }
                }
            }
        }
    }
    files
}
