//! Prometheus remote-write 1.0: a snapshot as `WriteRequest`s (protobuf
//! via prost, snappy block format), named as on the agent's `/metrics`;
//! histograms as classic `le` series, or (`native_histograms = true`) as
//! native histograms, the `histograms` field receivers with native
//! histograms on (Prometheus ≥ 2.40) take.

use crate::histogram::midpoint_sum;
use crate::prometheus::buckets::{le, BucketSets};
use crate::prometheus::names::{self, label_key, metric_name};
use crate::prometheus::native::{from_h2, SCHEMA, ZERO_THRESHOLD};
use crate::registry::{Kind, Unit};
use crate::snapshot::{Snapshot, Value};

/// Series per request: keeps a request well under receivers' body limits
/// (a few hundred KB before compression).
pub const MAX_SERIES_PER_REQUEST: usize = 2000;

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// remote-write's native histogram (integer counts): `count_int` and
/// `zero_count_int` are members of oneofs, the same on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(uint64, optional, tag = "1")]
    pub count_int: Option<u64>,
    #[prost(double, tag = "3")]
    pub sum: f64,
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(uint64, optional, tag = "6")]
    pub zero_count_int: Option<u64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Every series of the snapshot, one sample each at the snapshot's time.
/// Histograms become classic `_bucket{le}`/`_sum`/`_count` series with the
/// agent's fixed power-of-two bounds, so `histogram_quantile` works
/// upstream; with `native`, one native histogram series each. `extra`
/// (`[source] labels`) goes on every series; a metric's own label of the
/// same key is kept as `exported_<key>`, as the exporter and a Prometheus
/// scrape do.
pub fn series(snapshot: &Snapshot, native: bool, extra: &[Label]) -> Vec<TimeSeries> {
    let sets = BucketSets::default();
    let ts = snapshot
        .stamp
        .systemtime
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let mut out = Vec::with_capacity(snapshot.metrics.len());
    for m in &snapshot.metrics {
        let unit = m.unit.as_deref().and_then(Unit::parse);
        let divisor = names::divisor(unit);
        let name = metric_name(&m.name);
        let mut labels: Vec<Label> = m
            .labels
            .iter()
            .map(|(k, v)| {
                let mut name = label_key(k);
                if extra.iter().any(|e| e.name == name) {
                    name.insert_str(0, "exported_");
                }
                Label {
                    name,
                    value: v.clone(),
                }
            })
            .collect();
        labels.extend_from_slice(extra);
        let mut push = |name: String, extra: Option<(&str, String)>, value: f64| {
            let mut l = labels.clone();
            l.push(Label {
                name: "__name__".into(),
                value: name,
            });
            if let Some((k, v)) = extra {
                l.push(Label {
                    name: k.into(),
                    value: v,
                });
            }
            // Receivers require labels sorted by name.
            l.sort_by(|a, b| a.name.cmp(&b.name));
            l.dedup_by(|a, b| a.name == b.name);
            out.push(TimeSeries {
                labels: l,
                samples: vec![Sample {
                    value,
                    timestamp: ts,
                }],
                histograms: Vec::new(),
            });
        };
        match &m.value {
            Value::Counter(v) => push(
                names::name(&name, Kind::Counter, unit),
                None,
                *v as f64 / divisor as f64,
            ),
            Value::Gauge(v) => push(
                names::name(&name, Kind::Gauge, unit),
                None,
                *v as f64 / divisor as f64,
            ),
            Value::Histogram { layout, buckets } if native => {
                let n = from_h2(
                    *layout,
                    buckets,
                    midpoint_sum(*layout, buckets),
                    divisor as f64,
                );
                // One series, its sample the histogram.
                push(names::name(&name, Kind::Histogram, unit), None, 0.0);
                if let Some(t) = out.last_mut() {
                    t.samples.clear();
                    t.histograms.push(Histogram {
                        count_int: Some(n.count),
                        sum: n.sum,
                        schema: SCHEMA,
                        zero_threshold: ZERO_THRESHOLD,
                        zero_count_int: Some(n.zero_count),
                        positive_spans: n
                            .spans
                            .iter()
                            .map(|&(offset, length)| BucketSpan { offset, length })
                            .collect(),
                        positive_deltas: n.deltas,
                        timestamp: ts,
                    });
                }
            }
            Value::Histogram { layout, buckets } => {
                let base = names::name(&name, Kind::Histogram, unit);
                let bucket = format!("{base}_bucket");
                let total = sets.bounds(*layout, unit).cumulative(buckets, |k, acc| {
                    push(bucket.clone(), Some(("le", le(k, divisor))), acc as f64);
                });
                let sum = midpoint_sum(*layout, buckets);
                push(bucket, Some(("le", "+Inf".into())), total as f64);
                push(format!("{base}_sum"), None, sum / divisor as f64);
                push(format!("{base}_count"), None, total as f64);
            }
        }
    }
    out
}

