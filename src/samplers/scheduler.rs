//! `scheduler`: run-queue latency, on-CPU slices, context switches and
//! (opt-in) off-CPU time, from one program on sched_switch reading the
//! kernel's own sched_info stamps (see bpf/scheduler.bpf.c).

use std::sync::Arc;

use linkme::distributed_slice;

use super::common::cgroups;
use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::scheduler::*;
use crate::bpf::{self, Banks, Bpf, BpfInfo, BpfOptions, Histograms, HookMode, Loader};
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
        source: "sched:sched_switch + sched_info",
        help: "Time a task waited on the run queue it ran from: from wakeup or preemption (or arrival by migration) until it ran.",
    }
}
crate::family! {
    static OFFCPU: Histogram {
        name: "scheduler_offcpu",
        unit: Nanoseconds,
        labels: [],
        sampler: "scheduler",
        source: "sched:sched_switch",
        help: "Time a task spent off CPU between two runs, blocked or waiting (with [samplers.scheduler] offcpu = true).",
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
        help: "Context switches away from a task (not from the idle task, unlike /proc/stat ctxt): voluntary (it blocked) or involuntary (it was preempted).",
    }
}

/// Histogram families in `SCHED_HIST_*` order.
const HISTS: [(&Family, usize); SCHED_HISTS] = [
    (&RUNQUEUE, SCHED_HIST_RUNQUEUE),
    (&OFFCPU, SCHED_HIST_OFFCPU),
    (&RUNNING, SCHED_HIST_RUNNING),
];

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    hook: HookMode,
    disable: Vec<String>,
    /// Measure off-CPU time: a per-task departure stamp, two task storage
    /// lookups per context switch.
    offcpu: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hook: HookMode::Auto,
            disable: Vec::new(),
            offcpu: false,
        }
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "scheduler",
    validate: options::<Options>,
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
    let options: Options = ctx.options()?;
    let bpf_options = BpfOptions {
        hook: options.hook,
        disable: options.disable,
    };
    let offcpu = options.offcpu;
    // Attribution that cannot start (no cpu controller) leaves the
    // host-wide counters running; the cgroup sampler reports it.
    let target = ctx
        .cgroup_attribution
        .then(cgroups::bpf_target)
        .transpose()
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "scheduler: no per-cgroup counters");
            None
        });
    let cg_width = if target.is_some() {
        SCHED_CGROUPS * SCHED_CG_FIELDS
    } else {
        1
    };
    let bpf = Loader::new("scheduler", SchedulerSkelBuilder::default, &bpf_options)
        .banks("sched_counters", SCHED_BANK)
        .histograms("sched_latency", SCHED_HISTS)
        .banks("sched_cgroups", cg_width)
        .load_with(
            |open| {
                let rodata = open
                    .maps
                    .rodata_data
                    .as_deref_mut()
                    .ok_or_else(|| anyhow::anyhow!("the scheduler object has no rodata"))?;
                rodata.offcpu = offcpu;
                if let Some(t) = target {
                    rodata.cgroups = true;
                    rodata.cgroup_dfl = t.dfl;
                    rodata.cgroup_subsys = t.subsys;
                }
                Ok(())
            },
            |_| Ok(()),
        )?;
    // Registered last, once the sampler has started.
    let provider = match target {
        Some(_) => Some(cgroups::Provider::from_bpf(
            "scheduler",
            &bpf,
            &cgroups::ProviderMaps {
                ids: "sched_cgroup_ids",
                banks: "sched_cgroups",
                fields: SCHED_CG_FIELDS,
                counters: "sched_counters",
                generation: SCHED_SLOT_GEN,
                caches_misses: false,
            },
        )?),
        None => None,
    };
    let s = Scheduler {
        banks: bpf.banks("sched_counters")?,
        histograms: bpf.histograms("sched_latency")?,
        bpf,
        scratch: Vec::new(),
        hists: HISTS
            .iter()
            .filter(|(_, h)| offcpu || *h != SCHED_HIST_OFFCPU)
            .map(|(f, h)| (f.single(), *h))
            .collect(),
        voluntary: SWITCHES.series(&["voluntary"]),
        involuntary: SWITCHES.series(&["involuntary"]),
        discarded: bpf::discarded("scheduler"),
    };
    // Last: a sampler that failed to start must not leave counters behind.
    if let Some(p) = provider {
        cgroups::register(p);
    }
    Ok(Some(Box::new(s)))
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
