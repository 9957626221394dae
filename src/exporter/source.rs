//! What the exporter keeps per source and how a snapshot becomes Prometheus
//! text: counters and gauges as they are, histograms as the percentiles of
//! the last interval (a `summary`), optionally also classic histograms.
//! While a scraper asks for the protobuf exposition, each family's
//! metrics are also kept as protobuf, every histogram as a native one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use crate::histogram::{midpoint_sum, quantiles, Layout};
use crate::prometheus::buckets::{le, BucketSets};
use crate::prometheus::names::{self, escape_label_value, label_key, metric_name};
use crate::prometheus::native::from_h2;
use crate::prometheus::proto::MetricBuf;
use crate::prometheus::text::{push_f64, push_scaled_i64, push_scaled_u64, push_u64, sample_start};
use crate::registry::{self, Kind, Series, Unit};
use crate::snapshot::fetch::{Failure, FetchError};
use crate::snapshot::{Snapshot, Value};

crate::family! {
    static SOURCE_UP: Gauge {
        name: "sonde_exporter_source_up",
        unit: Count,
        labels: ["source"],
        sampler: "exporter",
        source: "exporter",
        help: "1 when the last pull of this source succeeded and decoded, else 0 (its series are then absent).",
    }
}
crate::family! {
    static PULL_DURATION: Gauge {
        name: "sonde_exporter_pull_duration",
        unit: Nanoseconds,
        labels: ["source"],
        sampler: "exporter",
        source: "exporter",
        help: "How long the last pull of this source took, fetch and decode.",
    }
}
crate::family! {
    static PULLS: Counter {
        name: "sonde_exporter_pulls",
        unit: Count,
        labels: ["source"],
        sampler: "exporter",
        source: "exporter",
        help: "Pulls of this source attempted.",
    }
}
crate::family! {
    static PULL_ERRORS: Counter {
        name: "sonde_exporter_pull_errors",
        unit: Count,
        labels: ["source", "reason"],
        sampler: "exporter",
        source: "exporter",
        help: "Failed pulls by reason: connect, timeout, status, content_type, too_large, decode.",
    }
}
crate::family! {
    static RESETS: Counter {
        name: "sonde_exporter_resets",
        unit: Count,
        labels: ["source"],
        sampler: "exporter",
        source: "exporter",
        help: "Histograms whose counts went down (agent restart): that interval's percentiles are skipped.",
    }
}
crate::family! {
    static DROPPED: Counter {
        name: "sonde_exporter_dropped_series",
        unit: Count,
        labels: ["source", "reason"],
        sampler: "exporter",
        source: "exporter",
        help: "Series not relayed: duplicate (same name and labels twice) or type_conflict (name taken by another type).",
    }
}
crate::family! {
    static SERIES: Gauge {
        name: "sonde_exporter_series",
        unit: Count,
        labels: ["source"],
        sampler: "exporter",
        source: "exporter",
        help: "Series relayed from this source in the last interval.",
    }
}

/// What every source shares: which percentiles, whether to add histograms.
pub struct Settings {
    pub percentiles: Vec<f64>,
    /// `quantile` label values, formatted once.
    quantile_labels: Vec<String>,
    pub histograms: bool,
    /// Bucket sets of the classic histograms (`histograms = true`).
    buckets: BucketSets,
    /// Also build the protobuf exposition (a scraper asked for it lately).
    pub protobuf: bool,
}

impl Settings {
    pub fn new(percentiles: Vec<f64>, histograms: bool) -> Self {
        let quantile_labels = percentiles.iter().map(|q| q.to_string()).collect();
        Settings {
            percentiles,
            quantile_labels,
            histograms,
            buckets: BucketSets::default(),
            protobuf: false,
        }
    }
}

/// One relayed family of one source: its metadata, its sample lines, and
/// its `Metric` messages (field 4 of a `MetricFamily`) when protobuf is
/// built. Either may be empty: a histogram's native family has no text
/// unless `histograms = true`.
#[derive(Debug)]
pub struct FamilyOut {
    pub kind: &'static str,
    pub help: String,
    pub body: String,
    pub proto: Vec<u8>,
}

