//! `cgroup`: per-container (per-cgroup) CPU, memory, I/O and pressure from
//! cgroupfs under cAdvisor's names and labels, plus what cgroupfs cannot
//! give, counted in the kernel by the scheduler and syscall programs:
//! run-queue wait, on-CPU time, context switches and syscalls per cgroup.
//!
//! A background thread walks the hierarchy every `interval` (off the scrape
//! path: thousands of small files) and stores values in the series; a
//! scrape only reads them. Which cgroups: the primary hierarchy (the
//! unified one on v2, the cpu controller's on v1 and hybrid), filtered by
//! `include`/`exclude`/`depth`, older than `min_age`, at most
//! `max_cgroups`. Exporting is decided when a cgroup first qualifies and
//! holds while it exists, so series are stable; one that vanishes takes
//! its series (and its BPF slot) with it.

pub mod docker;
mod exported;
mod families;
pub mod names;
mod parse;
mod read;

use exported::{labels_of, path_or_root, Exported};
use families::*;
use read::{read_v1, read_v2, walk, Reader};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use linkme::distributed_slice;
use serde::{Deserialize, Deserializer};

use super::common::cgroups::{self, Layout, Mounts, Provider, SLOTS};
use super::common::{self, glob, ns_per_tick, Keyed};
use super::{InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::config::HumanDuration;
use crate::registry::Series;

// Every provider has the same slots.
const _: () = assert!(crate::bpf::consts::syscall::SYSCALL_CGROUPS == SLOTS);

/// The BPF slot count bounds exported cgroups.
const MAX_CGROUPS: usize = SLOTS;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// How often cgroupfs is read.
    interval: HumanDuration,
    /// Cgroups exported at most; more are counted as dropped.
    max_cgroups: usize,
    /// A cgroup is exported once it is this old (short jobs are not).
    #[serde(deserialize_with = "duration_or_zero")]
    min_age: Duration,
    /// Path globs (`*`): when set, only matching cgroups are exported.
    include: Vec<String>,
    /// Path globs left out.
    exclude: Vec<String>,
    /// Levels below the root walked (0: all).
    depth: usize,
    /// Per-cgroup counters in the scheduler and syscall programs.
    attribution: bool,
    /// Ask the Docker Engine API for container names and images.
    docker: bool,
    docker_socket: PathBuf,
    docker_timeout: HumanDuration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interval: HumanDuration(Duration::from_secs(10)),
            max_cgroups: 1024,
            min_age: Duration::from_secs(30),
            include: Vec::new(),
            exclude: Vec::new(),
            depth: 0,
            attribution: true,
            docker: true,
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            docker_timeout: HumanDuration(Duration::from_secs(2)),
        }
    }
}

/// Whether the BPF samplers count per cgroup: the cgroup sampler enabled,
/// with `attribution` (its default). `options` were validated at load.
pub fn attribution(enabled: bool, options: &toml::Value) -> bool {
    enabled && Options::deserialize(options.clone()).map_or(true, |o| o.attribution)
}

fn duration_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration `{s}` ({e}); write e.g. \"0s\", \"30s\", \"1m\""
        ))
    })
}

fn validate(
    c: &mut crate::config::Checker<'_>,
    path: &[crate::config::Segment],
    v: toml::Value,
) -> bool {
    let Some(o) = c.deserialize::<Options>(path, v) else {
        return false;
    };
    if o.max_cgroups == 0 || o.max_cgroups > MAX_CGROUPS {
        let mut p = path.to_vec();
        p.push(crate::config::Segment::Key("max_cgroups".into()));
        c.problem(&p, format!("must be between 1 and {MAX_CGROUPS}"));
        return false;
    }
    true
}

/// The sampler's config name: `[samplers.cgroup]`, and its families' `sampler`.
pub(crate) const NAME: &str = "cgroup";

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: false,
    capabilities: 0,
    validate,
    init,
};

