//! Starts the samplers and turns scrapes into refreshes: one refresh per TTL
//! however many scrapers arrive, rendered bodies cached per refresh.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use super::config::AgentConfig;
use crate::bpf::ProgramInfo;
use crate::privileges;
use crate::prometheus::{Format, Renderer};
use crate::registry::Series;
use crate::samplers::{Sampler, SamplerContext, SamplerSpec, SAMPLERS};
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
    static SAMPLER_UP: Gauge {
        name: "sonde_sampler_up",
        unit: Count,
        labels: ["sampler"],
        sampler: "sonde",
        source: "agent",
        help: "1 when the sampler's last refresh succeeded, 0 when it failed or could not start.",
    }
}
crate::family! {
    static SAMPLER_REFRESH: Gauge {
        name: "sonde_sampler_refresh_duration",
        unit: Nanoseconds,
        labels: ["sampler"],
        sampler: "sonde",
        source: "agent",
        help: "How long the sampler's last refresh took.",
    }
}
crate::family! {
    static SAMPLER_ERRORS: Counter {
        name: "sonde_sampler_errors",
        unit: Count,
        labels: ["sampler"],
        sampler: "sonde",
        source: "agent",
        help: "Refreshes of the sampler that failed.",
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

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Disabled,
    Failed,
}

/// One sampler as the agent runs it.
pub struct Instance {
    pub name: &'static str,
    /// What it was started with, so a reload knows what changed.
    settings: InstanceSettings,
    status: Status,
    /// Why it is disabled or failed, or the last refresh error.
    reason: Mutex<Option<String>>,
    sampler: Mutex<Option<Box<dyn Sampler>>>,
    programs: Vec<ProgramInfo>,
    map_bytes: u64,
    detail: Option<String>,
    up: Arc<Series>,
    refresh_ns: Arc<Series>,
    errors: Arc<Series>,
}

/// The `/samplers` view of one sampler.
#[derive(Serialize)]
pub struct SamplerReport {
    pub name: &'static str,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the sampler found at start (e.g. the cgroup layout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub programs: Vec<ProgramInfo>,
    /// Kernel memory held by the sampler's BPF maps.
    pub map_bytes: u64,
    pub refresh_ns: u64,
}

/// A sampler's part of the config.
#[derive(Clone, Debug, PartialEq)]
struct InstanceSettings {
    enabled: bool,
    options: toml::Value,
    cgroup_attribution: bool,
}

impl InstanceSettings {
    fn of(name: &str, config: &AgentConfig) -> Self {
        InstanceSettings {
            enabled: config.enabled(name),
            options: config.options(name),
            cgroup_attribution: config.enabled("cgroup")
                && config
                    .options("cgroup")
                    .get("attribution")
                    .and_then(toml::Value::as_bool)
                    .unwrap_or(true),
        }
    }
}

impl Instance {
    fn start(spec: &SamplerSpec, settings: InstanceSettings) -> Self {
        let name = spec.name;
        let (status, reason, sampler) = if !settings.enabled {
            (
                Status::Disabled,
                Some("disabled in config".to_string()),
                None,
            )
        } else {
            let ctx = SamplerContext {
                name,
                options: &settings.options,
                cgroup_attribution: settings.cgroup_attribution,
            };
            const RESTART: &str = "capabilities were dropped after start (privileges.drop), \
                restart the agent to start this sampler";
            let missing = privileges::needs(name) & !privileges::kept();
            if privileges::dropped() && missing != 0 {
                // Its refreshes would fail (or read zeroes) without them.
                let why = format!("needs {}; {RESTART}", privileges::names(missing));
                (Status::Failed, Some(why), None)
            } else {
                // A sampler that panics while starting must not take the agent down.
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (spec.init)(&ctx)));
                let failed = |e: String| match privileges::dropped() {
                    true => format!("{e}; {RESTART}"),
                    false => e,
                };
                match r {
                    Ok(Ok(Some(s))) => (Status::Active, None, Some(s)),
                    Ok(Ok(None)) => (
                        Status::Disabled,
                        Some("not applicable on this host".into()),
                        None,
                    ),
                    Ok(Err(e)) => (Status::Failed, Some(failed(format!("{e:#}"))), None),
                    Err(_) => (
                        Status::Failed,
                        Some(failed("panicked while starting".into())),
                        None,
                    ),
                }
            }
        };
        let bpf = sampler.as_ref().and_then(|s| s.bpf());
        let programs = bpf.map(|b| b.programs.clone()).unwrap_or_default();
        let map_bytes = bpf.map_or(0, |b| b.map_bytes);
        let detail = sampler.as_ref().and_then(|s| s.detail());
        let inst = Instance {
            name,
            settings,
            status,
            reason: Mutex::new(reason),
            sampler: Mutex::new(sampler),
            programs,
            map_bytes,
            detail,
            up: SAMPLER_UP.series(&[name]),
            refresh_ns: SAMPLER_REFRESH.series(&[name]),
            errors: SAMPLER_ERRORS.series(&[name]),
        };
        inst.up.set_gauge((inst.status == Status::Active) as i64);
        inst
    }

    /// Whether it started (and so runs its refreshes).
    pub fn active(&self) -> bool {
        self.status == Status::Active
    }

    fn refresh(&self) {
        let mut guard = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sampler) = guard.as_mut() else {
            return;
        };
        let start = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let r = sampler.refresh();
            if let Some(b) = sampler.bpf() {
                b.refresh_stats();
            }
            r
        }));
        self.refresh_ns.set_gauge(start.elapsed().as_nanos() as i64);
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some("panicked while refreshing".to_string()),
        };
        let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        match error {
            None => {
                if reason.take().is_some() {
                    tracing::info!(sampler = self.name, "sampler recovered");
                }
                self.up.set_gauge(1);
            }
            Some(e) => {
                // Log transitions only, so a broken source cannot flood the log.
                if reason.as_deref() != Some(e.as_str()) {
                    tracing::warn!(sampler = self.name, error = %e, "sampler refresh failed");
                }
                *reason = Some(e);
                self.errors.add(1);
                self.up.set_gauge(0);
            }
        }
    }

    /// A sampler being restarted by a reload: in the list, not running.
    fn stopped(name: &'static str) -> Self {
        Instance {
            name,
            settings: InstanceSettings {
                enabled: false,
                options: toml::Value::Table(Default::default()),
                cgroup_attribution: false,
            },
            status: Status::Disabled,
            reason: Mutex::new(Some("restarting".into())),
            sampler: Mutex::new(None),
            programs: Vec::new(),
            map_bytes: 0,
            detail: None,
            up: SAMPLER_UP.series(&[name]),
            refresh_ns: SAMPLER_REFRESH.series(&[name]),
            errors: SAMPLER_ERRORS.series(&[name]),
        }
    }

    fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// One startup line: active, disabled or failed, and why.
    fn log(&self) {
        let reason = self.reason();
        let reason = reason.as_deref().unwrap_or("");
        match self.status {
            Status::Active => match &self.detail {
                Some(d) => tracing::info!("sampler {}: active ({d})", self.name),
                None => tracing::info!("sampler {}: active", self.name),
            },
            Status::Disabled => tracing::info!("sampler {}: disabled ({reason})", self.name),
            Status::Failed => tracing::warn!("sampler {}: FAILED: {reason}", self.name),
        }
    }

    pub fn report(&self) -> SamplerReport {
        SamplerReport {
            name: self.name,
            status: self.status.clone(),
            reason: self
                .reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            detail: self.detail.clone(),
            programs: self.programs.clone(),
            map_bytes: self.map_bytes,
            refresh_ns: self.refresh_ns.gauge().max(0) as u64,
        }
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
    text: [Option<Bytes>; 4],
    msgpack: Option<Bytes>,
    json: Option<Bytes>,
}

