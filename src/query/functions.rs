//! PromQL functions, with Prometheus 2's semantics (Debian's 2.42 is what
//! the case table compares against): `rate`, `increase` and `delta`
//! extrapolate to the window's edges; windows are `[t - range, t]`.

use promql_parser::parser::{Call, Expr, MatrixSelector};

use super::eval::Eval;
use super::hist;
use super::value::{drop_name, Hist, Sample, Series, Val};
use super::QueryError;

/// A function of one window of samples and its bounds (ns).
type WindowFn<'a> = dyn Fn(&[(i64, Sample)], i64, i64) -> Option<Sample> + 'a;

fn arg(c: &Call, i: usize) -> Result<&Expr, QueryError> {
    c.args
        .args
        .get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| QueryError::Parse(format!("{} needs argument {}", c.func.name, i + 1)))
}

fn matrix(c: &Call, i: usize) -> Result<&MatrixSelector, QueryError> {
    let mut e = arg(c, i)?;
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    match e {
        Expr::MatrixSelector(m) => Ok(m),
        Expr::Subquery(_) => Err(QueryError::Unsupported(
            "subqueries (expr[5m:1m]) are not supported".into(),
        )),
        _ => Err(QueryError::Parse(format!(
            "{} needs a range selector, e.g. {}(x[1m])",
            c.func.name, c.func.name
        ))),
    }
}

/// A scalar argument (one number for the whole range, as `histogram_quantile`
/// and `quantile_over_time` take it): per step values are allowed.
fn scalar(ev: &Eval<'_>, c: &Call, i: usize) -> Result<Vec<f64>, QueryError> {
    match ev.eval(arg(c, i)?)? {
        Val::Scalar(v) => Ok(v),
        _ => Err(QueryError::Parse(format!(
            "argument {} of {} must be a number",
            i + 1,
            c.func.name
        ))),
    }
}

fn vector(ev: &Eval<'_>, c: &Call, i: usize) -> Result<Vec<Series>, QueryError> {
    match ev.eval(arg(c, i)?)? {
        Val::Vector(v) => Ok(v),
        _ => Err(QueryError::Parse(format!(
            "argument {} of {} must be an instant vector",
            i + 1,
            c.func.name
        ))),
    }
}

/// Applies `f` to every float sample, dropping the name.
fn map_floats(series: Vec<Series>, f: impl Fn(f64) -> f64) -> Vec<Series> {
    series
        .into_iter()
        .map(|s| Series {
            labels: drop_name(&s.labels),
            points: s
                .points
                .into_iter()
                .map(|p| match p {
                    Some(Sample::F(v)) => Some(Sample::F(f(v))),
                    _ => None,
                })
                .collect(),
        })
        .filter(|s| s.points.iter().any(Option::is_some))
        .collect()
}

