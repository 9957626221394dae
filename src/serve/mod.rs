//! The HTTP layer every mode serves through: bind with an error that names
//! the config key, TLS/auth/allowlist and connection limits (`server`,
//! `security`), the base routes (`/healthz`, 404 naming the paths that
//! exist, 405 from the router), gzip and `Accept-Encoding` negotiation,
//! graceful shutdown.

mod conn;
mod gzip;
mod security;
mod server;
mod tls;
mod webconfig;

use std::path::Path;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use crate::config::{Checker, Listen, Segment};

pub use gzip::Gzip;
pub use server::{run, start, Handle, Server};

/// Records the problems with the files `[listen]` names (certificates,
/// keys, token, web config, bcrypt hashes) as located config problems.
pub fn check_listen(c: &mut Checker<'_>, listen: &Listen) {
    for (key, message) in server::check(listen) {
        c.problem(
            &[Segment::Key("listen".into()), Segment::Key(key.into())],
            message,
        );
    }
}

/// Binds the `[listen]` address of `config`; the error names the key and
/// says why in words (address in use, permission denied, …).
pub async fn bind(listen: &Listen, config: &Path) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = listen.address.0;
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} (key `listen.address` in {}): {}",
            config.display(),
            describe_io(&e)
        )
    })
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "address already in use (is another Sonde running on it?)".into()
        }
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::AddrNotAvailable => "address not available on this host".into(),
        _ => e.to_string(),
    }
}

/// Adds `/healthz` and a 404 that lists `paths` (the mode's own routes).
/// Other methods on a known path get 405 from the router.
pub fn with_base_routes<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    paths: &'static str,
) -> Router<S> {
    router
        .route("/healthz", get(|| async { "ok" }))
        .fallback(move || async move {
            (
                StatusCode::NOT_FOUND,
                format!("not found: try {paths} or /healthz\n"),
            )
        })
}

/// Whether the client accepts a gzip body (`gzip;q=0` refuses it).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

/// A 200 with `body` as `content_type`.
pub fn bytes_response(content_type: &'static str, body: Bytes) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// A negotiated 200: `body` is gzip'd when `gzip` (and says so); `vary`
/// names the request headers the choice depended on.
pub fn negotiated(
    content_type: &'static str,
    body: Bytes,
    gzip: bool,
    vary: &'static str,
) -> Response {
    let mut resp = bytes_response(content_type, body);
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static(vary));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip"));
        assert!(h("deflate, GZIP;q=0.5"));
        assert!(!h("gzip;q=0"));
        assert!(!h("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
