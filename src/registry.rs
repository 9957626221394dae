//! The metric registry: families declared as statics (gathered by a linkme
//! slice), each holding the series a sampler created for it.
//!
//! Why not metriken's global registry: a snapshot there walks a global
//! guard and clones per-member metadata maps on every read, and label order
//! comes from a `HashMap`. Here label strings are rendered once, when a
//! series is created, so a scrape only formats numbers into a reused buffer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use linkme::distributed_slice;

/// Every metric family of the binary, wherever it is declared.
#[distributed_slice]
pub static FAMILIES: [Family];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The unit values are stored in. Values are integers (that is what the
/// msgpack snapshot carries); Prometheus rendering converts to base units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Nanoseconds,
    Seconds,
    /// Thousandths of a dimensionless value (load averages).
    Milli,
}

impl Unit {
    /// The `unit` metadata entry of the snapshot.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Bytes => "bytes",
            Unit::Nanoseconds => "nanoseconds",
            Unit::Seconds => "seconds",
            Unit::Milli => "milli",
        }
    }

    /// The unit named by a snapshot's `unit` metadata (ours, or Rezolus').
    pub fn parse(s: &str) -> Option<Unit> {
        Some(match s {
            "count" | "" => Unit::Count,
            "bytes" => Unit::Bytes,
            "nanoseconds" | "ns" => Unit::Nanoseconds,
            "seconds" | "s" => Unit::Seconds,
            "milli" => Unit::Milli,
            _ => return None,
        })
    }
}

/// Static description of a family: what the metric catalog lists.
#[derive(Debug)]
pub struct Desc {
    /// Registry name: the Prometheus base name, e.g. `cpu_usage` (rendered
    /// `cpu_usage_seconds_total`) or `tcp_bytes` (`tcp_bytes_total`).
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    /// Label keys, in the order `Family::series` takes their values.
    pub labels: &'static [&'static str],
    /// The sampler that fills it (its config name), or `sonde`, `exporter`,
    /// `push` for the modes' own metrics.
    pub sampler: &'static str,
    /// Where the numbers come from, for the catalog.
    pub source: &'static str,
    pub help: &'static str,
    /// `module_path!()` of the declaration: a test checks that a sampler's
    /// families are declared in its own module.
    pub module: &'static str,
}

pub struct Family {
    pub desc: Desc,
    series: Mutex<Vec<Arc<Series>>>,
}

/// The stored value of one series.
pub enum Value {
    /// Counter (u64) or gauge (i64 stored as its bits).
    Scalar(AtomicU64),
    Histogram(HistogramValue),
}

/// Cumulative H2 buckets (grouping power 3, max value power 64) and the
/// exact sum of observed values, as the BPF side accumulates them.
pub struct HistogramValue {
    pub buckets: Box<[AtomicU64]>,
    pub sum: AtomicU64,
}

/// One labelled series. Samplers keep the `Arc`; once they drop it the
/// series disappears from the exposition (devices that go away).
pub struct Series {
    family: &'static Family,
    /// Label values in `Desc::labels` order.
    values: Box<[Box<str>]>,
    /// `k="v",k2="v2"`, escaped, without braces; empty without labels.
    label_text: Box<str>,
    /// Unique, stable snapshot id: the registry name with its labels.
    id: Box<str>,
    value: Value,
}

