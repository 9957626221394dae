//! All H2 histogram math, in one place: the layout shared with the
//! `histogram` crate and the BPF side (grouping power 3, max value power 64,
//! 496 buckets, at most 6.25 % relative error), layouts other agents write,
//! and what the expositions derive from buckets: cumulative counts at
//! powers of two, quantiles and sums estimated from bucket midpoints.

pub const GROUPING_POWER: u8 = 3;
pub const MAX_VALUE_POWER: u8 = 64;
const CUTOFF_POWER: u8 = GROUPING_POWER + 1;
const CUTOFF_VALUE: u64 = 1 << CUTOFF_POWER;
const LOWER_BIN_COUNT: usize = CUTOFF_VALUE as usize;
const UPPER_BIN_DIVISIONS: usize = 1 << GROUPING_POWER;
const UPPER_BIN_COUNT: usize = (MAX_VALUE_POWER - CUTOFF_POWER) as usize * UPPER_BIN_DIVISIONS;
pub const BUCKETS: usize = LOWER_BIN_COUNT + UPPER_BIN_COUNT;

/// The crate's serialized `Config`, in field order:
/// `[max, grouping_power, max_value_power, cutoff_power, cutoff_value,
///   lower_bin_count, upper_bin_divisions, upper_bin_count]`.
pub const CONFIG_FIELDS: [u64; 8] = [
    u64::MAX,
    GROUPING_POWER as u64,
    MAX_VALUE_POWER as u64,
    CUTOFF_POWER as u64,
    CUTOFF_VALUE,
    LOWER_BIN_COUNT as u64,
    UPPER_BIN_DIVISIONS as u64,
    UPPER_BIN_COUNT as u64,
];

/// Bucket index of `value`; every u64 has one since max value power is 64.
pub const fn index(value: u64) -> usize {
    if value < CUTOFF_VALUE {
        return value as usize;
    }
    let s = (63 - (value | 1).leading_zeros()) - GROUPING_POWER as u32;
    (((s as u64) << GROUPING_POWER) + (value >> s)) as usize
}

/// An H2 layout with any grouping power and max value power: what a
/// snapshot from another agent (Rezolus writes other powers) may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    grouping_power: u8,
    max_value_power: u8,
}

impl Layout {
    /// `None` unless `grouping_power < max_value_power <= 64`, the
    /// histogram crate's own rule.
    pub fn new(grouping_power: u8, max_value_power: u8) -> Option<Self> {
        (grouping_power < max_value_power && max_value_power <= 64).then_some(Layout {
            grouping_power,
            max_value_power,
        })
    }

    pub fn grouping_power(self) -> u8 {
        self.grouping_power
    }

    pub fn max_value_power(self) -> u8 {
        self.max_value_power
    }

    /// The histogram crate's serialized config (see [`CONFIG_FIELDS`]).
    pub fn config_fields(self) -> [u64; 8] {
        let (gp, mvp) = (self.grouping_power as u64, self.max_value_power as u64);
        let max = if mvp == 64 { u64::MAX } else { (1 << mvp) - 1 };
        let cutoff = gp + 1;
        let divisions = 1 << gp;
        [
            max,
            gp,
            mvp,
            cutoff,
            1 << cutoff,
            1 << cutoff,
            divisions,
            (mvp - cutoff) * divisions,
        ]
    }

    pub fn buckets(self) -> usize {
        let cutoff = self.grouping_power + 1;
        (1usize << cutoff) + ((self.max_value_power - cutoff) as usize) * (1 << self.grouping_power)
    }

    /// Bucket index of `value`, clamped to the last bucket.
    pub fn index(self, value: u64) -> usize {
        let gp = self.grouping_power as u32;
        let i = if value < 1 << (gp + 1) {
            value as usize
        } else {
            let s = (63 - value.leading_zeros()) - gp;
            (((s as u64) << gp) + (value >> s)) as usize
        };
        i.min(self.buckets() - 1)
    }

    /// Smallest and largest value of bucket `i` (inclusive).
    pub fn range(self, i: usize) -> (u64, u64) {
        let gp = self.grouping_power as u32;
        let lower_bins = 1usize << (gp + 1);
        if i < lower_bins {
            return (i as u64, i as u64);
        }
        let j = i - lower_bins;
        let power = gp + 1 + (j >> gp) as u32;
        let width_log = power - gp;
        let offset = (j & ((1 << gp) - 1)) as u64;
        let lo = (1u64 << power) + (offset << width_log);
        let hi = lo + ((1u64 << width_log) - 1);
        (lo, hi)
    }
}

