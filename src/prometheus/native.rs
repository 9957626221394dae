//! Our H2 histograms as Prometheus native histograms (sparse, exponential
//! buckets): what the protobuf exposition and remote-write send, one
//! series per histogram instead of ~30 `le` series.
//!
//! Schema 3: 8 buckets per power of two, bucket `i` covering
//! (2^((i−1)/8), 2^(i/8)] in base units (seconds, bytes). An H2 bucket
//! (grouping power 3: 8 linear buckets per power of two, in stored units)
//! cannot line up with those bounds once scaled to seconds, so its count
//! goes whole to the native bucket holding its midpoint. Error bound: a
//! quantile Prometheus computes lies in the native bucket of the H2
//! midpoint the exact quantile's H2 bucket has, so it is within a factor
//! 2^(1/8) (+9.05 %) of that midpoint, which is within half an H2 bucket
//! (6.25 %) of the value: within 16 % of the true value, and within 9.05 %
//! of the midpoint our own percentiles interpolate around. Zero values go
//! to the zero bucket. Counts and sums are exact.

use crate::histogram::Layout;

pub const SCHEMA: i32 = 3;
/// client_golang's default: only exact zeros are in the zero bucket.
pub const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// A native histogram, cumulative like its source.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Native {
    pub count: u64,
    pub sum: f64,
    pub zero_count: u64,
    /// `(offset, length)`: the first span's offset is the first bucket's
    /// index, each next one's the gap after the previous span.
    pub spans: Vec<(i32, u32)>,
    /// Each bucket's count minus the previous bucket's (the first: itself).
    pub deltas: Vec<i64>,
}

/// The native bucket (schema 3) holding `v` > 0.
pub fn bucket(v: f64) -> i32 {
    (v.log2() * 8.0).ceil() as i32
}

/// Maps dense H2 bucket counts (stored units) and their sum (stored
/// units) to a native histogram in base units (`divisor` stored units per
/// base unit: 1e9 for nanoseconds).
pub fn from_h2(layout: Layout, counts: &[u64], sum: f64, divisor: f64) -> Native {
    let mut n = Native {
        sum: sum / divisor,
        ..Native::default()
    };
    // H2 buckets ascend, so native indexes do too: merge runs in place.
    let mut buckets: Vec<(i32, u64)> = Vec::new();
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        n.count += c;
        let (lo, hi) = layout.range(i);
        if hi == 0 {
            n.zero_count += c;
            continue;
        }
        let mid = (lo as f64 + hi as f64) / 2.0;
        let idx = bucket(mid / divisor);
        match buckets.last_mut() {
            Some((last, count)) if *last == idx => *count += c,
            _ => buckets.push((idx, c)),
        }
    }
    let mut prev_idx: Option<i32> = None;
    let mut prev_count = 0i64;
    for (idx, c) in buckets {
        match prev_idx {
            // Adjacent: the span grows.
            Some(p) if idx == p + 1 => {
                if let Some(s) = n.spans.last_mut() {
                    s.1 += 1;
                }
            }
            Some(p) => n.spans.push((idx - p - 1, 1)),
            None => n.spans.push((idx, 1)),
        }
        n.deltas.push(c as i64 - prev_count);
        prev_count = c as i64;
        prev_idx = Some(idx);
    }
    n
}

/// The `q` quantile as Prometheus 2 computes it over a native histogram
/// (linear inside the bucket, the zero bucket as [0, threshold]): what
/// tests compare with.
pub fn quantile(n: &Native, q: f64) -> f64 {
    if n.count == 0 {
        return f64::NAN;
    }
    let rank = q * n.count as f64;
    let mut seen = n.zero_count as f64;
    if rank <= seen {
        return 0.0;
    }
    let mut count = 0i64;
    let mut d = n.deltas.iter();
    // The last bucket of the previous span.
    let mut last: Option<i32> = None;
    for &(offset, len) in &n.spans {
        let first = match last {
            None => offset,
            Some(l) => l + offset + 1,
        };
        for j in 0..len as i32 {
            let idx = first + j;
            count += d.next().copied().unwrap_or(0);
            let c = count as f64;
            if c > 0.0 && seen + c >= rank {
                let upper = 2f64.powf(idx as f64 / 8.0);
                let lower = 2f64.powf((idx - 1) as f64 / 8.0);
                return lower + (upper - lower) * ((rank - seen) / c);
            }
            seen += c;
        }
        last = Some(first + len as i32 - 1);
    }
    f64::NAN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h2(values: &[u64]) -> Vec<u64> {
        let layout = Layout::default();
        let mut dense = vec![0u64; layout.buckets()];
        for &v in values {
            dense[layout.index(v)] += 1;
        }
        dense
    }

    #[test]
    fn spans_and_deltas_describe_the_buckets() {
        // 1 s, 1 s, 2 s (ns): native buckets of 1 s and 2 s (both exact
        // powers of two: their H2 midpoints are a little above).
        let n = from_h2(
            Layout::default(),
            &h2(&[0, 1_000_000_000, 1_000_000_000, 2_000_000_000]),
            4e9,
            1e9,
        );
        assert_eq!(n.count, 4);
        assert_eq!(n.zero_count, 1);
        assert_eq!(n.sum, 4.0);
        let total: i64 = n
            .deltas
            .iter()
            .scan(0i64, |c, d| {
                *c += d;
                Some(*c)
            })
            .sum();
        assert_eq!(total, 3);
        assert_eq!(
            n.spans.iter().map(|s| s.1 as usize).sum::<usize>(),
            n.deltas.len()
        );
    }

    #[test]
    fn quantiles_stay_within_the_stated_bound() {
        // 10,000 values spread over 1 µs .. 10 s.
        let values: Vec<u64> = (0..10_000u64)
            .map(|i| (1000.0 * 10f64.powf(i as f64 * 7.0 / 10_000.0)) as u64)
            .collect();
        let sum: u64 = values.iter().sum();
        let n = from_h2(Layout::default(), &h2(&values), sum as f64, 1e9);
        let mut sorted = values.clone();
        sorted.sort();
        for q in [0.5, 0.9, 0.99, 0.999] {
            let exact = sorted[((q * sorted.len() as f64).ceil() as usize) - 1] as f64 / 1e9;
            let got = quantile(&n, q);
            assert!(
                (got - exact).abs() / exact <= 0.16,
                "q {q}: {got} vs {exact}"
            );
        }
    }
}
