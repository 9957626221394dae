//! Native histograms: Debian's Prometheus, run with its native histograms
//! on, scrapes the agent's protobuf exposition. The agent serves each
//! refresh for 15 s (`general.ttl`), so Prometheus's scrapes in that window
//! and our own read of `/metrics/binary` see the same histograms: their
//! counts and sums must be equal, and `histogram_quantile` over the native
//! series must agree with our percentiles within the bound docs state.

mod common;

use std::time::Duration;

use common::prometheus::Prometheus;
use common::*;
use sonde::histogram::{quantiles, Layout};
use sonde::prometheus::{proto, Format};
use sonde::snapshot::{decode, Value};

const PROTOBUF_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8,application/openmetrics-text;version=1.0.0;q=0.7,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[test]
fn prometheus_reads_native_histograms_as_ours() {
    if !bpf_or_skip() {
        return;
    }
    const TTL: Duration = Duration::from_secs(15);
    let agent = agent_with_config(&["scheduler", "cpu"], |c| c.set("general.ttl", "15s"));
    // The agent refreshed once as it started: that refresh is over by
    // `started` + TTL.
    let started = std::time::Instant::now();
    // Wakeups to count (each 1 ms sleep is a run-queue wait), then the
    // one refresh every read below shares.
    let sleepers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..1000 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    sleepers.into_iter().for_each(|t| t.join().unwrap());
    let prom = Prometheus::scraping_native(agent.port);
    // The first read after the start's refresh expired refreshes (ours or
    // a scrape just before it): every read for the next 15 s shares it.
    std::thread::sleep(
        (started + TTL + Duration::from_millis(200))
            .saturating_duration_since(std::time::Instant::now()),
    );
    let fresh = std::time::Instant::now();
    let snap = decode(&agent.get("/metrics/binary").body).unwrap();
    let ours = snap
        .metrics
        .iter()
        .find(|m| m.name == "scheduler_runqueue_latency")
        .expect("the run-queue histogram");
    let Value::Histogram { buckets, .. } = &ours.value else {
        panic!("not a histogram")
    };
    let total: u64 = buckets.iter().sum();
    assert!(total > 100, "{total} run-queue events");

    // The exposition Prometheus will ask for.
    let r = request(
        "GET",
        &agent.url("/metrics"),
        &[("Accept", PROTOBUF_ACCEPT)],
    );
    assert_eq!(
        r.header("content-type"),
        Some(Format::Protobuf.content_type())
    );
    let families = proto::decode(&r.body).unwrap();
    let rq = families
        .iter()
        .find(|f| f.name.as_deref() == Some("scheduler_runqueue_latency_seconds"))
        .unwrap();
    assert_eq!(rq.r#type, Some(4));
    let h = rq.metric[0].histogram.as_ref().unwrap();
    assert_eq!(h.sample_count, Some(total));
    assert_eq!(h.schema, Some(3));
    // Text and OpenMetrics are as before.
    let text = agent.metrics();
    assert!(text.contains("scheduler_runqueue_latency_seconds_bucket{le=\""));
    let series_text = text.lines().filter(|l| !l.starts_with('#')).count();
    let series_native: usize = families.iter().map(|f| f.metric.len()).sum();
    eprintln!(
        "series per scrape: text {series_text}, protobuf with native histograms {series_native}"
    );
    assert!(series_native < series_text);

    // Prometheus's latest scrape is of our refresh once it counts what we
    // read (its refresh counter proves it is the same refresh, below).
    let count = wait_for("Prometheus to scrape our refresh", TTL / 2, || {
        prom.query("histogram_count(scheduler_runqueue_latency_seconds)")
            .filter(|c| *c == total as f64)
    });
    assert_eq!(count, total as f64, "counts are exact");
    let sum = prom
        .query("histogram_sum(scheduler_runqueue_latency_seconds)")
        .unwrap();
    let our_sum = h.sample_sum.unwrap();
    assert!(
        (sum - our_sum).abs() <= our_sum * 1e-12,
        "{sum} vs {our_sum}"
    );
    // No classic bucket series: one series per histogram.
    assert_eq!(
        prom.query_checked("scheduler_runqueue_latency_seconds_bucket"),
        Ok(vec![])
    );
    let qs = [0.5, 0.9, 0.99];
    let mut mine = [0.0; 3];
    quantiles(Layout::default(), buckets, &qs, &mut mine);
    for (q, ours_ns) in qs.iter().zip(mine) {
        let theirs = prom
            .query(&format!(
                "histogram_quantile({q}, scheduler_runqueue_latency_seconds)"
            ))
            .unwrap();
        let ours_s = ours_ns / 1e9;
        eprintln!(
            "p{}: Prometheus {theirs:.9} s, ours {ours_s:.9} s",
            q * 100.0
        );
        if ours_s == 0.0 {
            assert!(theirs.abs() < 1e-30, "q {q}: Prometheus {theirs}, ours 0");
        } else {
            // The bound docs/metrics.md states: the native bucket of our
            // midpoint, a factor 2^(1/8) either way.
            let r = theirs / ours_s;
            let f = 2f64.powf(1.0 / 8.0) + 1e-9;
            assert!(
                (1.0 / f..=f).contains(&r),
                "q {q}: Prometheus {theirs} vs ours {ours_s}"
            );
        }
    }
    // All of it read from one refresh: ours and Prometheus's latest scrape.
    let refreshes = |m: &sonde::snapshot::Metric| match m.value {
        Value::Counter(v) if m.name == "sonde_refreshes" => Some(v as f64),
        _ => None,
    };
    let ours_refreshes = snap.metrics.iter().find_map(refreshes).unwrap();
    assert_eq!(
        prom.query("sonde_refreshes_total"),
        Some(ours_refreshes),
        "Prometheus read another refresh"
    );
    assert!(fresh.elapsed() < TTL, "the checks took longer than the TTL");
}

/// The relay exporter: once a scraper asks for protobuf, each relayed
/// histogram comes as its summary and as one native histogram; the text
/// stays as it was (no `_buckets` family without `histograms = true`), and
/// Prometheus with native histograms on stores the native series.
#[test]
fn the_exporter_relays_native_histograms() {
    if !bpf_or_skip() {
        return;
    }
    let agent = agent_with(&["scheduler"]);
    let exporter = Agent::exporter(&format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[general]\ninterval = \"1s\"\n[[sources]]\nurl = \"{}\"\n",
        agent.url("")
    ));
    let native = "scheduler_runqueue_latency_buckets_seconds";
    let proto_read = || {
        let r = request(
            "GET",
            &exporter.url("/metrics"),
            &[("Accept", PROTOBUF_ACCEPT)],
        );
        (r.header("content-type") == Some(Format::Protobuf.content_type()))
            .then(|| proto::decode(&r.body).unwrap())
    };
    // Asked once, protobuf is built from the next interval on; the
    // summary needs two snapshots.
    let has = |f: &[proto::MetricFamily], n: &str| f.iter().any(|f| f.name.as_deref() == Some(n));
    let families = wait_for("the exporter's protobuf", Duration::from_secs(10), || {
        proto_read().filter(|f| has(f, native) && has(f, "scheduler_runqueue_latency_seconds"))
    });
    let mut names: Vec<&str> = families.iter().filter_map(|f| f.name.as_deref()).collect();
    let all = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all, "a family twice: {names:?}");
    let family = |n: &str| families.iter().find(|f| f.name.as_deref() == Some(n));
    let h = family(native).unwrap();
    assert_eq!(h.r#type, Some(4));
    let h = h.metric[0].histogram.as_ref().unwrap();
    assert_eq!(h.schema, Some(3));
    assert!(h.sample_count.unwrap() > 0);
    let summary = family("scheduler_runqueue_latency_seconds").expect("the summary");
    assert_eq!(summary.r#type, Some(2));
    let s = summary.metric[0].summary.as_ref().unwrap();
    assert_eq!(s.quantile.len(), 4);
    assert!(s.sample_count.is_some());
    // Our own series are there too.
    assert_eq!(
        family("sonde_exporter_source_up").unwrap().metric[0]
            .gauge
            .as_ref()
            .unwrap()
            .value,
        Some(1.0)
    );
    // Text as before: the summary, no native family.
    let text = exporter.metrics();
    assert!(text.contains("# TYPE scheduler_runqueue_latency_seconds summary"));
    assert!(!text.contains(native), "text has the native family");

    let prom = Prometheus::scraping_native(exporter.port);
    let before = h.sample_count.unwrap() as f64;
    let count = wait_for(
        "Prometheus to store the native series",
        Duration::from_secs(20),
        || {
            prom.query(&format!("histogram_count({native})"))
                .filter(|c| *c >= before)
        },
    );
    // Prometheus's latest scrape is no newer than what we read now.
    let now = proto_read().unwrap();
    let latest = now
        .iter()
        .find(|f| f.name.as_deref() == Some(native))
        .unwrap()
        .metric[0]
        .histogram
        .as_ref()
        .unwrap()
        .sample_count
        .unwrap() as f64;
    assert!(count <= latest, "Prometheus {count}, ours {latest}");
    let p99 = prom
        .query(&format!("histogram_quantile(0.99, {native})"))
        .unwrap();
    assert!(p99 > 0.0 && p99 < 10.0, "p99 {p99} s");
    assert_eq!(prom.query_checked(&format!("{native}_bucket")), Ok(vec![]));
    assert!(prom
        .query("scheduler_runqueue_latency_seconds{quantile=\"0.99\"}")
        .is_some());
}
