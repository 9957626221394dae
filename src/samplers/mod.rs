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

use crate::config::{Checker, Segment};

/// Every sampler compiled into the binary.
#[distributed_slice]
pub static SAMPLERS: [SamplerSpec];

pub trait Sampler: Send {
    /// Reads the source and updates this sampler's series. Must be cheap:
    /// it runs on the scrape path (slow sources refresh on their own thread).
    fn refresh(&mut self) -> anyhow::Result<()>;

    /// The BPF programs and maps this sampler loaded (procfs samplers have
    /// none); the agent reports them and refreshes their run statistics.
    fn bpf(&self) -> Option<&crate::bpf::BpfInfo> {
        None
    }

    /// A line for `/samplers` and the startup log on what the sampler found
    /// (e.g. the cgroup layout).
    fn detail(&self) -> Option<String> {
        None
    }
}

/// What `SamplerSpec::init` returns.
pub type InitResult = anyhow::Result<Option<Box<dyn Sampler>>>;

/// What a sampler registers: its config name, how to validate its own
/// `[samplers.<name>]` keys, and how to start it.
pub struct SamplerSpec {
    pub name: &'static str,
    /// Deserializes the sampler's options (its section minus `enabled`),
    /// recording every problem; see [`options`].
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
    /// The sampler's section without `enabled`; already validated.
    pub options: &'a toml::Value,
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
