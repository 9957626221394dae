//! Sonde: an eBPF-first Linux kernel telemetry agent. The library holds
//! everything; `main.rs` is the command line. Benchmarks use it too.
//!
//! Layers (arrows point down only): the modes (`agent`, `exporter`,
//! `push`) use the shared homes (`serve`, `snapshot`, `spool`,
//! `prometheus`, `samplers`, `runtime`), which use the foundations
//! (`bpf`, `registry`, `histogram`, `config`, `privileges`). A mode never imports
//! another mode.

pub mod agent;
pub mod exporter;
pub mod hindsight;
pub mod push;
pub mod record;
pub mod top;

pub mod prometheus;
pub mod runtime;
pub mod samplers;
pub mod serve;
pub mod snapshot;
pub mod spool;
pub mod systemd;

pub mod bpf;
pub mod config;
pub mod histogram;
pub mod privileges;
pub mod registry;

#[cfg(test)]
mod catalog;
