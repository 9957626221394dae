//! The accept loop every mode serves through: TLS, the client allowlist
//! and credentials checked before the router runs, and connection hygiene
//! — a header deadline, an idle deadline, a cap on connections where the
//! oldest connection that never completed a request makes room — so idle
//! or half-open clients cannot hold the descriptors `/metrics` needs.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

use super::conn::{evict, now_ms, watchdog, Conn, ConnState, Expired, Tracked};
use super::security::{Denied, KeyProblem, Security};
use crate::config::Listen;
use crate::registry::Series;
use crate::runtime::component;

crate::family! {
    static REJECTED: Counter {
        name: "sonde_http_requests_rejected",
        unit: Count,
        labels: ["component", "reason"],
        sampler: "sonde",
        source: "serve",
        help: "Requests and connections refused: address (outside listen.allow, 403), credentials (401), tls (handshake failed), header_timeout (no whole request header within listen.header_timeout), evicted (closed at listen.max_connections before completing a request), connection_limit (refused: every connection busy), body_too_large (413).",
    }
}

/// Request bodies beyond this are refused (413): no endpoint takes a body
/// larger than a few bytes.
const MAX_BODY: u64 = 64 << 10;
/// Request line plus headers; hyper's minimum is 8 KiB.
const MAX_HEADER: usize = 16 << 10;
/// Shutdown waits this long for in-flight responses.
const DRAIN: Duration = Duration::from_secs(5);
/// Whether two settings serve the same TLS: only the same built config
/// is, so any reload or file change with TLS on makes clients handshake
/// again (cheap, and a revoked CA or key takes effect at once).
fn same_tls(a: &Security, b: &Security) -> bool {
    match (a.tls(), b.tls()) {
        (None, None) => true,
        (Some(x), Some(y)) => Arc::ptr_eq(&x, &y),
        _ => false,
    }
}

/// Certificate, key and token files are checked for changes this often.
const FILE_POLL: Duration = Duration::from_secs(5);

/// The counters of [`REJECTED`], created at first use so every reason
/// shows (at 0) from the start.
struct Rejected {
    address: Arc<Series>,
    credentials: Arc<Series>,
    tls: Arc<Series>,
    header_timeout: Arc<Series>,
    evicted: Arc<Series>,
    connection_limit: Arc<Series>,
    body_too_large: Arc<Series>,
}

static REJECTS: LazyLock<Rejected> = LazyLock::new(|| Rejected {
    address: REJECTED.series(&[component(), "address"]),
    credentials: REJECTED.series(&[component(), "credentials"]),
    tls: REJECTED.series(&[component(), "tls"]),
    header_timeout: REJECTED.series(&[component(), "header_timeout"]),
    evicted: REJECTED.series(&[component(), "evicted"]),
    connection_limit: REJECTED.series(&[component(), "connection_limit"]),
    body_too_large: REJECTED.series(&[component(), "body_too_large"]),
});

/// One listener's settings as a unit: what `[listen]` says and the
/// security built from its files.
struct Settings {
    listen: Listen,
    security: Arc<Security>,
    /// Modification stamps of `listen.files()` when `security` was built.
    stamps: Vec<Option<SystemTime>>,
}

struct Shared {
    settings: RwLock<Arc<Settings>>,
    conns: Mutex<BTreeMap<u64, Conn>>,
    /// Which config file the settings came from, for messages.
    config: PathBuf,
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn set(&self, s: Settings) {
        let tls_changed = {
            let mut current = self.settings.write().unwrap_or_else(|e| e.into_inner());
            let changed = !same_tls(&current.security, &s.security);
            *current = Arc::new(s);
            changed
        };
        if tls_changed {
            self.close_idle();
        }
    }

    /// Swaps in `s` only if the settings are still `old` (a reload may have
    /// replaced them meanwhile, and must win).
    fn replace(&self, old: &Arc<Settings>, s: Settings) -> bool {
        let tls_changed = {
            let mut current = self.settings.write().unwrap_or_else(|e| e.into_inner());
            if !Arc::ptr_eq(&current, old) {
                return false;
            }
            let changed = !same_tls(&current.security, &s.security);
            *current = Arc::new(s);
            changed
        };
        if tls_changed {
            self.close_idle();
        }
        true
    }

    /// Closes the connections not mid-request: after a certificate or CA
    /// change, clients must handshake again (a revoked client CA must not
    /// keep access through keep-alive).
    fn close_idle(&self) {
        let mut conns = self.conns();
        conns.retain(|_, c| {
            let busy = c.state.in_flight.load(Ordering::Relaxed);
            if !busy {
                c.kill.notify_one();
            }
            busy
        });
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Conn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bound listener with its settings, ready for [`run`].
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    rebinds: mpsc::UnboundedReceiver<TcpListener>,
}

/// Applies a reloaded `[listen]` section to a running [`Server`].
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    rebind: mpsc::UnboundedSender<TcpListener>,
}

