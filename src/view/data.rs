//! A section's line charts as the page draws them: each family's series
//! per row (counters as the rate between two rows, gauges as they are),
//! summed per group, then reduced to the pixel columns of the chart as
//! min, median and max — so a one-row spike in a day shows at full
//! zoom-out — with empty columns where the data has gaps.

use std::ops::Range;

use serde::Serialize;

use super::sections::{Match, Part};
use crate::query::{Kind, SeriesInfo, Source};

/// Columns a chart is cut into at most, whatever the page asks.
pub const MAX_COLUMNS: usize = 4000;

/// A source with what the page chose: its time origin and cgroup.
pub struct Ctx<'a> {
    pub src: &'a dyn Source,
    /// The time offsets count from (ns since the epoch).
    pub base: i64,
    pub cgroup: Option<&'a str>,
}

impl Ctx<'_> {
    /// Seconds between rows: the recording's own interval, else the
    /// median spacing of its rows, else 1 s.
    pub fn interval(&self) -> f64 {
        if let Some(i) = self.src.interval() {
            return i.as_secs_f64().max(1e-3);
        }
        let ts = self.src.timestamps();
        let mut d: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
        if d.is_empty() {
            return 1.0;
        }
        let mid = d.len() / 2;
        (*d.select_nth_unstable(mid).1 as f64 / 1e9).max(1e-3)
    }

    /// Two rows further apart than this have a gap between them.
    pub fn gap(&self) -> f64 {
        self.interval() * 2.5
    }

    /// A row's time as an offset (s).
    pub fn offset(&self, t: i64) -> f64 {
        (t - self.base) as f64 / 1e9
    }

    pub fn at(&self, offset: f64) -> i64 {
        // `as` saturates: an absurd offset from the page cannot overflow.
        self.base.saturating_add((offset * 1e9).round() as i64)
    }

    /// The rows whose time lies in `[from, to]` (offsets).
    pub fn rows(&self, from: f64, to: f64) -> Range<usize> {
        crate::query::rows_between(self.src.timestamps(), self.at(from), self.at(to))
    }
}

/// The pixel columns of a range: `n` columns of equal width from `from`
/// to `to` (offsets, s), each column `(edge, next edge]` (the first one
/// includes `from`), as wide as 1.5 intervals at least, so that rows a
/// few ms late or early never leave a column empty: only a gap does.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Cols {
    pub from: f64,
    pub to: f64,
    pub n: usize,
}

impl Cols {
    pub fn new(from: f64, to: f64, px: usize, interval: f64) -> Cols {
        let span = (to - from).max(interval);
        let widest = (span / (1.5 * interval)).floor() as usize;
        Cols {
            from,
            to: from + span,
            n: px.min(widest).clamp(1, MAX_COLUMNS),
        }
    }

    pub fn width(&self) -> f64 {
        (self.to - self.from) / self.n as f64
    }

    /// The column of an offset: a row on an edge belongs to the column
    /// it ends, as in the heatmaps.
    pub fn col(&self, offset: f64) -> Option<usize> {
        if offset < self.from || offset > self.to {
            return None;
        }
        let x = (offset - self.from) / self.width();
        Some((x.ceil() as usize).saturating_sub(1).min(self.n - 1))
    }
}

/// One line of a chart: per column, min, median and max of its rows
/// (`null` where the column has none).
#[derive(Serialize, Debug)]
pub struct Line {
    pub name: String,
    /// "A" or "B".
    pub source: &'static str,
    pub min: Vec<Option<f64>>,
    pub med: Vec<Option<f64>>,
    pub max: Vec<Option<f64>>,
}

/// One group of a part: its name and a value per row.
pub struct Group {
    pub name: String,
    pub values: Vec<f64>,
}

impl Group {
    pub fn mean(&self) -> f64 {
        let f: Vec<f64> = self
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if f.is_empty() {
            f64::NEG_INFINITY
        } else {
            f.iter().sum::<f64>() / f.len() as f64
        }
    }
}

