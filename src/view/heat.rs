//! A histogram family as a heatmap of its stored buckets: each pixel
//! column is the difference of the cumulative histograms at its two
//! edges (two reads per column, whatever the zoom), so every event of the
//! range lands in exactly one column and a one-second burst of slow
//! events shows in its column at full zoom-out.

use serde::Serialize;

use super::data::{family, round, Cols, Ctx};
use super::sections::Match;
use crate::analysis::frame::delta;
use crate::histogram::Layout;
use crate::query::hist::h2_quantile;
use crate::query::{Hist, Kind};

#[derive(Serialize, Debug)]
pub struct Heat {
    pub source: &'static str,
    /// The rows: each used bucket's `[low, high)` in the chart's unit.
    pub buckets: Vec<[f64; 2]>,
    /// Per column, `[row, events per second]` of its non-empty buckets;
    /// `null` where the column has no data (a gap).
    pub cells: Vec<Option<Vec<(u32, f64)>>>,
    /// Events per second in each column.
    pub rate: Vec<Option<f64>>,
    pub p50: Vec<Option<f64>>,
    pub p99: Vec<Option<f64>>,
    pub p999: Vec<Option<f64>>,
}

/// The merged histogram of `series` between rows `a` and `b` (cumulative
/// at each), bucket counts in `dense`; false when a series reset.
fn merge(
    layout: Layout,
    at_a: &[Option<&crate::query::Buckets>],
    at_b: &[Option<&crate::query::Buckets>],
    dense: &mut [f64],
) -> bool {
    dense.iter_mut().for_each(|d| *d = 0.0);
    let mut any = false;
    for (a, b) in at_a.iter().zip(at_b) {
        let (Some(a), Some(b)) = (a, b) else { continue };
        match delta(layout, a, b) {
            Some(d) => {
                for (&i, &v) in d.index.iter().zip(&d.value) {
                    if let Some(x) = dense.get_mut(i as usize) {
                        *x += v;
                    }
                }
                any = true;
            }
            None => return false,
        }
    }
    any
}

/// The merged histogram of a family between two offsets (for the range
/// table): `None` without data.
pub fn window(
    ctx: &Ctx<'_>,
    metrics: &[&str],
    keep: &[Match],
    scale: f64,
    from: f64,
    to: f64,
) -> anyhow::Result<Option<Hist>> {
    let cols = Cols { from, to, n: 1 };
    let (layout, series) = match histograms(ctx, metrics, keep) {
        Some(x) => x,
        None => return Ok(None),
    };
    let mut bounds = boundaries(ctx, &cols);
    // From before the data: from its first row.
    if bounds[1].is_some() {
        bounds[0] = bounds[0].or(Some(0));
    }
    let (rows, reads) = read(ctx, &series, &bounds)?;
    let mut dense = vec![0.0; layout.buckets()];
    let pick = |r: Option<usize>| -> Vec<Option<&crate::query::Buckets>> {
        reads
            .iter()
            .map(|h| {
                r.and_then(|r| rows.binary_search(&r).ok())
                    .and_then(|j| h[j].as_ref())
            })
            .collect()
    };
    if bounds[0] == bounds[1] || !merge(layout, &pick(bounds[0]), &pick(bounds[1]), &mut dense) {
        return Ok(None);
    }
    Ok(Some(hist(layout, &dense, scale)))
}

fn hist(layout: Layout, dense: &[f64], scale: f64) -> Hist {
    let mut h = Hist {
        layout,
        index: Vec::new(),
        value: Vec::new(),
        scale,
    };
    for (i, &v) in dense.iter().enumerate() {
        if v > 0.0 {
            h.index.push(i as u32);
            h.value.push(v);
        }
    }
    h
}

/// The family's histogram series sharing the first one's layout.
fn histograms(ctx: &Ctx<'_>, metrics: &[&str], keep: &[Match]) -> Option<(Layout, Vec<usize>)> {
    let series = family(ctx, metrics, keep);
    let info = ctx.src.series();
    let layout = series.iter().find_map(|&i| match info[i].kind {
        Kind::Histogram(l) => Some(l),
        _ => None,
    })?;
    let same = series
        .into_iter()
        .filter(|&i| info[i].kind == Kind::Histogram(layout))
        .collect();
    Some((layout, same))
}

/// The last row at or before each column edge.
fn boundaries(ctx: &Ctx<'_>, cols: &Cols) -> Vec<Option<usize>> {
    let ts = ctx.src.timestamps();
    let w = cols.width();
    (0..=cols.n)
        .map(|c| {
            let t = ctx.at(cols.from + c as f64 * w);
            ts.partition_point(|&x| x <= t).checked_sub(1)
        })
        .collect()
}

type Reads = Vec<Vec<Option<crate::query::Buckets>>>;

fn read(
    ctx: &Ctx<'_>,
    series: &[usize],
    bounds: &[Option<usize>],
) -> anyhow::Result<(Vec<usize>, Reads)> {
    let mut rows: Vec<usize> = bounds.iter().flatten().copied().collect();
    rows.sort_unstable();
    rows.dedup();
    let reads = series
        .iter()
        .map(|&i| ctx.src.histograms(i, &rows))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((rows, reads))
}

