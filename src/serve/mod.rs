//! `strata serve`: every backup in a web page, read-only, on a local port.
//!
//! One process serves the page (files embedded from `assets/`, no build step), a JSON API
//! over the same points the CLI opens ([`crate::point`]), and downloads: a file with HTTP
//! ranges, a directory as a streamed zip or tar.
//!
//! axum (over hyper and tokio) is the server: it is the most used and best kept Rust HTTP
//! stack, and its middleware makes the access checks one function every request passes.
//! Filesystem reads are blocking and run on tokio's blocking pool; the async side only
//! moves bytes.
//!
//! Access: a random token is printed in the URL; the first visit trades it for a cookie.
//! Every request needs one of the two. The Host header must name this server (an
//! attacker's DNS name pointing at 127.0.0.1 is refused), and a cross-site Origin is
//! refused. Nothing but the images found at start-up in the served directories and chains
//! can be named: a request names an image by its UUID and a path inside it, never a path
//! on this machine.

mod api;
mod download;
mod points;

use crate::chain::ResolveOptions;
use crate::error::{Error, Result};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// What `strata serve` was asked to do.
pub struct ServeOptions {
    /// Directories of images, and images (each with its chain).
    pub roots: Vec<PathBuf>,
    /// Address to listen on; 127.0.0.1 and a free port by default.
    pub listen: Option<SocketAddr>,
    /// Host names besides the address itself that the server answers to.
    pub allow_hosts: Vec<String>,
    pub resolve: ResolveOptions,
    /// Memory ceiling of decoded data over all open images.
    pub cache_bytes: u64,
}

/// Shared by every request.
pub(crate) struct App {
    token: String,
    cookie: String,
    /// Accepted values of the Host header (lower case, with the port).
    hosts: Vec<String>,
    /// Listening on every address: any IP literal with our port is accepted as Host.
    any_ip: bool,
    port: u16,
    pub(crate) points: points::Points,
}

/// A fresh random token: two v4 UUIDs' random bits (244), as hex.
fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Compares without stopping at the first differing byte, so response times do not leak
/// how much of a guessed token is right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs the server until Ctrl-C. Prints the URL to open on stdout.
pub fn serve(opts: ServeOptions) -> Result<()> {
    if opts.roots.is_empty() {
        return Err(Error::Invalid(
            "nothing to serve: name directories of images or images".into(),
        ));
    }
    let points = points::Points::new(opts.roots.clone(), opts.resolve.clone(), opts.cache_bytes)?;
    points.unlock_all();
    crate::container::keyring::stop_asking();
    let listen = opts
        .listen
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::io("tokio runtime", "cannot start", e))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::io(listen.to_string(), "cannot listen on", e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io(listen.to_string(), "cannot listen on", e))?;
        let port = local.port();
        let token = new_token();
        let mut hosts = vec![
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        let ip = local.ip();
        if !ip.is_unspecified() {
            hosts.push(host_of(ip, port));
        }
        hosts.extend(
            opts.allow_hosts
                .iter()
                .map(|h| format!("{}:{port}", h.to_ascii_lowercase())),
        );
        let shown = if ip.is_unspecified() || ip.is_loopback() {
            format!("127.0.0.1:{port}")
        } else {
            host_of(ip, port)
        };
        if !ip.is_loopback() {
            eprintln!(
                "strata: warning: listening on {local}: anyone who can reach this address and \
                 has the URL below can read every served image (the token is its only guard; \
                 the connection is not encrypted)"
            );
        }
        let app = Arc::new(App {
            cookie: format!("strata_token_{port}"),
            token: token.clone(),
            hosts,
            any_ip: ip.is_unspecified(),
            port,
            points,
        });
        println!("http://{shown}/?token={token}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        eprintln!(
            "strata: serving {} image(s); Ctrl-C stops",
            app.points.count()
        );
        axum::serve(listener, router(app))
            .with_graceful_shutdown(interrupted())
            .await
            .map_err(|e| Error::io(local.to_string(), "cannot serve on", e))
    })
}

