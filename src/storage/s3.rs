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
    etag: Option<String>,
    len: u64,
}

impl Object {
    /// Looks the object up (HEAD): its size and entity tag.
    pub fn open(url: &Path) -> Result<Object> {
        let (bucket, key) = parse(url).expect("called with s3:// URLs");
        if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
            return Err(Error::Invalid(format!(
                "{}: not an object URL (expected s3://BUCKET/KEY)",
                url.display()
            )));
        }
        let client = client(&bucket, url)?;
        let signed = client
            .bucket
            .head_object(client.credentials.as_ref(), &key)
            .sign(SIGNED_FOR);
        let resp = send(url, || client.agent.head(signed.as_str()).call())
            .map_err(|e| Error::io(url, "cannot open image", e))?;
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let len = header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Error::io(
                    url,
                    "cannot open image",
                    io::Error::other("the server gave no object size"),
                )
            })?;
        Ok(Object {
            etag: header("etag"),
            client,
            key,
            url: url.to_path_buf(),
            len,
        })
    }

    /// The object's size when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Fills `buf` from `offset` with one ranged GET (retried on server and network errors).
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let signed = self
            .client
            .bucket
            .get_object(self.client.credentials.as_ref(), &self.key)
            .sign(SIGNED_FOR);
        let range = format!("bytes={offset}-{}", end - 1);
        send_and_read(&self.url, buf, || {
            let mut req = self
                .client
                .agent
                .get(signed.as_str())
                .header("range", &range);
            if let Some(tag) = &self.etag {
                req = req.header("if-match", tag);
            }
            req.call()
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
    let mut wait = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let last = attempt == ATTEMPTS;
        match call() {
            Ok(resp) if resp.status().is_success() => return Ok(resp),
            Ok(resp) if resp.status().is_server_error() && !last => {}
            Ok(mut resp) => return Err(status_error(url, &mut resp)),
            Err(e) if last || !transient(&e) => return Err(transport_error(&e)),
            Err(_) => {}
        }
        std::thread::sleep(wait);
        wait *= 2;
        attempt += 1;
    }
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
            Ok(()) => return Ok(()),
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
