//! `tcp`: retransmits, connect latency, RTT and jitter, traffic and
//! resets by direction.

use std::sync::Arc;

use linkme::distributed_slice;

use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::sonde::HISTOGRAM_BUCKETS;
use crate::bpf::consts::tcp::*;
use crate::bpf::{self, Banks, Bpf, BpfInfo, BpfOptions, Histograms, Sizing};
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/tcp.skel.rs"));
}
use skel::{TcpSkel, TcpSkelBuilder};

crate::family! {
    static RETRANSMITS: Counter {
        name: "tcp_retransmits",
        unit: Count,
        labels: [],
        sampler: "tcp",
        source: "tcp:tcp_retransmit_skb",
        help: "TCP segments retransmitted.",
    }
}
crate::family! {
    static CONNECT: Histogram {
        name: "tcp_connect_latency",
        unit: Nanoseconds,
        labels: [],
        sampler: "tcp",
        source: "sock:inet_sock_set_state",
        help: "Time of an active TCP open, SYN_SENT to ESTABLISHED.",
    }
}
crate::family! {
    static SRTT: Histogram {
        name: "tcp_srtt",
        unit: Nanoseconds,
        labels: [],
        sampler: "tcp",
        source: "tcp:tcp_probe",
        help: "Smoothed round-trip time of TCP connections, sampled on each received segment.",
    }
}
crate::family! {
    static JITTER: Histogram {
        name: "tcp_jitter",
        unit: Nanoseconds,
        labels: [],
        sampler: "tcp",
        source: "tcp:tcp_probe",
        help: "Round-trip time mean deviation (mdev) of TCP connections, sampled on each received segment.",
    }
}
crate::family! {
    static SIZE: Histogram {
        name: "tcp_size_bytes",
        unit: Bytes,
        labels: ["direction"],
        sampler: "tcp",
        source: "sock:sock_send_length/sock_recv_length",
        help: "Bytes moved per TCP send or receive call.",
    }
}
crate::family! {
    static BYTES: Counter {
        name: "tcp_bytes",
        unit: Bytes,
        labels: ["direction"],
        sampler: "tcp",
        source: "sock:sock_send_length/sock_recv_length",
        help: "Bytes sent and received by applications over TCP.",
    }
}
crate::family! {
    static PACKETS: Counter {
        name: "tcp_packets",
        unit: Count,
        labels: ["direction"],
        sampler: "tcp",
        source: "net:netif_receive_skb/net_dev_start_xmit",
        help: "TCP segments received and transmitted by network devices (IPv4 and IPv6).",
    }
}
crate::family! {
    static RESETS: Counter {
        name: "tcp_resets",
        unit: Count,
        labels: ["direction"],
        sampler: "tcp",
        source: "tcp:tcp_send_reset/tcp_receive_reset",
        help: "TCP resets sent and received.",
    }
}

/// The receive/transmit order of every direction pair on the BPF side.
const DIRECTIONS: [&str; 2] = ["receive", "transmit"];

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "tcp",
    validate: options::<BpfOptions>,
    init,
};

struct Tcp {
    bpf: Bpf<TcpSkel<'static>>,
    banks: Banks,
    histograms: Histograms,
    scratch: Vec<u64>,
    retransmits: Arc<Series>,
    /// (histogram index, series)
    hists: Vec<(usize, Arc<Series>)>,
    /// (bank slot, series)
    counters: Vec<(usize, Arc<Series>)>,
    discarded: Arc<Series>,
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let bpf = bpf::load(
        "tcp",
        TcpSkelBuilder::default,
        &ctx.options()?,
        &[],
        &[
            Sizing {
                map: "tcp_counters",
                per_cpu: TCP_BANK,
            },
            Sizing {
                map: "tcp_histograms",
                per_cpu: TCP_HISTS * HISTOGRAM_BUCKETS,
            },
        ],
        |_| Ok(()),
    )?;
    let mut hists = vec![
        (TCP_HIST_CONNECT, CONNECT.single()),
        (TCP_HIST_SRTT, SRTT.single()),
        (TCP_HIST_JITTER, JITTER.single()),
    ];
    let mut counters = Vec::new();
    for (d, dir) in DIRECTIONS.iter().enumerate() {
        hists.push((TCP_HIST_SIZE_RX + d, SIZE.series(&[dir])));
        counters.push((TCP_SLOT_BYTES + d, BYTES.series(&[dir])));
        counters.push((TCP_SLOT_PACKETS + d, PACKETS.series(&[dir])));
        counters.push((TCP_SLOT_RESETS + d, RESETS.series(&[dir])));
    }
    Ok(Some(Box::new(Tcp {
        banks: bpf.banks("tcp_counters", TCP_BANK)?,
        histograms: bpf.histograms("tcp_histograms", TCP_HISTS)?,
        bpf,
        scratch: Vec::new(),
        retransmits: RETRANSMITS.single(),
        hists,
        counters,
        discarded: bpf::discarded("tcp"),
    })))
}

impl Sampler for Tcp {
    fn refresh(&mut self) -> anyhow::Result<()> {
        self.retransmits
            .set_counter(self.banks.sum(TCP_SLOT_RETRANSMITS));
        for (h, series) in &self.hists {
            let sum = self.banks.sum(TCP_SLOT_SUM + h);
            self.histograms.store(*h, series, sum, &mut self.scratch);
        }
        for (slot, series) in &self.counters {
            series.set_counter(self.banks.sum(*slot));
        }
        self.discarded
            .set_counter(self.banks.sum(TCP_SLOT_DISCARDED));
        Ok(())
    }

    fn bpf(&self) -> Option<&BpfInfo> {
        Some(&self.bpf.info)
    }
}
