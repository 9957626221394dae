//! Finding what went wrong: three detectors run on every signal, each
//! proposing windows; every window is then scored the same way so they
//! compare across methods and series:
//!
//! - **robust z-score**: z = (x − median) / σ, σ = 1.4826 · MAD of the
//!   signal; runs of at least 3 steps with |z| > 3.5 (gaps of one step
//!   bridged);
//! - **two-sided CUSUM** (Page): on z with σ from successive differences,
//!   clipped to ±h so one wild point cannot raise an alarm alone,
//!   S⁺ = max(0, S⁺ + z − k), S⁻ = max(0, S⁻ − z − k), k = 0.5, alarm at
//!   h = 5; the window runs from where the alarmed side left 0 to the last
//!   step that pushed it up, and lasts at least 3 steps;
//! - **PELT change points** in the mean (cost Σ(x − mean)²/σ², penalty
//!   2 ln n, segments ≥ 3 steps) of the values clipped to median ± 4 σ,
//!   so a lone outlier cannot pay for a segment of its own: a segment
//!   whose mean is more than 3 σ from the median is a window.
//!
//! A window's effect size is d = |median(window) − median| / σ (σ of the
//! signal, or 1 % of |median| when the signal is nearly constant, so a
//! flat series does not rank by the tiniest change); it is kept when the
//! change is also at least 10 % of the median (or of the window's level).
//! Overlapping windows of one signal merge into one finding, whose window
//! is the one with the largest d·√steps (the shift's t-statistic) and
//! which needs at least two of the three methods to agree. Findings are
//! ranked by score = min(d, 100)·√steps, at most one per family (metric
//! name; a histogram's p99 and p50 and a counter family's total count as
//! its series): past 100 σ a change is no more certain, and
//! then a sustained shift outranks a blip. Callers report findings
//! scoring at least [`MIN_SCORE`] unless asked for weaker ones.

use super::frame::Signal;
use super::stats;

/// Which detector proposed a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    RobustZ,
    Cusum,
    Changepoint,
}

/// One anomalous window of one signal (step indexes, inclusive).
#[derive(Clone, Debug)]
pub struct Finding {
    pub signal: usize,
    pub from: usize,
    pub to: usize,
    pub score: f64,
    /// The signal's median and its mean in the window.
    pub baseline: f64,
    pub level: f64,
    pub methods: Vec<Method>,
    /// Other series of the same family with a finding.
    pub others: usize,
}

const Z: f64 = 3.5;
const MIN_RUN: usize = 3;
const CUSUM_K: f64 = 0.5;
const CUSUM_H: f64 = 5.0;
const SEGMENT_Z: f64 = 3.0;
const MIN_RELATIVE: f64 = 0.10;
/// The effect size past which only duration ranks.
const EFFECT_CAP: f64 = 100.0;
/// Methods that must agree on a finding.
const QUORUM: usize = 2;
/// The least score worth reporting by default: 17 σ held for 3 steps,
/// 9.5 σ for 10; below it, a shared machine's daily noise.
pub const MIN_SCORE: f64 = 30.0;

/// Merges runs of flagged steps (bridging one-step gaps) into windows of
/// at least `MIN_RUN` steps.
fn runs(flags: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < flags.len() {
        if !flags[i] {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        let mut j = i + 1;
        while j < flags.len() && (flags[j] || (j + 1 < flags.len() && flags[j + 1])) {
            if flags[j] {
                end = j;
            }
            j += 1;
        }
        if end + 1 - start >= MIN_RUN {
            out.push((start, end));
        }
        i = j;
    }
    out
}

fn robust_z(x: &[f64], med: f64, sigma: f64) -> Vec<(usize, usize)> {
    let flags: Vec<bool> = x
        .iter()
        .map(|v| v.is_finite() && ((v - med) / sigma).abs() > Z)
        .collect();
    runs(&flags)
}

fn cusum(x: &[f64], med: f64, sigma: f64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for sign in [1.0, -1.0] {
        let (mut s, mut onset, mut pushed, mut alarmed) = (0.0f64, 0usize, 0usize, false);
        let close = |onset: usize, pushed: usize, out: &mut Vec<(usize, usize)>| {
            if pushed + 1 - onset >= MIN_RUN {
                out.push((onset, pushed));
            }
        };
        for (i, v) in x.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            let z = (sign * (v - med) / sigma).clamp(-CUSUM_H, CUSUM_H);
            let was = s;
            s = (s + z - CUSUM_K).max(0.0);
            if was == 0.0 && s > 0.0 {
                onset = i;
            }
            if z > CUSUM_K {
                pushed = i;
            }
            if s > CUSUM_H {
                alarmed = true;
            }
            if s == 0.0 && alarmed {
                close(onset, pushed, &mut out);
                alarmed = false;
            }
        }
        if alarmed {
            close(onset, pushed, &mut out);
        }
    }
    out
}

