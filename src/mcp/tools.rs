//! What each tool does, over the engine and the analyses. Errors are
//! strings that say what was wrong and how to fix it (they become the
//! tool's `isError` result).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::types::*;
use super::{Data, State};
use crate::analysis::{self, Signal};
use crate::query::time::{auto_step, rfc3339, Time};
use crate::query::{self, Grid, Kind, Memory, QueryError, Sample, Source, Val};

/// The analyses look at this many steps at most.
const ANALYSIS_POINTS: usize = 2000;

fn time(s: &Option<String>, what: &str) -> Result<Option<Time>, String> {
    s.as_deref()
        .map(|v| v.parse::<Time>().map_err(|e| format!("{what}: {e}")))
        .transpose()
}

/// The data's first and last sample.
fn span(src: &dyn Source) -> Result<(i64, i64), String> {
    let ts = src.timestamps();
    match (ts.first(), ts.last()) {
        (Some(&a), Some(&b)) => Ok((a, b)),
        _ => Err("the data holds no sample yet (a live agent: wait a few seconds)".into()),
    }
}

fn window(from: i64, to: i64) -> Window {
    Window {
        from: rfc3339(from),
        to: rfc3339(to),
        from_unix: from as f64 / 1e9,
        to_unix: to as f64 / 1e9,
        seconds: (to - from) as f64 / 1e9,
    }
}

fn regex(filter: &Option<String>) -> Result<Option<regex::Regex>, String> {
    filter
        .as_deref()
        .map(|f| {
            regex::Regex::new(f).map_err(|e| {
                format!("filter `{f}` is not a regular expression ({e}); write e.g. `sched` or `^syscall`")
            })
        })
        .transpose()
}

fn hint(e: QueryError) -> String {
    match e {
        QueryError::UnknownMetric(m) => format!("{m}. Call list_metrics for the names."),
        QueryError::Parse(_) => format!("{e}. Write PromQL, e.g. rate(syscalls[1m])."),
        QueryError::TooLarge(m) => format!("{m}."),
        other => other.to_string(),
    }
}

