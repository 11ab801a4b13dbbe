//! The tree a Dokan volume shows, over [`Vfs`]: paths as Windows gives them, looked up
//! case-insensitively, to places (the top directory, a node of a partition's filesystem,
//! or the raw disk file of `--raw`), with their metadata, listings and contents.
//! Portable, so it is tested on every system against the sample disk.

use super::names::{same_name, WinPath};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::point::View;
use crate::vfs::{Case, FileSystem, Metadata, NodeId, NodeKind, Vfs};
use std::sync::Arc;

/// What the volume shows.
pub enum Tree {
    /// Every readable partition as a directory `p1`, `p2`… (or the one filesystem of a
    /// bare device as the root).
    All(Vfs),
    /// One partition's filesystem as the root (`--partition N`).
    Partition(Vfs, usize),
    /// Files holding a device's bytes (`--raw`): the disk and its partitions, or one
    /// partition.
    Raw(Vec<(String, Arc<dyn BlockDev>)>),
}

/// Where a path leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The root of a volume whose root is not a filesystem's (partitions, raw file).
    Top,
    /// A node of mount `mount`'s filesystem.
    Node { mount: usize, node: NodeId },
    /// Raw device file `i`.
    Raw(usize),
}

/// One entry of a listing.
pub struct Entry {
    pub name: String,
    pub place: Place,
    pub meta: Metadata,
}

/// The entry of `dir` named `name`, exactly or else ignoring case (Windows programs change
/// the case of names freely). ext names are stored with case and its lookup is exact: its
/// listing is searched then. Several entries that differ only in case and none exact:
/// [`Error::Ambiguous`], never a silent pick.
pub fn lookup_nocase(fs: &dyn FileSystem, dir: NodeId, name: &str) -> Result<NodeId> {
    match fs.lookup(dir, name, Case::Insensitive) {
        Err(Error::NotFound(m)) => {
            let found: Vec<_> = fs
                .read_dir(dir)?
                .into_iter()
                .filter(|e| same_name(&e.name, name))
                .collect();
            let mut nodes: Vec<NodeId> = found.iter().map(|e| e.node).collect();
            nodes.sort_unstable();
            nodes.dedup();
            match nodes[..] {
                [] => Err(Error::NotFound(m)),
                [one] => Ok(one),
                _ => {
                    let names: Vec<&str> = found.iter().map(|e| e.name.as_str()).collect();
                    Err(Error::Ambiguous(format!(
                        "{name} is ambiguous: {} differ only in case",
                        names.join(", ")
                    )))
                }
            }
        }
        r => r,
    }
}

impl Tree {
    /// The tree of what a mount shows, as [`View`] decided it for every front-end.
    pub fn new(view: View) -> Tree {
        match view {
            View::Files { vfs, single: None } => Tree::All(vfs),
            View::Files {
                vfs,
                single: Some(i),
            } => Tree::Partition(vfs, i),
            View::Raw(files) => Tree::Raw(files),
        }
    }

    fn fs(&self, mount: usize) -> Result<&Arc<dyn FileSystem>> {
        match self {
            Tree::All(v) | Tree::Partition(v, _) => v.fs(mount),
            Tree::Raw(..) => Err(Error::NotFound("no filesystem".into())),
        }
    }

    /// The root directory.
    pub fn root(&self) -> Result<Place> {
        match self {
            Tree::All(v) if v.is_bare() => Ok(Place::Node {
                mount: 0,
                node: v.fs(0)?.root(),
            }),
            Tree::Partition(v, i) => Ok(Place::Node {
                mount: *i,
                node: v.fs(*i)?.root(),
            }),
            _ => Ok(Place::Top),
        }
    }

