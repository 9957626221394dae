//! `softirq`: softirq counts and time by kind, per CPU.

use std::sync::Arc;

use linkme::distributed_slice;

use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::softirq::*;
use crate::bpf::{self, Banks, Bpf, BpfInfo, BpfOptions, Sizing};
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/softirq.skel.rs"));
}
use skel::{SoftirqSkel, SoftirqSkelBuilder};

crate::family! {
    static COUNT: Counter {
        name: "softirq",
        unit: Count,
        labels: ["kind", "cpu"],
        sampler: "softirq",
        source: "irq:softirq_entry/exit",
        help: "Softirqs handled, by kind and CPU.",
    }
}
crate::family! {
    static TIME: Counter {
        name: "softirq_time",
        unit: Nanoseconds,
        labels: ["kind", "cpu"],
        sampler: "softirq",
        source: "irq:softirq_entry/exit",
        help: "Time spent handling softirqs, by kind and CPU.",
    }
}

/// Softirq vectors in kernel order (`enum { HI_SOFTIRQ, ... }`).
const KINDS: [&str; SOFTIRQ_KINDS] = [
    "hi", "timer", "net_tx", "net_rx", "block", "irq_poll", "tasklet", "sched", "hrtimer", "rcu",
];

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "softirq",
    validate: options::<BpfOptions>,
    init,
};

struct Softirq {
    bpf: Bpf<SoftirqSkel<'static>>,
    banks: Banks,
    /// `[cpu][kind]`: (count, time).
    series: Vec<Vec<(Arc<Series>, Arc<Series>)>>,
    discarded: Arc<Series>,
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let bpf = bpf::load(
        "softirq",
        SoftirqSkelBuilder::default,
        &ctx.options()?,
        &[],
        &[Sizing {
            map: "softirq_counters",
            per_cpu: SOFTIRQ_BANK,
        }],
        |_| Ok(()),
    )?;
    let banks = bpf.banks("softirq_counters", SOFTIRQ_BANK)?;
    let series = (0..banks.cpus())
        .map(|cpu| {
            let cpu = cpu.to_string();
            KINDS
                .iter()
                .map(|k| (COUNT.series(&[k, &cpu]), TIME.series(&[k, &cpu])))
                .collect()
        })
        .collect();
    Ok(Some(Box::new(Softirq {
        bpf,
        banks,
        series,
        discarded: bpf::discarded("softirq"),
    })))
}

impl Sampler for Softirq {
    fn refresh(&mut self) -> anyhow::Result<()> {
        for (cpu, kinds) in self.series.iter().enumerate() {
            for (k, (count, time)) in kinds.iter().enumerate() {
                count.set_counter(self.banks.get(cpu, SOFTIRQ_SLOT_COUNT + k));
                time.set_counter(self.banks.get(cpu, SOFTIRQ_SLOT_TIME + k));
            }
        }
        self.discarded
            .set_counter(self.banks.sum(SOFTIRQ_SLOT_DISCARDED));
        Ok(())
    }

    fn bpf(&self) -> Option<&BpfInfo> {
        Some(&self.bpf.info)
    }
}
