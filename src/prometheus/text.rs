//! Prometheus text format 0.0.4 and OpenMetrics 1.0 rendering of the
//! registry. Writes into a caller-owned buffer so a scrape allocates nothing
//! once the buffer has grown to size.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::buckets::{le, BucketSets};
use super::names;
use crate::histogram::{Layout, PowerOfTwoBounds};
use crate::registry::{self, Desc, Family, Kind, Series, Unit, Value};

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
    /// Delimited `io.prometheus.client.MetricFamily` with native
    /// histograms ([`super::proto`]).
    Protobuf,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Text, Format::OpenMetrics, Format::Protobuf];

    /// The format of highest `q` the scraper accepts (the first listed on
    /// a tie); text when it names none of ours. Prometheus lists protobuf
    /// first when its native histograms are on, OpenMetrics otherwise.
    pub fn from_accept(accept: Option<&str>) -> Self {
        let mut best = (Format::Text, -1.0f64);
        for part in accept.unwrap_or("").split(',') {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0;
            // Protobuf only as the delimited MetricFamily stream, named so.
            let (mut proto, mut delimited) = (false, false);
            for p in params {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse().unwrap_or(0.0),
                    "proto" => proto = v == "io.prometheus.client.MetricFamily",
                    "encoding" => delimited = v == "delimited",
                    _ => {}
                }
            }
            let format = match media.as_str() {
                "application/vnd.google.protobuf" if proto && delimited => Format::Protobuf,
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" => Format::Text,
                _ => continue,
            };
            if q > best.1 && q > 0.0 {
                best = (format, q);
            }
        }
        best.0
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Protobuf => super::proto::CONTENT_TYPE,
        }
    }

    /// A small number per format, for caches indexed by it.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Renders the registry: every family in Prometheus-name order (computed
/// once), histograms as classic histograms with fixed bucket sets.
pub struct Renderer {
    families: Vec<(&'static Family, String)>,
    time: Buckets,
    bytes: Buckets,
    count: Buckets,
}

struct Buckets {
    bounds: PowerOfTwoBounds,
    /// `le` label values in base units, precomputed.
    le: Vec<String>,
}

impl Buckets {
    fn new((min, max): (u32, u32), unit: Unit) -> Self {
        let bounds = PowerOfTwoBounds::new(Layout::default(), min, max);
        let divisor = names::divisor(Some(unit));
        let le = bounds.powers().map(|k| le(k, divisor)).collect();
        Buckets { bounds, le }
    }
}

impl Default for Renderer {
    /// The default bucket sets (`[prometheus]` defaults).
    fn default() -> Self {
        Renderer::new(BucketSets::default())
    }
}

impl Renderer {
    pub fn new(sets: BucketSets) -> Self {
        let mut families: Vec<(&'static Family, String)> = registry::families()
            .iter()
            .map(|f| (*f, names::of(&f.desc)))
            .collect();
        families.sort_by(|a, b| a.1.cmp(&b.1));
        Renderer {
            families,
            time: Buckets::new(sets.time, Unit::Nanoseconds),
            bytes: Buckets::new(sets.bytes, Unit::Bytes),
            count: Buckets::new(sets.count, Unit::Count),
        }
    }
}

impl Renderer {
    /// The protobuf exposition of every family with a live series.
    pub fn render_protobuf(&self, encoder: &mut super::proto::Encoder, out: &mut Vec<u8>) {
        encoder.render(self.families(), out);
    }

    /// Every family with its Prometheus name, in that name's order.
    pub fn families(&self) -> impl Iterator<Item = (&Family, &str)> + '_ {
        self.families.iter().map(|(f, n)| (*f, n.as_str()))
    }

