//! The statistics the analyses use, written out so their exact definition
//! is on record (docs/analysis.md cites these):
//!
//! - robust location and scale: median, and σ = 1.4826 · MAD (the MAD of a
//!   normal sample times 1.4826 estimates its σ); when the MAD is 0,
//!   1.253314 · mean |x − median|;
//! - a level-shift-proof σ from successive differences: 1.4826 ·
//!   MAD(diff) / √2 (a step changes one difference, not all the values);
//! - the two-sample Kolmogorov–Smirnov distance D = sup |F_a − F_b|;
//! - Pearson's r;
//! - PELT (Killick, Fearnhead & Eckley 2012) for changes in the mean of a
//!   normal series of known σ: cost of a segment = Σ (x − mean)² / σ²,
//!   penalty β = 2 ln n per change, segments at least `min_len` long.

/// The median of `v` (NaN when empty); sorts `v`.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The finite values of `v`.
pub fn finite(v: &[f64]) -> Vec<f64> {
    v.iter().copied().filter(|x| x.is_finite()).collect()
}

/// (median, robust σ) of the finite values of `v`.
pub fn robust(v: &[f64]) -> (f64, f64) {
    let mut x = finite(v);
    let med = median(&mut x);
    let mut dev: Vec<f64> = x.iter().map(|v| (v - med).abs()).collect();
    let mad = median(&mut dev);
    let sigma = if mad > 0.0 {
        1.4826 * mad
    } else {
        1.253314 * dev.iter().sum::<f64>() / dev.len().max(1) as f64
    };
    (med, sigma)
}

/// σ from successive differences of the finite values (robust to steps).
pub fn diff_sigma(v: &[f64]) -> f64 {
    let x = finite(v);
    let mut d: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let med = median(&mut d.clone());
    let mut dev: Vec<f64> = d.iter_mut().map(|v| (*v - med).abs()).collect();
    let mad = median(&mut dev);
    if mad > 0.0 {
        1.4826 * mad / std::f64::consts::SQRT_2
    } else {
        1.253314 * dev.iter().sum::<f64>() / dev.len().max(1) as f64 / std::f64::consts::SQRT_2
    }
}

/// Two-sample Kolmogorov–Smirnov distance of the finite values of `a`
/// and `b` (0 when either is empty).
pub fn ks(a: &[f64], b: &[f64]) -> f64 {
    let (mut a, mut b) = (finite(a), finite(b));
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        // Equal values advance together, so ties do not create distance.
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    d
}

/// KS distance of two distributions given as counts over the same
/// ordered bins (histogram buckets).
pub fn ks_binned(a: &[f64], b: &[f64]) -> f64 {
    let (ta, tb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    if ta <= 0.0 || tb <= 0.0 {
        return 0.0;
    }
    let (mut ca, mut cb, mut d) = (0.0, 0.0, 0f64);
    for (x, y) in a.iter().zip(b) {
        ca += x;
        cb += y;
        d = d.max((ca / ta - cb / tb).abs());
    }
    d
}

/// Pearson's r over the steps where both are finite (`None` below 5
/// such steps, or when either is constant there).
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (*x, *y))
        .collect();
    if pairs.len() < 5 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in &pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

/// PELT change points in the mean of `x` (no NaN) with noise `sigma`:
/// the indexes where a new segment starts.
pub fn pelt(x: &[f64], sigma: f64, min_len: usize) -> Vec<usize> {
    let n = x.len();
    if n < 2 * min_len || sigma <= 0.0 || !sigma.is_finite() {
        return Vec::new();
    }
    let mut s1 = vec![0.0; n + 1];
    let mut s2 = vec![0.0; n + 1];
    for (i, v) in x.iter().enumerate() {
        s1[i + 1] = s1[i] + v;
        s2[i + 1] = s2[i] + v * v;
    }
    let var = sigma * sigma;
    let cost = |a: usize, b: usize| {
        let len = (b - a) as f64;
        let s = s1[b] - s1[a];
        ((s2[b] - s2[a]) - s * s / len) / var
    };
    let beta = 2.0 * (n as f64).ln();
    let mut f = vec![f64::INFINITY; n + 1];
    f[0] = -beta;
    let mut last = vec![0usize; n + 1];
    let mut candidates: Vec<usize> = vec![0];
    for t in min_len..=n {
        let (mut best, mut arg) = (f64::INFINITY, 0);
        for &tau in &candidates {
            if t - tau < min_len {
                continue;
            }
            let v = f[tau] + cost(tau, t) + beta;
            if v < best {
                best = v;
                arg = tau;
            }
        }
        f[t] = best;
        last[t] = arg;
        // Pruning: candidates that can never be optimal again.
        candidates.retain(|&tau| t - tau < min_len || f[tau] + cost(tau, t) <= f[t]);
        if t + 1 >= min_len {
            candidates.push(t + 1 - min_len);
        }
        candidates.sort_unstable();
        candidates.dedup();
    }
    let mut cps = Vec::new();
    let mut t = n;
    while t > 0 {
        let tau = last[t];
        if tau > 0 {
            cps.push(tau);
        }
        if tau == t {
            break;
        }
        t = tau;
    }
    cps.sort_unstable();
    cps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_scale_ignores_outliers() {
        let mut v: Vec<f64> = (0..100).map(|i| (i % 10) as f64).collect();
        v.push(1e9);
        let (med, s) = robust(&v);
        assert_eq!(med, 5.0);
        assert!(s > 2.0 && s < 5.0, "{s}");
        assert_eq!(robust(&[3.0, 3.0, 3.0]), (3.0, 0.0));
    }

    #[test]
    fn ks_of_shifted_samples() {
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let b: Vec<f64> = (50..150).map(f64::from).collect();
        assert!((ks(&a, &b) - 0.5).abs() < 1e-9);
        assert_eq!(ks(&a, &a), 0.0);
        assert_eq!(ks_binned(&[1.0, 0.0], &[0.0, 1.0]), 1.0);
    }

    #[test]
    fn pelt_finds_a_step() {
        let mut x: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 0.5 } else { -0.5 })
            .collect();
        for v in &mut x[60..] {
            *v += 10.0;
        }
        assert_eq!(pelt(&x, 0.5, 3), vec![60]);
        let flat: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 0.5 } else { -0.5 })
            .collect();
        assert!(pelt(&flat, 0.5, 3).is_empty());
    }

    #[test]
    fn pearson_of_lines() {
        let a: Vec<f64> = (0..10).map(f64::from).collect();
        let b: Vec<f64> = a.iter().map(|x| 3.0 * x + 1.0).collect();
        assert!((pearson(&a, &b).unwrap() - 1.0).abs() < 1e-12);
        assert!(pearson(&a, &[1.0; 10]).is_none());
    }
}
