//! Relay mode (`sonde exporter`): pulls `/metrics/binary` from agents each
//! interval and serves one Prometheus target with latency percentiles.
//!
//! The body is rendered once per interval, after every source has answered
//! or timed out, and served from memory: scrapes cost a copy, not a render.

pub mod decode;
pub mod pull;
pub mod relay;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use crate::agent::collector::Gzip;
use crate::config::exporter::ExporterConfig;
use crate::exposition::prometheus::{Format, Renderer, TEXT_CONTENT_TYPE};
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
    crate::agent::runtime("sonde-exporter")?.block_on(serve(path, config))
}

async fn serve(path: &Path, config: ExporterConfig) -> anyhow::Result<()> {
    let addr = config.general.listen.0;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} (key `general.listen` in {}): {}",
            path.display(),
            crate::agent::describe_io(&e)
        )
    })?;
    let local = listener.local_addr()?;
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
        client: pull::client(),
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
    tracing::info!("listening on http://{local}/metrics");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /metrics or /healthz\n",
            )
        })
        .with_state(shared);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(crate::agent::shutdown_signal())
        .await
        .context("HTTP server failed");
    pulling.abort();
    tracing::info!("shut down");
    result
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let body = Arc::clone(&shared.body.lock().unwrap_or_else(|e| e.into_inner()));
    let gzip = crate::agent::server::accepts_gzip(&headers);
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(TEXT_CONTENT_TYPE),
        )],
        if gzip {
            body.gzip.clone()
        } else {
            body.plain.clone()
        },
    )
        .into_response();
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
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
        loop {
            tokio::time::sleep(until_next_boundary(self.interval)).await;
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
                    let r = pull::fetch(&client, &url, timeout).await.and_then(|b| {
                        decode::decode(&b).map_err(|e| pull::PullError {
                            failure: pull::Failure::Decode,
                            detail: e.to_string(),
                        })
                    });
                    (r, start.elapsed())
                })
            })
            .collect();
        for (source, task) in self.sources.iter_mut().zip(tasks) {
            match task.await {
                Ok((Ok(snapshot), took)) => source.succeeded(snapshot, took, &self.settings),
                Ok((Err(e), took)) => source.failed(&e, took),
                Err(e) => source.failed(
                    &pull::PullError {
                        failure: pull::Failure::Decode,
                        detail: format!("pull task failed: {e}"),
                    },
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

/// Time to the next multiple of `interval` since the epoch, so pulls of
/// every exporter line up on wall-clock boundaries.
pub(crate) fn until_next_boundary(interval: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let step = interval.as_nanos().max(1);
    let wait = step - now % step;
    Duration::from_nanos(wait as u64)
}
