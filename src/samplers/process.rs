//! `process` (singular): the agent's *own* process — its CPU, memory and
//! file descriptors as every Prometheus client library exports them
//! (`process_cpu_seconds_total`, …). Not to be confused with `processes`
//! (plural), which groups the host's processes; the two names are the
//! config names users already have, and the families they fill differ.

use std::sync::Arc;

use linkme::distributed_slice;

use super::common::{ns_per_tick, ProcFile};
use super::{options, InitResult, NoOptions, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::registry::Series;

/// The sampler's config name: `[samplers.process]`, and its families' `sampler`.
pub(crate) const NAME: &str = "process";

crate::family! {
    static CPU: Counter {
        name: "process_cpu",
        unit: Nanoseconds,
        labels: [],
        sampler: NAME,
        source: "/proc/self/stat",
        help: "CPU time (user + system) used by the agent.",
    }
}
crate::family! {
    static RSS: Gauge {
        name: "process_resident_memory_bytes",
        unit: Bytes,
        labels: [],
        sampler: NAME,
        source: "/proc/self/statm",
        help: "Resident memory of the agent.",
    }
}
crate::family! {
    static VSZ: Gauge {
        name: "process_virtual_memory_bytes",
        unit: Bytes,
        labels: [],
        sampler: NAME,
        source: "/proc/self/statm",
        help: "Virtual memory size of the agent.",
    }
}
crate::family! {
    static OPEN_FDS: Gauge {
        name: "process_open_fds",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "/proc/self/fd",
        help: "Open file descriptors of the agent.",
    }
}
crate::family! {
    static MAX_FDS: Gauge {
        name: "process_max_fds",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "getrlimit",
        help: "The agent's limit on open file descriptors.",
    }
}
crate::family! {
    static START_TIME: Gauge {
        name: "process_start_time_seconds",
        unit: Seconds,
        labels: [],
        sampler: NAME,
        source: "/proc/self/stat",
        help: "Start time of the agent, seconds since the Unix epoch.",
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: false,
    capabilities: 0,
    validate: options::<NoOptions>,
    init,
};

struct Process {
    stat: ProcFile,
    statm: ProcFile,
    ns_per_tick: u64,
    page_size: u64,
    cpu: Arc<Series>,
    rss: Arc<Series>,
    vsz: Arc<Series>,
    open_fds: Arc<Series>,
    max_fds: Arc<Series>,
    _start: Arc<Series>,
}

/// Fields of /proc/self/stat after the `(comm)` field, which may hold spaces.
fn stat_fields(text: &str) -> impl Iterator<Item = &str> {
    text.rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_ascii_whitespace()
}

fn init(_: &SamplerContext<'_>) -> InitResult {
    let mut stat = ProcFile::open("/proc/self/stat")?;
    let ns_per_tick = ns_per_tick();
    // starttime (field 22; 20th after comm) is in ticks since boot.
    let start_ticks: u64 = stat_fields(stat.read()?)
        .nth(19)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    let btime: u64 = std::fs::read_to_string("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0);
    let start = START_TIME.single();
    start.set_gauge((btime + start_ticks * ns_per_tick / 1_000_000_000) as i64);
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let mut s = Process {
        stat,
        statm: ProcFile::open("/proc/self/statm")?,
        ns_per_tick,
        page_size,
        cpu: CPU.single(),
        rss: RSS.single(),
        vsz: VSZ.single(),
        open_fds: OPEN_FDS.single(),
        max_fds: MAX_FDS.single(),
        _start: start,
    };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

/// Open fds. Since Linux 6.2 `stat` of /proc/self/fd reports the count as
/// its size: one syscall, where listing the directory walks every fd (the
/// agent holds ~100 BPF fds). Older kernels report 0; then list.
fn open_fds() -> anyhow::Result<u64> {
    // SAFETY: a zeroed stat is a valid out-buffer; the path is a C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::stat(c"/proc/self/fd".as_ptr(), &mut st) } == 0 && st.st_size > 0 {
        return Ok(st.st_size as u64);
    }
    Ok(std::fs::read_dir("/proc/self/fd")?.count() as u64)
}

impl Sampler for Process {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let mut f = stat_fields(self.stat.read()?);
        // utime and stime are fields 14 and 15 (12th and 13th after comm).
        let utime: u64 = f.nth(11).and_then(|v| v.parse().ok()).unwrap_or(0);
        let stime: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        self.cpu.set_counter((utime + stime) * self.ns_per_tick);

        let mut m = self.statm.read()?.split_ascii_whitespace();
        let size: u64 = m.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let resident: u64 = m.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        self.vsz.set_gauge((size * self.page_size) as i64);
        self.rss.set_gauge((resident * self.page_size) as i64);

        let fds = open_fds()?;
        self.open_fds.set_gauge(fds as i64);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid rlimit for the kernel to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            self.max_fds
                .set_gauge(lim.rlim_cur.min(i64::MAX as u64) as i64);
        }
        Ok(())
    }
}
