//! The points of a chain or of a directory, with their catalogs, and the questions asked
//! of them: which entries match a pattern ([`find`]), the versions of one path
//! ([`history`]), and what changed between two points ([`diff`]).
//!
//! An image without a usable catalog (made before catalogs, with `--no-catalog`, or with
//! a damaged one) is walked instead, which reads its filesystems and, for the content
//! identities, its files' partial blocks: slower, with the same answers.

use super::build::Builder;
use super::{Catalog, ContentId, Entry, Volume};
use crate::chain::{resolve, Chain, ResolveOptions};
use crate::container::reader::Image;
use crate::error::{Error, Result};
use crate::fs::browse::{NodeKind, Time};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One chain point: an image file and its catalog.
pub struct Point {
    pub image: PathBuf,
    /// When the image was made.
    pub created: Time,
    /// Shared with the catalogs kept for the points that follow ([`super::Recent`]).
    pub catalog: Arc<Catalog>,
}

/// What happened while points were opened, for the user: each said once.
#[derive(Default)]
pub struct Notes {
    /// Images that were walked because they have no catalog.
    pub walked: Vec<PathBuf>,
    /// Warnings (damaged catalogs, images that could not be opened).
    pub warnings: Vec<String>,
}

/// The images `arg` names: every image in it when it is a directory, else the image and
/// its ancestors, oldest first.
pub fn images(arg: &Path, opts: &ResolveOptions) -> Result<Vec<PathBuf>> {
    if crate::storage::is_dir(arg) {
        let v = crate::storage::files_in(arg, crate::container::EXTENSION)?;
        if v.is_empty() {
            return Err(Error::NotFound(format!(
                "{}: no .strata images in this directory",
                arg.display()
            )));
        }
        return Ok(v);
    }
    Ok(resolve::resolve(arg, opts)?
        .iter()
        .map(|i| i.path().to_path_buf())
        .collect())
}

/// Which point: an image file and when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub image: PathBuf,
    pub created: Time,
}

