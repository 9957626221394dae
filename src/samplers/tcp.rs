//! `tcp`: RTT and jitter of established connections, connect latency,
//! segments, retransmits and resets by direction, and with `calls = true`
//! bytes and call sizes. See bpf/tcp.bpf.c for what runs where.

use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use linkme::distributed_slice;

use super::common::{ProcFile, Worker};
use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::tcp::*;
use crate::bpf::{self, Banks, Bpf, Histograms};
use crate::config::HumanDuration;
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/tcp.skel.rs"));
}
use skel::{TcpSkel, TcpSkelBuilder};

/// The sampler's config name: `[samplers.tcp]`, and its families' `sampler`.
pub(crate) const NAME: &str = "tcp";

crate::family! {
    static RETRANSMITS: Counter {
        name: "tcp_retransmits",
        unit: Count,
        labels: [],
        sampler: NAME,
        source: "tcp:tcp_retransmit_skb",
        help: "TCP segments retransmitted.",
    }
}
crate::family! {
    static CONNECT: Histogram {
        name: "tcp_connect_latency",
        unit: Nanoseconds,
        labels: [],
        sampler: NAME,
        source: "sock:inet_sock_set_state",
        help: "Time of an active TCP open, SYN_SENT to ESTABLISHED.",
    }
}
crate::family! {
    static SRTT: Histogram {
        name: "tcp_srtt",
        unit: Nanoseconds,
        labels: [],
        sampler: NAME,
        source: "iter/tcp",
        help: "Smoothed round-trip time of each established TCP connection, observed once per interval (the agent's network namespace).",
    }
}
crate::family! {
    static JITTER: Histogram {
        name: "tcp_jitter",
        unit: Nanoseconds,
        labels: [],
        sampler: NAME,
        source: "iter/tcp",
        help: "Round-trip time mean deviation (mdev) of each established TCP connection, observed once per interval (the agent's network namespace).",
    }
}
crate::family! {
    static SIZE: Histogram {
        name: "tcp_size_bytes",
        unit: Bytes,
        labels: ["direction"],
        sampler: NAME,
        source: "sock:sock_send_length/sock_recv_length",
        help: "Bytes moved per TCP send or receive call (with [samplers.tcp] calls = true).",
    }
}
crate::family! {
    static BYTES: Counter {
        name: "tcp_bytes",
        unit: Bytes,
        labels: ["direction"],
        sampler: NAME,
        source: "sock:sock_send_length/sock_recv_length",
        help: "Bytes sent and received by applications over TCP (with [samplers.tcp] calls = true).",
    }
}
crate::family! {
    static PACKETS: Counter {
        name: "tcp_packets",
        unit: Count,
        labels: ["direction"],
        sampler: NAME,
        source: "/proc/net/snmp",
        help: "TCP segments received (InSegs, errors included) and sent (OutSegs, retransmissions excluded), as the kernel counts them in the agent's network namespace.",
    }
}
crate::family! {
    static RESETS: Counter {
        name: "tcp_resets",
        unit: Count,
        labels: ["direction"],
        sampler: NAME,
        source: "tcp:tcp_send_reset/tcp_receive_reset",
        help: "TCP resets sent and received.",
    }
}

/// The receive/transmit order of every direction pair on the BPF side.
const DIRECTIONS: [&str; 2] = ["receive", "transmit"];

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// Count bytes and call sizes per application send/receive: one
    /// program run per call.
    calls: bool,
    /// How often every established connection's RTT is observed. A pass
    /// walks the kernel's TCP hash tables (their size grows with memory:
    /// ~3 ms of CPU on our 24 GiB VM), so not every second.
    interval: HumanDuration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            calls: false,
            interval: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: true,
    capabilities: 0,
    validate: options::<Options>,
    init,
};

