//! Sonde: an eBPF-first Linux kernel telemetry agent. The library holds
//! everything; `main.rs` is the command line. Benchmarks use it too.

pub mod agent;
pub mod bpf;
pub mod config;
pub mod exporter;
pub mod exposition;
pub mod histogram;
pub mod push;
pub mod registry;
mod samplers;

#[cfg(test)]
mod catalog;
