//! Push mode (`sonde push`): pulls the local agent's `/metrics/binary`
//! every interval, spools each snapshot and delivers it to every sink, at
//! least once and in order, each sink at its own pace.

pub mod config;
pub mod remote_write;
pub mod sink;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;

use crate::client::{self, Upstream};
use crate::config::Listen;
use crate::daemon::{self, Daemon, Reload};
use crate::registry::Series;
use crate::runtime::{Events, Ticker};
use crate::serve;
use crate::snapshot::fetch;
use crate::spool::{self, Spool};
use config::PushConfig;
use sink::Sink;

crate::family! {
    static PULLS: Counter {
        name: "sonde_push_pulls",
        unit: Count,
        labels: ["result"],
        sampler: "push",
        source: "pusher",
        help: "Pulls of the agent's snapshot: ok, or error (unreachable, timeout, not a snapshot).",
    }
}
crate::family! {
    static SPOOL_BYTES: Gauge {
        name: "sonde_push_spool_bytes",
        unit: Bytes,
        labels: [],
        sampler: "push",
        source: "pusher",
        help: "Bytes in the spool's segment files.",
    }
}
crate::family! {
    static SPOOL_AGE: Gauge {
        name: "sonde_push_spool_oldest_age",
        unit: Nanoseconds,
        labels: [],
        sampler: "push",
        source: "pusher",
        help: "Age of the oldest spooled snapshot (0 when empty).",
    }
}

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

/// The spool directory of the push config at `path`: what the agent needs
/// to supervise a pusher (it creates the directory for the pusher's user).
pub fn spool_path(path: &Path) -> Result<PathBuf, String> {
    PushConfig::load(path)
        .map(|c| c.spool.path)
        .map_err(|e| e.to_string())
}

pub fn run(path: &Path, config: PushConfig, reload: Reload<PushConfig>) -> anyhow::Result<()> {
    daemon::run::<Pusher>(path, config, reload)
}

/// The spool, the sinks and the puller of one config, running.
struct Work {
    /// The sinks', then the puller's (last).
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Work {
    /// Whether the puller still runs: the watchdog's liveness check.
    fn alive(&self) -> bool {
        self.tasks.last().is_some_and(|t| !t.is_finished())
    }

    /// Stops every task and waits for them, so the spool is closed.
    async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The pusher as a [`Daemon`]: the work of the config in force.
pub struct Pusher {
    path: PathBuf,
    /// `None` only while a reload swaps it, or after stop.
    work: tokio::sync::Mutex<Option<Work>>,
    status: String,
}

impl Daemon for Pusher {
    type Config = PushConfig;
    const COMPONENT: &'static str = "push";

    fn listen(config: &PushConfig) -> &Listen {
        &config.listen
    }

    async fn start(path: &Path, config: &PushConfig, _: &Events) -> anyhow::Result<Self> {
        Ok(Pusher {
            path: path.to_path_buf(),
            work: tokio::sync::Mutex::new(Some(start_work(path, config)?)),
            status: format!("pulling {}", config.source.url.0),
        })
    }

    async fn ready(&self) -> String {
        self.status.clone()
    }

    fn router(self: &Arc<Self>) -> Router {
        serve::with_base_routes(
            Router::new().route("/metrics", daemon::own_metrics()),
            "/metrics",
        )
    }

    fn alive(&self) -> bool {
        // A reload holds the lock while it swaps the work: alive then.
        self.work
            .try_lock()
            .map_or(true, |w| w.as_ref().is_some_and(Work::alive))
    }

    async fn reload(
        &self,
        running: &PushConfig,
        new: &PushConfig,
    ) -> anyhow::Result<Option<String>> {
        if running.source == new.source && running.spool == new.spool && running.sinks == new.sinks
        {
            return Ok(None);
        }
        // Stop, then start on the new config; the spool and the cursors
        // are on disk, so nothing spooled is lost.
        let mut guard = self.work.lock().await;
        if let Some(w) = guard.take() {
            w.stop().await;
        }
        match start_work(&self.path, new) {
            Ok(w) => *guard = Some(w),
            Err(e) => {
                *guard = start_work(&self.path, running).ok();
                return Err(e.context(
                    "the new [source], [spool] or [[sinks]] cannot start; the running ones go on",
                ));
            }
        }
        tracing::info!("pushing with the new [source], [spool] and [[sinks]]");
        Ok(None)
    }

    async fn stop(&self) {
        if let Some(w) = self.work.lock().await.take() {
            w.stop().await;
        }
        tracing::info!("undelivered snapshots stay in the spool");
    }
}

/// Opens the spool, starts a task per sink and the puller.
fn start_work(path: &Path, config: &PushConfig) -> anyhow::Result<Work> {
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
            // A new sink starts with what is pulled from now on. That
            // start is stored at once: a restart or reload before its first
            // delivery must not skip what was spooled meanwhile.
            let start = match spool::load_start(&cursor_path) {
                Some(start) => start,
                None => {
                    let start = spool.next_seq().checked_sub(1);
                    if let Err(e) = spool::store_start(&cursor_path, start) {
                        tracing::warn!(sink = %s.url.0, "cannot store the cursor in {}: {e}", cursor_path.display());
                    }
                    start
                }
            };
            tracing::info!(sink = %s.url.0, "sink {kind}, cursor {start:?}");
            Sink::new(s, &config.source.labels, cursor_path, start)
        })
        .collect();
    let shared = Arc::new(Shared {
        spool: Mutex::new(spool),
        notify: tokio::sync::Notify::new(),
        max_age_ms: config.spool.max_age.0.as_millis() as u64,
    });
    let client = client::shared();
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
    let upstream = config.source.upstream.clone();
    let puller = Puller {
        // The files were checked at load; broken since, the pulls say why.
        client: upstream.client().ok().flatten().unwrap_or(client),
        upstream,
        url: fetch::binary_url(&config.source.url.0),
        interval: config.source.interval,
        shared: Arc::clone(&shared),
        sinks: sink_handles,
        ok: PULLS.series(&["ok"]),
        error: PULLS.series(&["error"]),
        spool_bytes: SPOOL_BYTES.single(),
        spool_age: SPOOL_AGE.single(),
    };
    tasks.push(tokio::spawn(puller.run()));

    tracing::info!(
        "pulling {}/metrics/binary every {:?}",
        config.source.url.0,
        config.source.interval
    );
    Ok(Work { tasks })
}

struct SinkHandle {
    name: String,
    cursor: Arc<std::sync::atomic::AtomicU64>,
}

struct Puller {
    client: reqwest::Client,
    upstream: Upstream,
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
        let mut ticker = Ticker::new(self.interval);
        loop {
            ticker.tick().await;
            let start = Instant::now();
            let timeout = self.interval.min(Duration::from_secs(10));
            match fetch::snapshot(&self.client, &self.url, &self.upstream, timeout).await {
                Ok((snapshot, body)) => {
                    let ms = snapshot
                        .stamp
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
