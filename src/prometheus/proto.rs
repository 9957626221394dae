//! The Prometheus protobuf exposition (`io.prometheus.client.MetricFamily`,
//! length-delimited), which Prometheus asks for first when its native
//! histograms are on: counters and gauges as in the text format, and every
//! histogram as one native histogram ([`super::native`]) instead of classic
//! `le` buckets (the relay exporter adds its summaries with [`MetricBuf`]).
//! The message types are the fields of client_model's metrics.proto that
//! we fill, with its tags.

use std::sync::atomic::Ordering;

use prost::Message as _;

use super::names;
use super::native::{from_h2, Native, SCHEMA, ZERO_THRESHOLD};
use crate::histogram::Layout;
use crate::registry::{Desc, Kind, Series, Value};

pub const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricFamily {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub help: Option<String>,
    /// COUNTER = 0, GAUGE = 1, SUMMARY = 2, HISTOGRAM = 4.
    #[prost(int32, optional, tag = "3")]
    pub r#type: Option<i32>,
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Scalar>,
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Scalar>,
    #[prost(message, optional, tag = "4")]
    pub summary: Option<Summary>,
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
}

/// `Gauge` and `Counter` both hold `double value = 1`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Scalar {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    #[prost(message, repeated, tag = "3")]
    pub quantile: Vec<Quantile>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Quantile {
    #[prost(double, optional, tag = "1")]
    pub quantile: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    #[prost(sint32, optional, tag = "1")]
    pub offset: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    pub length: Option<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    #[prost(sint32, optional, tag = "5")]
    pub schema: Option<i32>,
    #[prost(double, optional, tag = "6")]
    pub zero_threshold: Option<f64>,
    #[prost(uint64, optional, tag = "7")]
    pub zero_count: Option<u64>,
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "13")]
    pub positive_delta: Vec<i64>,
}

impl Histogram {
    pub fn native(n: &Native) -> Histogram {
        Histogram {
            sample_count: Some(n.count),
            sample_sum: Some(n.sum),
            schema: Some(SCHEMA),
            zero_threshold: Some(ZERO_THRESHOLD),
            zero_count: Some(n.zero_count),
            positive_span: n
                .spans
                .iter()
                .map(|&(o, l)| BucketSpan {
                    offset: Some(o),
                    length: Some(l),
                })
                .collect(),
            positive_delta: n.deltas.clone(),
        }
    }
}

/// The prost message of one series (the reference the hand encoder is
/// tested against).
#[cfg(test)]
fn metric(desc: &Desc, s: &Series) -> Metric {
    let label = s
        .label_values()
        .map(|(k, v)| LabelPair {
            name: Some(names::label_key(k)),
            value: Some(v.to_string()),
        })
        .collect();
    let divisor = names::divisor(Some(desc.unit)) as f64;
    let mut m = Metric {
        label,
        ..Metric::default()
    };
    match s.value() {
        Value::Scalar(v) => {
            let raw = v.load(Ordering::Relaxed);
            let value = Some(Scalar {
                value: Some(scalar(desc, raw, divisor)),
            });
            match desc.kind {
                Kind::Gauge => m.gauge = value,
                _ => m.counter = value,
            }
        }
        Value::Histogram(h) => {
            let mut counts = [0u64; crate::histogram::BUCKETS];
            for (dst, src) in counts.iter_mut().zip(h.buckets.iter()) {
                *dst = src.load(Ordering::Relaxed);
            }
            let sum = h.sum.load(Ordering::Relaxed) as f64;
            let n = from_h2(Layout::default(), &counts, sum, divisor);
            m.histogram = Some(Histogram::native(&n));
        }
    }
    m
}

fn scalar(desc: &Desc, raw: u64, divisor: f64) -> f64 {
    match desc.kind {
        Kind::Gauge => raw as i64 as f64 / divisor,
        _ => raw as f64 / divisor,
    }
}

/// `MetricFamily.type` values.
pub const COUNTER: u64 = 0;
pub const GAUGE: u64 = 1;
pub const SUMMARY: u64 = 2;
pub const HISTOGRAM: u64 = 4;

pub fn family_type(kind: Kind) -> u64 {
    match kind {
        Kind::Counter => COUNTER,
        Kind::Gauge => GAUGE,
        Kind::Histogram => HISTOGRAM,
    }
}

/// A family's name, help and type into `out` (cleared); its metrics
/// follow as [`MetricBuf::append_to`] appends them.
pub fn family_header(out: &mut Vec<u8>, name: &str, help: &str, type_: u64) {
    out.clear();
    bytes(out, 1, name.as_bytes());
    bytes(out, 2, help.as_bytes());
    key(out, 3, 0);
    varint(out, type_);
}

