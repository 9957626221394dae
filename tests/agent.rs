//! The agent binary, end to end over HTTP.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;

fn cgroup_v2() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines()
            .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "))
    })
}

/// Prometheus family names listed in the metric catalog (docs/metrics.md).
fn catalog_families() -> Vec<String> {
    let catalog = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    let start = catalog
        .find("<!-- catalog:start -->")
        .expect("catalog start marker");
    let end = catalog
        .find("<!-- catalog:end -->")
        .expect("catalog end marker");
    catalog[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .map(|l| l.split('`').next().unwrap().to_string())
        .collect()
}

#[test]
fn metrics_are_valid_complete_and_true() {
    let agent = Agent::start();
    let text = agent.metrics();
    let (ok, msg) = promtool_check(&text);
    assert!(ok, "promtool check metrics failed:\n{msg}");

    // memory_total_bytes is MemTotal from /proc/meminfo, in bytes.
    let mem = sample(&text, "memory_total_bytes", &[]).expect("memory_total_bytes");
    assert_eq!(mem, mem_total_bytes());

    // Every family the catalog promises is served (histograms by their
    // _count sample), except those that only exist under a condition, which
    // tests/bpf.rs brings about: drop reasons appear with the first drop,
    // program run statistics need kernel.bpf_stats_enabled=1.
    // The costlier per-event modes are opt-in: off-CPU time, syscall
    // latency, TCP bytes and call sizes, softirq time, TLB flushes
    // (tests/bpf.rs turns them on).
    const CONDITIONAL: [&str; 9] = [
        "scheduler_offcpu_seconds",
        "network_drops_total",
        "sonde_bpf_program_runs_total",
        "sonde_bpf_program_run_seconds_total",
        "syscall_latency_seconds",
        "tcp_bytes_total",
        "tcp_size_bytes",
        "softirq_seconds_total",
        "cpu_tlb_flushes_total",
    ];
    let families = catalog_families();
    assert!(families.len() > 30, "catalog parsed: {families:?}");
    let served = |f: &str| {
        ["", "_count"].iter().any(|suffix| {
            text.starts_with(&format!("{f}{suffix} "))
                || text.contains(&format!("\n{f}{suffix} "))
                || text.contains(&format!("\n{f}{suffix}{{"))
        })
    };
    let missing: Vec<_> = families
        .iter()
        .filter(|f| !CONDITIONAL.contains(&f.as_str()) && !served(f))
        // The exporter's, the pusher's and the flight recorder's own
        // metrics are served by those modes (tests/exporter.rs,
        // tests/push.rs, tests/record.rs read them there).
        .filter(|f| {
            !f.starts_with("sonde_exporter_")
                && !f.starts_with("sonde_push_")
                && !f.starts_with("sonde_hindsight_")
        })
        // Per-cgroup in-kernel counters start with the cgroup sampler's
        // second pass (a second after start), per-cgroup pressure needs
        // cgroup v2 (our machines are v1 hybrid): tests/cgroup.rs.
        .filter(|f| {
            !f.starts_with("cgroup_") && (!f.starts_with("container_pressure_") || cgroup_v2())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "families in the catalog but not served: {missing:?}"
    );

    // No timestamps: every sample line is `name{labels} value`.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let after_labels = l.rsplit_once('}').map_or(l, |(_, r)| r);
        assert_eq!(
            after_labels.split_whitespace().count(),
            if l.contains('}') { 1 } else { 2 },
            "{l}"
        );
    }
}

#[test]
fn cpu_counters_are_monotonic_across_scrapes() {
    let agent = Agent::start();
    let first = samples(&agent.metrics(), "cpu_usage_seconds_total");
    assert!(first.len() >= 8, "8 states per CPU: {first:?}");
    // Burn some CPU and wait past the TTL so the second scrape refreshes.
    let end = std::time::Instant::now() + Duration::from_millis(300);
    let mut x = 0u64;
    while std::time::Instant::now() < end {
        x = x.wrapping_mul(31).wrapping_add(1);
    }
    std::hint::black_box(x);
    let second = samples(&agent.metrics(), "cpu_usage_seconds_total");
    assert_eq!(first.len(), second.len());
    let mut grew = 0.0;
    for ((l1, v1), (l2, v2)) in first.iter().zip(&second) {
        assert_eq!(l1, l2);
        assert!(v2 >= v1, "{l1}: {v1} -> {v2}");
        grew += v2 - v1;
    }
    assert!(grew > 0.0, "no CPU time was accounted between scrapes");
}

#[test]
fn openmetrics_when_asked_and_gzip_when_accepted() {
    let agent = Agent::start();
    let om = http(
        &agent.url("/metrics"),
        &[(
            "Accept",
            "application/openmetrics-text; version=1.0.0,text/plain;q=0.5",
        )],
    );
    assert_eq!(om.status, 200);
    assert!(om
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let body = om.text();
    assert!(body.ends_with("# EOF\n"), "OpenMetrics must end with # EOF");
    assert!(body.contains("# TYPE cpu_usage_seconds counter\n"));
    assert!(body.contains("cpu_usage_seconds_total{"));

    let plain = http(&agent.url("/metrics"), &[]);
    assert!(plain
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert!(!plain.text().contains("# EOF"));

    let gz = http(&agent.url("/metrics"), &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.contains("memory_total_bytes "),
        "gzip body decodes to the exposition"
    );
    assert!(
        gz.body.len() * 3 < text.len(),
        "gzip should shrink the text a lot"
    );
}

#[test]
fn binary_snapshot_decodes_with_metriken_exposition() {
    let agent = Agent::start();
    let r = agent.get("/metrics/binary");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/msgpack"));
    let snap: metriken_exposition::SnapshotV2 =
        rmp_serde::from_slice(&r.body).expect("SnapshotV2 decodes");
    let mem = snap
        .gauges
        .iter()
        .find(|g| g.metadata.get("metric").map(String::as_str) == Some("memory_total_bytes"))
        .expect("memory_total_bytes gauge");
    assert_eq!(mem.value as f64, mem_total_bytes());
    assert_eq!(mem.metadata["unit"], "bytes");
    let cpu: Vec<_> = snap
        .counters
        .iter()
        .filter(|c| c.metadata["metric"] == "cpu_usage")
        .collect();
    assert!(cpu.iter().any(
        |c| c.metadata.get("state").map(String::as_str) == Some("user")
            && c.metadata.get("cpu").map(String::as_str) == Some("0")
    ));
    let mut names: Vec<&str> = snap
        .counters
        .iter()
        .map(|c| c.name.as_str())
        .chain(snap.gauges.iter().map(|g| g.name.as_str()))
        .chain(snap.histograms.iter().map(|h| h.name.as_str()))
        .collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "snapshot names must be unique");

    // The same snapshot as JSON.
    let j = agent.get("/metrics/json");
    assert_eq!(j.header("content-type"), Some("application/json"));
    let snap: metriken_exposition::SnapshotV2 =
        serde_json::from_slice(&j.body).expect("JSON snapshot decodes");
    assert!(snap
        .gauges
        .iter()
        .any(|g| g.metadata["metric"] == "memory_total_bytes"));
}

#[test]
fn samplers_endpoint_lists_every_sampler() {
    let agent = Agent::start_with(|c| c.set("samplers.load.enabled", false));
    let r = agent.get("/samplers");
    assert_eq!(r.status, 200);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
    let names: Vec<&str> = list.iter().map(|s| s["name"].as_str().unwrap()).collect();
    // config/agent.toml documents every sampler (a unit test keeps it so).
    let config = std::fs::read_to_string(repo().join("config/agent.toml")).unwrap();
    let mut expected: Vec<&str> = config
        .lines()
        .filter_map(|l| l.strip_prefix("[samplers.")?.strip_suffix(']'))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    for s in &list {
        assert!(s["programs"].is_array());
        assert!(s["refresh_ns"].is_u64());
        let status = s["status"].as_str().unwrap();
        if s["name"] == "load" {
            assert_eq!(status, "disabled");
            assert_eq!(s["reason"], "disabled in config");
        } else {
            assert_eq!(status, "active", "{s}");
            assert!(s.get("reason").is_none());
        }
    }
    // A disabled sampler's families are absent; its health says 0.
    let text = agent.metrics();
    assert!(!text.contains("\nload_average{"));
    assert_eq!(
        sample(&text, "sonde_sampler_up", &["sampler=\"load\""]),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "sonde_sampler_up", &["sampler=\"cpu\""]),
        Some(1.0)
    );
}

#[test]
fn routes_health_404_and_405() {
    let agent = Agent::start();
    let h = agent.get("/healthz");
    assert_eq!((h.status, h.text().as_str()), (200, "ok"));
    assert_eq!(agent.get("/nope").status, 404);
    assert_eq!(agent.get("/metrics/nope").status, 404);
    assert_eq!(request("POST", &agent.url("/metrics"), &[]).status, 405);
    assert_eq!(request("DELETE", &agent.url("/samplers"), &[]).status, 405);
}

#[test]
fn concurrent_scrapes_within_the_ttl_cost_one_refresh() {
    let agent = Agent::start_with(|c| c.set("general.ttl", "3s"));
    let refreshes = |text: &str| sample(text, "sonde_refreshes_total", &[]).unwrap();
    let base = refreshes(&agent.metrics());
    // Let the cached snapshot expire, then scrape from 16 threads at once.
    std::thread::sleep(Duration::from_millis(3100));
    let url = agent.url("/metrics");
    let bodies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| s.spawn(|| http(&url, &[]).text()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for b in &bodies {
        assert_eq!(
            refreshes(b),
            base + 1.0,
            "16 concurrent scrapes must share one refresh"
        );
    }
    assert_eq!(
        refreshes(&agent.metrics()),
        base + 1.0,
        "still within the TTL"
    );
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut agent = Agent::start();
    assert_eq!(agent.get("/healthz").status, 200);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = agent.child.try_wait().unwrap() {
            assert!(st.success(), "exit status after SIGTERM: {st}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agent still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log: Vec<String> = agent.log.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("shut down")), "{log:?}");
}

/// A stop asked while the agent starts (loading BPF programs, the first
/// cgroup and process walks) is not lost: the agent finishes starting,
/// never serves, and exits 0 — a `systemctl stop` during start does not
/// wait for SIGKILL.
#[test]
fn sigterm_while_starting_stops_the_agent() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let config = common::agent_config(dir.path(), |c| c);
    let mut child = std::process::Command::new(common::BIN)
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The cgroup sampler logs its layout while it starts, after the signal
    // handlers are in place and before the other samplers load.
    let mut seen = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let starting = line.contains("cgroup: ");
        seen.push(line);
        if starting {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("cgroup: ")),
        "no start line: {seen:?}"
    );
    let pid = child.id() as i32;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // A lost stop would serve forever: end it after 30 s (the test then
    // fails on the status).
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        // SAFETY: as above; a pid reaped meanwhile is not reused that fast.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}: {seen:?}");
    assert!(
        !seen.iter().any(|l| l.contains("listening on")),
        "it served after the stop: {seen:?}"
    );
}