pub fn describe(s: &State) -> Result<Described, String> {
    s.with(|src| {
        let (first, last) = span(src)?;
        let ts = src.timestamps();
        let interval = src.interval();
        let (meta, source, kind): (Vec<(String, String)>, String, String) = match &s.data {
            Data::File(r) => {
                let meta = r.metadata().to_vec();
                let recorder = r.metadata_value("recorder").unwrap_or_default();
                let name = r
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let kind = if recorder.starts_with("sonde") && name.starts_with("hindsight-") {
                    "hindsight dump"
                } else if recorder.starts_with("sonde") {
                    "sonde record"
                } else {
                    "rezolus recording"
                };
                (meta, r.path().display().to_string(), kind.to_string())
            }
            Data::Live { url, .. } => (Vec::new(), url.clone(), "live agent".to_string()),
        };
        let get = |k: &str| {
            meta.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let step = interval.map_or(1_000_000_000, |d| d.as_nanos() as i64);
        let mut gaps = Vec::new();
        for w in ts.windows(2) {
            if w[1] - w[0] > 2 * step {
                gaps.push(Gap {
                    after: rfc3339(w[0]),
                    seconds: (w[1] - w[0]) as f64 / 1e9,
                    missing: ((w[1] - w[0]) / step - 1).max(0) as u64,
                });
            }
        }
        let gaps_truncated = gaps.len() > 20;
        gaps.truncate(20);
        let last_said = get("per_source_metadata")
            .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
            .and_then(|v| {
                v.as_object()?
                    .values()
                    .filter_map(|s| s["last_sample_ns"].as_i64())
                    .max()
            });
        let truncated = get("report").is_some_and(|r| r == "trimmed" || r == "truncated")
            || last_said.is_some_and(|l| l > last + step);
        let system = get("systeminfo")
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .map(|v| match v {
                // The scalars only: topology lists would fill the answer.
                serde_json::Value::Object(m) => serde_json::Value::Object(
                    m.into_iter()
                        .filter(|(_, v)| !v.is_array() && !v.is_object())
                        .collect(),
                ),
                other => other,
            });
        let mut by_sampler: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut families: Vec<&str> = src.series().iter().map(|s| s.metric.as_str()).collect();
        families.sort_unstable();
        families.dedup();
        for f in &families {
            by_sampler
                .entry(sampler_of(f))
                .or_default()
                .push(f.to_string());
        }
        let skipped = match &s.data {
            Data::File(r) => r
                .skipped()
                .iter()
                .map(|(c, why)| format!("{c}: {why}"))
                .take(50)
                .collect(),
            Data::Live { .. } => Vec::new(),
        };
        Ok(Described {
            source,
            kind,
            recorder: get("recorder"),
            agent_version: get("version"),
            start: rfc3339(first),
            end: rfc3339(last),
            duration_seconds: (last - first) as f64 / 1e9,
            interval_seconds: interval.map(|d| d.as_secs_f64()),
            samples: ts.len(),
            expected_samples: interval.map(|d| ((last - first) / d.as_nanos() as i64) as u64 + 1),
            gaps,
            gaps_truncated,
            truncated,
            series: src.series().len(),
            families: families.len(),
            samplers: by_sampler
                .into_iter()
                .map(|(sampler, families)| SamplerSummary { sampler, families })
                .collect(),
            system,
            skipped_columns: skipped,
        })
    })
}

/// The sampler a family is ours from, else its name's first word
/// (Rezolus's samplers name their metrics so).
fn sampler_of(metric: &str) -> String {
    crate::registry::families()
        .iter()
        .find(|f| f.desc.name == metric)
        .map(|f| f.desc.sampler.to_string())
        .unwrap_or_else(|| metric.split('_').next().unwrap_or(metric).to_string())
}

fn help_of(s: &State, metric: &str) -> Option<String> {
    if let Data::File(r) = &s.data {
        if let Some(h) = r
            .metadata_value("descriptions")
            .and_then(|d| serde_json::from_str::<BTreeMap<String, String>>(d).ok())
            .and_then(|d| d.get(metric).cloned())
        {
            return Some(h);
        }
    }
    crate::registry::families()
        .iter()
        .find(|f| f.desc.name == metric)
        .map(|f| f.desc.help.to_string())
}

pub fn list(s: &State, a: ListArgs) -> Result<Listed, String> {
    let re = regex(&a.filter)?;
    let limit = a.limit.unwrap_or(100).clamp(1, 1000);
    s.with(|src| {
        let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, info) in src.series().iter().enumerate() {
            if re.as_ref().is_none_or(|r| r.is_match(&info.metric)) {
                by.entry(info.metric.clone()).or_default().push(i);
            }
        }
        let total = by.len();
        let metrics = by
            .into_iter()
            .take(limit)
            .map(|(name, members)| {
                let first = &src.series()[members[0]];
                let unit = first.unit.as_deref().and_then(crate::registry::Unit::parse);
                let (kind, rk) = match first.kind {
                    Kind::Counter => ("counter", crate::registry::Kind::Counter),
                    Kind::Gauge => ("gauge", crate::registry::Kind::Gauge),
                    Kind::Histogram(_) => ("histogram", crate::registry::Kind::Histogram),
                };
                let mut labels: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for &m in &members {
                    for (k, v) in &src.series()[m].labels {
                        let e = labels.entry(k.clone()).or_default();
                        if e.len() < 10 && !e.contains(v) {
                            e.push(v.clone());
                        }
                    }
                }
                MetricInfo {
                    prometheus_name: crate::prometheus::names::name(&name, rk, unit),
                    help: help_of(s, &name),
                    kind: kind.into(),
                    unit: first.unit.clone(),
                    series: members.len(),
                    labels,
                    name,
                }
            })
            .collect::<Vec<_>>();
        Ok(Listed {
            truncated: total > metrics.len(),
            metrics,
            total,
        })
    })
}

/// `[start, end]` of the arguments against the data, with defaults.
fn range(
    src: &dyn Source,
    start: &Option<String>,
    end: &Option<String>,
) -> Result<(i64, i64), String> {
    let (first, last) = span(src)?;
    // Clipped to the data: beyond it every step would be empty, and the
    // grid's steps would be spent on nothing.
    let a = time(start, "start")?.map_or(first, |t| t.at(first, last).max(first));
    let b = time(end, "end")?.map_or(last, |t| t.at(first, last).min(last));
    if a > b {
        return Err(format!(
            "start {} is after end {}; the data spans {} to {}",
            rfc3339(a),
            rfc3339(b),
            rfc3339(first),
            rfc3339(last)
        ));
    }
    Ok((a, b))
}

