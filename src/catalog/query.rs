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
use crate::container::catalog::{load, CatalogError};
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
    pub catalog: Catalog,
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
    if arg.is_dir() {
        let v = resolve::images_in(arg);
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

/// Opens the points of `paths`, oldest first. With `skip_bad`, an image that cannot be
/// opened is noted and left out (a directory may hold broken images); otherwise it fails.
pub fn open_points(
    paths: &[PathBuf],
    opts: &ResolveOptions,
    skip_bad: bool,
    notes: &mut Notes,
) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    for p in paths {
        match open_point(p, opts, notes) {
            Ok(pt) => points.push(pt),
            Err(e) if skip_bad && !matches!(e, Error::Interrupted) => {
                notes.warnings.push(format!("{e}; left out"));
            }
            Err(e) => return Err(e),
        }
    }
    points.sort_by(|a, b| (a.created, &a.image).cmp(&(b.created, &b.image)));
    Ok(points)
}

/// Opens one point: its catalog, or a walk of its filesystems.
pub fn open_point(path: &Path, opts: &ResolveOptions, notes: &mut Notes) -> Result<Point> {
    let image = Image::open(path)?;
    let h = image.header();
    let created = Time {
        secs: h.created_unix,
        nanos: h.created_nanos,
    };
    let stored = match load(&image) {
        Ok(Some(raw)) => Catalog::decode(&raw)
            .map(Some)
            .map_err(|e| format!("catalog: {e}")),
        Ok(None) => Ok(None),
        Err(CatalogError::Damaged(why)) => Err(why),
        Err(CatalogError::Io(e)) => return Err(e),
    };
    drop(image);
    let catalog = match stored {
        Ok(Some(c)) => c,
        Ok(None) => {
            notes.walked.push(path.to_path_buf());
            walk(path, opts)?
        }
        Err(why) => {
            notes.warnings.push(format!(
                "{}: the catalog is damaged ({why}); its filesystems are walked instead",
                path.display()
            ));
            walk(path, opts)?
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
    all_paths(&point.catalog)
        .into_iter()
        .filter(|f| f.entry.parent != super::ROOT_PARENT)
        .filter(|f| pattern.matches(&f.path, &f.entry.name))
        .filter(|f| {
            let e = f.entry;
            let mtime = e.mtime.map(|t| t.secs);
            filter.kind.is_none_or(|k| k == e.kind)
                && filter.min_size.is_none_or(|m| e.size >= m)
                && filter.max_size.is_none_or(|m| e.size <= m)
                && filter.newer.is_none_or(|t| mtime.is_some_and(|m| m >= t))
                && filter.older.is_none_or(|t| mtime.is_some_and(|m| m < t))
        })
        .collect()
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
        return walk_down(v, rest).map(|i| {
            let mut names = Vec::new();
            let mut at = i;
            while at != 0 {
                let e = &v.entries[at];
                names.push(e.name.as_str());
                at = usize::try_from(e.parent).unwrap_or(0);
            }
            names.reverse();
            let mut p = if v.name.is_empty() {
                String::new()
            } else {
                format!("/{}", v.name)
            };
            for n in names {
                p.push('/');
                p.push_str(n);
            }
            if p.is_empty() {
                p.push('/');
            }
            Found {
                path: p,
                entry: &v.entries[i],
            }
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
pub struct Version<'a> {
    /// The entry (None: the path did not exist in these points).
    pub entry: Option<&'a Entry>,
    /// Its path in these points (the case may differ between points).
    pub path: String,
    pub points: Vec<&'a Point>,
}

/// The distinct versions of `path` across `points` (oldest first): consecutive points
/// holding the same type and content are one version.
pub fn history<'a>(points: &'a [Point], path: &str) -> Vec<Version<'a>> {
    let mut out: Vec<Version<'a>> = Vec::new();
    for p in points {
        let found = lookup(&p.catalog, path);
        let key = |e: Option<&Entry>| e.map(|e| (e.kind, e.id, same_streams_key(e)));
        let here = found.as_ref().map(|f| f.entry);
        match out.last_mut() {
            Some(v) if key(v.entry) == key(here) => v.points.push(p),
            _ => out.push(Version {
                entry: here,
                path: found.map_or_else(|| normalize(path), |f| f.path),
                points: vec![p],
            }),
        }
    }
    // Points before the path first appeared say nothing about it.
    while out.first().is_some_and(|v| v.entry.is_none()) {
        out.remove(0);
    }
    out
}

fn same_streams_key(e: &Entry) -> Vec<(String, Option<ContentId>)> {
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
    let mut renamed_from = std::collections::HashSet::new();
    for &(p, e) in &added {
        let from = key(e).and_then(|k| gone.get_mut(&k)).and_then(Vec::pop);
        match from {
            Some((op, oe)) => {
                renamed_from.insert(op.clone());
                let mut r = row(p, Change::Renamed, e.kind);
                r.old_path = Some(op.clone());
                r.modified = e.kind != NodeKind::Dir && (oe.id != e.id || oe.size != e.size);
                rows.push(r);
                rows.extend(stream_rows(p, oe, e));
            }
            None => rows.push(row(p, Change::Added, e.kind)),
        }
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
