//! The sampler contract, and the samplers: one file (or folder) each, named
//! by its config name, registering itself in [`SAMPLERS`] and declaring its
//! own metric families. A new sampler adds its file and one `mod` line
//! here; nothing else lists them. `common/` holds what samplers share.

pub mod common;

mod blockio;
pub mod cgroup;
mod cpu;
mod cpu_events;
mod diskstats;
mod filesystem;
mod interface;
mod load;
mod memory;
mod network;
mod pressure;
mod process;
pub mod processes;
mod scheduler;
mod softirq;
mod syscall;
mod tcp;

use linkme::distributed_slice;
use serde::de::DeserializeOwned;

use crate::bpf::{BpfContext, BpfOptions, OPTION_KEYS};
use crate::config::{Checker, Segment};

/// Every sampler compiled into the binary.
#[distributed_slice]
pub static SAMPLERS: [SamplerSpec];

pub trait Sampler: Send {
    /// Reads the source and updates this sampler's series. Must be cheap:
    /// it runs on the scrape path (slow sources refresh on their own thread).
    fn refresh(&mut self) -> anyhow::Result<()>;

    /// A line for `/samplers` and the startup log on what the sampler found
    /// (e.g. the cgroup layout).
    fn detail(&self) -> Option<String> {
        None
    }
}

/// What `SamplerSpec::init` returns.
pub type InitResult = anyhow::Result<Option<Box<dyn Sampler>>>;

/// What a sampler registers: its config name, whether it loads BPF
/// programs, the capabilities it needs after the privilege drop, how to
/// validate its own `[samplers.<name>]` keys, and how to start it.
pub struct SamplerSpec {
    pub name: &'static str,
    /// Loads BPF programs: takes the `hook` and `disable` keys (read here,
    /// once, into [`SamplerContext::bpf`]). Its load needs capabilities the
    /// privilege drop gives up: started by a reload after the drop, it
    /// fails and says to restart the agent.
    pub bpf: bool,
    /// Capabilities its refreshes need after the privilege drop, beyond
    /// what every process has (`privileges::bit(CAP_…)`), e.g. to read
    /// other users' /proc/PID/io. 0 for most: procfs and sysfs files are
    /// world-readable, BPF maps are read through the mmap or fds opened at
    /// start (no capability since Linux 6.5), program stats come from our
    /// own fds, iterators from links made at start.
    pub capabilities: u64,
    /// Deserializes the sampler's options (its section minus `enabled`,
    /// and minus `hook` and `disable` for BPF samplers), recording every
    /// problem; see [`options`].
    pub validate: fn(&mut Checker<'_>, &[Segment], toml::Value) -> bool,
    /// `Ok(None)`: not applicable here (reported as disabled).
    /// `Err`: could not start (reported as failed; the agent goes on).
    pub init: fn(&SamplerContext<'_>) -> InitResult,
}

impl SamplerSpec {
    pub fn find(name: &str) -> Option<&'static SamplerSpec> {
        SAMPLERS.iter().find(|s| s.name == name)
    }

    pub fn names() -> Vec<&'static str> {
        let mut v: Vec<_> = SAMPLERS.iter().map(|s| s.name).collect();
        v.sort_unstable();
        v
    }

    /// Checks the sampler's section (without `enabled`) at `path`: the
    /// contract's own keys (`hook`, `disable` of a BPF sampler), then the
    /// sampler's. Returns its BPF options and the rest of the section.
    pub fn check(
        &self,
        c: &mut Checker<'_>,
        path: &[Segment],
        mut section: toml::Table,
    ) -> Option<(BpfOptions, toml::Value)> {
        let mut bpf = toml::Table::new();
        if self.bpf {
            for key in OPTION_KEYS {
                if let Some(v) = section.remove(key) {
                    bpf.insert(key.to_string(), v);
                }
            }
        }
        let bpf = c.deserialize::<BpfOptions>(path, toml::Value::Table(bpf));
        let options = toml::Value::Table(section);
        let ok = (self.validate)(c, path, options.clone());
        Some((bpf?, options)).filter(|_| ok)
    }
}

/// `validate` for a sampler whose options deserialize into `T`.
pub fn options<T: DeserializeOwned>(c: &mut Checker<'_>, path: &[Segment], v: toml::Value) -> bool {
    c.deserialize::<T>(path, v).is_some()
}

/// Options type for samplers without options of their own.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

pub struct SamplerContext<'a> {
    pub name: &'static str,
    /// The sampler's own options (its section without `enabled`, `hook`
    /// and `disable`); already validated.
    pub options: &'a toml::Value,
    /// Its `hook` and `disable` options; what its BPF loads report goes
    /// back to the agent through it.
    pub bpf: BpfContext,
    /// Whether the `cgroup` sampler is on with `attribution`: BPF samplers
    /// then also count per cgroup (common::cgroups).
    pub cgroup_attribution: bool,
}

impl SamplerContext<'_> {
    pub fn options<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        T::deserialize(self.options.clone())
            .map_err(|e| anyhow::anyhow!("[samplers.{}]: {e}", self.name))
    }
}
