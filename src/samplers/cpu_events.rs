//! `cpu_events`: task migrations between CPUs and TLB flushes by reason.
//! (Per-CPU busy time stays with the procfs `cpu` sampler: splitting it by
//! user/system in BPF needs kprobes, which our kernels do not offer.)

use std::sync::Arc;

use linkme::distributed_slice;

use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::cpu_events::*;
use crate::bpf::{self, Banks, Bpf, BpfInfo, BpfOptions, HookMode, Loader};
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/cpu_events.skel.rs"));
}
use skel::{CpuEventsSkel, CpuEventsSkelBuilder};

crate::family! {
    static MIGRATIONS: Counter {
        name: "cpu_migrations",
        unit: Count,
        labels: [],
        sampler: "cpu_events",
        source: "sched:sched_migrate_task",
        help: "Tasks moved from one CPU to another.",
    }
}
crate::family! {
    static TLB_FLUSHES: Counter {
        name: "cpu_tlb_flushes",
        unit: Count,
        labels: ["reason"],
        sampler: "cpu_events",
        source: "tlb:tlb_flush",
        help: "TLB flushes by reason (x86 only; with [samplers.cpu_events] tlb = true).",
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    hook: HookMode,
    disable: Vec<String>,
    /// Count TLB flushes: tlb_flush fires on most switches between two
    /// processes, so this is one more program run per context switch.
    tlb: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hook: HookMode::Auto,
            disable: Vec::new(),
            tlb: false,
        }
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "cpu_events",
    validate: options::<Options>,
    init,
};

struct CpuEvents {
    bpf: Bpf<CpuEventsSkel<'static>>,
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
    let bpf_options = BpfOptions {
        hook: options.hook,
        disable: options.disable,
    };
    let unused: &[&str] = if options.tlb { &[] } else { &["tlb_flush"] };
    let bpf = Loader::new("cpu_events", CpuEventsSkelBuilder::default, &bpf_options)
        .unused(unused)
        .banks("cpu_counters", CPU_BANK)
        .load()?;
    let tlb_attached = bpf
        .info
        .programs
        .iter()
        .any(|p| p.name == "tlb_flush" && p.attached);
    Ok(Some(Box::new(CpuEvents {
        banks: bpf.banks("cpu_counters")?,
        bpf,
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

    fn bpf(&self) -> Option<&BpfInfo> {
        Some(&self.bpf.info)
    }
}