/// Runs an RTT iterator pass now, so the first scrape has connections'
/// RTT, then every `interval` on a thread.
fn rtt_worker(link: OwnedFd, interval: Duration) -> anyhow::Result<Worker> {
    if let Err(e) = bpf::run_iter(link.as_fd()) {
        anyhow::bail!("cannot run the TCP RTT iterator: {e}");
    }
    let pass = move |link: &mut OwnedFd| {
        if let Err(e) = bpf::run_iter(link.as_fd()) {
            tracing::warn!(error = %e, "tcp: RTT iterator pass failed");
        }
        interval
    };
    Ok(Worker::spawn(
        "sonde-tcp-rtt",
        interval,
        move || link,
        pass,
    )?)
}

struct Tcp {
    /// Holds its own duplicate of the iterator's link, so a pass under
    /// way stays valid whatever is dropped first.
    rtt: Worker,
    snmp: ProcFile,
    /// InSegs, OutSegs.
    segments: [Arc<Series>; 2],
    _bpf: Bpf<TcpSkel<'static>>,
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
    let options: Options = ctx.options()?;
    let mut loader = ctx.bpf.loader(TcpSkelBuilder::default);
    if !options.calls {
        loader.unused(&["sock_send_length", "sock_recv_length"]);
    }
    let bank = loader.banks("tcp_counters", TCP_BANK);
    let histograms = loader.histograms("tcp_histograms", TCP_HISTS);
    let bpf = loader.load()?;
    let mut hists = vec![
        (TCP_HIST_CONNECT, CONNECT.single()),
        (TCP_HIST_SRTT, SRTT.single()),
        (TCP_HIST_JITTER, JITTER.single()),
    ];
    let mut counters = Vec::new();
    for (d, dir) in DIRECTIONS.iter().enumerate() {
        counters.push((TCP_SLOT_RESETS + d, RESETS.series(&[dir])));
        // Per-call hooks are newer than some kernels (not in 6.1): export
        // their series only where the program runs, never a silent 0.
        const CALL_HOOKS: [&str; 2] = ["sock_recv_length", "sock_send_length"];
        if options.calls && bpf.attached(CALL_HOOKS[d]) {
            hists.push((TCP_HIST_SIZE_RX + d, SIZE.series(&[dir])));
            counters.push((TCP_SLOT_BYTES + d, BYTES.series(&[dir])));
        }
    }
    let rtt = rtt_worker(bpf.iter_link("tcp_rtt")?, options.interval.0)?;
    let mut s = Tcp {
        rtt,
        snmp: ProcFile::open("/proc/net/snmp")?,
        segments: DIRECTIONS.map(|d| PACKETS.series(&[d])),
        banks: bpf.banks(bank)?,
        histograms: bpf.histograms(histograms)?,
        _bpf: bpf,
        scratch: Vec::new(),
        retransmits: RETRANSMITS.single(),
        hists,
        counters,
        discarded: bpf::discarded(NAME),
    };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

/// `InSegs` and `OutSegs` of the `Tcp:` lines of /proc/net/snmp (a line of
/// field names, then a line of values).
pub fn snmp_segments(text: &str) -> Option<[u64; 2]> {
    let mut tcp = text.lines().filter_map(|l| l.strip_prefix("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let mut out = [None; 2];
    for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
        let slot = match name {
            "InSegs" => 0,
            "OutSegs" => 1,
            _ => continue,
        };
        out[slot] = value.parse().ok();
    }
    Some([out[0]?, out[1]?])
}

impl Sampler for Tcp {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let segments = snmp_segments(self.snmp.read()?)
            .ok_or_else(|| anyhow::anyhow!("/proc/net/snmp has no Tcp InSegs/OutSegs"))?;
        for (s, v) in self.segments.iter().zip(segments) {
            s.set_counter(v);
        }
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
        self.rtt.check()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_tcp_segments_from_snmp() {
        let text = "Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 12345
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 100 90 3 4 5 987654 876543 21 0 7 0
Udp: InDatagrams NoPorts
Udp: 1 2
";
        assert_eq!(super::snmp_segments(text), Some([987654, 876543]));
        assert_eq!(super::snmp_segments("Tcp: InSegs\n"), None);
    }
}
