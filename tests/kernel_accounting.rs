//! Our counters against the kernel's own accounting, over a driven
//! workload: equal, not "at least" (block requests: up to the runs the
//! kernel skips without telling, see there). Each comparison is taken
//! while the kernel's count stands still across the agent's read (see
//! `stable`), so the shared machine's other activity cannot make them
//! differ. Counters read from /proc files are checked with `sonde --once`,
//! which opens no socket: a scrape's own TCP traffic would move TCP and
//! NET_RX counts.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;

use common::*;

/// One test at a time: each one's traffic (disk writes, scrapes over TCP)
/// would move the counts another one compares.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every scrape refreshes: the comparisons need the agent's figures of now.
fn fresh(c: Config) -> Config {
    c.set("general.ttl", "1ms")
}

/// Block devices with a request queue (blk-mq), which block_rq_complete
/// sees; bio-based ones (device-mapper, md) count the same I/O again on
/// the devices below them. Whole devices only: partitions are subsets.
fn request_based_disks() -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|d| std::path::Path::new(&format!("/sys/block/{d}/mq")).exists())
        .collect()
}

/// Per op (read, write, discard, flush): completed requests, and bytes
/// (read, write, discard sectors x 512; 0 for flush), summed over `disks`.
fn diskstats(disks: &[String]) -> [(u64, u64); 4] {
    let mut t = [(0u64, 0u64); 4];
    for line in std::fs::read_to_string("/proc/diskstats").unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 14 || !disks.iter().any(|d| d == f[2]) {
            continue;
        }
        let n = |i: usize| {
            f.get(3 + i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // reads 0 (sectors 2), writes 4 (6), discards 11 (13), flushes 15.
        for (op, (ios, sectors)) in [(0, Some(2)), (4, Some(6)), (11, Some(13)), (15, None)]
            .into_iter()
            .enumerate()
        {
            t[op].0 += n(ios);
            t[op].1 += sectors.map_or(0, |s| n(s) * 512);
        }
    }
    t
}

fn ours(text: &str) -> [(u64, u64); 4] {
    ["read", "write", "discard", "flush"].map(|op| {
        let l = format!("op=\"{op}\"");
        (
            total(text, "blockio_operations_total", &[&l]) as u64,
            total(text, "blockio_bytes_total", &[&l]) as u64,
        )
    })
}

#[test]
fn block_requests_equal_proc_diskstats() {
    if !bpf_or_skip() {
        return;
    }
    let _serial = serial();
    let agent = agent_with_config(&["blockio"], fresh);
    let disks = request_based_disks();
    assert!(!disks.is_empty(), "no request-based block device here");
    let (k0, text0) = stable(|| diskstats(&disks), || agent.metrics());
    let o0 = ours(&text0);

    // /var/tmp is on the root disk (not tmpfs), where O_DIRECT hits it.
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(dir.path().join("direct"))
        .expect("O_DIRECT open");
    const N: usize = 2000;
    let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: an aligned, zeroed buffer O_DIRECT can DMA from, freed below.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    // SAFETY: `buf` holds 4096 initialised bytes.
    let data = unsafe { std::slice::from_raw_parts(buf, 4096) };
    for _ in 0..N {
        f.write_all(data).unwrap();
    }
    f.sync_all().unwrap();
    // SAFETY: freeing what alloc_zeroed returned.
    unsafe { std::alloc::dealloc(buf, layout) };

    let (k1, text) = stable(|| diskstats(&disks), || agent.metrics());
    let o1 = ours(&text);
    let delta = |a: [(u64, u64); 4], b: [(u64, u64); 4]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (y.0 - x.0, y.1 - x.1))
            .collect::<Vec<_>>()
    };
    let (kernel, sonde) = (delta(k0, k1), delta(o0, o1));
    assert!(kernel[1].0 >= N as u64, "diskstats saw {kernel:?}");
    // Runs the kernel skipped (nested on a CPU) are reported, not counted.
    let misses = |t: &str| {
        total(
            t,
            "sonde_bpf_program_misses_total",
            &["program=\"block_rq_complete\""],
        ) as u64
    };
    let missed = misses(&text) - misses(&text0);
    // The kernel (6.18 here) also skips runs it does not report: when
    // completions cross CPUs, BPF programs on block_rq_complete do not run
    // for up to 0.5 % of requests with no miss counted, while `perf stat`
    // counts every hit and two programs attached side by side skip the same
    // ones (measured 2026-11-29; README, "eBPF samplers"). This workload lost
    // 0 to 4 of its ~2,004 requests. So: never more than the kernel, and
    // short by at most that 0.5 % (floored, so the one flush must match).
    let slack = |k: u64| k / 200;
    let fits = sonde.iter().zip(&kernel).all(|(o, k)| {
        o.0 <= k.0
            && o.1 <= k.1
            && k.0 - o.0 <= missed + slack(k.0)
            && (missed > 0 || k.1 - o.1 <= slack(k.1))
    });
    assert!(
        fits,
        "(operations, bytes) per read/write/discard/flush: ours {sonde:?} vs /proc/diskstats {kernel:?} ({missed} missed runs); \
         before: ours {o0:?} /proc/diskstats {k0:?}, after: ours {o1:?} /proc/diskstats {k1:?}"
    );
}

