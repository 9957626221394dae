//! One upstream: turns spooled snapshots into requests and delivers them
//! in order, retrying what may succeed later and dropping what never will.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header;
use reqwest::StatusCode;

use super::config::{Sink as SinkConfig, SinkFormat, SinkKind};
use super::{now_ms, Shared};
use crate::client::{self, Upstream};
use crate::registry::Series;
use crate::serve::Gzip;
use crate::snapshot;

crate::family! {
    static SENT: Counter {
        name: "sonde_push_samples_sent",
        unit: Count,
        labels: ["sink"],
        sampler: "push",
        source: "pusher",
        help: "Samples delivered upstream (remote-write series samples, or metrics of a posted snapshot).",
    }
}
crate::family! {
    static RETRIES: Counter {
        name: "sonde_push_retries",
        unit: Count,
        labels: ["sink"],
        sampler: "push",
        source: "pusher",
        help: "Requests retried after a connection error, a timeout, a 5xx or a 429.",
    }
}
crate::family! {
    static DROPPED: Counter {
        name: "sonde_push_snapshots_dropped",
        unit: Count,
        labels: ["sink", "reason"],
        sampler: "push",
        source: "pusher",
        help: "Snapshots this sink will never deliver: rejected (a 4xx other than 429), spool_full, too_old, invalid.",
    }
}
crate::family! {
    static BACKLOG: Gauge {
        name: "sonde_push_backlog",
        unit: Count,
        labels: ["sink"],
        sampler: "push",
        source: "pusher",
        help: "Snapshots spooled and not yet delivered to this sink.",
    }
}
crate::family! {
    static LAST_SUCCESS: Gauge {
        name: "sonde_push_last_success_timestamp_seconds",
        unit: Seconds,
        labels: ["sink"],
        sampler: "push",
        source: "pusher",
        help: "Unix time of this sink's last delivered snapshot.",
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest `Retry-After` honoured.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

pub struct Sink {
    pub name: String,
    kind: SinkKind,
    url: String,
    upstream: Upstream,
    format: SinkFormat,
    native_histograms: bool,
    /// `[source] labels`, on every remote-write series.
    labels: Vec<super::remote_write::Label>,
    cursor_path: PathBuf,
    /// Last delivered sequence number, `u64::MAX` for none; read by the
    /// spool's collector.
    pub cursor: Arc<AtomicU64>,
    gzip: Gzip,
    sent: Arc<Series>,
    retries: Arc<Series>,
    pub backlog: Arc<Series>,
    last_success: Arc<Series>,
    dropped: [(&'static str, Arc<Series>); 4],
}

enum Outcome {
    Delivered,
    Retry(Option<Duration>, String),
    Reject(String),
}

impl Sink {
    pub fn new(
        config: &SinkConfig,
        labels: &std::collections::BTreeMap<String, String>,
        cursor_path: PathBuf,
        start: Option<u64>,
    ) -> Sink {
        let name = config.url.0.clone();
        let n = name.as_str();
        Sink {
            kind: config.kind,
            url: config.url.0.clone(),
            upstream: config.upstream(),
            format: config.format.unwrap_or_default(),
            native_histograms: config.native_histograms,
            labels: labels
                .iter()
                .map(|(k, v)| super::remote_write::Label {
                    name: crate::prometheus::names::label_key(k),
                    value: v.clone(),
                })
                .collect(),
            cursor: Arc::new(AtomicU64::new(start.unwrap_or(u64::MAX))),
            cursor_path,
            gzip: Gzip::default(),
            sent: SENT.series(&[n]),
            retries: RETRIES.series(&[n]),
            backlog: BACKLOG.series(&[n]),
            last_success: LAST_SUCCESS.series(&[n]),
            dropped: ["rejected", "spool_full", "too_old", "invalid"]
                .map(|r| (r, DROPPED.series(&[n, r]))),
            name,
        }
    }

    pub fn cursor(&self) -> Option<u64> {
        match self.cursor.load(Ordering::Relaxed) {
            u64::MAX => None,
            c => Some(c),
        }
    }

    fn count_dropped(&self, reason: &str, n: u64) {
        if let Some((_, s)) = self.dropped.iter().find(|(r, _)| *r == reason) {
            s.add(n);
        }
    }

    fn advance(&self, seq: u64) {
        self.cursor.store(seq, Ordering::Relaxed);
        if let Err(e) = crate::spool::store_cursor(&self.cursor_path, seq) {
            tracing::warn!(sink = %self.name, "cannot store the cursor in {}: {e}", self.cursor_path.display());
        }
    }

    /// Delivers spooled snapshots forever, oldest first.
    pub async fn run(mut self, shared: Arc<Shared>, client: reqwest::Client) {
        let mut client = client::Client::new(self.upstream.clone(), client);
        let mut backoff = BACKOFF_MIN;
        let mut failing = false;
        loop {
            let next = {
                let spool = shared.spool();
                self.backlog.set_gauge(spool.pending(self.cursor()) as i64);
                spool.next_after(self.cursor()).map(|e| (e, spool.read(&e)))
            };
            let Some((entry, payload)) = next else {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), shared.notify.notified()).await;
                continue;
            };
            if now_ms().saturating_sub(entry.unix_ms) > shared.max_age_ms {
                self.count_dropped("too_old", 1);
                self.advance(entry.seq);
                continue;
            }
            let requests = payload
                .map_err(|e| e.to_string())
                .and_then(|p| self.requests(&p));
            let (requests, samples) = match requests {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(sink = %self.name, "snapshot {} cannot be sent: {e}; dropping it", entry.seq);
                    self.count_dropped("invalid", 1);
                    self.advance(entry.seq);
                    continue;
                }
            };
            let mut i = 0;
            let mut rejected = false;
            while i < requests.len() {
                let c = client.current(&self.name);
                match self.send(&c, &requests[i]).await {
                    Outcome::Delivered => {
                        i += 1;
                        backoff = BACKOFF_MIN;
                        if failing {
                            tracing::info!(sink = %self.name, "delivering again");
                            failing = false;
                        }
                    }
                    Outcome::Reject(why) => {
                        tracing::warn!(sink = %self.name, "snapshot {} rejected, not retried: {why}", entry.seq);
                        self.count_dropped("rejected", 1);
                        rejected = true;
                        break;
                    }
                    Outcome::Retry(after, why) => {
                        self.retries.add(1);
                        let wait = after.unwrap_or_else(|| jitter(backoff));
                        if !failing {
                            tracing::warn!(sink = %self.name, "delivery failed, retrying (spooling meanwhile): {why}");
                            failing = true;
                        } else {
                            tracing::debug!(sink = %self.name, "retry in {wait:?}: {why}");
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        tokio::time::sleep(wait).await;
                        // The spool may have dropped it (limits) meanwhile;
                        // the backlog grows while this one is retried.
                        let gone = {
                            let spool = shared.spool();
                            self.backlog.set_gauge(spool.pending(self.cursor()) as i64);
                            spool.next_after(self.cursor()).map(|e| e.seq) != Some(entry.seq)
                        };
                        if gone {
                            break;
                        }
                    }
                }
            }
            if i == requests.len() && !rejected {
                self.sent.add(samples);
                let unix = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                self.last_success.set_gauge(unix.as_secs() as i64);
            }
            if i == requests.len() || rejected {
                self.advance(entry.seq);
            }
        }
    }

    /// The request bodies for one snapshot and the samples they carry.
    fn requests(&mut self, payload: &[u8]) -> Result<(Vec<Vec<u8>>, u64), String> {
        let snapshot = snapshot::decode(payload).map_err(|e| e.to_string())?;
        match self.kind {
            SinkKind::RemoteWrite => {
                let series =
                    super::remote_write::series(&snapshot, self.native_histograms, &self.labels);
                let n = series.len() as u64;
                Ok((super::remote_write::encode(series), n))
            }
            SinkKind::Http => {
                let n = snapshot.metrics.len() as u64;
                let mut body = Vec::new();
                match self.format {
                    SinkFormat::Msgpack => self.gzip.compress(payload, &mut body),
                    SinkFormat::Json => {
                        let mut json = Vec::new();
                        snapshot::encode::json(&snapshot, &mut json);
                        self.gzip.compress(&json, &mut body)
                    }
                }
                Ok((vec![body], n))
            }
        }
    }

    async fn send(&self, client: &reqwest::Client, body: &[u8]) -> Outcome {
        let mut req = client
            .post(&self.url)
            .timeout(REQUEST_TIMEOUT)
            .body(body.to_vec());
        req = match self.kind {
            SinkKind::RemoteWrite => req
                .header(header::CONTENT_TYPE, "application/x-protobuf")
                .header(header::CONTENT_ENCODING, "snappy")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0"),
            SinkKind::Http => req
                .header(
                    header::CONTENT_TYPE,
                    match self.format {
                        SinkFormat::Msgpack => "application/msgpack",
                        SinkFormat::Json => "application/json",
                    },
                )
                .header(header::CONTENT_ENCODING, "gzip"),
        };
        req = match self.upstream.authorize(req) {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(None, e),
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(None, client::describe(&e)),
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(RETRY_AFTER_MAX));
        let text = resp.text().await.unwrap_or_default();
        let why = format!(
            "HTTP {status}: {}",
            text.trim().chars().take(200).collect::<String>()
        );
        // 401/403/407 say our credentials or certificate are refused: a
        // rotation or a reload fixes that, so the snapshot waits in the
        // spool rather than being dropped.
        let credentials = matches!(
            status,
            StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::PROXY_AUTHENTICATION_REQUIRED
        );
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || credentials {
            Outcome::Retry(retry_after, why)
        } else {
            Outcome::Reject(why)
        }
    }
}

/// Counts snapshots of sink `name` dropped by the spool's limits (the
/// sink's own handle keeps the series alive).
pub fn count_dropped(name: &str, reason: &str, n: u64) {
    if n > 0 {
        DROPPED.series(&[name, reason]).add(n);
    }
}

/// Full jitter: a uniform wait in [backoff/2, backoff], so pushers that
/// failed together do not retry together.
fn jitter(backoff: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos() as u64;
    // xorshift of the clock's low bits: enough spread, no RNG dependency.
    let mut x = nanos ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let half = backoff.as_nanos() as u64 / 2;
    Duration::from_nanos(half + x % (half + 1))
}
