//! Prometheus exposition: names, units and bucket sets, the text /
//! OpenMetrics writer, and the protobuf exposition with native histograms. Shared by the agent's `/metrics`, the relay
//! exporter and the pusher's remote-write, so a metric has one name
//! everywhere.

pub mod buckets;
pub mod names;
pub mod native;
pub mod proto;
pub mod text;

pub use buckets::BucketSets;
pub use names::{divisor, label_key, metric_name, name};
pub use text::{Format, Renderer};
