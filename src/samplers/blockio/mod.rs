//! Block I/O: per-device counters (procfs) and request latency (BPF).

mod diskstats;
mod requests;
