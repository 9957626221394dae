//! What changed between two windows, and what moves with a signal.
//!
//! - **what changed**: for every signal present in both windows (the
//!   window and its baseline: the window of the same length just before
//!   it, or the same window of a second recording), the two-sample
//!   Kolmogorov–Smirnov distance D between their values, ranked by D and
//!   then by effect size |median_after − median_before| / σ_before (robust
//!   σ, at least 1 % of the median), at most one per family;
//! - **correlate**: Pearson's r between a target signal and every other
//!   signal over the steps both have, ranked by |r|, at most one per
//!   family.

use std::collections::HashMap;

use super::frame::{Derived, Signal};
use super::stats;

/// A signal that changed.
#[derive(Clone, Debug)]
pub struct Change {
    /// The signal in the window.
    pub signal: usize,
    pub d: f64,
    pub before: f64,
    pub after: f64,
    pub effect: f64,
    /// Other series of the family that changed too.
    pub others: usize,
}

/// A series' identity across sources: name, labels, derivation.
fn identity(s: &Signal) -> (String, Vec<(String, String)>, Derived) {
    (s.metric.clone(), s.labels.clone(), s.derived)
}

/// Ranks the signals of `window` by how their values differ from the same
/// signals in `baseline` (matched by name, labels and derivation).
pub fn what_changed(window: &[Signal], baseline: &[Signal]) -> Vec<Change> {
    let base: HashMap<_, &Signal> = baseline.iter().map(|s| (identity(s), s)).collect();
    let mut best = super::Families::new();
    for (i, s) in window.iter().enumerate() {
        let Some(b) = base.get(&identity(s)) else {
            continue;
        };
        let (after_v, before_v) = (stats::finite(&s.values), stats::finite(&b.values));
        if after_v.len() < 3 || before_v.len() < 3 {
            continue;
        }
        let d = stats::ks(&after_v, &before_v);
        let (before, sigma) = stats::robust(&before_v);
        let (after, _) = stats::robust(&after_v);
        let change = (after - before).abs();
        // Differences of less than 5 % are not what a person looks for.
        if d < 0.3 || change < 0.05 * before.abs().max(after.abs()) {
            continue;
        }
        let effect = change / sigma.max(before.abs() * 0.01).max(f64::MIN_POSITIVE);
        let c = Change {
            signal: i,
            d,
            before,
            after,
            effect,
            others: 0,
        };
        best.offer(&s.metric, c, |a, b| (a.d, a.effect) > (b.d, b.effect));
    }
    let mut out = best.into_best(|c, n| c.others = n);
    out.sort_by(|a, b| b.d.total_cmp(&a.d).then(b.effect.total_cmp(&a.effect)));
    out
}

/// A signal that moves with the target.
#[derive(Clone, Debug)]
pub struct Correlation {
    pub signal: usize,
    pub r: f64,
    pub others: usize,
}

/// Ranks every signal but `target` by |Pearson's r| with it.
pub fn correlate(signals: &[Signal], target: &[f64], skip: Option<usize>) -> Vec<Correlation> {
    let mut best = super::Families::new();
    for (i, s) in signals.iter().enumerate() {
        if Some(i) == skip {
            continue;
        }
        let Some(r) = stats::pearson(target, &s.values) else {
            continue;
        };
        let c = Correlation {
            signal: i,
            r,
            others: 0,
        };
        best.offer(&s.metric, c, |a, b| a.r.abs() > b.r.abs());
    }
    let mut out = best.into_best(|c, n| c.others = n);
    out.sort_by(|a, b| b.r.abs().total_cmp(&a.r.abs()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(metric: &str, values: Vec<f64>) -> Signal {
        Signal {
            series: 0,
            metric: metric.into(),
            labels: Vec::new(),
            unit: None,
            derived: Derived::Rate,
            values,
        }
    }

    #[test]
    fn shifted_signals_rank_first() {
        let noise = |i: usize| ((i * 37) % 11) as f64;
        let before = vec![
            sig("a", (0..60).map(|i| 100.0 + noise(i)).collect()),
            sig("b", (0..60).map(|i| 100.0 + noise(i)).collect()),
        ];
        let after = vec![
            sig("a", (0..60).map(|i| 100.0 + noise(i + 3)).collect()),
            sig("b", (0..60).map(|i| 500.0 + noise(i)).collect()),
        ];
        let c = what_changed(&after, &before);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].signal, 1);
        assert_eq!(c[0].d, 1.0);
        let r = correlate(&after, &after[1].values, Some(1));
        assert!(r.iter().all(|c| c.signal != 1));
    }
}
