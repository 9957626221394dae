use std::time::{Duration, SystemTime};

use super::*;
use crate::snapshot::{Metric, Snapshot, Stamp};

fn layout() -> Layout {
    Layout::new(3, 64).unwrap()
}

fn hist(values: &[(u64, u64)]) -> Vec<u64> {
    let mut b = vec![0u64; layout().buckets()];
    for &(v, n) in values {
        b[layout().index(v)] += n;
    }
    b
}

fn snapshot(secs: u64, buckets: Vec<u64>, counter: u64) -> Snapshot {
    Snapshot {
        stamp: Stamp {
            systemtime: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            duration: Duration::ZERO,
        },
        metadata: Vec::new(),
        metrics: vec![
            Metric {
                id: String::new(),
                name: "syscall_latency".into(),
                labels: vec![("op".into(), "read".into())],
                unit: Some("nanoseconds".into()),
                value: Value::Histogram {
                    layout: layout(),
                    buckets,
                },
            },
            Metric {
                id: String::new(),
                name: "cpu_usage".into(),
                labels: vec![("state".into(), "user".into())],
                unit: Some("nanoseconds".into()),
                value: Value::Counter(counter),
            },
        ],
    }
}

/// `name{labels} value` lines of one family body, parsed.
fn sample(state: &SourceState, family: &str, line_start: &str) -> Option<f64> {
    let body = &state.families.get(family)?.body;
    body.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[test]
fn summary_is_the_delta_of_the_last_interval() {
    let settings = Settings::new(vec![0.5, 0.99, 0.999], false);
    let mut s = SourceState::new("http://127.0.0.1:1", &Default::default(), false);
    let base = hist(&[(5_000, 1_000_000)]); // history before the interval
    s.succeeded(snapshot(100, base.clone(), 10), Duration::ZERO, &settings);
    assert!(
        !s.families.contains_key("syscall_latency_seconds"),
        "one snapshot has no interval"
    );
    assert_eq!(
        sample(
            &s,
            "cpu_usage_seconds_total",
            "cpu_usage_seconds_total{state=\"user\"}"
        ),
        Some(1e-8)
    );
    let mut now = base.clone();
    for (i, c) in hist(&[(1_000_000, 1000), (100_000_000, 10)])
        .iter()
        .enumerate()
    {
        now[i] += c;
    }
    s.succeeded(snapshot(101, now.clone(), 20), Duration::ZERO, &settings);
    let f = "syscall_latency_seconds";
    assert_eq!(s.families[f].kind, "summary");
    let q = |q: &str| sample(&s, f, &format!("{f}{{op=\"read\",quantile=\"{q}\"}}")).unwrap();
    assert!(
        (q("0.5") - 0.001).abs() < 0.001 * 0.0625,
        "p50 {}",
        q("0.5")
    );
    assert!((q("0.99") - 0.001).abs() < 0.001 * 0.0625);
    assert!(
        (q("0.999") - 0.1).abs() < 0.1 * 0.0625,
        "p999 {}",
        q("0.999")
    );
    assert_eq!(
        sample(&s, f, &format!("{f}_count{{op=\"read\"}}")),
        Some(1010.0)
    );

    // Same snapshot served again (the agent's cache): nothing changes.
    s.succeeded(snapshot(101, now.clone(), 20), Duration::ZERO, &settings);
    assert_eq!(
        sample(&s, f, &format!("{f}_count{{op=\"read\"}}")),
        Some(1010.0)
    );

    // The agent restarted: counts went down, so no percentiles this time.
    let resets = s.resets.gauge();
    s.succeeded(
        snapshot(102, hist(&[(1_000, 5)]), 1),
        Duration::ZERO,
        &settings,
    );
    assert!(!s.families.contains_key(f), "{:?}", s.families.get(f));
    assert_eq!(s.resets.gauge(), resets + 1);
    // The next interval pairs with the restarted agent's first snapshot.
    s.succeeded(
        snapshot(103, hist(&[(1_000, 8)]), 2),
        Duration::ZERO,
        &settings,
    );
    assert_eq!(
        sample(&s, f, &format!("{f}_count{{op=\"read\"}}")),
        Some(3.0)
    );
}

#[test]
fn a_failed_pull_removes_the_series_and_the_interval() {
    let settings = Settings::new(vec![0.5], true);
    let mut s = SourceState::new("http://127.0.0.1:2/", &Default::default(), true);
    assert_eq!(s.binary_url, "http://127.0.0.1:2/metrics/binary");
    s.succeeded(snapshot(1, hist(&[(10, 1)]), 1), Duration::ZERO, &settings);
    s.succeeded(snapshot(2, hist(&[(10, 2)]), 1), Duration::ZERO, &settings);
    assert!(s.families.contains_key("syscall_latency_seconds"));
    let classic = "syscall_latency_buckets_seconds";
    assert_eq!(s.families[classic].kind, "histogram");
    assert!(s.families[classic].body.contains(
        "syscall_latency_buckets_seconds_bucket{op=\"read\",source=\"127.0.0.1:2\",le=\"+Inf\"} 2\n"
    ));
    s.failed(
        &FetchError {
            failure: Failure::Connect,
            detail: "refused".into(),
        },
        Duration::ZERO,
    );
    assert!(s.families.is_empty());
    assert_eq!(s.up.gauge(), 0);
    // Back: one snapshot gives counters, the percentiles need a second.
    s.succeeded(snapshot(5, hist(&[(10, 9)]), 1), Duration::ZERO, &settings);
    assert_eq!(s.up.gauge(), 1);
    assert!(s.families.contains_key("cpu_usage_seconds_total"));
    assert!(!s.families.contains_key("syscall_latency_seconds"));
}

#[test]
fn labels_are_sanitised_and_source_labels_win() {
    let settings = Settings::new(vec![0.5], false);
    let labels = [("instance".to_string(), "db-1".to_string())].into();
    let mut s = SourceState::new("http://h:1", &labels, false);
    let snap = Snapshot {
        stamp: Stamp {
            systemtime: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
        },
        metadata: Vec::new(),
        metrics: vec![
            Metric {
                id: String::new(),
                name: "cpu/usage".into(),
                labels: vec![
                    ("instance".into(), "x".into()),
                    ("bad-key".into(), "a\"b".into()),
                ],
                unit: None,
                value: Value::Gauge(-2),
            },
            // The same series twice: relayed once, counted.
            Metric {
                id: String::new(),
                name: "cpu/usage".into(),
                labels: vec![
                    ("instance".into(), "x".into()),
                    ("bad-key".into(), "a\"b".into()),
                ],
                unit: None,
                value: Value::Gauge(5),
            },
            // A counter `cpu_usage` is `cpu_usage_total`...
            Metric {
                id: String::new(),
                name: "cpu_usage".into(),
                labels: vec![],
                unit: None,
                value: Value::Counter(1),
            },
            // ...and so is this gauge: a type conflict, left out.
            Metric {
                id: String::new(),
                name: "cpu_usage_total".into(),
                labels: vec![],
                unit: None,
                value: Value::Gauge(3),
            },
        ],
    };
    s.succeeded(snap, Duration::ZERO, &settings);
    assert_eq!(
        s.families["cpu_usage"].body,
        "cpu_usage{exported_instance=\"x\",bad_key=\"a\\\"b\",instance=\"db-1\"} -2\n"
    );
    assert_eq!(s.duplicates.gauge(), 1);
    assert_eq!(s.families["cpu_usage_total"].kind, "counter");
    assert_eq!(
        s.families["cpu_usage_total"].body,
        "cpu_usage_total{instance=\"db-1\"} 1\n"
    );
    assert_eq!(s.conflicts.gauge(), 1);
}

#[test]
fn sources_merge_into_one_family_each() {
    let settings = Settings::new(vec![0.5], false);
    let mut a = SourceState::new("http://a:1", &Default::default(), true);
    let mut b = SourceState::new("http://b:1", &Default::default(), true);
    a.succeeded(snapshot(1, hist(&[]), 1), Duration::ZERO, &settings);
    b.succeeded(snapshot(1, hist(&[]), 2), Duration::ZERO, &settings);
    let mut out = String::new();
    crate::exporter::render_sources(&[a, b], &mut out);
    assert_eq!(
        out.matches("# TYPE cpu_usage_seconds_total counter")
            .count(),
        1
    );
    assert!(out.contains("cpu_usage_seconds_total{state=\"user\",source=\"a:1\"} 0.000000001\n"));
    assert!(out.contains("cpu_usage_seconds_total{state=\"user\",source=\"b:1\"} 0.000000002\n"));
    assert!(out.contains("# HELP cpu_usage_seconds_total CPU time spent"));
}

#[test]
fn protobuf_carries_the_summary_and_a_native_histogram() {
    use crate::prometheus::proto::{decode, family_header, frame, SUMMARY};
    let mut settings = Settings::new(vec![0.5, 0.99], false);
    settings.protobuf = true;
    let labels = [("op".to_string(), "mine".to_string())].into();
    let mut s = SourceState::new("http://127.0.0.1:3", &labels, true);
    s.succeeded(
        snapshot(1, hist(&[(1_000, 10)]), 1),
        Duration::ZERO,
        &settings,
    );
    s.succeeded(
        snapshot(2, hist(&[(1_000, 10), (1_000_000, 5)]), 4),
        Duration::ZERO,
        &settings,
    );
    // The native family has no text without `histograms`.
    let native = &s.families["syscall_latency_buckets_seconds"];
    assert!(native.body.is_empty());
    let read = |name: &str, type_: u64| {
        let f = &s.families[name];
        let mut family = Vec::new();
        family_header(&mut family, name, &f.help, type_);
        family.extend_from_slice(&f.proto);
        let mut out = Vec::new();
        frame(&mut out, &family);
        decode(&out).unwrap().remove(0)
    };
    let h = read("syscall_latency_buckets_seconds", 4);
    let m = &h.metric[0];
    let l: Vec<(&str, &str)> = m
        .label
        .iter()
        .map(|l| (l.name.as_deref().unwrap(), l.value.as_deref().unwrap()))
        .collect();
    // The source's `op` wins; the metric's becomes `exported_op`, as in text.
    assert_eq!(
        l,
        [
            ("exported_op", "read"),
            ("op", "mine"),
            ("source", "127.0.0.1:3")
        ]
    );
    let h = m.histogram.as_ref().unwrap();
    assert_eq!(h.sample_count, Some(15), "cumulative, as the agent's");
    assert_eq!(h.schema, Some(3));
    let sm = read("syscall_latency_seconds", SUMMARY);
    let sm = sm.metric[0].summary.as_ref().unwrap();
    assert_eq!(sm.sample_count, Some(5), "the interval's, as the text's");
    assert_eq!(sm.quantile.len(), 2);
    let p99 = sm.quantile[1].value.unwrap();
    assert!((p99 - 0.001).abs() < 0.001 * 0.0625, "p99 {p99}");
    let c = read("cpu_usage_seconds_total", 0);
    assert_eq!(c.metric[0].counter.as_ref().unwrap().value, Some(4e-9));
}