fn keeps(ctx: &Ctx<'_>, keep: &[Match], s: &SeriesInfo) -> bool {
    let label = |k: &str| {
        s.labels
            .iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    };
    keep.iter().all(|m| match *m {
        Match::Eq(k, v) => label(k) == v,
        Match::Ne(k, v) => label(k) != v,
        Match::Cgroup => ctx.cgroup.is_some_and(|c| label("id") == c),
    })
}

/// The series of the first of `metrics` the source has that `keep`
/// accepts (none: the family is missing).
pub fn family(ctx: &Ctx<'_>, metrics: &[&str], keep: &[Match]) -> Vec<usize> {
    let series = ctx.src.series();
    for m in metrics {
        let of: Vec<usize> = (0..series.len())
            .filter(|&i| series[i].metric == *m)
            .collect();
        if !of.is_empty() {
            return of
                .into_iter()
                .filter(|&i| keeps(ctx, keep, &series[i]))
                .collect();
        }
    }
    Vec::new()
}

/// Whether the source has any of `metrics` at all.
pub fn has(ctx: &Ctx<'_>, metrics: &[&str]) -> bool {
    ctx.src
        .series()
        .iter()
        .any(|s| metrics.contains(&s.metric.as_str()))
}

/// A part's groups over `rows`: counters as per-second rates between a
/// row and the one before (none across a gap or a reset), gauges as they
/// are, scaled, and summed per group of `by`. A row where some of a
/// group's series have a value and others none has no sum: a partial sum
/// would draw as a dip that never happened.
pub fn groups(
    ctx: &Ctx<'_>,
    part: &Part,
    rows: Range<usize>,
    prefix: bool,
) -> anyhow::Result<Vec<Group>> {
    let series = family(ctx, part.metrics, part.keep);
    let ts = ctx.src.timestamps();
    let gap = ctx.gap();
    let lo = rows.start.saturating_sub(1);
    let mut out: Vec<Group> = Vec::new();
    // Per group: values seen at each row, and its series.
    let mut seen: Vec<(Vec<u32>, u32)> = Vec::new();
    for i in series {
        let info = &ctx.src.series()[i];
        if matches!(info.kind, Kind::Histogram(_)) {
            continue;
        }
        let v = ctx.src.scalars(i, lo..rows.end)?;
        let at = |r: usize| v.get(r - lo).copied().flatten();
        let values: Vec<f64> = rows
            .clone()
            .map(|r| {
                let Some(cur) = at(r) else {
                    return f64::NAN;
                };
                if info.kind == Kind::Gauge {
                    return cur * part.scale;
                }
                if r == 0 {
                    return f64::NAN;
                }
                let dt = (ts[r] - ts[r - 1]) as f64 / 1e9;
                match at(r - 1) {
                    Some(prev) if cur >= prev && dt > 0.0 && dt <= gap => {
                        (cur - prev) / dt * part.scale
                    }
                    _ => f64::NAN,
                }
            })
            .collect();
        let name = group_name(part, info, prefix);
        let k = match out.iter().position(|g| g.name == name) {
            Some(k) => k,
            None => {
                out.push(Group {
                    name,
                    values: vec![f64::NAN; values.len()],
                });
                seen.push((vec![0; values.len()], 0));
                out.len() - 1
            }
        };
        let (counts, members) = &mut seen[k];
        *members += 1;
        for ((a, b), n) in out[k].values.iter_mut().zip(&values).zip(counts.iter_mut()) {
            if b.is_finite() {
                *a = if a.is_nan() { *b } else { *a + b };
                *n += 1;
            }
        }
    }
    for (g, (counts, members)) in out.iter_mut().zip(&seen) {
        for (v, &n) in g.values.iter_mut().zip(counts) {
            if n != 0 && n != *members {
                *v = f64::NAN;
            }
        }
    }
    Ok(out)
}