pub fn eval(ev: &Eval<'_>, c: &Call) -> Result<Val, QueryError> {
    let name = c.func.name;
    let ranged = |f: &WindowFn<'_>| -> Result<Val, QueryError> {
        let m = matrix(c, 0)?;
        let out = ev.ranged(m, f)?;
        Ok(Val::Vector(
            out.into_iter()
                .map(|s| Series {
                    labels: if name == "last_over_time" {
                        s.labels
                    } else {
                        drop_name(&s.labels)
                    },
                    points: s.points,
                })
                .collect(),
        ))
    };
    match name {
        "rate" | "increase" | "delta" => {
            let m = matrix(c, 0)?;
            let range = m.range.as_secs_f64();
            let (counter, per_second) = (name != "delta", name == "rate");
            ranged(&|w, from, to| extrapolated(w, from, to, range, counter, per_second))
        }
        "irate" | "idelta" => {
            let per_second = name == "irate";
            ranged(&|w, _, _| instant_delta(w, per_second))
        }
        "avg_over_time" => ranged(&over_floats(|v| v.iter().sum::<f64>() / v.len() as f64)),
        "sum_over_time" => ranged(&over_floats(|v| v.iter().sum())),
        "min_over_time" => ranged(&over_floats(|v| v.iter().copied().fold(f64::NAN, f64::min))),
        "max_over_time" => ranged(&over_floats(|v| v.iter().copied().fold(f64::NAN, f64::max))),
        "count_over_time" => ranged(&|w, _, _| Some(Sample::F(w.len() as f64))),
        "present_over_time" => ranged(&|_, _, _| Some(Sample::F(1.0))),
        "last_over_time" => ranged(&|w, _, _| w.last().map(|(_, s)| s.clone())),
        "stddev_over_time" | "stdvar_over_time" => {
            let sd = name == "stddev_over_time";
            ranged(&over_floats(move |v| {
                let n = v.len() as f64;
                let mean = v.iter().sum::<f64>() / n;
                let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
                if sd {
                    var.sqrt()
                } else {
                    var
                }
            }))
        }
        "changes" | "resets" => {
            let resets = name == "resets";
            ranged(&over_floats(move |v| {
                v.windows(2)
                    .filter(|p| if resets { p[1] < p[0] } else { p[1] != p[0] })
                    .count() as f64
            }))
        }
        "deriv" => ranged(&|w, _, _| regression(w).map(|(slope, _)| Sample::F(slope))),
        "quantile_over_time" => {
            let q = scalar(ev, c, 0)?;
            let q = q.first().copied().unwrap_or(f64::NAN);
            let m = matrix(c, 1)?;
            let out = ev.ranged(m, over_floats(|mut v| quantile(q, &mut v)))?;
            Ok(Val::Vector(
                out.into_iter()
                    .map(|s| Series {
                        labels: drop_name(&s.labels),
                        points: s.points,
                    })
                    .collect(),
            ))
        }
        "abs" | "ceil" | "floor" | "sqrt" | "exp" | "ln" | "log2" | "log10" | "sgn" => {
            let f: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "sqrt" => f64::sqrt,
                "exp" => f64::exp,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                _ => |x: f64| if x == 0.0 || x.is_nan() { x } else { x.signum() },
            };
            Ok(Val::Vector(map_floats(vector(ev, c, 0)?, f)))
        }
        "round" => {
            let v = vector(ev, c, 0)?;
            let to = match c.args.args.len() {
                1 => 1.0,
                _ => scalar(ev, c, 1)?.first().copied().unwrap_or(1.0),
            };
            // Prometheus: floor(v / to + 0.5) * to.
            let inv = 1.0 / to;
            Ok(Val::Vector(map_floats(v, move |x| (x * inv + 0.5).floor() / inv)))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = vector(ev, c, 0)?;
            let (lo, hi) = match name {
                "clamp" => (scalar(ev, c, 1)?[0], scalar(ev, c, 2)?[0]),
                "clamp_min" => (scalar(ev, c, 1)?[0], f64::INFINITY),
                _ => (f64::NEG_INFINITY, scalar(ev, c, 1)?[0]),
            };
            if lo > hi {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(map_floats(v, move |x| x.max(lo).min(hi))))
        }
        "scalar" => {
            let v = vector(ev, c, 0)?;
            let steps = ev.grid.steps;
            Ok(Val::Scalar(
                (0..steps)
                    .map(|k| {
                        let mut here = v.iter().filter_map(|s| s.points[k].as_ref()?.float());
                        match (here.next(), here.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "vector" => {
            let s = scalar(ev, c, 0)?;
            Ok(Val::Vector(vec![Series {
                labels: Vec::new(),
                points: s.into_iter().map(|x| Some(Sample::F(x))).collect(),
            }]))
        }
        "time" => Ok(Val::Scalar(
            (0..ev.grid.steps)
                .map(|k| ev.grid.at(k) as f64 / 1e9)
                .collect(),
        )),
        "sort" | "sort_desc" => {
            // Over a range the order of series carries no meaning; an
            // instant query's rows follow it.
            let mut v = vector(ev, c, 0)?;
            let key = |s: &Series| s.points.last().cloned().flatten().and_then(|p| p.float()).unwrap_or(f64::NAN);
            v.sort_by(|a, b| key(a).total_cmp(&key(b)));
            if name == "sort_desc" {
                v.reverse();
            }
            Ok(Val::Vector(v))
        }
        "histogram_quantile" => {
            let q = scalar(ev, c, 0)?;
            let v = vector(ev, c, 1)?;
            Ok(Val::Vector(hist::quantile(&q, v)?))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" => {
            let v = vector(ev, c, 0)?;
            Ok(Val::Vector(map_histograms(v, |h| match name {
                "histogram_count" => h.total(),
                "histogram_sum" => hist::sum(h),
                _ => hist::sum(h) / h.total(),
            })))
        }
        "histogram_fraction" => {
            let lo = scalar(ev, c, 0)?[0];
            let hi = scalar(ev, c, 1)?[0];
            let v = vector(ev, c, 2)?;
            Ok(Val::Vector(map_histograms(v, |h| hist::fraction(h, lo, hi))))
        }
        other => Err(QueryError::Unsupported(format!(
            "function {other}() is not supported; supported: rate, irate, increase, delta, idelta, deriv, changes, resets, {{avg,sum,min,max,count,last,present,quantile,stddev,stdvar}}_over_time, abs, ceil, floor, round, sqrt, exp, ln, log2, log10, sgn, clamp, clamp_min, clamp_max, scalar, vector, time, sort, sort_desc, histogram_quantile, histogram_count, histogram_sum, histogram_avg, histogram_fraction"
        ))),
    }
}

fn map_histograms(series: Vec<Series>, f: impl Fn(&Hist) -> f64) -> Vec<Series> {
    series
        .into_iter()
        .map(|s| Series {
            labels: drop_name(&s.labels),
            points: s
                .points
                .into_iter()
                .map(|p| match p {
                    Some(Sample::H(h)) => Some(Sample::F(f(&h))),
                    _ => None,
                })
                .collect(),
        })
        .filter(|s| s.points.iter().any(Option::is_some))
        .collect()
}

/// The window's floats (`None` when it holds histograms).
fn floats(w: &[(i64, Sample)]) -> Option<Vec<f64>> {
    w.iter().map(|(_, s)| s.float()).collect()
}

/// A window function over floats (a window of histograms gives nothing).
fn over_floats(
    f: impl Fn(Vec<f64>) -> f64,
) -> impl Fn(&[(i64, Sample)], i64, i64) -> Option<Sample> {
    move |w, _, _| floats(w).map(|v| Sample::F(f(v)))
}

/// Prometheus's `extrapolatedRate`: the increase across the window, counter
/// resets added back, extrapolated to the window's edges when the first and
/// last samples are near them (within 1.1 average sample intervals), not
/// below zero for a counter; per second for `rate`.
fn extrapolated(
    w: &[(i64, Sample)],
    from: i64,
    to: i64,
    range_s: f64,
    counter: bool,
    per_second: bool,
) -> Option<Sample> {
    if w.len() < 2 {
        return None;
    }
    let (first_t, last_t) = (w[0].0, w[w.len() - 1].0);
    let n1 = (w.len() - 1) as f64;
    let factor_inputs = |result_first: f64, result: f64| -> f64 {
        let mut to_start = (first_t - from) as f64 / 1e9;
        let to_end = (to - last_t) as f64 / 1e9;
        let sampled = (last_t - first_t) as f64 / 1e9;
        let avg = sampled / n1;
        if counter && result > 0.0 && result_first >= 0.0 {
            let to_zero = sampled * (result_first / result);
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
        let threshold = avg * 1.1;
        let mut interval = sampled;
        interval += if to_start < threshold {
            to_start
        } else {
            avg / 2.0
        };
        interval += if to_end < threshold {
            to_end
        } else {
            avg / 2.0
        };
        let mut f = interval / sampled;
        if per_second {
            f /= range_s;
        }
        f
    };
    match (&w[0].1, &w[w.len() - 1].1) {
        (Sample::F(first), Sample::F(last)) => {
            let mut result = last - first;
            if counter {
                let mut prev = *first;
                for (_, s) in &w[1..] {
                    let cur = s.float()?;
                    if cur < prev {
                        result += prev;
                    }
                    prev = cur;
                }
            }
            let f = factor_inputs(*first, result);
            Some(Sample::F(result * f))
        }
        (Sample::H(first), Sample::H(_)) => {
            // Bucket by bucket: the last minus the first, a drop of the
            // total (an agent restart) adding the histogram before it back.
            let mut result = negate(first);
            let mut prev: &Hist = first;
            for (_, s) in &w[1..] {
                let Sample::H(h) = s else { return None };
                if h.total() < prev.total() {
                    result = result.add(prev)?;
                }
                prev = h;
            }
            result = result.add(prev)?;
            // Prometheus does not extrapolate a histogram's zero point.
            let f = factor_inputs(-1.0, result.total());
            Some(Sample::H(result.times(f)))
        }
        _ => None,
    }
}

fn negate(h: &Hist) -> Hist {
    h.times(-1.0)
}

/// `irate` / `idelta`: the last two samples.
fn instant_delta(w: &[(i64, Sample)], per_second: bool) -> Option<Sample> {
    if w.len() < 2 {
        return None;
    }
    let (t1, prev) = (w[w.len() - 2].0, w[w.len() - 2].1.float()?);
    let (t2, last) = (w[w.len() - 1].0, w[w.len() - 1].1.float()?);
    let mut v = if per_second && last < prev {
        last
    } else {
        last - prev
    };
    let dt = (t2 - t1) as f64 / 1e9;
    if dt == 0.0 {
        return None;
    }
    if per_second {
        v /= dt;
    }
    Some(Sample::F(v))
}

/// Least squares of value over time, as Prometheus's `deriv`: (slope per
/// second, intercept at the first sample).
fn regression(w: &[(i64, Sample)]) -> Option<(f64, f64)> {
    if w.len() < 2 {
        return None;
    }
    let t0 = w[0].0;
    let n = w.len() as f64;
    let (mut sx, mut sy, mut sxy, mut sxx) = (0.0, 0.0, 0.0, 0.0);
    for (t, s) in w {
        let x = (t - t0) as f64 / 1e9;
        let y = s.float()?;
        sx += x;
        sy += y;
        sxy += x * y;
        sxx += x * x;
    }
    let cov = sxy - sx * sy / n;
    let var = sxx - sx * sx / n;
    let slope = cov / var;
    Some((slope, sy / n - slope * sx / n))
}

/// Prometheus's `quantile` over values: linear interpolation between
/// ranks (`φ` outside [0, 1]: ±Inf).
pub fn quantile(q: f64, v: &mut [f64]) -> f64 {
    if v.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let rank = q * (n - 1.0);
    let lo = rank.floor().max(0.0) as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let weight = rank - rank.floor();
    v[lo] * (1.0 - weight) + v[hi] * weight
}
