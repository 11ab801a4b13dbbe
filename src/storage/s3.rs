//! Images in an S3-compatible bucket, named `s3://BUCKET/KEY`: ranged GETs for reads, object
//! listings for finding a chain's parents.
//!
//! Settings come the usual way: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION` (or `AWS_DEFAULT_REGION`), `AWS_ENDPOINT_URL_S3` or
//! `AWS_ENDPOINT_URL`, then the profile (`AWS_PROFILE`, else `default`) of the shared files
//! `~/.aws/credentials` and `~/.aws/config`; `--s3-endpoint` overrides the endpoint. With an
//! endpoint given, requests use path-style URLs (`ENDPOINT/BUCKET/KEY`), which every
//! S3-compatible server answers; without one, AWS's virtual-hosted URLs.

use crate::error::{Error, Result};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The URL scheme of images in a bucket.
pub const SCHEME: &str = "s3://";

/// How long a signed request stays valid: long enough for one request and its retries.
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// Attempts per request when the server answers 5xx or the connection fails; the waits
/// between them double from [`FIRST_BACKOFF`] (0.25 + 0.5 + 1 + 2 s in all).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

static ENDPOINT_OVERRIDE: OnceLock<String> = OnceLock::new();

/// Sets the endpoint given on the command line (`--s3-endpoint`), before any request.
pub fn set_endpoint(url: &str) {
    let _ = ENDPOINT_OVERRIDE.set(url.to_string());
}

/// `s3://BUCKET/KEY` split, or None when `path` is not such a URL.
pub fn parse(path: &Path) -> Option<(String, String)> {
    let s = path.to_str()?.strip_prefix(SCHEME)?;
    let (bucket, key) = s.split_once('/').unwrap_or((s, ""));
    Some((bucket.to_string(), key.to_string()))
}

/// Whether `path` names an object in a bucket.
pub fn is_url(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.starts_with(SCHEME))
}

/// The connection to one bucket, shared by every object of it the process opens.
struct Client {
    bucket: Bucket,
    credentials: Option<Credentials>,
    agent: ureq::Agent,
}

/// One client per bucket for the whole process: a chain's images share its connections.
fn client(bucket: &str, url: &Path) -> Result<Arc<Client>> {
    static CLIENTS: OnceLock<Mutex<HashMap<String, Arc<Client>>>> = OnceLock::new();
    let mut map = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(c) = map.get(bucket) {
        return Ok(c.clone());
    }
    let settings = Settings::load();
    let (endpoint, style) = match &settings.endpoint {
        Some(e) => (e.clone(), UrlStyle::Path),
        None => (
            format!("https://s3.{}.amazonaws.com", settings.region),
            UrlStyle::VirtualHost,
        ),
    };
    let bad = |why: String| Error::Invalid(format!("{}: {why}", url.display()));
    let endpoint_url = url::Url::parse(&endpoint)
        .map_err(|e| bad(format!("the S3 endpoint `{endpoint}` is not a URL ({e})")))?;
    let b = Bucket::new(
        endpoint_url,
        style,
        bucket.to_string(),
        settings.region.clone(),
    )
    .map_err(|e| {
        bad(format!(
            "cannot address bucket `{bucket}` at {endpoint}: {e:?}"
        ))
    })?;
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .max_idle_connections_per_host(16)
            .build(),
    );
    let c = Arc::new(Client {
        bucket: b,
        credentials: settings.credentials,
        agent,
    });
    map.insert(bucket.to_string(), c.clone());
    Ok(c)
}

/// Endpoint, region and credentials, from the environment and the shared AWS files.
struct Settings {
    endpoint: Option<String>,
    region: String,
    credentials: Option<Credentials>,
}