pub fn query(s: &State, a: QueryArgs) -> Result<Queried, String> {
    let max_points = a.max_points.unwrap_or(60).clamp(1, 1000);
    let max_series = a.max_series.unwrap_or(10).clamp(1, 200);
    s.with(|src| {
        let (start, end) = range(src, &a.start, &a.end)?;
        let step = match &a.step {
            Some(st) => query::time::parse_step(st)?.as_nanos() as i64,
            None => auto_step(end - start, src.interval(), max_points),
        };
        let steps = ((end - start) / step) as usize + 1;
        if steps > 100_000 {
            return Err(format!(
                "{steps} steps: raise step (e.g. {}s)",
                (end - start) / 1_000_000_000 / 1000 + 1
            ));
        }
        let grid = Grid { start, step, steps };
        let answer = query::range(src, &a.expr, grid).map_err(hint)?;
        let series: Vec<query::Series> = match answer.value {
            Val::Vector(v) => v,
            Val::Scalar(v) => vec![query::Series {
                labels: Vec::new(),
                points: v.into_iter().map(|x| Some(Sample::F(x))).collect(),
            }],
            Val::String(t) => {
                return Err(format!("the expression is the string {t:?}, not series"))
            }
        };
        let value = |p: &Option<Sample>| match p {
            Some(Sample::F(v)) => Some(*v),
            Some(Sample::H(h)) => Some(h.total()),
            None => None,
        };
        let series_total = series.len();
        let mut rows: Vec<(f64, QuerySeries)> = series
            .iter()
            .map(|s| {
                let vals: Vec<(i64, f64)> = s
                    .points
                    .iter()
                    .enumerate()
                    .filter_map(|(k, p)| value(p).map(|v| (grid.at(k), v)))
                    .collect();
                let finite: Vec<f64> = vals.iter().map(|v| v.1).filter(|v| v.is_finite()).collect();
                let stats = SeriesStats {
                    min: finite.iter().copied().fold(f64::NAN, f64::min),
                    mean: finite.iter().sum::<f64>() / finite.len().max(1) as f64,
                    max: finite.iter().copied().fold(f64::NAN, f64::max),
                    last: vals.last().map_or(f64::NAN, |v| v.1),
                };
                let points = downsample(&vals, max_points);
                let key = stats.last;
                (
                    key,
                    QuerySeries {
                        labels: s.labels.iter().cloned().collect(),
                        points,
                        stats,
                    },
                )
            })
            .collect();
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        let downsampled = steps > max_points;
        let kept: Vec<QuerySeries> = rows.into_iter().take(max_series).map(|r| r.1).collect();
        Ok(Queried {
            expr: a.expr.clone(),
            start: rfc3339(start),
            end: rfc3339(end),
            step_seconds: step as f64 / 1e9,
            downsampled,
            truncated: downsampled || series_total > kept.len(),
            series: kept,
            series_total,
        })
    })
}

/// At most `n` points: consecutive steps grouped, each group as `[t of
/// its last step, min, median, max]`; as `[t, v]` when nothing is grouped.
/// A spike survives as its group's max.
pub fn downsample(vals: &[(i64, f64)], n: usize) -> Vec<Vec<f64>> {
    if vals.len() <= n {
        return vals
            .iter()
            .map(|(t, v)| vec![*t as f64 / 1e9, *v])
            .collect();
    }
    let per = vals.len().div_ceil(n);
    vals.chunks(per)
        .map(|c| {
            let mut v: Vec<f64> = c.iter().map(|p| p.1).collect();
            let med = analysis::stats::median(&mut v);
            let min = v.first().copied().unwrap_or(f64::NAN);
            let max = v.last().copied().unwrap_or(f64::NAN);
            vec![c[c.len() - 1].0 as f64 / 1e9, min, med, max]
        })
        .collect()
}

/// The analysis grid over `[start, end]`.
fn analysis_grid(src: &dyn Source, start: i64, end: i64) -> Grid {
    let step = auto_step(end - start, src.interval(), ANALYSIS_POINTS);
    Grid {
        start,
        step,
        steps: ((end - start) / step) as usize + 1,
    }
}

fn signals(src: &dyn Source, grid: Grid, re: &Option<regex::Regex>) -> Result<Vec<Signal>, String> {
    let keep = |m: &str| re.as_ref().is_none_or(|r| r.is_match(m));
    analysis::frame(src, grid, &keep).map_err(|e| format!("cannot read the data: {e:#}"))
}

