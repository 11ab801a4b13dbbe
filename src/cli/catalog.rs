//! `strata find`, `strata history` and `strata diff`: questions asked of the points of a
//! chain or a directory ([`crate::catalog::query`]).

use super::browse::{fmt_time, json_time, parse_bytes};
use super::{out, ChainArgs};
use crate::catalog::query::{self, Change, Filter, Notes, Pattern, Point, Stamp};
use crate::catalog::Entry;
use crate::error::{Error, Result};
use crate::fs::browse::NodeKind;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `strata find`.
#[derive(Debug, Args)]
pub struct FindArgs {
    /// A directory of images (every point in it) or an image (its chain's points).
    pub images: PathBuf,
    /// Glob (`*`, `?`, `[a-z]`) over the name, or over the whole path (`/p2/Users/*/x.doc`)
    /// when it holds a `/`.
    pub pattern: String,
    /// Ignore case.
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Only entries of this type: f (file), d (directory), l (link).
    #[arg(long = "type", value_parser = parse_kind)]
    pub kind: Option<NodeKind>,
    /// Only entries of at least this many bytes (K, M, G suffixes).
    #[arg(long, value_parser = parse_bytes)]
    pub min_size: Option<u64>,
    /// Only entries of at most this many bytes.
    #[arg(long, value_parser = parse_bytes)]
    pub max_size: Option<u64>,
    /// Only entries modified at or after this time (2026-11-30 or 2026-11-30T08:00:00Z).
    #[arg(long, value_parser = parse_date)]
    pub newer: Option<i64>,
    /// Only entries modified before this time.
    #[arg(long, value_parser = parse_date)]
    pub older: Option<i64>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub chain: ChainArgs,
}

/// `strata history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// An image (its chain's points) or a directory of images.
    pub images: PathBuf,
    /// Path inside the images, e.g. /p2/Users/anna/notes.txt.
    pub path: String,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub chain: ChainArgs,
}

/// `strata diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older point.
    pub old: PathBuf,
    /// The newer point.
    pub new: PathBuf,
    /// Only below this path (default: everything).
    #[arg(default_value = "/")]
    pub path: String,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub chain: ChainArgs,
}

fn parse_kind(s: &str) -> std::result::Result<NodeKind, String> {
    match s {
        "f" | "file" => Ok(NodeKind::File),
        "d" | "dir" | "directory" => Ok(NodeKind::Dir),
        "l" | "link" | "symlink" => Ok(NodeKind::Symlink),
        _ => Err(format!("{s:?}: use f, d or l")),
    }
}

fn parse_date(s: &str) -> std::result::Result<i64, String> {
    let t = if s.len() == 10 {
        humantime::parse_rfc3339_weak(&format!("{s} 00:00:00"))
    } else {
        humantime::parse_rfc3339_weak(s)
    }
    .map_err(|e| format!("{s:?}: {e} (use 2026-11-30 or 2026-11-30T08:00:00Z)"))?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .map_err(|_| format!("{s:?}: before 1970"))
}

