//! Printing an answer: an aligned table for people, CSV (one row per
//! sample) and JSON in the shape of Prometheus's HTTP API for programs.

use std::io::{self, Write};

use crate::query::hist::h2_quantile;
use crate::query::time::{rfc3339, unix_seconds};
use crate::query::{display, Answer, Hist, Sample, Series, Val};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A number for people: six significant digits (CSV and JSON keep every
/// digit).
fn short(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return number(v);
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-4..15).contains(&magnitude) {
        return format!("{v:.5e}");
    }
    let decimals = (5 - magnitude).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn hist_text(h: &Hist) -> String {
    format!(
        "histogram: count {}, p50 {}, p99 {}",
        short(h.total()),
        short(h2_quantile(0.5, h)),
        short(h2_quantile(0.99, h))
    )
}

fn sample_text(s: &Sample) -> String {
    match s {
        Sample::F(v) => short(*v),
        Sample::H(h) => hist_text(h),
    }
}

/// Series of an answer, a scalar as one series without labels.
fn as_series(a: &Answer) -> Vec<Series> {
    match &a.value {
        Val::Vector(v) => {
            let mut v = v.clone();
            v.sort_by_key(|s| display(&s.labels));
            v
        }
        Val::Scalar(x) => vec![Series {
            labels: Vec::new(),
            points: x.iter().map(|v| Some(Sample::F(*v))).collect(),
        }],
        Val::String(s) => vec![Series {
            labels: vec![("value".into(), s.clone())],
            points: vec![None; a.grid.steps],
        }],
    }
}

pub fn write(out: &mut dyn Write, a: &Answer, format: Format) -> io::Result<()> {
    match format {
        Format::Table => table(out, a),
        Format::Csv => csv(out, a),
        Format::Json => json(out, a),
    }
}

fn table(out: &mut dyn Write, a: &Answer) -> io::Result<()> {
    let series = as_series(a);
    if series.is_empty() {
        return writeln!(out, "(no series)");
    }
    let names: Vec<String> = series.iter().map(|s| display(&s.labels)).collect();
    if a.grid.steps == 1 {
        writeln!(out, "at {}", rfc3339(a.grid.start))?;
        let w = names.iter().map(String::len).max().unwrap_or(0);
        for (n, s) in names.iter().zip(&series) {
            let v = s.points[0].as_ref().map_or("-".into(), sample_text);
            writeln!(out, "{n:<w$}  {v}")?;
        }
        return Ok(());
    }
    // Few series: one column each; more: one row per sample.
    if series.len() <= 4 {
        let cells: Vec<Vec<String>> = series
            .iter()
            .map(|s| {
                s.points
                    .iter()
                    .map(|p| p.as_ref().map_or("-".into(), sample_text))
                    .collect()
            })
            .collect();
        let widths: Vec<usize> = names
            .iter()
            .zip(&cells)
            .map(|(n, c)| {
                c.iter()
                    .map(String::len)
                    .chain([n.len()])
                    .max()
                    .unwrap_or(1)
            })
            .collect();
        write!(out, "{:<24}", "time")?;
        for (n, w) in names.iter().zip(&widths) {
            write!(out, "  {n:>w$}")?;
        }
        writeln!(out)?;
        for k in 0..a.grid.steps {
            write!(out, "{:<24}", rfc3339(a.grid.at(k)))?;
            for (c, w) in cells.iter().zip(&widths) {
                write!(out, "  {:>w$}", c[k])?;
            }
            writeln!(out)?;
        }
        return Ok(());
    }
    let w = names.iter().map(String::len).max().unwrap_or(0);
    for k in 0..a.grid.steps {
        for (n, s) in names.iter().zip(&series) {
            if let Some(p) = &s.points[k] {
                writeln!(
                    out,
                    "{:<24}  {n:<w$}  {}",
                    rfc3339(a.grid.at(k)),
                    sample_text(p)
                )?;
            }
        }
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(out: &mut dyn Write, a: &Answer) -> io::Result<()> {
    writeln!(out, "time,unix_seconds,series,value")?;
    for s in as_series(a) {
        let name = csv_field(&display(&s.labels));
        for (k, p) in s.points.iter().enumerate() {
            let Some(p) = p else { continue };
            let t = a.grid.at(k);
            let v = match p {
                Sample::F(v) => number(*v),
                Sample::H(h) => csv_field(&hist_text(h)),
            };
            writeln!(out, "{},{},{name},{v}", rfc3339(t), unix_seconds(t))?;
        }
    }
    Ok(())
}

/// A histogram as JSON: its count and its non-empty buckets as
/// `[lower, upper, value]` (scaled units).
pub fn hist_json(h: &Hist) -> serde_json::Value {
    let buckets: Vec<serde_json::Value> = h
        .index
        .iter()
        .zip(&h.value)
        .map(|(&i, &v)| {
            let (lo, hi) = h.layout.range(i as usize);
            serde_json::json!([lo as f64 * h.scale, (hi as f64 + 1.0) * h.scale, v])
        })
        .collect();
    serde_json::json!({ "count": h.total(), "buckets": buckets })
}

fn json(out: &mut dyn Write, a: &Answer) -> io::Result<()> {
    let t = |k: usize| a.grid.at(k) as f64 / 1e9;
    let point = |k: usize, p: &Sample| match p {
        Sample::F(v) => serde_json::json!([t(k), number(*v)]),
        Sample::H(h) => serde_json::json!([t(k), hist_json(h)]),
    };
    let (kind, result) = match &a.value {
        Val::Scalar(v) if a.grid.steps == 1 => ("scalar", serde_json::json!([t(0), number(v[0])])),
        Val::String(s) => ("string", serde_json::json!([t(0), s])),
        _ => {
            let single = a.grid.steps == 1;
            let rows: Vec<serde_json::Value> = as_series(a)
                .iter()
                .map(|s| {
                    let metric: serde_json::Map<String, serde_json::Value> = s
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect();
                    if single {
                        let p = s.points[0].as_ref().map(|p| point(0, p));
                        serde_json::json!({ "metric": metric, "value": p })
                    } else {
                        let values: Vec<serde_json::Value> = s
                            .points
                            .iter()
                            .enumerate()
                            .filter_map(|(k, p)| p.as_ref().map(|p| point(k, p)))
                            .collect();
                        serde_json::json!({ "metric": metric, "values": values })
                    }
                })
                .collect();
            (
                if single { "vector" } else { "matrix" },
                serde_json::Value::Array(rows),
            )
        }
    };
    let body = serde_json::json!({
        "status": "success",
        "data": { "resultType": kind, "result": result },
        "stats": { "samples_read": a.read, "steps": a.grid.steps },
    });
    serde_json::to_writer(&mut *out, &body)?;
    writeln!(out)
}