    /// Renders every family that has at least one live series (text
    /// formats; protobuf is [`Renderer::render_protobuf`]).
    pub fn render(&self, format: Format, out: &mut String) {
        out.clear();
        for (family, name) in &self.families {
            if !family.has_series() {
                continue;
            }
            let desc = &family.desc;
            self.header(format, desc, name, out);
            family.for_each(|s| self.series(desc, name, s, out));
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
    }

    fn header(&self, format: Format, desc: &Desc, name: &str, out: &mut String) {
        // OpenMetrics names a counter family without its `_total` sample suffix.
        let family_name = match (format, desc.kind) {
            (Format::OpenMetrics, Kind::Counter) => name.trim_end_matches("_total"),
            _ => name,
        };
        let _ = writeln!(out, "# HELP {family_name} {}", desc.help);
        let _ = writeln!(out, "# TYPE {family_name} {}", desc.kind.as_str());
    }

    fn series(&self, desc: &Desc, name: &str, s: &Series, out: &mut String) {
        let labels = s.label_text();
        let divisor = names::divisor(Some(desc.unit));
        match s.value() {
            Value::Scalar(v) => {
                let raw = v.load(Ordering::Relaxed);
                sample_start(out, name, "", labels, None);
                match desc.kind {
                    Kind::Gauge => push_scaled_i64(out, raw as i64, divisor),
                    _ => push_scaled_u64(out, raw, divisor),
                }
                out.push('\n');
            }
            Value::Histogram(h) => {
                let buckets = self.buckets_for(desc.unit);
                // Copy once so cumulative counts and `_count` agree even if a
                // refresh lands mid-render.
                let mut counts = [0u64; crate::histogram::BUCKETS];
                for (dst, src) in counts.iter_mut().zip(h.buckets.iter()) {
                    *dst = src.load(Ordering::Relaxed);
                }
                let mut i = 0;
                let total = buckets.bounds.cumulative(&counts, |_, c| {
                    sample_start(out, name, "_bucket", labels, Some(("le", &buckets.le[i])));
                    push_u64(out, c);
                    out.push('\n');
                    i += 1;
                });
                sample_start(out, name, "_bucket", labels, Some(("le", "+Inf")));
                push_u64(out, total);
                out.push('\n');
                sample_start(out, name, "_sum", labels, None);
                push_scaled_u64(out, h.sum.load(Ordering::Relaxed), divisor);
                out.push('\n');
                sample_start(out, name, "_count", labels, None);
                push_u64(out, total);
                out.push('\n');
            }
        }
    }

    fn buckets_for(&self, unit: Unit) -> &Buckets {
        match unit {
            Unit::Nanoseconds | Unit::Seconds => &self.time,
            Unit::Bytes => &self.bytes,
            Unit::Count | Unit::Milli => &self.count,
        }
    }
}

/// Writes `name{labels,extra} ` (a sample up to its value).
pub fn sample_start(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<(&str, &str)>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some((k, v)) = extra {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            out.push_str(v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
}

pub fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

pub fn push_scaled_u64(out: &mut String, v: u64, divisor: u64) {
    if divisor == 1 {
        push_u64(out, v);
    } else {
        let _ = write!(out, "{}", v as f64 / divisor as f64);
    }
}

pub fn push_scaled_i64(out: &mut String, v: i64, divisor: u64) {
    if divisor == 1 {
        out.push_str(itoa::Buffer::new().format(v));
    } else {
        let _ = write!(out, "{}", v as f64 / divisor as f64);
    }
}

/// `v` as Prometheus reads it (`NaN` for not-a-number).
pub fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::family! {
        static T_COUNTER: Counter {
            name: "test_prom_cpu",
            unit: Nanoseconds,
            labels: ["cpu"],
            sampler: "test",
            source: "test",
            help: "Test counter.",
        }
    }
    crate::family! {
        static T_HIST: Histogram {
            name: "test_prom_latency",
            unit: Nanoseconds,
            labels: ["op"],
            sampler: "test",
            source: "test",
            help: "Test histogram.",
        }
    }
    crate::family! {
        static T_LOAD: Gauge {
            name: "test_prom_load",
            unit: Milli,
            labels: [],
            sampler: "test",
            source: "test",
            help: "Test gauge.",
        }
    }

    #[test]
    fn accept_negotiation_follows_q() {
        let f = |a: &str| Format::from_accept(Some(a));
        // Prometheus 2.42 with native histograms on.
        assert_eq!(
            f("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::Protobuf
        );
        // Not the delimited MetricFamily stream: not ours to guess.
        assert_eq!(f("application/vnd.google.protobuf"), Format::Text);
        assert_eq!(
            f("application/vnd.google.protobuf;proto=\"io.prometheus.client.MetricFamily\";encoding=\"delimited\""),
            Format::Protobuf
        );
        // Prometheus 2.42 by default.
        assert_eq!(
            f("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
            Format::OpenMetrics
        );
        assert_eq!(f("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"), Format::Text);
        assert_eq!(
            f("text/plain;q=0.9, application/openmetrics-text;q=0.5"),
            Format::Text
        );
        assert_eq!(f("*/*"), Format::Text);
        assert_eq!(Format::from_accept(None), Format::Text);
    }

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let c = T_COUNTER.series(&["0"]);
        c.set_counter(1_500_000_000);
        let g = T_LOAD.single();
        g.set_gauge(520);
        let h = T_HIST.series(&["read"]);
        let mut buckets = vec![0u64; crate::histogram::BUCKETS];
        buckets[crate::histogram::index(2000)] = 3; // 2 µs, < 2^11 ns
        buckets[crate::histogram::index(1 << 40)] = 1; // beyond the last bound
        h.set_histogram(&buckets, 6000 + (1 << 40));

        let r = Renderer::default();
        let mut out = String::new();
        r.render(Format::Text, &mut out);
        assert!(out.contains("# TYPE test_prom_cpu_seconds_total counter\n"));
        assert!(out.contains("test_prom_cpu_seconds_total{cpu=\"0\"} 1.5\n"));
        assert!(out.contains("test_prom_load 0.52\n"));
        assert!(out.contains("# TYPE test_prom_latency_seconds histogram\n"));
        assert!(
            out.contains("test_prom_latency_seconds_bucket{op=\"read\",le=\"0.000001024\"} 0\n")
        );
        assert!(
            out.contains("test_prom_latency_seconds_bucket{op=\"read\",le=\"0.000002048\"} 3\n")
        );
        assert!(
            out.contains("test_prom_latency_seconds_bucket{op=\"read\",le=\"17.179869184\"} 3\n")
        );
        assert!(out.contains("test_prom_latency_seconds_bucket{op=\"read\",le=\"+Inf\"} 4\n"));
        assert!(out.contains("test_prom_latency_seconds_count{op=\"read\"} 4\n"));
        assert!(!out.contains("# EOF"));

        r.render(Format::OpenMetrics, &mut out);
        assert!(out.contains("# TYPE test_prom_cpu_seconds counter\n"));
        assert!(out.contains("test_prom_cpu_seconds_total{cpu=\"0\"} 1.5\n"));
        assert!(out.ends_with("# EOF\n"));
    }
}
