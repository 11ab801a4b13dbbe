//! Downloads: a file (or one of its streams) with HTTP ranges, a directory as a zip or a
//! tar, streamed as it is read: no temporary copy, memory bounded by the channel.
//!
//! A read that fails after the headers went out (damage in the middle of a file) ends the
//! connection without the body's proper end, so the browser marks the download failed
//! instead of keeping a truncated file as complete. A failure on the first bytes is an
//! ordinary error answer.

use super::api::split_target;
use super::{off_thread, App};
use crate::error::{Error, Result};
use crate::fs::browse::{FileSystem, NodeId, NodeKind, Time};
use crate::vfs::Target;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use tokio::sync::mpsc;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/raw/{*rest}", get(raw))
        .route("/zip/{*rest}", get(zip))
        .route("/tar/{*rest}", get(tar))
}

/// Bytes read per piece, and pieces queued ahead of the client.
const PIECE: usize = 1 << 20;
const QUEUED: usize = 4;

type Piece = std::result::Result<Bytes, std::io::Error>;

/// A body fed by a blocking thread through a bounded channel.
fn channel_body() -> (mpsc::Sender<Piece>, Body) {
    let (tx, rx) = mpsc::channel::<Piece>(QUEUED);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) });
    (tx, Body::from_stream(stream))
}

fn io_error(e: &Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// An image's node opened for download.
struct Node {
    open: Arc<super::points::Opened>,
    mount: usize,
    node: NodeId,
    /// The named stream read (`""`: the main contents).
    stream: String,
    kind: NodeKind,
    size: u64,
    mtime: Option<Time>,
    /// The id the ETag carries: the same bytes for as long as the image exists.
    tag: String,
}

impl Node {
    fn fs(&self) -> Result<&Arc<dyn FileSystem>> {
        self.open.vfs.fs(self.mount)
    }
}

fn open_node(app: &App, id: &str, path: &str, stream: String) -> Result<Node> {
    let open = app.points.open(id)?;
    let Target::Node { mount, node } = open.vfs.resolve(path)? else {
        return Err(Error::IsADirectory(format!(
            "{path}: the list of partitions is not a file"
        )));
    };
    let fs = open.vfs.fs(mount)?;
    let m = fs.metadata(node)?;
    let size = if stream.is_empty() {
        m.size
    } else {
        m.streams
            .iter()
            .find(|s| s.name == stream)
            .map(|s| s.size)
            .ok_or_else(|| Error::NotFound(format!("{path}: no stream named {stream}")))?
    };
    // The stream's name enters the tag by its hash: a tag is printable ASCII.
    let named = xxhash_rust::xxh3::xxh3_64(stream.as_bytes());
    Ok(Node {
        tag: format!("\"{id}-{mount}-{node}-{size}-{named:016x}\""),
        open: open.clone(),
        mount,
        node,
        stream,
        kind: m.kind,
        size,
        mtime: m.mtime,
    })
}

/// The one range of a `Range: bytes=…` header, as `[start, end)` within `size`.
/// `Ok(None)`: no usable range (none, several, or another unit), send everything.
/// `Err`: not satisfiable.
fn parse_range(value: &str, size: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(size)
        };
        (start, end)
    };
    if r.0 >= size || r.0 >= r.1 {
        return Err(());
    }
    Ok(Some(r))
}

/// Types shown inline by the page's preview: only images a browser renders as pictures
/// (never HTML or SVG, which could run script).
fn inline_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "ico" => "image/x-icon",
        _ => return None,
    })
}

