//! `sonde hindsight`: a flight recorder. Pulls the agent's snapshot every
//! interval into a rolling on-disk buffer (the spool's fsync'd, checksummed
//! segments) that keeps the last `duration`, and on SIGUSR1 or `POST /dump`
//! writes that window (or `?last=5m` of it) to a parquet file in
//! `output_dir`, without pausing the recording.
//!
//! The window is anchored to the newest sample, not the clock: while the
//! agent is down nothing ages out, so an outage freezes the window instead
//! of emptying it. Retention drops whole segments; `max_bytes` is a hard
//! cap on top.

pub mod config;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;

use crate::client::{self, Upstream};
use crate::config::Listen;
use crate::daemon::{self, Daemon, Reload};
use crate::parquet::{self, SpoolSnapshots};
use crate::registry::Series;
use crate::runtime::{Event, Events, Ticker};
use crate::serve::{self, bytes_response};
use crate::snapshot::fetch;
use crate::spool::{Entry, Spool};
use config::HindsightConfig;

crate::family! {
    static PULLS: Counter {
        name: "sonde_hindsight_pulls",
        unit: Count,
        labels: ["result"],
        sampler: "hindsight",
        source: "hindsight",
        help: "Pulls of the agent's snapshot: ok, or error (unreachable, timeout, not a snapshot, buffer write failed).",
    }
}
crate::family! {
    static SAMPLES: Gauge {
        name: "sonde_hindsight_buffer_samples",
        unit: Count,
        labels: [],
        sampler: "hindsight",
        source: "hindsight",
        help: "Snapshots in the rolling buffer.",
    }
}
crate::family! {
    static BYTES: Gauge {
        name: "sonde_hindsight_buffer_bytes",
        unit: Bytes,
        labels: [],
        sampler: "hindsight",
        source: "hindsight",
        help: "Bytes of the rolling buffer's segment files (at most [buffer] max_bytes).",
    }
}
crate::family! {
    static SPAN: Gauge {
        name: "sonde_hindsight_buffer_span",
        unit: Nanoseconds,
        labels: [],
        sampler: "hindsight",
        source: "hindsight",
        help: "Time from the oldest to the newest buffered snapshot.",
    }
}
crate::family! {
    static DUMPS: Counter {
        name: "sonde_hindsight_dumps",
        unit: Count,
        labels: ["result"],
        sampler: "hindsight",
        source: "hindsight",
        help: "Dumps of the window to parquet (SIGUSR1 or POST /dump): ok or error.",
    }
}

struct Shared {
    spool: Mutex<Spool>,
    /// One dump at a time; recording never waits for it.
    dumping: tokio::sync::Mutex<()>,
    window: Duration,
    interval: Duration,
    output_dir: PathBuf,
    url: String,
    client: reqwest::Client,
    upstream: Upstream,
    dumps_ok: Arc<Series>,
    dumps_error: Arc<Series>,
}

pub fn run(
    path: &Path,
    config: HindsightConfig,
    reload: Reload<HindsightConfig>,
) -> anyhow::Result<()> {
    daemon::run::<Hindsight>(path, config, reload)
}

/// The flight recorder as a [`Daemon`]: the recording task, the task
/// that dumps on SIGUSR1, and what `POST /dump` shares with them.
pub struct Hindsight {
    shared: Arc<Shared>,
    recorder: tokio::task::JoinHandle<()>,
    on_signal: tokio::task::JoinHandle<()>,
    url: String,
}

impl Daemon for Hindsight {
    type Config = HindsightConfig;
    const COMPONENT: &'static str = "hindsight";

    fn listen(config: &HindsightConfig) -> &Listen {
        &config.listen
    }

