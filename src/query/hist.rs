//! Histogram math of the engine: `histogram_quantile` over H2 histograms
//! (the recording's own buckets) and over classic `le` buckets (exactly as
//! Prometheus 2 computes it), and the quantile and heatmap helpers the
//! viewer and the assistant tools use.
//!
//! Error bound of an H2 quantile: the rank is located in its bucket exactly
//! and the value interpolated linearly inside it, so it is off by at most
//! the bucket's width: 1/2^grouping_power of the value (12.5 % at grouping
//! power 3), and far less when values spread evenly across the bucket.

use std::collections::BTreeMap;

use super::value::{drop_name, label, Hist, Labels, Sample, Series};
use super::QueryError;

/// The `q` quantile of an H2 histogram, interpolated in its bucket, in the
/// histogram's scaled unit; NaN when empty, ±Inf for `q` outside [0, 1].
pub fn h2_quantile(q: f64, h: &Hist) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let total = h.total();
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut seen = 0.0;
    for (i, (&b, &c)) in h.index.iter().zip(&h.value).enumerate() {
        if c <= 0.0 {
            continue;
        }
        if seen + c >= rank || i == h.index.len() - 1 {
            let (lo, hi) = h.layout.range(b as usize);
            // Buckets of one value (below 2^(grouping power + 1)) are exact.
            if lo == hi {
                return lo as f64 * h.scale;
            }
            let width = (hi - lo) as f64 + 1.0;
            let within = ((rank - seen) / c).clamp(0.0, 1.0);
            return (lo as f64 + width * within) * h.scale;
        }
        seen += c;
    }
    f64::NAN
}

/// The sum of the values behind an H2 histogram, from bucket midpoints (a
/// recording keeps buckets only): within half a bucket of the truth.
pub fn sum(h: &Hist) -> f64 {
    h.index
        .iter()
        .zip(&h.value)
        .map(|(&i, &c)| c * h.layout.midpoint(i as usize))
        .sum::<f64>()
        * h.scale
}

/// The fraction of the observations between `lo` and `hi` (scaled units),
/// interpolated inside the buckets at the edges.
pub fn fraction(h: &Hist, lo: f64, hi: f64) -> f64 {
    let total = h.total();
    if total <= 0.0 {
        return f64::NAN;
    }
    let (lo, hi) = (lo / h.scale, hi / h.scale);
    let mut inside = 0.0;
    for (&i, &c) in h.index.iter().zip(&h.value) {
        let (a, b) = h.layout.range(i as usize);
        let (a, b) = (a as f64, b as f64 + 1.0);
        let overlap = (hi.min(b) - lo.max(a)).max(0.0);
        inside += c * overlap / (b - a);
    }
    inside / total
}

/// Prometheus 2's `bucketQuantile` over classic buckets `(le, count)`.
pub fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if !buckets.last().is_some_and(|b| b.0 == f64::INFINITY) {
        return f64::NAN;
    }
    // Same upper bound twice: added together.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(le, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    // Counts that go down (scraped at different times) are made monotonic.
    let mut max = f64::NEG_INFINITY;
    for b in merged.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1].partition_point(|x| x.1 < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// `histogram_quantile(q, v)`: H2 samples directly; classic `le` series
/// grouped by their other labels, per step.
pub fn quantile(q: &[f64], v: Vec<Series>) -> Result<Vec<Series>, QueryError> {
    let steps = q.len();
    let mut out = Vec::new();
    let mut classic: BTreeMap<Labels, Vec<(f64, &Series)>> = BTreeMap::new();
    for s in &v {
        let native = s.points.iter().flatten().any(|p| matches!(p, Sample::H(_)));
        if native {
            let points = (0..steps)
                .map(|k| match &s.points[k] {
                    Some(Sample::H(h)) => Some(Sample::F(h2_quantile(q[k], h))),
                    _ => None,
                })
                .collect();
            out.push(Series {
                labels: drop_name(&s.labels),
                points,
            });
            continue;
        }
        let le = label(&s.labels, "le");
        let Ok(bound) = le.parse::<f64>().or_else(|e| match le {
            "+Inf" => Ok(f64::INFINITY),
            _ => Err(e),
        }) else {
            continue; // Not a bucket series: Prometheus ignores it too.
        };
        let key: Labels = drop_name(&s.labels)
            .into_iter()
            .filter(|(k, _)| k != "le")
            .collect();
        classic.entry(key).or_default().push((bound, s));
    }
    for (labels, buckets) in classic {
        let points = (0..steps)
            .map(|k| {
                let mut b: Vec<(f64, f64)> = buckets
                    .iter()
                    .filter_map(|(le, s)| Some((*le, s.points[k].as_ref()?.float()?)))
                    .collect();
                (!b.is_empty()).then(|| Sample::F(bucket_quantile(q[k], &mut b)))
            })
            .collect();
        out.push(Series { labels, points });
    }
    Ok(out
        .into_iter()
        .filter(|s| s.points.iter().any(Option::is_some))
        .collect())
}

/// A heatmap of one histogram series over the steps: the non-empty buckets'
/// bounds (scaled units) and their values at each step, with the given
/// quantiles per step; what the viewer draws.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Heatmap {
    /// `[lower, upper]` of each row (bucket), increasing.
    pub buckets: Vec<(f64, f64)>,
    /// `values[step][row]`; NaN where the step has no sample.
    pub values: Vec<Vec<f64>>,
    /// `quantiles[j][step]` for the asked quantiles.
    pub quantiles: Vec<Vec<f64>>,
}

