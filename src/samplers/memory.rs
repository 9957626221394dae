//! `memory`: /proc/meminfo sizes and /proc/vmstat event counters.

use std::sync::Arc;

use linkme::distributed_slice;

use super::common::ProcFile;
use super::{options, InitResult, NoOptions, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::registry::{Family, Series};

/// The sampler's config name: `[samplers.memory]`, and its families' `sampler`.
pub(crate) const NAME: &str = "memory";

crate::family! {
    static TOTAL: Gauge {
        name: "memory_total_bytes",
        unit: Bytes,
        labels: [],
        sampler: NAME,
        source: "/proc/meminfo",
        help: "Usable RAM (MemTotal).",
    }
}
crate::family! {
    static FREE: Gauge {
        name: "memory_free_bytes",
        unit: Bytes,
        labels: [],
        sampler: NAME,
        source: "/proc/meminfo",
        help: "Unused RAM (MemFree).",
    }
}
crate::family! {
    static AVAILABLE: Gauge {
        name: "memory_available_bytes",
        unit: Bytes,
        labels: [],
        sampler: NAME,
        source: "/proc/meminfo",
        help: "RAM available for new allocations without swapping (MemAvailable).",
    }
}
crate::family! {
    static BUFFERS: Gauge {
        name: "memory_buffers_bytes",
        unit: Bytes,
        labels: [],
        sampler: NAME,
        source: "/proc/meminfo",
        help: "Block device buffers (Buffers).",
    }
}
crate::family! {
    static CACHED: Gauge {
        name: "memory_cached_bytes",
        unit: Bytes,
        labels: [],
        sampler: NAME,
        source: "/proc/meminfo",
        help: "Page cache (Cached).",
    }
}
crate::family! {
    static SWAP_TOTAL: Gauge {
        name: "memory_swap_total_bytes",
        unit: Bytes,
        labels: [],
        sampler: NAME,
        source: "/proc/meminfo",
        help: "Swap space (SwapTotal).",
    }
}
crate::family! {
    static SWAP_FREE: Gauge {
        name: "memory_swap_free_bytes",
        unit: Bytes,
        labels: [],
        sampler: NAME,
        source: "/proc/meminfo",
        help: "Unused swap space (SwapFree).",
    }
}
crate::family! {
    static FAULTS: Counter {
        name: "memory_page_faults",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "/proc/vmstat",
        help: "Page faults (pgfault).",
    }
}
crate::family! {
    static MAJOR_FAULTS: Counter {
        name: "memory_major_page_faults",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "/proc/vmstat",
        help: "Page faults that needed I/O (pgmajfault).",
    }
}
crate::family! {
    static SWAP_IN: Counter {
        name: "memory_swap_in_pages",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "/proc/vmstat",
        help: "Pages swapped in (pswpin).",
    }
}
crate::family! {
    static SWAP_OUT: Counter {
        name: "memory_swap_out_pages",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "/proc/vmstat",
        help: "Pages swapped out (pswpout).",
    }
}
crate::family! {
    static OOM_KILLS: Counter {
        name: "memory_oom_kills",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "/proc/vmstat",
        help: "Processes killed by the OOM killer (oom_kill).",
    }
}

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
    name: NAME,
    bpf: false,
    capabilities: 0,
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

/// `MemTotal:       24576000 kB` → (`MemTotal`, bytes). Lines without a
/// unit (`HugePages_Total:       0`) are counts, returned as they are.
pub fn parse_meminfo_line(line: &str) -> Option<(&str, u64)> {
    let (key, rest) = line.split_once(':')?;
    let rest = rest.trim();
    match rest.strip_suffix("kB") {
        Some(kib) => Some((key, kib.trim().parse::<u64>().ok()? * 1024)),
        None => Some((key, rest.parse().ok()?)),
    }
}

impl Sampler for Memory {
    fn refresh(&mut self) -> anyhow::Result<()> {
        // Lines look like `MemTotal:       24576000 kB`.
        let mut found = 0;
        for (key, bytes) in self.meminfo.read()?.lines().filter_map(parse_meminfo_line) {
            if let Some(i) = MEMINFO.iter().position(|(k, _)| *k == key) {
                self.sizes[i].set_gauge(bytes as i64);
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

#[cfg(test)]
mod tests {
    use super::parse_meminfo_line;

    #[test]
    fn parses_meminfo_lines() {
        assert_eq!(
            parse_meminfo_line("MemTotal:       24576000 kB"),
            Some(("MemTotal", 24576000 * 1024))
        );
        assert_eq!(
            parse_meminfo_line("HugePages_Total:       0"),
            Some(("HugePages_Total", 0))
        );
        assert_eq!(parse_meminfo_line("garbage"), None);
        assert_eq!(parse_meminfo_line("MemFree: lots kB"), None);
    }
}
