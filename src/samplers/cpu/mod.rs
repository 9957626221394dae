//! CPU: time by state per core (procfs), migrations and TLB flushes (BPF).

mod events;
mod usage;