/// The snappy-compressed bodies of the requests for `series`, in order.
pub fn encode(series: Vec<TimeSeries>) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut series = series.into_iter().peekable();
    while series.peek().is_some() {
        let req = WriteRequest {
            timeseries: series.by_ref().take(MAX_SERIES_PER_REQUEST).collect(),
        };
        let raw = prost::Message::encode_to_vec(&req);
        let body = snap::raw::Encoder::new()
            .compress_vec(&raw)
            .expect("snappy compresses any buffer under 4 GiB");
        bodies.push(body);
    }
    bodies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Layout;
    use crate::snapshot::{Metric, Stamp};
    use std::time::{Duration, SystemTime};

    #[test]
    fn histograms_become_classic_series_with_sorted_labels() {
        let layout = Layout::new(3, 64).unwrap();
        let mut buckets = vec![0u64; layout.buckets()];
        buckets[layout.index(3_000)] = 4; // 3 µs
        let snap = Snapshot {
            stamp: Stamp {
                systemtime: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
                duration: Duration::ZERO,
            },
            metadata: Vec::new(),
            metrics: vec![
                Metric {
                    id: String::new(),
                    name: "syscall_latency".into(),
                    labels: vec![("op".into(), "read".into())],
                    unit: Some("nanoseconds".into()),
                    value: Value::Histogram { layout, buckets },
                },
                Metric {
                    id: String::new(),
                    name: "memory_total".into(),
                    labels: vec![],
                    unit: Some("bytes".into()),
                    value: Value::Gauge(1024),
                },
            ],
        };
        let s = series(&snap, false, &[]);
        let find = |name: &str, le: Option<&str>| {
            s.iter()
                .find(|t| {
                    t.labels
                        .iter()
                        .any(|l| l.name == "__name__" && l.value == name)
                        && le.is_none_or(|le| {
                            t.labels.iter().any(|l| l.name == "le" && l.value == le)
                        })
                })
                .unwrap_or_else(|| panic!("{name} {le:?}"))
        };
        let b = find("syscall_latency_seconds_bucket", Some("0.000002048"));
        assert_eq!(b.samples[0].value, 0.0);
        assert_eq!(b.samples[0].timestamp, 1_700_000_000_123);
        let names: Vec<&str> = b.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "le", "op"]);
        assert_eq!(
            find("syscall_latency_seconds_bucket", Some("0.000004096")).samples[0].value,
            4.0
        );
        assert_eq!(
            find("syscall_latency_seconds_bucket", Some("+Inf")).samples[0].value,
            4.0
        );
        assert_eq!(
            find("syscall_latency_seconds_count", None).samples[0].value,
            4.0
        );
        assert_eq!(find("memory_total_bytes", None).samples[0].value, 1024.0);
        // `[source] labels` go on every series; the metric's own `op`
        // stays as `exported_op`.
        let extra = [("instance", "web-1"), ("op", "pusher")].map(|(k, v)| Label {
            name: k.into(),
            value: v.into(),
        });
        for t in series(&snap, false, &extra) {
            let l: Vec<(&str, &str)> = t
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            assert!(l.contains(&("instance", "web-1")), "{l:?}");
            assert!(l.windows(2).all(|w| w[0].0 < w[1].0), "{l:?}");
            if l.iter().any(|(_, v)| v.starts_with("syscall")) {
                assert!(l.contains(&("exported_op", "read")), "{l:?}");
                assert!(l.contains(&("op", "pusher")), "{l:?}");
            }
        }

        let bodies = encode(s.clone());
        assert_eq!(bodies.len(), 1);
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&bodies[0])
            .unwrap();
        let back: WriteRequest = prost::Message::decode(&raw[..]).unwrap();
        assert_eq!(back.timeseries, s);
        let many: Vec<TimeSeries> = (0..MAX_SERIES_PER_REQUEST * 2 + 1)
            .map(|_| s[0].clone())
            .collect();
        assert_eq!(encode(many).len(), 3);

        // Native: one series, its histogram, no classic buckets.
        let s = series(&snap, true, &[]);
        let h: Vec<&TimeSeries> = s.iter().filter(|t| !t.histograms.is_empty()).collect();
        assert_eq!(h.len(), 1);
        assert!(h[0].samples.is_empty());
        assert!(h[0]
            .labels
            .iter()
            .any(|l| l.value == "syscall_latency_seconds"));
        let n = &h[0].histograms[0];
        assert_eq!(n.count_int, Some(4));
        assert_eq!(n.schema, 3);
        assert_eq!(n.positive_deltas, vec![4]);
        // 3 µs's H2 bucket midpoint lies in native bucket ceil(8·log2(3.06e-6)).
        assert_eq!(n.positive_spans[0].offset, -146);
        assert!(s.iter().all(|t| !t.labels.iter().any(|l| l.name == "le")));
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&encode(s.clone())[0])
            .unwrap();
        let back: WriteRequest = prost::Message::decode(&raw[..]).unwrap();
        assert_eq!(back.timeseries, s);
    }
}
