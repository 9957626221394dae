//! Relay mode (`sonde exporter`): pulls `/metrics/binary` from agents each
//! interval and serves one Prometheus target with latency percentiles.
//!
//! The body is rendered once per interval, after every source has answered
//! or timed out, and served from memory: scrapes cost a copy, not a render.
//! The protobuf exposition (native histograms) is built only while a
//! scraper asks for it: until the next interval after its first request,
//! that scraper gets the text it also accepts.

pub mod config;
pub mod source;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use crate::client::{self, Upstream};
use crate::config::Listen;
use crate::daemon::{self, Daemon, Reload};
use crate::prometheus::proto;
use crate::prometheus::text::TEXT_CONTENT_TYPE;
use crate::prometheus::{Format, Renderer};
use crate::runtime::{Events, Ticker};
use crate::serve::{self, accepts_gzip, negotiated, Gzip};
use crate::snapshot::fetch::{self, Failure};
use config::ExporterConfig;
use source::{Settings, SourceState};

/// The rendered body, plain and gzip'd, swapped whole once per interval;
/// the protobuf exposition the same way, while it is asked for.
#[derive(Default)]
struct Body {
    plain: Bytes,
    gzip: Bytes,
    proto: Option<(Bytes, Bytes)>,
}

/// How long the protobuf exposition is still built after the last scrape
/// that asked for it.
const PROTOBUF_KEEP: Duration = Duration::from_secs(300);

struct Shared {
    body: Mutex<Arc<Body>>,
    started: Instant,
    /// When the protobuf exposition was last asked for: seconds since
    /// `started`, plus one (0: never).
    protobuf_asked: AtomicU64,
}

impl Shared {
    fn new() -> Self {
        Shared {
            body: Mutex::new(Arc::new(Body::default())),
            started: Instant::now(),
            protobuf_asked: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_secs() + 1
    }

    fn ask_protobuf(&self) {
        self.protobuf_asked.store(self.now(), Ordering::Relaxed);
    }

    fn wants_protobuf(&self) -> bool {
        let asked = self.protobuf_asked.load(Ordering::Relaxed);
        asked != 0 && self.now().saturating_sub(asked) <= PROTOBUF_KEEP.as_secs()
    }
}

/// The exporter as a [`Daemon`]: the puller task and the body it
/// publishes.
pub struct Exporter {
    shared: Arc<Shared>,
    pulling: Mutex<tokio::task::JoinHandle<()>>,
    sources: usize,
}

pub fn run(
    path: &Path,
    config: ExporterConfig,
    reload: Reload<ExporterConfig>,
) -> anyhow::Result<()> {
    daemon::run::<Exporter>(path, config, reload)
}

impl Daemon for Exporter {
    type Config = ExporterConfig;
    const COMPONENT: &'static str = "exporter";

    fn listen(config: &ExporterConfig) -> &Listen {
        &config.listen
    }

    async fn start(_: &Path, config: &ExporterConfig, _: &Events) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared::new());
        let pulling = start_pulling(config, &shared).await;
        Ok(Exporter {
            shared,
            pulling: Mutex::new(pulling),
            sources: config.sources.len(),
        })
    }

    async fn ready(&self) -> String {
        format!("relaying {} sources", self.sources)
    }

    fn router(self: &Arc<Self>) -> Router {
        serve::with_base_routes(Router::new().route("/metrics", get(metrics)), "/metrics")
            .with_state(Arc::clone(&self.shared))
    }

    fn alive(&self) -> bool {
        !self.pulling().is_finished()
    }

    async fn reload(
        &self,
        running: &ExporterConfig,
        new: &ExporterConfig,
    ) -> anyhow::Result<Option<String>> {
        if running.sources != new.sources
            || running.general != new.general
            || running.prometheus != new.prometheus
        {
            // Sources, interval or percentiles changed: pull anew (the
            // served body stays until the new first pull).
            let task = start_pulling(new, &self.shared).await;
            std::mem::replace(&mut *self.pulling(), task).abort();
            tracing::info!("relaying with the new [general], [prometheus] and [[sources]]");
        }
        Ok(None)
    }

    async fn stop(&self) {
        self.pulling().abort();
    }
}