const ANOMALY_METHODS: &str = "counters as rates per second (and a family's total of them), gauges as values, histograms as the p99 and p50 of each step with ≥20 events; three detectors: robust z-score (median and σ = 1.4826·MAD; runs of ≥3 steps with |z|>3.5, one-step gaps bridged), two-sided CUSUM (on z with σ from successive differences, clipped to ±h; k=0.5, h=5), PELT change points in the mean (normal cost, penalty 2·ln n, segments ≥3 steps, values clipped to median±4σ; segments >3σ from the median); a window's effect d = |median in window − median| / robust σ (σ at least 1 % of |median|), kept when the change is ≥10 % of the larger of median and level; overlapping windows merge, the largest d gives the window, two methods must agree; score = min(d, 100)·√steps, findings below min_score dropped, one per metric family, ranked by score";

pub fn anomalies(s: &State, a: AnomalyArgs) -> Result<Anomalies, String> {
    let re = regex(&a.filter)?;
    let top = a.top.unwrap_or(10).clamp(1, 100);
    s.with(|src| {
        let (start, end) = range(src, &a.start, &a.end)?;
        let grid = analysis_grid(src, start, end);
        let sig = signals(src, grid, &re)?;
        let min_score = a.min_score.unwrap_or(analysis::anomaly::MIN_SCORE);
        let findings = analysis::detect(&sig)
            .into_iter()
            .filter(|f| f.score >= min_score);
        // A step k covers (at(k) − step, at(k)].
        let from = |k: usize| grid.at(k) - grid.step;
        let out = findings
            .take(top)
            .enumerate()
            .map(|(i, f)| {
                let sg = &sig[f.signal];
                AnomalyOut {
                    rank: i + 1,
                    family: sg.metric.clone(),
                    series: sg.name(),
                    derived: sg.derived,
                    window: window(from(f.from), grid.at(f.to)),
                    score: f.score,
                    baseline: f.baseline,
                    level: f.level,
                    direction: if f.level >= f.baseline { "up" } else { "down" }.into(),
                    unit: sg.unit.clone(),
                    methods: f.methods,
                    other_series: f.others,
                }
            })
            .collect();
        Ok(Anomalies {
            findings: out,
            signals_scanned: sig.len(),
            step_seconds: grid.step as f64 / 1e9,
            start: rfc3339(start),
            end: rfc3339(end),
            methods: ANOMALY_METHODS.into(),
        })
    })
}

const CHANGED_METHODS: &str = "two-sample Kolmogorov–Smirnov distance D between each signal's values in the window and in the baseline (counters as rates per second and their family's total, gauges as values, histograms as the p99 and p50 of each step), kept when D ≥ 0.3 and the medians differ by ≥5 %, ranked by D then by |Δmedian| / robust σ of the baseline, at most one per metric family";