impl Default for Layout {
    /// Sonde's own layout (grouping power 3, max value power 64).
    fn default() -> Self {
        Layout {
            grouping_power: GROUPING_POWER,
            max_value_power: MAX_VALUE_POWER,
        }
    }
}

impl Layout {
    /// The middle of bucket `i`: the value a bucket's count stands for when
    /// only buckets are known (at most half a bucket from the truth).
    pub fn midpoint(self, i: usize) -> f64 {
        let (lo, hi) = self.range(i);
        lo as f64 + (hi - lo) as f64 / 2.0
    }
}

/// The sum of the values behind `buckets`, estimated from bucket midpoints
/// (a snapshot carries buckets only).
pub fn midpoint_sum(layout: Layout, buckets: &[u64]) -> f64 {
    buckets
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| *c as f64 * layout.midpoint(i))
        .sum()
}

/// Fills `out[i]` with the `qs[i]` quantile of the counts in `buckets` (the
/// midpoint of the bucket holding that rank: at most half a bucket from the
/// truth, 6.25 % for grouping power 3 — half the error of the upper edge)
/// and returns the total count and the sum estimated from bucket midpoints.
/// NaN quantiles when empty.
pub fn quantiles(layout: Layout, buckets: &[u64], qs: &[f64], out: &mut [f64]) -> (u64, f64) {
    let total: u64 = buckets.iter().sum();
    out.fill(f64::NAN);
    if total == 0 {
        return (0, 0.0);
    }
    let sum = midpoint_sum(layout, buckets);
    // Ranks in ascending order let one pass over the buckets answer all.
    let mut order: Vec<usize> = (0..qs.len()).collect();
    order.sort_by(|a, b| qs[*a].total_cmp(&qs[*b]));
    let mut seen = 0u64;
    let mut bucket = 0usize;
    for j in order {
        let rank = ((qs[j] * total as f64).ceil() as u64).clamp(1, total);
        while seen + buckets[bucket] < rank {
            seen += buckets[bucket];
            bucket += 1;
        }
        out[j] = layout.midpoint(bucket);
    }
    (total, sum)
}

/// Cumulative counts at power-of-two upper bounds, for Prometheus' classic
/// histograms. The bucket set is fixed (stable across scrapes) and each bound
/// `2^k` is a bucket boundary of every H2 layout, so the downsampling adds no
/// error beyond counting values equal to `2^k` in the next bucket up.
#[derive(Clone, Debug)]
pub struct PowerOfTwoBounds {
    /// `(k, index of 2^k)` for every bound, ascending.
    bounds: Vec<(u32, usize)>,
}

impl PowerOfTwoBounds {
    /// Bounds `2^min ..= 2^max` (at most `2^63`) over `layout`'s buckets.
    pub fn new(layout: Layout, min_power: u32, max_power: u32) -> Self {
        let bounds = (min_power..=max_power.min(63))
            .map(|k| (k, layout.index(1u64 << k)))
            .collect();
        PowerOfTwoBounds { bounds }
    }