/// The heatmap of a family over `cols`; `None` when the source lacks it.
pub fn heatmap(
    ctx: &Ctx<'_>,
    metrics: &[&str],
    keep: &[Match],
    scale: f64,
    cols: &Cols,
    source: &'static str,
) -> anyhow::Result<Option<Heat>> {
    let Some((layout, series)) = histograms(ctx, metrics, keep) else {
        return Ok(None);
    };
    let ts = ctx.src.timestamps();
    let ends = boundaries(ctx, cols);
    // A column's first row: after the last gap inside it, if any (what
    // happened across a gap has no time, as for the lines' rates).
    let gap = (ctx.gap() * 1e9) as i64;
    let starts: Vec<Option<usize>> = (0..cols.n)
        .map(|c| {
            let (a, b) = (ends[c]?, ends[c + 1]?);
            Some(
                (a + 1..=b)
                    .rev()
                    .find(|&j| ts[j] - ts[j - 1] > gap)
                    .unwrap_or(a),
            )
        })
        .collect();
    let all: Vec<Option<usize>> = ends.iter().chain(&starts).copied().collect();
    let (rows, reads) = read(ctx, &series, &all)?;
    let pick = |r: usize| -> Vec<Option<&crate::query::Buckets>> {
        let j = rows.binary_search(&r).ok();
        reads
            .iter()
            .map(|h| j.and_then(|j| h[j].as_ref()))
            .collect()
    };
    let mut dense = vec![0.0; layout.buckets()];
    let mut used = vec![false; layout.buckets()];
    let mut columns: Vec<Option<Vec<(u32, f64)>>> = Vec::with_capacity(cols.n);
    let mut out = Heat {
        source,
        buckets: Vec::new(),
        cells: Vec::new(),
        rate: Vec::with_capacity(cols.n),
        p50: Vec::with_capacity(cols.n),
        p99: Vec::with_capacity(cols.n),
        p999: Vec::with_capacity(cols.n),
    };
    for c in 0..cols.n {
        let col = match (starts[c], ends[c + 1]) {
            (Some(a), Some(b)) if a != b && merge(layout, &pick(a), &pick(b), &mut dense) => {
                let secs = ((ts[b] - ts[a]) as f64 / 1e9).max(1e-9);
                let h = hist(layout, &dense, scale);
                let q = |p| Some(round(h2_quantile(p, &h))).filter(|v| v.is_finite());
                out.p50.push(q(0.5));
                out.p99.push(q(0.99));
                out.p999.push(q(0.999));
                out.rate.push(Some(round(h.total() / secs)));
                for &i in &h.index {
                    used[i as usize] = true;
                }
                Some(
                    h.index
                        .iter()
                        .zip(&h.value)
                        .map(|(&i, &v)| (i, round(v / secs)))
                        .collect::<Vec<_>>(),
                )
            }
            _ => {
                out.p50.push(None);
                out.p99.push(None);
                out.p999.push(None);
                out.rate.push(None);
                None
            }
        };
        columns.push(col);
    }
    // Rows: the used buckets only, renumbered.
    let mut row_of = vec![u32::MAX; layout.buckets()];
    for (i, _) in used.iter().enumerate().filter(|(_, u)| **u) {
        row_of[i] = out.buckets.len() as u32;
        let (lo, hi) = layout.range(i);
        out.buckets
            .push([lo as f64 * scale, (hi as f64 + 1.0) * scale]);
    }
    out.cells = columns
        .into_iter()
        .map(|c| {
            c.map(|cells| {
                cells
                    .into_iter()
                    .map(|(i, v)| (row_of[i as usize], v))
                    .collect()
            })
        })
        .collect();
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{Buckets, SeriesInfo, Source};
    use std::ops::Range;

    /// A day of one histogram at 1 s: 100 events of ~1 µs a second, and
    /// one second with 50 events of ~10 ms.
    struct Day {
        info: Vec<SeriesInfo>,
        ts: Vec<i64>,
        layout: Layout,
    }

    impl Source for Day {
        fn series(&self) -> &[SeriesInfo] {
            &self.info
        }
        fn timestamps(&self) -> &[i64] {
            &self.ts
        }
        fn interval(&self) -> Option<std::time::Duration> {
            Some(std::time::Duration::from_secs(1))
        }
        fn scalars(&self, _: usize, _: Range<usize>) -> anyhow::Result<Vec<Option<f64>>> {
            anyhow::bail!("none")
        }
        fn histograms(&self, _: usize, rows: &[usize]) -> anyhow::Result<Vec<Option<Buckets>>> {
            let (fast, slow) = (self.layout.index(1000), self.layout.index(10_000_000));
            Ok(rows
                .iter()
                .map(|&r| {
                    let spikes = if r > 43_210 { 50 } else { 0 };
                    Some(Buckets {
                        index: vec![fast as u32, slow as u32],
                        count: vec![100 * r as u64, spikes],
                    })
                })
                .collect())
        }
    }

    #[test]
    fn a_one_second_burst_in_a_day_has_its_column() {
        let layout = Layout::default();
        let day = Day {
            info: vec![SeriesInfo {
                metric: "lat".into(),
                labels: vec![],
                kind: Kind::Histogram(layout),
                unit: Some("nanoseconds".into()),
            }],
            ts: (0..86_400).map(|i| i * 1_000_000_000).collect(),
            layout,
        };
        let ctx = Ctx {
            src: &day,
            base: 0,
            cgroup: None,
        };
        let cols = Cols::new(0.0, 86_399.0, 1200, 1.0);
        let h = heatmap(&ctx, &["lat"], &[], 1e-9, &cols, "A")
            .unwrap()
            .unwrap();
        assert_eq!(h.buckets.len(), 2);
        let c = cols.col(43_211.0).unwrap();
        let slow: Vec<usize> = (0..cols.n)
            .filter(|&i| {
                h.cells[i]
                    .as_ref()
                    .unwrap()
                    .iter()
                    .any(|&(r, v)| r == 1 && v > 0.0)
            })
            .collect();
        assert_eq!(slow, vec![c], "the burst is in one column, its own");
        assert!(h.p999[c].unwrap() > 0.009);
        assert!(h.p50[c].unwrap() < 2e-6);
    }
}
