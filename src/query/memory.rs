//! Snapshots held in memory as a source: what a live agent's polled
//! snapshots become (`sonde query URL`, the viewer's live mode), bounded
//! to the newest rows.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use super::source::{Buckets, Kind, SeriesInfo, Source};
use crate::snapshot::{Snapshot, Value};

enum Column {
    Scalar(Vec<Option<f64>>),
    Histogram(Vec<Option<Buckets>>),
}

impl Column {
    fn push_none(&mut self) {
        match self {
            Column::Scalar(v) => v.push(None),
            Column::Histogram(v) => v.push(None),
        }
    }

    fn drain_front(&mut self, n: usize) {
        match self {
            Column::Scalar(v) => drop(v.drain(..n)),
            Column::Histogram(v) => drop(v.drain(..n)),
        }
    }
}

pub struct Memory {
    series: Vec<SeriesInfo>,
    ids: HashMap<String, usize>,
    ts: Vec<i64>,
    columns: Vec<Column>,
    max_rows: usize,
    interval: Option<Duration>,
}

fn unix_ns(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl Memory {
    /// Keeps at most `max_rows` snapshots (the oldest go first).
    pub fn new(max_rows: usize, interval: Option<Duration>) -> Memory {
        Memory {
            series: Vec::new(),
            ids: HashMap::new(),
            ts: Vec::new(),
            columns: Vec::new(),
            max_rows: max_rows.max(1),
            interval,
        }
    }

    /// Appends a snapshot as a row; one not newer than the newest row is
    /// dropped (rows stay in time order). Says whether it was kept.
    pub fn push(&mut self, s: &Snapshot) -> bool {
        let t = super::to_millis(unix_ns(s.stamp.systemtime));
        if self.ts.last().is_some_and(|&last| t <= last) {
            return false;
        }
        let row = self.ts.len();
        self.ts.push(t);
        for c in &mut self.columns {
            c.push_none();
        }
        for m in &s.metrics {
            let i = match self.ids.get(&m.id) {
                Some(&i) => i,
                None => {
                    let kind = match &m.value {
                        Value::Counter(_) => Kind::Counter,
                        Value::Gauge(_) => Kind::Gauge,
                        Value::Histogram { layout, .. } => Kind::Histogram(*layout),
                    };
                    self.series.push(SeriesInfo {
                        metric: m.name.clone(),
                        labels: m.labels.clone(),
                        kind,
                        unit: m.unit.clone(),
                    });
                    self.columns.push(match kind {
                        Kind::Histogram(_) => Column::Histogram(vec![None; row + 1]),
                        _ => Column::Scalar(vec![None; row + 1]),
                    });
                    self.ids.insert(m.id.clone(), self.series.len() - 1);
                    self.series.len() - 1
                }
            };
            match (&mut self.columns[i], &m.value) {
                (Column::Scalar(v), Value::Counter(x)) => v[row] = Some(*x as f64),
                (Column::Scalar(v), Value::Gauge(x)) => v[row] = Some(*x as f64),
                (Column::Histogram(v), Value::Histogram { buckets, .. }) => {
                    v[row] = Some(Buckets::from_dense(buckets))
                }
                _ => {} // The same id with another type: the first wins.
            }
        }
        if self.ts.len() > self.max_rows {
            let n = self.ts.len() - self.max_rows;
            self.ts.drain(..n);
            for c in &mut self.columns {
                c.drain_front(n);
            }
        }
        true
    }

    pub fn rows(&self) -> usize {
        self.ts.len()
    }
}

impl Source for Memory {
    fn series(&self) -> &[SeriesInfo] {
        &self.series
    }

    fn timestamps(&self) -> &[i64] {
        &self.ts
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    fn scalars(&self, series: usize, rows: Range<usize>) -> anyhow::Result<Vec<Option<f64>>> {
        match &self.columns[series] {
            Column::Scalar(v) => Ok(v[rows.start.min(v.len())..rows.end.min(v.len())].to_vec()),
            Column::Histogram(_) => anyhow::bail!("series {series} is a histogram"),
        }
    }

    fn histograms(&self, series: usize, rows: &[usize]) -> anyhow::Result<Vec<Option<Buckets>>> {
        match &self.columns[series] {
            Column::Histogram(v) => Ok(rows.iter().map(|&r| v.get(r).cloned().flatten()).collect()),
            Column::Scalar(_) => anyhow::bail!("series {series} is not a histogram"),
        }
    }
}
