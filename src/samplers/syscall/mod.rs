//! `syscall`: syscall counts by operation class (every syscall, exact), and
//! the latency of all of them or of a random sample, measured in the kernel
//! on raw_syscalls:sys_enter/sys_exit (see bpf/syscall.bpf.c for the costs).

use std::sync::Arc;

use linkme::distributed_slice;

use crate::bpf::consts::syscall::*;
use crate::bpf::{self, Banks, Bpf, Histograms};
use crate::registry::Series;
use crate::samplers::common::cgroups::{self, Field};
use crate::samplers::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};

mod classes;

use classes::classes;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/syscall.skel.rs"));
}
use skel::{SyscallSkel, SyscallSkelBuilder};

/// The sampler's config name: `[samplers.syscall]`, and its families' `sampler`.
pub(crate) const NAME: &str = "syscall";

crate::family! {
    static COUNT: Counter {
        name: "syscalls",
        unit: Count,
        labels: ["op"],
        sampler: NAME,
        source: "raw_syscalls:sys_enter",
        help: "Syscalls entered, by operation class (every one, in every latency mode).",
    }
}
crate::family! {
    static LATENCY: Histogram {
        name: "syscall_latency",
        unit: Nanoseconds,
        labels: ["op"],
        sampler: NAME,
        source: "raw_syscalls:sys_enter/sys_exit",
        help: "Time from syscall entry to exit, by operation class: every syscall with latency = \"all\", a random 1 in `sample` with \"sampled\" (then _count is the syscalls timed).",
    }
}

crate::family! {
    static CGROUP_SYSCALLS: Counter {
        name: "cgroup_syscalls",
        unit: Count,
        labels: ["id", "container_id", "name", "image", "pod", "namespace", "op"],
        sampler: NAME,
        source: "raw_syscalls:sys_enter",
        help: "Syscalls entered by the cgroup's tasks, by operation class (with the cgroup sampler's attribution).",
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
    latency: Latency,
    /// With `latency = "sampled"`: time 1 in this many syscalls on average.
    #[serde(deserialize_with = "sample")]
    sample: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            latency: Latency::Off,
            sample: 64,
        }
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: true,
    capabilities: 0,
    validate: options::<Options>,
    init,
};

struct Syscall {
    /// Its per-cgroup counters, while it runs (attribution on).
    _cgroups: Option<cgroups::Registration>,
    _bpf: Bpf<SyscallSkel<'static>>,
    banks: Banks,
    histograms: Histograms,
    buckets: Vec<u64>,
    count: Vec<Arc<Series>>,
    /// Empty with `latency = "off"`.
    latency: Vec<Arc<Series>>,
    discarded: Arc<Series>,
}

/// Fills the syscall number -> op class table, before the first syscall
/// is counted by the programs (they are attached after it).
fn write_table(map: &libbpf_rs::MapHandle) -> anyhow::Result<()> {
    use libbpf_rs::MapCore as _;
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
    let target = cgroups::target(ctx);
    let cg_width = if target.is_some() {
        SYSCALL_CGROUPS * SYSCALL_OPS
    } else {
        1
    };
    let mut loader = ctx.bpf.loader(SyscallSkelBuilder::default);
    if !timed {
        loader.unused(&["sys_exit"]);
    }
    let counters = loader.banks("syscall_counters", SYSCALL_BANK);
    let latency = loader.histograms("syscall_latency", SYSCALL_OPS);
    let cg_banks = loader.banks("syscall_cgroups", cg_width);
    let cg_ids = loader.map("syscall_cgroup_ids");
    let ops = loader.map("syscall_ops");
    let bpf = loader.load_with(
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
        |loaded| write_table(&loaded.map(ops)?),
    )?;
    let provider = match target {
        Some(_) => Some(cgroups::Provider::from_bpf(
            NAME,
            &bpf,
            cgroups::ProviderSpec {
                ids: cg_ids,
                banks: cg_banks,
                counters: counters.into(),
                generation: SYSCALL_SLOT_GEN,
                caches_misses: true,
                fields: OPS
                    .iter()
                    .map(|op| Field {
                        family: &CGROUP_SYSCALLS,
                        label: Some(op),
                    })
                    .collect(),
                lazy: true,
            },
        )?),
        None => None,
    };
    // Registered with the sampler: a sampler that fails to start (a `?`
    // below) takes its provider out again.
    let s = Syscall {
        _cgroups: provider.map(cgroups::register),
        banks: bpf.banks(counters)?,
        histograms: bpf.histograms(latency)?,
        _bpf: bpf,
        buckets: Vec::new(),
        count: OPS.iter().map(|op| COUNT.series(&[op])).collect(),
        latency: if timed {
            OPS.iter().map(|op| LATENCY.series(&[op])).collect()
        } else {
            Vec::new()
        },
        discarded: bpf::discarded(NAME),
    };
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
}
