//! `scheduler`: run-queue latency, on-CPU slices, context switches and
//! (opt-in) off-CPU time, from one program on sched_switch reading the
//! kernel's own sched_info stamps (see bpf/scheduler.bpf.c).

use std::sync::Arc;

use linkme::distributed_slice;

use super::common::cgroups::{self, Field};
use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::scheduler::*;
use crate::bpf::{self, Banks, Bpf, Histograms};
use crate::registry::{Family, Series};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/scheduler.skel.rs"));
}
use skel::{SchedulerSkel, SchedulerSkelBuilder};

/// The sampler's config name: `[samplers.scheduler]`, and its families' `sampler`.
pub(crate) const NAME: &str = "scheduler";

crate::family! {
    static RUNQUEUE: Histogram {
        name: "scheduler_runqueue_latency",
        unit: Nanoseconds,
        labels: [],
        sampler: NAME,
        source: "sched:sched_switch + sched_info",
        help: "Time a task waited on the run queue it ran from: from wakeup or preemption (or arrival by migration) until it ran.",
    }
}
crate::family! {
    static OFFCPU: Histogram {
        name: "scheduler_offcpu",
        unit: Nanoseconds,
        labels: [],
        sampler: NAME,
        source: "sched:sched_switch",
        help: "Time a task spent off CPU between two runs, blocked or waiting (with [samplers.scheduler] offcpu = true).",
    }
}
crate::family! {
    static RUNNING: Histogram {
        name: "scheduler_running",
        unit: Nanoseconds,
        labels: [],
        sampler: NAME,
        source: "sched:sched_switch",
        help: "Time a task ran on a CPU before switching out.",
    }
}
crate::family! {
    static SWITCHES: Counter {
        name: "scheduler_context_switches",
        unit: Count,
        labels: ["kind"],
        sampler: NAME,
        source: "sched:sched_switch",
        help: "Context switches away from a task (not from the idle task, unlike /proc/stat ctxt): voluntary (it blocked) or involuntary (it was preempted).",
    }
}

crate::family! {
    static CGROUP_RUNQUEUE: Counter {
        name: "cgroup_runqueue_wait",
        unit: Nanoseconds,
        labels: ["id", "container_id", "name", "image", "pod", "namespace"],
        sampler: NAME,
        source: "sched:sched_switch + sched_info",
        help: "Time the cgroup's tasks waited on a run queue before running (with the cgroup sampler's attribution).",
    }
}
crate::family! {
    static CGROUP_ONCPU: Counter {
        name: "cgroup_oncpu",
        unit: Nanoseconds,
        labels: ["id", "container_id", "name", "image", "pod", "namespace"],
        sampler: NAME,
        source: "sched:sched_switch + sched_info",
        help: "Time the cgroup's tasks ran on a CPU, counted when they switched out (with the cgroup sampler's attribution).",
    }
}
crate::family! {
    static CGROUP_SWITCHES: Counter {
        name: "cgroup_context_switches",
        unit: Count,
        labels: ["id", "container_id", "name", "image", "pod", "namespace", "kind"],
        sampler: NAME,
        source: "sched:sched_switch",
        help: "Context switches away from the cgroup's tasks: voluntary (blocked) or involuntary (preempted) (with the cgroup sampler's attribution).",
    }
}

/// The per-cgroup counters in `SCHED_CG_*` order, as the cgroup sampler
/// publishes them.
fn cgroup_fields() -> Vec<Field> {
    const _: () = assert!(
        SCHED_CG_RUNQUEUE == 0
            && SCHED_CG_ONCPU == 1
            && SCHED_CG_VOLUNTARY == 2
            && SCHED_CG_INVOLUNTARY == 3
            && SCHED_CG_FIELDS == 4
    );
    let f = |family, label| Field { family, label };
    vec![
        f(&CGROUP_RUNQUEUE, None),
        f(&CGROUP_ONCPU, None),
        f(&CGROUP_SWITCHES, Some("voluntary")),
        f(&CGROUP_SWITCHES, Some("involuntary")),
    ]
}

/// Histogram families in `SCHED_HIST_*` order.
const HISTS: [(&Family, usize); SCHED_HISTS] = [
    (&RUNQUEUE, SCHED_HIST_RUNQUEUE),
    (&OFFCPU, SCHED_HIST_OFFCPU),
    (&RUNNING, SCHED_HIST_RUNNING),
];

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// Measure off-CPU time: a per-task departure stamp, two task storage
    /// lookups per context switch.
    offcpu: bool,
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: true,
    capabilities: 0,
    validate: options::<Options>,
    init,
};

struct Scheduler {
    /// Its per-cgroup counters, while it runs (attribution on).
    _cgroups: Option<cgroups::Registration>,
    _bpf: Bpf<SchedulerSkel<'static>>,
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
    let offcpu = options.offcpu;
    // Attribution that cannot start (no cpu controller) leaves the
    // host-wide counters running; the cgroup sampler reports it.
    let target = cgroups::target(ctx);
    let cg_width = if target.is_some() {
        SCHED_CGROUPS * SCHED_CG_FIELDS
    } else {
        1
    };
    let mut loader = ctx.bpf.loader(SchedulerSkelBuilder::default);
    let counters = loader.banks("sched_counters", SCHED_BANK);
    let latency = loader.histograms("sched_latency", SCHED_HISTS);
    let cg_banks = loader.banks("sched_cgroups", cg_width);
    let cg_ids = loader.map("sched_cgroup_ids");
    let bpf = loader.load_with(
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
    // Registered with the sampler below: its Registration takes the
    // provider out again if the sampler fails to start or stops.
    let provider = match target {
        Some(_) => Some(cgroups::Provider::from_bpf(
            NAME,
            &bpf,
            cgroups::ProviderSpec {
                ids: cg_ids,
                banks: cg_banks,
                counters: counters.into(),
                generation: SCHED_SLOT_GEN,
                caches_misses: false,
                fields: cgroup_fields(),
                lazy: false,
            },
        )?),
        None => None,
    };
    let s = Scheduler {
        _cgroups: provider.map(cgroups::register),
        banks: bpf.banks(counters)?,
        histograms: bpf.histograms(latency)?,
        _bpf: bpf,
        scratch: Vec::new(),
        hists: HISTS
            .iter()
            .filter(|(_, h)| offcpu || *h != SCHED_HIST_OFFCPU)
            .map(|(f, h)| (f.single(), *h))
            .collect(),
        voluntary: SWITCHES.series(&["voluntary"]),
        involuntary: SWITCHES.series(&["involuntary"]),
        discarded: bpf::discarded(NAME),
    };
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
}