/// Opens each point of `paths` and hands it to `f`, on one thread per core, keeping only
/// what `f` returns: a few catalogs per thread are in memory at a time, however many
/// points. Returns the answers oldest point first. With `skip_bad`, an image that cannot
/// be opened is noted and left out (a directory may hold broken images); otherwise it
/// fails.
///
/// A catalog stored as a change is rebuilt from its parent's: the points are taken in
/// runs that each start at a catalog stored whole (or at a point whose parent is not among
/// them) and go on through the points whose catalogs change the one before, and each run
/// goes to one thread, so that every catalog is rebuilt once.
pub fn map_points<T: Send>(
    paths: &[PathBuf],
    opts: &ResolveOptions,
    skip_bad: bool,
    notes: &mut Notes,
    f: impl Fn(&Point) -> T + Sync,
) -> Result<Vec<(Stamp, T)>> {
    let recent = super::Recent::default();
    let images: Vec<Result<Image>> = crate::threads::map_parts(paths, |part| {
        part.iter().map(|p| Image::open(p)).collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    let mut runs = runs_of_changes(images);
    // Longest first, so that the last run to finish is a short one.
    runs.sort_by_key(|r| std::cmp::Reverse(r.len()));
    let queue = std::sync::Mutex::new(runs.into_iter());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (recent, queue, f) = (&recent, &queue, &f);
    let mut opened: Vec<(usize, OpenedPoint<T>)> = std::thread::scope(|s| {
        crate::threads::join_all(
            (0..threads)
                .map(|_| {
                    s.spawn(move || {
                        let mut done = Vec::new();
                        loop {
                            let next = queue
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .next();
                            let Some(run) = next else { break };
                            for (i, image) in run {
                                let mut n = Notes::default();
                                let r = image
                                    .and_then(|image| {
                                        open_point_with(
                                            &paths[i],
                                            image,
                                            opts,
                                            &mut n,
                                            Some(recent),
                                        )
                                    })
                                    .map(|pt| {
                                        let stamp = Stamp {
                                            image: pt.image.clone(),
                                            created: pt.created,
                                        };
                                        (stamp, f(&pt))
                                    });
                                done.push((i, (r, n)));
                            }
                        }
                        done
                    })
                })
                .collect(),
        )
    })
    .into_iter()
    .flatten()
    .collect();
    // Notes and errors come out in the order of `paths`, as a serial run's would.
    opened.sort_by_key(|(i, _)| *i);
    let mut out = Vec::new();
    for (_, (r, mut n)) in opened {
        notes.walked.append(&mut n.walked);
        notes.warnings.append(&mut n.warnings);
        match r {
            Ok(x) => out.push(x),
            Err(e) if skip_bad && !matches!(e, Error::Interrupted) => {
                notes.warnings.push(format!("{e}; left out"));
            }
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| (a.0.created, &a.0.image).cmp(&(b.0.created, &b.0.image)));
    Ok(out)
}

/// A point opened by [`map_points`] and what `f` made of it, with its notes.
type OpenedPoint<T> = (Result<(Stamp, T)>, Notes);

/// `images` (by their place in the list) in runs: each run starts at an image whose
/// catalog is stored whole, has none, or changes the catalog of an image that is not the
/// last of a run so far, and goes on through images whose catalogs change the one before.
/// An image that could not be opened is a run of its own.
fn runs_of_changes(images: Vec<Result<Image>>) -> Vec<Vec<(usize, Result<Image>)>> {
    // Oldest first: a parent was made before its children.
    let mut order: Vec<(usize, Result<Image>)> = images.into_iter().enumerate().collect();
    order.sort_by_key(|(i, image)| {
        let created = image.as_ref().ok().map(|im| {
            let h = im.header();
            (h.created_unix, h.created_nanos)
        });
        (created, *i)
    });
    let mut runs: Vec<Vec<(usize, Result<Image>)>> = Vec::new();
    // The run each image ends, by image id.
    let mut ends: HashMap<[u8; 16], usize> = HashMap::new();
    for (i, image) in order {
        let (id, joins) = match &image {
            Ok(im) => {
                let h = im.header();
                let parent = *h.parent_uuid.as_bytes();
                let joins = crate::container::catalog::is_change(im)
                    .then(|| ends.remove(&parent))
                    .flatten();
                (Some(*h.image_uuid.as_bytes()), joins)
            }
            Err(_) => (None, None),
        };
        let run = match joins {
            Some(r) => r,
            None => {
                runs.push(Vec::new());
                runs.len() - 1
            }
        };
        runs[run].push((i, image));
        if let Some(id) = id {
            ends.insert(id, run);
        }
    }
    runs
}

/// Opens one point: its catalog, or a walk of its filesystems.
pub fn open_point(path: &Path, opts: &ResolveOptions, notes: &mut Notes) -> Result<Point> {
    open_point_with(path, Image::open(path)?, opts, notes, None)
}

/// [`open_point`], with whole catalogs of points opened before at hand in `recent`: a
/// catalog stored as a change to its parent's is applied to the parent's.
fn open_point_with(
    path: &Path,
    image: Image,
    opts: &ResolveOptions,
    notes: &mut Notes,
    recent: Option<&super::Recent>,
) -> Result<Point> {
    let h = image.header();
    let created = Time {
        secs: h.created_unix,
        nanos: h.created_nanos,
    };
    let stored = match super::stored(&image)? {
        Ok(Some(super::Stored::Whole(c))) => Ok(Some(Arc::new(c))),
        Ok(Some(super::Stored::Delta(d))) => {
            let at_hand = recent
                .filter(|_| *h.parent_uuid.as_bytes() == d.base)
                .and_then(|r| r.get(&d.base));
            match at_hand {
                // The parent's catalog was just rebuilt (points of a chain come in order):
                // its change is applied without opening the chain again.
                Some(base) => super::applied(d, &base, *h.image_uuid.as_bytes(), recent).map(Some),
                None => {
                    drop(image);
                    let layers = resolve::resolve(path, opts)?;
                    super::resolved(&layers, recent)?.map(|c| c.map(|(c, _)| c))
                }
            }
        }
        Ok(None) => Ok(None),
        Err(why) => Err(why),
    };
    let catalog = match stored {
        Ok(Some(c)) => c,
        Ok(None) => {
            notes.walked.push(path.to_path_buf());
            Arc::new(walk(path, opts)?)
        }
        Err(why) => {
            notes.warnings.push(format!(
                "{}: the catalog is damaged ({why}); its filesystems are walked instead",
                path.display()
            ));
            Arc::new(walk(path, opts)?)
        }
    };
    Ok(Point {
        image: path.to_path_buf(),
        created,
        catalog,
    })
}

/// The catalog of the point `path` ends, by walking it.
fn walk(path: &Path, opts: &ResolveOptions) -> Result<Catalog> {
    let chain = Arc::new(Chain::open(path, opts)?);
    Builder::new(chain, None).build()
}

/// An entry and its path.
pub struct Found<'a> {
    pub path: String,
    pub entry: &'a Entry,
}

/// Every path of a point, with its entry.
pub fn all_paths(c: &Catalog) -> Vec<Found<'_>> {
    c.volumes
        .iter()
        .flat_map(|v: &Volume| {
            v.paths()
                .into_iter()
                .zip(&v.entries)
                .map(|(path, entry)| Found { path, entry })
        })
        .collect()
}

/// What `find` keeps besides the pattern.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kind: Option<NodeKind>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    /// Modified at or after.
    pub newer: Option<i64>,
    /// Modified before.
    pub older: Option<i64>,
}

