//! The evaluator: every node of the expression at every step of the range
//! at once. Selectors read only the rows their steps need (a range query
//! over a day reads one row per step for an instant selector, the rows of
//! each window for a range one), and what is read is counted against a
//! budget, so a query over a large file fails with a clear error instead
//! of taking the host's memory.

use std::cell::Cell;
use std::collections::BTreeMap;

use promql_parser::parser::{self, Expr, MatrixSelector, Offset, VectorSelector};

use super::select::{self, Entry, View};
use super::source::{rows_between, Buckets, Kind, Source};
use super::value::{Hist, Sample, Series, Val};
use super::QueryError;

/// The steps of a range: `start + k * step` for `k < steps`, ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub start: i64,
    pub step: i64,
    pub steps: usize,
}

impl Grid {
    pub fn at(&self, k: usize) -> i64 {
        self.start + k as i64 * self.step
    }

    pub fn end(&self) -> i64 {
        self.at(self.steps.saturating_sub(1))
    }
}

/// Prometheus's default lookback for instant selectors: a series without a
/// sample for this long is absent.
pub const LOOKBACK: i64 = 5 * 60 * 1_000_000_000;

pub struct Eval<'a> {
    pub src: &'a dyn Source,
    pub catalog: Vec<Entry>,
    pub grid: Grid,
    pub lookback: i64,
    /// Samples read so far (a histogram counts its buckets) and the cap.
    read: Cell<usize>,
    limit: usize,
}

fn offset_ns(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_nanos() as i64,
        Some(Offset::Neg(d)) => -(d.as_nanos() as i64),
    }
}

