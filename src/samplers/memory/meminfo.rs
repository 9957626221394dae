//! `memory`: /proc/meminfo sizes and /proc/vmstat event counters.

use std::sync::Arc;

use linkme::distributed_slice;

use crate::agent::sampler::{
    options, InitResult, NoOptions, Sampler, SamplerContext, SamplerSpec, SAMPLERS,
};
use crate::registry::{Family, Series};
use crate::samplers::ProcFile;

crate::family!(TOTAL: Gauge "memory_total", Bytes, [], "memory", "/proc/meminfo", "Usable RAM (MemTotal).");
crate::family!(FREE: Gauge "memory_free", Bytes, [], "memory", "/proc/meminfo", "Unused RAM (MemFree).");
crate::family!(AVAILABLE: Gauge "memory_available", Bytes, [], "memory", "/proc/meminfo",
    "RAM available for new allocations without swapping (MemAvailable).");
crate::family!(BUFFERS: Gauge "memory_buffers", Bytes, [], "memory", "/proc/meminfo", "Block device buffers (Buffers).");
crate::family!(CACHED: Gauge "memory_cached", Bytes, [], "memory", "/proc/meminfo", "Page cache (Cached).");
crate::family!(SWAP_TOTAL: Gauge "memory_swap_total", Bytes, [], "memory", "/proc/meminfo", "Swap space (SwapTotal).");
crate::family!(SWAP_FREE: Gauge "memory_swap_free", Bytes, [], "memory", "/proc/meminfo", "Unused swap space (SwapFree).");
crate::family!(FAULTS: Counter "memory_page_faults", Count, [], "memory", "/proc/vmstat", "Page faults (pgfault).");
crate::family!(MAJOR_FAULTS: Counter "memory_major_page_faults", Count, [], "memory", "/proc/vmstat",
    "Page faults that needed I/O (pgmajfault).");
crate::family!(SWAP_IN: Counter "memory_swap_in_pages", Count, [], "memory", "/proc/vmstat", "Pages swapped in (pswpin).");
crate::family!(SWAP_OUT: Counter "memory_swap_out_pages", Count, [], "memory", "/proc/vmstat", "Pages swapped out (pswpout).");
crate::family!(OOM_KILLS: Counter "memory_oom_kills", Count, [], "memory", "/proc/vmstat",
    "Processes killed by the OOM killer (oom_kill).");

const MEMINFO: [(&str, &Family); 7] = [
    ("MemTotal", &TOTAL),
    ("MemFree", &FREE),
    ("MemAvailable", &AVAILABLE),
    ("Buffers", &BUFFERS),
    ("Cached", &CACHED),
    ("SwapTotal", &SWAP_TOTAL),
    ("SwapFree", &SWAP_FREE),
];

const VMSTAT: [(&str, &Family); 5] = [
    ("pgfault", &FAULTS),
    ("pgmajfault", &MAJOR_FAULTS),
    ("pswpin", &SWAP_IN),
    ("pswpout", &SWAP_OUT),
    ("oom_kill", &OOM_KILLS),
];

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "memory",
    validate: options::<NoOptions>,
    init,
};

struct Memory {
    meminfo: ProcFile,
    vmstat: ProcFile,
    sizes: Vec<Arc<Series>>,
    events: Vec<Arc<Series>>,
}

fn init(_: &SamplerContext<'_>) -> InitResult {
    let mut s = Memory {
        meminfo: ProcFile::open("/proc/meminfo")?,
        vmstat: ProcFile::open("/proc/vmstat")?,
        sizes: MEMINFO.iter().map(|(_, f)| f.single()).collect(),
        events: VMSTAT.iter().map(|(_, f)| f.single()).collect(),
    };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

impl Sampler for Memory {
    fn refresh(&mut self) -> anyhow::Result<()> {
        // Lines look like `MemTotal:       24576000 kB`.
        let mut found = 0;
        for line in self.meminfo.read()?.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            if let Some(i) = MEMINFO.iter().position(|(k, _)| *k == key) {
                let kib: u64 = rest
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(0);
                self.sizes[i].set_gauge((kib * 1024) as i64);
                found += 1;
            }
        }
        anyhow::ensure!(found > 0, "/proc/meminfo has none of the expected keys");
        // Lines look like `pgfault 123456`.
        for line in self.vmstat.read()?.lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            if let Some(i) = VMSTAT.iter().position(|(k, _)| *k == key) {
                self.events[i].set_counter(value.trim().parse().unwrap_or(0));
            }
        }
        Ok(())
    }
}