impl Exporter {
    fn pulling(&self) -> std::sync::MutexGuard<'_, tokio::task::JoinHandle<()>> {
        self.pulling.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Pulls every source once (so no scrape ever sees an empty body), then
/// every interval on a task of its own.
async fn start_pulling(
    config: &ExporterConfig,
    shared: &Arc<Shared>,
) -> tokio::task::JoinHandle<()> {
    let several = config.sources.len() > 1;
    let sources: Vec<SourceState> = config
        .sources
        .iter()
        .map(|s| SourceState::new(&s.url.0, &s.labels, several))
        .collect();
    for s in &sources {
        tracing::info!(source = %s.name, "relaying {}", s.binary_url);
    }
    let settings = Settings::new(
        config.prometheus.percentiles.clone(),
        config.prometheus.histograms,
    );
    let shared_client = client::shared();
    // The files were checked at load; broken since, the pulls say why.
    let auth = config
        .sources
        .iter()
        .map(|s| {
            let client = s.upstream.client().ok().flatten();
            (
                client.unwrap_or_else(|| shared_client.clone()),
                s.upstream.clone(),
            )
        })
        .collect();
    let mut puller = Puller {
        auth,
        sources,
        settings,
        interval: config.general.interval.0,
        timeout: config.general.timeout.0,
        text: String::new(),
        own: String::new(),
        proto: Vec::new(),
        family: Vec::new(),
        encoder: proto::Encoder::default(),
        renderer: Renderer::default(),
        gzip: Gzip::default(),
        shared: Arc::clone(shared),
    };
    puller.pull_all().await;
    puller.publish();
    tokio::spawn(puller.run())
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let body = Arc::clone(&shared.body.lock().unwrap_or_else(|e| e.into_inner()));
    let gzip = accepts_gzip(&headers);
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    // Text and protobuf only: OpenMetrics would need the `_created`
    // series and suffixes the relayed summaries do not have.
    if Format::from_accept(accept) == Format::Protobuf {
        shared.ask_protobuf();
        if let Some((plain, gz)) = &body.proto {
            let bytes = if gzip { gz.clone() } else { plain.clone() };
            return negotiated(proto::CONTENT_TYPE, bytes, gzip, "Accept, Accept-Encoding");
        }
    }
    let bytes = if gzip {
        body.gzip.clone()
    } else {
        body.plain.clone()
    };
    negotiated(TEXT_CONTENT_TYPE, bytes, gzip, "Accept, Accept-Encoding")
}

struct Puller {
    /// Per source: its client (its own with TLS files) and credentials.
    auth: Vec<(reqwest::Client, Upstream)>,
    sources: Vec<SourceState>,
    settings: Settings,
    interval: Duration,
    timeout: Duration,
    /// Reused render buffers.
    text: String,
    own: String,
    proto: Vec<u8>,
    /// One family's protobuf being assembled.
    family: Vec<u8>,
    encoder: proto::Encoder,
    renderer: Renderer,
    gzip: Gzip,
    shared: Arc<Shared>,
}

impl Puller {
    async fn run(mut self) {
        let mut ticker = Ticker::new(self.interval);
        loop {
            ticker.tick().await;
            self.pull_all().await;
            self.publish();
        }
    }

    /// Pulls every source at once; each has the same deadline.
    async fn pull_all(&mut self) {
        self.settings.protobuf = self.shared.wants_protobuf();
        let tasks: Vec<_> = self
            .sources
            .iter()
            .zip(&self.auth)
            .map(|(s, (client, upstream))| {
                let (client, upstream) = (client.clone(), upstream.clone());
                let url = s.binary_url.clone();
                let timeout = self.timeout;
                tokio::spawn(async move {
                    let start = Instant::now();
                    let r = fetch::snapshot(&client, &url, &upstream, timeout).await;
                    (r.map(|(snapshot, _)| snapshot), start.elapsed())
                })
            })
            .collect();
        for (source, task) in self.sources.iter_mut().zip(tasks) {
            match task.await {
                Ok((Ok(snapshot), took)) => source.succeeded(snapshot, took, &self.settings),
                Ok((Err(e), took)) => source.failed(&e, took),
                Err(e) => source.failed(
                    &fetch::fail(Failure::Decode, format!("pull task failed: {e}")),
                    Duration::ZERO,
                ),
            }
        }
    }