    async fn start(path: &Path, config: &HindsightConfig, events: &Events) -> anyhow::Result<Self> {
        let dir = &config.buffer.path;
        let spool = Spool::open(
            dir,
            config.buffer.max_bytes.0,
            config.buffer.duration.0.as_millis() as u64,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open the buffer {} (key `buffer.path` in {}): {e}",
                dir.display(),
                path.display()
            )
        })?;
        std::fs::create_dir_all(&config.dump.output_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create {} (key `dump.output_dir` in {}): {e}",
                config.dump.output_dir.display(),
                path.display()
            )
        })?;
        tracing::info!(
            "buffer {}: {} snapshots, {} bytes kept from before",
            dir.display(),
            spool.entries().count(),
            spool.bytes()
        );
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            dumping: tokio::sync::Mutex::new(()),
            window: config.buffer.duration.0,
            interval: config.source.interval,
            output_dir: config.dump.output_dir.clone(),
            url: config.source.url.0.clone(),
            // The files were checked at load; broken since, the pulls say why.
            client: config
                .source
                .upstream
                .client()
                .ok()
                .flatten()
                .unwrap_or_else(client::shared),
            upstream: config.source.upstream.clone(),
            dumps_ok: DUMPS.series(&["ok"]),
            dumps_error: DUMPS.series(&["error"]),
        });
        let recorder = tokio::spawn(record(Arc::clone(&shared)));
        let on_signal = {
            let shared = Arc::clone(&shared);
            let mut rx = events.subscribe();
            tokio::spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    match rx.recv().await {
                        Ok(Event::Dump) => match dump(&shared, None).await {
                            Ok(d) => tracing::info!("SIGUSR1: wrote {}", d.path.display()),
                            Err(e) => tracing::error!("SIGUSR1: dump failed: {e:#}"),
                        },
                        Ok(_) | Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    }
                }
            })
        };
        tracing::info!(
            "recording {}/metrics/binary every {:?}, keeping {:?}; dumps go to {}",
            config.source.url.0,
            config.source.interval,
            config.buffer.duration.0,
            config.dump.output_dir.display()
        );
        Ok(Hindsight {
            shared,
            recorder,
            on_signal,
            url: config.source.url.0.clone(),
        })
    }

    async fn ready(&self) -> String {
        format!("recording {}", self.url)
    }

    fn router(self: &Arc<Self>) -> Router {
        serve::with_base_routes(
            Router::new()
                .route("/metrics", daemon::own_metrics())
                .route(
                    "/dump",
                    post(dump_route).with_state(Arc::clone(&self.shared)),
                ),
            "/metrics, POST /dump[?last=5m]",
        )
    }

    fn alive(&self) -> bool {
        !self.recorder.is_finished()
    }

    async fn reload(
        &self,
        running: &HindsightConfig,
        new: &HindsightConfig,
    ) -> anyhow::Result<Option<String>> {
        for (section, changed) in [
            ("[source]", running.source != new.source),
            ("[buffer]", running.buffer != new.buffer),
            ("[dump]", running.dump != new.dump),
            ("[log]", running.log != new.log),
        ] {
            if changed {
                tracing::warn!("{section} changed: it takes effect when hindsight restarts");
            }
        }
        tracing::info!("[listen] applied");
        Ok(None)
    }

    async fn stop(&self) {
        self.recorder.abort();
        self.on_signal.abort();
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn record(shared: Arc<Shared>) {
    let ok = PULLS.series(&["ok"]);
    let error = PULLS.series(&["error"]);
    let (samples, bytes, span) = (SAMPLES.single(), BYTES.single(), SPAN.single());
    let url = fetch::binary_url(&shared.url);
    let timeout = shared.interval.min(Duration::from_secs(10));
    let mut ticker = Ticker::new(shared.interval);
    let mut failing = false;
    loop {
        ticker.tick().await;
        match fetch::snapshot(&shared.client, &url, &shared.upstream, timeout).await {
            Ok((s, body)) => {
                let mut spool = shared.spool.lock().unwrap_or_else(|p| p.into_inner());
                match spool.append(unix_ms(s.stamp.systemtime), &body) {
                    Ok(_) => {
                        ok.add(1);
                        if failing {
                            tracing::info!("pulling {url} again");
                            failing = false;
                        }
                    }
                    Err(e) => {
                        error.add(1);
                        tracing::error!("cannot write to the buffer: {e}; this snapshot is lost");
                    }
                }
            }
            Err(e) => {
                error.add(1);
                if !failing {
                    tracing::warn!("cannot pull {url}: {e}; retrying every interval");
                    failing = true;
                }
            }
        }
        // A dump reads its entries twice; dropping a segment between the
        // reads would lose rows, so retention waits for the dump (a dump
        // takes well under a second; max_bytes may be passed by as much).
        let dumping = shared.dumping.try_lock().is_err();
        let mut spool = shared.spool.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(newest), false) = (spool.newest_ms(), dumping) {
            spool.collect(newest, &[]);
        }
        samples.set_gauge(spool.entries().count() as i64);
        bytes.set_gauge(spool.bytes() as i64);
        let s = match (spool.oldest_ms(), spool.newest_ms()) {
            (Some(a), Some(b)) => b.saturating_sub(a) * 1_000_000,
            _ => 0,
        };
        span.set_gauge(s as i64);
    }
}

