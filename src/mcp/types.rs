//! The tools' arguments and answers: JSON objects whose schemas the
//! server publishes (`inputSchema`, `outputSchema`). Every answer is
//! bounded (series, points, findings) and says when it was cut.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::{Derived, Method};

/// A time in the one grammar of every Sonde command.
pub const TIME_DOC: &str = "RFC 3339 (2026-12-03T08:00:00Z), unix seconds, start, end, now, a duration back from the end (10m), end-10m or start+5m";

#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[derive(Serialize, JsonSchema)]
pub struct Gap {
    /// RFC 3339 time of the last sample before the gap.
    pub after: String,
    pub seconds: f64,
    /// Samples the interval says are missing.
    pub missing: u64,
}

#[derive(Serialize, JsonSchema)]
pub struct SamplerSummary {
    pub sampler: String,
    pub families: Vec<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct Described {
    /// The file or the agent's URL.
    pub source: String,
    /// `sonde record`, a hindsight dump, Rezolus, or a live agent.
    pub kind: String,
    pub recorder: Option<String>,
    pub agent_version: Option<String>,
    pub start: String,
    pub end: String,
    pub duration_seconds: f64,
    pub interval_seconds: Option<f64>,
    pub samples: usize,
    /// Samples the span and interval call for.
    pub expected_samples: Option<u64>,
    /// Gaps longer than twice the interval (the agent did not answer).
    pub gaps: Vec<Gap>,
    pub gaps_truncated: bool,
    /// The file says it was trimmed, or ends before its own metadata says.
    pub truncated: bool,
    pub series: usize,
    pub families: usize,
    pub samplers: Vec<SamplerSummary>,
    /// Host facts the recording carries (hostname, kernel, CPUs, memory).
    pub system: Option<serde_json::Value>,
    /// Columns the reader left out, with why.
    pub skipped_columns: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// A regular expression (or plain text) the metric name must match,
    /// e.g. `sched` or `^syscall`.
    pub filter: Option<String>,
    /// At most this many metrics (default 100).
    pub limit: Option<usize>,
}

#[derive(Serialize, JsonSchema)]
pub struct MetricInfo {
    /// The registry name: stored units, histograms whole.
    pub name: String,
    /// The name the agent's /metrics gives it (Prometheus units; for a
    /// histogram the base of `_bucket` and `_count`).
    pub prometheus_name: String,
    pub kind: String,
    pub unit: Option<String>,
    pub help: Option<String>,
    pub series: usize,
    /// Label names and (at most 10 of) their values.
    pub labels: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize, JsonSchema)]
