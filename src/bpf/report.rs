//! What a sampler's BPF objects report: each program attached or not and
//! why, the kernel memory of its maps, and the run statistics the kernel
//! keeps per program. A sampler loads through its [`BpfContext`], which
//! collects these for the agent: no sampler hands them out itself.

use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::sync::{Arc, Mutex};

use super::loader::Loader;
use super::{BpfOptions, ProgramInfo};
use crate::registry::Series;

crate::family! {
    static PROGRAM_ATTACHED: Gauge {
        name: "sonde_bpf_program_attached",
        unit: Count,
        labels: ["sampler", "program"],
        sampler: "sonde",
        source: "agent",
        help: "1 when the BPF program is attached, 0 when it is disabled or failed (see /samplers for why).",
    }
}
crate::family! {
    static PROGRAM_RUNS: Counter {
        name: "sonde_bpf_program_runs",
        unit: Count,
        labels: ["sampler", "program"],
        sampler: "sonde",
        source: "bpf_prog_info",
        help: "Times the BPF program ran (only while kernel.bpf_stats_enabled=1).",
    }
}
crate::family! {
    static PROGRAM_RUN_TIME: Counter {
        name: "sonde_bpf_program_run_time",
        unit: Nanoseconds,
        labels: ["sampler", "program"],
        sampler: "sonde",
        source: "bpf_prog_info",
        help: "Time spent in the BPF program (only while kernel.bpf_stats_enabled=1).",
    }
}
crate::family! {
    static PROGRAM_MISSES: Counter {
        name: "sonde_bpf_program_misses",
        unit: Count,
        labels: ["sampler", "program"],
        sampler: "sonde",
        source: "bpf_prog_info",
        help: "Events the kernel did not run the BPF program for, because it was already running on that CPU (an event nested in another, e.g. in an interrupt): they are missing from its counts.",
    }
}
crate::family! {
    static MAP_MEMORY: Gauge {
        name: "sonde_bpf_map_memory_bytes",
        unit: Bytes,
        labels: ["sampler"],
        sampler: "sonde",
        source: "/proc/self/fdinfo",
        help: "Kernel memory locked by the sampler's BPF maps.",
    }
}
crate::family! {
    static DISCARDED: Counter {
        name: "sonde_bpf_discarded_events",
        unit: Count,
        labels: ["sampler"],
        sampler: "sonde",
        source: "BPF",
        help: "Events the sampler's BPF programs discarded: timestamps out of order, or no room to keep per-task state.",
    }
}

/// The `sonde_bpf_discarded_events{sampler}` series of a sampler.
pub fn discarded(sampler: &str) -> Arc<Series> {
    DISCARDED.series(&[sampler])
}

/// What the agent reports about a sampler's BPF objects (`/samplers`,
/// `sonde_bpf_*`). It holds its own descriptors of the programs, so it
/// stays valid whatever happens to the skeleton.
pub struct BpfInfo {
    pub programs: Vec<ProgramInfo>,
    pub map_bytes: u64,
    stats: Vec<ProgramStats>,
    _health: Vec<Arc<Series>>,
}

struct ProgramStats {
    fd: OwnedFd,
    /// Run count and time, when kernel.bpf_stats_enabled=1 at attach.
    runs: Option<(Arc<Series>, Arc<Series>)>,
    misses: Arc<Series>,
}

