//! `interface`: per-interface traffic counters from /proc/net/dev.

use std::collections::HashMap;
use std::sync::Arc;

use linkme::distributed_slice;
use serde::Deserialize;

use crate::agent::sampler::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::registry::{Family, Series};
use crate::samplers::{glob, ProcFile};

crate::family!(BYTES: Counter "interface", Bytes, ["interface", "direction"], "interface", "/proc/net/dev",
    "Bytes received (rx) and transmitted (tx).");
crate::family!(PACKETS: Counter "interface_packets", Count, ["interface", "direction"], "interface", "/proc/net/dev",
    "Packets received (rx) and transmitted (tx).");
crate::family!(ERRORS: Counter "interface_errors", Count, ["interface", "direction"], "interface", "/proc/net/dev",
    "Receive and transmit errors.");
crate::family!(DROPS: Counter "interface_drops", Count, ["interface", "direction"], "interface", "/proc/net/dev",
    "Packets dropped on receive and transmit.");

/// Per direction: the column in /proc/net/dev of bytes, packets, errs, drop.
const COLUMNS: [(&str, [usize; 4]); 2] = [("rx", [0, 1, 2, 3]), ("tx", [8, 9, 10, 11])];
const FAMILIES: [&Family; 4] = [&BYTES, &PACKETS, &ERRORS, &DROPS];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// Interface name globs to leave out.
    exclude: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            exclude: vec!["lo".into()],
        }
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "interface",
    validate: options::<Options>,
    init,
};

struct Entry {
    /// `[direction][family]`; `None` when excluded.
    series: Option<[[Arc<Series>; 4]; 2]>,
    generation: u64,
}

struct Interfaces {
    file: ProcFile,
    options: Options,
    entries: HashMap<String, Entry>,
    generation: u64,
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let mut s = Interfaces {
        file: ProcFile::open("/proc/net/dev")?,
        options: ctx.options()?,
        entries: HashMap::new(),
        generation: 0,
    };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

impl Sampler for Interfaces {
    fn refresh(&mut self) -> anyhow::Result<()> {
        self.generation += 1;
        let generation = self.generation;
        let text = self.file.read()?;
        // Two header lines, then `  eth0: rx_bytes rx_packets ... tx_bytes ...`.
        for line in text.lines().skip(2) {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if !self.entries.contains_key(name) {
                let wanted = !self.options.exclude.iter().any(|p| glob(p, name));
                let series = wanted
                    .then(|| COLUMNS.map(|(dir, _)| FAMILIES.map(|f| f.series(&[name, dir]))));
                self.entries
                    .insert(name.to_string(), Entry { series, generation });
            }
            let entry = self.entries.get_mut(name).expect("inserted above");
            entry.generation = generation;
            let Some(series) = &entry.series else {
                continue;
            };
            let mut v = [0u64; 16];
            for (slot, f) in v.iter_mut().zip(rest.split_ascii_whitespace()) {
                *slot = f.parse().unwrap_or(0);
            }
            for (dir, (_, cols)) in COLUMNS.iter().enumerate() {
                for (s, &col) in series[dir].iter().zip(cols) {
                    s.set_counter(v[col]);
                }
            }
        }
        self.entries.retain(|_, e| e.generation == generation);
        Ok(())
    }
}
