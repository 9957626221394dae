//! The one time grammar of every command and tool: absolute times as RFC
//! 3339 (`2026-12-03T08:00:00Z`) or unix seconds (`1796288681.5`), the
//! data's own edges (`start`, `end`), `now`, and durations counted back
//! from the end (`10m`, `end-10m`) or on from the start (`start+5m`).
//! `-b 10m -e 5m` is "from ten minutes before the end to five minutes
//! before it".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A time as written, resolved against a span by [`Time::at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Time {
    /// ns since the epoch.
    Absolute(i64),
    /// ns before the end of the data.
    BeforeEnd(i64),
    /// ns after its start.
    AfterStart(i64),
    Now,
}

fn duration(s: &str) -> Option<i64> {
    humantime::parse_duration(s.trim())
        .ok()
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
}

impl std::str::FromStr for Time {
    type Err = String;

    fn from_str(s: &str) -> Result<Time, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "bad time `{s}`: write RFC 3339 (2026-12-03T08:00:00Z), unix seconds, start, end, now, a duration back from the end (10m), end-10m or start+5m"
            )
        };
        match t {
            "" => return Err(bad()),
            "start" => return Ok(Time::AfterStart(0)),
            "end" => return Ok(Time::BeforeEnd(0)),
            "now" => return Ok(Time::Now),
            _ => {}
        }
        if let Some(d) = t.strip_prefix("start+") {
            return duration(d).map(Time::AfterStart).ok_or_else(bad);
        }
        if let Some(d) = t.strip_prefix("end-") {
            return duration(d).map(Time::BeforeEnd).ok_or_else(bad);
        }
        if let Some(d) = t.strip_prefix("now-") {
            let d = duration(d).ok_or_else(bad)?;
            return Ok(Time::Absolute(now_ns() - d));
        }
        if let Ok(secs) = t.parse::<f64>() {
            if secs.is_finite() {
                return Ok(Time::Absolute((secs * 1e9) as i64));
            }
        }
        if let Ok(at) = humantime::parse_rfc3339_weak(t) {
            let d = at.duration_since(UNIX_EPOCH).map_err(|_| bad())?;
            return Ok(Time::Absolute(d.as_nanos() as i64));
        }
        duration(t).map(Time::BeforeEnd).ok_or_else(bad)
    }
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64
}

impl Time {
    /// The time in ns, given the data's first and last sample.
    pub fn at(self, start: i64, end: i64) -> i64 {
        match self {
            Time::Absolute(t) => t,
            Time::BeforeEnd(d) => end - d,
            Time::AfterStart(d) => start + d,
            Time::Now => now_ns(),
        }
    }
}

/// A step as written (`10s`, `1m`).
pub fn parse_step(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("bad step `{s}`: a positive duration such as 1s, 10s, 1m"))
}

/// A step that gives at most `max_points` steps over `span_ns`, a whole
/// multiple of the sampling interval (1 s when unknown).
pub fn auto_step(span_ns: i64, interval: Option<Duration>, max_points: usize) -> i64 {
    let unit = interval.map_or(1_000_000_000, |d| d.as_nanos().max(1) as i64);
    // n points span n − 1 steps; one point needs a step past the span.
    let want = match max_points {
        0 | 1 => span_ns.max(0) + 1,
        n => (span_ns.max(0) + n as i64 - 2) / (n as i64 - 1),
    };
    let k = (want + unit - 1) / unit;
    k.max(1) * unit
}

/// `t` (ns) as unix seconds with milliseconds, `1796290202.002`.
pub fn unix_seconds(t: i64) -> String {
    format!(
        "{}.{:03}",
        t.div_euclid(1_000_000_000),
        t.rem_euclid(1_000_000_000) / 1_000_000
    )
}

/// `t` (ns) as RFC 3339 with milliseconds.
pub fn rfc3339(t: i64) -> String {
    let d = Duration::from_nanos(t.max(0) as u64);
    humantime::format_rfc3339_millis(UNIX_EPOCH + d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn every_form_resolves() {
        let (start, end) = (1000 * S, 5000 * S);
        let at = |s: &str| s.parse::<Time>().unwrap().at(start, end);
        assert_eq!(at("10m"), end - 600 * S);
        assert_eq!(at("end-90s"), end - 90 * S);
        assert_eq!(at("start+5m"), start + 300 * S);
        assert_eq!(at("start"), start);
        assert_eq!(at("end"), end);
        assert_eq!(at("1796288681.5"), 1_796_288_681_500_000_000);
        assert_eq!(at("2026-12-03T08:00:00Z"), 1_796_284_800 * S);
        let e = "soon".parse::<Time>().unwrap_err();
        assert!(e.contains("bad time `soon`"), "{e}");
        assert!(parse_step("0s").is_err());
        assert_eq!(
            auto_step(3600 * S, Some(Duration::from_secs(1)), 1000),
            4 * S
        );
        assert_eq!(auto_step(10 * S, None, 1000), S);
        // 61 points span 60 steps.
        let second = Some(Duration::from_secs(1));
        assert_eq!(auto_step(60 * S, second, 61), S);
        assert_eq!(auto_step(60 * S, second, 60), 2 * S);
    }
}