impl Settings {
    fn load() -> Settings {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let home = env("HOME")
            .or_else(|| env("USERPROFILE"))
            .map(PathBuf::from);
        let shared = |var: &str, name: &str, section: String| -> HashMap<String, String> {
            let path = env(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)));
            path.and_then(|p| ini::Ini::load_from_file(p).ok())
                .and_then(|f| {
                    f.section(Some(section)).map(|s| {
                        s.iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    })
                })
                .unwrap_or_default()
        };
        let creds = shared(
            "AWS_SHARED_CREDENTIALS_FILE",
            "credentials",
            profile.clone(),
        );
        let config = shared(
            "AWS_CONFIG_FILE",
            "config",
            if profile == "default" {
                profile.clone()
            } else {
                format!("profile {profile}")
            },
        );
        let pick = |vars: &[&str], key: &str| -> Option<String> {
            vars.iter()
                .find_map(|v| env(v))
                .or_else(|| creds.get(key).cloned())
                .or_else(|| config.get(key).cloned())
        };
        let credentials = match (
            pick(&["AWS_ACCESS_KEY_ID"], "aws_access_key_id"),
            pick(&["AWS_SECRET_ACCESS_KEY"], "aws_secret_access_key"),
        ) {
            (Some(id), Some(secret)) => {
                Some(match pick(&["AWS_SESSION_TOKEN"], "aws_session_token") {
                    Some(t) => Credentials::new_with_token(id, secret, t),
                    None => Credentials::new(id, secret),
                })
            }
            _ => None,
        };
        Settings {
            endpoint: ENDPOINT_OVERRIDE
                .get()
                .cloned()
                .or_else(|| pick(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"], "endpoint_url")),
            region: pick(&["AWS_REGION", "AWS_DEFAULT_REGION"], "region")
                .unwrap_or_else(|| "us-east-1".into()),
            credentials,
        }
    }
}

/// An object opened for reading: its size and entity tag as they were when it was opened.
/// Every read asks for that entity tag, so an object replaced under an open chain fails
/// its reads instead of mixing two images.
pub struct Object {
    client: Arc<Client>,
    key: String,
    url: PathBuf,
    /// Every read is pinned to it (`If-Match`), so that an object replaced while it is
    /// open fails its reads instead of mixing two images.
    etag: String,
    len: u64,
    /// Pages of the object read for small reads ([`PAGE`]).
    pages: quick_cache::sync::Cache<u64, Arc<[u8]>>,
}

/// Small reads (block hashes, metadata chunks, which lie together, parts of the index) are
/// served from whole pages of this size, each fetched once: a request costs milliseconds,
/// and change detection and a filesystem walk make many small reads close together.
const PAGE: u64 = 256 << 10;
/// Pages kept per object (16 MiB).
const PAGES: usize = 64;

/// The client of `url`'s bucket and the object key, or an error if `url` names no object.
fn object_client(url: &Path) -> Result<(Arc<Client>, String)> {
    let (bucket, key) = parse(url).expect("called with s3:// URLs");
    if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
        return Err(Error::Invalid(format!(
            "{}: not an object URL (expected s3://BUCKET/KEY)",
            url.display()
        )));
    }
    Ok((client(&bucket, url)?, key))
}

impl Object {
    /// Looks the object up: its size and entity tag. A GET of its first byte rather than
    /// a HEAD, because an error answer to HEAD has no body, and only the body's code tells
    /// a missing bucket from a missing object, or a wrong secret from a missing permission.
    pub fn open(url: &Path) -> Result<Object> {
        let (client, key) = object_client(url)?;
        let mut resp = first_byte(&client, &key, url, &[416])
            .map_err(|e| Error::io(url, "cannot open image", e))?;
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        // `bytes 0-0/LEN`; an empty object cannot satisfy the range (416) and has length 0.
        let len = if resp.status().as_u16() == 416 {
            Some(0)
        } else {
            header("content-range")
                .and_then(|v| v.rsplit_once('/').and_then(|(_, n)| n.parse().ok()))
        }
        .ok_or_else(|| {
            Error::io(
                url,
                "cannot open image",
                io::Error::other("the server gave no object size"),
            )
        })?;
        let etag = header("etag").ok_or_else(|| {
            Error::io(
                url,
                "cannot open image",
                io::Error::other(
                    "the server gave no entity tag (ETag), without which a replaced object \
                     cannot be told apart from the one opened",
                ),
            )
        })?;
        drain(&mut resp);
        Ok(Object {
            etag,
            client,
            key,
            url: url.to_path_buf(),
            len,
            pages: quick_cache::sync::Cache::new(PAGES),
        })
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The object's size when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Fills `buf` from `offset`: a small read from cached pages, a large one with one
    /// ranged GET (retried on server and network errors).
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        if (buf.len() as u64) < PAGE / 2 {
            let mut at = offset;
            while at < end {
                let n = at / PAGE;
                let page = self
                    .pages
                    .get_or_insert_with(&n, || -> io::Result<Arc<[u8]>> {
                        let start = n * PAGE;
                        let mut p =
                            vec![0u8; crate::le::clamp_len(self.len - start, PAGE as usize)];
                        self.fetch(&mut p, start)?;
                        Ok(p.into())
                    })?;
                let from = (at - n * PAGE) as usize;
                let take = ((end - at) as usize).min(page.len() - from);
                let to = (at - offset) as usize;
                buf[to..to + take].copy_from_slice(&page[from..from + take]);
                at += take as u64;
            }
            return Ok(());
        }
        self.fetch(buf, offset)
    }