pub fn changed(s: &State, a: ChangedArgs) -> Result<Changed, String> {
    let re = regex(&a.filter)?;
    let top = a.top.unwrap_or(10).clamp(1, 100);
    let use_recording = a.baseline_recording.unwrap_or(false);
    if use_recording && s.baseline.is_none() {
        return Err("no baseline recording: start the server with --baseline FILE, or leave baseline_recording out to compare with the window before".into());
    }
    s.with(|src| {
        let (first, last) = span(src)?;
        let start = time(&Some(a.start.clone()), "start")?
            .map_or(first, |t| t.at(first, last));
        let end = time(&a.end, "end")?.map_or(last, |t| t.at(first, last));
        if start >= end {
            return Err(format!("start {} is not before end {}", rfc3339(start), rfc3339(end)));
        }
        let grid = analysis_grid(src, start, end);
        let now = signals(src, grid, &re)?;
        let (base, bwin, bsource) = if use_recording {
            let b = s.baseline.as_ref().expect("checked");
            let (bf, bl) = span(b.as_ref())?;
            let bs = time(&a.baseline_start, "baseline_start")?.map_or(bf, |t| t.at(bf, bl));
            let be = time(&a.baseline_end, "baseline_end")?.map_or(bl, |t| t.at(bf, bl));
            let g = analysis_grid(b.as_ref(), bs, be);
            (signals(b.as_ref(), g, &re)?, window(bs, be), b.path().display().to_string())
        } else {
            let len = end - start;
            let bs = time(&a.baseline_start, "baseline_start")?
                .map_or(start - len, |t| t.at(first, last));
            let be = time(&a.baseline_end, "baseline_end")?.map_or(start, |t| t.at(first, last));
            if be <= bs {
                return Err("the baseline is empty: give baseline_start before baseline_end".into());
            }
            if be <= first {
                return Err(format!(
                    "the baseline ends before the data starts ({}); give a later start or baseline_start/baseline_end",
                    rfc3339(first)
                ));
            }
            let g = analysis_grid(src, bs.max(first), be);
            (signals(src, g, &re)?, window(bs.max(first), be), "the window before".into())
        };
        let changes = analysis::what_changed(&now, &base);
        let out = changes
            .into_iter()
            .take(top)
            .enumerate()
            .map(|(i, c)| {
                let sg = &now[c.signal];
                ChangeOut {
                    rank: i + 1,
                    family: sg.metric.clone(),
                    series: sg.name(),
                    derived: sg.derived,
                    ks_distance: c.d,
                    before: c.before,
                    after: c.after,
                    ratio: (c.before != 0.0).then(|| c.after / c.before),
                    effect: c.effect,
                    unit: sg.unit.clone(),
                    other_series: c.others,
                }
            })
            .collect();
        Ok(Changed {
            window: window(start, end),
            baseline: bwin,
            baseline_source: bsource,
            changes: out,
            signals_compared: now.len(),
            methods: CHANGED_METHODS.into(),
        })
    })
}

pub fn correlate(s: &State, a: CorrelateArgs) -> Result<Correlated, String> {
    let top = a.top.unwrap_or(10).clamp(1, 100);
    s.with(|src| {
        let (start, end) = range(src, &a.start, &a.end)?;
        let grid = analysis_grid(src, start, end);
        let answer = query::range(src, &a.metric, grid).map_err(hint)?;
        let target: Vec<f64> = match answer.value {
            Val::Vector(v) if v.len() == 1 => v[0]
                .points
                .iter()
                .map(|p| p.as_ref().and_then(Sample::float).unwrap_or(f64::NAN))
                .collect(),
            Val::Scalar(v) => v,
            Val::Vector(v) => {
                return Err(format!(
                    "`{}` gives {} series; correlate needs one: aggregate it, e.g. sum({})",
                    a.metric,
                    v.len(),
                    a.metric
                ))
            }
            Val::String(_) => return Err("the target is a string".into()),
        };
        // The target's grid is the signals' grid shifted: step k of a
        // signal ends at grid.at(k), as the query's step k.
        let sig = signals(src, grid, &None)?;
        let found = analysis::correlate(&sig, &target, None);
        let out = found
            .into_iter()
            .filter(|c| c.r.abs() < 0.999_999 || sig[c.signal].name() != a.metric)
            .take(top)
            .enumerate()
            .map(|(i, c)| {
                let sg = &sig[c.signal];
                CorrelationOut {
                    rank: i + 1,
                    family: sg.metric.clone(),
                    series: sg.name(),
                    derived: sg.derived,
                    r: c.r,
                    other_series: c.others,
                }
            })
            .collect();
        Ok(Correlated {
            target: a.metric.clone(),
            step_seconds: grid.step as f64 / 1e9,
            correlations: out,
            signals_compared: sig.len(),
            methods: "Pearson's r between the target and each signal over the steps both have (≥5), counters as rates per second, gauges as values, histograms as p99 and p50; ranked by |r|, at most one per metric family".into(),
        })
    })
}

/// Polls an agent into `memory` until the process ends; a failed pull is
/// logged once and retried at the next tick.
pub async fn poll(url: String, interval: Duration, memory: Arc<RwLock<Memory>>) {
    let client = crate::client::shared();
    let binary = crate::snapshot::fetch::binary_url(&url);
    let mut ticker = crate::runtime::Ticker::new(interval);
    let mut failing = false;
    loop {
        match crate::snapshot::fetch::snapshot(
            &client,
            &binary,
            &Default::default(),
            Duration::from_secs(10),
        )
        .await
        {
            Ok((snap, _)) => {
                memory
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(&snap);
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("cannot pull {binary}: {e}");
                    failing = true;
                }
            }
        }
        ticker.tick().await;
    }
}
