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
mod families;
pub mod names;
mod parse;
mod read;

use families::*;
use read::{read_v1, read_v2, Reader};

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use linkme::distributed_slice;
use serde::{Deserialize, Deserializer};

use super::common::cgroups::{self, Layout, Mounts, Provider, SLOTS};
use super::common::{glob, ns_per_tick, Keyed};
use super::{InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::scheduler::*;
use crate::bpf::consts::syscall::SYSCALL_OPS;
use crate::config::HumanDuration;
use crate::registry::{Family, Series};

const _: () = assert!(crate::bpf::consts::syscall::SYSCALL_CGROUPS == SCHED_CGROUPS);

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

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "cgroup",
    validate,
    init,
};

/// The series of one exported cgroup.
struct Exported {
    /// Path from the hierarchy root ("" for the root itself).
    path: String,
    /// Label values: id, container_id, name, image, pod, namespace.
    labels: [String; 6],
    /// Labels were made before Docker answered: made again when it does.
    docker_pending: bool,
    id: u64,
    slot: Option<usize>,
    cpu_usage: Arc<Series>,
    cpu_user: Arc<Series>,
    cpu_system: Arc<Series>,
    cfs_periods: Arc<Series>,
    cfs_throttled_periods: Arc<Series>,
    cfs_throttled: Arc<Series>,
    mem_usage: Arc<Series>,
    mem_working_set: Arc<Series>,
    mem_rss: Arc<Series>,
    mem_cache: Arc<Series>,
    oom: Arc<Series>,
    fs_reads: Arc<Series>,
    fs_writes: Arc<Series>,
    quota: Arc<Series>,
    period: Arc<Series>,
    mem_limit: Arc<Series>,
    /// v2 only: (series, file, the `full` line).
    psi: Vec<(Arc<Series>, &'static str, bool)>,
    /// With a slot and the scheduler's counters: run-queue, on-CPU,
    /// voluntary, involuntary.
    sched: Vec<Arc<Series>>,
    /// With a slot: per op, made when the op is first counted.
    syscalls: Vec<Option<Arc<Series>>>,
    /// Slot values when the slot was taken: a slot's counters are not
    /// reset when it passes from a vanished cgroup to a new one.
    base_sched: [u64; SCHED_CG_FIELDS],
    base_sys: Vec<u64>,
}

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
    thread: Option<JoinHandle<()>>,
    _stop: mpsc::Sender<()>,
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
        scratch: vec![0; SYSCALL_OPS.max(SCHED_CG_FIELDS)],
        options,
    };
    worker.round();
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sonde-cgroup".into())
        .spawn(move || {
            // The BPF samplers start after this one (by name): a second
            // pass soon gives their counters slots without waiting a
            // whole interval.
            let mut wait = worker.options.interval.0.min(Duration::from_secs(1));
            loop {
                match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => worker.round(),
                    _ => return,
                }
                wait = worker.options.interval.0;
            }
        })?;
    Ok(Some(Box::new(Cgroup {
        thread: Some(thread),
        _stop: stop,
        detail,
    })))
}