    /// Fills `buf` from `offset` (inside the object) with one ranged GET.
    fn fetch(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        let signed = self
            .client
            .bucket
            .get_object(self.client.credentials.as_ref(), &self.key)
            .sign(SIGNED_FOR);
        let range = format!("bytes={offset}-{}", end - 1);
        send_and_read(&self.url, buf, || {
            self.client
                .agent
                .get(signed.as_str())
                .header("range", &range)
                .header("if-match", &self.etag)
                .call()
        })
    }
}

/// The objects directly under the "directory" `dir` (`s3://BUCKET/PREFIX`), as URLs, sorted.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let (bucket, prefix) = parse(dir).expect("called with s3:// URLs");
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix
    } else {
        format!("{prefix}/")
    };
    let client = client(&bucket, dir)?;
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut action = client.bucket.list_objects_v2(client.credentials.as_ref());
        action.with_prefix(prefix.as_str());
        action.with_delimiter("/");
        if let Some(t) = &token {
            action.with_continuation_token(t.as_str());
        }
        let signed = action.sign(SIGNED_FOR);
        let mut resp = send(dir, || client.agent.get(signed.as_str()).call())
            .map_err(|e| Error::io(dir, "cannot list", e))?;
        // A listing page is at most 1,000 keys: a few hundred KiB.
        let body = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| Error::io(dir, "cannot list", io::Error::other(e)))?;
        let page = rusty_s3::actions::ListObjectsV2::parse_response(&body).map_err(|e| {
            Error::io(
                dir,
                "cannot list",
                io::Error::other(format!("unreadable listing: {e}")),
            )
        })?;
        out.extend(
            page.contents
                .into_iter()
                .map(|c| PathBuf::from(format!("{SCHEME}{bucket}/{}", c.key))),
        );
        match page.next_continuation_token {
            // A server that hands back the token it was given would be listed forever.
            Some(t) if token.as_ref() == Some(&t) => {
                return Err(Error::io(
                    dir,
                    "cannot list",
                    io::Error::other("the server repeats its listing's continuation token"),
                ))
            }
            Some(t) => token = Some(t),
            None => break,
        }
    }
    out.sort();
    Ok(out)
}

