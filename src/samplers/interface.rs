//! `interface`: per-interface traffic counters from /proc/net/dev.

use std::sync::Arc;

use linkme::distributed_slice;
use serde::Deserialize;

use super::common::{glob, Keyed, ProcFile};
use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::registry::{Family, Series};

crate::family! {
    static BYTES: Counter {
        name: "interface_bytes",
        unit: Bytes,
        labels: ["interface", "direction"],
        sampler: "interface",
        source: "/proc/net/dev",
        help: "Bytes received (rx) and transmitted (tx).",
    }
}
crate::family! {
    static PACKETS: Counter {
        name: "interface_packets",
        unit: Count,
        labels: ["interface", "direction"],
        sampler: "interface",
        source: "/proc/net/dev",
        help: "Packets received (rx) and transmitted (tx).",
    }
}
crate::family! {
    static ERRORS: Counter {
        name: "interface_errors",
        unit: Count,
        labels: ["interface", "direction"],
        sampler: "interface",
        source: "/proc/net/dev",
        help: "Receive and transmit errors.",
    }
}
crate::family! {
    static DROPS: Counter {
        name: "interface_drops",
        unit: Count,
        labels: ["interface", "direction"],
        sampler: "interface",
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
    name: "interface",
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

/// One interface line of /proc/net/dev (`  eth0: rx_bytes rx_packets …
/// tx_bytes …`, 16 counters): its name and counters. The two header lines
/// have no colon after a name and are skipped.
pub fn parse_line(line: &str) -> Option<(&str, [u64; 16])> {
    let (name, rest) = line.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || name.contains('|') {
        return None;
    }
    let mut v = [0u64; 16];
    for (slot, f) in v.iter_mut().zip(rest.split_ascii_whitespace()) {
        *slot = f.parse().unwrap_or(0);
    }
    Some((name, v))
}

impl Sampler for Interfaces {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let text = self.file.read()?;
        self.interfaces.begin();
        for (name, v) in text.lines().filter_map(parse_line) {
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

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn parses_net_dev_including_odd_names() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 123456789012 99 1 2 0 0 0 0 555 44 3 4 0 0 0 0
veth1a2b3c4d-long:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
br-9f8e7d6c5b4a: 7 0 0 0 0 0 0 0 8 0 0 0 0 0 0 0
";
        let lines: Vec<_> = text.lines().filter_map(parse_line).collect();
        let names: Vec<&str> = lines.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["lo", "eth0", "veth1a2b3c4d-long", "br-9f8e7d6c5b4a"]
        );
        let eth0 = lines[1].1;
        assert_eq!(
            (eth0[0], eth0[1], eth0[2], eth0[3]),
            (123456789012, 99, 1, 2)
        );
        assert_eq!((eth0[8], eth0[9], eth0[10], eth0[11]), (555, 44, 3, 4));
        // A counter that abuts the colon (long names) still parses.
        assert_eq!(lines[2].1[0], 1);
        assert_eq!(lines[2].1[15], 16);
    }
}
