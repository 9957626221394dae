//! The answers of the viewer's API, computed from one or two sources: a
//! section's charts, a query's lines, and a brushed range's table with
//! "what changed here".

use serde::Serialize;

use std::ops::Range;

use super::data::{decimate, groups, has, round, times, Cols, Ctx, Group, Line};
use super::heat::{self, heatmap, Heat};
use super::sections::{Chart, Kind, Part, Section, Unit};
use crate::analysis::{self, frame};
use crate::query::{self, Grid, QueryError, Sample, Val};

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drawn {
    Lines {
        id: &'static str,
        title: &'static str,
        unit: Unit,
        lines: Vec<Line>,
        /// e.g. "top 8 of 23 by mean".
        note: Option<String>,
    },
    Heatmap {
        id: &'static str,
        title: &'static str,
        unit: Unit,
        heat: Vec<Heat>,
    },
}

#[derive(Serialize)]
pub struct SectionAnswer {
    pub id: &'static str,
    pub title: &'static str,
    pub cols: Cols,
    pub charts: Vec<Drawn>,
    /// Charts whose families no source has.
    pub missing: Vec<&'static str>,
}

fn chart_metrics(c: &Chart) -> Vec<&'static str> {
    match c.kind {
        Kind::Lines { parts, .. } => parts
            .iter()
            .flat_map(|p| p.metrics.iter().copied())
            .collect(),
        Kind::Heatmap { metrics, .. } => metrics.to_vec(),
    }
}

/// Each source's groups of a line chart over its `rows`: the same groups
/// in every source, at most `top` of them, the largest by mean in any
/// source. Also says how many groups there were.
fn chart_groups(
    parts: &[Part],
    top: Option<usize>,
    ctxs: &[(&'static str, Ctx<'_>)],
    rows: impl Fn(&Ctx<'_>) -> Range<usize>,
) -> anyhow::Result<(Vec<Vec<Group>>, usize)> {
    let mut per = Vec::new();
    for (_, ctx) in ctxs {
        let mut all = Vec::new();
        for p in parts {
            let prefix = parts.len() > 1 && !p.by.is_empty();
            all.extend(groups(ctx, p, rows(ctx), prefix)?);
        }
        per.push(all);
    }
    let mut best: Vec<(String, f64)> = Vec::new();
    for g in per.iter().flatten() {
        let m = g.mean();
        match best.iter_mut().find(|b| b.0 == g.name) {
            Some(b) => b.1 = b.1.max(m),
            None => best.push((g.name.clone(), m)),
        }
    }
    let total = best.len();
    if let Some(n) = top.filter(|&n| total > n) {
        best.sort_by(|a, b| b.1.total_cmp(&a.1));
        best.truncate(n);
        for all in &mut per {
            all.retain(|g| best.iter().any(|b| b.0 == g.name));
        }
    }
    Ok((per, total))
}

/// One line chart from every source (lines of B named as A's); `None`
/// when no source has a series of it (e.g. for the chosen cgroup).
fn lines(
    chart: &Chart,
    ctxs: &[(&'static str, Ctx<'_>)],
    cols: &Cols,
) -> anyhow::Result<Option<Drawn>> {
    let Kind::Lines { parts, top } = chart.kind else {
        unreachable!("a line chart")
    };
    let (per, total) = chart_groups(parts, top, ctxs, |c| c.rows(cols.from, cols.to))?;
    let mut out = Vec::new();
    let mut shown = 0;
    for ((label, ctx), groups) in ctxs.iter().zip(per) {
        let t = times(ctx, ctx.rows(cols.from, cols.to));
        shown = shown.max(groups.len());
        for g in groups {
            out.push(decimate(cols, &t, &g.values, g.name, label));
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(Drawn::Lines {
        id: chart.id,
        title: chart.title,
        unit: chart.unit,
        lines: out,
        note: (total > shown).then(|| format!("top {shown} of {total} by mean")),
    }))
}

pub fn section(
    s: &Section,
    ctxs: &[(&'static str, Ctx<'_>)],
    cols: &Cols,
) -> anyhow::Result<SectionAnswer> {
    // Charts read columns of their own: two workers per core take the
    // next chart (decoding overlaps the reads), so a section takes about
    // its share of the cores rather than the sum of its charts, with a
    // bounded number of charts' columns in memory at once (the files are
    // read with positional reads).
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get() * 2)
        .min(s.charts.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut drawn: Vec<(usize, anyhow::Result<Option<Drawn>>)> = std::thread::scope(|scope| {
        let running: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(c) = s.charts.get(i) else {
                            return done;
                        };
                        let t = std::time::Instant::now();
                        done.push((i, chart(c, ctxs, cols)));
                        tracing::debug!(chart = c.id, "computed in {:?}", t.elapsed());
                    }
                })
            })
            .collect();
        running
            .into_iter()
            .flat_map(|t| {
                t.join().unwrap_or_else(|_| {
                    vec![(usize::MAX, Err(anyhow::anyhow!("drawing a chart failed")))]
                })
            })
            .collect()
    });
    drawn.sort_by_key(|(i, _)| *i);
    let mut charts = Vec::new();
    let mut missing = Vec::new();
    for (c, (_, d)) in s.charts.iter().zip(drawn) {
        match d? {
            Some(d) => charts.push(d),
            None => missing.push(c.title),
        }
    }
    Ok(SectionAnswer {
        id: s.id,
        title: s.title,
        cols: *cols,
        charts,
        missing,
    })
}