struct Worker {
    options: Options,
    mounts: Mounts,
    root: PathBuf,
    cgroups: Keyed<Exported>,
    /// Scratch: the cgroups found this pass (relative path, id).
    found: Vec<(String, u64)>,
    /// Cgroups waiting for `min_age`: when first seen, last pass seen.
    young: std::collections::HashMap<String, (i64, u64)>,
    buf: String,
    exported: usize,
    dropped: Arc<Series>,
    exported_gauge: Arc<Series>,
    pass_time: Arc<Series>,
    /// Free BPF slots, and slots freed in recent passes (with the pass):
    /// a slot is reused only after every CPU has surely switched since.
    free: Vec<usize>,
    cooling: Vec<(u64, usize)>,
    pass: u64,
    /// The providers known last pass (every slot is written to them).
    providers: Vec<Arc<Provider>>,
    docker: Option<docker::Docker>,
    tick_ns: u64,
    scratch: Vec<u64>,
}

struct Cgroup {
    worker: common::Worker,
    detail: String,
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let options: Options = ctx.options()?;
    let mounts = Mounts::detect()?;
    let root = mounts
        .primary()
        .ok_or_else(|| anyhow::anyhow!("no cpu controller hierarchy is mounted"))?
        .to_path_buf();
    let detail = format!(
        "cgroup {} layout, walking {}{}",
        mounts.layout.as_str(),
        root.display(),
        if options.attribution {
            "; per-cgroup counters from the scheduler and syscall programs"
        } else {
            ""
        }
    );
    tracing::info!("cgroup: {detail}");
    let docker = options
        .docker
        .then(|| docker::Docker::new(options.docker_socket.clone(), options.docker_timeout.0));
    let mut worker = Worker {
        mounts,
        root,
        cgroups: Keyed::default(),
        found: Vec::new(),
        young: Default::default(),
        buf: String::new(),
        exported: 0,
        dropped: DROPPED.single(),
        exported_gauge: EXPORTED.single(),
        pass_time: PASS.single(),
        free: (0..options.max_cgroups.min(SLOTS)).rev().collect(),
        cooling: Vec::new(),
        pass: 0,
        providers: Vec::new(),
        docker,
        tick_ns: ns_per_tick(),
        scratch: Vec::new(),
        options,
    };
    worker.round();
    let interval = worker.options.interval.0;
    // The BPF samplers start after this one (by name): a second pass soon
    // gives their counters slots without waiting a whole interval.
    let first = interval.min(Duration::from_secs(1));
    let pass = move |w: &mut Worker| {
        w.round();
        interval
    };
    let worker = common::Worker::spawn("sonde-cgroup", first, move || worker, pass)?;
    Ok(Some(Box::new(Cgroup { worker, detail })))
}

impl Sampler for Cgroup {
    fn refresh(&mut self) -> anyhow::Result<()> {
        self.worker.check()
    }