fn group_name(part: &Part, info: &SeriesInfo, prefix: bool) -> String {
    let whole = part.name.unwrap_or(&info.metric);
    if part.by.is_empty() {
        return whole.to_string();
    }
    let values: Vec<&str> = part
        .by
        .iter()
        .map(|k| {
            info.labels
                .iter()
                .find(|(n, _)| n == k)
                .map_or("", |(_, v)| v.as_str())
        })
        .filter(|v| !v.is_empty())
        .collect();
    let v = values.join(" ");
    if prefix {
        format!("{whole} {v}")
    } else {
        v
    }
}

/// Min, median and max of the values falling in each column (`times`
/// are the values' offsets).
pub fn decimate(
    cols: &Cols,
    times: &[f64],
    values: &[f64],
    name: String,
    source: &'static str,
) -> Line {
    let mut line = Line {
        name,
        source,
        min: vec![None; cols.n],
        med: vec![None; cols.n],
        max: vec![None; cols.n],
    };
    let mut bucket: Vec<f64> = Vec::new();
    let mut current = usize::MAX;
    let mut flush = |c: usize, b: &mut Vec<f64>| {
        if c == usize::MAX || b.is_empty() {
            b.clear();
            return;
        }
        let mid = b.len() / 2;
        let med = *b.select_nth_unstable_by(mid, f64::total_cmp).1;
        let (lo, hi) = b
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, z), &v| {
                (a.min(v), z.max(v))
            });
        line.min[c] = Some(round(lo));
        line.med[c] = Some(round(med));
        line.max[c] = Some(round(hi));
        b.clear();
    };
    for (&t, &v) in times.iter().zip(values) {
        let Some(c) = cols.col(t) else { continue };
        if c != current {
            flush(current, &mut bucket);
            current = c;
        }
        if v.is_finite() {
            bucket.push(v);
        }
    }
    flush(current, &mut bucket);
    line
}

/// Six significant digits: the page draws pixels, and JSON stays small.
pub fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let m = 10f64.powi(5 - x.abs().log10().floor() as i32);
    (x * m).round() / m
}

/// The offsets of `rows`.
pub fn times(ctx: &Ctx<'_>, rows: Range<usize>) -> Vec<f64> {
    ctx.src.timestamps()[rows]
        .iter()
        .map(|&t| ctx.offset(t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_row_spike_in_a_day_shows_at_full_zoom_out() {
        let n = 86_400;
        let times: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let mut values = vec![10.0; n];
        values[43_210] = 5000.0;
        let cols = Cols::new(0.0, n as f64 - 1.0, 1200, 1.0);
        assert_eq!(cols.n, 1200);
        let line = decimate(&cols, &times, &values, "x".into(), "A");
        let c = cols.col(43_210.0).unwrap();
        assert_eq!(line.max[c], Some(5000.0));
        assert_eq!(line.med[c], Some(10.0));
        assert_eq!(line.max.iter().flatten().filter(|&&v| v > 10.0).count(), 1);
    }

    #[test]
    fn gaps_are_empty_columns_and_columns_never_split_a_row() {
        let times: Vec<f64> = (0..100).chain(200..300).map(|i| i as f64).collect();
        let values = vec![1.0; times.len()];
        let cols = Cols::new(0.0, 299.0, 3000, 1.0);
        assert_eq!(cols.n, 199, "columns 1.5 rows wide at least");
        let line = decimate(&cols, &times, &values, "x".into(), "A");
        assert!(line.med[cols.col(150.0).unwrap()].is_none());
        // Rows a little late or early still fill every column.
        let jittered: Vec<f64> = (0..300)
            .map(|i| i as f64 + [0.0, 0.04, -0.03][i % 3])
            .collect();
        let line = decimate(&cols, &jittered, &vec![1.0; 300], "x".into(), "A");
        assert!(line.med[1..cols.n - 1].iter().all(Option::is_some));
        assert!(line.med[cols.col(50.0).unwrap()].is_some());
        assert!(line.med[cols.col(250.0).unwrap()].is_some());
    }

    #[test]
    fn rounding_keeps_six_digits() {
        assert_eq!(round(1.234_567_89), 1.234_57);
        assert_eq!(round(123_456_789.0), 123_457_000.0);
        assert_eq!(round(0.0), 0.0);
    }
}
