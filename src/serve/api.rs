//! The JSON the page reads: backup sets, a point, a directory or a file, and the catalog
//! questions (find, history, diff). Paths inside an image are `/`-separated, as `strata ls`
//! prints them, each segment percent-encoded in the URL.

use super::{off_thread, App};
use crate::catalog::query::{self, Filter, Notes, Pattern};
use crate::error::{Error, Result};
use crate::fs::browse::{FileSystem, NodeId, NodeKind, Time};
use crate::vfs::Target;
// Nested routes see their path without the `/api` prefix; the original keeps it.
use axum::extract::{OriginalUri, Query, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/sets", get(sets))
        .route("/point/{id}", get(point))
        .route("/ls/{*rest}", get(ls))
        .route("/find", get(find))
        .route("/history/{*rest}", get(history))
        .route("/diff", get(diff))
        .route("/check/{*rest}", get(check))
}

/// Runs blocking work (filesystem reads) off the async workers and answers with its JSON.
async fn blocking(f: impl FnOnce() -> Result<Value> + Send + 'static) -> Response {
    match off_thread(f).await {
        Ok(v) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            v.to_string(),
        )
            .into_response(),
        Err(r) => r,
    }
}

/// Splits `/api/ls/ID/p2/a%20b` (after `prefix`) into the image id and the decoded path
/// inside it (`/p2/a b`).
pub(super) fn split_target(uri: &Uri, prefix: &str) -> Result<(String, String)> {
    let rest = uri
        .path()
        .strip_prefix(prefix)
        .ok_or_else(|| Error::Invalid("bad address".into()))?;
    let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut out = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let name = percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| Error::Invalid("path is not UTF-8".into()))?;
        out.push('/');
        out.push_str(&name);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok((id.to_string(), out))
}

fn time(t: Option<Time>) -> Value {
    t.map_or(Value::Null, |t| json!(t.secs))
}

fn kind_name(k: NodeKind) -> Value {
    serde_json::to_value(k).unwrap_or(Value::Null)
}

fn image_name(p: &std::path::Path) -> String {
    p.file_name()
        .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
}

/// The backup sets: every served image, grouped by the full image its chain starts from.
fn sets_value(app: &App) -> Result<Value> {
    app.points.rescan();
    let mut sets = Vec::new();
    let mut broken = Vec::new();
    let id_of = |p: &std::path::Path| app.points.id_of(p);
    let entry = |e: &crate::ops::info::ChainEntry| {
        json!({
            "id": id_of(&e.image),
            "name": image_name(&e.image),
            "kind": e.kind,
            "created": e.created,
            "image_bytes": e.image_bytes,
            "data_bytes": e.data_bytes,
            "parent": e.parent.as_deref().and_then(id_of),
        })
    };
    for root in app.points.roots() {
        if crate::storage::is_dir(root) {
            let info = crate::ops::info::dir_info(root, &app.points.opts)?;
            for s in &info.sets {
                sets.push(json!({
                    "root": root.display().to_string(),
                    "source": s.source,
                    "disk_bytes": s.disk_bytes,
                    "images": s.images.iter().map(entry).collect::<Vec<_>>(),
                }));
            }
            for (p, why) in &info.broken {
                broken.push(json!({"name": image_name(p), "root": root.display().to_string(), "error": why, "id": id_of(p)}));
            }
        } else {
            match crate::chain::resolve::resolve(root, &app.points.opts) {
                Ok(layers) => {
                    let h = layers[0].header();
                    let entries = crate::ops::info::chain_entries(&layers);
                    sets.push(json!({
                        "root": root.display().to_string(),
                        "source": h.source,
                        "disk_bytes": h.disk_size,
                        "images": entries.iter().map(entry).collect::<Vec<_>>(),
                    }));
                }
                Err(e) => broken.push(json!({"name": image_name(root), "root": root.display().to_string(), "error": e.to_string(), "id": id_of(root)})),
            }
        }
    }
    Ok(json!({"sets": sets, "broken": broken}))
}

async fn sets(State(app): State<Arc<App>>) -> Response {
    blocking(move || sets_value(&app)).await
}

