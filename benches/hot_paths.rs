//! The hot paths of a scrape, measured with divan over the real registry:
//! every sampler that can start here registers its series first (all of
//! them as root), so the renderer sees what an agent serves.
//! `cargo bench --bench hot_paths`; `cargo xtask bench` runs it too.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use divan::Bencher;
use sonde::agent::collector::Collector;
use sonde::agent::config::AgentConfig;
use sonde::bpf::mmap::MmapU64;
use sonde::bpf::Histograms;
use sonde::config::Source;
use sonde::histogram::{index, Layout, PowerOfTwoBounds, BUCKETS};
use sonde::prometheus::{Format, Renderer};
use sonde::snapshot::{Encoder, Stamp};

static COLLECTOR: OnceLock<Collector> = OnceLock::new();

fn collector() -> &'static Collector {
    COLLECTOR.get_or_init(|| {
        let source = Source::from_text(Path::new("bench.toml"), String::new());
        let no_push = |_: &Path| Err("no pusher in the bench".to_string());
        let config = AgentConfig::from_source(&source, &no_push).expect("default config");
        let c = Collector::start(&config);
        c.refresh();
        c
    })
}

fn main() {
    collector();
    divan::main();
}

/// Re-reading every source: what each Prometheus scrape costs.
#[divan::bench]
fn refresh_all_samplers() {
    collector().refresh();
}

#[divan::bench]
fn render_prometheus_text(b: Bencher) {
    let r = Renderer::default();
    let mut out = String::new();
    b.bench_local(|| {
        r.render(Format::Text, &mut out);
        out.len()
    });
}

#[divan::bench]
fn render_openmetrics(b: Bencher) {
    let r = Renderer::default();
    let mut out = String::new();
    b.bench_local(|| {
        r.render(Format::OpenMetrics, &mut out);
        out.len()
    });
}

#[divan::bench]
fn encode_msgpack_snapshot(b: Bencher) {
    let mut enc = Encoder::default();
    let mut out = Vec::new();
    let stamp = Stamp {
        systemtime: SystemTime::now(),
        duration: Duration::from_micros(300),
    };
    b.bench_local(|| {
        enc.msgpack(stamp, &mut out);
        out.len()
    });
}

/// One H2 histogram to the /metrics time bucket set (26 bounds).
#[divan::bench]
fn downsample_histogram(b: Bencher) {
    let bounds = PowerOfTwoBounds::new(Layout::default(), 9, 34);
    let mut buckets = vec![0u64; BUCKETS];
    for v in [900u64, 2_000, 50_000, 1_000_000, 30_000_000] {
        buckets[index(v)] += 7;
    }
    b.bench_local(|| {
        let mut acc = 0;
        let total = bounds.cumulative(divan::black_box(&buckets), |_, c| acc += c);
        total + acc
    });
}

/// Summing 16 per-CPU histograms (the syscall sampler's read) from an
/// mmap'd BPF array; needs root to create the map.
#[divan::bench]
fn read_mmap_histograms(b: Bencher) {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("read_mmap_histograms: needs root, not run");
        return;
    }
    let cpus = libbpf_rs::num_possible_cpus().unwrap();
    let count = 16;
    let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: libbpf_rs::libbpf_sys::BPF_F_MMAPABLE,
        ..Default::default()
    };
    let map = libbpf_rs::MapHandle::create(
        libbpf_rs::MapType::Array,
        Some("bench_hist"),
        4,
        8,
        (cpus * count * BUCKETS) as u32,
        &opts,
    )
    .expect("create mmap'able array");
    let hist = Histograms::from_mmap(
        MmapU64::map(&map, "bench_hist").unwrap(),
        "bench_hist",
        cpus,
        count,
    )
    .unwrap();
    let mut out = vec![0u64; BUCKETS];
    b.bench_local(|| {
        for h in 0..count {
            hist.sum_into(h, &mut out);
        }
        out[0]
    });
}