pub struct SourceState {
    /// `host:port` of the URL: the `source` label.
    pub name: String,
    /// `<url>/metrics/binary`.
    pub binary_url: String,
    /// Config labels plus `source` when there are several sources, as
    /// `(key, escaped value)`.
    extra_labels: Vec<(String, String)>,
    /// The same, values not escaped (protobuf).
    extra_raw: Vec<(String, String)>,
    /// The protobuf message being written, kept between intervals.
    metric: MetricBuf,
    prev_time: Option<SystemTime>,
    /// Buckets of the previous snapshot by metric name + labels.
    prev: HashMap<String, Vec<u64>>,
    pub families: BTreeMap<String, FamilyOut>,
    was_up: Option<bool>,
    /// Its families were built with protobuf (a source serving the same
    /// snapshot again keeps the families of before protobuf was asked).
    pub protobuf_ready: bool,
    up: Arc<Series>,
    duration: Arc<Series>,
    pulls: Arc<Series>,
    errors: Vec<(Failure, Arc<Series>)>,
    resets: Arc<Series>,
    duplicates: Arc<Series>,
    conflicts: Arc<Series>,
    series: Arc<Series>,
}

impl SourceState {
    pub fn new(url: &str, labels: &BTreeMap<String, String>, add_source_label: bool) -> Self {
        let base = url.trim_end_matches('/');
        let name = base
            .split_once("://")
            .map_or(base, |(_, rest)| rest)
            .to_string();
        let mut extra_raw: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (label_key(k), v.clone()))
            .collect();
        if add_source_label && !labels.contains_key("source") {
            extra_raw.push(("source".into(), name.clone()));
        }
        let extra_labels = extra_raw
            .iter()
            .map(|(k, v)| (k.clone(), escaped(v)))
            .collect();
        let n = name.as_str();
        SourceState {
            binary_url: format!("{base}/metrics/binary"),
            extra_labels,
            extra_raw,
            metric: MetricBuf::default(),
            prev_time: None,
            prev: HashMap::new(),
            families: BTreeMap::new(),
            was_up: None,
            protobuf_ready: false,
            up: SOURCE_UP.series(&[n]),
            duration: PULL_DURATION.series(&[n]),
            pulls: PULLS.series(&[n]),
            errors: Failure::ALL
                .iter()
                .map(|f| (*f, PULL_ERRORS.series(&[n, f.as_str()])))
                .collect(),
            resets: RESETS.series(&[n]),
            duplicates: DROPPED.series(&[n, "duplicate"]),
            conflicts: DROPPED.series(&[n, "type_conflict"]),
            series: SERIES.series(&[n]),
            name,
        }
    }

    pub fn note_conflict(&self) {
        self.conflicts.add(1);
    }

    /// A failed pull: the source's series disappear and it must deliver two
    /// snapshots again before percentiles come back (the gap may hide a
    /// restart, and a delta across it would be made up).
    pub fn failed(&mut self, err: &FetchError, took: std::time::Duration) {
        self.pulls.add(1);
        self.duration.set_gauge(took.as_nanos() as i64);
        if let Some((_, c)) = self.errors.iter().find(|(f, _)| *f == err.failure) {
            c.add(1);
        }
        if self.was_up != Some(false) {
            tracing::warn!(source = %self.name, "pull failed ({}): {err}", err.failure.as_str());
        } else {
            tracing::debug!(source = %self.name, "pull failed ({}): {err}", err.failure.as_str());
        }
        self.was_up = Some(false);
        self.up.set_gauge(0);
        self.series.set_gauge(0);
        self.families.clear();
        self.prev.clear();
        self.prev_time = None;
    }

    pub fn succeeded(
        &mut self,
        snapshot: Snapshot,
        took: std::time::Duration,
        settings: &Settings,
    ) {
        self.pulls.add(1);
        self.duration.set_gauge(took.as_nanos() as i64);
        if self.was_up == Some(false) {
            tracing::info!(source = %self.name, "source is back");
        }
        self.was_up = Some(true);
        self.up.set_gauge(1);
        match self.prev_time {
            // The agent served its cached snapshot again: nothing new, and
            // the percentiles already shown still describe its last interval.
            Some(t) if t == snapshot.stamp.systemtime => return,
            // Time went backwards: a restarted agent or a clock step.
            Some(t) if snapshot.stamp.systemtime < t => {
                self.prev.clear();
                self.resets.add(1);
            }
            _ => {}
        }
        self.prev_time = Some(snapshot.stamp.systemtime);
        self.build(snapshot, settings);
    }

    fn build(&mut self, snapshot: Snapshot, settings: &Settings) {
        self.protobuf_ready = settings.protobuf;
        self.families.clear();
        let mut prev = std::mem::take(&mut self.prev);
        let mut seen = HashSet::with_capacity(snapshot.metrics.len());
        let mut labels = String::new();
        let mut count = 0i64;
        let proto = settings.protobuf;
        let mut pb = std::mem::take(&mut self.metric);
        for m in snapshot.metrics {
            let unit = m.unit.as_deref().and_then(Unit::parse);
            let divisor = names::divisor(unit);
            let name = metric_name(&m.name);
            self.labels(&m.labels, &mut labels);
            let key = pair_key(&name, &m.labels);
            if !seen.insert(key.clone()) {
                self.duplicates.add(1);
                continue;
            }
            count += 1;
            match m.value {
                Value::Counter(v) => {
                    self.proto_labels(proto, &m.labels, &mut pb);
                    let out =
                        self.family(names::name(&name, Kind::Counter, unit), "counter", &m.name);
                    let Some(out) = out else { continue };
                    let fam = out.0;
                    sample_start(&mut out.1.body, &fam, "", &labels, None);
                    push_scaled_u64(&mut out.1.body, v, divisor);
                    out.1.body.push('\n');
                    if proto {
                        pb.scalar(Kind::Counter, v as f64 / divisor as f64);
                        pb.append_to(&mut out.1.proto);
                    }
                }
                Value::Gauge(v) => {
                    self.proto_labels(proto, &m.labels, &mut pb);
                    let out = self.family(names::name(&name, Kind::Gauge, unit), "gauge", &m.name);
                    let Some(out) = out else { continue };
                    let fam = out.0;
                    sample_start(&mut out.1.body, &fam, "", &labels, None);
                    push_scaled_i64(&mut out.1.body, v, divisor);
                    out.1.body.push('\n');
                    if proto {
                        pb.scalar(Kind::Gauge, v as f64 / divisor as f64);
                        pb.append_to(&mut out.1.proto);
                    }
                }
                Value::Histogram { layout, buckets } => {
                    let delta = match prev.remove(&key) {
                        Some(p) if p.len() == buckets.len() => {
                            let d: Option<Vec<u64>> = buckets
                                .iter()
                                .zip(&p)
                                .map(|(c, p)| c.checked_sub(*p))
                                .collect();
                            if d.is_none() {
                                self.resets.add(1);
                            }
                            d
                        }
                        // A new series, or its layout changed: no interval yet.
                        _ => None,
                    };
                    if let Some(delta) = delta {
                        self.proto_labels(proto, &m.labels, &mut pb);
                        let fam = names::name(&name, Kind::Histogram, unit);
                        if let Some((fam, out)) = self.family(fam, "summary", &m.name) {
                            let pb = proto.then_some(&mut pb);
                            summary(out, &fam, &labels, layout, &delta, divisor, settings, pb);
                        }
                    }
                    // Protobuf has the whole distribution as one native
                    // histogram, whatever `histograms` says for text.
                    if settings.histograms || proto {
                        self.proto_labels(proto, &m.labels, &mut pb);
                        let fam = names::name(&format!("{name}_buckets"), Kind::Histogram, unit);
                        if let Some((fam, out)) = self.family(fam, "histogram", &m.name) {
                            if settings.histograms {
                                let bounds = settings.buckets.bounds(layout, unit);
                                classic(out, &fam, &labels, &bounds, &buckets, layout, divisor);
                            }
                            if proto {
                                let sum = midpoint_sum(layout, &buckets);
                                pb.native(&from_h2(layout, &buckets, sum, divisor as f64));
                                pb.append_to(&mut out.proto);
                            }
                        }
                    }
                    self.prev.insert(key, buckets);
                }
            }
        }
        self.metric = pb;
        self.series.set_gauge(count);
    }

    /// Starts `pb` with a series' labels as [`SourceState::labels`] writes
    /// them (when protobuf is built).
    fn proto_labels(&self, proto: bool, own: &[(String, String)], pb: &mut MetricBuf) {
        if !proto {
            return;
        }
        pb.clear();
        for (k, v) in own {
            let key = label_key(k);
            if self.extra_raw.iter().any(|(ek, _)| *ek == key) {
                pb.label(&format!("exported_{key}"), v);
            } else {
                pb.label(&key, v);
            }
        }
        for (k, v) in &self.extra_raw {
            pb.label(k, v);
        }
    }

    /// The family `fam` of this source, created with `kind`; `None` (and a
    /// counted conflict) when the name is already taken by another type.
    fn family(
        &mut self,
        fam: String,
        kind: &'static str,
        metric: &str,
    ) -> Option<(String, &mut FamilyOut)> {
        let out = self
            .families
            .entry(fam.clone())
            .or_insert_with(|| FamilyOut {
                kind,
                help: help_for(metric),
                body: String::new(),
                proto: Vec::new(),
            });
        if out.kind != kind {
            self.conflicts.add(1);
            return None;
        }
        Some((fam, out))
    }

    /// `k="v",…` for a series: its own labels, then the source's; a source
    /// label replaces a metric label of the same key, which is kept as
    /// `exported_<key>` (what Prometheus does on a scrape).
    fn labels(&self, own: &[(String, String)], out: &mut String) {
        out.clear();
        for (k, v) in own {
            let key = label_key(k);
            if !out.is_empty() {
                out.push(',');
            }
            if self.extra_labels.iter().any(|(ek, _)| *ek == key) {
                out.push_str("exported_");
            }
            out.push_str(&key);
            out.push_str("=\"");
            escape_label_value(v, out);
            out.push('"');
        }
        for (k, v) in &self.extra_labels {
            if !out.is_empty() {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{v}\"");
        }
    }
}

