//! Prometheus exposition: names, units and bucket sets, and the text /
//! OpenMetrics writer. Shared by the agent's `/metrics`, the relay
//! exporter and the pusher's remote-write, so a metric has one name
//! everywhere.

pub mod buckets;
pub mod names;
pub mod text;

pub use buckets::BucketSets;
pub use names::{divisor, label_key, metric_name, name};
pub use text::{Format, Renderer};