/// A compiled `find` pattern: a glob over the name, or over the whole path when it holds
/// a `/`.
pub struct Pattern {
    glob: globset::GlobMatcher,
    whole_path: bool,
    /// Names are lowered before matching (the pattern was): globset folds ASCII only.
    fold: bool,
}

impl Pattern {
    /// Compiles `pattern`; `ignore_case` as `find -iname`.
    pub fn new(pattern: &str, ignore_case: bool) -> Result<Pattern> {
        let whole_path = pattern.contains('/');
        let lowered = pattern.to_lowercase();
        let glob = globset::GlobBuilder::new(if ignore_case { &lowered } else { pattern })
            .literal_separator(whole_path)
            .backslash_escape(true)
            .build()
            .map_err(|e| Error::Invalid(format!("pattern {pattern:?}: {e}")))?;
        Ok(Pattern {
            glob: glob.compile_matcher(),
            whole_path,
            fold: ignore_case,
        })
    }

    fn matches(&self, path: &str, name: &str) -> bool {
        let subject = if self.whole_path { path } else { name };
        if self.fold {
            self.glob.is_match(subject.to_lowercase())
        } else {
            self.glob.is_match(subject)
        }
    }
}

/// The entries of `point` that match (the roots of filesystems are never listed).
pub fn find<'a>(point: &'a Point, pattern: &Pattern, filter: &Filter) -> Vec<Found<'a>> {
    let keep = |e: &Entry| {
        let mtime = e.mtime.map(|t| t.secs);
        e.parent != super::ROOT_PARENT
            && filter.kind.is_none_or(|k| k == e.kind)
            && filter.min_size.is_none_or(|m| e.size >= m)
            && filter.max_size.is_none_or(|m| e.size <= m)
            && filter.newer.is_none_or(|t| mtime.is_some_and(|m| m >= t))
            && filter.older.is_none_or(|t| mtime.is_some_and(|m| m < t))
    };
    if pattern.whole_path {
        return all_paths(&point.catalog)
            .into_iter()
            .filter(|f| keep(f.entry) && pattern.matches(&f.path, &f.entry.name))
            .collect();
    }
    // A name pattern: paths are built for the matches only.
    let mut out = Vec::new();
    for v in &point.catalog.volumes {
        for (i, e) in v.entries.iter().enumerate() {
            if keep(e) && pattern.matches("", &e.name) {
                out.push(Found {
                    path: v.path(i),
                    entry: e,
                });
            }
        }
    }
    out
}

/// A path in the form catalogs hold: `/`-separated, leading `/`, no trailing one.
pub fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The entry at `path` in a catalog: the name as stored, else the one entry equal to it
/// ignoring case (as `strata ls` resolves paths); None when there is none or several.
pub fn lookup<'a>(c: &'a Catalog, path: &str) -> Option<Found<'a>> {
    let path = normalize(path);
    let comps: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for v in &c.volumes {
        let rest = if v.name.is_empty() {
            &comps[..]
        } else if comps.first().is_some_and(|f| *f == v.name) {
            &comps[1..]
        } else {
            continue;
        };
        return walk_down(v, rest).map(|i| Found {
            path: v.path(i),
            entry: &v.entries[i],
        });
    }
    None
}

