//! `sonde dump`: the samples of chosen series, every row between two
//! times, as CSV, JSON or OpenMetrics. OpenMetrics gives each series the
//! name, unit and classic buckets the agent's `/metrics` gives it, with
//! timestamps, so `promtool tsdb create-blocks-from openmetrics` turns a
//! recording into Prometheus data.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context as _;

use super::Opened;
use crate::query::time::{rfc3339, unix_seconds, Time};
use crate::query::{
    self, bucket_value, display, rows_between, Kind, Labels, Selected, Source, View, NAME,
};
use crate::registry::{self, Unit};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpFormat {
    Csv,
    Json,
    Openmetrics,
}

pub struct DumpOptions {
    /// Series selectors; none: every series.
    pub selectors: Vec<String>,
    pub start: Option<Time>,
    pub end: Option<Time>,
    pub format: DumpFormat,
}

/// Rows read at a time: memory stays bounded whatever the range.
const CHUNK: usize = 3600;

pub fn dump(opened: &Opened, o: &DumpOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let src = opened.source();
    let ts = src.timestamps();
    let (Some(&first), Some(&last)) = (ts.first(), ts.last()) else {
        anyhow::bail!("the data holds no sample");
    };
    let start = o.start.map_or(first, |t| t.at(first, last));
    let end = o.end.map_or(last, |t| t.at(first, last));
    let rows = rows_between(ts, start, end);
    let selectors = if o.selectors.is_empty() {
        vec!["{__name__=~\".+\"}".to_string()]
    } else {
        o.selectors.clone()
    };
    let mut chosen: Vec<Selected> = Vec::new();
    for s in &selectors {
        for sel in query::select(src, s)? {
            if !chosen.iter().any(|c| c.labels == sel.labels) {
                chosen.push(sel);
            }
        }
    }
    match o.format {
        DumpFormat::Csv => {
            writeln!(out, "time,unix_seconds,series,value")?;
            each(src, &chosen, rows, |sel, t, v| {
                let name = display(&sel.labels);
                let name = if name.contains([',', '"']) {
                    format!("\"{}\"", name.replace('"', "\"\""))
                } else {
                    name
                };
                match v {
                    Value::F(v) => writeln!(out, "{},{},{name},{v}", rfc3339(t), unix_seconds(t))?,
                    Value::H(b) => {
                        for (lo, hi, c) in b {
                            writeln!(
                                out,
                                "{},{},{name} [{lo}..{hi}],{c}",
                                rfc3339(t),
                                unix_seconds(t)
                            )?;
                        }
                    }
                }
                Ok(())
            })
        }
        DumpFormat::Json => {
            // One object per series, written as it is read.
            write!(out, "{{\"series\":[")?;
            let mut first_series = true;
            for sel in &chosen {
                let mut times = Vec::new();
                let mut values = Vec::new();
                each(src, std::slice::from_ref(sel), rows.clone(), |_, t, v| {
                    times.push(t as f64 / 1e9);
                    values.push(match v {
                        Value::F(v) => serde_json::json!(v),
                        Value::H(b) => serde_json::json!(b),
                    });
                    Ok(())
                })?;
                if !first_series {
                    write!(out, ",")?;
                }
                first_series = false;
                let labels: serde_json::Map<String, serde_json::Value> = sel
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                serde_json::to_writer(
                    &mut *out,
                    &serde_json::json!({ "labels": labels, "timestamps": times, "values": values }),
                )?;
            }
            writeln!(out, "]}}")?;
            Ok(())
        }
        DumpFormat::Openmetrics => openmetrics(opened, &chosen, rows, out),
    }
}

/// One sample of a dump: a number, or a histogram's non-empty buckets
/// `(lower, upper, count)` in stored units.
enum Value {
    F(f64),
    H(Vec<(u64, u64, u64)>),
}

