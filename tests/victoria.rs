//! A real fleet store: Debian's VictoriaMetrics as the pusher's
//! remote-write receiver (the same data queried back, nothing lost across
//! a receiver restart) and as the exporter's scraper (the relayed series
//! and percentile summaries queried back), as Prometheus is in
//! tests/push.rs and tests/exporter.rs.

mod common;

use std::time::Duration;

use common::victoria::Victoria;
use common::*;

fn push_config(spool: &std::path::Path, agent: &Agent, port: u16) -> String {
    format!(
        "[source]\nurl = \"{}\"\ninterval = \"1s\"\n[spool]\npath = \"{}\"\n[listen]\naddress = \"127.0.0.1:0\"\n[[sinks]]\nkind = \"remote_write\"\nurl = \"http://127.0.0.1:{port}/api/v1/write\"\n",
        agent.url(""),
        spool.display()
    )
}

#[test]
fn the_pusher_delivers_to_victoria_metrics_across_its_restart() {
    if !bpf_or_skip() {
        return;
    }
    let agent = agent_with(&["memory", "scheduler"]);
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("victoria");
    let port = free_port();
    let vm = Victoria::start(&data, port, None);
    let config = work.path().join("push.toml");
    std::fs::write(
        &config,
        push_config(&work.path().join("spool"), &agent, port),
    )
    .unwrap();
    let pusher = Agent::spawn(
        &["push", config.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
        "push",
    );
    let t = Duration::from_secs(60);
    let mem = wait_for("memory_total_bytes in VictoriaMetrics", t, || {
        vm.query("memory_total_bytes")
    });
    assert_eq!(mem, mem_total_bytes());
    let p99 = wait_for("a run-queue p99 from the classic buckets", t, || {
        vm.query("histogram_quantile(0.99, sum(rate(scheduler_runqueue_latency_seconds_bucket[10s])) by (le))")
            .filter(|v| v.is_finite())
    });
    assert!(p99 > 0.0 && p99 < 20.0, "p99 {p99} s");
    let start = unix_now();
    std::thread::sleep(Duration::from_secs(3));

    // The receiver is stopped for 10 s, then comes back on its storage.
    vm.stop();
    std::thread::sleep(Duration::from_secs(10));
    let m = pusher.get("/metrics").text();
    let backlog = sample(&m, "sonde_push_backlog", &[]).unwrap();
    assert!(backlog >= 5.0, "backlog {backlog} during the outage");
    assert!(sample(&m, "sonde_push_retries_total", &[]).unwrap() >= 1.0);
    let vm = Victoria::start(&data, port, None);
    wait_for("the backlog to drain", t, || {
        let m = pusher.get("/metrics").text();
        (sample(&m, "sonde_push_backlog", &[]) == Some(0.0)).then_some(())
    });
    // Every second from before the stop to now, once the receiver has made
    // the backfilled rows searchable.
    let end = unix_now();
    let window = end - start;
    let ts = wait_for("every second stored", t, || {
        let ts = vm.timestamps("memory_total_bytes", start, end);
        (ts.len() as f64 >= window - 2.0).then_some(ts)
    });
    let gaps: Vec<i64> = ts
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 1500)
        .collect();
    assert!(gaps.is_empty(), "gaps (ms) in the stored series: {gaps:?}");
}

#[test]
fn victoria_metrics_scrapes_the_exporter() {
    if !bpf_or_skip() {
        return;
    }
    let agent = agent_with(&["memory", "scheduler"]);
    let exporter = Agent::exporter(&format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[general]\ninterval = \"1s\"\ntimeout = \"500ms\"\n[[sources]]\nurl = \"{}\"\n",
        agent.url("")
    ));
    let work = tempfile::tempdir().unwrap();
    let scrape = work.path().join("scrape.yml");
    std::fs::write(
        &scrape,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sonde\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            exporter.port
        ),
    )
    .unwrap();
    let vm = Victoria::start(&work.path().join("victoria"), free_port(), Some(&scrape));
    let t = Duration::from_secs(60);
    let up = wait_for("the exporter's target up", t, || {
        vm.query("up{job=\"sonde\"}").filter(|u| *u == 1.0)
    });
    assert_eq!(up, 1.0);
    let mem = wait_for("the relayed memory_total_bytes", t, || {
        vm.query("max(memory_total_bytes)")
    });
    assert_eq!(mem, mem_total_bytes());
    // The exporter's percentile summaries of the run-queue histogram.
    let p99 = wait_for("the relayed run-queue p99", t, || {
        vm.query("max(scheduler_runqueue_latency_seconds{quantile=\"0.99\"})")
            .filter(|v| v.is_finite())
    });
    assert!((0.0..20.0).contains(&p99), "p99 {p99} s");
    // Samples every second, none missing once scraping runs.
    let start = unix_now();
    std::thread::sleep(Duration::from_secs(5));
    let end = unix_now();
    let ts = wait_for("a sample a second", t, || {
        let ts = vm.timestamps("memory_total_bytes", start, end);
        (ts.len() >= 4).then_some(ts)
    });
    assert!(ts.len() <= 6, "{} samples in 5 s", ts.len());
}