/// The heatmap of the histogram samples of `s` (steps without one are NaN).
pub fn heatmap(s: &Series, qs: &[f64]) -> Heatmap {
    let mut rows: Vec<u32> = s
        .points
        .iter()
        .flatten()
        .filter_map(|p| match p {
            Sample::H(h) => Some(h.index.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    rows.sort_unstable();
    rows.dedup();
    let first = s.points.iter().flatten().find_map(|p| match p {
        Sample::H(h) => Some((h.layout, h.scale)),
        _ => None,
    });
    let Some((layout, scale)) = first else {
        return Heatmap {
            buckets: Vec::new(),
            values: Vec::new(),
            quantiles: vec![Vec::new(); qs.len()],
        };
    };
    let buckets = rows
        .iter()
        .map(|&i| {
            let (lo, hi) = layout.range(i as usize);
            (lo as f64 * scale, (hi as f64 + 1.0) * scale)
        })
        .collect();
    let mut values = Vec::with_capacity(s.points.len());
    let mut quantiles = vec![Vec::with_capacity(s.points.len()); qs.len()];
    for p in &s.points {
        let mut col = vec![f64::NAN; rows.len()];
        match p {
            Some(Sample::H(h)) => {
                col.iter_mut().for_each(|c| *c = 0.0);
                for (&i, &v) in h.index.iter().zip(&h.value) {
                    if let Ok(r) = rows.binary_search(&i) {
                        col[r] = v;
                    }
                }
                for (j, q) in qs.iter().enumerate() {
                    quantiles[j].push(h2_quantile(*q, h));
                }
            }
            _ => quantiles.iter_mut().for_each(|v| v.push(f64::NAN)),
        }
        values.push(col);
    }
    Heatmap {
        buckets,
        values,
        quantiles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Layout;

    fn hist(values: &[u64]) -> Hist {
        let layout = Layout::default();
        let mut dense = vec![0u64; layout.buckets()];
        for v in values {
            dense[layout.index(*v)] += 1;
        }
        let b = super::super::source::Buckets::from_dense(&dense);
        Hist {
            layout,
            index: b.index,
            value: b.count.iter().map(|c| *c as f64).collect(),
            scale: 1.0,
        }
    }

    #[test]
    fn h2_quantiles_are_within_a_bucket() {
        let values: Vec<u64> = (1..=10_000).map(|i| i * 1000).collect();
        let h = hist(&values);
        for q in [0.5, 0.9, 0.99, 0.999] {
            let exact = values[((q * values.len() as f64).ceil() as usize) - 1] as f64;
            let got = h2_quantile(q, &h);
            assert!(
                (got - exact).abs() / exact <= 0.125,
                "q {q}: {got} vs {exact}"
            );
        }
        assert!(h2_quantile(0.5, &hist(&[])).is_nan());
        assert_eq!(h2_quantile(-1.0, &h), f64::NEG_INFINITY);
        // Small values have buckets of their own: exact.
        let one = hist(&[7]);
        assert_eq!(h2_quantile(0.5, &one), 7.0);
        assert_eq!(h2_quantile(0.99, &hist(&[0, 0, 0])), 0.0);
    }

    #[test]
    fn classic_quantiles_follow_prometheus() {
        // Prometheus's own test cases (promql/testdata/histograms.test).
        let mut b = vec![(0.1, 1.0), (0.2, 2.0), (f64::INFINITY, 2.0)];
        assert_eq!(bucket_quantile(0.5, &mut b), 0.1);
        let mut b = vec![(1.0, 0.0), (2.0, 10.0), (f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile(0.5, &mut b), 1.5);
        let mut b = vec![(1.0, 10.0), (2.0, 5.0), (f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile(0.9, &mut b), 0.9); // made monotonic
        let mut b = vec![(1.0, 10.0)];
        assert!(bucket_quantile(0.5, &mut b).is_nan()); // no +Inf
        let mut b = vec![(1.0, 10.0), (f64::INFINITY, 20.0)];
        assert_eq!(bucket_quantile(0.99, &mut b), 1.0); // in +Inf: its lower edge
    }

    #[test]
    fn fractions_and_sums() {
        let h = hist(&[10, 20, 30, 40]);
        assert!((fraction(&h, 0.0, 25.0) - 0.5).abs() < 0.05);
        assert!((sum(&h) - 100.0).abs() / 100.0 < 0.07);
    }
}
