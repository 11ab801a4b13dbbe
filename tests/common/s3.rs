//! A real S3-compatible object store for the tests, and an independent client for it.
//!
//! [`Garage::start`] runs a one-node Garage (<https://garagehq.deuxfleurs.fr>, an
//! S3-compatible object store; a separate program, never linked) in a temporary directory,
//! on free ports of 127.0.0.1, with one bucket ([`BUCKET`]) and one access key that may read
//! and write it. Dropping the [`Garage`] stops that server (its own process only) and
//! removes its directory. Objects are put and inspected with curl's SigV4 signing, never
//! with strata, so that a test compares strata with a second S3 client.
//!
//! A server can be killed or stopped mid-test ([`Garage::kill`], [`Garage::stop`]: its port
//! then refuses connections) and started again on its data ([`Garage::restart`]); a
//! [`SlowProxy`] in front of it makes it slow.
//!
//! While a thread holds a running [`Garage`], every [`super::strata`] command that thread
//! makes gets the server's connection settings in its environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`) and none of the caller's other
//! `AWS_*` settings, so tests running in parallel each talk to their own server.
//!
//! Garage is found on `PATH` or in cargo's bin directory (`$CARGO_HOME/bin`,
//! `~/.cargo/bin`); `tests/run-all.sh` installs it (`cargo install garage --locked --version
//! 2.5.0`). Without it (or curl) a test is skipped, or fails under `CI` (see
//! [`super::skip`]).

use super::skip;
use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The Garage release the tests are written against (`tests/run-all.sh` installs it).
pub const GARAGE_VERSION: &str = "2.5.0";
/// The S3 region the server is configured with (`s3_region`).
pub const REGION: &str = "garage";
/// The one bucket of a server.
pub const BUCKET: &str = "strata";
/// curl's `--aws-sigv4` provider string for this server.
const SIGV4: &str = "aws:amz:garage:s3";

thread_local! {
    /// The environment strata gets on this thread: the settings of the running server.
    static SETTINGS: RefCell<Option<Vec<(String, String)>>> = const { RefCell::new(None) };
}

/// Gives `c` the connection settings of the server this thread runs, if any (called by
/// [`super::strata`]).
pub fn apply_env(c: &mut Command) {
    SETTINGS.with(|s| {
        if let Some(vars) = &*s.borrow() {
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("AWS_") {
                    c.env_remove(k);
                }
            }
            for (k, v) in vars {
                c.env(k, v);
            }
        }
    });
}

/// A running one-node Garage with one bucket and one key; stopped on drop.
pub struct Garage {
    dir: tempfile::TempDir,
    bin: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    /// Keeps the S3 port of a stopped server bound (not listening), so that connections to
    /// it are refused and no other server takes it while the test runs.
    held_port: Option<OwnedFd>,
    port: u16,
    /// `http://127.0.0.1:PORT`, the S3 API.
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
    serial: Cell<u64>,
}

/// The `garage` binary of version [`GARAGE_VERSION`], or why there is none.
fn garage_binary() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("garage"))
                .collect()
        })
        .unwrap_or_default();
    // Where `cargo install` puts it, should PATH not have it.
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        candidates.push(Path::new(&cargo_home).join("bin/garage"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/garage"));
    }
    let mut seen = Vec::new();
    for c in candidates.into_iter().filter(|c| c.is_file()) {
        let o = Command::new(&c).arg("--version").output();
        let v = o
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if v.split(|ch: char| !ch.is_ascii_digit() && ch != '.')
            .any(|w| w == GARAGE_VERSION)
        {
            return Ok(c);
        }
        seen.push(format!("{} ({v})", c.display()));
    }
    Err(if seen.is_empty() {
        format!("needs garage {GARAGE_VERSION} (tests/run-all.sh installs it)")
    } else {
        format!(
            "needs garage {GARAGE_VERSION}, found only {} (tests/run-all.sh installs it)",
            seen.join(", ")
        )
    })
}