    /// Resolves the components of a Windows path. `Err(NotFound)` with `parent_found`
    /// telling whether everything but the last component exists (for the right NTSTATUS).
    pub fn resolve(&self, path: &WinPath) -> std::result::Result<Place, (Error, bool)> {
        let mut place = self.root().map_err(|e| (e, false))?;
        let n = path.components.len();
        for (i, name) in path.components.iter().enumerate() {
            let last = i + 1 == n;
            place = self.child(place, name).map_err(|e| (e, last))?;
        }
        Ok(place)
    }

    /// The entry `name` of directory `dir`.
    fn child(&self, dir: Place, name: &str) -> Result<Place> {
        let not_found = || Error::NotFound(format!("{name}: no such file or directory"));
        match (self, dir) {
            (Tree::Raw(files), Place::Top) => files
                .iter()
                .position(|(file, _)| same_name(file, name))
                .map(Place::Raw)
                .ok_or_else(not_found),
            (Tree::All(v), Place::Top) => {
                let mount = v
                    .mounts()
                    .iter()
                    .position(|m| m.fs.is_ok() && same_name(&m.name, name))
                    .ok_or_else(not_found)?;
                Ok(Place::Node {
                    mount,
                    node: v.fs(mount)?.root(),
                })
            }
            (_, Place::Node { mount, node }) => {
                let fs = self.fs(mount)?;
                if fs.metadata(node)?.kind != NodeKind::Dir {
                    return Err(not_found());
                }
                Ok(Place::Node {
                    mount,
                    node: lookup_nocase(&**fs, node, name)?,
                })
            }
            _ => Err(not_found()),
        }
    }

    /// Metadata of a place. The top directory takes the times of the first filesystem's
    /// root; the raw file has the device's size and the image's creation time (as has the
    /// top of a raw mount).
    pub fn metadata(&self, place: Place) -> Result<Metadata> {
        match place {
            Place::Node { mount, node } => self.fs(mount)?.metadata(node),
            Place::Raw(i) => match self {
                Tree::Raw(files) if i < files.len() => Ok(raw_meta(&*files[i].1)),
                _ => Err(Error::NotFound("no raw file".into())),
            },
            Place::Top => {
                let mut m = Metadata::new(NodeKind::Dir, 0);
                if let Tree::All(v) = self {
                    if let Some(root) = (0..v.mounts().len())
                        .find_map(|i| v.fs(i).ok().and_then(|f| f.metadata(f.root()).ok()))
                    {
                        (m.mtime, m.atime, m.crtime) = (root.mtime, root.atime, root.crtime);
                    }
                }
                if let Tree::Raw(files) = self {
                    if let Some((_, dev)) = files.first() {
                        (m.mtime, m.atime, m.crtime) =
                            (dev.created(), dev.created(), dev.created());
                    }
                }
                Ok(m)
            }
        }
    }

    /// The entries of a directory, with their metadata. An entry whose metadata cannot be
    /// read is left out (the listing of the rest still works).
    pub fn list(&self, dir: Place) -> Result<Vec<Entry>> {
        match (self, dir) {
            (Tree::Raw(files), Place::Top) => Ok(files
                .iter()
                .enumerate()
                .map(|(i, (name, dev))| Entry {
                    name: name.clone(),
                    place: Place::Raw(i),
                    meta: raw_meta(&**dev),
                })
                .collect()),
            (Tree::All(v), Place::Top) => Ok(v
                .mounts()
                .iter()
                .enumerate()
                .filter_map(|(mount, m)| {
                    let fs = m.fs.as_ref().ok()?;
                    let node = fs.root();
                    Some(Entry {
                        name: m.name.clone(),
                        place: Place::Node { mount, node },
                        meta: fs.metadata(node).ok()?,
                    })
                })
                .collect()),
            (_, Place::Node { mount, node }) => {
                let fs = self.fs(mount)?;
                Ok(fs
                    .read_dir(node)?
                    .into_iter()
                    .filter_map(|e| {
                        Some(Entry {
                            meta: fs.metadata(e.node).ok()?,
                            name: e.name,
                            place: Place::Node {
                                mount,
                                node: e.node,
                            },
                        })
                    })
                    .collect())
            }
            _ => Err(Error::NotADirectory("not a directory".into())),
        }
    }