/// Appends a family (header and metrics) to the exposition, delimited.
pub fn frame(out: &mut Vec<u8>, family: &[u8]) {
    varint(out, family.len() as u64);
    out.extend_from_slice(family);
}

/// One `Metric` message written by hand, its buffers kept between uses:
/// labels first, then one value.
#[derive(Default)]
pub struct MetricBuf {
    metric: Vec<u8>,
    inner: Vec<u8>,
    part: Vec<u8>,
}

impl MetricBuf {
    pub fn clear(&mut self) {
        self.metric.clear();
    }

    pub fn label(&mut self, name: &str, value: &str) {
        self.inner.clear();
        bytes(&mut self.inner, 1, name.as_bytes());
        bytes(&mut self.inner, 2, value.as_bytes());
        bytes(&mut self.metric, 1, &self.inner);
    }

    /// A counter's or a gauge's value.
    pub fn scalar(&mut self, kind: Kind, v: f64) {
        self.inner.clear();
        double(&mut self.inner, 1, v);
        let field = if kind == Kind::Gauge { 2 } else { 3 };
        bytes(&mut self.metric, field, &self.inner);
    }

    /// A summary: count, sum, then the `(quantile, value)` pairs.
    pub fn summary(&mut self, count: u64, sum: f64, quantiles: impl Iterator<Item = (f64, f64)>) {
        let MetricBuf {
            metric,
            inner,
            part,
        } = self;
        inner.clear();
        key(inner, 1, 0);
        varint(inner, count);
        double(inner, 2, sum);
        for (q, v) in quantiles {
            part.clear();
            double(part, 1, q);
            double(part, 2, v);
            bytes(inner, 3, part);
        }
        bytes(metric, 4, inner);
    }

    /// A native histogram.
    pub fn native(&mut self, n: &Native) {
        let MetricBuf {
            metric,
            inner,
            part,
        } = self;
        inner.clear();
        key(inner, 1, 0);
        varint(inner, n.count);
        double(inner, 2, n.sum);
        key(inner, 5, 0);
        varint(inner, zigzag32(SCHEMA));
        double(inner, 6, ZERO_THRESHOLD);
        key(inner, 7, 0);
        varint(inner, n.zero_count);
        for &(offset, length) in &n.spans {
            part.clear();
            key(part, 1, 0);
            varint(part, zigzag32(offset));
            key(part, 2, 0);
            varint(part, u64::from(length));
            bytes(inner, 12, part);
        }
        if !n.deltas.is_empty() {
            // Packed, as prost writes a repeated scalar.
            part.clear();
            for &d in &n.deltas {
                varint(part, zigzag64(d));
            }
            bytes(inner, 13, part);
        }
        bytes(metric, 7, inner);
    }

    /// Appends the message to a family as its field 4.
    pub fn append_to(&self, family: &mut Vec<u8>) {
        bytes(family, 4, &self.metric);
    }
}

/// The delimited exposition, written by hand into buffers kept between
/// scrapes: the prost messages above cost an owned `String` per label and
/// twice the text renderer's CPU. Field for field what prost writes
/// (a unit test compares the bytes).
#[derive(Default)]
pub struct Encoder {
    family: Vec<u8>,
    metric: MetricBuf,
    key: String,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, field << 3 | wire);
}

fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn double(out: &mut Vec<u8>, field: u64, v: f64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn zigzag32(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

impl Encoder {
    /// Renders every family with a live series of `families` (in their
    /// Prometheus-name order) as delimited `MetricFamily` messages.
    pub fn render<'a>(
        &mut self,
        families: impl Iterator<Item = (&'a crate::registry::Family, &'a str)>,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        for (family, name) in families {
            if !family.has_series() {
                continue;
            }
            let desc = &family.desc;
            let mut buf = std::mem::take(&mut self.family);
            family_header(&mut buf, name, desc.help, family_type(desc.kind));
            self.metrics(family, &mut buf);
            frame(out, &buf);
            self.family = buf;
        }
    }

    /// Appends every series of `family` to `out` as `Metric` fields (for
    /// a family whose header is already there).
    pub fn metrics(&mut self, family: &crate::registry::Family, out: &mut Vec<u8>) {
        family.for_each(|s| {
            self.series(&family.desc, s);
            self.metric.append_to(out);
        });
    }

    /// One series as a `Metric` in `self.metric`.
    fn series(&mut self, desc: &Desc, s: &Series) {
        let Encoder { metric, key: k, .. } = self;
        metric.clear();
        for (name, value) in s.label_values() {
            k.clear();
            k.push_str(&names::label_key(name));
            metric.label(k, value);
        }
        let divisor = names::divisor(Some(desc.unit)) as f64;
        match s.value() {
            Value::Scalar(v) => {
                metric.scalar(desc.kind, scalar(desc, v.load(Ordering::Relaxed), divisor));
            }
            Value::Histogram(h) => {
                let mut counts = [0u64; crate::histogram::BUCKETS];
                for (dst, src) in counts.iter_mut().zip(h.buckets.iter()) {
                    *dst = src.load(Ordering::Relaxed);
                }
                let sum = h.sum.load(Ordering::Relaxed) as f64;
                metric.native(&from_h2(Layout::default(), &counts, sum, divisor));
            }
        }
    }
}

/// Renders with the prost messages: the reference for [`Encoder`].
#[cfg(test)]
fn render_prost<'a>(
    families: impl Iterator<Item = (&'a crate::registry::Family, &'a str)>,
    out: &mut Vec<u8>,
) {
    out.clear();
    for (family, name) in families {
        if !family.has_series() {
            continue;
        }
        let desc = &family.desc;
        let mut mf = MetricFamily {
            name: Some(name.to_string()),
            help: Some(desc.help.to_string()),
            r#type: Some(family_type(desc.kind) as i32),
            metric: Vec::new(),
        };
        family.for_each(|s| mf.metric.push(metric(desc, s)));
        let _ = mf.encode_length_delimited(out);
    }
}

/// Reads delimited families back (tests, and the bench's series count).
pub fn decode(mut body: &[u8]) -> Result<Vec<MetricFamily>, prost::DecodeError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        out.push(MetricFamily::decode_length_delimited(&mut body)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::family! {
        static T_PROTO_HIST: Histogram {
            name: "test_proto_latency",
            unit: Nanoseconds,
            labels: ["op", "cpu"],
            sampler: "test",
            source: "test",
            help: "Test histogram.",
        }
    }
    crate::family! {
        static T_PROTO_GAUGE: Gauge {
            name: "test_proto_level",
            unit: Bytes,
            labels: [],
            sampler: "test",
            source: "test",
            help: "Test gauge.",
        }
    }

    #[test]
    fn the_hand_encoder_writes_what_prost_writes() {
        let h = T_PROTO_HIST.series(&["read", "1"]);
        let layout = Layout::default();
        let mut buckets = vec![0u64; crate::histogram::BUCKETS];
        for (v, n) in [
            (0u64, 3u64),
            (7, 1),
            (3_000, 40),
            (9_000_000, 2),
            (1 << 40, 1),
        ] {
            buckets[layout.index(v)] += n;
        }
        h.set_histogram(&buckets, 12_345_678);
        let _empty = T_PROTO_HIST.series(&["write", ""]); // no events, an empty label
        let g = T_PROTO_GAUGE.single();
        g.set_gauge(-5);
        let mine: Vec<(&crate::registry::Family, &str)> = vec![
            (&T_PROTO_HIST, "test_proto_latency_seconds"),
            (&T_PROTO_GAUGE, "test_proto_level_bytes"),
        ];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        Encoder::default().render(mine.iter().copied(), &mut a);
        render_prost(mine.iter().copied(), &mut b);
        assert_eq!(a, b);
        let back = decode(&a).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].metric.len(), 2);
        assert_eq!(back[1].metric[0].gauge.as_ref().unwrap().value, Some(-5.0));
    }

    #[test]
    fn a_summary_is_written_as_prost_writes_it() {
        let mut m = MetricBuf::default();
        m.label("op", "read");
        m.summary(7, 1.5, [(0.5, 0.25), (0.99, 1.0)].into_iter());
        let mut family = Vec::new();
        family_header(&mut family, "x_seconds", "X.", SUMMARY);
        m.append_to(&mut family);
        let mut mine = Vec::new();
        frame(&mut mine, &family);
        let reference = MetricFamily {
            name: Some("x_seconds".into()),
            help: Some("X.".into()),
            r#type: Some(SUMMARY as i32),
            metric: vec![Metric {
                label: vec![LabelPair {
                    name: Some("op".into()),
                    value: Some("read".into()),
                }],
                summary: Some(Summary {
                    sample_count: Some(7),
                    sample_sum: Some(1.5),
                    quantile: [(0.5, 0.25), (0.99, 1.0)]
                        .map(|(q, v)| Quantile {
                            quantile: Some(q),
                            value: Some(v),
                        })
                        .to_vec(),
                }),
                ..Metric::default()
            }],
        };
        assert_eq!(mine, reference.encode_length_delimited_to_vec());
    }
}