/// The entry reached from the root of `v` by `names`, each looked up as `strata ls` looks
/// it up: ext names exactly; NTFS names exactly, else the one entry equal ignoring case;
/// FAT and exFAT names ignoring case. Children follow their parents, so each step scans
/// forward from the directory it is in.
fn walk_down(v: &Volume, names: &[&str]) -> Option<usize> {
    let exact_only = v.fs.starts_with("ext");
    let mut at = 0usize;
    v.entries.first()?;
    for name in names {
        let children = || {
            v.entries
                .iter()
                .enumerate()
                .skip(at + 1)
                .filter(|(_, e)| usize::try_from(e.parent).ok() == Some(at))
        };
        if let Some((j, _)) = children().find(|(_, e)| e.name == *name) {
            at = j;
            continue;
        }
        if exact_only {
            return None;
        }
        let lower = name.to_lowercase();
        let mut folded = children().filter(|(_, e)| e.name.to_lowercase() == lower);
        match (folded.next(), folded.next()) {
            (Some((j, _)), None) => at = j,
            _ => return None,
        }
    }
    Some(at)
}

/// One version of a path in [`history`]: the points that hold it, in order.
pub struct Version {
    /// The entry (None: the path did not exist in these points).
    pub entry: Option<Entry>,
    /// Its path in these points (the case may differ between points).
    pub path: String,
    pub points: Vec<Stamp>,
}

/// What one point holds at a path, for [`history`]: its path as stored and its entry.
pub fn at_path(p: &Point, path: &str) -> Option<(String, Entry)> {
    lookup(&p.catalog, path).map(|f| (f.path, f.entry.clone()))
}

/// The distinct versions of `path` across `points` (oldest first, each with what
/// [`at_path`] found there): consecutive points holding the same type and content are one
/// version.
pub fn history(points: Vec<(Stamp, Option<(String, Entry)>)>, path: &str) -> Vec<Version> {
    let mut out: Vec<Version> = Vec::new();
    let key = |e: Option<&Entry>| e.map(|e| (e.kind, e.id, same_streams_key(e)));
    for (stamp, found) in points {
        let (here_path, here) = match found {
            Some((p, e)) => (p, Some(e)),
            None => (normalize(path), None),
        };
        match out.last_mut() {
            Some(v) if key(v.entry.as_ref()) == key(here.as_ref()) => v.points.push(stamp),
            _ => out.push(Version {
                entry: here,
                path: here_path,
                points: vec![stamp],
            }),
        }
    }
    // Points before the path first appeared say nothing about it.
    while out.first().is_some_and(|v| v.entry.is_none()) {
        out.remove(0);
    }
    out
}

fn same_streams_key(e: &Entry) -> Vec<(compact_str::CompactString, Option<ContentId>)> {
    e.streams.iter().map(|s| (s.name.clone(), s.id)).collect()
}

/// What a [`diff`] row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    /// The contents differ (a file's data, a stream's, or a link's target).
    Modified,
    /// Same contents, other modification time, mode or owner.
    Metadata,
    /// The path is now another type of node.
    Type,
    /// The same node under another path.
    Renamed,
}

/// One row of [`diff`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub path: String,
    pub change: Change,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    /// The named stream the row is about (NTFS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// A renamed file whose contents changed too.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub modified: bool,
    #[serde(rename = "type")]
    pub kind: NodeKind,
}