impl<'a> Eval<'a> {
    pub fn new(src: &'a dyn Source, grid: Grid, limit: usize) -> Eval<'a> {
        Eval {
            catalog: select::catalog(src),
            src,
            grid,
            lookback: LOOKBACK,
            read: Cell::new(0),
            limit,
        }
    }

    /// Samples read so far.
    pub fn read(&self) -> usize {
        self.read.get()
    }

    fn charge(&self, n: usize) -> Result<(), QueryError> {
        let total = self.read.get() + n;
        self.read.set(total);
        if total > self.limit {
            return Err(QueryError::TooLarge(format!(
                "the query reads more than {} samples; narrow the selectors (labels), the range, or raise the step",
                self.limit
            )));
        }
        Ok(())
    }

    pub fn eval(&self, e: &Expr) -> Result<Val, QueryError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.grid.steps])),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(v) => Ok(Val::Vector(super::binary::negate(v)?)),
                Val::String(_) => Err(QueryError::Eval("cannot negate a string".into())),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.instant(vs)?)),
            Expr::MatrixSelector(_) => Err(QueryError::Unsupported(
                "a range selector (x[5m]) is only an argument of a function such as rate(); a range query returns the series over time already".into(),
            )),
            Expr::Subquery(_) => Err(QueryError::Unsupported(
                "subqueries (expr[5m:1m]) are not supported".into(),
            )),
            Expr::Aggregate(a) => super::aggregate::eval(self, a),
            Expr::Binary(b) => super::binary::eval(self, b),
            Expr::Call(c) => super::functions::eval(self, c),
            Expr::Extension(_) => Err(QueryError::Unsupported(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// The entries a selector names; an unknown name is an error that says
    /// which names exist nearby.
    pub fn entries(&self, vs: &VectorSelector) -> Result<Vec<&Entry>, QueryError> {
        if vs.at.is_some() {
            return Err(QueryError::Unsupported(
                "the @ modifier is not supported; use the range's start and end".into(),
            ));
        }
        let name = vs
            .name
            .as_deref()
            .or_else(|| vs.matchers.matchers.iter().find_map(select::name_matcher));
        if !select::is_bounded(vs.name.as_deref(), &vs.matchers) {
            return Err(QueryError::Parse(
                "a selector needs a metric name or a matcher that does not match the empty string"
                    .into(),
            ));
        }
        let found = select::select(&self.catalog, vs.name.as_deref(), &vs.matchers);
        if found.is_empty() {
            if let Some(n) = name {
                if !self.catalog.iter().any(|e| e.name() == n) {
                    let near = select::near(&self.catalog, n);
                    return Err(QueryError::UnknownMetric(format!(
                        "no metric `{n}` in this recording{}",
                        if near.is_empty() {
                            String::new()
                        } else {
                            format!("; similar: {}", near.join(", "))
                        }
                    )));
                }
            }
        }
        Ok(found)
    }

    /// An instant selector: at each step the latest sample within the
    /// lookback (at or before the step, minus the offset).
    pub fn instant(&self, vs: &VectorSelector) -> Result<Vec<Series>, QueryError> {
        let entries = self.entries(vs)?;
        let off = offset_ns(&vs.offset);
        let ts = self.src.timestamps();
        let grid = self.grid;
        // Per step, the last row at or before it.
        let last_rows: Vec<Option<usize>> = (0..grid.steps)
            .map(|k| {
                let r = ts.partition_point(|&t| t <= grid.at(k) - off);
                r.checked_sub(1)
            })
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for (series, group) in by_series(&entries) {
            let info = &self.src.series()[series];
            let values = match info.kind {
                Kind::Counter | Kind::Gauge => {
                    let rows = rows_between(ts, grid.start - off - self.lookback, grid.end() - off);
                    self.charge(rows.len() * group.len())?;
                    let v = self
                        .src
                        .scalars(series, rows.clone())
                        .map_err(QueryError::source)?;
                    Loaded::Scalars(rows.start, v)
                }
                Kind::Histogram(layout) => {
                    let mut rows: Vec<usize> = last_rows.iter().flatten().copied().collect();
                    rows.dedup();
                    let mut h = self.load_histograms(series, &rows)?;
                    // A step's row without the series (one that came and
                    // went): the rows before it within the lookback too.
                    let mut back: Vec<usize> = Vec::new();
                    for (r, b) in rows.iter().zip(&h) {
                        if b.is_none() {
                            let oldest = ts[*r] - self.lookback;
                            let from = ts.partition_point(|&t| t < oldest);
                            back.extend((from..*r).filter(|x| rows.binary_search(x).is_err()));
                        }
                    }
                    back.sort_unstable();
                    back.dedup();
                    if !back.is_empty() {
                        let more = self.load_histograms(series, &back)?;
                        let mut all: Vec<(usize, Option<Buckets>)> = rows
                            .into_iter()
                            .zip(h)
                            .chain(back.into_iter().zip(more))
                            .collect();
                        all.sort_by_key(|(r, _)| *r);
                        (rows, h) = all.into_iter().unzip();
                    }
                    Loaded::Histograms(layout, rows, h)
                }
            };
            for e in group {
                let mut points = Vec::with_capacity(grid.steps);
                for (k, last) in last_rows.iter().enumerate() {
                    let at = grid.at(k) - off;
                    let p = last.and_then(|r| values.latest(ts, r, at - self.lookback, e.view));
                    points.push(p);
                }
                if points.iter().any(Option::is_some) {
                    out.push(Series {
                        labels: e.labels.clone(),
                        points,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The samples of each entry a range selector names, for the windows
    /// `[step - offset - range, step - offset]` of every step, with the
    /// entry's labels; `f` turns one window (and its bounds) into a sample.
    pub fn ranged(
        &self,
        ms: &MatrixSelector,
        mut f: impl FnMut(&[(i64, Sample)], i64, i64) -> Option<Sample>,
    ) -> Result<Vec<Series>, QueryError> {
        let vs = &ms.vs;
        let entries = self.entries(vs)?;
        let off = offset_ns(&vs.offset);
        let range = ms.range.as_nanos() as i64;
        let ts = self.src.timestamps();
        let grid = self.grid;
        let windows: Vec<std::ops::Range<usize>> = (0..grid.steps)
            .map(|k| {
                let end = grid.at(k) - off;
                rows_between(ts, end - range, end)
            })
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for (series, group) in by_series(&entries) {
            let info = &self.src.series()[series];
            let values = match info.kind {
                Kind::Counter | Kind::Gauge => {
                    let first = windows.iter().map(|w| w.start).min().unwrap_or(0);
                    let last = windows.iter().map(|w| w.end).max().unwrap_or(0);
                    let rows = first..last.max(first);
                    self.charge(rows.len() * group.len())?;
                    let v = self
                        .src
                        .scalars(series, rows.clone())
                        .map_err(QueryError::source)?;
                    Loaded::Scalars(rows.start, v)
                }
                Kind::Histogram(layout) => {
                    let mut rows: Vec<usize> = windows.iter().flat_map(|w| w.clone()).collect();
                    rows.sort_unstable();
                    rows.dedup();
                    let h = self.load_histograms(series, &rows)?;
                    Loaded::Histograms(layout, rows, h)
                }
            };
            for e in group {
                let mut points = Vec::with_capacity(grid.steps);
                let mut window: Vec<(i64, Sample)> = Vec::new();
                for (k, w) in windows.iter().enumerate() {
                    window.clear();
                    for r in w.clone() {
                        if let Some(s) = values.at(r, e.view) {
                            window.push((ts[r], s));
                        }
                    }
                    let end = grid.at(k) - off;
                    points.push(if window.is_empty() {
                        None
                    } else {
                        f(&window, end - range, end)
                    });
                }
                if points.iter().any(Option::is_some) {
                    out.push(Series {
                        labels: e.labels.clone(),
                        points,
                    });
                }
            }
        }
        Ok(out)
    }

    fn load_histograms(
        &self,
        series: usize,
        rows: &[usize],
    ) -> Result<Vec<Option<Buckets>>, QueryError> {
        let h = self
            .src
            .histograms(series, rows)
            .map_err(QueryError::source)?;
        let n: usize = h.iter().flatten().map(|b| b.index.len().max(1)).sum();
        self.charge(n)?;
        Ok(h)
    }
}

/// Entries grouped by the series they read, so a histogram's `_bucket`
/// series (one per `le`) read its rows once.
fn by_series<'e>(entries: &[&'e Entry]) -> BTreeMap<usize, Vec<&'e Entry>> {
    let mut m: BTreeMap<usize, Vec<&Entry>> = BTreeMap::new();
    for e in entries {
        m.entry(e.series).or_default().push(e);
    }
    m
}

/// The values of one series at some rows.
enum Loaded {
    /// Row `first + i` is `values[i]`.
    Scalars(usize, Vec<Option<f64>>),
    /// `values[i]` is row `rows[i]`.
    Histograms(crate::histogram::Layout, Vec<usize>, Vec<Option<Buckets>>),
}

impl Loaded {
    /// The sample of row `r` as `view` reads it.
    fn at(&self, r: usize, view: View) -> Option<Sample> {
        match self {
            Loaded::Scalars(first, v) => {
                let x = (*v.get(r.checked_sub(*first)?)?)?;
                Some(Sample::F(match view {
                    View::Scaled(f) => x * f,
                    _ => x,
                }))
            }
            Loaded::Histograms(layout, rows, v) => {
                let i = rows.binary_search(&r).ok()?;
                let b = v[i].as_ref()?;
                Some(histogram_view(*layout, b, view))
            }
        }
    }

    /// The latest sample at or before row `r` not older than `oldest`
    /// (ns), among the rows read.
    fn latest(&self, ts: &[i64], r: usize, oldest: i64, view: View) -> Option<Sample> {
        match self {
            Loaded::Scalars(first, _) => {
                let mut r = r;
                while r >= *first && ts[r] >= oldest {
                    if let Some(s) = self.at(r, view) {
                        return Some(s);
                    }
                    r = r.checked_sub(1)?;
                }
                None
            }
            Loaded::Histograms(layout, rows, v) => {
                let end = rows.partition_point(|&x| x <= r);
                (0..end)
                    .rev()
                    .take_while(|&i| ts[rows[i]] >= oldest)
                    .find_map(|i| v[i].as_ref().map(|b| histogram_view(*layout, b, view)))
            }
        }
    }
}

/// A histogram row as `view` reads it.
fn histogram_view(layout: crate::histogram::Layout, b: &Buckets, view: View) -> Sample {
    match view {
        View::Bucket { below } => Sample::F(
            b.index
                .iter()
                .zip(&b.count)
                .filter(|(i, _)| **i < below)
                .map(|(_, c)| *c as f64)
                .sum(),
        ),
        View::Count => Sample::F(b.total() as f64),
        View::Raw | View::Scaled(_) => Sample::H(Hist {
            layout,
            index: b.index.clone(),
            value: b.count.iter().map(|c| *c as f64).collect(),
            scale: 1.0,
        }),
    }
}

/// A PromQL parse, with the parser's message.
pub fn parse(q: &str) -> Result<Expr, QueryError> {
    parser::parse(q).map_err(|e| QueryError::Parse(e.trim().to_string()))
}
