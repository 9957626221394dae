//! Writing snapshots: the registry as the agent serves it, or a decoded
//! snapshot as the pusher forwards it, through the same two writers
//! (msgpack and JSON) straight into a reused buffer.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::{Snapshot, Stamp, Value};
use crate::histogram::{BUCKETS, CONFIG_FIELDS};
use crate::registry::{self, Kind, Series};

/// Snapshot-level metadata: who wrote it.
pub const METADATA: [(&str, &str); 2] =
    [("source", "sonde"), ("version", env!("CARGO_PKG_VERSION"))];

/// A snapshot writer: msgpack or JSON.
trait Sink {
    fn begin<'m>(
        &mut self,
        stamp: Stamp,
        metadata: impl Iterator<Item = (&'m str, &'m str)> + Clone,
    );
    fn begin_list(&mut self, key: &str, len: usize);
    fn end_list(&mut self);
    fn metric<'m>(
        &mut self,
        id: &str,
        value: MetricValue<'_>,
        metadata: impl Iterator<Item = (&'m str, &'m str)> + Clone,
    );
    fn end(&mut self);
}

enum MetricValue<'a> {
    Counter(u64),
    Gauge(i64),
    /// The histogram crate's config fields and the buckets.
    Histogram([u64; 8], &'a [u64]),
}

const LISTS: [(Kind, &str); 3] = [
    (Kind::Counter, "counters"),
    (Kind::Gauge, "gauges"),
    (Kind::Histogram, "histograms"),
];

/// Reused scratch space, so encoding the registry allocates nothing once
/// warmed up.
#[derive(Default)]
pub struct Encoder {
    series: Vec<Arc<Series>>,
    buckets: Vec<u64>,
}

impl Encoder {
    /// Encodes the registry as a msgpack `SnapshotV2` into `out` (cleared).
    pub fn msgpack(&mut self, stamp: Stamp, out: &mut Vec<u8>) {
        out.clear();
        self.walk(&mut Msgpack(out), stamp);
    }

    /// Encodes the registry as a JSON `SnapshotV2` into `out` (cleared).
    pub fn json(&mut self, stamp: Stamp, out: &mut Vec<u8>) {
        out.clear();
        self.walk(&mut Json { out, first: true }, stamp);
    }

    fn walk(&mut self, sink: &mut impl Sink, stamp: Stamp) {
        sink.begin(stamp, METADATA.iter().copied());
        self.buckets.resize(BUCKETS, 0);
        for (kind, key) in LISTS {
            // Hold the series while writing: msgpack arrays carry their
            // length up front, so the set must not change under us.
            self.series.clear();
            for f in registry::families().iter().filter(|f| f.desc.kind == kind) {
                f.collect_into(&mut self.series);
            }
            sink.begin_list(key, self.series.len());
            for s in &self.series {
                let value = match s.value() {
                    registry::Value::Scalar(v) if kind == Kind::Gauge => {
                        MetricValue::Gauge(v.load(Ordering::Relaxed) as i64)
                    }
                    registry::Value::Scalar(v) => MetricValue::Counter(v.load(Ordering::Relaxed)),
                    registry::Value::Histogram(h) => {
                        for (d, b) in self.buckets.iter_mut().zip(h.buckets.iter()) {
                            *d = b.load(Ordering::Relaxed);
                        }
                        MetricValue::Histogram(CONFIG_FIELDS, &self.buckets)
                    }
                };
                sink.metric(s.id(), value, series_metadata(s));
            }
            sink.end_list();
        }
        self.series.clear();
        sink.end();
    }
}

/// The agent's histogram layout as metadata strings (a test keeps them
/// equal to `histogram::GROUPING_POWER` and `MAX_VALUE_POWER`).
const LAYOUT_METADATA: [(&str, &str); 2] = [("grouping_power", "3"), ("max_value_power", "64")];

fn series_metadata(s: &Series) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
    let d = &s.family().desc;
    // Rezolus's recorder copies series metadata into its parquet columns,
    // and its viewer drops a histogram column without its layout there.
    let layout = matches!(s.value(), registry::Value::Histogram(_)).then_some(LAYOUT_METADATA);
    [("metric", d.name), ("unit", d.unit.as_str())]
        .into_iter()
        .chain(layout.into_iter().flatten())
        .chain(s.label_values())
}

/// A decoded snapshot as JSON, in the shape of the agent's `/metrics/json`
/// (its own metadata kept), into `out` (cleared).
pub fn json(snapshot: &Snapshot, out: &mut Vec<u8>) {
    out.clear();
    walk_decoded(&mut Json { out, first: true }, snapshot);
}