/// Sends a request with retries and turns an unsuccessful answer into an error that says
/// what the user can do about it.
fn send(
    url: &Path,
    call: impl Fn() -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> io::Result<ureq::http::Response<ureq::Body>> {
    send_ok(url, &[], call)
}

/// [`send`], with the statuses in `also_ok` returned as answers rather than errors.
fn send_ok(
    url: &Path,
    also_ok: &[u16],
    call: impl Fn() -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> io::Result<ureq::http::Response<ureq::Body>> {
    let mut wait = FIRST_BACKOFF;
    let mut attempt = 1;
    // While the server is known to be unreachable, one attempt: a mount's many reads would
    // otherwise each wait through every retry before failing.
    let attempts = if unreachable_now() { 1 } else { ATTEMPTS };
    loop {
        let last = attempt >= attempts;
        match call() {
            Ok(resp) if resp.status().is_success() || also_ok.contains(&resp.status().as_u16()) => {
                UNREACHABLE_UNTIL.store(0, Ordering::Relaxed);
                return Ok(resp);
            }
            Ok(resp) if resp.status().is_server_error() && !last => {}
            Ok(mut resp) => return Err(status_error(url, &mut resp)),
            Err(e) if last || !transient(&e) => {
                if transient(&e) {
                    mark_unreachable();
                }
                return Err(transport_error(&e));
            }
            Err(_) => {}
        }
        std::thread::sleep(wait);
        wait *= 2;
        attempt += 1;
    }
}

/// Until when (milliseconds on [`clock`]) requests make one attempt: set when a request
/// failed to reach the server through all its attempts, cleared by any answer.
static UNREACHABLE_UNTIL: AtomicU64 = AtomicU64::new(0);
/// How long a server that could not be reached is taken to stay so.
const UNREACHABLE_FOR: Duration = Duration::from_secs(5);

/// Milliseconds since the first call.
fn clock() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let ms = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

fn unreachable_now() -> bool {
    clock() < UNREACHABLE_UNTIL.load(Ordering::Relaxed)
}

fn mark_unreachable() {
    let ms = u64::try_from(UNREACHABLE_FOR.as_millis()).unwrap_or(u64::MAX);
    UNREACHABLE_UNTIL.store(clock().saturating_add(ms), Ordering::Relaxed);
}

/// [`send`], then the body read into `buf`; a body cut short is retried like a failed
/// request.
fn send_and_read(
    url: &Path,
    buf: &mut [u8],
    call: impl Fn() -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> io::Result<()> {
    let mut wait = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let mut resp = send(url, &call)?;
        if resp.status().as_u16() != 206
            && buf.len() as u64 != resp.body().content_length().unwrap_or(0)
        {
            // A server that ignores the range would send the whole object.
            return Err(io::Error::other(
                "the server ignored the byte range asked for",
            ));
        }
        let mut reader = resp.body_mut().as_reader();
        match reader.read_exact(buf) {
            Ok(()) => {
                drain(&mut resp);
                return Ok(());
            }
            Err(e) if attempt == ATTEMPTS => return Err(e),
            Err(_) => {}
        }
        std::thread::sleep(wait);
        wait *= 2;
        attempt += 1;
    }
}

/// Network failures worth another attempt.
fn transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
    )
}

fn transport_error(e: &ureq::Error) -> io::Error {
    let kind = match e {
        ureq::Error::Timeout(_) => io::ErrorKind::TimedOut,
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            io::ErrorKind::ConnectionRefused
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("cannot reach the S3 server: {e}"))
}

/// The S3 error code in an error answer's XML body (`<Code>NoSuchKey</Code>`).
fn error_code(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.trim().to_string())
        .unwrap_or_default()
}

fn status_error(url: &Path, resp: &mut ureq::http::Response<ureq::Body>) -> io::Error {
    let status = resp.status().as_u16();
    let code = error_code(resp);
    let bucket = parse(url).map(|(b, _)| b).unwrap_or_default();
    let (kind, msg) = match (status, code.as_str()) {
        (404, "NoSuchBucket") => (
            io::ErrorKind::NotFound,
            format!("bucket `{bucket}` does not exist"),
        ),
        (404, _) => (io::ErrorKind::NotFound, "no such object".to_string()),
        (412, _) => (
            io::ErrorKind::Other,
            "the object was replaced since it was opened".to_string(),
        ),
        (301 | 400, "PermanentRedirect" | "AuthorizationHeaderMalformed")
        | (_, "IncorrectEndpoint") => (
            io::ErrorKind::Other,
            format!(
                "bucket `{bucket}` is in another region than the one configured (set AWS_REGION)"
            ),
        ),
        (403, "InvalidAccessKeyId" | "SignatureDoesNotMatch") | (401, _) => (
            io::ErrorKind::PermissionDenied,
            format!(
                "the server refused the credentials ({}): check AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY",
                if code.is_empty() {
                    status.to_string()
                } else {
                    code
                }
            ),
        ),
        (403, _) => (
            io::ErrorKind::PermissionDenied,
            format!(
                "access denied{}",
                if code.is_empty() {
                    String::new()
                } else {
                    format!(" ({code})")
                }
            ),
        ),
        _ => (
            io::ErrorKind::Other,
            format!(
                "the S3 server answered HTTP {status}{}",
                if code.is_empty() {
                    String::new()
                } else {
                    format!(" ({code})")
                }
            ),
        ),
    };
    io::Error::new(kind, msg)
}

/// Parts the uploaders send at once; with the part being filled, an upload holds at most
/// `UPLOADERS + 1` parts in memory.
const UPLOADERS: usize = 2;
/// S3's limit on parts per upload.
const MAX_PARTS: u32 = 10_000;

