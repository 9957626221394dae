//! `cpu`: per-core CPU time by state from /proc/stat.

use std::sync::Arc;

use linkme::distributed_slice;

use super::common::{ns_per_tick, numbers, ProcFile};
use super::{options, InitResult, NoOptions, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::registry::Series;

/// The sampler's config name: `[samplers.cpu]`, and its families' `sampler`.
pub(crate) const NAME: &str = "cpu";

crate::family! {
    static CPU_USAGE: Counter {
        name: "cpu_usage",
        unit: Nanoseconds,
        labels: ["state", "cpu"],
        sampler: NAME,
        source: "/proc/stat",
        help: "CPU time spent in each state, per CPU (guest time is included in user).",
    }
}
crate::family! {
    static CPU_CORES: Gauge {
        name: "cpu_cores",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "/proc/stat",
        help: "Online CPU cores.",
    }
}

/// The states of a `cpuN` line of /proc/stat, in column order.
const STATES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: false,
    capabilities: 0,
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

/// A `cpuN user nice system …` line of /proc/stat: the CPU id and its
/// tick counters; `None` for the aggregate `cpu` line and other lines.
pub fn parse_cpu_line(line: &str) -> Option<(usize, &str)> {
    let (id, fields) = line.strip_prefix("cpu")?.split_once(' ')?;
    Some((id.parse().ok()?, fields))
}

impl Sampler for CpuUsage {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let text = self.stat.read()?;
        self.seen.iter_mut().for_each(|s| *s = false);
        let mut online = 0;
        for (id, fields) in text.lines().filter_map(parse_cpu_line) {
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

#[cfg(test)]
mod tests {
    use super::parse_cpu_line;
    use crate::samplers::common::numbers;

    #[test]
    fn parses_per_cpu_lines_only() {
        let stat = "cpu  10 0 5 100 1 0 0 0 0 0\ncpu0 6 0 3 50 1 0 0 0 0 0\ncpu13 4 0 2 50 0 0 0 2\nintr 1 2 3\nctxt 99\n";
        let cpus: Vec<_> = stat.lines().filter_map(parse_cpu_line).collect();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[1].0, 13);
        let ticks: Vec<u64> = numbers(cpus[1].1).collect();
        assert_eq!(ticks, [4, 0, 2, 50, 0, 0, 0, 2]);
    }
}
