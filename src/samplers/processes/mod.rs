//! `processes` (plural): the host's processes, in named groups of
//! process-exporter's shape (`namedprocess_namegroup_*{groupname}`, so its
//! Grafana dashboards work), and the agent's `/top` table. The agent's own
//! process is the `process` sampler (singular).
//!
//! A walk of /proc runs on its own thread every `interval`, never on the
//! scrape path; a scrape reads what the last walk stored. Per process it
//! reads stat, status and io, and counts open fds (one `stat` of
//! /proc/PID/fd on Linux 6.2+), into reused buffers. Group counters never go
//! down when members end: see `tracker.rs` for the accounting, and
//! `bpf/processes.bpf.c` for the exit records that keep the CPU and I/O a
//! process used after the last walk, or between two walks.

mod exits;
mod groups;
mod procfs;
mod top;
mod tracker;

use std::time::{Duration, Instant};

use linkme::distributed_slice;
use serde::Deserialize;

use super::common::Worker;
use super::{InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::config::{Checker, HumanDuration, Segment};
use crate::privileges;
use groups::{Classifier, GroupConfig};
use tracker::{Settings, Tracker};

pub use top::json as top_json;

/// The sampler's config name: `[samplers.processes]`, and its families' `sampler`.
pub(crate) const NAME: &str = "processes";

crate::family! {
    static NUM_PROCS: Gauge {
        name: "namedprocess_namegroup_num_procs",
        unit: Count,
        labels: ["groupname"],
        sampler: NAME,
        source: "/proc/PID/stat",
        help: "Processes in the group.",
    }
}
crate::family! {
    static CPU: Counter {
        name: "namedprocess_namegroup_cpu",
        unit: Nanoseconds,
        labels: ["groupname", "mode"],
        sampler: NAME,
        source: "/proc/PID/stat, sched_process_free",
        help: "CPU time used by the group's processes, user or system; includes what members used until they ended (exactly, with the sched_process_free program, else as of the last walk).",
    }
}
crate::family! {
    static MEMORY: Gauge {
        name: "namedprocess_namegroup_memory_bytes",
        unit: Bytes,
        labels: ["groupname", "memtype"],
        sampler: NAME,
        source: "/proc/PID/stat, /proc/PID/status",
        help: "Memory of the group's processes: resident, virtual, or swapped (VmSwap).",
    }
}
crate::family! {
    static READ_BYTES: Counter {
        name: "namedprocess_namegroup_read_bytes",
        unit: Bytes,
        labels: ["groupname"],
        sampler: NAME,
        source: "/proc/PID/io, sched_process_free",
        help: "Bytes the group's processes caused to be read from storage (read_bytes of /proc/PID/io).",
    }
}
crate::family! {
    static WRITE_BYTES: Counter {
        name: "namedprocess_namegroup_write_bytes",
        unit: Bytes,
        labels: ["groupname"],
        sampler: NAME,
        source: "/proc/PID/io, sched_process_free",
        help: "Bytes the group's processes caused to be written to storage (write_bytes of /proc/PID/io).",
    }
}
crate::family! {
    static DESC_FDS: Gauge {
        name: "namedprocess_namegroup_open_filedesc",
        unit: Count,
        labels: ["groupname"],
        sampler: NAME,
        source: "/proc/PID/fd",
        help: "Open file descriptors of the group's processes.",
    }
}
crate::family! {
    static THREADS: Gauge {
        name: "namedprocess_namegroup_num_threads",
        unit: Count,
        labels: ["groupname"],
        sampler: NAME,
        source: "/proc/PID/stat",
        help: "Threads of the group's processes.",
    }
}
crate::family! {
    static DROPPED: Counter {
        name: "sonde_processes_groups_dropped",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "agent",
        help: "Groups not created because max_groups were already tracked; their processes are not counted.",
    }
}
crate::family! {
    static WALK: Gauge {
        name: "sonde_processes_walk_duration",
        unit: Nanoseconds,
        labels: [],
        sampler: NAME,
        source: "agent",
        help: "How long the last walk of /proc took (on the sampler's own thread).",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// How often /proc is walked.
    interval: HumanDuration,
    /// Matchers, first match wins; none: one group per command name.
    groups: Vec<GroupConfig>,
    /// Groups tracked at most; processes of further groups are not counted.
    max_groups: usize,
    /// Group kernel threads too (their names change with their work).
    kernel_threads: bool,
    /// A group without processes for this long is dropped.
    forget_after: HumanDuration,
    /// Rows of each /top list; 0 turns /top off.
    top: usize,
    /// Count the CPU and I/O of ended processes exactly (BPF).
    exits: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interval: HumanDuration(Duration::from_secs(10)),
            groups: Vec::new(),
            max_groups: 256,
            kernel_threads: false,
            forget_after: HumanDuration(Duration::from_secs(600)),
            top: 50,
            exits: true,
        }
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: true,
    // /proc/PID/io (0400, and a ptrace access check) and /proc/PID/exe
    // (ptrace access check) of other users' processes; the fallback count
    // of /proc/PID/fd (0500) before Linux 6.2.
    capabilities: privileges::bit(privileges::CAP_SYS_PTRACE)
        | privileges::bit(privileges::CAP_DAC_READ_SEARCH),
    validate,
    init,
};

fn validate(c: &mut Checker<'_>, path: &[Segment], v: toml::Value) -> bool {
    let Some(o) = c.deserialize::<Options>(path, v) else {
        return false;
    };
    let key = |k: &str| {
        let mut p = path.to_vec();
        p.push(Segment::Key(k.into()));
        p
    };
    let mut ok = true;
    if o.interval.0 < Duration::from_millis(100) {
        c.problem(&key("interval"), "must be at least 100ms");
        ok = false;
    }
    for (i, g) in o.groups.iter().enumerate() {
        let mut p = key("groups");
        p.push(Segment::Index(i));
        if g.name.is_empty() {
            p.push(Segment::Key("name".into()));
            c.problem(&p, "must not be empty");
            ok = false;
        } else if !g.has_matcher() {
            c.problem(
                &p,
                "needs at least one of comm, exe or cmdline, e.g. comm = [\"nginx\"]",
            );
            ok = false;
        }
    }
    ok
}

struct Processes {
    walker: Worker,
    exits: Option<exits::Exits>,
}

/// The walker's thread: drains exit records every second (or `interval`
/// if shorter) and walks /proc every `interval`.
struct Walker {
    tracker: Tracker,
    interval: Duration,
    next_walk: Instant,
    records: Vec<exits::Exit>,
}

impl Walker {
    fn drain(&mut self, reader: &mut Option<exits::Reader>) {
        let Some(r) = reader else { return };
        r.drain(&mut self.records);
        for e in &self.records {
            tracing::trace!(
                pid = e.tgid,
                comm = %String::from_utf8_lossy(e.comm()),
                runtime_ns = e.runtime,
                utime_ns = e.utime,
                stime_ns = e.stime,
                read_bytes = e.read_bytes,
                write_bytes = e.write_bytes,
                "processes: exit record"
            );
            self.tracker.exit(e);
        }
    }

    /// One wake-up: the exit records, then a walk when one is due.
    fn step(&mut self, reader: &mut Option<exits::Reader>) {
        self.drain(reader);
        let now = Instant::now();
        if now + Duration::from_millis(50) >= self.next_walk {
            // Exit records first: a process that ended since is then
            // matched before the walk misses it.
            self.tracker.walk();
            self.next_walk += self.interval;
            if self.next_walk < now {
                self.next_walk = now + self.interval;
            }
        } else if !self.records.is_empty() {
            self.tracker.publish(now);
        }
    }
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let o: Options = ctx.options()?;
    // Its one hook may be disabled like any BPF sampler's: the same as
    // `exits = false`.
    let disable = &ctx.bpf.options.disable;
    if let Some(bad) = disable.iter().find(|d| *d != exits::HOOK) {
        anyhow::bail!(
            "[samplers.{NAME}] disable: unknown hook `{bad}`; its hook is {}",
            exits::HOOK
        );
    }
    let exits = if !o.exits || !disable.is_empty() {
        None
    } else {
        let loaded = if procfs::proc_is_host_pid_namespace() {
            exits::Exits::load(&ctx.bpf)
        } else {
            Err(anyhow::anyhow!("/proc is not the host's pid namespace, so exit records (host pids) cannot be matched to its processes"))
        };
        match loaded {
            Ok(e) => Some(e),
            Err(e) => {
                let why = format!("{e:#}; ended processes keep the CPU and I/O the last walk saw");
                tracing::warn!(sampler = NAME, reason = %why, "exit records unavailable");
                let hook = format!("tp_btf/{}", exits::HOOK);
                ctx.bpf.unavailable(exits::HOOK, &hook, why);
                None
            }
        }
    };
    let ring = exits.as_ref().map(|e| e.ring()).transpose()?;
    let top = (o.top > 0).then(|| top::Top::new(o.top, o.interval.0));
    if o.top == 0 {
        top::disable(true);
    }
    let dropped = DROPPED.single();
    let settings = Settings {
        classifier: Classifier::new(&o.groups),
        max_groups: o.max_groups,
        kernel_threads: o.kernel_threads,
        forget_after: o.forget_after.0,
        exits: exits.is_some(),
    };
    let mut walker = Walker {
        tracker: Tracker::new(settings, top, dropped, WALK.single()),
        interval: o.interval.0,
        next_walk: Instant::now() + o.interval.0,
        records: Vec::new(),
    };
    // The first walk here, so `--once` and the first scrape have values.
    walker.tracker.walk();
    // The ring buffer's reader is not Send: it is built on the thread.
    let setup = move || {
        let reader = ring.and_then(|map| match exits::Reader::new(map) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "processes: cannot read exit records");
                None
            }
        });
        (walker, reader)
    };
    let tick = o.interval.0.min(Duration::from_secs(1));
    let pass = move |(walker, reader): &mut (Walker, Option<exits::Reader>)| {
        walker.step(reader);
        tick
    };
    let walker = Worker::spawn("sonde-procs", tick, setup, pass)?;
    Ok(Some(Box::new(Processes { walker, exits })))
}

impl Sampler for Processes {
    fn refresh(&mut self) -> anyhow::Result<()> {
        if let Some(e) = &self.exits {
            e.refresh();
        }
        self.walker.check()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        top::disable(false);
    }
}