    pub fn powers(&self) -> impl Iterator<Item = u32> + '_ {
        self.bounds.iter().map(|(k, _)| *k)
    }

    /// Calls `f(k, count of values < 2^k)` for each bound, then returns the
    /// total count (the `+Inf` bucket).
    pub fn cumulative(&self, buckets: &[u64], mut f: impl FnMut(u32, u64)) -> u64 {
        let mut acc = 0u64;
        let mut next = 0usize;
        for &(k, idx) in &self.bounds {
            let end = idx.min(buckets.len());
            if end > next {
                acc += buckets[next..end].iter().sum::<u64>();
                next = end;
            }
            f(k, acc);
        }
        acc + buckets[next.min(buckets.len())..].iter().sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_histogram_crate() {
        let c = histogram::Config::new(GROUPING_POWER, MAX_VALUE_POWER).unwrap();
        assert_eq!(c.total_buckets(), BUCKETS);
        assert_eq!(BUCKETS, 496);
    }

    #[test]
    fn index_matches_the_histogram_crate_around_every_power_of_two() {
        let mut h = histogram::Histogram::new(GROUPING_POWER, MAX_VALUE_POWER).unwrap();
        let mut values = vec![0, 1, u64::MAX];
        for k in 0..64 {
            let p = 1u64 << k;
            values.extend([p.saturating_sub(1), p, p.saturating_add(1)]);
        }
        for v in values {
            h.reset();
            h.increment(v).unwrap();
            let crate_index = h.as_slice().iter().position(|&c| c == 1).unwrap();
            assert_eq!(index(v), crate_index, "value {v}");
        }
    }

    #[test]
    fn generic_layouts_match_the_histogram_crate() {
        for (gp, mvp) in [(3u8, 64u8), (7, 64), (2, 10), (0, 4)] {
            let l = Layout::new(gp, mvp).unwrap();
            let mut h = histogram::Histogram::new(gp, mvp).unwrap();
            assert_eq!(l.buckets(), h.as_slice().len(), "gp {gp} mvp {mvp}");
            let max = if mvp == 64 {
                u64::MAX
            } else {
                (1u64 << mvp) - 1
            };
            let mut values = vec![0, 1, max];
            for k in 0..mvp as u32 {
                let p = 1u64 << k;
                values.extend([p - 1, p, p + 1, p + p / 3]);
            }
            for v in values.into_iter().filter(|&v| v <= max) {
                h.reset();
                h.increment(v).unwrap();
                let i = h.as_slice().iter().position(|&c| c == 1).unwrap();
                assert_eq!(l.index(v), i, "gp {gp} mvp {mvp} value {v}");
                let b = h.iter().nth(i).unwrap();
                assert_eq!(l.range(i), (b.start(), b.end()), "gp {gp} bucket {i}");
            }
        }
        assert!(Layout::new(3, 3).is_none() && Layout::new(3, 65).is_none());
        assert_eq!(Layout::new(3, 64).unwrap().config_fields(), CONFIG_FIELDS);
    }

    #[test]
    fn cumulative_counts_values_below_each_bound() {
        let mut buckets = vec![0u64; BUCKETS];
        for v in [1u64, 3, 4, 1000, 1024, 5000] {
            buckets[index(v)] += 1;
        }
        let b = PowerOfTwoBounds::new(Layout::default(), 0, 12);
        let mut seen = Vec::new();
        let total = b.cumulative(&buckets, |k, c| seen.push((k, c)));
        assert_eq!(total, 6);
        let at = |k| seen.iter().find(|(p, _)| *p == k).unwrap().1;
        assert_eq!(at(0), 0); // < 1
        assert_eq!(at(1), 1); // < 2
        assert_eq!(at(3), 3); // < 8
        assert_eq!(at(10), 4); // < 1024
        assert_eq!(at(11), 5); // < 2048
        assert_eq!(at(12), 5); // < 4096
    }

    #[test]
    fn quantiles_are_within_half_a_bucket() {
        let hist = |values: &[(u64, u64)]| {
            let mut b = vec![0u64; BUCKETS];
            for &(v, n) in values {
                b[index(v)] += n;
            }
            b
        };
        // 1,000 values at 1 ms and 10 at 100 ms.
        let b = hist(&[(1_000_000, 1000), (100_000_000, 10)]);
        let qs = [0.5, 0.99, 0.999, 0.9999];
        let mut out = [0.0; 4];
        let (count, sum) = quantiles(Layout::default(), &b, &qs, &mut out);
        assert_eq!(count, 1010);
        let near = |got: f64, want: f64| (got - want).abs() / want <= 0.0625;
        assert!(near(out[0], 1e6), "p50 {}", out[0]);
        assert!(near(out[1], 1e6), "p99 {}", out[1]); // rank 1000 of 1010
        assert!(near(out[2], 1e8), "p99.9 {}", out[2]); // rank 1009
        assert!(near(out[3], 1e8), "p99.99 {}", out[3]);
        assert!(near(sum, 1000.0 * 1e6 + 10.0 * 1e8), "sum {sum}");
        let (count, _) = quantiles(Layout::default(), &hist(&[]), &qs, &mut out);
        assert_eq!(count, 0);
        assert!(out.iter().all(|v| v.is_nan()));
        // Exact small values: lower buckets are one value wide.
        let (_, _) = quantiles(Layout::default(), &hist(&[(3, 5)]), &[0.5], &mut out[..1]);
        assert_eq!(out[0], 3.0);
    }
}