fn host_of(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Resolves once Ctrl-C was pressed (the CLI's handler sets a flag). The server then stops
/// taking requests and waits for those under way, but not for long: a big download would
/// otherwise keep it alive for as long as it lasts.
async fn interrupted() {
    while crate::progress::check_interrupt().is_ok() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    eprintln!("strata: stopping");
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(3));
        std::process::exit(0);
    });
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/assets/app.js", get(|| asset("text/javascript", APP_JS)))
        .route("/assets/app.css", get(|| asset("text/css", APP_CSS)))
        .route("/assets/icon.svg", get(|| asset("image/svg+xml", ICON_SVG)))
        .nest("/api", api::routes())
        .merge(download::routes())
        // Every other path is a page of the app, which reads the path itself: one URL
        // per view, so bookmarks and the back button work.
        .fallback(get(page))
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// The page's own policy: scripts and styles from this server only, nothing inline, no
/// frames; images may come from the server (previews) or from the page (blob:).
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

async fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// A plain-text refusal.
fn refuse(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}\n"),
    )
        .into_response()
}

impl App {
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        // Listening on every address: an IP literal cannot be a rebinding attack's name.
        self.any_ip
            && host
                .rsplit_once(':')
                .is_some_and(|(h, p)| p == self.port.to_string() && is_ip_literal(h))
    }

    fn cookie_token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == self.cookie)
            .map(|(_, v)| v)
    }
}

fn is_ip_literal(h: &str) -> bool {
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.parse::<IpAddr>().is_ok()
}

/// The token from `?token=` in the query, if any.
fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v)
}

/// Every request passes here: Host, Origin, then the token (cookie or query).
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return refuse(StatusCode::BAD_REQUEST, "no Host header");
    };
    if !app.host_allowed(host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer to that host name (see `strata serve --allow-host`)",
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| o.eq_ignore_ascii_case(&format!("http://{host}")));
        if !ok {
            return refuse(StatusCode::FORBIDDEN, "cross-origin request refused");
        }
    }
    let by_cookie = app
        .cookie_token(headers)
        .is_some_and(|t| same(t.as_bytes(), app.token.as_bytes()));
    let by_query =
        query_token(req.uri().query()).is_some_and(|t| same(t.as_bytes(), app.token.as_bytes()));
    if by_query && !by_cookie {
        // The first visit: the token becomes a cookie and leaves the address bar (and the
        // history), so a shared screen or bookmark does not carry it.
        let rest: Vec<&str> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty() && !kv.starts_with("token="))
            .collect();
        let mut path = req.uri().path().to_string();
        if !rest.is_empty() {
            path = format!("{path}?{}", rest.join("&"));
        }
        let cookie = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            app.cookie, app.token
        );
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let (Ok(c), Ok(l)) = (HeaderValue::from_str(&cookie), HeaderValue::from_str(&path)) {
            r.headers_mut().insert(header::SET_COOKIE, c);
            r.headers_mut().insert(header::LOCATION, l);
        }
        return r;
    }
    if !by_cookie && !by_query {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "access token missing or wrong: open the URL `strata serve` printed",
        );
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(PAGE_CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// Runs blocking work (filesystem reads) on tokio's blocking pool; its error as the HTTP
/// answer to give.
pub(crate) async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::result::Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error_response(&e)),
        Err(_) => Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the server's output)",
        )),
    }
}

/// An error as an HTTP answer: status from its kind, the one-line message as text.
fn error_response(e: &Error) -> Response {
    let status = match e {
        Error::NotFound(_) | Error::MissingParent { .. } => StatusCode::NOT_FOUND,
        Error::NotADirectory(_) | Error::IsADirectory(_) | Error::Invalid(_) => {
            StatusCode::BAD_REQUEST
        }
        Error::Ambiguous(_) => StatusCode::CONFLICT,
        Error::UnsupportedFeature(_) => StatusCode::NOT_IMPLEMENTED,
        Error::Key { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut r = refuse(status, &e.to_string());
    if e.is_integrity_failure() {
        // The page tells damage from other failures by this header.
        r.headers_mut()
            .insert("x-strata-damaged", HeaderValue::from_static("1"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 64);
    }

    #[test]
    fn query_token_is_found_among_others() {
        assert_eq!(query_token(Some("a=1&token=xyz")), Some("xyz"));
        assert_eq!(query_token(Some("tokenx=1")), None);
        assert_eq!(query_token(None), None);
    }

    #[test]
    fn ip_literals() {
        assert!(is_ip_literal("10.0.0.2"));
        assert!(is_ip_literal("[fe80::1]"));
        assert!(!is_ip_literal("evil.example"));
    }
}