/// A decoded snapshot as msgpack, as the agent writes it.
pub fn msgpack(snapshot: &Snapshot, out: &mut Vec<u8>) {
    out.clear();
    walk_decoded(&mut Msgpack(out), snapshot);
}

fn walk_decoded(sink: &mut impl Sink, snapshot: &Snapshot) {
    sink.begin(
        snapshot.stamp,
        snapshot
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    for (kind, key) in LISTS {
        let of_kind = |m: &&super::Metric| {
            matches!(
                (&m.value, kind),
                (Value::Counter(_), Kind::Counter)
                    | (Value::Gauge(_), Kind::Gauge)
                    | (Value::Histogram { .. }, Kind::Histogram)
            )
        };
        sink.begin_list(key, snapshot.metrics.iter().filter(of_kind).count());
        for m in snapshot.metrics.iter().filter(of_kind) {
            let value = match &m.value {
                Value::Counter(v) => MetricValue::Counter(*v),
                Value::Gauge(v) => MetricValue::Gauge(*v),
                Value::Histogram { layout, buckets } => {
                    MetricValue::Histogram(layout.config_fields(), buckets)
                }
            };
            // The layout travels as metadata too, as the agent writes it.
            let layout = match &m.value {
                Value::Histogram { layout, .. } => Some([
                    layout.grouping_power().to_string(),
                    layout.max_value_power().to_string(),
                ]),
                _ => None,
            };
            let layout_metadata = layout.as_ref().map(|[gp, mvp]| {
                [
                    ("grouping_power", gp.as_str()),
                    ("max_value_power", mvp.as_str()),
                ]
            });
            let metadata = [("metric", m.name.as_str())]
                .into_iter()
                .chain(m.unit.as_deref().map(|u| ("unit", u)))
                .chain(layout_metadata.into_iter().flatten())
                .chain(m.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            sink.metric(&m.id, value, metadata);
        }
        sink.end_list();
    }
    sink.end();
}

fn since_epoch(t: SystemTime) -> std::time::Duration {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

struct Msgpack<'a>(&'a mut Vec<u8>);

impl Msgpack<'_> {
    fn time(&mut self, secs: u64, nanos: u32) {
        let w = &mut *self.0;
        let _ = rmp::encode::write_array_len(w, 2);
        let _ = rmp::encode::write_uint(w, secs);
        let _ = rmp::encode::write_uint(w, nanos as u64);
    }

    fn map<'m>(&mut self, entries: impl Iterator<Item = (&'m str, &'m str)> + Clone) {
        let w = &mut *self.0;
        let _ = rmp::encode::write_map_len(w, entries.clone().count() as u32);
        for (k, v) in entries {
            let _ = rmp::encode::write_str(w, k);
            let _ = rmp::encode::write_str(w, v);
        }
    }
}

impl Sink for Msgpack<'_> {
    fn begin<'m>(
        &mut self,
        stamp: Stamp,
        metadata: impl Iterator<Item = (&'m str, &'m str)> + Clone,
    ) {
        let _ = rmp::encode::write_array_len(self.0, 6);
        let since = since_epoch(stamp.systemtime);
        self.time(since.as_secs(), since.subsec_nanos());
        self.time(stamp.duration.as_secs(), stamp.duration.subsec_nanos());
        self.map(metadata);
    }

    fn begin_list(&mut self, _key: &str, len: usize) {
        let _ = rmp::encode::write_array_len(self.0, len as u32);
    }

    fn end_list(&mut self) {}

    fn metric<'m>(
        &mut self,
        id: &str,
        value: MetricValue<'_>,
        metadata: impl Iterator<Item = (&'m str, &'m str)> + Clone,
    ) {
        let w = &mut *self.0;
        let _ = rmp::encode::write_array_len(w, 3);
        let _ = rmp::encode::write_str(w, id);
        match value {
            MetricValue::Counter(v) => {
                let _ = rmp::encode::write_uint(w, v);
            }
            MetricValue::Gauge(v) => {
                let _ = rmp::encode::write_sint(w, v);
            }
            MetricValue::Histogram(config, buckets) => {
                let _ = rmp::encode::write_array_len(w, 2);
                let _ = rmp::encode::write_array_len(w, config.len() as u32);
                for f in config {
                    let _ = rmp::encode::write_uint(w, f);
                }
                let _ = rmp::encode::write_array_len(w, buckets.len() as u32);
                for &b in buckets {
                    let _ = rmp::encode::write_uint(w, b);
                }
            }
        }
        self.map(metadata);
    }

    fn end(&mut self) {}
}

struct Json<'a> {
    out: &'a mut Vec<u8>,
    /// Whether the next list element is the first (no comma before it).
    first: bool,
}

