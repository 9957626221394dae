//! Registry name → Prometheus name, label keys, unit conversion.
//!
//! Registry names are Prometheus base names (`tcp_bytes`, `cpu_usage`), so
//! rendering one of ours applies two rules only: nanoseconds render as
//! seconds (`cpu_usage` → `cpu_usage_seconds`, a trailing `_time` becoming
//! `_seconds` as node_exporter and Rezolus name it: `softirq_time` →
//! `softirq_seconds`), and counters add `_total`. Metrics relayed from
//! other agents (Rezolus) may lack a unit suffix; `name` adds `_bytes` or
//! `_seconds` for them when their unit says so.

use crate::registry::{Desc, Kind, Unit};

pub use crate::registry::escape_label_value;

/// The Prometheus name of a metric named `registry` (sanitized first),
/// of `kind` and stored in `unit` (None: unknown, treated as a count).
pub fn name(registry: &str, kind: Kind, unit: Option<Unit>) -> String {
    let mut base = metric_name(registry);
    if kind == Kind::Counter {
        if let Some(stripped) = base.strip_suffix("_total") {
            base.truncate(stripped.len());
        }
    }
    let suffix = match unit {
        Some(Unit::Nanoseconds | Unit::Seconds) => "_seconds",
        Some(Unit::Bytes) => "_bytes",
        _ => "",
    };
    if suffix == "_seconds" {
        if let Some(stripped) = base.strip_suffix("_time") {
            base.truncate(stripped.len());
        }
    }
    if !base.ends_with(suffix) {
        base.push_str(suffix);
    }
    if kind == Kind::Counter {
        base.push_str("_total");
    }
    base
}

/// The Prometheus name of one of our families.
pub fn of(desc: &Desc) -> String {
    name(desc.name, desc.kind, Some(desc.unit))
}

/// What a stored value is divided by to reach the Prometheus base unit.
pub fn divisor(unit: Option<Unit>) -> u64 {
    match unit {
        Some(Unit::Nanoseconds) => 1_000_000_000,
        Some(Unit::Milli) => 1_000,
        _ => 1,
    }
}

/// A metric name Prometheus accepts: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | ':' => c,
            _ => '_',
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label name Prometheus accepts (and not a reserved `__` one).
pub fn label_key(key: &str) -> String {
    let mut out = metric_name(key).replace(':', "_");
    if out.starts_with("__") {
        out.insert(0, 'x');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::families;

    #[test]
    fn names_follow_units() {
        let n = |r, k, u| name(r, k, Some(u));
        assert_eq!(
            n("cpu_usage", Kind::Counter, Unit::Nanoseconds),
            "cpu_usage_seconds_total"
        );
        assert_eq!(
            n("memory_total_bytes", Kind::Gauge, Unit::Bytes),
            "memory_total_bytes"
        );
        assert_eq!(
            n("process_start_time_seconds", Kind::Gauge, Unit::Seconds),
            "process_start_time_seconds"
        );
        assert_eq!(
            n("x_latency", Kind::Histogram, Unit::Nanoseconds),
            "x_latency_seconds"
        );
        assert_eq!(
            n("softirq_time", Kind::Counter, Unit::Nanoseconds),
            "softirq_seconds_total"
        );
        // Relayed from another agent: a unit suffix is added when missing.
        assert_eq!(
            n("memory_total", Kind::Gauge, Unit::Bytes),
            "memory_total_bytes"
        );
        assert_eq!(name("cpu/usage", Kind::Counter, None), "cpu_usage_total");
        assert_eq!(label_key("__x"), "x__x");
        assert_eq!(metric_name("9lives"), "_9lives");
    }

    /// Our registry names are Prometheus base names: rendering only adds
    /// `_seconds` for nanoseconds (`_time` → `_seconds`) and `_total` for
    /// counters, never a `_bytes` or other suffix.
    #[test]
    fn registry_names_need_only_the_two_rules() {
        for f in families().iter().filter(|f| f.desc.sampler != "test") {
            let d = &f.desc;
            let mut expected = d.name.to_string();
            if d.unit == Unit::Nanoseconds {
                if let Some(base) = expected.strip_suffix("_time") {
                    expected = base.to_string();
                }
                expected.push_str("_seconds");
            }
            if d.kind == Kind::Counter {
                expected.push_str("_total");
            }
            assert_eq!(of(d), expected, "registry name {}", d.name);
        }
    }
}
