//! What the engine reads: a set of series over rows of one timestamp each,
//! from a recording (parquet, read on demand) or from snapshots held in
//! memory (a live agent). A source only hands out values; names, units
//! and PromQL semantics are the engine's.

use std::ops::Range;
use std::time::Duration;

use crate::histogram::Layout;

/// What a series holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram(Layout),
}

/// One series of a source.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesInfo {
    /// The registry name (`metadata["metric"]`), e.g. `cpu_usage`.
    pub metric: String,
    /// Label pairs, sorted by key, without the name.
    pub labels: Vec<(String, String)>,
    pub kind: Kind,
    /// `metadata["unit"]`: nanoseconds, bytes, count, …
    pub unit: Option<String>,
}

/// A histogram sample: sparse buckets of a layout (most of the 496 H2
/// buckets of a latency are empty).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    /// Bucket indexes, increasing.
    pub index: Vec<u32>,
    pub count: Vec<u64>,
}

impl Buckets {
    /// From the dense bucket list a snapshot or a parquet row holds.
    pub fn from_dense(dense: &[u64]) -> Buckets {
        let mut b = Buckets::default();
        for (i, &c) in dense.iter().enumerate() {
            if c != 0 {
                b.index.push(i as u32);
                b.count.push(c);
            }
        }
        b
    }

    pub fn total(&self) -> u64 {
        self.count.iter().sum()
    }
}

/// The rows and series a query may read.
pub trait Source: Send + Sync {
    /// Every series, in a fixed order (the index is the series' handle).
    fn series(&self) -> &[SeriesInfo];

    /// The rows' timestamps, ns since the epoch, increasing, whole
    /// milliseconds (see [`super::to_millis`]).
    fn timestamps(&self) -> &[i64];

    /// The sampling interval the recording was made at, when it says.
    fn interval(&self) -> Option<Duration>;

    /// Counter or gauge `series` at `rows` (`None` where the row has no
    /// value for it).
    fn scalars(&self, series: usize, rows: Range<usize>) -> anyhow::Result<Vec<Option<f64>>>;

    /// Histogram `series` at each of `rows` (increasing).
    fn histograms(&self, series: usize, rows: &[usize]) -> anyhow::Result<Vec<Option<Buckets>>>;
}

/// The rows of `ts` (increasing) whose time lies in `[from, to]`.
pub fn rows_between(ts: &[i64], from: i64, to: i64) -> Range<usize> {
    let a = ts.partition_point(|&t| t < from);
    let b = ts.partition_point(|&t| t <= to);
    a..b.max(a)
}
