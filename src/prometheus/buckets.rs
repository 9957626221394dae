//! The fixed classic-histogram bucket sets: powers of two per unit, the
//! same defaults in every mode (the agent's `/metrics`, the exporter's
//! classic histograms, the pusher's remote-write).

use std::time::Duration;

use crate::histogram::{Layout, PowerOfTwoBounds};
use crate::registry::Unit;

/// Default range of time histograms: `[prometheus] histogram_time_min/_max`.
pub const TIME_MIN: Duration = Duration::from_micros(1);
pub const TIME_MAX: Duration = Duration::from_secs(16);
/// Default range of size histograms: `histogram_bytes_min/_max`.
pub const BYTES_MIN: u64 = 64;
pub const BYTES_MAX: u64 = 64 << 20;
/// Counts: 1 .. 1Mi.
pub const COUNT_POWERS: (u32, u32) = (0, 20);

/// (min, max) exponents of the powers of two covering `min..=max`,
/// rounded outwards: 1000 ns .. 16 s → 2^9 (512 ns) .. 2^34 (17.2 s).
pub fn powers(min: u64, max: u64) -> (u32, u32) {
    let lo = 63 - min.max(1).leading_zeros();
    let hi = 64 - max.max(1).saturating_sub(1).leading_zeros();
    (lo, hi.clamp(lo, 63))
}

/// The exponent ranges of the three bucket sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketSets {
    pub time: (u32, u32),
    pub bytes: (u32, u32),
    pub count: (u32, u32),
}

impl Default for BucketSets {
    fn default() -> Self {
        BucketSets {
            time: powers(TIME_MIN.as_nanos() as u64, TIME_MAX.as_nanos() as u64),
            bytes: powers(BYTES_MIN, BYTES_MAX),
            count: COUNT_POWERS,
        }
    }
}

impl BucketSets {
    /// The range for values stored in `unit` (unknown units: counts).
    pub fn for_unit(&self, unit: Option<Unit>) -> (u32, u32) {
        match unit {
            Some(Unit::Nanoseconds | Unit::Seconds) => self.time,
            Some(Unit::Bytes) => self.bytes,
            _ => self.count,
        }
    }

    /// The bounds for `unit` over `layout`'s buckets.
    pub fn bounds(&self, layout: Layout, unit: Option<Unit>) -> PowerOfTwoBounds {
        let (min, max) = self.for_unit(unit);
        PowerOfTwoBounds::new(layout, min, max)
    }
}

/// `le` label value of bound `2^k` of a histogram stored in `unit`, in
/// Prometheus base units; `{}` of an f64 is the shortest string that
/// round-trips and never uses an exponent, which Prometheus parses.
pub fn le(k: u32, divisor: u64) -> String {
    format!("{}", (1u64 << k) as f64 / divisor as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_outwards_to_powers_of_two() {
        assert_eq!(powers(1000, 16_000_000_000), (9, 34)); // 512 ns .. 17.2 s
        assert_eq!(powers(64, 64 << 20), (6, 26));
        assert_eq!(powers(0, 1), (0, 0));
        let d = BucketSets::default();
        assert_eq!((d.time, d.bytes, d.count), ((9, 34), (6, 26), (0, 20)));
        assert_eq!(le(10, 1_000_000_000), "0.000001024");
    }
}