/// Size of part `number` (from 1): 8 MiB, doubling after every 1,000 parts up to 512 MiB.
/// Small images keep small buffers (24 MiB in all below 7.8 GiB), and the 10,000 parts S3
/// allows still hold 2.4 TiB.
fn part_size(number: u32) -> usize {
    let doublings = (number.saturating_sub(1) / 1000).min(6);
    (8usize << 20) << doublings
}

/// What the uploader threads share with the writer.
#[derive(Default)]
struct Parts {
    /// Entity tags by part number - 1.
    etags: Vec<Option<String>>,
    /// The first failure; later parts are dropped unsent.
    error: Option<io::Error>,
}

/// An object being written with a multipart upload. It appears in the bucket only when
/// [`Upload::complete`] succeeds: readers never see a partial object. Dropped before
/// that, the upload is aborted; a run that was killed instead leaves an incomplete upload,
/// which the next upload of the same key aborts.
pub struct Upload {
    client: Arc<Client>,
    key: String,
    url: PathBuf,
    id: String,
    buf: Vec<u8>,
    /// Parts handed to the uploaders.
    parts: u32,
    tx: Option<std::sync::mpsc::SyncSender<(u32, Vec<u8>)>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    shared: Arc<Mutex<Parts>>,
    /// Where bytes go after [`Upload::hold`], and the object offset it starts at.
    held: Option<(u64, std::fs::File)>,
    written: u64,
    completed: bool,
}

