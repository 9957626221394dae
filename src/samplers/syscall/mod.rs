//! `syscall`: syscall counts and latency by operation class, measured in
//! the kernel on raw_syscalls:sys_enter/sys_exit.

use std::sync::Arc;

use linkme::distributed_slice;

use crate::bpf::consts::sonde::HISTOGRAM_BUCKETS;
use crate::bpf::consts::syscall::*;
use crate::bpf::{self, Banks, Bpf, BpfInfo, BpfOptions, Histograms, Sizing};
use crate::registry::Series;
use crate::samplers::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};

mod classes;

use classes::classes;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/syscall.skel.rs"));
}
use skel::{SyscallSkel, SyscallSkelBuilder};

crate::family! {
    static COUNT: Counter {
        name: "syscalls",
        unit: Count,
        labels: ["op"],
        sampler: "syscall",
        source: "raw_syscalls:sys_enter/sys_exit",
        help: "Syscalls completed, by operation class.",
    }
}
crate::family! {
    static LATENCY: Histogram {
        name: "syscall_latency",
        unit: Nanoseconds,
        labels: ["op"],
        sampler: "syscall",
        source: "raw_syscalls:sys_enter/sys_exit",
        help: "Time from syscall entry to exit, by operation class.",
    }
}

/// Operation classes; the index is what the BPF table stores. Syscalls not
/// listed below are `other` (index 0, the table's zero value).
const OPS: [&str; SYSCALL_OPS] = [
    "other",
    "read",
    "write",
    "poll",
    "lock",
    "time",
    "sleep",
    "socket",
    "yield",
    "filesystem",
    "memory",
    "process",
    "query",
    "ipc",
    "timer",
    "event",
];

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    hook: bpf::HookMode,
    disable: Vec<String>,
    /// Measure each syscall's latency (two programs and two clock reads per
    /// syscall); `false` counts syscalls only, with one program and no clock.
    latency: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hook: bpf::HookMode::Auto,
            disable: Vec::new(),
            latency: true,
        }
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "syscall",
    validate: options::<Options>,
    init,
};

struct Syscall {
    bpf: Bpf<SyscallSkel<'static>>,
    banks: Banks,
    histograms: Histograms,
    buckets: Vec<u64>,
    count: Vec<Arc<Series>>,
    /// Empty in counts-only mode.
    latency: Vec<Arc<Series>>,
    discarded: Arc<Series>,
}

fn write_table(obj: &libbpf_rs::Object) -> anyhow::Result<()> {
    use libbpf_rs::MapCore as _;
    let map = obj
        .maps()
        .find(|m| m.name() == "syscall_ops")
        .ok_or_else(|| anyhow::anyhow!("no syscall_ops map"))?;
    for (op, nrs) in classes() {
        let idx = OPS.iter().position(|o| *o == op).expect("op listed in OPS") as u32;
        for nr in nrs {
            let nr = nr as u32;
            if (nr as usize) < SYSCALL_MAX_NR {
                map.update(
                    &nr.to_ne_bytes(),
                    &idx.to_ne_bytes(),
                    libbpf_rs::MapFlags::ANY,
                )?;
            }
        }
    }
    Ok(())
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let options: Options = ctx.options()?;
    let unused: &[&str] = if options.latency {
        &["sys_enter_count"]
    } else {
        &["sys_enter", "sys_exit"]
    };
    let bpf = bpf::load(
        "syscall",
        SyscallSkelBuilder::default,
        &BpfOptions {
            hook: options.hook,
            disable: options.disable,
        },
        unused,
        &[
            Sizing {
                map: "syscall_counters",
                per_cpu: SYSCALL_BANK,
            },
            Sizing {
                map: "syscall_latency",
                per_cpu: SYSCALL_OPS * HISTOGRAM_BUCKETS,
            },
        ],
        write_table,
    )?;
    let s = Syscall {
        banks: bpf.banks("syscall_counters", SYSCALL_BANK)?,
        histograms: bpf.histograms("syscall_latency", SYSCALL_OPS)?,
        bpf,
        buckets: Vec::new(),
        count: OPS.iter().map(|op| COUNT.series(&[op])).collect(),
        latency: if options.latency {
            OPS.iter().map(|op| LATENCY.series(&[op])).collect()
        } else {
            Vec::new()
        },
        discarded: bpf::discarded("syscall"),
    };
    Ok(Some(Box::new(s)))
}

impl Sampler for Syscall {
    fn refresh(&mut self) -> anyhow::Result<()> {
        for op in 0..SYSCALL_OPS {
            let n = match self.latency.get(op) {
                Some(latency) => {
                    let sum = self.banks.sum(SYSCALL_SLOT_SUM + op);
                    self.histograms.store(op, latency, sum, &mut self.buckets)
                }
                // Counts-only mode.
                None => self.banks.sum(SYSCALL_SLOT_COUNT + op),
            };
            self.count[op].set_counter(n);
        }
        self.discarded
            .set_counter(self.banks.sum(SYSCALL_SLOT_DISCARDED));
        Ok(())
    }

    fn bpf(&self) -> Option<&BpfInfo> {
        Some(&self.bpf.info)
    }
}