/// The summary of one interval: `quantile` samples, `_sum` and `_count`,
/// all describing the same window (the delta of the last two snapshots);
/// also as protobuf into `pb` (its labels written) when given.
#[allow(clippy::too_many_arguments)]
fn summary(
    out: &mut FamilyOut,
    fam: &str,
    labels: &str,
    layout: Layout,
    delta: &[u64],
    divisor: u64,
    settings: &Settings,
    pb: Option<&mut MetricBuf>,
) {
    let mut values = [f64::NAN; 16];
    let n = settings.percentiles.len().min(values.len());
    let (count, sum) = quantiles(layout, delta, &settings.percentiles[..n], &mut values[..n]);
    for (q, v) in settings.quantile_labels.iter().zip(&values[..n]) {
        sample_start(&mut out.body, fam, "", labels, Some(("quantile", q)));
        push_f64(&mut out.body, *v / divisor as f64);
        out.body.push('\n');
    }
    sample_start(&mut out.body, fam, "_sum", labels, None);
    push_f64(&mut out.body, sum / divisor as f64);
    out.body.push('\n');
    sample_start(&mut out.body, fam, "_count", labels, None);
    push_u64(&mut out.body, count);
    out.body.push('\n');
    if let Some(pb) = pb {
        let d = divisor as f64;
        let qs = settings.percentiles.iter().zip(&values[..n]);
        pb.summary(count, sum / d, qs.map(|(q, v)| (*q, *v / d)));
        pb.append_to(&mut out.proto);
    }
}