impl Upload {
    /// Starts writing `url`. An existing object is refused unless `force`.
    pub fn create(url: &Path, force: bool) -> Result<Upload> {
        let (client, key) = object_client(url)?;
        if !force && exists(&client, &key, url)? {
            return Err(Error::Invalid(format!(
                "{}: already exists; use --force to replace it",
                url.display()
            )));
        }
        abort_stale(&client, &key, url);
        let signed = client
            .bucket
            .create_multipart_upload(client.credentials.as_ref(), &key)
            .sign(SIGNED_FOR);
        let body = send(url, || client.agent.post(signed.as_str()).send_empty())
            .and_then(|mut r| read_small(&mut r))
            .map_err(|e| Error::io(url, "cannot start the upload of", e))?;
        let id = rusty_s3::actions::CreateMultipartUpload::parse_response(&body)
            .map_err(|e| {
                Error::io(
                    url,
                    "cannot start the upload of",
                    io::Error::other(format!("unreadable answer: {e}")),
                )
            })?
            .upload_id()
            .to_string();
        let (tx, rx) = std::sync::mpsc::sync_channel::<(u32, Vec<u8>)>(0);
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Mutex::new(Parts::default()));
        let workers = (0..UPLOADERS)
            .map(|_| {
                let (rx, shared, client) = (rx.clone(), shared.clone(), client.clone());
                let (key, id, url) = (key.clone(), id.clone(), url.to_path_buf());
                std::thread::spawn(move || loop {
                    let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((number, data)) = next else { return };
                    if lock(&shared).error.is_some() {
                        continue;
                    }
                    let got = upload_part(&client, &key, &id, &url, number, &data);
                    let mut s = lock(&shared);
                    match got {
                        Ok(tag) => {
                            let i = usize::try_from(number - 1).unwrap_or(usize::MAX);
                            if s.etags.len() <= i {
                                s.etags.resize(i + 1, None);
                            }
                            s.etags[i] = Some(tag);
                        }
                        Err(e) => {
                            s.error.get_or_insert(e);
                        }
                    }
                })
            })
            .collect();
        Ok(Upload {
            client,
            key,
            url: url.to_path_buf(),
            id,
            buf: Vec::new(),
            parts: 0,
            tx: Some(tx),
            workers,
            shared,
            held: None,
            written: 0,
            completed: false,
        })
    }

    /// Bytes written so far (sent, queued or held).
    pub fn position(&self) -> u64 {
        self.written
    }

    /// From here on, bytes are kept in a local temporary file instead of being sent, until
    /// [`Upload::release`] sends them or [`Upload::discard`] drops them: what follows the
    /// chunk records (block hashes, index, trailer) can then still be read, and replaced.
    pub fn hold(&mut self) -> io::Result<()> {
        if self.held.is_none() {
            self.held = Some((self.written, tempfile::tempfile()?));
        }
        Ok(())
    }

    /// The held bytes: the object offset they start at and the file holding them.
    pub fn held(&self) -> Option<(u64, &std::fs::File)> {
        self.held.as_ref().map(|(at, f)| (*at, f))
    }

    /// Drops the held bytes; writing continues where they started.
    pub fn discard(&mut self) {
        if let Some((at, _)) = self.held.take() {
            self.written = at;
        }
    }

    /// Sends the held bytes, and writes go to the object again.
    pub fn release(&mut self) -> io::Result<()> {
        if let Some((at, mut f)) = self.held.take() {
            use std::io::Seek;
            self.written = at;
            f.seek(io::SeekFrom::Start(0))?;
            io::copy(&mut f, self)?;
        }
        Ok(())
    }

    fn failure(&self) -> Option<io::Error> {
        lock(&self.shared)
            .error
            .as_ref()
            .map(|e| io::Error::new(e.kind(), e.to_string()))
    }

    /// Hands the first `n` buffered bytes to the uploaders as the next part.
    fn send_part(&mut self, n: usize) -> io::Result<()> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        if self.parts >= MAX_PARTS {
            return Err(io::Error::other(format!(
                "the image is larger than an upload of {MAX_PARTS} parts can hold"
            )));
        }
        let rest = self.buf.split_off(n);
        let part = std::mem::replace(&mut self.buf, rest);
        self.parts += 1;
        let tx = self.tx.as_ref().expect("open until completed");
        if tx.send((self.parts, part)).is_err() {
            return Err(self
                .failure()
                .unwrap_or_else(|| io::Error::other("the uploader threads stopped")));
        }
        Ok(())
    }

    /// Sends what is left, waits for every part and completes the upload: only now does
    /// the object exist (replacing any object of that name).
    pub fn complete(mut self) -> Result<()> {
        let url = self.url.clone();
        let fail = |e| Error::io(&url, "cannot upload", e);
        self.release().map_err(fail)?;
        if !self.buf.is_empty() || self.parts == 0 {
            self.send_part(self.buf.len()).map_err(fail)?;
        }
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(e) = self.failure() {
            return Err(fail(e));
        }
        let etags: Vec<String> = {
            let s = lock(&self.shared);
            let n = usize::try_from(self.parts).unwrap_or(usize::MAX);
            if s.etags.len() != n || s.etags.iter().any(Option::is_none) {
                return Err(fail(io::Error::other("a part of the upload was lost")));
            }
            s.etags.iter().flatten().cloned().collect()
        };
        self.complete_with(etags)
    }

    /// Completes the upload with the parts whose entity tags are `etags`, in order.
    fn complete_with(mut self, etags: Vec<String>) -> Result<()> {
        let url = self.url.clone();
        let fail = |e| Error::io(&url, "cannot upload", e);
        let action = rusty_s3::actions::CompleteMultipartUpload::new(
            &self.client.bucket,
            self.client.credentials.as_ref(),
            &self.key,
            &self.id,
            etags.iter().map(String::as_str),
        );
        let signed = action.sign(SIGNED_FOR);
        let body = action.body();
        let answer = send(&url, || {
            self.client
                .agent
                .post(signed.as_str())
                .send(body.as_bytes())
        })
        .and_then(|mut r| read_small(&mut r))
        .map_err(fail)?;
        failed_in_body(&answer).map_err(fail)?;
        self.completed = true;
        Ok(())
    }
}

impl io::Write for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.written += data.len() as u64;
        if let Some((_, f)) = &mut self.held {
            f.write_all(data)?;
            return Ok(data.len());
        }
        self.buf.extend_from_slice(data);
        loop {
            let size = part_size(self.parts + 1);
            if self.buf.len() < size {
                break;
            }
            self.send_part(size)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.held {
            Some((_, f)) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.completed {
            return;
        }
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let signed = self
            .client
            .bucket
            .abort_multipart_upload(self.client.credentials.as_ref(), &self.key, &self.id)
            .sign(SIGNED_FOR);
        let _ = send(&self.url, || {
            self.client.agent.delete(signed.as_str()).call()
        });
    }
}

