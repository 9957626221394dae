//! `cpu_events`: task migrations between CPUs and TLB flushes by reason.
//! (Per-CPU busy time stays with the procfs `cpu` sampler: splitting it by
//! user/system in BPF needs kprobes, which our kernels do not offer.)

use std::sync::Arc;

use linkme::distributed_slice;

use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::cpu_events::*;
use crate::bpf::{self, Banks, Bpf};
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/cpu_events.skel.rs"));
}
use skel::{CpuEventsSkel, CpuEventsSkelBuilder};

/// The sampler's config name: `[samplers.cpu_events]`, and its families' `sampler`.
pub(crate) const NAME: &str = "cpu_events";

crate::family! {
    static MIGRATIONS: Counter {
        name: "cpu_migrations",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "sched:sched_migrate_task",
        help: "Tasks moved from one CPU to another.",
    }
}
crate::family! {
    static TLB_FLUSHES: Counter {
        name: "cpu_tlb_flushes",
        unit: Count,
        labels: ["reason"],
        sampler: NAME,
        source: "tlb:tlb_flush",
        help: "TLB flushes by reason (x86 only; with [samplers.cpu_events] tlb = true).",
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// Count TLB flushes: tlb_flush fires on most switches between two
    /// processes, so this is one more program run per context switch.
    tlb: bool,
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: true,
    capabilities: 0,
    validate: options::<Options>,
    init,
};

struct CpuEvents {
    _bpf: Bpf<CpuEventsSkel<'static>>,
    banks: Banks,
    migrations: Arc<Series>,
    /// (bank slot, series) for each reason this kernel names, and other.
    tlb: Vec<(usize, Arc<Series>)>,
}

/// One series per `enum tlb_flush_reason` value of this kernel (read from
/// its BTF, e.g. `remote_shootdown`), plus `other` for the last slot.
fn tlb_series() -> Vec<(usize, Arc<Series>)> {
    let mut names = bpf::enum_names("tlb_flush_reason", "TLB_", CPU_TLB_REASONS);
    names[CPU_TLB_REASONS - 1] = Some("other".into());
    names
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| Some((CPU_SLOT_TLB + i, TLB_FLUSHES.series(&[&n?]))))
        .collect()
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let options: Options = ctx.options()?;
    let mut loader = ctx.bpf.loader(CpuEventsSkelBuilder::default);
    if !options.tlb {
        loader.unused(&["tlb_flush"]);
    }
    let counters = loader.banks("cpu_counters", CPU_BANK);
    let bpf = loader.load()?;
    let tlb_attached = bpf.attached("tlb_flush");
    Ok(Some(Box::new(CpuEvents {
        banks: bpf.banks(counters)?,
        _bpf: bpf,
        migrations: MIGRATIONS.single(),
        // No TLB series where the tracepoint is missing (not x86).
        tlb: if tlb_attached {
            tlb_series()
        } else {
            Vec::new()
        },
    })))
}

impl Sampler for CpuEvents {
    fn refresh(&mut self) -> anyhow::Result<()> {
        self.migrations
            .set_counter(self.banks.sum(CPU_SLOT_MIGRATIONS));
        for (slot, s) in &self.tlb {
            s.set_counter(self.banks.sum(*slot));
        }
        Ok(())
    }
}