/// `name` with control characters escaped, for text output (JSON keeps names exact).
fn printable(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() || c == '\\' {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    s
}

fn say(notes: &Notes) {
    for w in &notes.warnings {
        eprintln!("strata: warning: {w}");
    }
    match notes.walked.len() {
        0 => {}
        1 => eprintln!(
            "strata: note: {} has no catalog: its filesystems were walked (slower)",
            notes.walked[0].display()
        ),
        n => eprintln!(
            "strata: note: {n} images have no catalog: their filesystems were walked (slower)"
        ),
    }
}

/// Loading a catalog allocates and frees tens of megabytes per point; glibc would hand
/// them back to the kernel and fault them in again for the next (half the time of a
/// `history` over 30 points went to page faults). Kept instead, up to 1 GiB.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; no thread has started yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Runs `f` on every point `arg` names (see [`query::map_points`]).
fn map_points<T: Send>(
    arg: &Path,
    chain: &ChainArgs,
    f: impl Fn(&Point) -> T + Sync,
) -> Result<Vec<(Stamp, T)>> {
    keep_freed_memory();
    let opts = chain.clone().resolve();
    let paths = query::images(arg, &opts)?;
    let mut notes = Notes::default();
    let r = query::map_points(&paths, &opts, crate::storage::is_dir(arg), &mut notes, f);
    say(&notes);
    r
}

pub(crate) fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `strata find`.
pub fn find(a: &FindArgs) -> Result<()> {
    let pattern = Pattern::new(&a.pattern, a.ignore_case)?;
    let filter = Filter {
        kind: a.kind,
        min_size: a.min_size,
        max_size: a.max_size,
        newer: a.newer,
        older: a.older,
    };
    let answers = map_points(&a.images, &a.chain, |p| {
        let mut lines = Vec::new();
        for f in query::find(p, &pattern, &filter) {
            let e = f.entry;
            lines.push(if a.json {
                let mut o = serde_json::Map::new();
                o.insert("image".into(), p.image.display().to_string().into());
                o.insert("point".into(), p.created.secs.into());
                o.insert("path".into(), f.path.clone().into());
                o.insert("type".into(), serde_json::to_value(e.kind).expect("kind"));
                o.insert("size".into(), e.size.into());
                json_time(&mut o, "mtime", e.mtime);
                serde_json::Value::Object(o).to_string()
            } else {
                format!(
                    "{}  {}  {} {:>12} {}",
                    fmt_time(Some(p.created)),
                    printable(&p.image.display().to_string()),
                    fmt_time(e.mtime),
                    e.size,
                    printable(&f.path)
                )
            });
        }
        lines
    })?;
    let mut o = std::io::stdout().lock();
    for line in answers.iter().flat_map(|(_, lines)| lines) {
        writeln!(o, "{line}").map_err(|e| Error::io("stdout", "cannot write", e))?;
    }
    o.flush()
        .map_err(|e| Error::io("stdout", "cannot write", e))
}

/// Runs `strata history`.
pub fn history(a: &HistoryArgs) -> Result<()> {
    let found = map_points(&a.images, &a.chain, |p| query::at_path(p, &a.path))?;
    let n = found.len();
    let versions = query::history(found, &a.path);
    if versions.is_empty() {
        return Err(Error::NotFound(format!(
            "{}: in none of the {n} points",
            a.path
        )));
    }
    for v in &versions {
        let images: Vec<String> = v
            .points
            .iter()
            .map(|p| p.image.display().to_string())
            .collect();
        let line = match (&v.entry, a.json) {
            (Some(e), true) => {
                let mut o = version_json(&v.path, e);
                o.insert("images".into(), images.into());
                o.insert(
                    "points".into(),
                    v.points
                        .iter()
                        .map(|p| p.created.secs)
                        .collect::<Vec<_>>()
                        .into(),
                );
                serde_json::Value::Object(o).to_string()
            }
            (None, true) => serde_json::json!({
                "path": v.path,
                "deleted": true,
                "images": images,
                "points": v.points.iter().map(|p| p.created.secs).collect::<Vec<_>>(),
            })
            .to_string(),
            (Some(e), false) => format!(
                "{} {:>12} {}  {}  in {}",
                e.kind.letter(),
                e.size,
                fmt_time(e.mtime),
                e.id.map_or_else(|| "-".repeat(32), |i| hex(&i)),
                points_text(&v.points)
            ),
            (None, false) => format!("deleted  in {}", points_text(&v.points)),
        };
        out(&line)?;
    }
    Ok(())
}

pub(crate) fn version_json(path: &str, e: &Entry) -> serde_json::Map<String, serde_json::Value> {
    let mut o = serde_json::Map::new();
    o.insert("path".into(), path.into());
    o.insert("type".into(), serde_json::to_value(e.kind).expect("kind"));
    o.insert("size".into(), e.size.into());
    json_time(&mut o, "mtime", e.mtime);
    if let Some(id) = e.id {
        o.insert("id".into(), hex(&id).into());
    }
    if !e.streams.is_empty() {
        let s: Vec<serde_json::Value> = e
            .streams
            .iter()
            .map(|s| serde_json::json!({"name": s.name.as_str(), "size": s.size, "id": s.id.map(|i| hex(&i))}))
            .collect();
        o.insert("streams".into(), s.into());
    }
    if e.unreadable {
        o.insert("unreadable".into(), true.into());
    }
    o
}

fn points_text(points: &[Stamp]) -> String {
    let first = points.first().map(|p| p.image.display().to_string());
    let last = points.last().map(|p| p.image.display().to_string());
    match (first, last, points.len()) {
        (Some(f), _, 1) => printable(&f),
        (Some(f), Some(l), n) => format!("{} .. {} ({n} points)", printable(&f), printable(&l)),
        _ => String::new(),
    }
}

/// Runs `strata diff`.
pub fn diff(a: &DiffArgs) -> Result<()> {
    keep_freed_memory();
    let opts = a.chain.clone().resolve();
    let mut notes = Notes::default();
    let old = query::open_point(&a.old, &opts, &mut notes);
    let new = old.and_then(|o| Ok((o, query::open_point(&a.new, &opts, &mut notes)?)));
    say(&notes);
    let (old, new) = new?;
    for r in query::diff(&old.catalog, &new.catalog, &a.path) {
        let line = if a.json {
            serde_json::to_string(&r).expect("serialisable")
        } else {
            let mark = match (r.change, r.modified) {
                (Change::Added, _) => "+",
                (Change::Removed, _) => "-",
                (Change::Modified, _) => "M",
                (Change::Metadata, _) => "m",
                (Change::Type, _) => "T",
                (Change::Renamed, false) => "R",
                (Change::Renamed, true) => "RM",
            };
            let mut path = printable(&r.path);
            if let Some(s) = &r.stream {
                path = format!("{path}:{}", printable(s));
            }
            match &r.old_path {
                Some(o) => format!("{mark:<2} {} -> {path}", printable(o)),
                None => format!("{mark:<2} {path}"),
            }
        };
        out(&line)?;
    }
    Ok(())
}
