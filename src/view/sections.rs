//! What each section of the viewer shows, as data: the samplers' families
//! by their registry names (Rezolus's spelling as an alternative), which
//! series to keep, how to group them and in what unit a person reads them.
//! A family the source lacks is listed as missing, never drawn empty.

use serde::Serialize;

mod list;

pub use list::SECTIONS;

/// What a chart's numbers are, once scaled: the page formats them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// CPU time per second: 1 = one CPU busy.
    Cores,
    /// Events per second.
    PerSec,
    BytesPerSec,
    Bytes,
    /// A duration (latency heatmaps, percentiles).
    Seconds,
    Count,
}

/// Which series of a family a part keeps.
#[derive(Clone, Copy, Debug)]
pub enum Match {
    Eq(&'static str, &'static str),
    Ne(&'static str, &'static str),
    /// `id` equals the cgroup chosen in the containers section.
    Cgroup,
}

/// One family on a line chart: its series summed per group of `by`.
#[derive(Clone, Copy, Debug)]
pub struct Part {
    /// The family; the first name the source has wins.
    pub metrics: &'static [&'static str],
    pub keep: &'static [Match],
    pub by: &'static [&'static str],
    /// The series' name on the chart when `by` is empty (else the labels).
    pub name: Option<&'static str>,
    /// Stored unit to the chart's (ns → s: 1e-9).
    pub scale: f64,
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Counters as rates per second, gauges as values; at most `top`
    /// groups, the largest by mean over the range.
    Lines {
        parts: &'static [Part],
        top: Option<usize>,
    },
    /// A histogram family (its series merged) as a heatmap of its stored
    /// buckets, with p50/p99/p99.9.
    Heatmap {
        metrics: &'static [&'static str],
        keep: &'static [Match],
        scale: f64,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    pub unit: Unit,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug)]
pub struct Section {
    pub id: &'static str,
    pub title: &'static str,
    pub charts: &'static [Chart],
    /// Whether the section filters by a chosen cgroup.
    pub cgroup: bool,
}

/// Nanoseconds to seconds.
const NS: f64 = 1e-9;

const CG: &[Match] = &[Match::Cgroup];

const fn part(metrics: &'static [&'static str], by: &'static [&'static str], scale: f64) -> Part {
    Part {
        metrics,
        keep: &[],
        by,
        name: None,
        scale,
    }
}

const fn named(metric: &'static [&'static str], name: &'static str, scale: f64) -> Part {
    Part {
        metrics: metric,
        keep: &[],
        by: &[],
        name: Some(name),
        scale,
    }
}

const fn lines(id: &'static str, title: &'static str, unit: Unit, parts: &'static [Part]) -> Chart {
    Chart {
        id,
        title,
        unit,
        kind: Kind::Lines { parts, top: None },
    }
}

const fn top(id: &'static str, title: &'static str, unit: Unit, parts: &'static [Part]) -> Chart {
    Chart {
        id,
        title,
        unit,
        kind: Kind::Lines {
            parts,
            top: Some(8),
        },
    }
}

const fn heat(
    id: &'static str,
    title: &'static str,
    unit: Unit,
    metrics: &'static [&'static str],
    scale: f64,
) -> Chart {
    Chart {
        id,
        title,
        unit,
        kind: Kind::Heatmap {
            metrics,
            keep: &[],
            scale,
        },
    }
}

const fn pressure(resource: &'static str) -> [Match; 1] {
    [Match::Eq("resource", resource)]
}

const fn stall(keep: &'static [Match]) -> Part {
    Part {
        metrics: &["pressure_stall"],
        keep,
        by: &["kind"],
        name: None,
        scale: NS,
    }
}

const fn cg(
    metrics: &'static [&'static str],
    by: &'static [&'static str],
    name: &'static str,
    scale: f64,
) -> Part {
    Part {
        metrics,
        keep: CG,
        by,
        name: Some(name),
        scale,
    }
}

/// The query box: a section of its own, drawn from `/api/query`.
pub const QUERY: &str = "query";

pub fn find(id: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.id == id)
}

/// `query` and every section, for messages that list them.
pub fn names() -> String {
    let mut v: Vec<&str> = SECTIONS.iter().map(|s| s.id).collect();
    v.push(QUERY);
    v.join(", ")
}
