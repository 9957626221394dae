//! `scheduler`: run-queue latency, off-CPU time, on-CPU slices and context
//! switches, from sched_wakeup, sched_wakeup_new and sched_switch.

use std::sync::Arc;

use linkme::distributed_slice;

use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::scheduler::*;
use crate::bpf::consts::sonde::HISTOGRAM_BUCKETS;
use crate::bpf::{self, Banks, Bpf, BpfInfo, BpfOptions, Histograms, Sizing};
use crate::registry::{Family, Series};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/scheduler.skel.rs"));
}
use skel::{SchedulerSkel, SchedulerSkelBuilder};

crate::family! {
    static RUNQUEUE: Histogram {
        name: "scheduler_runqueue_latency",
        unit: Nanoseconds,
        labels: [],
        sampler: "scheduler",
        source: "sched:sched_wakeup,sched_wakeup_new,sched_switch",
        help: "Time a task waited on a run queue: from wakeup or preemption until it ran.",
    }
}
crate::family! {
    static OFFCPU: Histogram {
        name: "scheduler_offcpu",
        unit: Nanoseconds,
        labels: [],
        sampler: "scheduler",
        source: "sched:sched_switch",
        help: "Time a task spent off CPU between two runs (blocked or waiting).",
    }
}
crate::family! {
    static RUNNING: Histogram {
        name: "scheduler_running",
        unit: Nanoseconds,
        labels: [],
        sampler: "scheduler",
        source: "sched:sched_switch",
        help: "Time a task ran on a CPU before switching out.",
    }
}
crate::family! {
    static SWITCHES: Counter {
        name: "scheduler_context_switches",
        unit: Count,
        labels: ["kind"],
        sampler: "scheduler",
        source: "sched:sched_switch",
        help: "Context switches: voluntary (the task blocked) or involuntary (it was preempted).",
    }
}

/// Histogram families in `SCHED_HIST_*` order.
const HISTS: [(&Family, usize); SCHED_HISTS] = [
    (&RUNQUEUE, SCHED_HIST_RUNQUEUE),
    (&OFFCPU, SCHED_HIST_OFFCPU),
    (&RUNNING, SCHED_HIST_RUNNING),
];

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "scheduler",
    validate: options::<BpfOptions>,
    init,
};

struct Scheduler {
    bpf: Bpf<SchedulerSkel<'static>>,
    banks: Banks,
    histograms: Histograms,
    scratch: Vec<u64>,
    hists: Vec<(Arc<Series>, usize)>,
    voluntary: Arc<Series>,
    involuntary: Arc<Series>,
    discarded: Arc<Series>,
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let bpf = bpf::load(
        "scheduler",
        SchedulerSkelBuilder::default,
        &ctx.options()?,
        &[],
        &[
            Sizing {
                map: "sched_counters",
                per_cpu: SCHED_BANK,
            },
            Sizing {
                map: "sched_latency",
                per_cpu: SCHED_HISTS * HISTOGRAM_BUCKETS,
            },
        ],
        |_| Ok(()),
    )?;
    Ok(Some(Box::new(Scheduler {
        banks: bpf.banks("sched_counters", SCHED_BANK)?,
        histograms: bpf.histograms("sched_latency", SCHED_HISTS)?,
        bpf,
        scratch: Vec::new(),
        hists: HISTS.iter().map(|(f, h)| (f.single(), *h)).collect(),
        voluntary: SWITCHES.series(&["voluntary"]),
        involuntary: SWITCHES.series(&["involuntary"]),
        discarded: bpf::discarded("scheduler"),
    })))
}

impl Sampler for Scheduler {
    fn refresh(&mut self) -> anyhow::Result<()> {
        for (series, h) in &self.hists {
            let sum = self.banks.sum(SCHED_SLOT_SUM + h);
            self.histograms.store(*h, series, sum, &mut self.scratch);
        }
        self.voluntary
            .set_counter(self.banks.sum(SCHED_SLOT_VOLUNTARY));
        self.involuntary
            .set_counter(self.banks.sum(SCHED_SLOT_INVOLUNTARY));
        self.discarded
            .set_counter(self.banks.sum(SCHED_SLOT_DISCARDED));
        Ok(())
    }

    fn bpf(&self) -> Option<&BpfInfo> {
        Some(&self.bpf.info)
    }
}
