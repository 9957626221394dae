//! Wire formats: Prometheus text / OpenMetrics, and the msgpack/JSON snapshot.

pub mod prometheus;
pub mod snapshot;
