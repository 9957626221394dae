//! Every series of a source as a signal on one grid: what the analyses
//! compare. A counter becomes its rate per second over each step, a gauge
//! its value at the step, a histogram its p99 (and p50) of the values
//! observed during the step. Values are read at step boundaries only, so
//! a day at 1 s costs one read per step, not per row. A histogram's step
//! with fewer than 20 events has no percentile: the p99 of a handful of
//! flushes is noise, and their count shows in the counters anyway.

use crate::histogram::Layout;
use crate::query::hist::h2_quantile;
use crate::query::{Buckets, Grid, Hist, Kind, Source};

/// Events a histogram's step needs for its percentiles.
const MIN_EVENTS: f64 = 20.0;

/// How a signal was derived from its series.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Derived {
    /// A counter's rate per second.
    Rate,
    /// A gauge's value.
    Value,
    /// The 99th percentile of a histogram's values in the step.
    P99,
    /// The median of a histogram's values in the step.
    P50,
    /// The sum of a counter family's rates: a storm in one series that
    /// is flat at zero otherwise has no scale of its own, the family's
    /// total has one.
    Total,
}

/// One signal: values at the grid's steps (NaN: no value).
#[derive(Clone, Debug)]
pub struct Signal {
    pub series: usize,
    /// The registry name.
    pub metric: String,
    pub labels: Vec<(String, String)>,
    pub unit: Option<String>,
    pub derived: Derived,
    pub values: Vec<f64>,
}

impl Signal {
    /// `metric{labels}` and, for a histogram, which quantile.
    pub fn name(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        let base = if labels.is_empty() {
            self.metric.clone()
        } else {
            format!("{}{{{}}}", self.metric, labels.join(", "))
        };
        match self.derived {
            Derived::P99 => format!("p99 of {base}"),
            Derived::P50 => format!("p50 of {base}"),
            Derived::Total => format!("sum({base})"),
            _ => base,
        }
    }
}

/// The signals of every series `keep` accepts, on `grid` (step k is the
/// interval ending at `grid.at(k)`; the first step has no rate).
pub fn frame(
    src: &dyn Source,
    grid: Grid,
    keep: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Vec<Signal>> {
    let ts = src.timestamps();
    // The last row at or before each boundary (the one before the first
    // step too, for the first interval).
    let bounds: Vec<Option<usize>> = (0..=grid.steps)
        .map(|k| {
            let t = grid.start + (k as i64 - 1) * grid.step;
            ts.partition_point(|&x| x <= t).checked_sub(1)
        })
        .collect();
    let rows: Vec<usize> = {
        let mut r: Vec<usize> = bounds.iter().flatten().copied().collect();
        r.dedup();
        r
    };
    let step_s = grid.step as f64 / 1e9;
    let mut out = Vec::new();
    for (i, info) in src.series().iter().enumerate() {
        if !keep(&info.metric) {
            continue;
        }
        let signal = |derived, values| Signal {
            series: i,
            metric: info.metric.clone(),
            labels: info.labels.clone(),
            unit: info.unit.clone(),
            derived,
            values,
        };
        match info.kind {
            Kind::Counter | Kind::Gauge => {
                let (Some(&lo), Some(&hi)) = (rows.first(), rows.last()) else {
                    continue;
                };
                let v = src.scalars(i, lo..hi + 1)?;
                let at = |b: Option<usize>| b.and_then(|r| v.get(r - lo).copied().flatten());
                let values: Vec<f64> = (1..=grid.steps)
                    .map(|k| {
                        let cur = at(bounds[k]);
                        if info.kind == Kind::Gauge {
                            return cur.unwrap_or(f64::NAN);
                        }
                        match (at(bounds[k - 1]), cur) {
                            // A reset (the counter went down): unknown.
                            (Some(a), Some(b)) if b >= a => (b - a) / step_s,
                            _ => f64::NAN,
                        }
                    })
                    .collect();
                out.push(signal(
                    if info.kind == Kind::Gauge {
                        Derived::Value
                    } else {
                        Derived::Rate
                    },
                    values,
                ));
            }
            Kind::Histogram(layout) => {
                let h = src.histograms(i, &rows)?;
                let at = |b: Option<usize>| {
                    b.and_then(|r| rows.binary_search(&r).ok())
                        .and_then(|j| h[j].as_ref())
                };
                let mut p99 = Vec::with_capacity(grid.steps);
                let mut p50 = Vec::with_capacity(grid.steps);
                for k in 1..=grid.steps {
                    let d = match (at(bounds[k - 1]), at(bounds[k])) {
                        (Some(a), Some(b)) => delta(layout, a, b),
                        _ => None,
                    };
                    match d {
                        Some(d) if d.total() >= MIN_EVENTS => {
                            p99.push(h2_quantile(0.99, &d));
                            p50.push(h2_quantile(0.5, &d));
                        }
                        _ => {
                            p99.push(f64::NAN);
                            p50.push(f64::NAN);
                        }
                    }
                }
                out.push(signal(Derived::P99, p99));
                out.push(signal(Derived::P50, p50));
            }
        }
    }
    totals(&mut out);
    Ok(out)
}

/// Adds the total of every counter family with more than one series.
fn totals(out: &mut Vec<Signal>) {
    let mut sums: std::collections::BTreeMap<&str, (usize, Signal)> = Default::default();
    for s in out.iter().filter(|s| s.derived == Derived::Rate) {
        let (n, t) = sums.entry(&s.metric).or_insert_with(|| {
            (
                0,
                Signal {
                    labels: Vec::new(),
                    derived: Derived::Total,
                    values: vec![f64::NAN; s.values.len()],
                    ..s.clone()
                },
            )
        });
        *n += 1;
        for (t, v) in t.values.iter_mut().zip(&s.values) {
            if v.is_finite() {
                *t = if t.is_nan() { *v } else { *t + v };
            }
        }
    }
    let add: Vec<Signal> = sums
        .into_values()
        .filter(|(n, _)| *n > 1)
        .map(|(_, t)| t)
        .collect();
    out.extend(add);
}

/// `b − a` bucket by bucket, `None` when a bucket went down (a reset).
pub fn delta(layout: Layout, a: &Buckets, b: &Buckets) -> Option<Hist> {
    let mut out = Hist {
        layout,
        index: Vec::new(),
        value: Vec::new(),
        scale: 1.0,
    };
    let mut j = 0;
    for (i, &idx) in b.index.iter().enumerate() {
        if j < a.index.len() && a.index[j] < idx {
            // A bucket of `a` missing from `b` went down to 0.
            return None;
        }
        let before = if j < a.index.len() && a.index[j] == idx {
            j += 1;
            a.count[j - 1]
        } else {
            0
        };
        let now = b.count[i];
        if now < before {
            return None;
        }
        if now > before {
            out.index.push(idx);
            out.value.push((now - before) as f64);
        }
    }
    if j < a.index.len() {
        return None;
    }
    Some(out)
}
