//! `cpu`: per-core CPU time by state from /proc/stat.

use std::sync::Arc;

use linkme::distributed_slice;

use crate::agent::sampler::{
    options, InitResult, NoOptions, Sampler, SamplerContext, SamplerSpec, SAMPLERS,
};
use crate::registry::Series;
use crate::samplers::{ns_per_tick, numbers, ProcFile};

crate::family!(CPU_USAGE: Counter "cpu_usage", Nanoseconds, ["state", "cpu"], "cpu", "/proc/stat",
    "CPU time spent in each state, per CPU (guest time is included in user).");
crate::family!(CPU_CORES: Gauge "cpu_cores", Count, [], "cpu", "/proc/stat", "Online CPU cores.");

/// The states of a `cpuN` line of /proc/stat, in column order.
const STATES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "cpu",
    validate: options::<NoOptions>,
    init,
};

struct CpuUsage {
    stat: ProcFile,
    ns_per_tick: u64,
    /// Indexed by CPU id; `None` for CPUs not (or no longer) online.
    cpus: Vec<Option<Vec<Arc<Series>>>>,
    seen: Vec<bool>,
    cores: Arc<Series>,
}

fn init(_: &SamplerContext<'_>) -> InitResult {
    let mut s = CpuUsage {
        stat: ProcFile::open("/proc/stat")?,
        ns_per_tick: ns_per_tick(),
        cpus: Vec::new(),
        seen: Vec::new(),
        cores: CPU_CORES.single(),
    };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

impl Sampler for CpuUsage {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let text = self.stat.read()?;
        self.seen.iter_mut().for_each(|s| *s = false);
        let mut online = 0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("cpu") else {
                continue;
            };
            let Some((id, fields)) = rest.split_once(' ') else {
                continue;
            };
            let Ok(id) = id.parse::<usize>() else {
                continue; // the aggregate `cpu ` line
            };
            online += 1;
            if id >= self.cpus.len() {
                self.cpus.resize_with(id + 1, || None);
                self.seen.resize(id + 1, false);
            }
            self.seen[id] = true;
            let series = self.cpus[id].get_or_insert_with(|| {
                let cpu = id.to_string();
                STATES
                    .iter()
                    .map(|st| CPU_USAGE.series(&[st, &cpu]))
                    .collect()
            });
            for (s, ticks) in series.iter().zip(numbers(fields)) {
                s.set_counter(ticks * self.ns_per_tick);
            }
        }
        // CPUs taken offline disappear rather than report frozen values.
        for (cpu, seen) in self.cpus.iter_mut().zip(&self.seen) {
            if !seen {
                *cpu = None;
            }
        }
        anyhow::ensure!(online > 0, "/proc/stat lists no cpuN lines");
        self.cores.set_gauge(online);
        Ok(())
    }
}
