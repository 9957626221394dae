//! `network`: bytes and packets by direction over all devices (the
//! kernel's per-device counters, summed), drops by the kernel's drop reason
//! and transmit timeouts (BPF, on hooks that fire only when they happen).

use std::sync::Arc;

use linkme::distributed_slice;

use super::common::{net_dev_line, ProcFile};
use super::{options, InitResult, NoOptions, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::network::*;
use crate::bpf::{self, Banks, Bpf};
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/network.skel.rs"));
}
use skel::{NetworkSkel, NetworkSkelBuilder};

/// The sampler's config name: `[samplers.network]`, and its families' `sampler`.
pub(crate) const NAME: &str = "network";

crate::family! {
    static BYTES: Counter {
        name: "network_bytes",
        unit: Bytes,
        labels: ["direction"],
        sampler: NAME,
        source: "/proc/net/dev",
        help: "Bytes received and transmitted by all network devices, loopback included (the sum of the kernel's per-device counters, in the agent's network namespace).",
    }
}
crate::family! {
    static PACKETS: Counter {
        name: "network_packets",
        unit: Count,
        labels: ["direction"],
        sampler: NAME,
        source: "/proc/net/dev",
        help: "Packets received and transmitted by all network devices, loopback included (the sum of the kernel's per-device counters, in the agent's network namespace).",
    }
}
crate::family! {
    static DROPS: Counter {
        name: "network_drops",
        unit: Count,
        labels: ["reason"],
        sampler: NAME,
        source: "skb:kfree_skb",
        help: "Packets dropped, by the kernel's drop reason (series appear once a reason occurs).",
    }
}
crate::family! {
    static TIMEOUTS: Counter {
        name: "network_transmit_timeouts",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "net:net_dev_xmit_timeout",
        help: "Transmit queue timeouts (the watchdog found a stuck queue).",
    }
}

const DIRECTIONS: [&str; 2] = ["receive", "transmit"];

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: true,
    capabilities: 0,
    validate: options::<NoOptions>,
    init,
};

struct Network {
    net_dev: ProcFile,
    _bpf: Bpf<NetworkSkel<'static>>,
    banks: Banks,
    drops: Banks,
    bytes: [Arc<Series>; 2],
    packets: [Arc<Series>; 2],
    timeouts: Arc<Series>,
    /// Reason names by value, from this kernel's BTF.
    reasons: Vec<String>,
    /// Series per reason slot, created when the reason first occurs.
    drop_series: Vec<Option<Arc<Series>>>,
}

/// `enum skb_drop_reason` names by value, e.g. `no_socket`; values the
/// running kernel does not name are `reason_N`, the last slot is `other`.
fn drop_reasons() -> Vec<String> {
    let mut names: Vec<String> =
        bpf::enum_names("skb_drop_reason", "SKB_DROP_REASON_", NET_DROP_REASONS)
            .into_iter()
            .enumerate()
            .map(|(i, n)| n.unwrap_or_else(|| format!("reason_{i}")))
            .collect();
    names[NET_DROP_REASONS - 1] = "other".into();
    names
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let mut loader = ctx.bpf.loader(NetworkSkelBuilder::default);
    let counters = loader.banks("net_counters", NET_BANK);
    let drops = loader.banks("net_drops", NET_DROP_REASONS);
    let bpf = loader.load()?;
    let mut s = Network {
        net_dev: ProcFile::open("/proc/net/dev")?,
        banks: bpf.banks(counters)?,
        drops: bpf.banks(drops)?,
        _bpf: bpf,
        bytes: DIRECTIONS.map(|d| BYTES.series(&[d])),
        packets: DIRECTIONS.map(|d| PACKETS.series(&[d])),
        timeouts: TIMEOUTS.single(),
        reasons: drop_reasons(),
        drop_series: vec![None; NET_DROP_REASONS],
    };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

/// (bytes, packets) per direction, summed over every device of
/// /proc/net/dev (receive: columns 0, 1; transmit: 8, 9).
pub fn net_dev_totals(text: &str) -> [[u64; 2]; 2] {
    let mut t = [[0u64; 2]; 2];
    for (_, v) in text.lines().filter_map(net_dev_line) {
        for (d, cols) in [[0, 1], [8, 9]].into_iter().enumerate() {
            t[d][0] += v[cols[0]];
            t[d][1] += v[cols[1]];
        }
    }
    t
}

impl Sampler for Network {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let totals = net_dev_totals(self.net_dev.read()?);
        for (d, [bytes, packets]) in totals.into_iter().enumerate() {
            self.bytes[d].set_counter(bytes);
            self.packets[d].set_counter(packets);
        }
        self.timeouts.set_counter(self.banks.sum(NET_SLOT_TIMEOUTS));
        for (reason, series) in self.drop_series.iter_mut().enumerate() {
            let n = self.drops.sum(reason);
            if n > 0 {
                series
                    .get_or_insert_with(|| DROPS.series(&[&self.reasons[reason]]))
                    .set_counter(n);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_every_device_by_direction() {
        let text = "Inter-|   Receive  |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0
  eth0: 500 5 1 0 0 0 0 0 700 7 0 0 0 0 0 0
";
        assert_eq!(super::net_dev_totals(text), [[1500, 15], [1700, 17]]);
    }
}