pub struct Listed {
    pub metrics: Vec<MetricInfo>,
    pub total: usize,
    pub truncated: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryArgs {
    /// PromQL, e.g. `sum by (op) (rate(syscalls[1m]))` or
    /// `histogram_quantile(0.99, rate(scheduler_runqueue_latency[1m]))`.
    pub expr: String,
    /// Start (default: the data's start). A time: RFC 3339, unix seconds,
    /// start, end, now, 10m (back from the end), end-10m, start+5m.
    pub start: Option<String>,
    /// End (default: the data's end).
    pub end: Option<String>,
    /// Step, e.g. `10s` (default: the span over max_points).
    pub step: Option<String>,
    /// Points per series at most (default 60, at most 1000); more steps
    /// are downsampled to min, median and max per point.
    pub max_points: Option<usize>,
    /// Series at most (default 10, at most 200), the largest last values first.
    pub max_series: Option<usize>,
}

#[derive(Serialize, JsonSchema)]
pub struct SeriesStats {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    pub last: f64,
}

#[derive(Serialize, JsonSchema)]
pub struct QuerySeries {
    pub labels: BTreeMap<String, String>,
    /// `[unix seconds, value]`, or when downsampled `[unix seconds, min,
    /// median, max]` of the steps each point stands for. Histograms are
    /// given by their count (use histogram_quantile for latencies).
    pub points: Vec<Vec<f64>>,
    pub stats: SeriesStats,
}

#[derive(Serialize, JsonSchema)]
pub struct Queried {
    pub expr: String,
    pub start: String,
    pub end: String,
    pub step_seconds: f64,
    pub downsampled: bool,
    pub series: Vec<QuerySeries>,
    pub series_total: usize,
    /// Series or points were left out to keep the answer small.
    pub truncated: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnomalyArgs {
    /// A regular expression the metric name must match (default: all).
    pub filter: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    /// Findings at most (default 10).
    pub top: Option<usize>,
    /// The least score reported (default 30: a change of 17 σ held for
    /// 3 steps, or of 9.5 σ for 10). Lower it to see weaker findings.
    pub min_score: Option<f64>,
}

#[derive(Serialize, JsonSchema)]
pub struct Window {
    pub from: String,
    pub to: String,
    pub from_unix: f64,
    pub to_unix: f64,
    pub seconds: f64,
}

#[derive(Serialize, JsonSchema)]
pub struct AnomalyOut {
    pub rank: usize,
    pub family: String,
    /// The series and how it was derived (`p99 of …` for a histogram).
    pub series: String,
    pub derived: Derived,
    pub window: Window,
    /// Effect size: |mean in the window − median| / robust σ.
    pub score: f64,
    /// The signal's median, and its mean in the window.
    pub baseline: f64,
    pub level: f64,
    pub direction: String,
    pub unit: Option<String>,
    pub methods: Vec<Method>,
    /// Other series of the family with a finding.
    pub other_series: usize,
}

#[derive(Serialize, JsonSchema)]
pub struct Anomalies {
    pub findings: Vec<AnomalyOut>,
    pub signals_scanned: usize,
    pub step_seconds: f64,
    pub start: String,
    pub end: String,
    /// Which algorithms ran, exactly.
    pub methods: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangedArgs {
    /// Start of the window that changed.
    pub start: String,
    /// End of it (default: the data's end).
    pub end: Option<String>,
    /// Baseline start and end (default: the window of the same length
    /// just before `start`). With a baseline recording (`sonde mcp FILE
    /// --baseline FILE2`), times in that recording (default: all of it).
    pub baseline_start: Option<String>,
    pub baseline_end: Option<String>,
    /// Compare with the baseline recording instead of this one's past.
    pub baseline_recording: Option<bool>,
    /// A regular expression the metric name must match (default: all).
    pub filter: Option<String>,
    /// Changes at most (default 10).
    pub top: Option<usize>,
}

#[derive(Serialize, JsonSchema)]
pub struct ChangeOut {
    pub rank: usize,
    pub family: String,
    pub series: String,
    pub derived: Derived,
    /// Kolmogorov–Smirnov distance of the two windows' values (0–1).
    pub ks_distance: f64,
    /// Medians before (baseline) and after (window).
    pub before: f64,
    pub after: f64,
    /// after / before (null when before is 0).
    pub ratio: Option<f64>,
    /// |after − before| / robust σ of the baseline.
    pub effect: f64,
    pub unit: Option<String>,
    pub other_series: usize,
}

#[derive(Serialize, JsonSchema)]
pub struct Changed {
    pub window: Window,
    pub baseline: Window,
    pub baseline_source: String,
    pub changes: Vec<ChangeOut>,
    pub signals_compared: usize,
    pub methods: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrelateArgs {
    /// The target: PromQL giving one series, e.g.
    /// `sum(rate(syscalls[10s]))` or `histogram_quantile(0.99, rate(scheduler_runqueue_latency[10s]))`.
    pub metric: String,
    pub start: Option<String>,
    pub end: Option<String>,
    /// Correlations at most (default 10).
    pub top: Option<usize>,
}

#[derive(Serialize, JsonSchema)]
pub struct CorrelationOut {
    pub rank: usize,
    pub family: String,
    pub series: String,
    pub derived: Derived,
    /// Pearson's r over the steps both have.
    pub r: f64,
    pub other_series: usize,
}

#[derive(Serialize, JsonSchema)]
pub struct Correlated {
    pub target: String,
    pub step_seconds: f64,
    pub correlations: Vec<CorrelationOut>,
    pub signals_compared: usize,
    pub methods: String,
}