fn lock(shared: &Mutex<Parts>) -> std::sync::MutexGuard<'_, Parts> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends part `number` of upload `id`; returns its entity tag.
fn upload_part(
    client: &Client,
    key: &str,
    id: &str,
    url: &Path,
    number: u32,
    data: &[u8],
) -> io::Result<String> {
    let number = u16::try_from(number).map_err(|_| io::Error::other("too many parts"))?;
    let signed = client
        .bucket
        .upload_part(client.credentials.as_ref(), key, number, id)
        .sign(SIGNED_FOR);
    // A server that stops reading the body fails the part (which is then retried) instead
    // of holding the upload forever: a minute, plus the part at 256 KiB/s.
    let limit = Duration::from_secs(60 + data.len() as u64 / (256 << 10));
    let mut resp = send(url, || {
        client
            .agent
            .put(signed.as_str())
            .config()
            .timeout_send_body(Some(limit))
            .build()
            .send(data)
    })?;
    let tag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| io::Error::other("the server gave no entity tag for a part"));
    drain(&mut resp);
    tag
}

/// Reads the rest of an answer's body: only a body read to its end gives its connection
/// back to the pool, and a new connection per request costs a TCP (and TLS) handshake.
fn drain(resp: &mut ureq::http::Response<ureq::Body>) {
    let _ = io::copy(
        &mut resp.body_mut().as_reader().take(64 << 10),
        &mut io::sink(),
    );
}

/// Reads an answer's body (an XML document of a few KiB).
fn read_small(resp: &mut ureq::http::Response<ureq::Body>) -> io::Result<String> {
    resp.body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_string()
        .map_err(io::Error::other)
}

/// A GET of the first byte of object `key`, with the statuses in `also_ok` answered rather
/// than turned into errors.
fn first_byte(
    client: &Client,
    key: &str,
    url: &Path,
    also_ok: &[u16],
) -> io::Result<ureq::http::Response<ureq::Body>> {
    let signed = client
        .bucket
        .get_object(client.credentials.as_ref(), key)
        .sign(SIGNED_FOR);
    send_ok(url, also_ok, || {
        client
            .agent
            .get(signed.as_str())
            .header("range", "bytes=0-0")
            .call()
    })
}

/// Whether object `key` exists; a missing bucket is an error.
fn exists(client: &Client, key: &str, url: &Path) -> Result<bool> {
    let mut resp =
        first_byte(client, key, url, &[404, 416]).map_err(|e| Error::io(url, "cannot check", e))?;
    if resp.status().as_u16() != 404 {
        drain(&mut resp);
        return Ok(true);
    }
    if error_code(&mut resp) == "NoSuchBucket" {
        let bucket = parse(url).map(|(b, _)| b).unwrap_or_default();
        return Err(Error::io(
            url,
            "cannot write",
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("bucket `{bucket}` does not exist"),
            ),
        ));
    }
    Ok(false)
}

/// Aborts the incomplete uploads of `key` that killed runs left behind (their parts
/// would otherwise be kept, and billed, until the bucket's lifecycle rules remove them).
/// Best effort: a server that cannot list uploads keeps them.
fn abort_stale(client: &Client, key: &str, url: &Path) {
    let mut action = client.bucket.list_objects_v2(client.credentials.as_ref());
    // ListMultipartUploads is GET ?uploads on the bucket, which rusty-s3 has no action
    // for: the listing action's query is replaced.
    let q = action.query_mut();
    q.remove("list-type");
    q.remove("encoding-type");
    q.insert("uploads", "");
    q.insert("prefix", key);
    let signed = action.sign(SIGNED_FOR);
    let Ok(body) =
        send(url, || client.agent.get(signed.as_str()).call()).and_then(|mut r| read_small(&mut r))
    else {
        return;
    };
    for upload in body.split("<Upload>").skip(1) {
        let field = |name: &str| {
            upload
                .split_once(&format!("<{name}>"))
                .and_then(|(_, r)| r.split_once(&format!("</{name}>")))
                .map(|(v, _)| xml_unescape(v))
        };
        if let (Some(k), Some(id)) = (field("Key"), field("UploadId")) {
            if k == key {
                let signed = client
                    .bucket
                    .abort_multipart_upload(client.credentials.as_ref(), key, &id)
                    .sign(SIGNED_FOR);
                let _ = send(url, || client.agent.delete(signed.as_str()).call());
            }
        }
    }
}