impl Family {
    pub const fn new(desc: Desc) -> Self {
        Family {
            desc,
            series: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Series>>> {
        // A panic elsewhere while holding it cannot leave the Vec invalid.
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The series with these label values (in `Desc::labels` order),
    /// created on first use. Series nobody holds any more are pruned here,
    /// so churn of devices does not grow memory with uptime.
    pub fn series(&'static self, values: &[&str]) -> Arc<Series> {
        assert_eq!(
            values.len(),
            self.desc.labels.len(),
            "{}: label values do not match label keys",
            self.desc.name
        );
        let mut all = self.lock();
        all.retain(|s| Arc::strong_count(s) > 1);
        if let Some(s) = all
            .iter()
            .find(|s| s.values.iter().map(|v| &**v).eq(values.iter().copied()))
        {
            return Arc::clone(s);
        }
        // An empty value is an absent label in Prometheus: it is left
        // out (a cgroup without a container name has no `name`).
        let mut label_text = String::new();
        for (k, v) in self.desc.labels.iter().zip(values) {
            if v.is_empty() {
                continue;
            }
            if !label_text.is_empty() {
                label_text.push(',');
            }
            label_text.push_str(k);
            label_text.push_str("=\"");
            escape_label_value(v, &mut label_text);
            label_text.push('"');
        }
        let id = if label_text.is_empty() {
            self.desc.name.to_string()
        } else {
            format!("{}{{{}}}", self.desc.name, label_text)
        };
        let value = match self.desc.kind {
            Kind::Histogram => Value::Histogram(HistogramValue {
                buckets: (0..crate::histogram::BUCKETS)
                    .map(|_| AtomicU64::new(0))
                    .collect(),
                sum: AtomicU64::new(0),
            }),
            _ => Value::Scalar(AtomicU64::new(0)),
        };
        let s = Arc::new(Series {
            family: self,
            values: values.iter().map(|v| Box::from(*v)).collect(),
            label_text: label_text.into(),
            id: id.into(),
            value,
        });
        all.push(Arc::clone(&s));
        s
    }

    /// The unlabelled series of a family without label keys.
    pub fn single(&'static self) -> Arc<Series> {
        self.series(&[])
    }

    /// Calls `f` for every live series, in creation order, under the
    /// family's lock (rendering only formats numbers, so it is short).
    pub fn for_each(&self, mut f: impl FnMut(&Series)) {
        for s in self.lock().iter() {
            if Arc::strong_count(s) > 1 {
                f(s);
            }
        }
    }

    /// Appends every live series to `out` (keeping them alive while held).
    pub fn collect_into(&self, out: &mut Vec<Arc<Series>>) {
        out.extend(
            self.lock()
                .iter()
                .filter(|s| Arc::strong_count(s) > 1)
                .cloned(),
        );
    }

    pub fn has_series(&self) -> bool {
        self.lock().iter().any(|s| Arc::strong_count(s) > 1)
    }
}

impl Series {
    pub fn family(&self) -> &'static Family {
        self.family
    }

    pub fn label_values(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.family
            .desc
            .labels
            .iter()
            .copied()
            .zip(self.values.iter().map(|v| &**v))
            .filter(|(_, v)| !v.is_empty())
    }

    pub fn label_text(&self) -> &str {
        &self.label_text
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    fn scalar(&self) -> &AtomicU64 {
        match &self.value {
            Value::Scalar(v) => v,
            Value::Histogram(_) => panic!("{} is a histogram", self.family.desc.name),
        }
    }

    /// Sets a counter to an absolute reading (kernel counters are totals).
    pub fn set_counter(&self, v: u64) {
        self.scalar().store(v, Ordering::Relaxed);
    }

    pub fn add(&self, v: u64) {
        self.scalar().fetch_add(v, Ordering::Relaxed);
    }

    pub fn set_gauge(&self, v: i64) {
        self.scalar().store(v as u64, Ordering::Relaxed);
    }

    pub fn gauge(&self) -> i64 {
        self.scalar().load(Ordering::Relaxed) as i64
    }

    /// Replaces the histogram's buckets and sum with a cumulative reading.
    /// (Filled by the eBPF samplers; only tests call it until they land.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn set_histogram(&self, buckets: &[u64], sum: u64) {
        let Value::Histogram(h) = &self.value else {
            panic!("{} is not a histogram", self.family.desc.name)
        };
        for (dst, src) in h.buckets.iter().zip(buckets) {
            dst.store(*src, Ordering::Relaxed);
        }
        h.sum.store(sum, Ordering::Relaxed);
    }
}

/// Label-value escaping of the series text form `name{k="v"}`, which both
/// the snapshot ids and the Prometheus exposition use: backslash, double
/// quote, newline.
pub fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// All families, sorted by registry name.
pub fn families() -> &'static [&'static Family] {
    static SORTED: OnceLock<Vec<&'static Family>> = OnceLock::new();
    SORTED.get_or_init(|| {
        let mut v: Vec<&'static Family> = FAMILIES.iter().collect();
        v.sort_by_key(|f| f.desc.name);
        v
    })
}

/// Declares a metric family and registers it in [`FAMILIES`].
///
/// ```ignore
/// family! {
///     pub static CPU_USAGE: Counter {
///         name: "cpu_usage",
///         unit: Nanoseconds,
///         labels: ["state", "cpu"],
///         sampler: "cpu",
///         source: "/proc/stat",
///         help: "CPU time spent in each state.",
///     }
/// }
/// ```
#[macro_export]
macro_rules! family {
    ($(#[$meta:meta])* $vis:vis static $ident:ident: $kind:ident {
        name: $name:literal,
        unit: $unit:ident,
        labels: [$($label:literal),* $(,)?],
        sampler: $sampler:expr,
        source: $source:literal,
        help: $help:literal $(,)?
    }) => {
        $(#[$meta])*
        #[linkme::distributed_slice($crate::registry::FAMILIES)]
        $vis static $ident: $crate::registry::Family =
            $crate::registry::Family::new($crate::registry::Desc {
                name: $name,
                kind: $crate::registry::Kind::$kind,
                unit: $crate::registry::Unit::$unit,
                labels: &[$($label),*],
                sampler: $sampler,
                source: $source,
                help: $help,
                module: module_path!(),
            });
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::family! {
        static TEST_FAMILY: Gauge {
            name: "test_registry_gauge",
            unit: Bytes,
            labels: ["k"],
            sampler: "test",
            source: "test",
            help: "x",
        }
    }

    #[test]
    fn series_are_deduplicated_and_pruned() {
        let a = TEST_FAMILY.series(&["a\"b"]);
        let again = TEST_FAMILY.series(&["a\"b"]);
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(a.label_text(), r#"k="a\"b""#);
        assert_eq!(a.id(), r#"test_registry_gauge{k="a\"b"}"#);
        drop((a, again));
        let mut n = 0;
        TEST_FAMILY.for_each(|_| n += 1);
        assert_eq!(n, 0, "a dropped series must disappear");
    }
}