/// A written dump.
#[derive(serde::Serialize)]
struct Dumped {
    path: PathBuf,
    rows: u64,
    /// Buffered snapshots that could not be read back (damaged).
    skipped: u64,
    bytes: u64,
    /// Seconds since the epoch of the first and last rows.
    from: f64,
    to: f64,
}

/// Writes the last `last` (default: the whole window) to a new parquet
/// file in `output_dir`.
async fn dump(shared: &Arc<Shared>, last: Option<Duration>) -> anyhow::Result<Dumped> {
    let _one = shared.dumping.lock().await;
    let span = last.unwrap_or(shared.window).min(shared.window);
    // The agent's descriptions and system, as `sonde record` files carry;
    // absent when the agent does not answer (the buffer is what matters).
    let descriptions =
        fetch::optional_json(&shared.client, &shared.url, "/metrics/descriptions").await;
    let systeminfo = fetch::optional_json(&shared.client, &shared.url, "/systeminfo").await;
    let metadata = parquet::file_metadata(shared.interval, descriptions, systeminfo);
    let result = {
        let shared = Arc::clone(shared);
        tokio::task::spawn_blocking(move || write_dump(&shared, span, &metadata)).await
    };
    let result = result
        .map_err(|e| anyhow::anyhow!("the dump panicked: {e}"))
        .and_then(|r| r);
    match &result {
        Ok(_) => shared.dumps_ok.add(1),
        Err(_) => shared.dumps_error.add(1),
    }
    result
}

fn write_dump(
    shared: &Shared,
    span: Duration,
    metadata: &[(String, String)],
) -> anyhow::Result<Dumped> {
    // The window ends at the newest sample; a sample stamped `span` before
    // it is one interval too many, hence the strict bound.
    let entries: Vec<Entry> = {
        let spool = shared.spool.lock().unwrap_or_else(|p| p.into_inner());
        let newest = spool
            .newest_ms()
            .ok_or_else(|| anyhow::anyhow!("the buffer is empty: nothing recorded yet"))?;
        let from = newest.saturating_sub(span.as_millis() as u64);
        spool
            .entries()
            .filter(|e| e.unix_ms > from)
            .copied()
            .collect()
    };
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(':', "");
    let mut path = shared.output_dir.join(format!("hindsight-{stamp}.parquet"));
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = shared
            .output_dir
            .join(format!("hindsight-{stamp}-{n}.parquet"));
    }
    let mut source = SpoolSnapshots {
        spool: &shared.spool,
        entries,
        skipped: 0,
    };
    let summary = parquet::write(&path, metadata, &mut source)?;
    Ok(Dumped {
        path,
        skipped: source.skipped,
        rows: summary.rows,
        bytes: summary.bytes,
        from: summary.first_ns as f64 / 1e9,
        to: summary.last_ns as f64 / 1e9,
    })
}

#[derive(serde::Deserialize)]
struct DumpQuery {
    last: Option<String>,
}

async fn dump_route(State(shared): State<Arc<Shared>>, q: Query<DumpQuery>) -> Response {
    let last = match q.last.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) if !d.is_zero() => Some(d),
        Some(_) => {
            let got = q.last.as_deref().unwrap_or_default();
            return (
                StatusCode::BAD_REQUEST,
                format!("bad `last` = {got:?}: a duration such as 5m or 90s\n"),
            )
                .into_response();
        }
    };
    match dump(&shared, last).await {
        Ok(d) => {
            tracing::info!("POST /dump: wrote {}", d.path.display());
            let body = serde_json::to_vec(&d).unwrap_or_default();
            bytes_response("application/json", Bytes::from(body))
        }
        Err(e) => {
            tracing::error!("POST /dump failed: {e:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("dump failed: {e:#}\n"),
            )
                .into_response()
        }
    }
}