    /// Reads `stream` of a place at `offset`; 0 bytes at or past the end. A symbolic
    /// link's contents are its target (Windows cannot follow a link of another system).
    pub fn read(&self, place: Place, stream: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match place {
            Place::Node { mount, node } => {
                let fs = self.fs(mount)?;
                if stream.is_empty() && fs.metadata(node)?.kind == NodeKind::Symlink {
                    let target = fs.read_link(node)?.into_bytes();
                    let from = (offset.min(target.len() as u64)) as usize;
                    let n = buf.len().min(target.len() - from);
                    buf[..n].copy_from_slice(&target[from..from + n]);
                    return Ok(n);
                }
                fs.read_at(node, stream, offset, buf)
            }
            Place::Raw(i) => match self {
                Tree::Raw(files) if stream.is_empty() && i < files.len() => {
                    let dev = &files[i].1;
                    let len = dev.len();
                    if offset >= len {
                        return Ok(0);
                    }
                    let n = (buf.len() as u64).min(len - offset) as usize;
                    dev.read_at(offset, &mut buf[..n])?;
                    Ok(n)
                }
                _ => Err(Error::NotFound(format!("no stream {stream}"))),
            },
            Place::Top => Err(Error::IsADirectory("a directory has no contents".into())),
        }
    }

    /// The volume label: the partition's label for one partition, else `strata`.
    pub fn label(&self) -> String {
        let label = match self {
            Tree::Partition(v, i) => v.mounts()[*i].label.trim(),
            Tree::All(v) if v.is_bare() => v.mounts()[0].label.trim(),
            _ => "",
        };
        if label.is_empty() {
            "strata".to_string()
        } else {
            label.chars().take(32).collect()
        }
    }

    /// Total size in bytes shown as the volume's capacity.
    pub fn capacity(&self) -> u64 {
        match self {
            Tree::All(v) => v.mounts().iter().map(|m| m.size).sum(),
            Tree::Partition(v, i) => v.mounts()[*i].size,
            Tree::Raw(files) => files.first().map_or(0, |(_, dev)| dev.len()),
        }
    }
}

/// A raw file: the device's size, dated when the image was made (the disk as it was then).
fn raw_meta(dev: &dyn BlockDev) -> Metadata {
    let mut m = Metadata::new(NodeKind::File, dev.len());
    (m.mtime, m.atime, m.crtime) = (dev.created(), dev.created(), dev.created());
    m
}

#[cfg(test)]
mod tests {
    use super::super::names::{parse_path, times};
    use super::*;
    use sha2::{Digest, Sha256};

    /// The committed sample disk in memory.
    struct Mem(Vec<u8>);