/// InSegs, OutSegs.
fn snmp_segments() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap();
    let mut tcp = text.lines().filter_map(|l| l.strip_prefix("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let get = |want: &str| -> u64 {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == want)
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    (get("InSegs"), get("OutSegs"))
}

/// Loopback TCP: connects, and 1 MiB each way.
fn drive_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..50 {
            drop(listener.accept().unwrap());
        }
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    for _ in 0..50 {
        drop(TcpStream::connect(addr).unwrap());
    }
    let mut c = TcpStream::connect(addr).unwrap();
    let mut buf = vec![1u8; 1 << 20];
    c.write_all(&buf).unwrap();
    c.read_exact(&mut buf).unwrap();
    server.join().unwrap();
}

#[test]
fn tcp_segments_equal_proc_net_snmp() {
    if !bpf_or_skip() {
        return;
    }
    let _serial = serial();
    let k0 = snmp_segments();
    drive_tcp();
    let (k1, text) = stable(snmp_segments, || once_with(&["tcp"], |c| c));
    assert!(k1.0 - k0.0 >= 100, "InSegs moved {}", k1.0 - k0.0);
    let ours = (
        total(&text, "tcp_packets_total", &["direction=\"receive\""]) as u64,
        total(&text, "tcp_packets_total", &["direction=\"transmit\""]) as u64,
    );
    assert_eq!(
        ours, k1,
        "(received, sent) segments: ours vs /proc/net/snmp"
    );
}

/// Softirqs that only network traffic raises (timers, RCU and the
/// scheduler's fire all the time, block completions with any disk I/O),
/// per (kind, CPU).
const QUIET: [&str; 2] = ["NET_RX", "NET_TX"];

fn proc_softirqs() -> Vec<(String, usize, u64)> {
    let text = std::fs::read_to_string("/proc/softirqs").unwrap();
    let mut lines = text.lines();
    let cpus: Vec<usize> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|c| c.trim_start_matches("CPU").parse().unwrap())
        .collect();
    let mut out = Vec::new();
    for l in lines {
        let (kind, counts) = l.split_once(':').unwrap();
        let kind = kind.trim();
        if !QUIET.contains(&kind) {
            continue;
        }
        for (cpu, v) in cpus.iter().zip(counts.split_whitespace()) {
            out.push((kind.to_lowercase(), *cpu, v.parse().unwrap()));
        }
    }
    out
}

#[test]
fn softirq_counts_equal_proc_softirqs() {
    if !bpf_or_skip() {
        return;
    }
    let _serial = serial();
    drive_tcp();
    let (kernel, text) = stable(proc_softirqs, || once_with(&["softirq"], |c| c));
    let net_rx: u64 = kernel
        .iter()
        .filter(|(k, _, _)| k == "net_rx")
        .map(|e| e.2)
        .sum();
    assert!(net_rx > 0, "no NET_RX softirqs after loopback traffic");
    for (kind, cpu, count) in &kernel {
        let ours = total(
            &text,
            "softirq_total",
            &[&format!("kind=\"{kind}\""), &format!("cpu=\"{cpu}\"")],
        );
        assert_eq!(ours as u64, *count, "softirq {kind} on CPU {cpu}");
    }
}