/// Calls `f` for every sample of every selected series in `rows`, a
/// series at a time and a chunk of rows at a time.
fn each(
    src: &dyn Source,
    chosen: &[Selected],
    rows: std::ops::Range<usize>,
    mut f: impl FnMut(&Selected, i64, Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let ts = src.timestamps();
    for sel in chosen {
        let info = &src.series()[sel.series];
        let mut at = rows.start;
        while at < rows.end {
            let chunk = at..(at + CHUNK).min(rows.end);
            match info.kind {
                Kind::Counter | Kind::Gauge => {
                    let scale = match sel.view {
                        View::Scaled(f) => f,
                        _ => 1.0,
                    };
                    for (r, v) in chunk.clone().zip(src.scalars(sel.series, chunk.clone())?) {
                        if let Some(v) = v {
                            f(sel, ts[r], Value::F(v * scale))?;
                        }
                    }
                }
                Kind::Histogram(layout) => {
                    let rows: Vec<usize> = chunk.clone().collect();
                    for (r, b) in rows.iter().zip(src.histograms(sel.series, &rows)?) {
                        let Some(b) = b else { continue };
                        let v = match bucket_value(sel.view, &b) {
                            Some(v) => Value::F(v),
                            None => Value::H(
                                b.index
                                    .iter()
                                    .zip(&b.count)
                                    .map(|(&i, &c)| {
                                        let (lo, hi) = layout.range(i as usize);
                                        (lo, hi, c)
                                    })
                                    .collect(),
                            ),
                        };
                        f(sel, ts[*r], v)?;
                    }
                }
            }
            at = chunk.end;
        }
    }
    Ok(())
}

/// The recording's help texts (`descriptions`), by registry name.
fn descriptions(opened: &Opened) -> BTreeMap<String, String> {
    let Opened::File(r) = opened else {
        return BTreeMap::new();
    };
    r.metadata_value("descriptions")
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default()
}

fn openmetrics(
    opened: &Opened,
    chosen: &[Selected],
    rows: std::ops::Range<usize>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let src = opened.source();
    let help = descriptions(opened);
    let mut wanted: Vec<usize> = chosen.iter().map(|c| c.series).collect();
    wanted.sort_unstable();
    wanted.dedup();
    // Every chosen series as /metrics renders it: its Prometheus family,
    // and per source series the sample names it gives (one, or a
    // histogram's buckets and count).
    type Parts = BTreeMap<usize, Vec<(View, Labels)>>;
    let mut families: BTreeMap<String, (&'static str, String, Parts)> = BTreeMap::new();
    for (series, view, labels) in query::names(src) {
        if wanted.binary_search(&series).is_err() {
            continue;
        }
        let info = &src.series()[series];
        let unit = info.unit.as_deref().and_then(Unit::parse);
        let prom = |kind| crate::prometheus::names::name(&info.metric, kind, unit);
        let name = crate::query::label(&labels, NAME);
        // The name /metrics gives the series, whichever view carries it.
        let (family, kind) = match (info.kind, view) {
            (Kind::Counter, _) if name == prom(registry::Kind::Counter) => {
                (name.trim_end_matches("_total").to_string(), "counter")
            }
            (Kind::Gauge, _) if name == prom(registry::Kind::Gauge) => (name.to_string(), "gauge"),
            (Kind::Histogram(_), View::Bucket { .. } | View::Count) => {
                (prom(registry::Kind::Histogram), "histogram")
            }
            _ => continue,
        };
        let h = help.get(&info.metric).cloned().unwrap_or_default();
        families
            .entry(family)
            .or_insert_with(|| (kind, h, BTreeMap::new()))
            .2
            .entry(series)
            .or_default()
            .push((view, labels));
    }
    let ts = src.timestamps();
    let secs = unix_seconds;
    for (family, (kind, help, members)) in &families {
        writeln!(out, "# TYPE {family} {kind}")?;
        if !help.is_empty() {
            writeln!(
                out,
                "# HELP {family} {}",
                help.replace('\\', "\\\\").replace('\n', "\\n")
            )?;
        }
        for (&index, parts) in members {
            let info = &src.series()[index];
            let mut at = rows.start;
            while at < rows.end {
                let chunk = at..(at + CHUNK).min(rows.end);
                if let Kind::Histogram(_) = info.kind {
                    let rows: Vec<usize> = chunk.clone().collect();
                    for (r, b) in rows.iter().zip(src.histograms(index, &rows)?) {
                        let Some(b) = b else { continue };
                        // One histogram point: every bucket, then the count.
                        for (view, labels) in parts {
                            let v = bucket_value(*view, &b).unwrap_or(0.0);
                            writeln!(out, "{} {v} {}", sample_name(labels), secs(ts[*r]))?;
                        }
                    }
                } else {
                    for (r, v) in chunk.clone().zip(src.scalars(index, chunk.clone())?) {
                        let Some(v) = v else { continue };
                        for (view, labels) in parts {
                            let scale = match view {
                                View::Scaled(f) => *f,
                                _ => 1.0,
                            };
                            writeln!(out, "{} {} {}", sample_name(labels), v * scale, secs(ts[r]))?;
                        }
                    }
                }
                at = chunk.end;
            }
        }
    }
    writeln!(out, "# EOF")?;
    out.flush().context("cannot write")
}

/// `name{labels}` of a sample line.
fn sample_name(labels: &Labels) -> String {
    let name = crate::query::label(labels, NAME);
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k != NAME)
        .map(|(k, v)| {
            let mut e = String::new();
            crate::registry::escape_label_value(v, &mut e);
            format!("{k}=\"{e}\"")
        })
        .collect();
    if rest.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", rest.join(","))
    }
}
