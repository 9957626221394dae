//! Sonde: an eBPF-first Linux kernel telemetry agent. The library holds
//! everything; `main.rs` is the command line. Benchmarks use it too.
//!
//! Layers, top first; arrows point down only, and a mode never imports
//! another mode (tests/structure.rs enforces both, and that every module
//! here has a layer):
//!
//! 1. modes, one per command: `agent`, `exporter` (the relay), `push`,
//!    `record`, `hindsight`, `top`, `inspect` (`query` and `dump`);
//! 2. `daemon`: the start / reload / watchdog / ready / serve sequence of
//!    the long-running modes;
//! 3. shared homes: `serve` (HTTP server), `client` (HTTP client: TLS and
//!    credentials toward agents and upstreams), `snapshot` (wire format),
//!    `spool`, `parquet` (recordings), `query` (the PromQL engine),
//!    `analysis` (anomalies, changes, correlations),
//!    `prometheus`, `samplers`;
//! 4. foundations: `runtime`, `systemd`, `bpf`, `registry`, `histogram`,
//!    `config`, `privileges`.

pub mod agent;
pub mod exporter;
pub mod hindsight;
pub mod inspect;
pub mod mcp;
pub mod push;
pub mod record;
pub mod top;
pub mod view;

pub mod daemon;

pub mod analysis;
pub mod client;
pub mod parquet;
pub mod prometheus;
pub mod query;
pub mod samplers;
pub mod serve;
pub mod snapshot;
pub mod spool;

pub mod bpf;
pub mod config;
pub mod histogram;
pub mod privileges;
pub mod registry;
pub mod runtime;
pub mod systemd;

#[cfg(test)]
mod catalog;
