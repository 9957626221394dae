//! What expressions evaluate to, at every step of a range at once: a
//! scalar per step, or series with one optional sample per step (a float,
//! or a histogram for H2 series).

use crate::histogram::Layout;

/// Label pairs sorted by name; `__name__` is one of them while a series
/// keeps its metric name.
pub type Labels = Vec<(String, String)>;

pub const NAME: &str = "__name__";

/// A histogram at one step: float bucket values of an H2 layout (counts,
/// or per-second rates after `rate`), sparse, and the factor from stored
/// units to the values the query asked for (1, or 1e-9 for seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct Hist {
    pub layout: Layout,
    pub index: Vec<u32>,
    pub value: Vec<f64>,
    pub scale: f64,
}

impl Hist {
    pub fn total(&self) -> f64 {
        self.value.iter().sum()
    }

    /// `self + other` bucket by bucket; `None` when the layouts differ.
    pub fn add(&self, other: &Hist) -> Option<Hist> {
        if self.layout != other.layout || self.scale != other.scale {
            return None;
        }
        let (mut i, mut j) = (0, 0);
        let mut out = Hist {
            layout: self.layout,
            index: Vec::with_capacity(self.index.len().max(other.index.len())),
            value: Vec::with_capacity(self.index.len().max(other.index.len())),
            scale: self.scale,
        };
        while i < self.index.len() || j < other.index.len() {
            let a = self.index.get(i).copied().unwrap_or(u32::MAX);
            let b = other.index.get(j).copied().unwrap_or(u32::MAX);
            let (k, v) = if a == b {
                i += 1;
                j += 1;
                (a, self.value[i - 1] + other.value[j - 1])
            } else if a < b {
                i += 1;
                (a, self.value[i - 1])
            } else {
                j += 1;
                (b, other.value[j - 1])
            };
            out.index.push(k);
            out.value.push(v);
        }
        Some(out)
    }

    /// Every bucket multiplied by `f`.
    pub fn times(&self, f: f64) -> Hist {
        Hist {
            value: self.value.iter().map(|v| v * f).collect(),
            ..self.clone()
        }
    }
}

/// One sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    F(f64),
    H(Hist),
}

impl Sample {
    pub fn float(&self) -> Option<f64> {
        match self {
            Sample::F(v) => Some(*v),
            Sample::H(_) => None,
        }
    }
}

/// A series over the steps of a range: `points[k]` at step `k`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<Option<Sample>>,
}

/// What an expression evaluates to.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// A number per step.
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
    String(String),
}

/// The label value of `name`, "" when absent (PromQL's rule).
pub fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// `labels` without the metric name (what functions and operators return).
pub fn drop_name(labels: &Labels) -> Labels {
    labels.iter().filter(|(k, _)| k != NAME).cloned().collect()
}

/// Sets `name` to `value` (removes it when empty), keeping the order.
pub fn set_label(labels: &mut Labels, name: &str, value: &str) {
    labels.retain(|(k, _)| k != name);
    if !value.is_empty() {
        let at = labels.partition_point(|(k, _)| k.as_str() < name);
        labels.insert(at, (name.to_string(), value.to_string()));
    }
}

/// The labels as Prometheus prints a series: `name{a="b", …}`.
pub fn display(labels: &Labels) -> String {
    let name = label(labels, NAME);
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k != NAME)
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if rest.is_empty() {
        if name.is_empty() {
            "{}".into()
        } else {
            name.to_string()
        }
    } else {
        format!("{name}{{{}}}", rest.join(", "))
    }
}