/// One chart from every source; `None` when no source has it.
fn chart(
    chart: &Chart,
    ctxs: &[(&'static str, Ctx<'_>)],
    cols: &Cols,
) -> anyhow::Result<Option<Drawn>> {
    if !ctxs.iter().any(|(_, c)| has(c, &chart_metrics(chart))) {
        return Ok(None);
    }
    match chart.kind {
        Kind::Lines { .. } => lines(chart, ctxs, cols),
        Kind::Heatmap {
            metrics,
            keep,
            scale,
        } => {
            let mut heat = Vec::new();
            for (label, ctx) in ctxs {
                if let Some(h) = heatmap(ctx, metrics, keep, scale, cols, label)? {
                    heat.push(h);
                }
            }
            Ok(Some(Drawn::Heatmap {
                id: chart.id,
                title: chart.title,
                unit: chart.unit,
                heat,
            }))
        }
    }
}

#[derive(Serialize)]
pub struct QueryAnswer {
    pub cols: Cols,
    pub lines: Vec<Line>,
    /// Series the query returned (at most [`MAX_LINES`] are drawn).
    pub series: usize,
    pub step: f64,
}

/// Lines a query draws at most.
pub const MAX_LINES: usize = 20;
/// Steps a query is evaluated at, at most (beyond: a coarser step).
pub const MAX_STEPS: usize = 20_000;

/// `expr` over each source at its own rows' spacing (up to
/// [`MAX_STEPS`] steps), reduced to the columns like a section's lines.
pub fn query(
    expr: &str,
    ctxs: &[(&'static str, Ctx<'_>)],
    cols: &Cols,
) -> Result<QueryAnswer, QueryError> {
    let mut lines = Vec::new();
    let mut series = 0;
    let mut step_s = 0.0;
    for (label, ctx) in ctxs {
        let span = cols.to - cols.from;
        let steps = ((span / ctx.interval()).ceil() as usize + 1).clamp(2, MAX_STEPS);
        let step = ((span * 1e9) / (steps - 1) as f64).max(1.0) as i64;
        step_s = step as f64 / 1e9;
        let grid = Grid {
            start: ctx.at(cols.from),
            step,
            steps,
        };
        let answer = query::range(ctx.src, expr, grid)?;
        let t: Vec<f64> = (0..steps).map(|k| ctx.offset(grid.at(k))).collect();
        match answer.value {
            Val::Scalar(v) => {
                series += 1;
                lines.push(decimate(cols, &t, &v, "scalar".into(), label));
            }
            Val::Vector(vs) => {
                series += vs.len();
                for s in vs.into_iter().take(MAX_LINES) {
                    if s.points.iter().flatten().any(|p| matches!(p, Sample::H(_))) {
                        return Err(QueryError::Eval(
                            "the query answers whole histograms: draw one with histogram_quantile(0.99, rate(…[1m])) or histogram_count".into(),
                        ));
                    }
                    let v: Vec<f64> = s
                        .points
                        .iter()
                        .map(|p| p.as_ref().and_then(|p| p.float()).unwrap_or(f64::NAN))
                        .collect();
                    lines.push(decimate(cols, &t, &v, query::display(&s.labels), label));
                }
            }
            Val::String(s) => {
                return Err(QueryError::Eval(format!(
                    "the query is a string ({s:?}), not a series"
                )))
            }
        }
    }
    Ok(QueryAnswer {
        cols: *cols,
        lines,
        series,
        step: step_s,
    })
}

/// One row of a brushed range's table.
#[derive(Serialize)]
pub struct Stat {
    pub chart: &'static str,
    pub series: String,
    pub source: &'static str,
    pub unit: Unit,
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    /// The mean over the baseline (the preceding window, or A).
    pub before: Option<f64>,
}

#[derive(Serialize)]
pub struct Changed {
    pub series: String,
    pub derived: frame::Derived,
    pub unit: Option<String>,
    pub before: f64,
    pub after: f64,
    /// Kolmogorov–Smirnov distance between the two windows' values.
    pub d: f64,
}

#[derive(Serialize)]
pub struct RangeAnswer {
    pub from: f64,
    pub to: f64,
    /// What "before" is.
    pub baseline: String,
    pub stats: Vec<Stat>,
    pub changed: Vec<Changed>,
}

