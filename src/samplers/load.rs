//! `load`: load averages from /proc/loadavg, running and blocked tasks from
//! /proc/stat.

use std::sync::Arc;

use linkme::distributed_slice;

use super::common::ProcFile;
use super::{options, InitResult, NoOptions, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::registry::Series;

/// The sampler's config name: `[samplers.load]`, and its families' `sampler`.
pub(crate) const NAME: &str = "load";

crate::family! {
    static LOAD_AVERAGE: Gauge {
        name: "load_average",
        unit: Milli,
        labels: ["window"],
        sampler: NAME,
        source: "/proc/loadavg",
        help: "Load average over the window (1m, 5m, 15m).",
    }
}
crate::family! {
    static RUNNING: Gauge {
        name: "load_tasks_running",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "/proc/stat",
        help: "Tasks runnable or running now (procs_running).",
    }
}
crate::family! {
    static BLOCKED: Gauge {
        name: "load_tasks_blocked",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "/proc/stat",
        help: "Tasks blocked on I/O now (procs_blocked).",
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

struct Load {
    loadavg: ProcFile,
    stat: ProcFile,
    windows: [Arc<Series>; 3],
    running: Arc<Series>,
    blocked: Arc<Series>,
}

fn init(_: &SamplerContext<'_>) -> InitResult {
    let mut s = Load {
        loadavg: ProcFile::open("/proc/loadavg")?,
        stat: ProcFile::open("/proc/stat")?,
        windows: ["1m", "5m", "15m"].map(|w| LOAD_AVERAGE.series(&[w])),
        running: RUNNING.single(),
        blocked: BLOCKED.single(),
    };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

/// `"0.52"` → 520: the kernel prints two decimals, thousandths keep them exact.
fn milli(s: &str) -> Option<i64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut v = int.parse::<i64>().ok()? * 1000;
    for (i, d) in frac.bytes().take(3).enumerate() {
        if !d.is_ascii_digit() {
            return None;
        }
        v += (d - b'0') as i64 * [100, 10, 1][i];
    }
    Some(v)
}

impl Sampler for Load {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let text = self.loadavg.read()?;
        let mut fields = text.split_ascii_whitespace();
        for w in &self.windows {
            let f = fields.next().unwrap_or("");
            let v = milli(f).ok_or_else(|| anyhow::anyhow!("/proc/loadavg: cannot parse `{f}`"))?;
            w.set_gauge(v);
        }
        for line in self.stat.read()?.lines() {
            if let Some(v) = line.strip_prefix("procs_running ") {
                self.running.set_gauge(v.trim().parse().unwrap_or(0));
            } else if let Some(v) = line.strip_prefix("procs_blocked ") {
                self.blocked.set_gauge(v.trim().parse().unwrap_or(0));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn milli_parses_load_averages() {
        assert_eq!(super::milli("0.52"), Some(520));
        assert_eq!(super::milli("12.05"), Some(12050));
        assert_eq!(super::milli("3"), Some(3000));
        assert_eq!(super::milli("x.1"), None);
    }
}