/// The text of an XML element (the five predefined entities).
fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Whether the object `url` exists (a missing bucket is an error).
pub fn exists_url(url: &Path) -> Result<bool> {
    let (client, key) = object_client(url)?;
    exists(&client, &key, url)
}

/// Removes the object `url`.
pub fn delete(url: &Path) -> Result<()> {
    let (client, key) = object_client(url)?;
    let signed = client
        .bucket
        .delete_object(client.credentials.as_ref(), &key)
        .sign(SIGNED_FOR);
    send(url, || client.agent.delete(signed.as_str()).call())
        .map(|mut r| drain(&mut r))
        .map_err(|e| Error::io(url, "cannot remove", e))
}

/// The largest object one CopyObject request copies; larger ones are copied in parts.
const COPY_MAX: u64 = 5 << 30;
/// Bytes per part of a copy in parts.
const COPY_PART: u64 = 1 << 30;

/// Copies the object `from` to `to` in the same bucket, on the server (nothing is
/// downloaded). `to` is replaced in one step: readers see the old object or the new one.
pub fn copy(from: &Path, to: &Path) -> Result<()> {
    let (client, key) = object_client(to)?;
    let source = Object::open(from)?;
    let (bucket, from_key) = parse(from).expect("an object URL");
    let copy_source = format!(
        "/{bucket}/{}",
        percent_encoding::utf8_percent_encode(&from_key, COPY_SOURCE_SET)
    );
    let fail = |e| Error::io(to, "cannot copy to", e);
    // The copy is of the object opened here, which the caller has checked: if it was
    // replaced since, the server refuses the copy.
    let source_header = [
        ("x-amz-copy-source", copy_source.as_str()),
        ("x-amz-copy-source-if-match", source.etag.as_str()),
    ];
    if source.len <= COPY_MAX {
        let action = client.bucket.put_object(client.credentials.as_ref(), &key);
        return copy_request(&client, to, action, &source_header)
            .map(drop)
            .map_err(fail);
    }
    // A copy in parts: an upload whose parts are ranges of the source.
    let upload = Upload::create(to, true)?;
    let mut etags = Vec::new();
    let mut at = 0;
    while at < source.len {
        let end = (at + COPY_PART).min(source.len);
        let number =
            u16::try_from(etags.len() + 1).map_err(|_| fail(io::Error::other("too many parts")))?;
        let action =
            client
                .bucket
                .upload_part(client.credentials.as_ref(), &key, number, &upload.id);
        let range = format!("bytes={at}-{}", end - 1);
        let answer = copy_request(
            &client,
            to,
            action,
            &[
                source_header[0],
                source_header[1],
                ("x-amz-copy-source-range", range.as_str()),
            ],
        )
        .map_err(fail)?;
        let tag = answer
            .split_once("<ETag>")
            .and_then(|(_, r)| r.split_once("</ETag>"))
            .map(|(t, _)| xml_unescape(t))
            .ok_or_else(|| fail(io::Error::other("the server gave no entity tag for a part")))?;
        etags.push(tag);
        at = end;
    }
    upload.complete_with(etags)
}

/// Sends `action` (a PUT) with `headers` signed and sent; returns the answer's body.
fn copy_request<'a>(
    client: &Client,
    to: &Path,
    mut action: impl S3Action<'a>,
    headers: &[(&'a str, &'a str)],
) -> io::Result<String> {
    for (k, v) in headers {
        action.headers_mut().insert(*k, *v);
    }
    let signed = action.sign(SIGNED_FOR);
    let answer = send(to, || {
        let mut req = client.agent.put(signed.as_str());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send_empty()
    })
    .and_then(|mut r| read_small(&mut r))?;
    failed_in_body(&answer)?;
    Ok(answer)
}

/// Characters of a key escaped in `x-amz-copy-source` (all but unreserved ones and `/`).
const COPY_SOURCE_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// An error for an answer that reports a failure in its body (S3 may answer 200 and fail).
fn failed_in_body(answer: &str) -> io::Result<()> {
    if !answer.contains("<Error>") {
        return Ok(());
    }
    let code = answer
        .split_once("<Code>")
        .and_then(|(_, r)| r.split_once("</Code>"))
        .map_or("unknown", |(c, _)| c);
    Err(io::Error::other(format!(
        "the server reported a failure ({code})"
    )))
}