fn summary(values: &[f64]) -> [Option<f64>; 4] {
    let mut f: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if f.is_empty() {
        return [None; 4];
    }
    f.sort_by(f64::total_cmp);
    let n = f.len();
    let p99 = f[((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1];
    let mean = f.iter().sum::<f64>() / n as f64;
    [Some(f[0]), Some(mean), Some(p99), Some(f[n - 1])].map(|v| v.map(round))
}

fn mean(values: &[f64]) -> Option<f64> {
    summary(values)[1]
}

/// The table and the changes of `[from, to]`: against the window just
/// before it, or (A/B) against A over the same range.
pub fn range(
    s: &Section,
    ctxs: &[(&'static str, Ctx<'_>)],
    from: f64,
    to: f64,
) -> anyhow::Result<RangeAnswer> {
    let span = (to - from).max(1e-3);
    let ab = ctxs.len() == 2;
    // The baseline: A over the same range, or the window of the same
    // length just before this one (not its first row), clipped to the data.
    let a = &ctxs[0].1;
    let first = a.src.timestamps().first().map_or(from, |&t| a.offset(t));
    let (bfrom, bto) = if ab {
        (from, to)
    } else {
        ((from - span).max(first), from - 1e-3)
    };
    let covered = bto - bfrom;
    let has_baseline = ab || covered >= a.interval();
    let mut stats = Vec::new();
    for chart in s.charts {
        match chart.kind {
            Kind::Lines { parts, top } => {
                let (now, _) = chart_groups(parts, top, ctxs, |c| c.rows(from, to))?;
                for (i, ((label, ctx), gs)) in ctxs.iter().zip(now).enumerate() {
                    let base = if ab { a } else { ctx };
                    let mut before = Vec::new();
                    if has_baseline {
                        for p in parts {
                            let prefix = parts.len() > 1 && !p.by.is_empty();
                            before.extend(groups(base, p, base.rows(bfrom, bto), prefix)?);
                        }
                    }
                    for g in gs {
                        let [min, mean_now, p99, max] = summary(&g.values);
                        let b = before
                            .iter()
                            .find(|b| b.name == g.name)
                            .and_then(|b| mean(&b.values));
                        stats.push(Stat {
                            chart: chart.title,
                            series: g.name,
                            source: label,
                            unit: chart.unit,
                            min,
                            mean: mean_now,
                            p99,
                            max,
                            before: if ab && i == 0 { None } else { b },
                        });
                    }
                }
            }
            Kind::Heatmap {
                metrics,
                keep,
                scale,
            } => {
                for (i, (label, ctx)) in ctxs.iter().enumerate() {
                    let base = if ab { a } else { ctx };
                    let Some(h) = heat::window(ctx, metrics, keep, scale, from, to)? else {
                        continue;
                    };
                    let b = if has_baseline {
                        heat::window(base, metrics, keep, scale, bfrom, bto)?
                    } else {
                        None
                    };
                    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
                        let v =
                            Some(round(query::hist::h2_quantile(q, &h))).filter(|v| v.is_finite());
                        let before = b
                            .as_ref()
                            .map(|b| round(query::hist::h2_quantile(q, b)))
                            .filter(|v| v.is_finite() && !(ab && i == 0));
                        stats.push(Stat {
                            chart: chart.title,
                            series: name.into(),
                            source: label,
                            unit: chart.unit,
                            min: None,
                            mean: v,
                            p99: None,
                            max: None,
                            before,
                        });
                    }
                }
            }
        }
    }
    // What changed: every series of the source, framed at (up to) 600
    // steps over the window and over the baseline.
    let (label, ctx) = ctxs.last().expect("a source");
    let base = &ctxs[0].1;
    let step = ((span / 600.0).max(ctx.interval()) * 1e9) as i64;
    let grid = |c: &Ctx<'_>, f: f64, t: f64| Grid {
        start: c.at(f) + step,
        step,
        steps: (((t - f) * 1e9) as i64 / step).max(1) as usize,
    };
    let all = |_: &str| true;
    let window = analysis::frame(ctx.src, grid(ctx, from, to), &all)?;
    let before = if has_baseline {
        analysis::frame(base.src, grid(base, bfrom, bto), &all)?
    } else {
        Vec::new()
    };
    let changed = analysis::what_changed(&window, &before)
        .into_iter()
        .take(12)
        .map(|c| {
            let s = &window[c.signal];
            Changed {
                series: s.name(),
                derived: s.derived,
                unit: s.unit.clone(),
                before: round(c.before),
                after: round(c.after),
                d: round(c.d),
            }
        })
        .collect();
    Ok(RangeAnswer {
        from,
        to,
        baseline: if ab {
            format!("A over the same range; changes are {label} against A")
        } else if !has_baseline {
            "nothing: the range starts with the data".into()
        } else if covered < span - base.interval() {
            format!("the preceding {covered:.0} s (all the data before the range)")
        } else {
            format!("the preceding {covered:.0} s")
        },
        stats,
        changed,
    })
}
