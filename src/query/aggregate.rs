//! Aggregation operators, per step, with Prometheus's grouping rules:
//! `by (l…)` keeps only those labels, `without (l…)` drops them and the
//! name, neither groups everything into one series without labels.

use std::collections::BTreeMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::eval::Eval;
use super::functions::quantile;
use super::value::{Hist, Labels, Sample, Series, Val, NAME};
use super::QueryError;

/// The labels of `l`'s group under `modifier`.
fn group_labels(l: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(keep)) => l
            .iter()
            .filter(|(k, _)| keep.labels.iter().any(|x| x == k))
            .cloned()
            .collect(),
        Some(LabelModifier::Exclude(drop)) => l
            .iter()
            .filter(|(k, _)| k != NAME && !drop.labels.iter().any(|x| x == k))
            .cloned()
            .collect(),
        None => Vec::new(),
    }
}

fn param(ev: &Eval<'_>, a: &AggregateExpr, op: &str) -> Result<Vec<f64>, QueryError> {
    let Some(p) = &a.param else {
        return Err(QueryError::Parse(format!("{op} needs a parameter")));
    };
    match ev.eval(p)? {
        Val::Scalar(v) => Ok(v),
        _ => Err(QueryError::Parse(format!(
            "the parameter of {op} must be a number"
        ))),
    }
}

pub fn eval(ev: &Eval<'_>, a: &AggregateExpr) -> Result<Val, QueryError> {
    let op = a.op.to_string().to_lowercase();
    let input = match ev.eval(&a.expr)? {
        Val::Vector(v) => v,
        _ => {
            return Err(QueryError::Parse(format!(
                "{op} aggregates an instant vector"
            )))
        }
    };
    let steps = ev.grid.steps;
    match op.as_str() {
        "topk" | "bottomk" => {
            let k = param(ev, a, &op)?;
            Ok(Val::Vector(top(input, &a.modifier, &k, op == "topk", steps)))
        }
        "sum" | "avg" | "min" | "max" | "count" | "group" | "stddev" | "stdvar" | "quantile" => {
            let q = if op == "quantile" {
                param(ev, a, &op)?
            } else {
                Vec::new()
            };
            Ok(Val::Vector(reduce(&op, input, &a.modifier, &q, steps)))
        }
        other => Err(QueryError::Unsupported(format!(
            "aggregation {other} is not supported; supported: sum, avg, min, max, count, group, stddev, stdvar, quantile, topk, bottomk"
        ))),
    }
}

fn reduce(
    op: &str,
    input: Vec<Series>,
    modifier: &Option<LabelModifier>,
    q: &[f64],
    steps: usize,
) -> Vec<Series> {
    let mut groups: BTreeMap<Labels, Vec<&Series>> = BTreeMap::new();
    for s in &input {
        groups
            .entry(group_labels(&s.labels, modifier))
            .or_default()
            .push(s);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (labels, members) in groups {
        let points: Vec<Option<Sample>> = (0..steps)
            .map(|k| {
                let here: Vec<&Sample> = members
                    .iter()
                    .filter_map(|s| s.points[k].as_ref())
                    .collect();
                if here.is_empty() {
                    return None;
                }
                // Counting needs no values: floats and histograms alike.
                match op {
                    "count" => return Some(Sample::F(here.len() as f64)),
                    "group" => return Some(Sample::F(1.0)),
                    _ => {}
                }
                let hists: Vec<&Hist> = here
                    .iter()
                    .filter_map(|p| match p {
                        Sample::H(h) => Some(h),
                        _ => None,
                    })
                    .collect();
                if !hists.is_empty() {
                    // Histograms add up (sum, avg) or count; mixing them
                    // with floats gives nothing, as in Prometheus.
                    if hists.len() != here.len() {
                        return None;
                    }
                    return match op {
                        "sum" | "avg" => {
                            let mut acc = hists[0].clone();
                            for h in &hists[1..] {
                                acc = acc.add(h)?;
                            }
                            if op == "avg" {
                                acc = acc.times(1.0 / hists.len() as f64);
                            }
                            Some(Sample::H(acc))
                        }
                        _ => None,
                    };
                }
                let v: Vec<f64> = here.iter().filter_map(|p| p.float()).collect();
                let n = v.len() as f64;
                Some(Sample::F(match op {
                    "sum" => v.iter().sum(),
                    "avg" => v.iter().sum::<f64>() / n,
                    "count" => n,
                    "group" => 1.0,
                    "min" => {
                        v.iter()
                            .copied()
                            .fold(f64::NAN, |m, x| if m.is_nan() || x < m { x } else { m })
                    }
                    "max" => {
                        v.iter()
                            .copied()
                            .fold(f64::NAN, |m, x| if m.is_nan() || x > m { x } else { m })
                    }
                    "stddev" | "stdvar" => {
                        let mean = v.iter().sum::<f64>() / n;
                        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                        if op == "stddev" {
                            var.sqrt()
                        } else {
                            var
                        }
                    }
                    "quantile" => {
                        let mut v = v;
                        quantile(q.get(k).copied().unwrap_or(f64::NAN), &mut v)
                    }
                    _ => unreachable!("checked by the caller"),
                }))
            })
            .collect();
        if points.iter().any(Option::is_some) {
            out.push(Series { labels, points });
        }
    }
    out
}

/// `topk` / `bottomk`: at each step the `k` largest (smallest) samples of
/// each group, with their own labels.
fn top(
    input: Vec<Series>,
    modifier: &Option<LabelModifier>,
    k: &[f64],
    largest: bool,
    steps: usize,
) -> Vec<Series> {
    let mut groups: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
    for (i, s) in input.iter().enumerate() {
        groups
            .entry(group_labels(&s.labels, modifier))
            .or_default()
            .push(i);
    }
    let mut keep: Vec<Vec<bool>> = vec![vec![false; steps]; input.len()];
    for members in groups.values() {
        for (step, &n) in k.iter().enumerate().take(steps) {
            // k below 1 (or NaN) selects nothing.
            if n.is_nan() || n < 1.0 {
                continue;
            }
            let mut here: Vec<(f64, usize)> = members
                .iter()
                .filter_map(|&i| Some((input[i].points[step].as_ref()?.float()?, i)))
                .collect();
            // NaN sorts last either way, as in Prometheus.
            here.sort_by(|a, b| {
                let (x, y) = (a.0, b.0);
                match (x.is_nan(), y.is_nan()) {
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if largest => y.total_cmp(&x),
                    _ => x.total_cmp(&y),
                }
            });
            for &(_, i) in here.iter().take(n as usize) {
                keep[i][step] = true;
            }
        }
    }
    input
        .into_iter()
        .zip(keep)
        .filter_map(|(s, keep)| {
            let points: Vec<Option<Sample>> = s
                .points
                .into_iter()
                .zip(keep)
                .map(|(p, k)| if k { p } else { None })
                .collect();
            points.iter().any(Option::is_some).then_some(Series {
                labels: s.labels,
                points,
            })
        })
        .collect()
}