/// Reads the files `listen` names and binds its address; errors name the
/// key and the config file.
pub async fn start(listen: &Listen, config: &Path) -> anyhow::Result<(Server, Handle)> {
    let security = Security::load(listen).map_err(|p| describe(&p, config))?;
    let listener = super::bind(listen, config).await?;
    let shared = Arc::new(Shared {
        settings: RwLock::new(Arc::new(Settings {
            stamps: stamps(&security),
            listen: listen.clone(),
            security: Arc::new(security),
        })),
        conns: Mutex::new(BTreeMap::new()),
        config: config.to_path_buf(),
    });
    LazyLock::force(&REJECTS);
    let (tx, rx) = mpsc::unbounded_channel();
    Ok((
        Server {
            listener,
            shared: Arc::clone(&shared),
            rebinds: rx,
        },
        Handle { shared, rebind: tx },
    ))
}

fn describe(problems: &[KeyProblem], config: &Path) -> anyhow::Error {
    let lines: Vec<String> = problems
        .iter()
        .map(|(k, m)| format!("{}: key `listen.{k}`: {m}", config.display()))
        .collect();
    anyhow::anyhow!("{}", lines.join("\n"))
}

/// The problems with the files `listen` names, for config checks.
pub fn check(listen: &Listen) -> Vec<KeyProblem> {
    Security::load(listen).err().unwrap_or_default()
}

/// Modification times of the files `security` was built from (the web
/// config's own certificate files included).
fn stamps(security: &Security) -> Vec<Option<SystemTime>> {
    security
        .files()
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl Server {
    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

impl Handle {
    /// Applies a new `[listen]`: a new address is bound first (a failure
    /// changes nothing), then the files are read and swapped in whole.
    /// New settings apply to new requests; open connections keep their
    /// TLS session.
    pub async fn apply(&self, listen: &Listen) -> anyhow::Result<()> {
        let config = self.shared.config.clone();
        let security = Security::load(listen).map_err(|p| describe(&p, &config))?;
        let old = self.shared.settings();
        if old.listen.address != listen.address {
            let l = super::bind(listen, &config).await?;
            let _ = self.rebind.send(l);
            tracing::info!("now listening on {}", listen.address.0);
        }
        self.shared.set(Settings {
            stamps: stamps(&security),
            listen: listen.clone(),
            security: Arc::new(security),
        });
        Ok(())
    }

    /// Connections open now (for tests and logs).
    pub fn connections(&self) -> usize {
        self.shared.conns().len()
    }
}

/// Serves `router` until `shutdown` resolves, then stops accepting, closes
/// idle connections and lets in-flight responses finish (up to 5 s).
pub async fn run(
    server: Server,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Server {
        mut listener,
        shared,
        mut rebinds,
    } = server;
    let scheme = if shared.settings().security.tls().is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!("listening on {scheme}://{}/metrics", listener.local_addr()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let watcher = tokio::spawn(watch_files(Arc::clone(&shared)));
    tokio::pin!(shutdown);
    let mut next_id = 0u64;
    let mut emfile_logged = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(l) = rebinds.recv() => listener = l,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    next_id += 1;
                    admit(next_id, stream, peer, &shared, &router, &stop_rx);
                }
                Err(e) => {
                    // Out of descriptors: close the oldest half-open
                    // connection rather than spin on accept.
                    let fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    if fds && evict(&mut shared.conns()) {
                        REJECTS.evicted.add(1);
                    }
                    if !emfile_logged || !fds {
                        tracing::warn!(error = %e, "accept failed");
                        emfile_logged |= fds;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    watcher.abort();
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + DRAIN;
    while !shared.conns().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!("shut down");
    Ok(())
}

fn admit(
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    router: &Router,
    stop: &watch::Receiver<bool>,
) {
    let settings = shared.settings();
    // Outside `allow`: refused before a slot, a handshake or a header read.
    // Plain http gets its 403 at once; TLS clients are closed (a 403 would
    // need the handshake first).
    if !settings.security.allows(peer.ip()) {
        REJECTS.address.add(1);
        if settings.security.tls().is_none() {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                let mut stream = stream;
                let answer =
                    b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer)).await;
                let _ = stream.shutdown().await;
            });
        }
        return;
    }
    let state = Arc::new(ConnState {
        accepted_ms: now_ms(),
        ..ConnState::default()
    });
    let kill = Arc::new(Notify::new());
    {
        let mut conns = shared.conns();
        if conns.len() >= settings.listen.max_connections {
            if evict(&mut conns) {
                REJECTS.evicted.add(1);
            } else {
                REJECTS.connection_limit.add(1);
                return;
            }
        }
        conns.insert(
            id,
            Conn {
                state: Arc::clone(&state),
                kill: Arc::clone(&kill),
            },
        );
    }
    let _ = stream.set_nodelay(true);
    let (shared, router, stop) = (Arc::clone(shared), router.clone(), stop.clone());
    tokio::spawn(async move {
        let io = Tracked {
            stream,
            state: Arc::clone(&state),
        };
        let listen = &settings.listen;
        let serve = connection(io, peer, &settings, &shared, router, &state, stop);
        tokio::select! {
            _ = serve => {}
            _ = kill.notified() => {}
            why = watchdog(&state, listen.header_timeout, listen.idle_timeout) => {
                if let Expired::Header = why {
                    REJECTS.header_timeout.add(1);
                }
            }
        }
        shared.conns().remove(&id);
    });
}