/// A classic histogram of the cumulative counts at power-of-two bounds
/// (the default bucket set of the histogram's unit).
fn classic(
    out: &mut FamilyOut,
    fam: &str,
    labels: &str,
    bounds: &crate::histogram::PowerOfTwoBounds,
    buckets: &[u64],
    layout: Layout,
    divisor: u64,
) {
    let total = bounds.cumulative(buckets, |k, acc| {
        sample_start(
            &mut out.body,
            fam,
            "_bucket",
            labels,
            Some(("le", &le(k, divisor))),
        );
        push_u64(&mut out.body, acc);
        out.body.push('\n');
    });
    sample_start(&mut out.body, fam, "_bucket", labels, Some(("le", "+Inf")));
    push_u64(&mut out.body, total);
    out.body.push('\n');
    let sum = crate::histogram::midpoint_sum(layout, buckets);
    sample_start(&mut out.body, fam, "_sum", labels, None);
    push_f64(&mut out.body, sum / divisor as f64);
    out.body.push('\n');
    sample_start(&mut out.body, fam, "_count", labels, None);
    push_u64(&mut out.body, total);
    out.body.push('\n');
}

fn escaped(v: &str) -> String {
    let mut s = String::new();
    escape_label_value(v, &mut s);
    s
}

/// Pairs a histogram with its previous reading: name and labels, never
/// the position in the snapshot.
fn pair_key(name: &str, labels: &[(String, String)]) -> String {
    let mut key = String::from(name);
    for (k, v) in labels {
        key.push('\0');
        key.push_str(k);
        key.push('\0');
        key.push_str(v);
    }
    key
}

/// Our own help text for metrics a sonde agent sends, a generic one else.
fn help_for(metric: &str) -> String {
    static HELP: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    let help = HELP.get_or_init(|| {
        registry::families()
            .iter()
            .map(|f| (f.desc.name, f.desc.help))
            .collect()
    });
    match help.get(metric) {
        Some(h) => (*h).to_string(),
        None => format!("Relayed metric {}.", metric_name(metric)),
    }
}

#[cfg(test)]
mod tests;