    impl BlockDev for Mem {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
            let at = offset as usize;
            buf.copy_from_slice(&self.0[at..at + buf.len()]);
            Ok(())
        }
    }

    /// A directory (node 1) of an exact-matching filesystem (as ext is) holding `names`,
    /// each its own node, except `same` and `SAME`, one node under two names.
    struct Names(Vec<(&'static str, NodeId)>);

    impl FileSystem for Names {
        fn kind(&self) -> crate::fs::FsKind {
            crate::fs::FsKind::Ext4
        }
        fn root(&self) -> NodeId {
            1
        }
        fn lookup(&self, _: NodeId, name: &str, _: Case) -> Result<NodeId> {
            self.0
                .iter()
                .find(|e| e.0 == name)
                .map(|e| e.1)
                .ok_or_else(|| Error::NotFound(name.into()))
        }
        fn read_dir(&self, _: NodeId) -> Result<Vec<crate::vfs::DirEntry>> {
            Ok(self
                .0
                .iter()
                .map(|e| crate::vfs::DirEntry {
                    name: e.0.into(),
                    node: e.1,
                    kind: NodeKind::File,
                })
                .collect())
        }
        fn metadata(&self, _: NodeId) -> Result<Metadata> {
            Ok(Metadata::new(NodeKind::File, 0))
        }
        fn read_at(&self, _: NodeId, _: &str, _: u64, _: &mut [u8]) -> Result<usize> {
            Ok(0)
        }
        fn read_link(&self, _: NodeId) -> Result<String> {
            Err(Error::Invalid("no link".into()))
        }
    }

    #[test]
    fn names_differing_only_in_case_are_never_picked_silently() {
        let fs = Names(vec![
            ("nan.3.gz", 2),
            ("NAN.3.gz", 3),
            ("Only", 4),
            ("same", 5),
            ("SAME", 5),
        ]);
        assert_eq!(lookup_nocase(&fs, 1, "nan.3.gz").unwrap(), 2);
        assert_eq!(lookup_nocase(&fs, 1, "NAN.3.gz").unwrap(), 3);
        assert_eq!(lookup_nocase(&fs, 1, "ONLY").unwrap(), 4);
        assert_eq!(lookup_nocase(&fs, 1, "Same").unwrap(), 5);
        let e = lookup_nocase(&fs, 1, "Nan.3.GZ").unwrap_err();
        assert!(
            matches!(&e, Error::Ambiguous(m) if m.contains("nan.3.gz") && m.contains("NAN.3.gz")),
            "{e}"
        );
        assert_eq!(
            super::super::names::status_of(&e),
            super::super::names::status::OBJECT_NAME_COLLISION
        );
        assert!(matches!(
            lookup_nocase(&fs, 1, "none"),
            Err(Error::NotFound(_))
        ));
    }

    /// The cache the sample's filesystems keep decoded units in (no chain under them).
    fn cache() -> Arc<crate::cache::Cache> {
        Arc::new(crate::cache::Cache::new(16 << 20, 64 << 10))
    }

    fn sample() -> Arc<dyn BlockDev> {
        let zst = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/sample/sample-disk.img.zst");
        let raw = zstd::stream::decode_all(std::fs::File::open(zst).unwrap()).unwrap();
        Arc::new(Mem(raw))
    }

    fn place(tree: &Tree, path: &str) -> Place {
        tree.resolve(&parse_path(path).unwrap())
            .unwrap_or_else(|(e, _)| panic!("{path}: {e}"))
    }

    fn contents(tree: &Tree, p: Place, stream: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 7000]; // not a multiple of anything
        loop {
            let n = tree.read(p, stream, out.len() as u64, &mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn sha(data: &[u8]) -> String {
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// What the volume answers for a directory's contents and a file's listing, on FAT,
    /// NTFS and ext: FILE_IS_A_DIRECTORY and NOT_A_DIRECTORY (both were ACCESS_DENIED).
    #[test]
    fn wrong_kinds_of_node_have_their_own_status() {
        use super::super::names::{status, status_of};
        let tree =
            Tree::new(View::files(Vfs::open(sample(), 512, &cache()).unwrap(), None).unwrap());
        let status_of_read = |p: Place| {
            status_of(
                &tree
                    .read(p, "", 0, &mut [0u8; 16])
                    .expect_err("a directory"),
            )
        };
        assert_eq!(status_of_read(Place::Top), status::FILE_IS_A_DIRECTORY);
        for (dir, file) in [
            ("\\p1\\Dokumente", "\\p1\\Dokumente\\final\\Résumé.txt"),
            ("\\p2\\文書", "\\p2\\文書\\résumé.json"),
            ("\\p3\\music", "\\p3\\music\\2019\\résumé.txt"),
        ] {
            assert_eq!(
                status_of_read(place(&tree, dir)),
                status::FILE_IS_A_DIRECTORY,
                "{dir}"
            );
            let Err(e) = tree.list(place(&tree, file)) else {
                panic!("{file}: listed")
            };
            assert_eq!(status_of(&e), status::NOT_A_DIRECTORY, "{file}: {e}");
        }
    }

    #[test]
    fn partitions_names_and_contents_case_insensitively() {
        let tree =
            Tree::new(View::files(Vfs::open(sample(), 512, &cache()).unwrap(), None).unwrap());
        assert_eq!(tree.root().unwrap(), Place::Top);
        let top: Vec<String> = tree
            .list(Place::Top)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(top, ["p1", "p2", "p3"]);
        assert_eq!(tree.metadata(Place::Top).unwrap().kind, NodeKind::Dir);

        // FAT, NTFS and ext (stored with case) all answer to any case, Unicode included.
        for (path, size, want) in [
            (
                "\\P1\\dokumente\\FINAL\\rÉsumÉ.TXT",
                15179,
                "209a6473754ba761d378920fb378de421f29134ea6521f01a0fdec5b172f420d",
            ),
            (
                "\\p2\\文書\\RÉSUMÉ.JSON",
                37786,
                "8f7d991ae86deaa3c9be9c5eea7cc93ea7c3a01160e14b9b4915023f7ca574e9",
            ),
            (
                "\\p3\\music\\2019\\résumé.txt",
                4096,
                "24eef3044349c1e675a721fd7c181d4c930643e5a78a6ad8b0e046da488cf643",
            ),
        ] {
            let p = place(&tree, path);
            let m = tree.metadata(p).unwrap();
            assert_eq!((m.kind, m.size), (NodeKind::File, size), "{path}");
            assert_eq!(sha(&contents(&tree, p, "")), want, "{path}");
            let (c, a, w) = times(&m);
            assert!(c > 0 && a > 0 && w > 0, "{path}: times {c} {a} {w}");
        }

        // A symbolic link shows its target as contents (the manifest's sha is of it).
        let link = place(&tree, "\\p3\\SRC\\raw\\LINK-0");
        let m = tree.metadata(link).unwrap();
        assert_eq!(m.kind, NodeKind::Symlink);
        let target = contents(&tree, link, "");
        assert_eq!(target.len() as u64, m.size);
        assert_eq!(
            sha(&target),
            "eb0a549a589c8269ad7dc39b46e5ac63f0a6a6c214e39ad189ae4dc153ca1d2b"
        );

        // Listings carry metadata; a directory's entries resolve to what the listing says.
        let dir = place(&tree, "\\p1\\Dokumente\\final");
        let entries = tree.list(dir).unwrap();
        let resume = entries.iter().find(|e| e.name == "Résumé.txt").unwrap();
        assert_eq!(resume.meta.size, 15179);
        assert_eq!(
            resume.place,
            place(&tree, "\\p1\\Dokumente\\final\\Résumé.txt")
        );

        // Missing names say whether their directory exists.
        let miss = |p: &str| tree.resolve(&parse_path(p).unwrap()).unwrap_err();
        assert!(matches!(miss("\\p1\\nope"), (Error::NotFound(_), true)));
        assert!(matches!(
            miss("\\p1\\nope\\x.txt"),
            (Error::NotFound(_), false)
        ));
        assert!(matches!(miss("\\p9"), (Error::NotFound(_), true)));
        // A file is not a directory to walk through.
        assert!(matches!(
            miss("\\p2\\README.txt\\x"),
            (Error::NotFound(_), true)
        ));
    }

    /// What the tree of `dev` shows for `--partition`, `--raw` (as `strata mount` decides
    /// it for FUSE and Dokan alike), or why it refuses.
    fn tree(dev: &Arc<dyn BlockDev>, partition: Option<u32>, raw: bool) -> Result<Tree> {
        let view = if raw {
            View::raw(dev.clone(), 512, partition)?
        } else {
            View::files(Vfs::open(dev.clone(), 512, &cache())?, partition)?
        };
        Ok(Tree::new(view))
    }

    fn top_names(tree: &Tree) -> Vec<String> {
        tree.list(Place::Top)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    #[test]
    fn one_partition_or_the_raw_disk_as_the_root() {
        let dev = sample();
        let tree = tree(&dev, Some(2), false).unwrap();
        let readme = place(&tree, "\\readme.TXT");
        assert_eq!(
            sha(&contents(&tree, readme, "")),
            "b0240e09dd30b5a24bfbc33ec397574dc1d6bb9dd8d18500b0f10315a2f21259"
        );
        assert_eq!(tree.capacity(), 25_165_824);
        let e = tree_err(&dev, Some(7), false);
        assert!(e.contains("no partition 7"), "{e}");

        // --raw: the disk and each partition as files, the same bytes as the device's.
        let raw = self::tree(&dev, None, true).unwrap();
        assert_eq!(top_names(&raw), ["disk.img", "p1.img", "p2.img", "p3.img"]);
        let p = place(&raw, "\\DISK.IMG");
        assert_eq!(p, Place::Raw(0));
        let mut head = vec![0u8; 1000];
        assert_eq!(raw.read(p, "", 511, &mut head).unwrap(), 1000);
        let mut want = vec![0u8; 1000];
        dev.read_at(511, &mut want).unwrap();
        assert_eq!(head, want);
        let mut tail = [0u8; 64];
        assert_eq!(raw.read(p, "", dev.len() - 10, &mut tail).unwrap(), 10);
        assert_eq!(raw.read(p, "", dev.len(), &mut tail).unwrap(), 0);
        assert_eq!(raw.label(), "strata");
        let table = crate::partition::probe(&*dev, 512).unwrap();
        let p2 = &table.partitions[1];
        let img = place(&raw, "\\p2.IMG");
        assert_eq!(raw.metadata(img).unwrap().size, p2.len);
        assert_eq!(raw.read(img, "", 0, &mut head).unwrap(), 1000);
        dev.read_at(p2.start, &mut want).unwrap();
        assert_eq!(head, want);

        // --raw --partition 2: that partition alone.
        let one = self::tree(&dev, Some(2), true).unwrap();
        assert_eq!(top_names(&one), ["p2.img"]);
        assert_eq!(one.capacity(), p2.len);
        let e = tree_err(&dev, Some(7), true);
        assert!(e.contains("no partition 7"), "{e}");
    }

    fn tree_err(dev: &Arc<dyn BlockDev>, partition: Option<u32>, raw: bool) -> String {
        match tree(dev, partition, raw) {
            Ok(_) => panic!("{partition:?} raw={raw}: accepted"),
            Err(e) => e.to_string(),
        }
    }

    /// A bare filesystem is the root of its mount and has no partition numbers: asking
    /// for partition 1 of it is refused, with and without --raw (it once showed the
    /// filesystem under Dokan and was refused under FUSE).
    #[test]
    fn a_bare_filesystem_has_no_partition_1() {
        let disk = sample();
        let table = crate::partition::probe(&*disk, 512).unwrap();
        let p2 = &table.partitions[1];
        let mut bytes = vec![0u8; p2.len as usize];
        disk.read_at(p2.start, &mut bytes).unwrap();
        let bare: Arc<dyn BlockDev> = Arc::new(Mem(bytes));

        let whole = tree(&bare, None, false).unwrap();
        let readme = place(&whole, "\\README.txt");
        assert_eq!(
            sha(&contents(&whole, readme, "")),
            "b0240e09dd30b5a24bfbc33ec397574dc1d6bb9dd8d18500b0f10315a2f21259"
        );
        for raw in [false, true] {
            let e = tree_err(&bare, Some(1), raw);
            assert!(
                e.contains("no partition 1") && e.contains("without a partition table"),
                "{e}"
            );
        }
        let raw = tree(&bare, None, true).unwrap();
        assert_eq!(top_names(&raw), ["disk.img"]);
    }
}