/// Under `prefix` (a path, or `/` for everything).
fn under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// What changed from point `a` to point `b`, below `prefix`, sorted by path.
pub fn diff(a: &Catalog, b: &Catalog, prefix: &str) -> Vec<Row> {
    // The prefix names what `ls` would find in either point (case as stored).
    let prefix = lookup(b, prefix)
        .or_else(|| lookup(a, prefix))
        .map_or_else(|| normalize(prefix), |f| f.path);
    let keep = |f: &Found| under(&f.path, &prefix) && f.entry.parent != super::ROOT_PARENT;
    let old: HashMap<String, &Entry> = all_paths(a)
        .into_iter()
        .filter(keep)
        .map(|f| (f.path, f.entry))
        .collect();
    let new: HashMap<String, &Entry> = all_paths(b)
        .into_iter()
        .filter(keep)
        .map(|f| (f.path, f.entry))
        .collect();
    let mut rows = Vec::new();
    let row = |path: &str, change, kind| Row {
        path: path.to_string(),
        change,
        old_path: None,
        stream: None,
        modified: false,
        kind,
    };
    let mut removed: Vec<(&String, &Entry)> = Vec::new();
    let mut added: Vec<(&String, &Entry)> = Vec::new();
    for (p, e) in &old {
        if !new.contains_key(p) {
            removed.push((p, e));
        }
    }
    for (p, nb) in &new {
        let Some(na) = old.get(p) else {
            added.push((p, nb));
            continue;
        };
        if na.kind != nb.kind {
            rows.push(row(p, Change::Type, nb.kind));
            continue;
        }
        if na.kind != NodeKind::Dir && (na.id != nb.id || na.size != nb.size) {
            rows.push(row(p, Change::Modified, nb.kind));
        } else if metadata_differs(na, nb) {
            rows.push(row(p, Change::Metadata, nb.kind));
        }
        rows.extend(stream_rows(p, na, nb));
    }
    // Renames: a node that left one path and appeared at another, known by its inode
    // (or MFT record) number and its creation time, which a reused number does not keep.
    let key = |e: &Entry| e.ino.map(|i| (i, e.crtime, e.kind));
    let mut gone: HashMap<_, Vec<(&String, &Entry)>> = HashMap::new();
    removed.sort_by(|x, y| x.0.cmp(y.0));
    for &(p, e) in &removed {
        if let Some(k) = key(e) {
            gone.entry(k).or_default().push((p, e));
        }
    }
    for v in gone.values_mut() {
        v.reverse();
    }
    added.sort_by(|x, y| x.0.cmp(y.0));
    // (new path, new entry, old path, old entry) of every node found under another path.
    let mut pairs = Vec::new();
    for &(p, e) in &added {
        match key(e).and_then(|k| gone.get_mut(&k)).and_then(Vec::pop) {
            Some((op, oe)) => pairs.push((p, e, op, oe)),
            None => rows.push(row(p, Change::Added, e.kind)),
        }
    }
    // A directory renamed or moved takes its entries along: they are not reported as
    // renamed too, only what changed in them, as at an unchanged path.
    let moved: HashMap<&str, &str> = pairs
        .iter()
        .filter(|x| x.1.kind == NodeKind::Dir)
        .map(|x| (x.2.as_str(), x.0.as_str()))
        .collect();
    let along = |p: &str, op: &str| {
        let (Some((dir, name)), Some((odir, oname))) = (p.rsplit_once('/'), op.rsplit_once('/'))
        else {
            return false;
        };
        name == oname && moved.get(odir) == Some(&dir)
    };
    let mut renamed_from = std::collections::HashSet::new();
    for &(p, e, op, oe) in &pairs {
        renamed_from.insert(op.clone());
        if along(p, op) {
            if e.kind != NodeKind::Dir && (oe.id != e.id || oe.size != e.size) {
                rows.push(row(p, Change::Modified, e.kind));
            } else if metadata_differs(oe, e) {
                rows.push(row(p, Change::Metadata, e.kind));
            }
        } else {
            let mut r = row(p, Change::Renamed, e.kind);
            r.old_path = Some(op.clone());
            r.modified = e.kind != NodeKind::Dir && (oe.id != e.id || oe.size != e.size);
            rows.push(r);
        }
        rows.extend(stream_rows(p, oe, e));
    }
    for &(p, e) in &removed {
        if !renamed_from.contains(p) {
            rows.push(row(p, Change::Removed, e.kind));
        }
    }
    rows.sort_by(|x, y| (&x.path, &x.stream).cmp(&(&y.path, &y.stream)));
    rows
}

/// Same contents; other modification time (not of directories: it follows their entries,
/// which are reported themselves), mode or owner.
fn metadata_differs(a: &Entry, b: &Entry) -> bool {
    (a.kind != NodeKind::Dir && a.mtime != b.mtime)
        || a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
}

/// Streams added, removed or changed between two versions of one file.
fn stream_rows(path: &str, a: &Entry, b: &Entry) -> Vec<Row> {
    let mut rows = Vec::new();
    let row = |name: &str, change| Row {
        path: path.to_string(),
        change,
        old_path: None,
        stream: Some(name.to_string()),
        modified: false,
        kind: b.kind,
    };
    for s in &b.streams {
        match a.streams.iter().find(|o| o.name == s.name) {
            None => rows.push(row(&s.name, Change::Added)),
            Some(o) if o.id != s.id || o.size != s.size => {
                rows.push(row(&s.name, Change::Modified))
            }
            Some(_) => {}
        }
    }
    for o in &a.streams {
        if !b.streams.iter().any(|s| s.name == o.name) {
            rows.push(row(&o.name, Change::Removed));
        }
    }
    rows
}