async fn point(
    State(app): State<Arc<App>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    blocking(move || {
        let path = app
            .points
            .path(&id)
            .ok_or_else(|| Error::NotFound(format!("{id}: no such image is served")))?;
        let info = crate::ops::info::info(&path, &app.points.opts)?;
        let mut v = serde_json::to_value(&info).map_err(|e| Error::Invalid(e.to_string()))?;
        v["id"] = json!(id);
        v["name"] = json!(image_name(&path));
        // The chain's images by id, so the page can link them.
        if let Some(chain) = v.get_mut("chain").and_then(Value::as_array_mut) {
            for c in chain {
                let p = c.get("image").and_then(Value::as_str).map(PathBuf::from);
                c["id"] = json!(p.as_deref().and_then(|p| app.points.id_of(p)));
                c["name"] = json!(p.as_deref().map(image_name));
            }
        }
        v["image"] = json!(image_name(&path));
        let mounts = match app.points.open(&id) {
            Ok(o) => o
                .vfs
                .mounts()
                .iter()
                .map(|m| {
                    json!({
                        "name": m.name, "number": m.number,
                        "fs": m.kind.map(|k| k.name()), "label": m.label, "size": m.size,
                        "error": m.fs.as_ref().err(), "damaged": m.damaged,
                    })
                })
                .collect(),
            Err(e) => {
                v["open_error"] = json!(e.to_string());
                Vec::new()
            }
        };
        v["mounts"] = json!(mounts);
        Ok(v)
    })
    .await
}

/// A directory entry as the listing shows it.
fn entry_value(fs: &dyn FileSystem, name: &str, node: NodeId, kind: NodeKind) -> Value {
    match fs.metadata(node) {
        Ok(m) => {
            let mut o = json!({"name": name, "type": kind_name(m.kind), "size": m.size, "mtime": time(m.mtime)});
            if m.kind == NodeKind::Symlink {
                o["target"] = json!(fs.read_link(node).ok());
            }
            o
        }
        Err(e) => {
            json!({"name": name, "type": kind_name(kind), "error": e.to_string(), "damaged": e.is_integrity_failure()})
        }
    }
}

