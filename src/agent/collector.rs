//! The scrape cache in front of the samplers: scrapes become refreshes,
//! one per TTL however many scrapers arrive, and each body (text,
//! OpenMetrics, protobuf with native histograms, gzip'd or not, msgpack,
//! JSON) is rendered at most once per refresh into buffers that live as
//! long as the agent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::config::AgentConfig;
use super::samplers::Samplers;
use crate::prometheus::{Format, Renderer};
use crate::registry::Series;
use crate::serve::Gzip;
use crate::snapshot::{Encoder, Stamp};

crate::family! {
    static BUILD_INFO: Gauge {
        name: "sonde_build_info",
        unit: Count,
        labels: ["version"],
        sampler: "sonde",
        source: "agent",
        help: "Always 1; the version label says which Sonde is running.",
    }
}
crate::family! {
    static REFRESHES: Counter {
        name: "sonde_refreshes",
        unit: Count,
        labels: [],
        sampler: "sonde",
        source: "agent",
        help: "Snapshot refreshes; scrapes within the TTL share one.",
    }
}

/// What a scrape can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Prometheus(Format, bool),
    Msgpack,
    Json,
}

#[derive(Default)]
struct Cache {
    /// By format, then gzip'd or not.
    text: [Option<Bytes>; 6],
    msgpack: Option<Bytes>,
    json: Option<Bytes>,
}

impl Cache {
    fn slot(&mut self, body: Body) -> &mut Option<Bytes> {
        match body {
            Body::Prometheus(f, gz) => &mut self.text[f.index() * 2 + gz as usize],
            Body::Msgpack => &mut self.msgpack,
            Body::Json => &mut self.json,
        }
    }
}

struct State {
    refreshed: Option<Instant>,
    stamp: Stamp,
    cache: Cache,
    renderer: Renderer,
    encoder: Encoder,
    /// The protobuf exposition's buffers.
    proto: crate::prometheus::proto::Encoder,
    text: String,
    bytes: Vec<u8>,
    gz: Vec<u8>,
    gzip: Gzip,
}

pub struct Collector {
    pub samplers: Samplers,
    /// The snapshot TTL in nanoseconds (a reload may change it).
    ttl: AtomicU64,
    state: tokio::sync::Mutex<State>,
    refreshes: Arc<Series>,
    _build_info: Arc<Series>,
}

impl Collector {
    /// Starts the samplers (see [`Samplers::start`]) behind an empty cache.
    pub fn start(config: &AgentConfig) -> Self {
        let build_info = BUILD_INFO.series(&[env!("CARGO_PKG_VERSION")]);
        build_info.set_gauge(1);
        Collector {
            samplers: Samplers::start(config),
            ttl: AtomicU64::new(config.general.ttl.0.as_nanos() as u64),
            state: tokio::sync::Mutex::new(State {
                refreshed: None,
                stamp: Stamp {
                    systemtime: SystemTime::now(),
                    duration: Duration::ZERO,
                },
                cache: Cache::default(),
                renderer: Renderer::new(config.prometheus.bucket_sets()),
                encoder: Encoder::default(),
                proto: Default::default(),
                text: String::new(),
                bytes: Vec::new(),
                gz: Vec::new(),
                gzip: Gzip::default(),
            }),
            refreshes: REFRESHES.single(),
            _build_info: build_info,
        }
    }

    /// Refreshes every active sampler (see [`Samplers::refresh`]).
    pub fn refresh(&self) {
        self.samplers.refresh();
        self.refreshes.add(1);
    }

    /// Refreshes (unless one is cached) and keeps the result for the TTL,
    /// as a scrape would: the agent's first refresh, done before it tells
    /// systemd it is ready.
    pub async fn refresh_now(&self) {
        self.body(Body::Msgpack).await;
    }

    /// Applies a reloaded config (see [`Samplers::reload`]) with no scrape
    /// refreshing meanwhile; the TTL and histogram buckets apply from the
    /// next scrape. Returns the samplers that could not start.
    pub async fn reload(&self, config: &AgentConfig) -> Vec<String> {
        let mut st = self.state.lock().await;
        let failed = tokio::task::block_in_place(|| self.samplers.reload(config));
        self.ttl
            .store(config.general.ttl.0.as_nanos() as u64, Ordering::Relaxed);
        st.renderer = Renderer::new(config.prometheus.bucket_sets());
        // The next scrape refreshes, so removed series are gone from it.
        st.refreshed = None;
        st.cache = Cache::default();
        failed
    }

    /// The body for a scrape: refreshed when older than the TTL (the first
    /// scraper refreshes, concurrent ones wait for it and share the result).
    pub async fn body(&self, body: Body) -> Bytes {
        let mut st = self.state.lock().await;
        let ttl = Duration::from_nanos(self.ttl.load(Ordering::Relaxed));
        if st.refreshed.is_none_or(|t| t.elapsed() >= ttl) {
            let systemtime = SystemTime::now();
            let start = Instant::now();
            self.refresh();
            st.stamp = Stamp {
                systemtime,
                duration: start.elapsed(),
            };
            st.refreshed = Some(Instant::now());
            st.cache = Cache::default();
        }
        if let Some(b) = st.cache.slot(body) {
            return b.clone();
        }
        let b = st.render(body);
        *st.cache.slot(body) = Some(b.clone());
        b
    }

    /// Renders Prometheus text of the current registry (for `--once`).
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        self.state
            .blocking_lock()
            .renderer
            .render(Format::Text, &mut out);
        out
    }
}

impl State {
    fn render(&mut self, body: Body) -> Bytes {
        match body {
            Body::Prometheus(Format::Protobuf, gzip) => {
                self.renderer
                    .render_protobuf(&mut self.proto, &mut self.bytes);
                if gzip {
                    self.gzip.compress(&self.bytes, &mut self.gz);
                    Bytes::copy_from_slice(&self.gz)
                } else {
                    Bytes::copy_from_slice(&self.bytes)
                }
            }
            Body::Prometheus(format, gzip) => {
                self.renderer.render(format, &mut self.text);
                if gzip {
                    self.gzip.compress(self.text.as_bytes(), &mut self.gz);
                    Bytes::copy_from_slice(&self.gz)
                } else {
                    Bytes::copy_from_slice(self.text.as_bytes())
                }
            }
            Body::Msgpack => {
                self.encoder.msgpack(self.stamp, &mut self.bytes);
                Bytes::copy_from_slice(&self.bytes)
            }
            Body::Json => {
                self.encoder.json(self.stamp, &mut self.bytes);
                Bytes::copy_from_slice(&self.bytes)
            }
        }
    }
}
