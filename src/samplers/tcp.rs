//! `tcp`: RTT and jitter of established connections, connect latency,
//! segments, retransmits and resets by direction, and with `calls = true`
//! bytes and call sizes. See bpf/tcp.bpf.c for what runs where.

use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use linkme::distributed_slice;

use super::common::ProcFile;
use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::tcp::*;
use crate::bpf::{self, Banks, Bpf, BpfInfo, BpfOptions, Histograms, HookMode, Loader};
use crate::config::HumanDuration;
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
        source: "iter/tcp",
        help: "Smoothed round-trip time of each established TCP connection, observed once per interval (the agent's network namespace).",
    }
}
crate::family! {
    static JITTER: Histogram {
        name: "tcp_jitter",
        unit: Nanoseconds,
        labels: [],
        sampler: "tcp",
        source: "iter/tcp",
        help: "Round-trip time mean deviation (mdev) of each established TCP connection, observed once per interval (the agent's network namespace).",
    }
}
crate::family! {
    static SIZE: Histogram {
        name: "tcp_size_bytes",
        unit: Bytes,
        labels: ["direction"],
        sampler: "tcp",
        source: "sock:sock_send_length/sock_recv_length",
        help: "Bytes moved per TCP send or receive call (with [samplers.tcp] calls = true).",
    }
}
crate::family! {
    static BYTES: Counter {
        name: "tcp_bytes",
        unit: Bytes,
        labels: ["direction"],
        sampler: "tcp",
        source: "sock:sock_send_length/sock_recv_length",
        help: "Bytes sent and received by applications over TCP (with [samplers.tcp] calls = true).",
    }
}
crate::family! {
    static PACKETS: Counter {
        name: "tcp_packets",
        unit: Count,
        labels: ["direction"],
        sampler: "tcp",
        source: "/proc/net/snmp",
        help: "TCP segments received (InSegs, errors included) and sent (OutSegs, retransmissions excluded), as the kernel counts them in the agent's network namespace.",
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

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    hook: HookMode,
    disable: Vec<String>,
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
            hook: HookMode::Auto,
            disable: Vec::new(),
            calls: false,
            interval: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "tcp",
    validate: options::<Options>,
    init,
};

/// Runs the RTT iterator once per interval, off the scrape path: a pass
/// costs in proportion to the connections open.
struct RttWorker {
    thread: Option<JoinHandle<()>>,
    /// Dropping it tells the worker to stop.
    _stop: mpsc::Sender<()>,
}

impl RttWorker {
    fn start(link: OwnedFd, interval: Duration) -> anyhow::Result<RttWorker> {
        // A first pass now, so the first scrape has connections' RTT.
        if let Err(e) = bpf::run_iter(link.as_fd()) {
            anyhow::bail!("cannot run the TCP RTT iterator: {e}");
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sonde-tcp-rtt".into())
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) = bpf::run_iter(link.as_fd()) {
                            tracing::warn!(error = %e, "tcp: RTT iterator pass failed");
                        }
                    }
                    _ => return,
                }
            })?;
        Ok(RttWorker {
            thread: Some(thread),
            _stop: stop,
        })
    }

    fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

struct Tcp {
    /// Holds its own duplicate of the iterator's link, so a pass under
    /// way stays valid whatever is dropped first.
    rtt: RttWorker,
    snmp: ProcFile,
    /// InSegs, OutSegs.
    segments: [Arc<Series>; 2],
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
    let options: Options = ctx.options()?;
    let bpf_options = BpfOptions {
        hook: options.hook,
        disable: options.disable,
    };
    let unused: &[&str] = if options.calls {
        &[]
    } else {
        &["sock_send_length", "sock_recv_length"]
    };
    let bpf = Loader::new("tcp", TcpSkelBuilder::default, &bpf_options)
        .unused(unused)
        .banks("tcp_counters", TCP_BANK)
        .histograms("tcp_histograms", TCP_HISTS)
        .load()?;
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
    let rtt = RttWorker::start(bpf.iter_link("tcp_rtt")?, options.interval.0)?;
    let mut s = Tcp {
        rtt,
        snmp: ProcFile::open("/proc/net/snmp")?,
        segments: DIRECTIONS.map(|d| PACKETS.series(&[d])),
        banks: bpf.banks("tcp_counters")?,
        histograms: bpf.histograms("tcp_histograms")?,
        bpf,
        scratch: Vec::new(),
        retransmits: RETRANSMITS.single(),
        hists,
        counters,
        discarded: bpf::discarded("tcp"),
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
        anyhow::ensure!(self.rtt.alive(), "the TCP RTT thread stopped");
        Ok(())
    }

    fn bpf(&self) -> Option<&BpfInfo> {
        Some(&self.bpf.info)
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