/// The TLS handshake (when configured) and HTTP/1.1 on one connection.
async fn connection(
    io: Tracked,
    peer: SocketAddr,
    settings: &Settings,
    shared: &Arc<Shared>,
    router: Router,
    state: &Arc<ConnState>,
    stop: watch::Receiver<bool>,
) {
    match settings.security.tls() {
        Some(config) => match tokio_rustls::TlsAcceptor::from(config).accept(io).await {
            Ok(tls) => http(TokioIo::new(tls), peer, shared, router, state, stop).await,
            Err(e) => {
                REJECTS.tls.add(1);
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
            }
        },
        None => http(TokioIo::new(io), peer, shared, router, state, stop).await,
    }
}

async fn http<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    router: Router,
    state: &Arc<ConnState>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (shared, state) = (Arc::clone(shared), Arc::clone(state));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (shared, state, router) = (Arc::clone(&shared), Arc::clone(&state), router.clone());
        async move {
            state.begin();
            let resp = handle(req, peer, &shared, router).await;
            state.end();
            Ok::<_, Infallible>(resp)
        }
    });
    // No hyper timer: the connection's watchdog owns every deadline, so
    // each close is counted once under one reason.
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEADER)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Checks the client's address and credentials, the body size, then runs
/// the mode's router; refusals carry no detail.
async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: &Shared,
    router: Router,
) -> Response<Body> {
    use tower::ServiceExt as _;
    let security = Arc::clone(&shared.settings().security);
    if !security.allows(peer.ip()) {
        REJECTS.address.add(1);
        return status(StatusCode::FORBIDDEN, &security);
    }
    if let Err(Denied) = security.authorize(req.headers()).await {
        REJECTS.credentials.add(1);
        let mut resp = status(StatusCode::UNAUTHORIZED, &security);
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(security.challenge()),
        );
        // One connection cannot queue wrong password after wrong password.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    let too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY);
    if too_large {
        REJECTS.body_too_large.add(1);
        return status(StatusCode::PAYLOAD_TOO_LARGE, &security);
    }
    let req = req.map(|b| Body::new(http_body_util::Limited::new(b, MAX_BODY as usize)));
    let Ok(mut resp) = router.oneshot(req).await;
    for (name, value) in security.headers() {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

fn status(code: StatusCode, security: &Security) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = code;
    for (name, value) in security.headers() {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

/// Rebuilds the settings when a certificate, key, CA, token or web config
/// file changes, so rotation needs no reload; a broken new file is logged
/// once and the running settings stay.
async fn watch_files(shared: Arc<Shared>) {
    let mut failed: Option<Vec<Option<SystemTime>>> = None;
    loop {
        tokio::time::sleep(FILE_POLL).await;
        let current = shared.settings();
        let now = stamps(&current.security);
        if now == current.stamps || failed.as_ref() == Some(&now) {
            continue;
        }
        match Security::load(&current.listen) {
            Ok(security) => {
                failed = None;
                let new = Settings {
                    stamps: stamps(&security),
                    listen: current.listen.clone(),
                    security: Arc::new(security),
                };
                if shared.replace(&current, new) {
                    tracing::info!("reloaded the TLS/auth files of [listen]");
                }
            }
            Err(p) => {
                tracing::error!(
                    "changed [listen] files are not usable, keeping the running ones:\n{}",
                    describe(&p, &shared.config)
                );
                failed = Some(now);
            }
        }
    }
}
