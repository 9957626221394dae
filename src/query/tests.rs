//! The engine against known series: values that make every function's
//! answer exact, and Prometheus's own semantics where they are subtle.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::histogram::Layout;
use crate::snapshot::{Metric, Snapshot, Stamp, Value};

const S: i64 = 1_000_000_000;
const T0: i64 = 1_800_000_000 * S;

fn metric(id: &str, name: &str, labels: &[(&str, &str)], unit: &str, value: Value) -> Metric {
    Metric {
        id: id.into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        unit: Some(unit.into()),
        value,
    }
}

/// 200 seconds at 1 s: counter `c{cpu}` +10/s and +30/s (cpu 1 resets to 0
/// at 100 s), gauge `g{cpu}` = cpu + 1, `lat` (ns) one value of 1000 ns
/// and one of 8000 ns per second, `cpu_usage` (ns) +1e9/s.
fn store() -> Memory {
    let layout = Layout::default();
    let mut m = Memory::new(10_000, Some(Duration::from_secs(1)));
    for i in 0..200i64 {
        let mut dense = vec![0u64; layout.buckets()];
        dense[layout.index(1000)] = i as u64;
        dense[layout.index(8000)] = i as u64;
        let c1 = if i < 100 { 30 * i } else { 30 * (i - 100) };
        m.push(&Snapshot {
            stamp: Stamp {
                systemtime: UNIX_EPOCH + Duration::from_nanos((T0 + i * S) as u64),
                duration: Duration::ZERO,
            },
            metadata: Vec::new(),
            metrics: vec![
                metric(
                    "c0",
                    "c",
                    &[("cpu", "0")],
                    "count",
                    Value::Counter(10 * i as u64),
                ),
                metric(
                    "c1",
                    "c",
                    &[("cpu", "1")],
                    "count",
                    Value::Counter(c1 as u64),
                ),
                metric("g0", "g", &[("cpu", "0")], "count", Value::Gauge(1)),
                metric("g1", "g", &[("cpu", "1")], "count", Value::Gauge(2)),
                metric(
                    "u",
                    "cpu_usage",
                    &[("state", "user")],
                    "nanoseconds",
                    Value::Counter((i * S) as u64),
                ),
                metric(
                    "lat",
                    "lat",
                    &[],
                    "nanoseconds",
                    Value::Histogram {
                        layout,
                        buckets: dense,
                    },
                ),
            ],
        });
    }
    m
}

fn at(m: &Memory, q: &str, secs: i64) -> Vec<(Labels, f64)> {
    let a = instant(m, q, T0 + secs * S).unwrap_or_else(|e| panic!("{q}: {e}"));
    match a.value {
        Val::Vector(v) => v
            .into_iter()
            .map(|s| {
                (
                    s.labels,
                    s.points[0]
                        .as_ref()
                        .and_then(Sample::float)
                        .unwrap_or(f64::NAN),
                )
            })
            .collect(),
        Val::Scalar(v) => vec![(Vec::new(), v[0])],
        Val::String(_) => panic!("a string"),
    }
}

