//! The query engine every reader of Sonde's data shares (`sonde query`,
//! `sonde dump`, `sonde mcp`, the viewer): PromQL over a [`Source`] — a
//! recording read on demand, or a live agent's snapshots in memory —
//! evaluated with Prometheus 2's semantics, on our own evaluator over
//! `promql-parser`. What it does not support is refused with an error
//! that names the construct, never answered differently from Prometheus.
//!
//! Why our own evaluator rather than `metriken-query` (Rezolus's): measured
//! and read, it reads only gauges bare, refuses `increase`, `topk` and
//! comparisons, matches `=~` literally, interpolates `rate` instead of
//! extrapolating as Prometheus does, and ignores `offset`; answers that
//! differ from Prometheus's on the same data are worse than refusals.

mod aggregate;
mod binary;
mod eval;
mod functions;
pub mod hist;
mod memory;
mod select;
mod source;
pub mod time;
mod value;

use std::fmt;

use promql_parser::parser::Expr;

pub use eval::{parse, Grid, LOOKBACK};
pub use memory::Memory;
pub use select::View;
pub use source::{rows_between, Buckets, Kind, SeriesInfo, Source};
pub use value::{display, label, Hist, Labels, Sample, Series, Val, NAME};

/// Why a query has no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryError {
    /// Not PromQL, or not a query the engine can evaluate as written.
    Parse(String),
    /// Valid PromQL the engine does not support.
    Unsupported(String),
    /// A metric name the source does not have.
    UnknownMetric(String),
    /// The data does not allow the operation (e.g. ambiguous matching).
    Eval(String),
    /// Over the read budget.
    TooLarge(String),
    /// The source could not be read.
    Source(String),
}

impl QueryError {
    pub fn source(e: anyhow::Error) -> QueryError {
        QueryError::Source(format!("{e:#}"))
    }

    /// A short name of the kind, for tools that report it.
    pub fn kind(&self) -> &'static str {
        match self {
            QueryError::Parse(_) => "parse",
            QueryError::Unsupported(_) => "unsupported",
            QueryError::UnknownMetric(_) => "unknown_metric",
            QueryError::Eval(_) => "evaluation",
            QueryError::TooLarge(_) => "too_large",
            QueryError::Source(_) => "source",
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Parse(m) => write!(f, "cannot parse the query: {m}"),
            QueryError::Unsupported(m)
            | QueryError::UnknownMetric(m)
            | QueryError::Eval(m)
            | QueryError::TooLarge(m) => f.write_str(m),
            QueryError::Source(m) => write!(f, "cannot read the data: {m}"),
        }
    }
}

impl std::error::Error for QueryError {}

/// A timestamp (ns) down to the millisecond. Sources keep times at
/// Prometheus's resolution: windows and extrapolation then see the times
/// Prometheus would, and answers over a recording equal Prometheus's over
/// the same samples.
pub fn to_millis(t: i64) -> i64 {
    t.div_euclid(1_000_000) * 1_000_000
}

/// Samples one query may read (a histogram counts its non-empty buckets):
/// about 1.2 GB of values at the most, well beyond a day of the full agent
/// at 1 s for any one family.
pub const READ_LIMIT: usize = 50_000_000;

/// A query's answer over a grid of steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub grid: Grid,
    pub value: Val,
    /// Samples the query read.
    pub read: usize,
}

/// Evaluates `expr` at every step of `grid`.
pub fn range(src: &dyn Source, expr: &str, grid: Grid) -> Result<Answer, QueryError> {
    range_with(src, expr, grid, READ_LIMIT)
}

/// [`range`] with another read budget.
pub fn range_with(
    src: &dyn Source,
    expr: &str,
    grid: Grid,
    limit: usize,
) -> Result<Answer, QueryError> {
    if grid.steps == 0 {
        return Err(QueryError::Eval("the range has no step".into()));
    }
    if grid.step <= 0 && grid.steps > 1 {
        return Err(QueryError::Eval("the step must be positive".into()));
    }
    let e = parse(expr)?;
    let ev = eval::Eval::new(src, grid, limit);
    let value = ev.eval(&e)?;
    Ok(Answer {
        grid,
        value,
        read: ev.read(),
    })
}

/// Evaluates `expr` at one time (ns since the epoch).
pub fn instant(src: &dyn Source, expr: &str, at: i64) -> Result<Answer, QueryError> {
    range(
        src,
        expr,
        Grid {
            start: at,
            step: 1,
            steps: 1,
        },
    )
}

/// Every series name and label set a source answers to (registry and
/// Prometheus names), for listings.
pub fn names(src: &dyn Source) -> Vec<(usize, View, Labels)> {
    select::catalog(src)
        .into_iter()
        .map(|e| (e.series, e.view, e.labels))
        .collect()
}

#[cfg(test)]
mod tests;

/// A series a selector names, as a dump reads it.
#[derive(Clone, Debug)]
pub struct Selected {
    pub series: usize,
    pub view: View,
    /// Its name (`__name__`) and labels under that name.
    pub labels: Labels,
}

/// The series a vector selector (`name{label="value", …}`) names.
pub fn select(src: &dyn Source, selector: &str) -> Result<Vec<Selected>, QueryError> {
    let Expr::VectorSelector(vs) = parse(selector)? else {
        return Err(QueryError::Parse(format!(
            "`{selector}` is not a series selector such as cpu_usage{{state=\"user\"}}"
        )));
    };
    let ev = eval::Eval::new(
        src,
        Grid {
            start: 0,
            step: 1,
            steps: 1,
        },
        READ_LIMIT,
    );
    Ok(ev
        .entries(&vs)?
        .into_iter()
        .map(|e| Selected {
            series: e.series,
            view: e.view,
            labels: e.labels.clone(),
        })
        .collect())
}

/// How `view` turns a histogram row into a number (`None` for the raw
/// histogram itself).
pub fn bucket_value(view: View, b: &Buckets) -> Option<f64> {
    match view {
        View::Bucket { below } => Some(
            b.index
                .iter()
                .zip(&b.count)
                .filter(|(i, _)| **i < below)
                .map(|(_, c)| *c as f64)
                .sum(),
        ),
        View::Count => Some(b.total() as f64),
        _ => None,
    }
}
