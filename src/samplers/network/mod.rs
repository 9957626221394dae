//! Network: per-interface counters (procfs), traffic and drops (BPF).

mod interface;
mod traffic;