/// `Content-Disposition` for a download named `name` (RFC 6266: an ASCII fallback and
/// the exact name percent-encoded).
fn disposition(kind: &str, name: &str) -> HeaderValue {
    let name = &suggested_name(name);
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{exact}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

/// Longest name suggested for a download, in bytes: Chromium drops a suggested name
/// longer than 255 bytes less the `.crdownload` it appends while downloading, and then
/// saves nothing at all.
const NAME_BYTES: usize = 200;

/// `name` cut to [`NAME_BYTES`] at a character boundary, keeping a short extension.
fn suggested_name(name: &str) -> String {
    if name.len() <= NAME_BYTES {
        return name.to_string();
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| e.len() <= 16)
        .map_or(String::new(), |e| format!(".{e}"));
    let mut stem = String::new();
    for c in name.chars() {
        if stem.len() + c.len_utf8() + ext.len() > NAME_BYTES {
            break;
        }
        stem.push(c);
    }
    stem + &ext
}

fn last_name(path: &str, fallback: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(fallback)
        .to_string()
}

async fn raw(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let stream = q.get("stream").cloned().unwrap_or_default();
    let attach = q.get("dl").is_some_and(|v| v == "1");
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let if_range = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let opened = off_thread(move || -> Result<(Node, String)> {
        let (id, path) = split_target(&uri, "/raw/")?;
        let n = open_node(&app, &id, &path, stream)?;
        // A directory has no contents, but NTFS lets one carry named streams.
        let readable = matches!(n.kind, NodeKind::File | NodeKind::Reparse)
            || (n.kind == NodeKind::Dir && !n.stream.is_empty());
        if !readable {
            return Err(Error::Invalid(format!(
                "{path}: not a regular file (a {})",
                n.kind.noun()
            )));
        }
        Ok((n, path))
    })
    .await;
    let (node, path) = match opened {
        Ok(x) => x,
        Err(r) => return r,
    };
    let size = node.size;
    // A range applies unless If-Range names another version.
    let range = match (range, if_range) {
        (Some(_), Some(tag)) if tag != node.tag => None,
        (r, _) => r,
    };
    let (start, end, partial) = match range.as_deref().map(|r| parse_range(r, size)) {
        None | Some(Ok(None)) => (0, size, false),
        Some(Ok(Some((a, b)))) => (a, b, true),
        Some(Err(())) => {
            let mut r =
                (StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n").into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let name = if node.stream.is_empty() {
        last_name(&path, "file")
    } else {
        format!("{}_{}", last_name(&path, "file"), node.stream)
    };
    // The first piece is read before answering, so that a file unreadable from its start
    // gets an error status the page can show.
    let first_len = usize::try_from((end - start).min(PIECE as u64)).unwrap_or(PIECE);
    let node = Arc::new(node);
    let first = {
        let node = node.clone();
        off_thread(move || read_piece(&node, start, first_len)).await
    };
    let first = match first {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (tx, body) = channel_body();
    let mtime = node.mtime;
    let tag = node.tag.clone();
    tokio::task::spawn_blocking(move || {
        let mut pos = start + first.len() as u64;
        if tx.blocking_send(Ok(first)).is_err() {
            return;
        }
        while pos < end {
            let want = usize::try_from((end - pos).min(PIECE as u64)).unwrap_or(PIECE);
            let piece = read_piece(&node, pos, want).map_err(|e| {
                eprintln!("strata: {path}: {e}");
                io_error(&e)
            });
            let failed = piece.is_err();
            if let Ok(b) = &piece {
                pos += b.len() as u64;
            }
            if tx.blocking_send(piece).is_err() || failed {
                return;
            }
        }
    });
    let mut r = Response::new(body);
    *r.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if partial {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    if let Some(t) = mtime.filter(|t| t.secs >= 0) {
        if let Ok(v) = HeaderValue::from_str(&httpdate(t)) {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
    let shown = (!attach).then(|| inline_type(&name)).flatten();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(shown.unwrap_or("application/octet-stream")),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition(
            if shown.is_some() {
                "inline"
            } else {
                "attachment"
            },
            &name,
        ),
    );
    // Whatever the bytes are, opened on their own they run nothing.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    r
}

fn httpdate(t: Time) -> String {
    // RFC 7231 IMF-fixdate from RFC 3339: 2026-11-30T08:00:00Z -> Mon, 30 Nov 2026 08:00:00 GMT.
    let s = humantime::format_rfc3339_seconds(t.to_system()).to_string();
    let days = t.secs.div_euclid(86_400);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, time) = (&s[0..4], &s[5..7], &s[8..10], &s[11..19]);
    let mi: usize = m.parse().unwrap_or(1);
    format!("{wd}, {d} {} {y} {time} GMT", months[mi.clamp(1, 12) - 1])
}

/// Reads `want` bytes at `pos`; fewer only at the end of the data.
fn read_piece(node: &Node, pos: u64, want: usize) -> Result<Bytes> {
    let fs = node.fs()?;
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        let n = fs.read_at(node.node, &node.stream, pos + got as u64, &mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got < want {
        return Err(Error::Damaged(format!(
            "the file ends at {} bytes, before its recorded size",
            pos + got as u64
        )));
    }
    buf.truncate(got);
    Ok(Bytes::from(buf))
}

/// Feeds a body from a blocking writer (the zip or tar builder), in pieces.
struct ChannelWriter {
    tx: mpsc::Sender<Piece>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        self.tx
            .blocking_send(Ok(piece))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }

    /// Ends the body as broken: the client sees the download fail.
    fn fail(&mut self, e: &Error) {
        self.buf.clear();
        let _ = self.tx.blocking_send(Err(io_error(e)));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A file's contents as a reader, for the archive builders.
struct FileReader<'a> {
    fs: &'a dyn FileSystem,
    node: NodeId,
    pos: u64,
    size: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size {
            return Ok(0);
        }
        let n = self
            .fs
            .read_at(self.node, "", self.pos, buf)
            .map_err(|e| io_error(&e))?;
        if n == 0 {
            return Err(std::io::Error::other(format!(
                "the file ends at {} bytes, before its recorded size",
                self.pos
            )));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// One entry met while walking a directory for an archive.
struct Item {
    /// Path inside the archive, each name made safe ([`archive_name`]).
    path: String,
    node: NodeId,
    kind: NodeKind,
    size: u64,
    mtime: Option<Time>,
    mode: Option<u32>,
}

/// A name safe in an archive on any system: escaped as `strata cp` escapes names, and
/// with `\` escaped too, which Windows tools would take as a separator.
fn archive_name(name: &str) -> String {
    crate::vfs::path::escape_name(name).replace('\\', "%5C")
}

/// Walks `dir` depth first, handing every entry to `f` (directories before their
/// contents). A directory met again below itself (a damaged volume) is not entered.
fn walk(
    fs: &dyn FileSystem,
    dir: NodeId,
    prefix: &str,
    ancestors: &mut Vec<NodeId>,
    f: &mut dyn FnMut(&Item) -> Result<()>,
) -> Result<()> {
    crate::progress::check_interrupt()?;
    ancestors.push(dir);
    for e in fs.read_dir(dir)? {
        let m = fs.metadata(e.node)?;
        let item = Item {
            path: format!("{prefix}{}", archive_name(&e.name)),
            node: e.node,
            kind: m.kind,
            size: m.size,
            mtime: m.mtime,
            mode: m.mode,
        };
        f(&item)?;
        if m.kind == NodeKind::Dir && !ancestors.contains(&e.node) {
            walk(fs, e.node, &format!("{}/", item.path), ancestors, f)?;
        }
    }
    ancestors.pop();
    Ok(())
}

/// Opens the directory of an archive request: its filesystem, node and archive name.
fn archive_root(
    app: &App,
    uri: &Uri,
    prefix: &str,
) -> Result<(Arc<super::points::Opened>, usize, NodeId, String)> {
    let (id, path) = split_target(uri, prefix)?;
    let open = app.points.open(&id)?;
    let Target::Node { mount, node } = open.vfs.resolve(&path)? else {
        return Err(Error::Invalid(
            "choose a partition: the list of partitions cannot be archived".into(),
        ));
    };
    let fs = open.vfs.fs(mount)?;
    if fs.metadata(node)?.kind != NodeKind::Dir {
        return Err(Error::NotADirectory(format!("{path}: not a directory")));
    }
    let name = archive_name(&last_name(&path, "volume"));
    Ok((open.clone(), mount, node, name))
}

/// Starts an archive download: `build` writes it on a blocking thread.
async fn archive(
    app: Arc<App>,
    uri: Uri,
    prefix: &'static str,
    ext: &'static str,
    mime: &'static str,
    build: fn(&dyn FileSystem, NodeId, &str, &mut ChannelWriter) -> Result<()>,
) -> Response {
    let (open, mount, node, name) = match off_thread(move || archive_root(&app, &uri, prefix)).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (tx, body) = channel_body();
    let top = name.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(PIECE),
        };
        let r = open
            .vfs
            .fs(mount)
            .and_then(|fs| build(&**fs, node, &top, &mut w));
        match r {
            Ok(()) => {
                let _ = w.flush();
            }
            Err(e) => {
                // The client only sees the transfer break: the reason goes to the log.
                eprintln!("strata: {prefix}{}: {e}", top);
                w.fail(&e);
            }
        }
    });
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition("attachment", &format!("{name}.{ext}")),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn io(e: std::io::Error) -> Error {
    Error::io("archive", "cannot write", e)
}

fn zip_time(t: Option<Time>) -> zip::DateTime {
    let Some(t) = t.filter(|t| t.secs >= 0) else {
        return zip::DateTime::default();
    };
    let s = humantime::format_rfc3339_seconds(t.to_system()).to_string();
    let n = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<u16>().ok()).unwrap_or(0);
    let part = |a, b| u8::try_from(n(a, b)).unwrap_or(0);
    zip::DateTime::from_date_and_time(
        n(0, 4),
        part(5, 7),
        part(8, 10),
        part(11, 13),
        part(14, 16),
        part(17, 19),
    )
    .unwrap_or_default()
}

fn build_zip(fs: &dyn FileSystem, dir: NodeId, top: &str, w: &mut ChannelWriter) -> Result<()> {
    use zip::write::SimpleFileOptions;
    let mut z = zip::ZipWriter::new_stream(w);
    let zerr = |e: zip::result::ZipError| Error::Invalid(format!("zip: {e}"));
    let base = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.add_directory(format!("{top}/"), base).map_err(zerr)?;
    walk(fs, dir, &format!("{top}/"), &mut Vec::new(), &mut |it| {
        let mut o = base.last_modified_time(zip_time(it.mtime));
        if let Some(m) = it.mode {
            o = o.unix_permissions(m & 0o7777);
        }
        match it.kind {
            NodeKind::Dir => z.add_directory(format!("{}/", it.path), o).map_err(zerr),
            NodeKind::Symlink => {
                let target = fs.read_link(it.node)?;
                z.add_symlink(&it.path, target, o).map_err(zerr)
            }
            NodeKind::File | NodeKind::Reparse => {
                // Zip64 fields are written ahead for files that need them.
                let o = o.large_file(it.size >= u64::from(u32::MAX));
                z.start_file(&it.path, o).map_err(zerr)?;
                let mut r = FileReader {
                    fs,
                    node: it.node,
                    pos: 0,
                    size: it.size,
                };
                std::io::copy(&mut r, &mut z)
                    .map_err(|e| Error::Damaged(format!("{}: {e}", it.path)))?;
                Ok(())
            }
            // Device nodes, pipes and sockets have no contents to archive.
            _ => Ok(()),
        }
    })?;
    z.finish().map_err(zerr)?;
    Ok(())
}

fn build_tar(fs: &dyn FileSystem, dir: NodeId, top: &str, w: &mut ChannelWriter) -> Result<()> {
    let mut t = tar::Builder::new(w);
    t.follow_symlinks(false);
    let header = |it: &Item, kind: tar::EntryType, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(it.mode.map_or(
            if kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            },
            |m| m & 0o7777,
        ));
        h.set_mtime(it.mtime.map_or(0, |t| u64::try_from(t.secs).unwrap_or(0)));
        h
    };
    let top_item = Item {
        path: top.to_string(),
        node: dir,
        kind: NodeKind::Dir,
        size: 0,
        mtime: None,
        mode: None,
    };
    let mut h = header(&top_item, tar::EntryType::Directory, 0);
    t.append_data(&mut h, format!("{top}/"), std::io::empty())
        .map_err(io)?;
    walk(
        fs,
        dir,
        &format!("{top}/"),
        &mut Vec::new(),
        &mut |it| match it.kind {
            NodeKind::Dir => {
                let mut h = header(it, tar::EntryType::Directory, 0);
                t.append_data(&mut h, format!("{}/", it.path), std::io::empty())
                    .map_err(io)
            }
            NodeKind::Symlink => {
                let target = fs.read_link(it.node)?;
                let mut h = header(it, tar::EntryType::Symlink, 0);
                t.append_link(&mut h, &it.path, target).map_err(io)
            }
            NodeKind::File | NodeKind::Reparse => {
                let mut h = header(it, tar::EntryType::Regular, it.size);
                let r = FileReader {
                    fs,
                    node: it.node,
                    pos: 0,
                    size: it.size,
                };
                t.append_data(&mut h, &it.path, r)
                    .map_err(|e| Error::Damaged(format!("{}: {e}", it.path)))
            }
            _ => Ok(()),
        },
    )?;
    t.finish().map_err(io)
}

async fn zip(State(app): State<Arc<App>>, uri: Uri) -> Response {
    archive(app, uri, "/zip/", "zip", "application/zip", build_zip).await
}

async fn tar(State(app): State<Arc<App>>, uri: Uri) -> Response {
    archive(app, uri, "/tar/", "tar", "application/x-tar", build_tar).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 100))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 100))));
        assert_eq!(parse_range("bytes=95-200", 100), Ok(Some((95, 100))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-2", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=x-1", 100), Err(()));
    }

    #[test]
    fn long_names_are_cut_for_browsers() {
        let long = format!("{}.txt", "ü".repeat(125));
        let cut = suggested_name(&long);
        assert!(cut.len() <= NAME_BYTES && cut.ends_with(".txt"), "{cut}");
        assert!(cut.starts_with("üü"));
        assert_eq!(suggested_name("short.txt"), "short.txt");
    }

    #[test]
    fn only_pictures_are_shown_inline() {
        assert_eq!(inline_type("a.PNG"), Some("image/png"));
        assert_eq!(inline_type("a.svg"), None);
        assert_eq!(inline_type("a.html"), None);
    }

    #[test]
    fn dates_for_headers() {
        let t = Time {
            secs: 1_764_489_600,
            nanos: 0,
        };
        assert_eq!(httpdate(t), "Sun, 30 Nov 2025 08:00:00 GMT");
    }

    #[test]
    fn archive_names_cannot_climb_or_split() {
        assert_eq!(archive_name(".."), "%2E%2E");
        assert_eq!(archive_name("a\\b"), "a%5Cb");
        assert_eq!(archive_name("a/b"), "a%2Fb");
    }
}
