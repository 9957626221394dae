//! `syscall`: syscall counts by operation class (every syscall, exact), and
//! the latency of all of them or of a random sample, measured in the kernel
//! on raw_syscalls:sys_enter/sys_exit (see bpf/syscall.bpf.c for the costs).

use std::sync::Arc;

use linkme::distributed_slice;

use crate::bpf::consts::syscall::*;
use crate::bpf::{self, Banks, Bpf, BpfInfo, BpfOptions, Histograms, Loader};
use crate::registry::Series;
use crate::samplers::common::cgroups;
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
        source: "raw_syscalls:sys_enter",
        help: "Syscalls entered, by operation class (every one, in every latency mode).",
    }
}
crate::family! {
    static LATENCY: Histogram {
        name: "syscall_latency",
        unit: Nanoseconds,
        labels: ["op"],
        sampler: "syscall",
        source: "raw_syscalls:sys_enter/sys_exit",
        help: "Time from syscall entry to exit, by operation class: every syscall with latency = \"all\", a random 1 in `sample` with \"sampled\" (then _count is the syscalls timed).",
    }
}

/// Operation classes; the index is what the BPF table stores. Syscalls not
/// listed below are `other` (index 0, the table's zero value).
pub(super) const OPS: [&str; SYSCALL_OPS] = [
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

/// Which syscalls are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Latency {
    /// None: counts only (one program on sys_enter, no clock).
    Off,
    /// A random 1 in `sample` (adds a sys_exit program on every syscall;
    /// the clock reads and the per-task stamp only for the timed ones).
    Sampled,
    /// Every syscall.
    All,
}

impl<'de> serde::Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Latency;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#""off", "sampled" or "all" (or false / true)"#)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Latency, E> {
                Ok(if v { Latency::All } else { Latency::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Latency, E> {
                match v {
                    "off" => Ok(Latency::Off),
                    "sampled" => Ok(Latency::Sampled),
                    "all" => Ok(Latency::All),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Bounds of `sample`: at least every other syscall, at most 1 in 2^20.
const SAMPLE_MIN: u32 = 2;
const SAMPLE_MAX: u32 = 1 << 20;

fn sample<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = <u32 as serde::Deserialize>::deserialize(d)?;
    if (SAMPLE_MIN..=SAMPLE_MAX).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is out of range: time 1 in {SAMPLE_MIN} to 1 in {SAMPLE_MAX} syscalls"
        )))
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    hook: bpf::HookMode,
    disable: Vec<String>,
    latency: Latency,
    /// With `latency = "sampled"`: time 1 in this many syscalls on average.
    #[serde(deserialize_with = "sample")]
    sample: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hook: bpf::HookMode::Auto,
            disable: Vec::new(),
            latency: Latency::Off,
            sample: 64,
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
    /// Empty with `latency = "off"`.
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
    let timed = options.latency != Latency::Off;
    let sample_every = match options.latency {
        Latency::Sampled => options.sample,
        _ => 1,
    };
    let bpf_options = BpfOptions {
        hook: options.hook,
        disable: options.disable,
    };
    let unused: &[&str] = if timed { &[] } else { &["sys_exit"] };
    let target = ctx
        .cgroup_attribution
        .then(cgroups::bpf_target)
        .transpose()
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "syscall: no per-cgroup counters");
            None
        });
    let cg_width = if target.is_some() {
        SYSCALL_CGROUPS * SYSCALL_OPS
    } else {
        1
    };
    let bpf = Loader::new("syscall", SyscallSkelBuilder::default, &bpf_options)
        .unused(unused)
        .banks("syscall_counters", SYSCALL_BANK)
        .histograms("syscall_latency", SYSCALL_OPS)
        .banks("syscall_cgroups", cg_width)
        .load_with(
            |open| {
                let rodata = open
                    .maps
                    .rodata_data
                    .as_deref_mut()
                    .ok_or_else(|| anyhow::anyhow!("the syscall object has no rodata"))?;
                rodata.timed = timed;
                rodata.sample_every = sample_every;
                if let Some(t) = target {
                    rodata.cgroups = true;
                    rodata.cgroup_dfl = t.dfl;
                    rodata.cgroup_subsys = t.subsys;
                }
                Ok(())
            },
            write_table,
        )?;
    // Registered last, once the sampler has started.
    let provider = match target {
        Some(_) => Some(cgroups::Provider::from_bpf(
            "syscall",
            &bpf,
            &cgroups::ProviderMaps {
                ids: "syscall_cgroup_ids",
                banks: "syscall_cgroups",
                fields: SYSCALL_OPS,
                counters: "syscall_counters",
                generation: SYSCALL_SLOT_GEN,
                caches_misses: true,
            },
        )?),
        None => None,
    };
    let s = Syscall {
        banks: bpf.banks("syscall_counters")?,
        histograms: bpf.histograms("syscall_latency")?,
        bpf,
        buckets: Vec::new(),
        count: OPS.iter().map(|op| COUNT.series(&[op])).collect(),
        latency: if timed {
            OPS.iter().map(|op| LATENCY.series(&[op])).collect()
        } else {
            Vec::new()
        },
        discarded: bpf::discarded("syscall"),
    };
    // Last: a sampler that failed to start must not leave counters behind.
    if let Some(p) = provider {
        cgroups::register(p);
    }
    Ok(Some(Box::new(s)))
}

impl Sampler for Syscall {
    fn refresh(&mut self) -> anyhow::Result<()> {
        for op in 0..SYSCALL_OPS {
            self.count[op].set_counter(self.banks.sum(SYSCALL_SLOT_COUNT + op));
            if let Some(latency) = self.latency.get(op) {
                let sum = self.banks.sum(SYSCALL_SLOT_SUM + op);
                self.histograms.store(op, latency, sum, &mut self.buckets);
            }
        }
        self.discarded
            .set_counter(self.banks.sum(SYSCALL_SLOT_DISCARDED));
        Ok(())
    }

    fn bpf(&self) -> Option<&BpfInfo> {
        Some(&self.bpf.info)
    }
}