impl Cache {
    fn slot(&mut self, body: Body) -> &mut Option<Bytes> {
        match body {
            Body::Prometheus(f, gz) => {
                &mut self.text[(f == Format::OpenMetrics) as usize * 2 + gz as usize]
            }
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
    text: String,
    bytes: Vec<u8>,
    gz: Vec<u8>,
    gzip: Gzip,
}

pub struct Collector {
    /// In name order; replaced one by one by a reload.
    instances: RwLock<Vec<Arc<Instance>>>,
    /// The snapshot TTL in nanoseconds (a reload may change it).
    ttl: AtomicU64,
    state: tokio::sync::Mutex<State>,
    refreshes: Arc<Series>,
    _build_info: Arc<Series>,
    /// When the refresh under way started (ns since `epoch`, plus 1), or 0:
    /// the systemd watchdog stops pinging when one never ends.
    refreshing: AtomicU64,
    epoch: Instant,
}

impl Collector {
    /// Starts every registered sampler (in name order) and logs one line
    /// per sampler: active, disabled or failed, and why.
    pub fn start(config: &AgentConfig) -> Self {
        let mut specs: Vec<_> = SAMPLERS.iter().collect();
        specs.sort_by_key(|s| s.name);
        let instances: Vec<Arc<Instance>> = specs
            .into_iter()
            .map(|spec| {
                Arc::new(Instance::start(
                    spec,
                    InstanceSettings::of(spec.name, config),
                ))
            })
            .collect();
        for i in &instances {
            i.log();
        }
        let build_info = BUILD_INFO.series(&[env!("CARGO_PKG_VERSION")]);
        build_info.set_gauge(1);
        Collector {
            instances: RwLock::new(instances),
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
                text: String::new(),
                bytes: Vec::new(),
                gz: Vec::new(),
                gzip: Gzip::default(),
            }),
            refreshes: REFRESHES.single(),
            _build_info: build_info,
            refreshing: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Refreshes every active sampler, one after the other, on the calling
    /// thread. Each refresh is short, bounded work (a procfs read, an mmap
    /// copy; slow sources refresh on their own threads), and measured here
    /// handing them to other threads costs more CPU than it saves: 0.66 ms
    /// of agent CPU per scrape fanned out on the blocking pool vs 0.48 ms in
    /// one blocking task, on this 2-core VM.
    pub fn refresh(&self) {
        let since = self.epoch.elapsed().as_nanos() as u64 + 1;
        self.refreshing.store(since, Ordering::Relaxed);
        for i in self
            .instances()
            .iter()
            .filter(|i| i.status == Status::Active)
        {
            i.refresh();
        }
        self.refreshes.add(1);
        self.refreshing.store(0, Ordering::Relaxed);
    }

    /// Whether a refresh has been running for longer than `limit` (a
    /// sampler stuck in a read): the agent's watchdog liveness check.
    pub fn wedged(&self, limit: Duration) -> bool {
        match self.refreshing.load(Ordering::Relaxed) {
            0 => false,
            since => {
                let now = self.epoch.elapsed().as_nanos() as u64 + 1;
                now.saturating_sub(since) > limit.as_nanos() as u64
            }
        }
    }

    /// Refreshes (unless one is cached) and keeps the result for the TTL,
    /// as a scrape would: the agent's first refresh, done before it tells
    /// systemd it is ready.
    pub async fn refresh_now(&self) {
        self.body(Body::Msgpack).await;
    }

    pub fn instances(&self) -> Vec<Arc<Instance>> {
        self.instances
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies a reloaded config: samplers turned on start, turned off
    /// stop (their series go with them), samplers whose options changed
    /// restart, the others keep running untouched (their counters go on).
    /// The TTL and histogram buckets apply from the next scrape. Returns
    /// the samplers that were asked to start and could not.
    pub async fn reload(&self, config: &AgentConfig) -> Vec<String> {
        // Holding the scrape lock: no refresh runs while samplers change.
        let mut st = self.state.lock().await;
        let mut failed = Vec::new();
        let mut changed = Vec::new();
        let current: Vec<_> = self
            .instances()
            .iter()
            .map(|i| (i.name, i.settings.clone(), !i.programs.is_empty()))
            .collect();
        for (name, settings, bpf) in current {
            let new = InstanceSettings::of(name, config);
            if new == settings {
                continue;
            }
            // A restart would need a BPF load, which the dropped
            // capabilities no longer allow: keep it running as it is.
            if bpf && new.enabled && privileges::dropped() {
                failed.push(format!(
                    "{name}: its settings changed, but restarting it loads BPF programs and capabilities were dropped after start (privileges.drop): restart the agent to apply them; it keeps running with the old settings"
                ));
                continue;
            }
            let Some(spec) = SamplerSpec::find(name) else {
                continue;
            };
            // Stop first (the list held the last reference): a restarted
            // BPF sampler must not attach twice, and its series must not
            // carry the old values.
            let mut list = self.instances.write().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = list.iter_mut().find(|i| i.name == name) {
                *slot = Arc::new(Instance::stopped(name));
            }
            drop(list);
            let started = tokio::task::block_in_place(|| Instance::start(spec, new));
            started.log();
            if started.status == Status::Failed {
                failed.push(format!(
                    "{}: {}",
                    started.name,
                    started.reason().unwrap_or_default()
                ));
            }
            changed.push(started.name);
            let mut list = self.instances.write().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = list.iter_mut().find(|i| i.name == name) {
                *slot = Arc::new(started);
            }
        }
        if !changed.is_empty() {
            tracing::info!("samplers restarted or toggled: {}", changed.join(", "));
        }
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

    pub fn reports(&self) -> Vec<SamplerReport> {
        self.instances().iter().map(|i| i.report()).collect()
    }
}

impl State {
    fn render(&mut self, body: Body) -> Bytes {
        match body {
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
