//! The snapshot wire format, one home: `/metrics/binary` (msgpack) and
//! `/metrics/json`, as the agent writes them, the exporter and the pusher
//! read them and the pusher forwards them.
//!
//! Decode-compatible with metriken-exposition's `SnapshotV2` (what the
//! Rezolus exporter and recorder read): rmp-serde's positional layout
//! `[systemtime, duration, metadata, counters, gauges, histograms]`, times
//! as `[secs, nanos]`, each metric `[name, value, metadata]`, a histogram
//! value `[[config…], [buckets…]]`. JSON has the same structure with serde's
//! field names.

pub mod decode;
pub mod encode;
pub mod fetch;

use std::time::{Duration, SystemTime};

use crate::histogram::Layout;

pub use decode::decode;
pub use encode::Encoder;

/// When a snapshot was taken and how long the refresh behind it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub systemtime: SystemTime,
    pub duration: Duration,
}

/// A decoded snapshot (ours or another agent's).
#[derive(Debug)]
pub struct Snapshot {
    pub stamp: Stamp,
    /// Snapshot-level metadata with string values (`source`, `version`).
    pub metadata: Vec<(String, String)>,
    /// Counters, then gauges, then histograms, in snapshot order.
    pub metrics: Vec<Metric>,
}

#[derive(Debug)]
pub struct Metric {
    /// The series' unique name in the snapshot.
    pub id: String,
    /// `metadata["metric"]`, else the series name up to any `{`.
    pub name: String,
    /// Label pairs sorted by key; the pairing key of a series.
    pub labels: Vec<(String, String)>,
    pub unit: Option<String>,
    pub value: Value,
}

#[derive(Debug)]
pub enum Value {
    Counter(u64),
    Gauge(i64),
    Histogram { layout: Layout, buckets: Vec<u64> },
}