fn changepoint(x: &[f64], med: f64, sigma: f64) -> Vec<(usize, usize)> {
    // PELT on the finite values, mapped back to steps.
    let idx: Vec<usize> = (0..x.len()).filter(|&i| x[i].is_finite()).collect();
    let (lo, hi) = (med - 4.0 * sigma, med + 4.0 * sigma);
    let vals: Vec<f64> = idx.iter().map(|&i| x[i].clamp(lo, hi)).collect();
    let cps = stats::pelt(&vals, sigma, MIN_RUN);
    let mut bounds = vec![0];
    bounds.extend(&cps);
    bounds.push(vals.len());
    bounds
        .windows(2)
        .filter_map(|w| {
            let seg = &vals[w[0]..w[1]];
            let mean = seg.iter().sum::<f64>() / seg.len() as f64;
            ((mean - med).abs() / sigma > SEGMENT_Z && w[1] > w[0])
                .then(|| (idx[w[0]], idx[w[1] - 1]))
        })
        .collect()
}

/// Every finding of `signals`, ranked, one per family.
pub fn detect(signals: &[Signal]) -> Vec<Finding> {
    let mut best = super::Families::new();
    for (si, s) in signals.iter().enumerate() {
        let finite = s.values.iter().filter(|v| v.is_finite()).count();
        if finite < 2 * MIN_RUN {
            continue;
        }
        let (med, sigma_v) = stats::robust(&s.values);
        // A nearly constant signal: its scale is a percent of its level.
        let sigma = sigma_v.max(med.abs() * 0.01).max(f64::MIN_POSITIVE);
        let sigma_d = stats::diff_sigma(&s.values)
            .max(med.abs() * 0.01)
            .max(f64::MIN_POSITIVE);
        let mut windows: Vec<(Method, (usize, usize))> = Vec::new();
        windows.extend(
            robust_z(&s.values, med, sigma)
                .into_iter()
                .map(|w| (Method::RobustZ, w)),
        );
        windows.extend(
            cusum(&s.values, med, sigma_d)
                .into_iter()
                .map(|w| (Method::Cusum, w)),
        );
        windows.extend(
            changepoint(&s.values, med, sigma_d)
                .into_iter()
                .map(|w| (Method::Changepoint, w)),
        );
        let mut found: Option<(Finding, f64)> = None;
        for (method, (from, to)) in windows {
            let mut w: Vec<f64> = stats::finite(&s.values[from..=to]);
            if w.is_empty() {
                continue;
            }
            // The median, not the mean: a long window around a few spikes
            // is not a shift.
            let level = stats::median(&mut w);
            let change = (level - med).abs();
            if change < MIN_RELATIVE * med.abs().max(level.abs()) {
                continue;
            }
            let d = change / sigma;
            let root = (w.len() as f64).sqrt();
            let (t, score) = (d, d.min(EFFECT_CAP) * root);
            match &mut found {
                Some((f, best_t)) if overlaps((f.from, f.to), (from, to)) => {
                    if !f.methods.contains(&method) {
                        f.methods.push(method);
                    }
                    if t > *best_t {
                        (f.from, f.to, f.score, f.level) = (from, to, score, level);
                        *best_t = t;
                    }
                }
                Some((_, best_t)) if t <= *best_t => {}
                _ => {
                    found = Some((
                        Finding {
                            signal: si,
                            from,
                            to,
                            score,
                            baseline: med,
                            level,
                            methods: vec![method],
                            others: 0,
                        },
                        t,
                    ))
                }
            }
        }
        let Some((f, _)) = found else { continue };
        if f.methods.len() < QUORUM {
            continue;
        }
        best.offer(&s.metric, f, |a, b| a.score > b.score);
    }
    let mut out = best.into_best(|f, n| f.others = n);
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::frame::Derived;

    fn signal(values: Vec<f64>) -> Signal {
        Signal {
            series: 0,
            metric: "m".into(),
            labels: Vec::new(),
            unit: None,
            derived: Derived::Rate,
            values,
        }
    }

    #[test]
    fn a_burst_is_found_with_its_window() {
        // Noise around 100, a burst to 300 from step 60 to 74.
        let mut v: Vec<f64> = (0..200)
            .map(|i| 100.0 + ((i * 37) % 11) as f64 - 5.0)
            .collect();
        for x in &mut v[60..75] {
            *x += 200.0;
        }
        let f = detect(&[signal(v)]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            (59..=61).contains(&f[0].from) && (73..=75).contains(&f[0].to),
            "{f:?}"
        );
        assert!(f[0].methods.len() >= 2, "{f:?}");
    }

    #[test]
    fn noise_alone_is_quiet() {
        let v: Vec<f64> = (0..600)
            .map(|i| 100.0 + ((i * 7919) % 13) as f64 - 6.0)
            .collect();
        assert!(detect(&[signal(v)]).is_empty());
        // A single spike is not a window.
        let mut v: Vec<f64> = vec![10.0; 300];
        v[100] = 1000.0;
        assert!(detect(&[signal(v)]).is_empty());
    }
}
