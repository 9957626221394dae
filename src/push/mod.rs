//! Push mode (`sonde push`): pulls the local agent's `/metrics/binary`
//! every interval, spools each snapshot and delivers it to every sink, at
//! least once and in order, each sink at its own pace.

pub mod remote_write;
pub mod sink;
pub mod spool;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::config::push::PushConfig;
use crate::exporter::{decode, pull};
use crate::exposition::prometheus::{Format, Renderer, TEXT_CONTENT_TYPE};
use crate::registry::Series;
use sink::Sink;
use spool::Spool;

crate::family!(PULLS: Counter "sonde_push_pulls", Count, ["result"], "push", "pusher",
    "Pulls of the agent's snapshot: ok, or error (unreachable, timeout, not a snapshot).");
crate::family!(SPOOL_BYTES: Gauge "sonde_push_spool_bytes", Bytes, [], "push", "pusher",
    "Bytes in the spool's segment files.");
crate::family!(SPOOL_AGE: Gauge "sonde_push_spool_oldest_age", Nanoseconds, [], "push", "pusher",
    "Age of the oldest spooled snapshot (0 when empty).");

pub struct Shared {
    spool: Mutex<Spool>,
    pub notify: tokio::sync::Notify,
    pub max_age_ms: u64,
}

impl Shared {
    /// The spool; its operations are short (one fsync at most).
    pub fn spool(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// FNV-1a of a sink's kind and URL: its cursor file's name, stable across
/// restarts and reorderings of `[[sinks]]`.
fn sink_id(kind: &str, url: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kind.bytes().chain([0]).chain(url.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

pub fn run(path: &Path, config: PushConfig) -> anyhow::Result<()> {
    crate::agent::runtime("sonde-push")?.block_on(serve(path, config))
}

async fn serve(path: &Path, config: PushConfig) -> anyhow::Result<()> {
    let spool_dir = &config.spool.path;
    let spool = Spool::open(
        spool_dir,
        config.spool.max_bytes.0,
        config.spool.max_age.0.as_millis() as u64,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot open the spool {} (key `spool.path` in {}): {e}",
            spool_dir.display(),
            path.display()
        )
    })?;
    tracing::info!(
        "spool {}: {} bytes, next snapshot #{}",
        spool_dir.display(),
        spool.bytes(),
        spool.next_seq()
    );
    let sinks: Vec<Sink> = config
        .sinks
        .iter()
        .map(|s| {
            let kind = format!("{:?}", s.kind);
            let cursor_path = spool.cursor_path(&sink_id(&kind, &s.url.0));
            // A new sink starts with what is pulled from now on.
            let start =
                spool::load_cursor(&cursor_path).or_else(|| spool.next_seq().checked_sub(1));
            tracing::info!(sink = %s.url.0, "sink {kind}, cursor {start:?}");
            Sink::new(s, cursor_path, start)
        })
        .collect();
    let addr = config.listen.address.0;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} (key `listen.address` in {}): {}",
            path.display(),
            crate::agent::describe_io(&e)
        )
    })?;
    let shared = Arc::new(Shared {
        spool: Mutex::new(spool),
        notify: tokio::sync::Notify::new(),
        max_age_ms: config.spool.max_age.0.as_millis() as u64,
    });
    let client = pull::client();
    let mut tasks: Vec<_> = Vec::new();
    let sink_handles: Vec<SinkHandle> = sinks
        .iter()
        .map(|s| SinkHandle {
            name: s.name.clone(),
            cursor: Arc::clone(&s.cursor),
        })
        .collect();
    for s in sinks {
        tasks.push(tokio::spawn(s.run(Arc::clone(&shared), client.clone())));
    }
    let puller = Puller {
        client,
        url: format!(
            "{}/metrics/binary",
            config.source.url.0.trim_end_matches('/')
        ),
        interval: config.source.interval.0,
        shared: Arc::clone(&shared),
        sinks: sink_handles,
        ok: PULLS.series(&["ok"]),
        error: PULLS.series(&["error"]),
        spool_bytes: SPOOL_BYTES.single(),
        spool_age: SPOOL_AGE.single(),
    };
    tasks.push(tokio::spawn(puller.run()));

    let local = listener.local_addr()?;
    tracing::info!(
        "pulling {}/metrics/binary every {:?}",
        config.source.url.0,
        config.source.interval.0
    );
    tracing::info!("listening on http://{local}/metrics");
    let renderer = Arc::new(Renderer::default());
    let app = Router::new()
        .route(
            "/metrics",
            get(move || async move {
                let mut out = String::new();
                renderer.render(Format::Text, &mut out);
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(TEXT_CONTENT_TYPE),
                    )],
                    out,
                )
                    .into_response()
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /metrics or /healthz\n",
            )
        });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(crate::agent::shutdown_signal())
        .await
        .context("HTTP server failed");
    for t in tasks {
        t.abort();
    }
    tracing::info!("shut down; undelivered snapshots stay in the spool");
    result
}

