//! One sampler as the agent runs it: started from its spec and its part
//! of the config (a panic or an error reported, never fatal), refreshed
//! with its outcome counted, and reported in `/samplers`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::config::AgentConfig;
use crate::bpf::{BpfContext, BpfInfo, BpfOptions, ProgramInfo};
use crate::privileges;
use crate::registry::Series;
use crate::samplers::{cgroup, Sampler, SamplerContext, SamplerSpec};

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
    /// Capabilities its refreshes need after the privilege drop.
    pub capabilities: u64,
    /// What it was started with, so a reload knows what changed.
    pub(super) settings: InstanceSettings,
    pub(super) status: Status,
    /// Why it is disabled or failed, or the last refresh error.
    reason: Mutex<Option<String>>,
    sampler: Mutex<Option<Box<dyn Sampler>>>,
    /// What its BPF objects reported while it started.
    bpf: Option<BpfInfo>,
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
pub(super) struct InstanceSettings {
    pub(super) enabled: bool,
    bpf: BpfOptions,
    options: toml::Value,
    cgroup_attribution: bool,
}

impl InstanceSettings {
    pub(super) fn of(name: &str, config: &AgentConfig) -> Self {
        InstanceSettings {
            enabled: config.enabled(name),
            bpf: config.bpf_options(name),
            options: config.options(name),
            cgroup_attribution: cgroup::attribution(
                config.enabled(cgroup::NAME),
                &config.options(cgroup::NAME),
            ),
        }
    }
}

impl Instance {
    pub(super) fn start(spec: &SamplerSpec, settings: InstanceSettings) -> Self {
        let name = spec.name;
        let ctx = SamplerContext {
            name,
            options: &settings.options,
            bpf: BpfContext::new(name, settings.bpf.clone()),
            cgroup_attribution: settings.cgroup_attribution,
        };
        let (status, reason, sampler) = if !settings.enabled {
            (
                Status::Disabled,
                Some("disabled in config".to_string()),
                None,
            )
        } else {
            const RESTART: &str = "capabilities were dropped after start (privileges.drop), \
                restart the agent to start this sampler";
            let missing = spec.capabilities & !privileges::kept();
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
        // What a sampler that did not start loaded goes with it.
        let bpf = ctx.bpf.take().filter(|_| sampler.is_some());
        let detail = sampler.as_ref().and_then(|s| s.detail());
        drop(ctx);
        let inst = Instance {
            name,
            capabilities: spec.capabilities,
            settings,
            status,
            reason: Mutex::new(reason),
            sampler: Mutex::new(sampler),
            bpf,
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

    pub(super) fn refresh(&self) {
        let mut guard = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sampler) = guard.as_mut() else {
            return;
        };
        let start = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let r = sampler.refresh();
            if let Some(b) = &self.bpf {
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
    pub(super) fn stopped(name: &'static str) -> Self {
        Instance {
            name,
            capabilities: 0,
            settings: InstanceSettings {
                enabled: false,
                bpf: BpfOptions::default(),
                options: toml::Value::Table(Default::default()),
                cgroup_attribution: false,
            },
            status: Status::Disabled,
            reason: Mutex::new(Some("restarting".into())),
            sampler: Mutex::new(None),
            bpf: None,
            detail: None,
            up: SAMPLER_UP.series(&[name]),
            refresh_ns: SAMPLER_REFRESH.series(&[name]),
            errors: SAMPLER_ERRORS.series(&[name]),
        }
    }

    /// Whether it runs BPF programs (a restart would load them again).
    pub(super) fn runs_bpf(&self) -> bool {
        self.bpf.as_ref().is_some_and(|b| !b.programs.is_empty())
    }

    pub(super) fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// One startup line: active, disabled or failed, and why.
    pub(super) fn log(&self) {
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
            programs: self
                .bpf
                .as_ref()
                .map(|b| b.programs.clone())
                .unwrap_or_default(),
            map_bytes: self.bpf.as_ref().map_or(0, |b| b.map_bytes),
            refresh_ns: self.refresh_ns.gauge().max(0) as u64,
        }
    }
}