impl BpfInfo {
    /// The report of one loaded object: `programs` as attach left them,
    /// `attached` the programs whose runs to follow, `maps` their fds.
    pub(super) fn new<'a>(
        sampler: &str,
        programs: Vec<ProgramInfo>,
        attached: impl Iterator<Item = (&'a str, std::os::fd::BorrowedFd<'a>)>,
        maps: impl Iterator<Item = std::os::fd::BorrowedFd<'a>>,
    ) -> BpfInfo {
        let stats_enabled = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .is_ok_and(|s| s.trim() == "1");
        let mut health = Vec::new();
        for p in &programs {
            let s = PROGRAM_ATTACHED.series(&[sampler, &p.name]);
            s.set_gauge(p.attached as i64);
            health.push(s);
        }
        let stats = attached
            .filter_map(|(name, fd)| {
                Some(ProgramStats {
                    fd: fd.try_clone_to_owned().ok()?,
                    runs: stats_enabled.then(|| {
                        (
                            PROGRAM_RUNS.series(&[sampler, name]),
                            PROGRAM_RUN_TIME.series(&[sampler, name]),
                        )
                    }),
                    misses: PROGRAM_MISSES.series(&[sampler, name]),
                })
            })
            .collect();
        let map_bytes = maps.map(|fd| memlock(fd.as_raw_fd())).sum();
        let mem = MAP_MEMORY.series(&[sampler]);
        mem.set_gauge(map_bytes as i64);
        health.push(mem);
        BpfInfo {
            programs,
            map_bytes,
            stats,
            _health: health,
        }
    }

    /// Updates each program's missed runs (one bpf syscall per program),
    /// and its run count and run time when the kernel keeps them
    /// (`kernel.bpf_stats_enabled=1` at start).
    pub fn refresh_stats(&self) {
        for s in &self.stats {
            // SAFETY: bpf_prog_info is plain data; all-zero is a valid value.
            let mut info: libbpf_rs::libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of_val(&info) as u32;
            // SAFETY: `info` is a valid, zeroed bpf_prog_info of `len`
            // bytes, and the fd is ours.
            let ret = unsafe {
                libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
                    s.fd.as_fd().as_raw_fd(),
                    &mut info,
                    &mut len,
                )
            };
            if ret == 0 {
                s.misses.set_counter(info.recursion_misses);
                if let Some((runs, time)) = &s.runs {
                    runs.set_counter(info.run_cnt);
                    time.set_counter(info.run_time_ns);
                }
            }
        }
    }

    fn merge(&mut self, other: BpfInfo) {
        self.programs.extend(other.programs);
        self.map_bytes += other.map_bytes;
        self.stats.extend(other.stats);
        self._health.extend(other._health);
    }
}

/// The `memlock:` a map's fdinfo reports: the kernel memory it holds.
fn memlock(fd: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What a sampler's BPF loads take from the agent (its name and its
/// `hook`/`disable` options) and give back to it (a [`BpfInfo`] per
/// loaded object, or why an optional program is unavailable).
pub struct BpfContext {
    pub sampler: &'static str,
    pub options: BpfOptions,
    loaded: Mutex<Vec<BpfInfo>>,
}

impl BpfContext {
    pub fn new(sampler: &'static str, options: BpfOptions) -> BpfContext {
        BpfContext {
            sampler,
            options,
            loaded: Mutex::new(Vec::new()),
        }
    }

    /// A loader for one of the sampler's objects; `builder` makes a fresh
    /// skeleton builder (again for the raw_tp retry).
    pub fn loader<B: libbpf_rs::skel::SkelBuilder<'static>>(
        &self,
        builder: fn() -> B,
    ) -> Loader<'_, B> {
        Loader::new(self, builder)
    }

    /// An optional program that could not start while the sampler runs on
    /// without it (degraded): reported not attached, with why (instead of
    /// what a load that got as far as attaching reported about it).
    pub fn unavailable(&self, program: &str, hook: &str, reason: String) {
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|i| !i.programs.iter().any(|p| p.name == program));
        let info = BpfInfo::new(
            self.sampler,
            vec![ProgramInfo {
                name: program.to_string(),
                hook: hook.to_string(),
                attached: false,
                reason: Some(reason),
            }],
            std::iter::empty(),
            std::iter::empty(),
        );
        self.push(info);
    }

    pub(super) fn push(&self, info: BpfInfo) {
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(info);
    }

    /// Everything reported through this context, as one report; `None`
    /// when the sampler loaded nothing (procfs samplers).
    pub fn take(&self) -> Option<BpfInfo> {
        let mut loaded =
            std::mem::take(&mut *self.loaded.lock().unwrap_or_else(|e| e.into_inner()));
        let mut all = loaded.drain(..);
        let mut first = all.next()?;
        for other in all {
            first.merge(other);
        }
        MAP_MEMORY
            .series(&[self.sampler])
            .set_gauge(first.map_bytes as i64);
        Some(first)
    }
}