struct SinkHandle {
    name: String,
    cursor: Arc<std::sync::atomic::AtomicU64>,
}

struct Puller {
    client: reqwest::Client,
    url: String,
    interval: Duration,
    shared: Arc<Shared>,
    sinks: Vec<SinkHandle>,
    ok: Arc<Series>,
    error: Arc<Series>,
    spool_bytes: Arc<Series>,
    spool_age: Arc<Series>,
}

impl Puller {
    async fn run(self) {
        let mut failing = false;
        loop {
            tokio::time::sleep(crate::exporter::until_next_boundary(self.interval)).await;
            let start = Instant::now();
            let timeout = self.interval.min(Duration::from_secs(10));
            let result = pull::fetch(&self.client, &self.url, timeout)
                .await
                .and_then(|body| match decode::decode(&body) {
                    Ok(s) => Ok((s, body)),
                    Err(e) => Err(pull::PullError {
                        failure: pull::Failure::Decode,
                        detail: e.to_string(),
                    }),
                });
            match result {
                Ok((snapshot, body)) => {
                    let ms = snapshot
                        .systemtime
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis() as u64;
                    let appended = self.shared.spool().append(ms, &body);
                    match appended {
                        Ok(_) => {
                            self.ok.add(1);
                            if failing {
                                tracing::info!("pulling {} again", self.url);
                                failing = false;
                            }
                        }
                        Err(e) => {
                            self.error.add(1);
                            tracing::error!(
                                "cannot write to the spool: {e}; this snapshot is lost"
                            );
                        }
                    }
                    self.shared.notify.notify_waiters();
                    tracing::debug!("pulled {} bytes in {:?}", body.len(), start.elapsed());
                }
                Err(e) => {
                    self.error.add(1);
                    if !failing {
                        tracing::warn!("cannot pull {}: {e}", self.url);
                        failing = true;
                    }
                }
            }
            self.collect();
        }
    }

    /// Applies the spool's limits and counts what they dropped per sink.
    fn collect(&self) {
        let cursors: Vec<Option<u64>> = self
            .sinks
            .iter()
            .map(
                |s| match s.cursor.load(std::sync::atomic::Ordering::Relaxed) {
                    u64::MAX => None,
                    c => Some(c),
                },
            )
            .collect();
        let mut spool = self.shared.spool();
        let dropped = spool.collect(now_ms(), &cursors);
        for (s, d) in self.sinks.iter().zip(dropped) {
            if d.spool_full + d.too_old > 0 {
                tracing::warn!(
                    sink = %s.name,
                    "spool limits dropped {} snapshots (spool_full {}, too_old {})",
                    d.spool_full + d.too_old,
                    d.spool_full,
                    d.too_old
                );
            }
            sink::count_dropped(&s.name, "spool_full", d.spool_full);
            sink::count_dropped(&s.name, "too_old", d.too_old);
        }
        self.spool_bytes.set_gauge(spool.bytes() as i64);
        let age = spool
            .oldest_ms()
            .map_or(0, |t| now_ms().saturating_sub(t) * 1_000_000);
        self.spool_age.set_gauge(age as i64);
    }
}