/// Extended attribute values shown on a file's page: text when printable, else hex, cut.
fn xattr_value(v: &[u8]) -> String {
    const SHOWN: usize = 512;
    let cut = &v[..v.len().min(SHOWN)];
    let more = if v.len() > SHOWN { "…" } else { "" };
    match std::str::from_utf8(cut) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\0') => {
            format!("{}{more}", s.trim_end_matches('\0'))
        }
        _ => format!(
            "0x{}{more}",
            cut.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

fn ls_value(app: &App, id: &str, path: &str) -> Result<Value> {
    let o = app.points.open(id)?;
    let vfs = &o.vfs;
    match vfs.resolve(path)? {
        Target::Top => {
            let entries: Vec<Value> = vfs
                .mounts()
                .iter()
                .map(|m| {
                    json!({"name": m.name, "type": "dir", "size": m.size, "mtime": null,
                        "fs": m.kind.map(|k| k.name()), "label": m.label,
                        "error": m.fs.as_ref().err(), "damaged": m.damaged})
                })
                .collect();
            Ok(json!({"path": "/", "type": "dir", "top": true, "entries": entries}))
        }
        Target::Node { mount, node } => {
            let fs = vfs.fs(mount)?;
            let m = fs.metadata(node)?;
            if m.kind == NodeKind::Dir {
                let list = fs.read_dir(node)?;
                let entries: Vec<Value> = list
                    .iter()
                    .map(|e| entry_value(&**fs, &e.name, e.node, e.kind))
                    .collect();
                return Ok(
                    json!({"path": path, "type": "dir", "entries": entries, "mtime": time(m.mtime)}),
                );
            }
            let mut v = json!({
                "path": path, "type": kind_name(m.kind), "size": m.size,
                "allocated": m.allocated, "mtime": time(m.mtime), "atime": time(m.atime),
                "ctime": time(m.ctime), "crtime": time(m.crtime), "mode": m.mode,
                "uid": m.uid, "gid": m.gid, "nlink": m.nlink, "ino": m.ino,
                "streams": m.streams,
            });
            if m.kind == NodeKind::Symlink {
                v["target"] = json!(fs.read_link(node).ok());
            }
            let xattrs: Vec<Value> = fs
                .xattr_names(node)
                .unwrap_or_default()
                .iter()
                .map(|n| {
                    let val = fs.xattr(node, n).map(|v| xattr_value(&v)).ok();
                    json!({"name": n, "value": val})
                })
                .collect();
            v["xattrs"] = json!(xattrs);
            Ok(v)
        }
    }
}

async fn ls(State(app): State<Arc<App>>, OriginalUri(uri): OriginalUri) -> Response {
    blocking(move || {
        let (id, path) = split_target(&uri, "/api/ls/")?;
        ls_value(&app, &id, &path)
    })
    .await
}

/// What reading a file or a folder to its end found.
#[derive(Default)]
struct Checked {
    files: u64,
    bytes: u64,
    /// `{path, error, damaged}` per file or folder that could not be read.
    bad: Vec<Value>,
}

/// Most failures one check lists: damage usually costs many files at once.
const CHECK_LIST: usize = 1000;

impl Checked {
    fn fail(&mut self, path: &str, e: &Error) {
        if self.bad.len() < CHECK_LIST {
            self.bad.push(
                json!({"path": path, "error": e.to_string(), "damaged": e.is_integrity_failure()}),
            );
        }
    }

    /// Reads `node` to its end.
    fn file(&mut self, fs: &dyn FileSystem, path: &str, node: NodeId) {
        self.files += 1;
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        let r = (|| -> Result<()> {
            let size = fs.metadata(node)?.size;
            while pos < size {
                crate::progress::check_interrupt()?;
                let n = fs.read_at(node, "", pos, &mut buf)?;
                if n == 0 {
                    return Err(Error::Damaged(format!(
                        "ends at {pos} bytes, before its recorded size {size}"
                    )));
                }
                pos += n as u64;
            }
            Ok(())
        })();
        self.bytes += pos;
        if let Err(e) = r {
            self.fail(path, &e);
        }
    }

    /// Reads every file below `dir`; a folder that cannot be listed is a failure too.
    fn dir(&mut self, fs: &dyn FileSystem, path: &str, dir: NodeId, ancestors: &mut Vec<NodeId>) {
        let list = match fs.read_dir(dir) {
            Ok(l) => l,
            Err(e) => return self.fail(path, &e),
        };
        ancestors.push(dir);
        for e in list {
            let p = format!("{}/{}", path.trim_end_matches('/'), e.name);
            match e.kind {
                NodeKind::Dir if !ancestors.contains(&e.node) => {
                    self.dir(fs, &p, e.node, ancestors)
                }
                NodeKind::File | NodeKind::Reparse => self.file(fs, &p, e.node),
                _ => {}
            }
        }
        ancestors.pop();
    }
}

/// Reads a file, or every file below a folder, to its end, and lists those that cannot be
/// read: the page's way to say which files damage cost before anyone downloads them.
async fn check(State(app): State<Arc<App>>, OriginalUri(uri): OriginalUri) -> Response {
    blocking(move || {
        let (id, path) = split_target(&uri, "/api/check/")?;
        let o = app.points.open(&id)?;
        let mut c = Checked::default();
        match o.vfs.resolve(&path)? {
            Target::Top => {
                for i in 0..o.vfs.mounts().len() {
                    let m = &o.vfs.mounts()[i];
                    let top = format!("/{}", m.name);
                    match o.vfs.fs(i) {
                        Ok(fs) => c.dir(&**fs, &top, fs.root(), &mut Vec::new()),
                        Err(e) if m.damaged => c.fail(&top, &e),
                        Err(_) => {}
                    }
                }
            }
            Target::Node { mount, node } => {
                let fs = o.vfs.fs(mount)?;
                if fs.metadata(node)?.kind == NodeKind::Dir {
                    c.dir(&**fs, &path, node, &mut Vec::new());
                } else {
                    c.file(&**fs, &path, node);
                }
            }
        }
        Ok(json!({"path": path, "files": c.files, "bytes": c.bytes, "unreadable": c.bad}))
    })
    .await
}

/// The served images of the backup set holding image `id` (all of them when `id` is
/// empty), oldest first: the points find and history look through.
fn set_images(app: &App, id: &str) -> Result<Vec<PathBuf>> {
    let sets = sets_value(app)?;
    let mut out = Vec::new();
    for s in sets["sets"].as_array().into_iter().flatten() {
        let imgs = s["images"].as_array().cloned().unwrap_or_default();
        if !id.is_empty() && !imgs.iter().any(|i| i["id"] == id) {
            continue;
        }
        for i in imgs {
            if let Some(p) = i["id"].as_str().and_then(|i| app.points.path(i)) {
                out.push(p);
            }
        }
    }
    if out.is_empty() {
        return Err(Error::NotFound(format!("{id}: no such image is served")));
    }
    Ok(out)
}

/// Points whose catalog was missing or damaged, for the page to say so.
fn notes_value(n: &Notes) -> Value {
    json!({
        "walked": n.walked.iter().map(|p| image_name(p)).collect::<Vec<_>>(),
        "warnings": n.warnings,
    })
}

/// Most rows one search returns: the page asks for a narrower pattern beyond.
const FIND_LIMIT: usize = 2000;

async fn find(State(app): State<Arc<App>>, Query(q): Query<HashMap<String, String>>) -> Response {
    blocking(move || {
        let text = q.get("q").map(String::as_str).unwrap_or("");
        if text.is_empty() {
            return Err(Error::Invalid("empty search".into()));
        }
        let ignore_case = q.get("i").is_some_and(|v| v == "1");
        // A bare word finds names containing it, as a search box is expected to.
        let glob = if text.contains(['*', '?', '[']) {
            text.to_string()
        } else {
            format!("*{text}*")
        };
        let pattern = Pattern::new(&glob, ignore_case)?;
        let kind = match q.get("type").map(String::as_str) {
            Some("f") => Some(NodeKind::File),
            Some("d") => Some(NodeKind::Dir),
            Some("l") => Some(NodeKind::Symlink),
            _ => None,
        };
        let filter = Filter {
            kind,
            min_size: None,
            max_size: None,
            newer: None,
            older: None,
        };
        let scope = q.get("scope").cloned().unwrap_or_default();
        let images = set_images(&app, &scope)?;
        let mut notes = Notes::default();
        let answers = query::map_points(&images, &app.points.opts, true, &mut notes, |p| {
            query::find(p, &pattern, &filter)
                .into_iter()
                .map(|f| (f.path, f.entry.kind, f.entry.size, f.entry.mtime))
                .collect::<Vec<_>>()
        })?;
        let mut rows = Vec::new();
        let mut total = 0usize;
        for (stamp, found) in &answers {
            let id = app.points.id_of(&stamp.image);
            for (path, kind, size, mtime) in found {
                total += 1;
                if rows.len() < FIND_LIMIT {
                    rows.push(json!({"id": id, "image": image_name(&stamp.image), "point": stamp.created.secs,
                        "path": path, "type": kind_name(*kind), "size": size, "mtime": time(*mtime)}));
                }
            }
        }
        Ok(json!({"rows": rows, "total": total, "points": answers.len(), "notes": notes_value(&notes)}))
    })
    .await
}

async fn history(State(app): State<Arc<App>>, OriginalUri(uri): OriginalUri) -> Response {
    blocking(move || {
        let (id, path) = split_target(&uri, "/api/history/")?;
        let images = set_images(&app, &id)?;
        let mut notes = Notes::default();
        let found = query::map_points(&images, &app.points.opts, true, &mut notes, |p| {
            query::at_path(p, &path)
        })?;
        let versions: Vec<Value> = query::history(found, &path)
            .iter()
            .map(|v| {
                let points: Vec<Value> = v
                    .points
                    .iter()
                    .map(|s| json!({"id": app.points.id_of(&s.image), "image": image_name(&s.image), "created": s.created.secs}))
                    .collect();
                let mut o = match &v.entry {
                    Some(e) => crate::cli::catalog::version_json(&v.path, e),
                    None => {
                        let mut o = Map::new();
                        o.insert("path".into(), v.path.clone().into());
                        o.insert("deleted".into(), true.into());
                        o
                    }
                };
                o.insert("points".into(), points.into());
                Value::Object(o)
            })
            .collect();
        Ok(json!({"path": path, "versions": versions, "notes": notes_value(&notes)}))
    })
    .await
}

async fn diff(State(app): State<Arc<App>>, Query(q): Query<HashMap<String, String>>) -> Response {
    blocking(move || {
        let get = |k: &str| {
            q.get(k)
                .and_then(|id| app.points.path(id))
                .ok_or_else(|| Error::NotFound(format!("{k}: no such image is served")))
        };
        let (a, b) = (get("a")?, get("b")?);
        let prefix = q.get("path").cloned().unwrap_or_else(|| "/".into());
        let mut notes = Notes::default();
        let old = query::open_point(&a, &app.points.opts, &mut notes)?;
        let new = query::open_point(&b, &app.points.opts, &mut notes)?;
        let rows = query::diff(&old.catalog, &new.catalog, &prefix);
        Ok(json!({"rows": rows, "notes": notes_value(&notes)}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_decoded_per_segment() {
        let uri: Uri = "/api/ls/abc/p2/a%20b/%3Cx%3E".parse().unwrap();
        assert_eq!(
            split_target(&uri, "/api/ls/").unwrap(),
            ("abc".to_string(), "/p2/a b/<x>".to_string())
        );
        let uri: Uri = "/api/ls/abc".parse().unwrap();
        assert_eq!(split_target(&uri, "/api/ls/").unwrap().1, "/");
        let uri: Uri = "/api/ls/abc/%FF".parse().unwrap();
        assert!(split_target(&uri, "/api/ls/").is_err());
    }

    #[test]
    fn attribute_values_are_shown_safely() {
        assert_eq!(xattr_value(b"hello\0"), "hello");
        assert_eq!(xattr_value(&[1, 2]), "0x0102");
    }
}
