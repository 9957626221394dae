//! Relay mode (`sonde exporter`): pulls `/metrics/binary` from agents each
//! interval and serves one Prometheus target with latency percentiles.
//!
//! The body is rendered once per interval, after every source has answered
//! or timed out, and served from memory: scrapes cost a copy, not a render.

pub mod config;
pub mod relay;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use crate::prometheus::text::TEXT_CONTENT_TYPE;
use crate::prometheus::{Format, Renderer};
use crate::runtime::{self, Events, Ticker};
use crate::serve::{self, accepts_gzip, negotiated, Gzip};
use crate::snapshot::fetch::{self, Failure};
use config::ExporterConfig;
use relay::{Settings, SourceState};

/// The rendered body, plain and gzip'd, swapped whole once per interval.
#[derive(Default)]
struct Body {
    plain: Bytes,
    gzip: Bytes,
}

struct Shared {
    body: Mutex<Arc<Body>>,
}

pub fn run(path: &Path, config: ExporterConfig) -> anyhow::Result<()> {
    runtime::build("sonde-exporter")?.block_on(serve_config(path, config))
}

async fn serve_config(path: &Path, config: ExporterConfig) -> anyhow::Result<()> {
    let events = Events::watch();
    let listener = serve::bind(&config.listen, path).await?;
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
    let shared = Arc::new(Shared {
        body: Mutex::new(Arc::new(Body::default())),
    });
    let mut puller = Puller {
        client: fetch::client(),
        sources,
        settings,
        interval: config.general.interval.0,
        timeout: config.general.timeout.0,
        text: String::new(),
        own: String::new(),
        renderer: Renderer::default(),
        gzip: Gzip::default(),
        shared: Arc::clone(&shared),
    };
    // The first pull completes before the first scrape is answered, so no
    // scrape ever sees an empty body.
    puller.pull_all().await;
    puller.publish();
    let pulling = tokio::spawn(puller.run());
    let puller_alive = pulling.abort_handle();
    let _ = crate::systemd::spawn_watchdog(move || !puller_alive.is_finished());
    crate::systemd::ready(&format!("relaying {} sources", config.sources.len()));
    let app = serve::with_base_routes(Router::new().route("/metrics", get(metrics)), "/metrics")
        .with_state(shared);
    let result = serve::run(listener, app, events.shutdown()).await;
    pulling.abort();
    result
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let body = Arc::clone(&shared.body.lock().unwrap_or_else(|e| e.into_inner()));
    let gzip = accepts_gzip(&headers);
    let bytes = if gzip {
        body.gzip.clone()
    } else {
        body.plain.clone()
    };
    negotiated(TEXT_CONTENT_TYPE, bytes, gzip, "Accept-Encoding")
}

struct Puller {
    client: reqwest::Client,
    sources: Vec<SourceState>,
    settings: Settings,
    interval: Duration,
    timeout: Duration,
    /// Reused render buffers.
    text: String,
    own: String,
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
        let tasks: Vec<_> = self
            .sources
            .iter()
            .map(|s| {
                let client = self.client.clone();
                let url = s.binary_url.clone();
                let timeout = self.timeout;
                tokio::spawn(async move {
                    let start = Instant::now();
                    let r = fetch::snapshot(&client, &url, timeout).await;
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
        render_sources(&self.sources, &mut self.text);
        self.renderer.render(Format::Text, &mut self.own);
        self.text.push_str(&self.own);
        let mut gz = Vec::new();
        self.gzip.compress(self.text.as_bytes(), &mut gz);
        let body = Arc::new(Body {
            plain: Bytes::copy_from_slice(self.text.as_bytes()),
            gzip: Bytes::from(gz),
        });
        *self.shared.body.lock().unwrap_or_else(|e| e.into_inner()) = body;
    }
}

/// All sources' families in name order. A family whose type differs from
/// the first source's is left out for the later source and counted.
pub fn render_sources(sources: &[SourceState], out: &mut String) {
    let mut names: Vec<&str> = sources
        .iter()
        .flat_map(|s| s.families.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let mut kind = None;
        for s in sources {
            let Some(f) = s.families.get(name) else {
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
    }
}