impl Sampler for Cgroup {
    fn refresh(&mut self) -> anyhow::Result<()> {
        match &self.thread {
            Some(t) if !t.is_finished() => Ok(()),
            _ => anyhow::bail!("the cgroup worker thread stopped"),
        }
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
        let late = self.providers.len();
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
            } else if let (Some(slot), true) = (entry.slot, providers.len() > late) {
                // A BPF sampler that started after this cgroup got its slot:
                // only its counters start from here.
                for p in &providers[late..] {
                    let _ = p.assign(*id, slot);
                }
                entry.rebase(&providers[late..]);
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
                    let mut fresh = Exported::new(e.path.clone(), labels, false, e.id, e.slot, v2);
                    fresh.base_sched = e.base_sched;
                    fresh.base_sys = std::mem::take(&mut e.base_sys);
                    *e = fresh;
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

fn path_or_root(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Label values of a cgroup (id, container_id, name, image, pod,
/// namespace) and whether Docker may still answer for it.
fn labels_of(path: &str, docker: Option<&docker::Docker>) -> ([String; 6], bool) {
    let mut l = names::from_path(path_or_root(path));
    let mut pending = false;
    if let (Some(d), Some(cid)) = (docker, l.container_id.clone()) {
        // Only Docker's own cgroups (or a path that does not say whose
        // container it is) are asked about.
        if matches!(l.runtime, None | Some("docker")) {
            match d.get(&cid) {
                Some(info) => info.apply(&mut l),
                None => pending = true,
            }
        }
    }
    let out = [
        path_or_root(path).to_string(),
        l.container_id.unwrap_or_default(),
        l.name.unwrap_or_default(),
        l.image.unwrap_or_default(),
        l.pod.unwrap_or_default(),
        l.namespace.unwrap_or_default(),
    ];
    (out, pending)
}

/// Depth-first walk: every cgroup below `dir` (the root is ""), with its
/// id (the directory's inode number).
fn walk(dir: &Path, rel: &str, level: usize, depth: usize, out: &mut Vec<(String, u64)>) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    out.push((rel.to_string(), meta.ino()));
    if depth != 0 && level >= depth {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        walk(&e.path(), &format!("{rel}/{name}"), level + 1, depth, out);
    }
}

impl Exported {
    fn new(
        path: String,
        labels: [String; 6],
        docker_pending: bool,
        id: u64,
        slot: Option<usize>,
        v2: bool,
    ) -> Self {
        let values = labels.clone();
        let l: [&str; 6] = std::array::from_fn(|i| values[i].as_str());
        let s = |f: &'static Family| f.series(&l);
        let psi = if v2 {
            vec![
                (s(&PSI_CPU_WAITING), "cpu.pressure", false),
                (s(&PSI_CPU_STALLED), "cpu.pressure", true),
                (s(&PSI_MEM_WAITING), "memory.pressure", false),
                (s(&PSI_MEM_STALLED), "memory.pressure", true),
                (s(&PSI_IO_WAITING), "io.pressure", false),
                (s(&PSI_IO_STALLED), "io.pressure", true),
            ]
        } else {
            Vec::new()
        };
        Exported {
            path,
            docker_pending,
            id,
            slot,
            cpu_usage: s(&CPU_USAGE),
            cpu_user: s(&CPU_USER),
            cpu_system: s(&CPU_SYSTEM),
            cfs_periods: s(&CFS_PERIODS),
            cfs_throttled_periods: s(&CFS_THROTTLED_PERIODS),
            cfs_throttled: s(&CFS_THROTTLED),
            mem_usage: s(&MEM_USAGE),
            mem_working_set: s(&MEM_WORKING_SET),
            mem_rss: s(&MEM_RSS),
            mem_cache: s(&MEM_CACHE),
            oom: s(&OOM),
            fs_reads: s(&FS_READS),
            fs_writes: s(&FS_WRITES),
            quota: s(&SPEC_QUOTA),
            period: s(&SPEC_PERIOD),
            mem_limit: s(&SPEC_MEMORY),
            psi,
            sched: Vec::new(),
            syscalls: Vec::new(),
            base_sched: [0; SCHED_CG_FIELDS],
            base_sys: Vec::new(),
            labels,
        }
    }

    /// The scheduler's per-cgroup series, made on the first read after its
    /// provider has this cgroup's slot (not before: a zero would claim it
    /// ran nothing).
    fn sched_series(&mut self) {
        let l: Vec<&str> = self.labels.iter().map(String::as_str).collect();
        let with = |f: &'static Family, extra: &str| {
            let mut v = l.clone();
            v.push(extra);
            f.series(&v)
        };
        self.sched = vec![
            RUNQUEUE.series(&l),
            ONCPU.series(&l),
            with(&SWITCHES, "voluntary"),
            with(&SWITCHES, "involuntary"),
        ];
    }

    /// Takes the current slot values as zero (the slot may carry counts of
    /// a previous owner, or of a provider that started late).
    fn rebase(&mut self, providers: &[Arc<Provider>]) {
        let Some(slot) = self.slot else { return };
        for p in providers {
            match p.sampler {
                "scheduler" => p.read(slot, &mut self.base_sched),
                _ => {
                    self.base_sys.resize(p.fields(), 0);
                    p.read(slot, &mut self.base_sys);
                }
            }
        }
    }

    fn read_bpf(&mut self, providers: &[Arc<Provider>], scratch: &mut [u64]) {
        let Some(slot) = self.slot else { return };
        for p in providers {
            let n = p.fields();
            let vals = &mut scratch[..n];
            p.read(slot, vals);
            match p.sampler {
                "scheduler" => {
                    if self.sched.is_empty() {
                        self.sched_series();
                    }
                    for (i, s) in self.sched.iter().enumerate() {
                        s.set_counter(vals[i].saturating_sub(self.base_sched[i]));
                    }
                }
                _ => {
                    self.base_sys.resize(n, 0);
                    self.syscalls.resize(n, None);
                    for (op, &val) in vals.iter().enumerate() {
                        let v = val.saturating_sub(self.base_sys[op]);
                        if v == 0 && self.syscalls[op].is_none() {
                            continue;
                        }
                        let series = self.syscalls[op].get_or_insert_with(|| {
                            let mut l: Vec<&str> = self.labels.iter().map(String::as_str).collect();
                            l.push(super::syscall::OPS[op]);
                            SYSCALLS.series(&l)
                        });
                        series.set_counter(v);
                    }
                }
            }
        }
    }
}