    fn detail(&self) -> Option<String> {
        Some(self.detail.clone())
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Worker {
    fn round(&mut self) {
        let started = std::time::Instant::now();
        self.pass += 1;
        let mut found = std::mem::take(&mut self.found);
        found.clear();
        walk(&self.root, "", 0, self.options.depth, &mut found);
        let providers = cgroups::providers();
        // Providers of BPF samplers that started (or restarted) since the
        // last pass.
        let new_providers: Vec<Arc<Provider>> = providers
            .iter()
            .filter(|p| !self.providers.iter().any(|o| o.id() == p.id()))
            .cloned()
            .collect();
        let now = now_secs();
        let v2 = self.mounts.layout == Layout::V2;
        // Slots freed two passes ago are safe to hand out again.
        let pass = self.pass;
        let mut i = 0;
        while i < self.cooling.len() {
            if self.cooling[i].0 + 2 <= pass {
                let (_, slot) = self.cooling.swap_remove(i);
                self.free.push(slot);
            } else {
                i += 1;
            }
        }

        self.cgroups.begin();
        // Slots given (caches of "no slot" are stale) and taken back
        // (cached slots are stale).
        let (mut changed, mut released) = (false, false);
        let mut key = String::new();
        for (path, id) in &found {
            let wanted = (self.options.include.is_empty()
                || self
                    .options
                    .include
                    .iter()
                    .any(|g| glob(g, path_or_root(path))))
                && !self
                    .options
                    .exclude
                    .iter()
                    .any(|g| glob(g, path_or_root(path)));
            if !wanted {
                continue;
            }
            key.clear();
            use std::fmt::Write as _;
            let _ = write!(key, "{id}:{path}");
            // Too young and not decided yet: asked again next pass. Age is
            // the agent's own first sight (directory times on kernfs move
            // when children come and go); cgroups of the first pass existed
            // before the agent and count as old.
            if !self.cgroups.contains(&key) && pass > 1 {
                let (first, seen) = self.young.entry(key.clone()).or_insert((now, pass));
                *seen = pass;
                if now.saturating_sub(*first) < self.options.min_age.as_secs() as i64 {
                    continue;
                }
                self.young.remove(&key);
            }
            let mut made = None;
            let entry = self.cgroups.get(&key, || {
                if self.exported >= self.options.max_cgroups {
                    self.dropped.add(1);
                    return None;
                }
                self.exported += 1;
                let slot = if self.options.attribution {
                    self.free.pop()
                } else {
                    None
                };
                let (labels, pending) = labels_of(path, self.docker.as_ref());
                made = slot;
                Some(Exported::new(path.clone(), labels, pending, *id, slot, v2))
            });
            let Some(entry) = entry else { continue };
            if let Some(slot) = made {
                changed = true;
                for p in &providers {
                    if let Err(e) = p.assign(*id, slot) {
                        tracing::warn!(error = %e, sampler = p.sampler, "cgroup: cannot write a slot");
                    }
                }
                entry.rebase(&providers);
            } else if let (Some(slot), false) = (entry.slot, new_providers.is_empty()) {
                // A BPF sampler that started after this cgroup got its slot:
                // only its counters start from here.
                for p in &new_providers {
                    let _ = p.assign(*id, slot);
                }
                entry.rebase(&new_providers);
                changed = true;
            } else if entry.slot.is_none() && self.options.attribution {
                // Exported while every slot was cooling: one is free now.
                if let Some(slot) = self.free.pop() {
                    for p in &providers {
                        let _ = p.assign(*id, slot);
                    }
                    entry.slot = Some(slot);
                    entry.rebase(&providers);
                    changed = true;
                }
            }
        }
        self.young.retain(|_, (_, seen)| *seen == pass);
        self.found = found;
        let mut gone = Vec::new();
        self.cgroups.finish_with(|e| {
            if let Some(e) = e {
                gone.push((e.id, e.slot));
            }
        });
        for (id, slot) in gone {
            self.exported -= 1;
            if let Some(slot) = slot {
                released = true;
                for p in &providers {
                    p.release(id);
                }
                self.cooling.push((pass, slot));
            }
        }
        self.providers = providers;
        for p in &self.providers {
            p.changed(changed, released);
        }
        self.read_all();
        if let Some(d) = &self.docker {
            let live: std::collections::HashSet<String> = self
                .cgroups
                .values_mut()
                .filter(|e| !e.labels[1].is_empty())
                .map(|e| e.labels[1].clone())
                .collect();
            d.retain(|id| live.contains(id));
        }
        self.exported_gauge.set_gauge(self.exported as i64);
        self.pass_time
            .set_gauge(started.elapsed().as_nanos().min(i64::MAX as u128) as i64);
    }

    fn read_all(&mut self) {
        let v2 = self.mounts.layout == Layout::V2;
        for e in self.cgroups.values_mut() {
            if e.docker_pending {
                let (labels, pending) = labels_of(&e.path, self.docker.as_ref());
                if !pending {
                    // Docker answered: the series again, with name and image.
                    e.relabel(labels, v2);
                }
            }
            let path = std::mem::take(&mut e.path);
            let reader = Reader {
                mounts: &self.mounts,
                root: &self.root,
                path: &path,
                buf: &mut self.buf,
            };
            if v2 {
                read_v2(reader, e);
            } else {
                read_v1(reader, e, self.tick_ns);
            }
            e.path = path;
            e.read_bpf(&self.providers, &mut self.scratch);
        }
    }
}