fn one(m: &Memory, q: &str, secs: i64) -> f64 {
    let v = at(m, q, secs);
    assert_eq!(v.len(), 1, "{q}: {v:?}");
    v[0].1
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn rates_follow_prometheus() {
    let m = store();
    // A full window: 61 samples from the window's start to its end.
    assert_eq!(one(&m, "rate(c{cpu=\"0\"}[1m])", 90), 10.0);
    assert_eq!(one(&m, "increase(c{cpu=\"0\"}[1m])", 90), 600.0);
    assert_eq!(one(&m, "irate(c{cpu=\"1\"}[1m])", 90), 30.0);
    // The reset at 100 s (2970 → 0) is added back: 600 − 2700 + 2970; the
    // second of the reset itself counts as no increase, as in Prometheus.
    assert_eq!(one(&m, "increase(c{cpu=\"1\"}[30s])", 120), 870.0);
    // Extrapolation: samples stop 1.5 s before the window's end, within
    // 1.1 intervals, so the increase is extrapolated to the end.
    let end = 199;
    let v = one(&m, "increase(c{cpu=\"0\"}[10s])", end);
    assert_eq!(v, 100.0);
    // A window with one sample has no rate.
    assert!(at(&m, "rate(c[1s])", 0).is_empty());
    // Prometheus names: seconds, `_total`.
    assert_eq!(one(&m, "rate(cpu_usage_seconds_total[1m])", 90), 1.0);
    assert_eq!(one(&m, "rate(cpu_usage[1m])", 90), 1e9);
}

#[test]
fn aggregations_and_matching() {
    let m = store();
    assert_eq!(one(&m, "sum(rate(c[1m]))", 90), 40.0);
    assert_eq!(one(&m, "avg(g)", 10), 1.5);
    assert_eq!(one(&m, "max(g)", 10), 2.0);
    assert_eq!(one(&m, "count(g)", 10), 2.0);
    let by = at(&m, "sum by (cpu) (g)", 10);
    assert_eq!(
        by,
        vec![(l(&[("cpu", "0")]), 1.0), (l(&[("cpu", "1")]), 2.0)]
    );
    let top = at(&m, "topk(1, g)", 10);
    assert_eq!(top, vec![(l(&[("__name__", "g"), ("cpu", "1")]), 2.0)]);
    // One-to-one matching on all labels but the name.
    let ratio = at(&m, "rate(c[1m]) / g", 90);
    assert_eq!(
        ratio,
        vec![(l(&[("cpu", "0")]), 10.0), (l(&[("cpu", "1")]), 15.0)]
    );
    let on = at(&m, "rate(c[1m]) / on (cpu) g", 90);
    assert_eq!(on.len(), 2);
    // Many-to-one must be explicit.
    let e = instant(&m, "c / on () g", T0).unwrap_err();
    assert!(matches!(e, QueryError::Eval(_)), "{e}");
    assert_eq!(
        at(&m, "g > 1", 10),
        vec![(l(&[("__name__", "g"), ("cpu", "1")]), 2.0)]
    );
    assert_eq!(at(&m, "g > bool 1", 10).len(), 2);
    assert_eq!(at(&m, "g and on (cpu) (g > 1)", 10).len(), 1);
    assert_eq!(one(&m, "scalar(sum(g)) * 2", 10), 6.0);
}

#[test]
fn histograms_native_and_classic() {
    let m = store();
    // Half the values are 1000 ns, half 8000 ns.
    let p90 = one(&m, "histogram_quantile(0.9, rate(lat[1m]))", 90);
    assert!((7680.0..=8192.0).contains(&p90), "{p90}");
    let p10 = one(&m, "histogram_quantile(0.1, rate(lat[1m]))", 90);
    assert!((960.0..=1024.0).contains(&p10), "{p10}");
    // The classic buckets the agent's /metrics renders, in seconds: the
    // same quantile within the power-of-two bucket (8000 ns: 4096..8192).
    let classic = one(
        &m,
        "histogram_quantile(0.9, sum by (le) (rate(lat_seconds_bucket[1m])))",
        90,
    );
    assert!((4.096e-6..=8.192e-6).contains(&classic), "{classic}");
    assert_eq!(one(&m, "histogram_count(rate(lat[1m]))", 90), 2.0);
    assert_eq!(one(&m, "rate(lat_seconds_count[1m])", 90), 2.0);
}

#[test]
fn ranges_step_through_time() {
    let m = store();
    let a = range(
        &m,
        "rate(c{cpu=\"0\"}[10s])",
        Grid {
            start: T0 + 20 * S,
            step: 10 * S,
            steps: 5,
        },
    )
    .unwrap();
    let Val::Vector(v) = a.value else { panic!() };
    let points: Vec<f64> = v[0]
        .points
        .iter()
        .map(|p| p.as_ref().unwrap().float().unwrap())
        .collect();
    assert_eq!(points, vec![10.0; 5]);
    // Offset shifts the windows back.
    assert_eq!(one(&m, "g{cpu=\"0\"} offset 5s", 10), 1.0);
    assert!(at(&m, "g offset 1h", 10).is_empty());
}

#[test]
fn errors_say_what_is_wrong() {
    let m = store();
    let err = |q: &str| instant(&m, q, T0 + 10 * S).unwrap_err();
    let e = err("rate(c[1m]");
    assert!(matches!(e, QueryError::Parse(_)), "{e}");
    let e = err("cpu_usag");
    assert!(e.to_string().contains("similar: cpu_usage"), "{e}");
    let e = err("label_replace(g, \"a\", \"b\", \"c\", \"d\")");
    assert!(matches!(e, QueryError::Unsupported(_)), "{e}");
    let e = err("rate(g[1m:10s])");
    assert!(matches!(e, QueryError::Unsupported(_)), "{e}");
    let e = err("{cpu=\"\"}");
    assert!(matches!(e, QueryError::Parse(_)), "{e}");
    let tiny = range_with(
        &m,
        "c",
        Grid {
            start: T0,
            step: S,
            steps: 100,
        },
        10,
    )
    .unwrap_err();
    assert!(matches!(tiny, QueryError::TooLarge(_)), "{tiny}");
}