/// `n` distinct free TCP ports of 127.0.0.1 (bound together, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Binds `port` of 127.0.0.1 without listening: connections to it are refused, and no other
/// process can take it. `None` if it cannot be bound.
fn hold_port(port: u16) -> Option<OwnedFd> {
    // SAFETY: plain socket calls on a descriptor this function owns; the address is a
    // properly initialised sockaddr_in of the size given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let r = libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        (r == 0).then_some(fd)
    }
}

/// A port of 127.0.0.1 where nothing listens, held for as long as the returned descriptor
/// lives (connections are refused).
pub fn refused_port() -> (u16, OwnedFd) {
    for _ in 0..20 {
        let port = free_ports(1)[0];
        if let Some(fd) = hold_port(port) {
            return (port, fd);
        }
    }
    panic!("no port of 127.0.0.1 could be held");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts `garage -c CONFIG server`, logging to `DIR/server.log` (appended to: a restarted
/// server's log follows the first one's).
fn spawn_server(bin: &Path, config: &Path, dir: &Path) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(config)
        .arg("server")
        .env("RUST_LOG", "garage=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: prctl is async-signal-safe and touches only the child. The server dies
    // with the test thread that started it, even if the test process is killed.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("{}: {e}", bin.display()))
}

/// `s` percent-encoded for a URL's query or path (RFC 3986 unreserved characters kept;
/// `/` too when `keep_slash`).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text between `<tag>` and `</tag>` of each occurrence in `xml`, entities decoded.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split_once(&close).map(|(v, _)| v))
        .map(|v| {
            v.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}

impl Garage {
    /// Starts a server for `test`, or skips the test (`None`; under `CI` it fails instead)
    /// when garage or curl is missing.
    pub fn start(test: &str) -> Option<Garage> {
        let bin = match garage_binary() {
            Ok(b) => b,
            Err(why) => {
                skip(test, &why);
                return None;
            }
        };
        if Command::new("curl").arg("--version").output().is_err() {
            skip(test, "needs curl");
            return None;
        }
        // A port taken between choosing and binding it makes the start fail: try again.
        let mut why = String::new();
        for _ in 0..3 {
            match Garage::try_start(&bin) {
                Ok(g) => {
                    let vars = g.settings();
                    SETTINGS.with(|s| *s.borrow_mut() = Some(vars));
                    return Some(g);
                }
                Err(e) => why = e,
            }
        }
        panic!("garage did not start: {why}");
    }

    fn try_start(bin: &Path) -> Result<Garage, String> {
        let dir = tempfile::Builder::new()
            .prefix("strata-test-s3-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for sub in ["meta", "data"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        let ports = free_ports(3);
        let (s3, rpc, admin) = (ports[0], ports[1], ports[2]);
        let mut secret = [0u8; 32];
        Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").unwrap(),
            &mut secret,
        )
        .unwrap();
        let config = d.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                meta = d.join("meta").display(),
                data = d.join("data").display(),
                secret = hex(&secret),
            ),
        )
        .unwrap();
        let child = spawn_server(bin, &config, d)?;
        let mut g = Garage {
            dir,
            bin: bin.to_path_buf(),
            config,
            child: Some(child),
            held_port: None,
            port: s3,
            endpoint: format!("http://127.0.0.1:{s3}"),
            key_id: String::new(),
            secret: String::new(),
            serial: Cell::new(0),
        };

        // The node answers on its RPC port: lay out one node of 1 GB, make the bucket and
        // a key that may read and write it.
        let start = Instant::now();
        let node = loop {
            if let Ok(o) = g.cli_output(&["node", "id", "-q"]) {
                if let Some(id) = o.split('@').next().filter(|id| !id.is_empty()) {
                    break id.to_string();
                }
            }
            if let Some(status) = g.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("garage exited ({status}): {}", g.log()));
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!("garage did not answer in 30 s: {}", g.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
        g.cli(&["layout", "apply", "--version", "1"])?;
        g.cli(&["bucket", "create", BUCKET])?;
        let key = g.cli(&["key", "create", "strata-key"])?;
        let field = |name: &str| {
            key.lines()
                .find(|l| l.trim_start().starts_with(name))
                .and_then(|l| l.split_whitespace().last())
                .map(str::to_string)
        };
        match (field("Key ID"), field("Secret key")) {
            (Some(id), Some(secret)) => (g.key_id, g.secret) = (id, secret),
            _ => return Err(format!("no key in: {key}")),
        }
        g.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            BUCKET,
            "--key",
            "strata-key",
        ])?;
        g.wait_served()?;
        Ok(g)
    }

    /// Waits until the S3 API serves the bucket.
    fn wait_served(&self) -> Result<(), String> {
        let start = Instant::now();
        while self.request(&["-I"], &self.http_url(BUCKET, "")).0 != 200 {
            if start.elapsed() > Duration::from_secs(15) {
                return Err(format!("the bucket is not served: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// `garage -c CONFIG ARGS`: its stdout, or its output as the error.
    fn cli_output(&self, args: &[&str]) -> Result<String, String> {
        let o = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() {
            Ok(out)
        } else {
            Err(format!(
                "garage {args:?}: {out} {}",
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        self.cli_output(args)
            .map_err(|e| format!("{e}\nserver log: {}", self.log()))
    }

    /// The end of the server's log, for messages.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The environment a client of this server gets (see [`apply_env`]). The shared AWS
    /// configuration files point nowhere, and nothing asks a cloud metadata service.
    pub fn settings(&self) -> Vec<(String, String)> {
        let none = self.dir.path().join("no-aws-files");
        [
            ("AWS_ACCESS_KEY_ID", self.key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_CONFIG_FILE", none.to_str().unwrap()),
            ("AWS_SHARED_CREDENTIALS_FILE", none.to_str().unwrap()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("no_proxy", "127.0.0.1,localhost"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// `s3://BUCKET/KEY`, as strata takes it.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{BUCKET}/{key}")
    }

    /// The path-style HTTP address of `key` in `bucket` (`key` empty: the bucket).
    pub fn http_url(&self, bucket: &str, key: &str) -> String {
        if key.is_empty() {
            format!("{}/{bucket}", self.endpoint)
        } else {
            format!("{}/{bucket}/{}", self.endpoint, uri_encode(key, true))
        }
    }

    /// A signed request by curl with `args`: the HTTP status (0: no answer) and the body
    /// (the headers for `-I`).
    fn request(&self, args: &[&str], url: &str) -> (u16, Vec<u8>) {
        self.request_as(&self.key_id, &self.secret, args, url)
    }

    /// [`Garage::request`] signed with other credentials. A 503 is asked again (up to five
    /// times): a loaded one-node Garage answers so when its metadata database is busy
    /// ("database is locked"), as S3 clients are told to expect.
    pub fn request_as(&self, id: &str, secret: &str, args: &[&str], url: &str) -> (u16, Vec<u8>) {
        for _ in 0..4 {
            let (code, data) = self.request_once(id, secret, args, url);
            if code != 503 {
                return (code, data);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        self.request_once(id, secret, args, url)
    }

    fn request_once(&self, id: &str, secret: &str, args: &[&str], url: &str) -> (u16, Vec<u8>) {
        let n = self.serial.get();
        self.serial.set(n + 1);
        let body = self.dir.path().join(format!("curl-{n}.out"));
        let o = Command::new("curl")
            .args(["-sS", "--noproxy", "*", "--max-time", "60"])
            .args(["--aws-sigv4", SIGV4])
            .arg("--user")
            .arg(format!("{id}:{secret}"))
            // Garage wants the payload hash header, which this curl does not add itself.
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .args(args)
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code}"])
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .expect("curl runs");
        let code = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let data = std::fs::read(&body).unwrap_or_default();
        let _ = std::fs::remove_file(&body);
        (code, data)
    }

    /// Uploads `file` as `key`; checks the server holds all of it.
    pub fn put(&self, key: &str, file: &Path) {
        let url = self.http_url(BUCKET, key);
        let (code, body) = self.request(&["-T", file.to_str().unwrap()], &url);
        assert_eq!(code, 200, "PUT {url}: {}", String::from_utf8_lossy(&body));
        assert_eq!(
            self.head(key),
            Some(std::fs::metadata(file).unwrap().len()),
            "{key}: stored size"
        );
    }

    /// Uploads `data` as `key`.
    pub fn put_bytes(&self, key: &str, data: &[u8]) {
        let n = self.serial.get();
        self.serial.set(n + 1);
        let f = self.dir.path().join(format!("upload-{n}"));
        std::fs::write(&f, data).unwrap();
        self.put(key, &f);
        std::fs::remove_file(&f).unwrap();
    }

    /// The object `key`, or `None` if there is none.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let url = self.http_url(BUCKET, key);
        match self.request(&[], &url) {
            (200, body) => Some(body),
            (404, _) => None,
            (code, body) => panic!("GET {url}: {code} {}", String::from_utf8_lossy(&body)),
        }
    }

    /// Bytes `start..end` of the object `key` (a ranged GET).
    pub fn get_range(&self, key: &str, start: u64, end: u64) -> Vec<u8> {
        let url = self.http_url(BUCKET, key);
        let range = format!("{start}-{}", end - 1);
        let (code, body) = self.request(&["-r", &range], &url);
        assert_eq!(code, 206, "GET {url} bytes {range}");
        body
    }

    /// The size of the object `key`, or `None` if there is none.
    pub fn head(&self, key: &str) -> Option<u64> {
        let url = self.http_url(BUCKET, key);
        match self.request(&["-I"], &url) {
            (200, headers) => String::from_utf8_lossy(&headers).lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            }),
            (404, _) => None,
            (code, _) => panic!("HEAD {url}: {code}"),
        }
    }

    /// Removes the object `key`.
    pub fn delete(&self, key: &str) {
        let url = self.http_url(BUCKET, key);
        let (code, body) = self.request(&["-X", "DELETE"], &url);
        assert_eq!(
            code,
            204,
            "DELETE {url}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// (key, size, etag) of every object whose key starts with `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64, String)> {
        let url = format!(
            "{}?list-type=2&prefix={}",
            self.http_url(BUCKET, ""),
            uri_encode(prefix, false)
        );
        let (code, body) = self.request(&[], &url);
        let xml = String::from_utf8_lossy(&body);
        assert_eq!(code, 200, "LIST {url}: {xml}");
        assert!(
            xml.contains("<IsTruncated>false</IsTruncated>"),
            "listing truncated: {xml}"
        );
        xml.split("<Contents>")
            .skip(1)
            .map(|c| {
                let one = |tag: &str| {
                    xml_values(c, tag)
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| panic!("no {tag} in {c}"))
                };
                (one("Key"), one("Size").parse().unwrap(), one("ETag"))
            })
            .collect()
    }

    /// The incomplete multipart uploads of keys starting with `prefix`: (key, upload id),
    /// from ListMultipartUploads.
    pub fn uploads(&self, prefix: &str) -> Vec<(String, String)> {
        // curl signs the query as written: its parameters in canonical (sorted) order.
        let url = format!(
            "{}?prefix={}&uploads=",
            self.http_url(BUCKET, ""),
            uri_encode(prefix, false)
        );
        let (code, body) = self.request(&[], &url);
        let xml = String::from_utf8_lossy(&body);
        assert_eq!(code, 200, "LIST UPLOADS {url}: {xml}");
        assert!(
            xml.contains("<IsTruncated>false</IsTruncated>"),
            "listing truncated: {xml}"
        );
        xml.split("<Upload>")
            .skip(1)
            .map(|u| {
                let one = |tag: &str| {
                    xml_values(u, tag)
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| panic!("no {tag} in {u}"))
                };
                (one("Key"), one("UploadId"))
            })
            .collect()
    }

    /// How many parts the incomplete upload `id` of `key` holds (ListParts).
    pub fn parts(&self, key: &str, id: &str) -> usize {
        let url = format!(
            "{}?uploadId={}",
            self.http_url(BUCKET, key),
            uri_encode(id, false)
        );
        let (code, body) = self.request(&[], &url);
        let xml = String::from_utf8_lossy(&body);
        match code {
            200 => xml.matches("<Part>").count(),
            // Completed or aborted meanwhile.
            404 => 0,
            _ => panic!("LIST PARTS {url}: {code} {xml}"),
        }
    }

    /// Kills the server at once (SIGKILL: no request it was answering is finished) and
    /// keeps its S3 port as [`Garage::stop`] does.
    pub fn kill(&mut self) {
        self.halt(libc::SIGKILL);
    }

    /// Stops the server (its own process only) and keeps its S3 port bound without
    /// listening, so that strata's connections to it are refused. The settings stay.
    pub fn stop(&mut self) {
        self.halt(libc::SIGTERM);
    }

    /// Starts the stopped (or killed) server again, on the same ports with the same data:
    /// its objects, bucket and key are back. Returns once the bucket is served.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.held_port = None;
        let child = spawn_server(&self.bin, &self.config, self.dir.path())
            .unwrap_or_else(|e| panic!("garage did not start again: {e}"));
        self.child = Some(child);
        if let Err(e) = self.wait_served() {
            panic!("garage restarted: {e}");
        }
    }

    fn halt(&mut self, signal: libc::c_int) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our own child,
            // not yet waited for, so it cannot have been reused.
            unsafe {
                libc::kill(c.id() as libc::pid_t, signal);
            }
            let start = Instant::now();
            while c.try_wait().unwrap().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.held_port.is_none() {
                self.held_port = hold_port(self.port);
            }
        }
    }

    /// The temporary directory of the server (its data and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        SETTINGS.with(|s| {
            let mut s = s.borrow_mut();
            let ours = s.as_ref().is_some_and(|v| {
                v.iter()
                    .any(|(k, v)| k == "AWS_ENDPOINT_URL" && *v == self.endpoint)
            });
            if ours {
                *s = None;
            }
        });
        self.stop();
    }
}

/// A TCP proxy on 127.0.0.1 in front of a server, slowing down what the server sends: each
/// read of at most `chunk` bytes of its answers is held back `delay` before it is passed on
/// (what clients send goes through at once). Every connection is its own; dropping the
/// proxy closes them all. It notes the byte ranges clients ask for.
pub struct SlowProxy {
    /// `http://127.0.0.1:PORT`, where clients connect.
    pub endpoint: String,
    port: u16,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    down: Arc<AtomicU64>,
    ranges: Arc<Mutex<Vec<(u64, u64)>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

/// The byte ranges (`start..end`) of the `Range: bytes=A-B` headers in `data`, a piece of
/// what a client sent (request heads are small: one read holds a whole one).
fn ranges_asked(data: &[u8]) -> Vec<(u64, u64)> {
    String::from_utf8_lossy(data)
        .split("\r\n")
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            if !name.trim().eq_ignore_ascii_case("range") {
                return None;
            }
            let (a, b) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
            Some((a.parse().ok()?, b.parse::<u64>().ok()? + 1))
        })
        .collect()
}

impl SlowProxy {
    /// Starts forwarding to `endpoint` (`http://127.0.0.1:PORT`).
    pub fn start(endpoint: &str, chunk: usize, delay: Duration) -> SlowProxy {
        let upstream: SocketAddr = endpoint
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{endpoint}: not http://IP:PORT"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut p = SlowProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            stop: Arc::default(),
            streams: Arc::default(),
            down: Arc::default(),
            ranges: Arc::default(),
            accept: None,
        };
        let (stop, streams) = (p.stop.clone(), p.streams.clone());
        let (down, ranges) = (p.down.clone(), p.ranges.clone());
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let clone = |s: &TcpStream| s.try_clone().unwrap();
                streams
                    .lock()
                    .unwrap()
                    .extend([clone(&client), clone(&server)]);
                // Client to server: as it comes, its ranges noted.
                let (mut from, mut to, ranges) = (clone(&client), clone(&server), ranges.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        ranges.lock().unwrap().extend(ranges_asked(&buf[..n]));
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
                // Server to client: `chunk` bytes at most, then `delay`.
                let (mut from, mut to, down) = (server, client, down.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; chunk];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        std::thread::sleep(delay);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        down.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        });
        p.accept = Some(accept);
        p
    }

    /// The byte ranges clients asked for so far (`start..end`), in the order asked.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.ranges.lock().unwrap().clone()
    }

    /// Bytes passed on from the server to clients so far.
    pub fn bytes_down(&self) -> u64 {
        self.down.load(Ordering::SeqCst)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