impl Json<'_> {
    fn string(&mut self, s: &str) {
        // serde_json's escaping, without building a Value.
        let _ = serde_json::to_writer(&mut *self.out, s);
    }

    fn map<'m>(&mut self, entries: impl Iterator<Item = (&'m str, &'m str)>) {
        self.out.push(b'{');
        for (i, (k, v)) in entries.enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.string(k);
            self.out.push(b':');
            self.string(v);
        }
        self.out.push(b'}');
    }
}

impl Sink for Json<'_> {
    fn begin<'m>(
        &mut self,
        stamp: Stamp,
        metadata: impl Iterator<Item = (&'m str, &'m str)> + Clone,
    ) {
        let since = since_epoch(stamp.systemtime);
        let _ = write!(
            self.out,
            r#"{{"systemtime":{{"secs_since_epoch":{},"nanos_since_epoch":{}}},"duration":{{"secs":{},"nanos":{}}},"metadata":"#,
            since.as_secs(),
            since.subsec_nanos(),
            stamp.duration.as_secs(),
            stamp.duration.subsec_nanos()
        );
        self.map(metadata);
    }

    fn begin_list(&mut self, key: &str, _len: usize) {
        let _ = write!(self.out, r#","{key}":["#);
        self.first = true;
    }

    fn end_list(&mut self) {
        self.out.push(b']');
    }

    fn metric<'m>(
        &mut self,
        id: &str,
        value: MetricValue<'_>,
        metadata: impl Iterator<Item = (&'m str, &'m str)> + Clone,
    ) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.extend_from_slice(br#"{"name":"#);
        self.string(id);
        self.out.extend_from_slice(br#","value":"#);
        match value {
            MetricValue::Counter(v) => {
                let _ = write!(self.out, "{v}");
            }
            MetricValue::Gauge(v) => {
                let _ = write!(self.out, "{v}");
            }
            MetricValue::Histogram([max, gp, mvp, cp, cv, lbc, ubd, ubc], buckets) => {
                let _ = write!(
                    self.out,
                    r#"{{"config":{{"max":{max},"grouping_power":{gp},"max_value_power":{mvp},"cutoff_power":{cp},"cutoff_value":{cv},"lower_bin_count":{lbc},"upper_bin_divisions":{ubd},"upper_bin_count":{ubc}}},"buckets":["#
                );
                for (i, b) in buckets.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    let _ = write!(self.out, "{b}");
                }
                self.out.extend_from_slice(b"]}");
            }
        }
        self.out.extend_from_slice(br#","metadata":"#);
        self.map(metadata);
        self.out.push(b'}');
    }

    fn end(&mut self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metriken_exposition::SnapshotV2;
    use std::time::Duration;

    crate::family! {
        static T_CTR: Counter {
            name: "test_snap_ops",
            unit: Count,
            labels: ["op"],
            sampler: "test",
            source: "test",
            help: "x",
        }
    }
    crate::family! {
        static T_GAUGE: Gauge {
            name: "test_snap_level_bytes",
            unit: Bytes,
            labels: [],
            sampler: "test",
            source: "test",
            help: "x",
        }
    }
    crate::family! {
        static T_HIST: Histogram {
            name: "test_snap_latency",
            unit: Nanoseconds,
            labels: [],
            sampler: "test",
            source: "test",
            help: "x",
        }
    }

    fn stamp() -> Stamp {
        Stamp {
            systemtime: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5),
            duration: Duration::from_micros(250),
        }
    }

    #[test]
    fn msgpack_and_json_decode_as_metriken_snapshot_v2() {
        let c = T_CTR.series(&["read"]);
        c.set_counter(42);
        let g = T_GAUGE.single();
        g.set_gauge(-7);
        let h = T_HIST.single();
        let mut b = vec![0u64; BUCKETS];
        b[crate::histogram::index(1000)] = 10;
        b[crate::histogram::index(100_000)] = 1;
        h.set_histogram(&b, 110_000);

        let mut enc = Encoder::default();
        let mut bytes = Vec::new();
        enc.msgpack(stamp(), &mut bytes);
        let v2: SnapshotV2 = rmp_serde_decode(&bytes);
        let mut json = Vec::new();
        enc.json(stamp(), &mut json);
        let from_json: SnapshotV2 = serde_json::from_slice(&json).expect("json decodes");

        for snap in [v2, from_json] {
            assert_eq!(snap.systemtime, stamp().systemtime);
            assert_eq!(snap.duration, stamp().duration);
            let ctr = snap
                .counters
                .iter()
                .find(|m| m.name == r#"test_snap_ops{op="read"}"#)
                .unwrap();
            assert_eq!(ctr.value, 42);
            assert_eq!(ctr.metadata["metric"], "test_snap_ops");
            assert_eq!(ctr.metadata["op"], "read");
            assert_eq!(ctr.metadata["unit"], "count");
            let gauge = snap
                .gauges
                .iter()
                .find(|m| m.name == "test_snap_level_bytes")
                .unwrap();
            assert_eq!(gauge.value, -7);
            let hist = snap
                .histograms
                .iter()
                .find(|m| m.name == "test_snap_latency")
                .unwrap();
            let total: u64 = hist.value.as_slice().iter().sum();
            assert_eq!(total, 11);
            // What Rezolus's recorder needs to keep the column.
            assert_eq!(hist.metadata["grouping_power"], "3");
            assert_eq!(hist.metadata["max_value_power"], "64");
            assert!(!ctr.metadata.contains_key("grouping_power"));
            let p50 = hist.value.quantile(0.5).unwrap().unwrap();
            let bucket = p50.get(&histogram::Quantile::new(0.5).unwrap()).unwrap();
            assert!(bucket.start() <= 1000 && 1000 <= bucket.end());
        }
        // The untagged enum the Rezolus tools decode with picks V2.
        let any: metriken_exposition::Snapshot = rmp_serde_decode(&bytes);
        assert!(
            matches!(any, metriken_exposition::Snapshot::V2(_)),
            "decoded as {any:?}"
        );
    }

    /// The pusher's JSON of a decoded agent snapshot is the agent's own
    /// `/metrics/json` (same writer, same metadata), and re-encoding the
    /// decoded snapshot as msgpack decodes to the same values.
    #[test]
    fn decoded_snapshots_are_written_as_the_agent_writes_them() {
        let c = T_CTR.series(&["write"]);
        c.set_counter(7);
        let h = T_HIST.single();
        let mut b = vec![0u64; BUCKETS];
        b[crate::histogram::index(5000)] = 2;
        h.set_histogram(&b, 10_000);
        let mut enc = Encoder::default();
        let (mut bytes, mut agent_json) = (Vec::new(), Vec::new());
        enc.msgpack(stamp(), &mut bytes);
        enc.json(stamp(), &mut agent_json);
        let decoded = crate::snapshot::decode(&bytes).unwrap();
        let mut pushed = Vec::new();
        json(&decoded, &mut pushed);
        // Other tests share the registry: compare this module's series.
        let ours = |bytes: &[u8]| {
            let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            for list in ["counters", "gauges", "histograms"] {
                v[list]
                    .as_array_mut()
                    .unwrap()
                    .retain(|m| m["name"].as_str().unwrap().starts_with("test_snap_"));
            }
            v
        };
        let (a, p) = (ours(&agent_json), ours(&pushed));
        assert_eq!(a, p);
        assert!(!a["histograms"].as_array().unwrap().is_empty());
        assert_eq!(p["metadata"]["source"], "sonde");
        let mut again = Vec::new();
        msgpack(&decoded, &mut again);
        let back = crate::snapshot::decode(&again).unwrap();
        assert_eq!(
            format!("{:?}", back.metrics),
            format!("{:?}", decoded.metrics)
        );
        assert_eq!(back.stamp, decoded.stamp);
    }

    fn rmp_serde_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
        rmp_serde::from_slice(bytes).expect("msgpack decodes")
    }

    #[test]
    fn layout_metadata_is_the_agent_layout() {
        use crate::histogram::{GROUPING_POWER, MAX_VALUE_POWER};
        assert_eq!(LAYOUT_METADATA[0].1, GROUPING_POWER.to_string());
        assert_eq!(LAYOUT_METADATA[1].1, MAX_VALUE_POWER.to_string());
    }

    /// Golden bytes: the exact encoding of a small, fixed snapshot. A change
    /// here is a wire-format change that every reader of ours would see.
    #[test]
    fn msgpack_golden_bytes() {
        let mut out = Vec::new();
        let mut sink = Msgpack(&mut out);
        sink.begin(stamp(), METADATA.iter().copied());
        for key in ["counters", "gauges", "histograms"] {
            sink.begin_list(key, 0);
        }
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        // [ [1700000000, 5], [0, 250000], {"source":"sonde","version":V}, [], [], [] ]
        let version = env!("CARGO_PKG_VERSION");
        let mut expected = String::from("96" /* array 6 */);
        expected += "92ce6553f10005"; // [u32 1700000000, 5]
        expected += "9200ce0003d090"; // [0, u32 250000]
        expected += "82"; // map 2
        expected += "a6736f75726365a5736f6e6465"; // "source": "sonde"
        expected += "a776657273696f6e"; // "version"
        expected += &format!("{:02x}", 0xa0 | version.len());
        expected += &version
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        expected += "909090";
        assert_eq!(hex, expected);
    }
}