    /// Merges every source's families (one HELP/TYPE each), adds our own
    /// metrics and swaps the served body.
    fn publish(&mut self) {
        self.text.clear();
        self.renderer.render(Format::Text, &mut self.own);
        // Families the agents have too (reloads, rejected requests; their
        // `component` label keeps the series apart) get one HELP/TYPE: our
        // series go into the relayed block, the rest after it.
        let mut own = own_families(&self.own);
        render_sources_with(&self.sources, &mut own, &mut self.text);
        for (_, (header, body)) in own {
            self.text.push_str(header);
            self.text.push_str(body);
        }
        let mut gz = Vec::new();
        self.gzip.compress(self.text.as_bytes(), &mut gz);
        // Until every source's families carry protobuf, the text: a
        // protobuf body without a source's series would mark them stale.
        let ready = self
            .sources
            .iter()
            .all(|s| s.protobuf_ready || s.families.is_empty());
        let proto = (self.settings.protobuf && ready).then(|| {
            self.render_protobuf();
            let mut gz = Vec::new();
            self.gzip.compress(&self.proto, &mut gz);
            (Bytes::copy_from_slice(&self.proto), Bytes::from(gz))
        });
        let body = Arc::new(Body {
            plain: Bytes::copy_from_slice(self.text.as_bytes()),
            gzip: Bytes::from(gz),
            proto,
        });
        *self.shared.body.lock().unwrap_or_else(|e| e.into_inner()) = body;
    }
}

impl Puller {
    /// [`Puller::publish`] for protobuf: every relayed family with our own
    /// series of the same name and type merged in, then our other
    /// families, each family once.
    fn render_protobuf(&mut self) {
        use std::collections::BTreeMap;
        self.proto.clear();
        let mut own: BTreeMap<&str, &crate::registry::Family> = self
            .renderer
            .families()
            .filter(|(f, _)| f.has_series())
            .map(|(f, n)| (n, f))
            .collect();
        let mut names: Vec<&str> = self
            .sources
            .iter()
            .flat_map(|s| s.families.iter())
            .filter(|(_, f)| !f.proto.is_empty())
            .map(|(n, _)| n.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let mut kind = None;
            for s in &self.sources {
                let Some(f) = s.families.get(name).filter(|f| !f.proto.is_empty()) else {
                    continue;
                };
                match kind {
                    None => {
                        let t = proto_type(f.kind);
                        proto::family_header(&mut self.family, name, &f.help, t);
                        kind = Some(f.kind);
                    }
                    // Counted when the text was rendered (native
                    // families have no text: left out uncounted, as the
                    // text leaves them out).
                    Some(k) if k != f.kind => continue,
                    Some(_) => {}
                }
                self.family.extend_from_slice(&f.proto);
            }
            let Some(kind) = kind else { continue };
            if let Some(f) = own.remove(name) {
                if proto::family_type(f.desc.kind) == proto_type(kind) {
                    self.encoder.metrics(f, &mut self.family);
                } else {
                    tracing::debug!("our {name} is left out of protobuf: a relayed family of another type has its name");
                }
            }
            proto::frame(&mut self.proto, &self.family);
        }
        for (name, f) in own {
            let t = proto::family_type(f.desc.kind);
            proto::family_header(&mut self.family, name, f.desc.help, t);
            self.encoder.metrics(f, &mut self.family);
            proto::frame(&mut self.proto, &self.family);
        }
    }
}

/// `MetricFamily.type` of a relayed family's kind.
fn proto_type(kind: &str) -> u64 {
    match kind {
        "counter" => proto::COUNTER,
        "gauge" => proto::GAUGE,
        "summary" => proto::SUMMARY,
        _ => proto::HISTOGRAM,
    }
}

/// Our own rendered text cut into families: name -> (HELP and TYPE lines,
/// series lines).
fn own_families(text: &str) -> std::collections::BTreeMap<&str, (&str, &str)> {
    let mut out = std::collections::BTreeMap::new();
    let mut rest = text;
    while let Some(name) = rest
        .strip_prefix("# HELP ")
        .and_then(|r| r.split(' ').next())
    {
        let end = rest[1..].find("\n# HELP ").map_or(rest.len(), |i| i + 2);
        let block = &rest[..end];
        let header_end = block
            .match_indices('\n')
            .nth(1)
            .map_or(block.len(), |(i, _)| i + 1);
        out.insert(name, (&block[..header_end], &block[header_end..]));
        rest = &rest[end..];
    }
    out
}

/// All sources' families in name order. A family whose type differs from
/// the first source's is left out for the later source and counted.
pub fn render_sources(sources: &[SourceState], out: &mut String) {
    render_sources_with(sources, &mut Default::default(), out);
}

/// [`render_sources`], with the series of `own` families of the same name
/// appended to the relayed ones (and taken out of `own`).
fn render_sources_with(
    sources: &[SourceState],
    own: &mut std::collections::BTreeMap<&str, (&str, &str)>,
    out: &mut String,
) {
    let mut names: Vec<&str> = sources
        .iter()
        .flat_map(|s| s.families.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let mut kind = None;
        for s in sources {
            // A native histogram's family has no text without `histograms`.
            let Some(f) = s.families.get(name).filter(|f| !f.body.is_empty()) else {
                continue;
            };
            match kind {
                None => {
                    let _ = writeln!(out, "# HELP {name} {}", f.help);
                    let _ = writeln!(out, "# TYPE {name} {}", f.kind);
                    kind = Some(f.kind);
                }
                Some(k) if k != f.kind => {
                    s.note_conflict();
                    continue;
                }
                Some(_) => {}
            }
            out.push_str(&f.body);
        }
        if kind.is_some() {
            if let Some((_, body)) = own.remove(name) {
                out.push_str(body);
            }
        }
    }
}
