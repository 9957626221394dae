//! Which series a selector names. Every series answers to its registry
//! name with its stored values (`cpu_usage`, nanoseconds; H2 histograms as
//! histograms), as Rezolus's tools read recordings, and to the name the
//! agent's `/metrics` gives it, with the values `/metrics` gives
//! (`cpu_usage_seconds_total`, seconds; a histogram's classic
//! `_bucket{le}` and `_count` series from the same fixed bucket set), so a
//! dashboard's query runs on a recording unchanged.

use promql_parser::label::{MatchOp, Matcher, Matchers};

use super::source::{Kind, Source};
use super::value::{Labels, NAME};
use crate::prometheus::buckets::{le, BucketSets};
use crate::prometheus::names;
use crate::registry::{self, Unit};

/// How a selected series' values are read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum View {
    /// As stored (counters and gauges as numbers, histograms as H2).
    Raw,
    /// A counter or gauge times this factor (nanoseconds to seconds).
    Scaled(f64),
    /// The classic `_bucket` series: how many values of the histogram lie
    /// below bucket index `below` (`u32::MAX`: all, the `+Inf` bucket).
    Bucket { below: u32 },
    /// The classic `_count` series: every value of the histogram.
    Count,
}

/// One name a series answers to, with the labels it then has.
#[derive(Clone, Debug)]
pub struct Entry {
    pub series: usize,
    pub view: View,
    /// `__name__` and the series' labels (and `le` for a bucket).
    pub labels: Labels,
}

impl Entry {
    pub fn name(&self) -> &str {
        super::value::label(&self.labels, NAME)
    }
}

fn labelled(name: &str, base: &[(String, String)], extra: Option<(&str, String)>) -> Labels {
    let mut l: Labels = base.to_vec();
    l.push((NAME.to_string(), name.to_string()));
    if let Some((k, v)) = extra {
        l.push((k.to_string(), v));
    }
    l.sort();
    l
}

/// Every name every series of `source` answers to.
pub fn catalog(source: &dyn Source) -> Vec<Entry> {
    let sets = BucketSets::default();
    let mut out = Vec::new();
    for (i, s) in source.series().iter().enumerate() {
        let unit = s.unit.as_deref().and_then(Unit::parse);
        let divisor = names::divisor(unit);
        let scaled = View::Scaled(1.0 / divisor as f64);
        match s.kind {
            Kind::Counter | Kind::Gauge => {
                let kind = match s.kind {
                    Kind::Counter => registry::Kind::Counter,
                    _ => registry::Kind::Gauge,
                };
                let prom = names::name(&s.metric, kind, unit);
                // One name for both (a gauge in thousandths, `load_average`):
                // the values /metrics shows win.
                let raw = if prom == s.metric && divisor != 1 {
                    scaled
                } else {
                    View::Raw
                };
                out.push(Entry {
                    series: i,
                    view: raw,
                    labels: labelled(&s.metric, &s.labels, None),
                });
                if prom != s.metric {
                    out.push(Entry {
                        series: i,
                        view: scaled,
                        labels: labelled(&prom, &s.labels, None),
                    });
                }
            }
            Kind::Histogram(layout) => {
                out.push(Entry {
                    series: i,
                    view: View::Raw,
                    labels: labelled(&s.metric, &s.labels, None),
                });
                let base = names::name(&s.metric, registry::Kind::Histogram, unit);
                let bucket = format!("{base}_bucket");
                let bounds = sets.bounds(layout, unit);
                for k in bounds.powers() {
                    out.push(Entry {
                        series: i,
                        view: View::Bucket {
                            below: layout.index(1u64 << k) as u32,
                        },
                        labels: labelled(&bucket, &s.labels, Some(("le", le(k, divisor)))),
                    });
                }
                out.push(Entry {
                    series: i,
                    view: View::Bucket { below: u32::MAX },
                    labels: labelled(&bucket, &s.labels, Some(("le", "+Inf".into()))),
                });
                out.push(Entry {
                    series: i,
                    view: View::Count,
                    labels: labelled(&format!("{base}_count"), &s.labels, None),
                });
            }
        }
    }
    out
}

fn matches_all(m: &[Matcher], labels: &Labels) -> bool {
    m.iter()
        .all(|m| m.is_match(super::value::label(labels, &m.name)))
}

/// The entries `name` and `matchers` select.
pub fn select<'a>(catalog: &'a [Entry], name: Option<&str>, matchers: &Matchers) -> Vec<&'a Entry> {
    catalog
        .iter()
        .filter(|e| name.is_none_or(|n| e.name() == n))
        .filter(|e| {
            matches_all(&matchers.matchers, &e.labels)
                && (matchers.or_matchers.is_empty()
                    || matchers
                        .or_matchers
                        .iter()
                        .any(|group| matches_all(group, &e.labels)))
        })
        .collect()
}

/// Whether a selector could select anything at all in PromQL's rules: a
/// name, or a matcher that does not match the empty string.
pub fn is_bounded(name: Option<&str>, matchers: &Matchers) -> bool {
    let non_empty = |m: &Matcher| !m.is_match("");
    name.is_some()
        || matchers.matchers.iter().any(non_empty)
        || (!matchers.or_matchers.is_empty()
            && matchers.or_matchers.iter().all(|g| g.iter().any(non_empty)))
}

/// Names close to `name` (the longest common prefixes, at least 3
/// characters, or containing it), for an error that suggests what exists.
pub fn near(catalog: &[Entry], name: &str) -> Vec<String> {
    let mut names: Vec<&str> = catalog.iter().map(Entry::name).collect();
    names.sort_unstable();
    names.dedup();
    let prefix = |n: &str| {
        n.bytes()
            .zip(name.bytes())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let mut scored: Vec<(usize, &str)> = names
        .into_iter()
        .map(|n| {
            (
                if n.contains(name) {
                    name.len()
                } else {
                    prefix(n)
                },
                n,
            )
        })
        .filter(|(score, _)| *score >= 3.min(name.len()))
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(8)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// `true` when the matcher is on the metric name with `=`.
pub fn name_matcher(m: &Matcher) -> Option<&str> {
    (m.name == NAME && matches!(m.op, MatchOp::Equal)).then_some(m.value.as_str())
}
