//! `interface`: per-interface traffic counters from /proc/net/dev.

use std::sync::Arc;

use linkme::distributed_slice;
use serde::Deserialize;

use super::common::{glob, net_dev_line, Keyed, ProcFile};
use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::registry::{Family, Series};

/// The sampler's config name: `[samplers.interface]`, and its families' `sampler`.
pub(crate) const NAME: &str = "interface";

crate::family! {
    static BYTES: Counter {
        name: "interface_bytes",
        unit: Bytes,
        labels: ["interface", "direction"],
        sampler: NAME,
        source: "/proc/net/dev",
        help: "Bytes received (rx) and transmitted (tx).",
    }
}
crate::family! {
    static PACKETS: Counter {
        name: "interface_packets",
        unit: Count,
        labels: ["interface", "direction"],
        sampler: NAME,
        source: "/proc/net/dev",
        help: "Packets received (rx) and transmitted (tx).",
    }
}
crate::family! {
    static ERRORS: Counter {
        name: "interface_errors",
        unit: Count,
        labels: ["interface", "direction"],
        sampler: NAME,
        source: "/proc/net/dev",
        help: "Receive and transmit errors.",
    }
}
crate::family! {
    static DROPS: Counter {
        name: "interface_drops",
        unit: Count,
        labels: ["interface", "direction"],
        sampler: NAME,
        source: "/proc/net/dev",
        help: "Packets dropped on receive and transmit.",
    }
}

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
    name: NAME,
    bpf: false,
    capabilities: 0,
    validate: options::<Options>,
    init,
};

/// `[direction][family]`.
type Series4x2 = [[Arc<Series>; 4]; 2];

struct Interfaces {
    file: ProcFile,
    options: Options,
    interfaces: Keyed<Series4x2>,
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let mut s = Interfaces {
        file: ProcFile::open("/proc/net/dev")?,
        options: ctx.options()?,
        interfaces: Keyed::default(),
    };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

impl Sampler for Interfaces {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let text = self.file.read()?;
        self.interfaces.begin();
        for (name, v) in text.lines().filter_map(net_dev_line) {
            let exclude = &self.options.exclude;
            let make = || {
                let wanted = !exclude.iter().any(|p| glob(p, name));
                wanted.then(|| COLUMNS.map(|(dir, _)| FAMILIES.map(|f| f.series(&[name, dir]))))
            };
            let Some(series) = self.interfaces.get(name, make) else {
                continue;
            };
            for (dir, (_, cols)) in COLUMNS.iter().enumerate() {
                for (s, &col) in series[dir].iter().zip(cols) {
                    s.set_counter(v[col]);
                }
            }
        }
        self.interfaces.finish();
        Ok(())
    }
}
