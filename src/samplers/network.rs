//! `network`: bytes and packets by direction over all devices, drops by
//! the kernel's drop reason, transmit timeouts.

use std::sync::Arc;

use linkme::distributed_slice;

use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::network::*;
use crate::bpf::{self, Banks, Bpf, BpfInfo, BpfOptions, Sizing};
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/network.skel.rs"));
}
use skel::{NetworkSkel, NetworkSkelBuilder};

crate::family! {
    static BYTES: Counter {
        name: "network_bytes",
        unit: Bytes,
        labels: ["direction"],
        sampler: "network",
        source: "net:netif_receive_skb/net_dev_start_xmit",
        help: "Bytes received and transmitted by all network devices.",
    }
}
crate::family! {
    static PACKETS: Counter {
        name: "network_packets",
        unit: Count,
        labels: ["direction"],
        sampler: "network",
        source: "net:netif_receive_skb/net_dev_start_xmit",
        help: "Packets received and transmitted by all network devices.",
    }
}
crate::family! {
    static DROPS: Counter {
        name: "network_drops",
        unit: Count,
        labels: ["reason"],
        sampler: "network",
        source: "skb:kfree_skb",
        help: "Packets dropped, by the kernel's drop reason (series appear once a reason occurs).",
    }
}
crate::family! {
    static TIMEOUTS: Counter {
        name: "network_transmit_timeouts",
        unit: Count,
        labels: [],
        sampler: "network",
        source: "net:net_dev_xmit_timeout",
        help: "Transmit queue timeouts (the watchdog found a stuck queue).",
    }
}

const DIRECTIONS: [&str; 2] = ["receive", "transmit"];

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "network",
    validate: options::<BpfOptions>,
    init,
};

struct Network {
    bpf: Bpf<NetworkSkel<'static>>,
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
    let bpf = bpf::load(
        "network",
        NetworkSkelBuilder::default,
        &ctx.options()?,
        &[],
        &[
            Sizing {
                map: "net_counters",
                per_cpu: NET_BANK,
            },
            Sizing {
                map: "net_drops",
                per_cpu: NET_DROP_REASONS,
            },
        ],
        |_| Ok(()),
    )?;
    Ok(Some(Box::new(Network {
        banks: bpf.banks("net_counters", NET_BANK)?,
        drops: bpf.banks("net_drops", NET_DROP_REASONS)?,
        bpf,
        bytes: DIRECTIONS.map(|d| BYTES.series(&[d])),
        packets: DIRECTIONS.map(|d| PACKETS.series(&[d])),
        timeouts: TIMEOUTS.single(),
        reasons: drop_reasons(),
        drop_series: vec![None; NET_DROP_REASONS],
    })))
}

impl Sampler for Network {
    fn refresh(&mut self) -> anyhow::Result<()> {
        for d in 0..2 {
            self.bytes[d].set_counter(self.banks.sum(NET_SLOT_BYTES + d));
            self.packets[d].set_counter(self.banks.sum(NET_SLOT_PACKETS + d));
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

    fn bpf(&self) -> Option<&BpfInfo> {
        Some(&self.bpf.info)
    }
}
