//! `softirq`: softirqs handled by kind and CPU (the kernel's exact counts,
//! /proc/softirqs) and, with `time = true`, the time spent in them (BPF on
//! softirq_entry/exit: two programs and two clock reads per softirq).

use std::sync::Arc;

use linkme::distributed_slice;

use super::common::ProcFile;
use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::softirq::*;
use crate::bpf::{self, Banks, Bpf};
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/softirq.skel.rs"));
}
use skel::{SoftirqSkel, SoftirqSkelBuilder};

/// The sampler's config name: `[samplers.softirq]`, and its families' `sampler`.
pub(crate) const NAME: &str = "softirq";

crate::family! {
    static COUNT: Counter {
        name: "softirq",
        unit: Count,
        labels: ["kind", "cpu"],
        sampler: NAME,
        source: "/proc/softirqs",
        help: "Softirqs handled, by kind and CPU (the kernel's own count).",
    }
}
crate::family! {
    static TIME: Counter {
        name: "softirq_time",
        unit: Nanoseconds,
        labels: ["kind", "cpu"],
        sampler: NAME,
        source: "irq:softirq_entry/exit",
        help: "Time spent handling softirqs, by kind and CPU (with [samplers.softirq] time = true).",
    }
}

/// Softirq vectors in kernel order (`enum { HI_SOFTIRQ, ... }`).
const KINDS: [&str; SOFTIRQ_KINDS] = [
    "hi", "timer", "net_tx", "net_rx", "block", "irq_poll", "tasklet", "sched", "hrtimer", "rcu",
];

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// Time softirqs by kind (two programs and two clock reads per softirq).
    time: bool,
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: true,
    capabilities: 0,
    validate: options::<Options>,
    init,
};

/// The BPF half: time by kind and CPU.
struct Time {
    _bpf: Bpf<SoftirqSkel<'static>>,
    banks: Banks,
    /// `[cpu][kind]`, kinds in kernel order.
    series: Vec<Vec<Arc<Series>>>,
    discarded: Arc<Series>,
}

struct Softirq {
    file: ProcFile,
    /// Per row of /proc/softirqs: its kind and a series per CPU column.
    counts: Vec<(String, Vec<Arc<Series>>)>,
    time: Option<Time>,
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let options: Options = ctx.options()?;
    let time = if options.time {
        let mut loader = ctx.bpf.loader(SoftirqSkelBuilder::default);
        let counters = loader.banks("softirq_counters", SOFTIRQ_BANK);
        let bpf = loader.load()?;
        let banks = bpf.banks(counters)?;
        let series = (0..banks.cpus())
            .map(|cpu| {
                let cpu = cpu.to_string();
                KINDS.iter().map(|k| TIME.series(&[k, &cpu])).collect()
            })
            .collect();
        Some(Time {
            _bpf: bpf,
            banks,
            series,
            discarded: bpf::discarded(NAME),
        })
    } else {
        None
    };
    let mut s = Softirq {
        file: ProcFile::open("/proc/softirqs")?,
        counts: Vec::new(),
        time,
    };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

/// /proc/softirqs: the CPU of each column (from the `CPU0 CPU1 …` header)
/// and each row's lowercased kind and per-CPU counts.
pub fn parse(text: &str) -> (Vec<&str>, Vec<(String, Vec<u64>)>) {
    let mut lines = text.lines();
    let cpus = lines
        .next()
        .unwrap_or("")
        .split_ascii_whitespace()
        .filter_map(|c| c.strip_prefix("CPU"))
        .collect();
    let rows = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(kind, rest)| {
            let counts = rest
                .split_ascii_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            (kind.trim().to_ascii_lowercase(), counts)
        })
        .collect();
    (cpus, rows)
}

impl Sampler for Softirq {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let (cpus, rows) = parse(self.file.read()?);
        anyhow::ensure!(!rows.is_empty(), "/proc/softirqs lists no softirqs");
        // The rows and columns are fixed for the kernel's life (possible
        // CPUs); build the series once, or again if they ever change.
        let same = self.counts.len() == rows.len()
            && self
                .counts
                .iter()
                .zip(&rows)
                .all(|((k, s), (kind, _))| k == kind && s.len() == cpus.len());
        if !same {
            self.counts = rows
                .iter()
                .map(|(kind, _)| {
                    let series = cpus.iter().map(|c| COUNT.series(&[kind, c])).collect();
                    (kind.clone(), series)
                })
                .collect();
        }
        for ((_, series), (_, counts)) in self.counts.iter().zip(&rows) {
            for (s, v) in series.iter().zip(counts) {
                s.set_counter(*v);
            }
        }
        if let Some(t) = &self.time {
            for (cpu, kinds) in t.series.iter().enumerate() {
                for (k, time) in kinds.iter().enumerate() {
                    time.set_counter(t.banks.get(cpu, SOFTIRQ_SLOT_TIME + k));
                }
            }
            t.discarded.set_counter(t.banks.sum(SOFTIRQ_SLOT_DISCARDED));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_proc_softirqs() {
        let text = "                    CPU0       CPU1
          HI:          5          0
       TIMER:     123456      65432
      NET_TX:          1          2
      NET_RX:       7000       8000
";
        let (cpus, rows) = super::parse(text);
        assert_eq!(cpus, ["0", "1"]);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1], ("timer".to_string(), vec![123456, 65432]));
        assert_eq!(rows[3].0, "net_rx");
    }
}
